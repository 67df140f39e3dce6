//! Fan-out of one event to every alerter that wants it, each under a deadline, retried with
//! doubling backoff, failures logged and reported but never propagated to the caller.

use crate::{Alerter, Error};
use custodian_core::outcome::escape_controls;
use custodian_core::state::AlertEvent;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How hard each alerter is tried (settings `[alerters.retry]`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Total attempts per event and alerter, the first included (default 4).
    pub attempts: u32,
    /// Seconds before the second attempt; doubled before each further one (default 1).
    pub backoff: f64,
    /// Deadline of one attempt, in seconds (default 10).
    pub timeout: f64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            backoff: 1.0,
            timeout: 10.0,
        }
    }
}

/// Longest `timeout` and `backoff`, in seconds: an hour.
const MAX_SECS: f64 = 3600.0;

/// Most `attempts`.
const MAX_ATTEMPTS: u32 = 100;

impl Retry {
    /// Rejects values that would never deliver or never give up, naming the key and its range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::Config(format!("retry: {what}")));
        if !(1..=MAX_ATTEMPTS).contains(&self.attempts) {
            return bad(format!(
                "`attempts` must be a whole number from 1 to {MAX_ATTEMPTS}, not {}",
                self.attempts
            ));
        }
        // Written so that NaN fails too.
        if !(self.backoff >= 0.0 && self.backoff <= MAX_SECS) {
            return bad(format!(
                "`backoff` must be seconds in [0, {MAX_SECS}], not {:?}",
                self.backoff
            ));
        }
        if !(self.timeout > 0.0 && self.timeout <= MAX_SECS) {
            return bad(format!(
                "`timeout` must be seconds in (0, {MAX_SECS}], not {:?}",
                self.timeout
            ));
        }
        Ok(())
    }

    /// The deadline of one attempt; a value that skipped validation is capped, never a panic.
    fn timeout(&self) -> Duration {
        capped(self.timeout)
    }

    /// The first pause between attempts, capped like [`Retry::timeout`].
    fn backoff(&self) -> Duration {
        capped(self.backoff)
    }
}

/// `secs` as a duration within [0, MAX_SECS]; NaN and negatives become zero.
fn capped(secs: f64) -> Duration {
    let most = Duration::from_secs(MAX_SECS as u64);
    Duration::try_from_secs_f64(secs).map_or(Duration::ZERO, |d| d.min(most))
}

/// What became of one event at one alerter.
#[derive(Debug)]
pub struct Delivery {
    pub alerter: &'static str,
    pub attempts: u32,
    pub result: Result<(), Error>,
}

/// The configured alerters and how to retry them; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Dispatcher {
    alerters: Arc<Vec<Arc<dyn Alerter>>>,
    retry: Retry,
}

impl Dispatcher {
    pub fn new(alerters: Vec<Arc<dyn Alerter>>, retry: Retry) -> Self {
        Dispatcher {
            alerters: Arc::new(alerters),
            retry,
        }
    }

    /// Delivers `event` to every alerter that wants it, all at once; returns when each has
    /// delivered or given up.
    pub async fn send(&self, event: &AlertEvent) -> Vec<Delivery> {
        let jobs = self
            .alerters
            .iter()
            .filter(|a| a.wants(event.kind))
            .map(|a| self.one(a.as_ref(), event));
        futures::future::join_all(jobs).await
    }

    async fn one(&self, alerter: &dyn Alerter, event: &AlertEvent) -> Delivery {
        let timeout = self.retry.timeout();
        let mut delay = self.retry.backoff();
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(timeout, alerter.deliver(event)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout(timeout)),
            };
            match result {
                Err(e) if attempt < self.retry.attempts => {
                    // A receiver's error text (e.g. a webhook's body) is peer text: escaped.
                    tracing::warn!(
                        "alerter {} (attempt {attempt}): {}; retrying in {delay:?}",
                        alerter.name(),
                        escape_controls(&e.to_string())
                    );
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                result => {
                    if let Err(e) = &result {
                        tracing::error!(
                            "alerter {}: giving up on {} for {} after {attempt} attempt(s): {}",
                            alerter.name(),
                            event.kind.word(),
                            event.result.line,
                            escape_controls(&e.to_string())
                        );
                    }
                    return Delivery {
                        alerter: alerter.name(),
                        attempts: attempt,
                        result,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::event;
    use custodian_core::state::EventKind;
    use futures::future::BoxFuture;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `fail` deliveries, or hangs forever when `hang`.
    struct Flaky {
        fail: u32,
        hang: bool,
        calls: AtomicU32,
    }

    impl Alerter for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn deliver<'a>(&'a self, _: &'a AlertEvent) -> BoxFuture<'a, Result<(), Error>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                if self.hang {
                    std::future::pending::<()>().await;
                }
                if n < self.fail {
                    Err(Error::Rejected(format!("call {n}")))
                } else {
                    Ok(())
                }
            })
        }
    }

    fn flaky(fail: u32, hang: bool) -> Arc<Flaky> {
        Arc::new(Flaky {
            fail,
            hang,
            calls: AtomicU32::new(0),
        })
    }

    #[tokio::test]
    async fn retries_until_delivered_and_others_are_not_held_up() {
        let retry = Retry {
            attempts: 3,
            backoff: 0.01,
            timeout: 0.2,
        };
        let (good, broken, hung) = (flaky(1, false), flaky(99, false), flaky(0, true));
        let d = Dispatcher::new(vec![good.clone(), broken.clone(), hung.clone()], retry);
        let out = d.send(&event(EventKind::Raise, 'F')).await;
        assert_eq!(out.len(), 3);
        assert!(out[0].result.is_ok() && out[0].attempts == 2);
        assert!(matches!(out[1].result, Err(Error::Rejected(_))) && out[1].attempts == 3);
        assert!(matches!(out[2].result, Err(Error::Timeout(_))) && out[2].attempts == 3);
        assert_eq!(broken.calls.load(Ordering::SeqCst), 3);
        assert!(Retry::default().validate().is_ok());
        let bad = Retry {
            attempts: 0,
            ..Retry::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn retry_numbers_are_range_checked_and_never_panic() {
        let table = [
            (
                0,
                1.0,
                10.0,
                "`attempts` must be a whole number from 1 to 100, not 0",
            ),
            (
                101,
                1.0,
                10.0,
                "`attempts` must be a whole number from 1 to 100, not 101",
            ),
            (
                4,
                -1.0,
                10.0,
                "`backoff` must be seconds in [0, 3600], not -1.0",
            ),
            (
                4,
                f64::INFINITY,
                10.0,
                "`backoff` must be seconds in [0, 3600], not inf",
            ),
            (
                4,
                1.0,
                1e300,
                "`timeout` must be seconds in (0, 3600], not 1e300",
            ),
            (
                4,
                1.0,
                f64::NAN,
                "`timeout` must be seconds in (0, 3600], not NaN",
            ),
            (
                4,
                1.0,
                0.0,
                "`timeout` must be seconds in (0, 3600], not 0.0",
            ),
        ];
        for (attempts, backoff, timeout, want) in table {
            let retry = Retry {
                attempts,
                backoff,
                timeout,
            };
            let err = retry.validate().expect_err(want).to_string();
            assert!(err.contains(want), "{err}");
            // Even unvalidated, turning it into durations must not panic.
            assert!(retry.timeout() <= Duration::from_secs(3600));
            assert!(retry.backoff() <= Duration::from_secs(3600));
        }
        let edge = Retry {
            attempts: 100,
            backoff: 0.0,
            timeout: 3600.0,
        };
        assert!(edge.validate().is_ok());
    }

    #[tokio::test]
    async fn result_events_skip_alerters_that_do_not_want_them() {
        let a = flaky(0, false);
        let d = Dispatcher::new(vec![a.clone()], Retry::default());
        assert!(d.send(&event(EventKind::Result, 'P')).await.is_empty());
        assert_eq!(a.calls.load(Ordering::SeqCst), 0);
    }
}
