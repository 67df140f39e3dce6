//! The `custodian` command: logging, exit codes and dispatch; each command lives in its own
//! module, and [`commands::startup`] is the start-up they share.

mod alerting;
mod cli;
mod commands;
mod docs;
mod load;
mod plugin;
mod queue;
mod report;
mod resolve;
mod scan;
mod serve;
mod settings;
mod threads;
mod worker;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

/// Exit status for a bad configuration or usage.
const EXIT_CONFIG: u8 = 2;

/// Exit status when no check failed but some could not be judged (our own error), as the
/// Nagios UNKNOWN; a failure (1) outranks it.
pub(crate) const EXIT_UNKNOWN: u8 = 3;

/// How logs are written on stderr (`--log-format`, `CUSTODIAN_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The log level of `-v` (`verbose` times) or `-q`: warnings by default, plus custodian's own
/// info lines (start, reloads, the worker's summary) for the long-running commands, which is
/// what a journal should hold.
fn log_level(command: &Command, verbose: u8, quiet: bool) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => match command {
            Command::Worker(_) | Command::Serve(_) => "warn,custodian=info",
            _ => "warn",
        },
        (false, 1) => "info",
        // Dependencies' debug lines (HTTP, TLS) drown custodian's own.
        (false, 2) => "info,custodian=debug",
        _ => "debug",
    }
}

/// Starts logging on stderr. `CUSTODIAN_LOG` (an env-filter) overrides the level `-v`/`-q`
/// chose ([`log_level`]).
fn init_logging(cli: &Cli) {
    let format = cli.log_format;
    let default = log_level(&cli.command, cli.log_verbose, cli.log_quiet);
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
    init_logging(&cli);
    let runtime = match runtime_for(&cli.command) {
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

/// The async runtime for `command`. `run` works on one thread: its checks wait on the network,
/// not the CPU, and one thread spares the cross-thread wake-ups, locks and task stealing that
/// cost more CPU than the checks themselves (issue 13). Long-running commands keep every core.
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    match command {
        Command::Run(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    }
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Check(args) => commands::check::check(args).await,
        Command::Run(args) => commands::run::run(args).await,
        Command::Examples(args) => Ok(commands::examples::examples(&args)),
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

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).expect("valid arguments")
    }

    #[test]
    fn v_and_q_set_the_log_level_and_keep_the_commands_own_flags() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let level = |args: &[&str]| {
            let cli = parse(args);
            log_level(&cli.command, cli.log_verbose, cli.log_quiet)
        };
        assert_eq!(level(&["custodian", "check", "t.cfg"]), "warn");
        assert_eq!(level(&["custodian", "-v", "check", "t.cfg"]), "info");
        assert_eq!(
            level(&["custodian", "check", "-vv", "t.cfg"]),
            "info,custodian=debug"
        );
        assert_eq!(level(&["custodian", "-vvv", "check", "t.cfg"]), "debug");
        assert_eq!(level(&["custodian", "check", "-q", "t.cfg"]), "error");
        assert_eq!(level(&["custodian", "worker"]), "warn,custodian=info");
        assert_eq!(level(&["custodian", "worker", "--log-quiet"]), "error");
        assert!(Cli::try_parse_from(["custodian", "-v", "-q", "check", "t.cfg"]).is_err());
        // `worker -v` is the log flag; `--verbose` still prints every job.
        let Command::Worker(w) = parse(&["custodian", "worker", "-v"]).command else {
            panic!("not worker");
        };
        assert!(!w.verbose);
        let Command::Worker(w) = parse(&["custodian", "worker", "--verbose"]).command else {
            panic!("not worker");
        };
        assert!(w.verbose);
        // `run --quiet` still hides the progress bar, and `-q` alone does not.
        let Command::Run(r) = parse(&["custodian", "run", "--quiet", "t.cfg"]).command else {
            panic!("not run");
        };
        assert!(r.quiet);
        let cli = parse(&["custodian", "run", "-q", "t.cfg"]);
        assert!(cli.log_quiet && matches!(cli.command, Command::Run(r) if !r.quiet));
    }

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        assert!(same_stream("8:4711", 8, 4711));
        assert!(!same_stream("8:4711", 8, 4712));
        assert!(!same_stream("8:4711", 9, 4711));
        assert!(!same_stream("garbage", 8, 4711));
    }
}
