//! `custodian probe`: one check, run once, reported as a monitoring plugin (Nagios, Icinga,
//! Sensu, shell scripts): one line `TYPE STATE - text | perfdata` and the plugin exit codes.
//!
//! The words after TYPE and TARGET are a test-file line's options: the line
//! `TARGET must run TYPE WORDS...` goes through the same parser and planner as a test file, so
//! an option means the same here as there. Exit 0 OK, 2 CRITICAL, 3 UNKNOWN (our own error,
//! and bad arguments, as the plugin guidelines ask). WARNING (1) is never given: no check
//! reports a degree of health between pass and fail; a certificate's expiry is a pass or a
//! failure of its `expires within` option.

use crate::cli::ProbeArgs;
use crate::commands::startup::{Overrides, Startup};
use crate::settings::{flag_int, flag_secs, Settings};
use custodian_core::dsl::{self, Diagnostic};
use custodian_core::spec::{secret_ranges, MASK};
use custodian_core::{plan, Job, JobResult, Status};
use std::process::ExitCode;
use std::sync::Arc;

/// A plugin state, ordered by how bad it is (the worst of several results wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Ok,
    Unknown,
    Critical,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Unknown => "UNKNOWN",
            State::Critical => "CRITICAL",
        }
    }

    fn code(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Critical => 2,
            State::Unknown => 3,
        }
    }

    fn of(status: Status) -> State {
        match status {
            Status::Passed | Status::Skipped => State::Ok,
            Status::Failed => State::Critical,
            // Only `serve` decides across locations; the plugin never sees it.
            Status::Partial => State::Ok,
            Status::Unknown => State::Unknown,
        }
    }
}

/// `custodian probe`: never an error of its own; every failure is an UNKNOWN line.
pub(crate) async fn probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let label = args.probe.to_ascii_uppercase();
    let jobs = match prepare(&args).await {
        Ok(jobs) => jobs,
        Err(why) => {
            // The reason (already masked) on stdout for the monitor, all of it on stderr.
            let first = why.lines().next().unwrap_or("bad arguments").to_string();
            eprintln!("{why}");
            println!("{label} UNKNOWN - {}", clean(&first));
            return Ok(ExitCode::from(State::Unknown.code()));
        }
    };
    let (engine, jobs) = jobs;
    let runs = jobs.iter().map(|job| {
        let engine = Arc::clone(&engine);
        async move { engine.run_job(job).await }
    });
    let results = futures::future::join_all(runs).await;
    let (line, state) = render(&label, &jobs, &results);
    println!("{line}");
    Ok(ExitCode::from(state.code()))
}

type Prepared = (Arc<crate::worker::Engine>, Vec<Arc<Job>>);

/// Settings, flags and the planned jobs; `Err` is the whole diagnostic text, secrets masked.
async fn prepare(args: &ProbeArgs) -> Result<Prepared, String> {
    let mut settings =
        Settings::load(args.common.settings.as_deref()).map_err(|e| format!("{e:#}"))?;
    if let Some(t) = &args.timeout {
        settings.timeout = flag_secs("timeout", t)?;
    }
    if let Some(r) = &args.retries {
        settings.retries = flag_int::<u32>("retries", r)?;
    }
    settings.validate().map_err(|e| format!("{e:#}"))?;
    let text = line_text(&args.target, &args.probe, &args.words, args.not)?;
    let jobs = plan_line(&text, settings.max_jobs)?;
    // Already validated above; this builds the probes' environment. One check needs no
    // raised open-file limit.
    let start =
        Startup::from_settings(settings, Overrides::default()).map_err(|e| format!("{e:#}"))?;
    let engine = start.engine();
    Ok((engine, jobs.into_iter().map(Arc::new).collect()))
}

/// The test-file line for `TARGET must [not] run TYPE WORDS...`. A word the line's lexer would
/// split or misread (spaces, a leading quote, a final dot, the text after `otherwise`) is
/// quoted; a word already in quotes is kept as written.
fn line_text(target: &str, probe: &str, words: &[String], not: bool) -> Result<String, String> {
    let bare =
        |w: &str| !w.is_empty() && !w.contains(char::is_whitespace) && !w.starts_with(['\'', '"']);
    if !bare(target) || !bare(probe) {
        return Err("TYPE and TARGET must be single words".into());
    }
    let mut line = format!("{target} must {}run {probe}", if not { "not " } else { "" });
    let mut after_otherwise = false;
    for w in words {
        if w.contains(['\n', '\r']) {
            return Err("an option word holds a line break".into());
        }
        let quoted = w.len() >= 2
            && [b'\'', b'"'].iter().any(|&q| {
                w.as_bytes().first() == Some(&q)
                    && w.as_bytes().last() == Some(&q)
                    && !w[1..w.len() - 1].contains(char::from(q))
            });
        let needs = after_otherwise || !bare(w) || w.ends_with(['.', '\\']);
        line.push(' ');
        if quoted || !needs {
            line.push_str(w);
        } else if !w.contains('\'') {
            line.push_str(&format!("'{w}'"));
        } else if !w.contains('"') {
            line.push_str(&format!("\"{w}\""));
        } else {
            return Err(format!(
                "the option word {} holds both quote characters",
                clean(w)
            ));
        }
        after_otherwise = w.eq_ignore_ascii_case("otherwise");
    }
    Ok(line)
}

/// Parses, expands and plans one line, strictly (an unknown word is an error, not a warning:
/// a plugin must not pass because an option was ignored). `Err` holds every diagnostic.
fn plan_line(text: &str, max_jobs: usize) -> Result<Vec<Job>, String> {
    let (file, mut diags) = dsl::parse("probe", text);
    let files = [file];
    // One line defines no macro; a `fetched from` list cannot occur.
    let mut fetch = |_: &str| Err("macros are not available here".to_string());
    let (expanded, more) = dsl::expand_at_most(&files, &mut fetch, max_jobs);
    diags.extend(more);
    let specs = custodian_probes::specs();
    let (jobs, more) = plan::plan(&expanded, &specs, true);
    diags.extend(more);
    for d in &mut diags {
        d.mask_secrets(MASK, secret_ranges);
    }
    let errors: Vec<&Diagnostic> = diags.iter().filter(|d| d.is_error()).collect();
    if let Some(first) = errors.first() {
        let mut text = first.message.clone();
        for d in &diags {
            text.push_str(&format!("\n{d}"));
        }
        return Err(text);
    }
    if jobs.is_empty() {
        return Err("the line gave no check to run".into());
    }
    Ok(jobs)
}

/// The plugin line and its state: the worst result decides; each result is described.
fn render(label: &str, jobs: &[Arc<Job>], results: &[JobResult]) -> (String, State) {
    let state = results
        .iter()
        .map(|r| State::of(r.status))
        .max()
        .unwrap_or(State::Unknown);
    let several = results.len() > 1;
    let mut texts = Vec::new();
    let mut perf = Vec::new();
    for (job, r) in jobs.iter().zip(results) {
        let at = place(job, r);
        let secs = r.duration_ms as f64 / 1000.0;
        texts.push(match (r.status, &r.error) {
            (Status::Passed, _) if job.inverted => format!("{at} does not answer"),
            (Status::Passed, _) => format!("{at} answered in {secs:.3}s"),
            (_, Some(why)) => format!("{at}: {why}"),
            (status, None) => format!("{at}: {}", crate::report::label(status)),
        });
        let name = |what: &str| {
            if several {
                perf_label(&format!("{what} {at}"))
            } else {
                what.to_string()
            }
        };
        perf.push(format!("{}={secs:.3}s;;;0", name("time")));
        perf.push(format!("{}={}", name("attempts"), r.attempts));
    }
    let line = format!(
        "{label} {} - {} | {}",
        state.word(),
        clean(&texts.join("; ")),
        perf.join(" ")
    );
    (line, state)
}

/// `host:port` (`[v6]:port`) when the job has a port and the target is no URL.
fn place(job: &Job, r: &JobResult) -> String {
    match job.port {
        Some(p) if !r.target.contains("://") && r.target.contains(':') => {
            format!("[{}]:{p}", r.target)
        }
        Some(p) if !r.target.contains("://") => format!("{}:{p}", r.target),
        _ => r.target.clone(),
    }
}

/// A perfdata label in quotes, `'` doubled (plugin guidelines); `=` cannot appear in one.
fn perf_label(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''").replace('=', "_"))
}

/// Text for the status part: one line, and no `|`, which starts the perfdata.
fn clean(text: &str) -> String {
    custodian_core::outcome::escape_controls(text).replace('|', "¦")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words_become_one_line_quoted_where_the_lexer_needs_it() {
        let line = line_text(
            "https://127.0.0.1:8443/",
            "https",
            &words(&["with", "content", "hello world", "otherwise", "down"]),
            false,
        );
        assert_eq!(
            line.as_deref(),
            Ok("https://127.0.0.1:8443/ must run https with content 'hello world' otherwise 'down'")
        );
        let kept = line_text("h", "ssh", &words(&["on", "port", "'22'"]), true);
        assert_eq!(kept.as_deref(), Ok("h must not run ssh on port '22'"));
        assert_eq!(
            line_text(
                "h",
                "http",
                &words(&["with", "content", "it's \"x\""]),
                false
            )
            .map_err(|e| e.contains("both quote")),
            Err(true)
        );
        assert!(line_text("a b", "ssh", &[], false).is_err());
    }

    #[test]
    fn a_bad_option_is_an_error_naming_it() {
        let e = plan_line("127.0.0.1 must run ssh on prot 22", 10).expect_err("bad option");
        assert!(e.contains("prot"), "{e}");
        let jobs = plan_line("127.0.0.1 must run ssh on port 2222", 10).expect("good line");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].port, Some(2222));
    }

    #[test]
    fn labels_are_quoted_and_text_has_no_pipe() {
        assert_eq!(perf_label("time it's"), "'time it''s'");
        assert_eq!(clean("a|b\nc"), "a¦b\\nc");
        assert!(State::Critical > State::Unknown && State::Unknown > State::Ok);
    }
}
