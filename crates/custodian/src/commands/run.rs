//! `custodian run`: every check once on the embedded queue, then the table and the summary.

use super::startup::{load_jobs, Overrides, Startup};
use crate::cli::RunArgs;
use crate::report;
use anyhow::Result;
use custodian_core::{JobResult, Status};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

pub(crate) async fn run(args: RunArgs) -> Result<ExitCode> {
    let flags = Overrides {
        concurrency: args.concurrency,
        timeout: args.timeout,
        retries: args.retries,
        retry_delay: args.retry_delay,
    };
    let start = Startup::new(&args.common, flags)?;
    let Some(jobs) = load_jobs(&args.files, args.strict, &start.settings).await? else {
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    };
    super::startup::warn_locations(&jobs, "`run` checks them once, from this machine");
    let start = start.with_fd_limit();
    let alerting = start.local_alerting().await?;
    let started = Instant::now();
    let bar = report::progress(jobs.len(), args.quiet);
    let mut results: Vec<JobResult> = Vec::with_capacity(jobs.len());
    let engine = start.engine();
    let json = args.json;
    // Buffered: a line-buffered stdout costs a write(2) per result, as much CPU as a check.
    // Flushed before the summary, and at the end of the run at the latest.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    // Counted as they come: recounting every result at each failure is quadratic.
    let mut failed = 0usize;
    engine
        .run_all(
            args.threads.unwrap_or(0),
            jobs,
            alerting.as_ref().map(|a| a.room()),
            |r| {
                if json {
                    // A closed stdout (`| head`) ends the output, not the run: results still alert.
                    let _ = writeln!(out, "{}", report::json_line(&r));
                }
                if r.status == Status::Failed {
                    failed += 1;
                    if !bar.is_hidden() {
                        bar.set_message(format!("{failed} failed"));
                    }
                }
                bar.inc(1);
                let accepted = alerting.as_ref().map(|a| a.spawn(r.clone()));
                results.push(r);
                accepted
            },
        )
        .await;
    bar.finish_and_clear();
    let _ = out.flush();
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

/// The exit status of a set of results: 1 if any failed, else 3 if any is unknown, else 0.
fn exit_for(results: &[JobResult]) -> ExitCode {
    if results.iter().any(|r| r.status == Status::Failed) {
        ExitCode::FAILURE
    } else if results.iter().any(|r| r.status == Status::Unknown) {
        ExitCode::from(crate::EXIT_UNKNOWN)
    } else {
        ExitCode::SUCCESS
    }
}
