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
    Skipped,
}

/// Turns the last attempt's outcome into a verdict and its error text, honouring `must not run`.
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
            (Status::Failed, Some(format!("could not check: {error}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inversion_flips_up_and_down_but_not_unknown() {
        assert_eq!(judge(&Outcome::up(), false).0, Status::Passed);
        assert_eq!(
            judge(&Outcome::down("x"), false),
            (Status::Failed, Some("x".into()))
        );
        assert_eq!(judge(&Outcome::up(), true).0, Status::Failed);
        assert_eq!(judge(&Outcome::down("x"), true), (Status::Passed, None));
        assert_eq!(judge(&Outcome::unknown("dns"), true).0, Status::Failed);
        assert_eq!(judge(&Outcome::unknown("dns"), false).0, Status::Failed);
    }
}
