//! Fan-out of one event to every alerter that wants it, each under a deadline, retried with
//! doubling backoff, failures logged and reported but never propagated to the caller.

use crate::{Alerter, Error};
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

impl Retry {
    /// Rejects values that would never deliver or never give up.
    pub fn validate(&self) -> Result<(), Error> {
        let ok = self.attempts >= 1
            && self.backoff.is_finite()
            && self.backoff >= 0.0
            && self.timeout.is_finite()
            && self.timeout > 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::Config(
                "retry: attempts must be at least 1, backoff zero or more, timeout positive".into(),
            ))
        }
    }
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
        let timeout = Duration::from_secs_f64(self.retry.timeout);
        let mut delay = Duration::from_secs_f64(self.retry.backoff);
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(timeout, alerter.deliver(event)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout(timeout)),
            };
            match result {
                Err(e) if attempt < self.retry.attempts => {
                    tracing::warn!(
                        "alerter {} (attempt {attempt}): {e}; retrying in {delay:?}",
                        alerter.name()
                    );
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                result => {
                    if let Err(e) = &result {
                        tracing::error!(
                            "alerter {}: giving up on {} for {} after {attempt} attempt(s): {e}",
                            alerter.name(),
                            event.kind.word(),
                            event.result.line
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

    #[tokio::test]
    async fn result_events_skip_alerters_that_do_not_want_them() {
        let a = flaky(0, false);
        let d = Dispatcher::new(vec![a.clone()], Retry::default());
        assert!(d.send(&event(EventKind::Result, 'P')).await.is_empty());
        assert_eq!(a.calls.load(Ordering::SeqCst), 0);
    }
}
