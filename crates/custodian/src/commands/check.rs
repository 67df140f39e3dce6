//! `custodian check`: parse and validate test files without probing anything.

use super::startup::{load_each, load_jobs};
use crate::cli::CheckArgs;
use crate::settings::Settings;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub(crate) async fn check(args: CheckArgs) -> Result<ExitCode> {
    let settings = Settings::load(args.common.settings.as_deref())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let Some(jobs) = load_jobs(&args.files, args.strict, &settings).await? else {
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        };
        for job in &jobs {
            writeln!(out, "{}", crate::report::job_json(job))?;
        }
        // The process ends here: the kernel takes the memory back at once, where freeing a
        // quarter of a million jobs one by one costs a noticeable share of the check.
        std::mem::forget(jobs);
    } else {
        // Counted as planned, never kept: memory stays that of the files, not of their jobs.
        let mut count = 0usize;
        if !load_each(&args.files, args.strict, &settings, &mut |_| count += 1).await? {
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        }
        writeln!(
            out,
            "{count} check(s) in {} file(s): valid",
            args.files.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
