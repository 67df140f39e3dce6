//! The `custodian` command: CLI dispatch, settings, exit codes. All wiring lives here.

mod alerting;
mod cli;
mod docs;
mod load;
mod plugin;
mod queue;
mod report;
mod resolve;
mod scan;
mod serve;
mod settings;
mod worker;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{CheckArgs, Cli, Command, ExamplesArgs, RunArgs};
use custodian_core::{Job, JobResult, Status};
use settings::Settings;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Exit status for a bad configuration or usage.
const EXIT_CONFIG: u8 = 2;

/// Exit status when no check failed but some could not be judged (our own error), as the
/// Nagios UNKNOWN; a failure (1) outranks it.
pub(crate) const EXIT_UNKNOWN: u8 = 3;

/// The exit status of a set of results: 1 if any failed, else 3 if any is unknown, else 0.
fn exit_for(results: &[JobResult]) -> ExitCode {
    if results.iter().any(|r| r.status == Status::Failed) {
        ExitCode::FAILURE
    } else if results.iter().any(|r| r.status == Status::Unknown) {
        ExitCode::from(EXIT_UNKNOWN)
    } else {
        ExitCode::SUCCESS
    }
}

/// How logs are written on stderr (`--log-format`, `CUSTODIAN_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Starts logging on stderr. `CUSTODIAN_LOG` (an env-filter) overrides the level: warnings by
/// default, plus custodian's own info lines (start, reloads, the worker's summary) for the
/// long-running commands, which is what a journal should hold.
fn init_logging(format: LogFormat, command: &Command) {
    let default = match command {
        Command::Worker(_) | Command::Serve(_) => "warn,custodian=info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUSTODIAN_LOG")
        .unwrap_or_else(|_| default.into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => {
            let ansi = colour_wanted(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            let logs = logs.with_ansi(ansi);
            // journald stamps every line itself; a second timestamp only takes room.
            if stderr_is_journal() {
                logs.without_time().init();
            } else {
                logs.init();
            }
        }
    }
}

/// Whether stderr is the journal stream systemd set up: `JOURNAL_STREAM` holds its
/// `DEVICE:INODE`, and a child whose stderr was redirected elsewhere inherits the variable.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let meta = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata().ok());
    meta.is_some_and(|m| same_stream(&var.to_string_lossy(), m.dev(), m.ino()))
}

/// Whether `JOURNAL_STREAM`'s `DEVICE:INODE` names the file with `dev` and `ino`.
fn same_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// Colour codes only for a person at a terminal, and never when `NO_COLOR` is set to
/// something (no-color.org): journald and log files would store them as garbage.
fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && !matches!(no_color, Some(v) if !v.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.command);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Check(args) => check(args).await,
        Command::Run(args) => run(args).await,
        Command::Examples(args) => Ok(examples(&args)),
        Command::Enqueue(args) => queue::commands::enqueue(args).await,
        Command::Worker(args) => queue::commands::worker(args).await,
        Command::Queue(args) => queue::commands::queue(args).await,
        Command::Scan(args) => scan::scan(args).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Completions(args) => Ok(docs::completions(&args)),
        Command::Manpages(args) => docs::manpages(&args),
        Command::Probe(args) => plugin::probe(args).await,
    }
}

/// Loads files and prints their diagnostics; `None` when there were errors.
async fn load_jobs(
    files: &[std::path::PathBuf],
    strict: bool,
    settings: &Settings,
) -> Result<Option<Vec<Job>>> {
    let loaded = load::load(files, strict, settings.fetch_timeout(), settings.max_jobs).await?;
    let mut err = std::io::stderr().lock();
    for d in &loaded.diagnostics {
        writeln!(err, "{d}\n")?;
    }
    let (errors, warnings) = (loaded.errors(), loaded.warnings());
    if errors > 0 {
        writeln!(
            err,
            "{errors} error(s), {warnings} warning(s): nothing was run or enqueued"
        )?;
        return Ok(None);
    }
    if warnings > 0 {
        writeln!(err, "{warnings} warning(s)")?;
    }
    Ok(Some(loaded.jobs))
}

async fn check(args: CheckArgs) -> Result<ExitCode> {
    let settings = Settings::load(args.common.settings.as_deref())?;
    let Some(jobs) = load_jobs(&args.files, args.strict, &settings).await? else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        for job in &jobs {
            writeln!(out, "{}", job_json(job))?;
        }
    } else {
        writeln!(
            out,
            "{} check(s) in {} file(s): valid",
            jobs.len(),
            args.files.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The `check --json` object of a job, secrets masked.
fn job_json(job: &Job) -> serde_json::Value {
    serde_json::json!({
        "id": job.id(),
        "type": job.probe,
        "target": job.display_target(),
        "port": job.port,
        "inverted": job.inverted,
        "otherwise": job.otherwise,
        "subject": job.subject,
        "window": job.window,
        "family": job.family,
        "timeout": job.timeout,
        "retries": job.retries,
        "options": job.masked_options(),
        "line": job.line,
        "file": job.file,
        "lineno": job.lineno,
    })
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let settings = run_settings(&args)?;
    let env = probe_env(&settings)?;
    let Some(jobs) = load_jobs(&args.files, args.strict, &settings).await? else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let settings = cap_concurrency(settings, raise_fd_limit());
    let alerting = alerting::Alerting::new(&settings, || {
        let store = alerting::FileStore::open(&settings.state_file(), settings.policy());
        Ok(Box::new(store))
    })
    .await?;
    let started = Instant::now();
    let bar = report::progress(jobs.len(), args.quiet);
    let mut results: Vec<JobResult> = Vec::with_capacity(jobs.len());
    let engine = worker::Engine::with_env(settings, env);
    let json = args.json;
    engine
        .run_all(jobs, alerting.as_ref().map(|a| a.room()), |r| {
            if json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            }
            if r.status == Status::Failed {
                bar.set_message(format!(
                    "{} failed",
                    results
                        .iter()
                        .filter(|x| x.status == Status::Failed)
                        .count()
                        + 1
                ));
            }
            bar.inc(1);
            let accepted = alerting.as_ref().map(|a| a.spawn(r.clone()));
            results.push(r);
            accepted
        })
        .await;
    bar.finish_and_clear();
    if let Some(a) = &alerting {
        a.finish().await;
    }
    let summary = report::summary(&results, started.elapsed());
    if json {
        eprintln!("{summary}");
    } else {
        print!("{}", report::table(&results));
        println!("{summary}");
    }
    Ok(exit_for(&results))
}

/// The probes' shared environment (TLS trust, nameservers), built once from the settings;
/// a CA file that cannot be used stops start-up, a fallback to the bundled roots is logged.
pub(crate) fn probe_env(settings: &Settings) -> Result<Arc<custodian_probes::Env>> {
    let env = custodian_probes::Env::build(&settings.env_options())
        .map_err(anyhow::Error::msg)
        .context("loading ca_file")?;
    for w in env.warnings() {
        tracing::warn!("{w}");
    }
    Ok(Arc::new(env))
}

/// Settings from the file, overridden by flags, validated.
fn run_settings(args: &RunArgs) -> Result<Settings> {
    let mut s = Settings::load(args.common.settings.as_deref())?;
    if let Some(n) = args.concurrency {
        s.concurrency = n;
    }
    if let Some(t) = args.timeout {
        s.timeout = t;
    }
    if let Some(r) = args.retries {
        s.retries = r;
    }
    if let Some(d) = args.retry_delay {
        s.retry_delay = d;
    }
    s.validate()?;
    Ok(s)
}

fn examples(args: &ExamplesArgs) -> ExitCode {
    let pattern = args.pattern.as_deref().unwrap_or("").to_ascii_lowercase();
    let mut shown = 0;
    for probe in custodian_probes::PROBES {
        let spec = probe.spec;
        if !spec.name.contains(&pattern) && !spec.example.to_ascii_lowercase().contains(&pattern) {
            continue;
        }
        println!("# {}: {}", spec.name, spec.summary);
        for p in spec.params {
            println!("#   {} — {}", p.phrase, p.help);
        }
        println!("{}\n", spec.example);
        shown += 1;
    }
    if shown == 0 {
        eprintln!("no check type matches {pattern:?}");
        return ExitCode::from(EXIT_CONFIG);
    }
    ExitCode::SUCCESS
}

/// Thousands of concurrent checks need thousands of sockets: lift the soft limit to the hard
/// one. Returns the limit now in force, if it could be read.
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Some(raised.rlim_cur);
            }
        }
    }
    Some(lim.rlim_cur)
}

/// Files kept for everything but checks (runtime, stdio, resolver).
const RESERVED_FDS: u64 = 64;

/// Keeps concurrency below the open-file limit: each check in flight holds at least one socket.
fn cap_concurrency(mut settings: Settings, fd_limit: Option<u64>) -> Settings {
    if let Some(limit) = fd_limit {
        let most = limit.saturating_sub(RESERVED_FDS).max(1) as usize;
        if settings.concurrency > most {
            tracing::warn!(
                "concurrency {} exceeds the open-file limit {limit}; using {most}",
                settings.concurrency
            );
            settings.concurrency = most;
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour_wanted(true, None));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(colour_wanted(true, Some(OsStr::new(""))));
    }

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        assert!(same_stream("8:4711", 8, 4711));
        assert!(!same_stream("8:4711", 8, 4712));
        assert!(!same_stream("8:4711", 9, 4711));
        assert!(!same_stream("garbage", 8, 4711));
    }

    #[test]
    fn concurrency_stays_under_the_open_file_limit() {
        let s = Settings {
            concurrency: 5000,
            ..Settings::default()
        };
        assert_eq!(cap_concurrency(s.clone(), Some(1024)).concurrency, 960);
        assert_eq!(cap_concurrency(s.clone(), Some(65536)).concurrency, 5000);
        assert_eq!(cap_concurrency(s, None).concurrency, 5000);
    }
}
