//! What a probe found and what the worker made of it.

use serde::{Deserialize, Serialize};

/// The result of one probe attempt against one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// The service answered as it should.
    Up { detail: Option<String> },
    /// The target answered wrongly or not at all; `reason` says how.
    Down { reason: String },
    /// We could not check (our own resolver, bad local setup); never counts as a pass.
    Unknown { error: String },
}

impl Outcome {
    pub fn up() -> Self {
        Outcome::Up { detail: None }
    }

    pub fn down(reason: impl Into<String>) -> Self {
        Outcome::Down {
            reason: reason.into(),
        }
    }

    pub fn unknown(error: impl Into<String>) -> Self {
        Outcome::Unknown {
            error: error.into(),
        }
    }

    /// A probe's verdict from its result: `Ok(detail)` is up, `Err(reason)` is down.
    pub fn from_result<D: Into<Option<String>>>(result: Result<D, String>) -> Self {
        match result {
            Ok(detail) => Outcome::Up {
                detail: detail.into(),
            },
            Err(reason) => Outcome::Down { reason },
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self, Outcome::Up { .. })
    }
}

/// Final verdict for one job after retries, inversion and the time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    /// We could not judge the service (our own error: no socket, our resolver down, an option
    /// this worker cannot parse); never a pass, never a failure of the service.
    Unknown,
    Skipped,
}

/// Turns the last attempt's outcome into a verdict and its error text, honouring `must not run`;
/// an unknown outcome stays unknown either way (our error is never a pass).
pub fn judge(outcome: &Outcome, inverted: bool) -> (Status, Option<String>) {
    match (outcome, inverted) {
        (Outcome::Up { .. }, false) => (Status::Passed, None),
        (Outcome::Down { reason }, false) => (Status::Failed, Some(reason.clone())),
        (Outcome::Up { detail }, true) => (
            Status::Failed,
            Some(match detail {
                Some(d) => format!("service is running but must not be ({d})"),
                None => "service is running but must not be".to_string(),
            }),
        ),
        (Outcome::Down { .. }, true) => (Status::Passed, None),
        (Outcome::Unknown { error }, _) => {
            (Status::Unknown, Some(format!("could not check: {error}")))
        }
    }
}

/// What became of one job: the fields of `custodian run --json`, with secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job's stable identity ([`crate::Job::id`]).
    pub id: String,
    #[serde(rename = "type")]
    pub probe: String,
    pub target: String,
    pub line: String,
    pub file: String,
    pub lineno: u32,
    pub status: Status,
    /// Why it failed or was skipped (secrets scrubbed).
    pub error: Option<String>,
    pub otherwise: Option<String>,
    pub subject: Option<String>,
    /// Time the attempts took, retry delays included, time queued for a slot not.
    pub duration_ms: u64,
    pub attempts: u32,
}

impl JobResult {
    /// A result for `job` with everything but the verdict filled in; secrets in `error` masked.
    pub fn new(
        job: &crate::Job,
        status: Status,
        error: Option<String>,
        duration_ms: u64,
        attempts: u32,
    ) -> Self {
        JobResult {
            id: job.id(),
            probe: job.probe.clone(),
            target: job.display_target(),
            line: job.line.clone(),
            file: job.file.clone(),
            lineno: job.lineno,
            status,
            error: error.map(|e| job.scrub(&e)),
            otherwise: job.otherwise.clone(),
            subject: job.subject.clone(),
            duration_ms,
            attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_outcomes() {
        assert_eq!(
            Outcome::from_result(Ok::<_, String>("v1".to_string())),
            Outcome::Up {
                detail: Some("v1".into())
            }
        );
        assert_eq!(
            Outcome::from_result(Ok::<Option<String>, _>(None)),
            Outcome::up()
        );
        assert_eq!(
            Outcome::from_result::<String>(Err("refused".into())),
            Outcome::down("refused")
        );
    }

    #[test]
    fn inversion_flips_up_and_down_but_not_unknown() {
        assert_eq!(judge(&Outcome::up(), false).0, Status::Passed);
        assert_eq!(
            judge(&Outcome::down("x"), false),
            (Status::Failed, Some("x".into()))
        );
        assert_eq!(judge(&Outcome::up(), true).0, Status::Failed);
        assert_eq!(judge(&Outcome::down("x"), true), (Status::Passed, None));
        assert_eq!(judge(&Outcome::unknown("dns"), true).0, Status::Unknown);
        assert_eq!(judge(&Outcome::unknown("dns"), false).0, Status::Unknown);
    }

    #[test]
    fn result_scrubs_secrets_from_errors() {
        let mut job = crate::Job::new("http", "http://u:hunter2@127.0.0.1/", Some(80));
        job.options.insert("password".into(), "pw123".into());
        let r = JobResult::new(
            &job,
            Status::Failed,
            Some("bad login pw123 hunter2".into()),
            5,
            1,
        );
        assert_eq!(r.error.as_deref(), Some("bad login ******** ********"));
        assert_eq!(r.target, "http://u:********@127.0.0.1/");
    }
}
