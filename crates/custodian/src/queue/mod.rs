//! Queue backends behind `--queue URL` (embedded memory, beanstalkd, Redis), the loop that
//! drains a queue through the worker engine, and the `enqueue`/`worker`/`queue` commands.

mod beanstalk;
pub(crate) mod commands;
#[cfg(test)]
mod contract;
mod drive;
pub(crate) mod memory;
mod redis;
pub(crate) mod resp;

pub(crate) use drive::embedded;

use anyhow::{bail, Context, Result};
use custodian_core::queue::{JobQueue, QueueError};
use custodian_core::Job;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Slack added to a job's worst-case run time before its lease runs out.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Where a queue lives, parsed from `--queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueueUrl {
    Beanstalk {
        addr: String,
        tube: String,
    },
    Redis {
        addr: String,
        db: u32,
        prefix: String,
    },
}

impl QueueUrl {
    /// `beanstalk://HOST:PORT[/TUBE]` or `redis://HOST:PORT[/DB][?prefix=NAME]`.
    pub(crate) fn parse(text: &str) -> Result<QueueUrl> {
        let url = url::Url::parse(text)
            .with_context(|| format!("bad queue URL {:?}", custodian_core::mask_url(text)))?;
        let host = url.host_str().context("queue URL needs a host")?;
        let path = url.path().trim_matches('/');
        let addr = |default: u16| format!("{host}:{}", url.port().unwrap_or(default));
        match url.scheme() {
            "beanstalk" => Ok(QueueUrl::Beanstalk {
                addr: addr(11300),
                tube: beanstalk::tube_name(if path.is_empty() { "custodian" } else { path })?,
            }),
            "redis" => {
                let db = if path.is_empty() {
                    0
                } else {
                    path.parse().context("Redis DB must be a number")?
                };
                let prefix = url
                    .query_pairs()
                    .find(|(k, _)| k == "prefix")
                    .map_or("custodian".to_string(), |(_, v)| v.into_owned());
                Ok(QueueUrl::Redis {
                    addr: addr(6379),
                    db,
                    prefix,
                })
            }
            other => bail!("unknown queue scheme {other:?}: use beanstalk:// or redis://"),
        }
    }

    /// A client for this queue; it connects lazily and reconnects after failures.
    pub(crate) fn open(&self) -> Arc<dyn JobQueue> {
        match self {
            QueueUrl::Beanstalk { addr, tube } => Arc::new(beanstalk::Beanstalk::new(addr, tube)),
            QueueUrl::Redis { addr, db, prefix } => {
                Arc::new(redis::RedisQueue::new(addr, *db, prefix))
            }
        }
    }
}

/// How long a worker may hold `job`: every attempt to its deadline, the delays between them,
/// and a margin. Settings are the enqueuer's; deploy one settings file everywhere.
pub(crate) fn lease_for(
    job: &Job,
    timeout: Duration,
    retries: u32,
    retry_delay: Duration,
) -> Duration {
    let attempts = job.retries.unwrap_or(retries).max(1);
    let timeout = job.timeout.map_or(timeout, Duration::from_secs);
    timeout * attempts + retry_delay * (attempts - 1) + LEASE_MARGIN
}

/// One log line when the broker goes away and one when it is back, however many retries.
#[derive(Default)]
pub(crate) struct Outage {
    since: Mutex<Option<Instant>>,
}

impl Outage {
    pub(crate) fn failed(&self, e: &QueueError) {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        if since.is_none() {
            // A broker's error text is peer text: escaped before it reaches the log.
            let e = custodian_core::outcome::escape_controls(&e.to_string());
            tracing::error!("{e}; retrying with backoff");
            *since = Some(Instant::now());
        }
    }

    pub(crate) fn ok(&self) {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = since.take() {
            tracing::warn!(
                "queue broker is back after {:.1}s",
                t.elapsed().as_secs_f64()
            );
        }
    }
}

/// Exponential backoff from 100 ms to 5 s.
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }

    pub(crate) fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        now
    }
}

/// Runs `op` until it succeeds or `limit` has passed since the first try, backing off between
/// attempts and reporting the outage once.
pub(crate) async fn retry<'a, T>(
    outage: &Outage,
    limit: Duration,
    mut op: impl FnMut() -> custodian_core::queue::QueueFuture<'a, T>,
) -> Result<T, QueueError> {
    let give_up = Instant::now() + limit;
    let mut backoff = Backoff::new();
    loop {
        match op().await {
            Ok(v) => {
                outage.ok();
                return Ok(v);
            }
            Err(e) if Instant::now() >= give_up => return Err(e),
            Err(e) => {
                outage.failed(&e);
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_backend_address_and_tube_or_db() {
        assert_eq!(
            QueueUrl::parse("beanstalk://127.0.0.1:11300").ok(),
            Some(QueueUrl::Beanstalk {
                addr: "127.0.0.1:11300".into(),
                tube: "custodian".into()
            })
        );
        assert_eq!(
            QueueUrl::parse("beanstalk://127.0.0.1/night").ok(),
            Some(QueueUrl::Beanstalk {
                addr: "127.0.0.1:11300".into(),
                tube: "night".into()
            })
        );
        assert_eq!(
            QueueUrl::parse("redis://127.0.0.1:6380/2?prefix=t1").ok(),
            Some(QueueUrl::Redis {
                addr: "127.0.0.1:6380".into(),
                db: 2,
                prefix: "t1".into()
            })
        );
        assert!(QueueUrl::parse("redis://127.0.0.1/x").is_err());
        assert!(QueueUrl::parse("amqp://127.0.0.1/").is_err());
        assert!(QueueUrl::parse("beanstalk://127.0.0.1/bad tube!").is_err());
    }

    #[test]
    fn lease_covers_every_attempt_and_delay() {
        let mut job = Job::new("tcp", "127.0.0.1", Some(1));
        let s = Duration::from_secs;
        assert_eq!(lease_for(&job, s(30), 5, s(2)), s(150 + 8 + 5));
        job.timeout = Some(1);
        job.retries = Some(1);
        assert_eq!(lease_for(&job, s(30), 5, s(2)), s(6));
    }

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        let mut b = Backoff::new();
        let steps: Vec<u64> = (0..8).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
