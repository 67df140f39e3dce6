//! Test helpers: events for a job that carries secrets, so every render can be checked for leaks.

use custodian_core::state::{AlertEvent, EventKind};
use custodian_core::{Job, JobResult, Status};

/// The password of [`job`]'s URL and options; must never appear in any rendered alert.
pub(crate) const SECRET: &str = "hunter2";

/// An http check with a URL password and a password option.
pub(crate) fn job() -> Job {
    let mut job = Job::new("http", "http://bob:hunter2@127.0.0.1:8080/", None);
    job.options.insert("password".into(), SECRET.into());
    job.line = job
        .scrub("http://bob:hunter2@127.0.0.1:8080/ must run http otherwise 'web down'.")
        .into();
    job.otherwise = Some("web down".into());
    job.file = "t.cfg".into();
    job.lineno = 7;
    job
}

/// An event of `kind` for [`job`]; `status` `F` fails (with the secret in its reason), else passes.
pub(crate) fn event(kind: EventKind, status: char) -> AlertEvent {
    let (status, error) = if status == 'F' {
        (Status::Failed, Some("HTTP 500 for hunter2".to_string()))
    } else {
        (Status::Passed, None)
    };
    AlertEvent {
        kind,
        result: JobResult::new(&job(), status, error, 42, 1),
        at: 1_700_000_300,
        raised_at: Some(1_700_000_000),
    }
}
