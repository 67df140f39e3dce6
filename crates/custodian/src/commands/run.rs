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
    // The table needs every result; --json streams them and keeps only the tally.
    let mut results: Vec<JobResult> = Vec::with_capacity(if args.json { 0 } else { jobs.len() });
    let mut tally = report::Tally::default();
    let engine = start.engine();
    let json = args.json;
    // Buffered: a line-buffered stdout costs a write(2) per result, as much CPU as a check.
    // Flushed before the summary, and at the end of the run at the latest.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    engine
        .run_all(
            args.threads.unwrap_or(0),
            jobs,
            alerting.as_ref().map(|a| a.room()),
            |r| {
                // Counted as they come: recounting every result at each failure is quadratic.
                tally.add(r.status);
                if r.status == Status::Failed && !bar.is_hidden() {
                    bar.set_message(format!("{} failed", tally.failed));
                }
                bar.inc(1);
                if json {
                    // A closed stdout (`| head`) ends the output, not the run: results still alert.
                    let _ = report::write_json_line(&mut out, &r);
                }
                let accepted = alerting.as_ref().map(|a| a.spawn(r.clone()));
                if !json {
                    results.push(r);
                }
                accepted
            },
        )
        .await;
    bar.finish_and_clear();
    let _ = out.flush();
    if let Some(a) = &alerting {
        a.finish().await;
    }
    let summary = tally.summary(started.elapsed());
    if json {
        eprintln!("{summary}");
    } else {
        print!("{}", report::table(&results));
        println!("{summary}");
    }
    Ok(exit_for(&tally))
}

/// The exit status of a run: 1 if any check failed, else 3 if any is unknown, else 0.
fn exit_for(tally: &report::Tally) -> ExitCode {
    if tally.failed > 0 {
        ExitCode::FAILURE
    } else if tally.unknown > 0 {
        ExitCode::from(crate::EXIT_UNKNOWN)
    } else {
        ExitCode::SUCCESS
    }
}
