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
        /// From the URL's `user:password@`; sent as `AUTH` on every new connection.
        auth: Option<RedisAuth>,
    },
}

/// Redis credentials. Debug output masks the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedisAuth {
    pub(crate) user: Option<String>,
    pub(crate) password: String,
}

impl std::fmt::Debug for RedisAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuth")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// Undoes the URL's percent-encoding of a user name or password.
fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .context("bad %-escape in the queue URL's credentials")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("queue URL credentials are not UTF-8")
}

/// A result sent back to `serve` on the results queue ([`QueueUrl::results`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Report {
    /// When the worker finished it (unix seconds).
    pub(crate) at: u64,
    /// The worker's name.
    pub(crate) worker: String,
    pub(crate) result: custodian_core::JobResult,
}

impl Report {
    /// As a queue entry: unique, so that two equal results are never merged as twins.
    pub(crate) fn pending(&self) -> custodian_core::queue::Pending {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        custodian_core::queue::Pending {
            id: format!("{}-{}-{}-{seq}", self.result.id, self.worker, self.at),
            body: serde_json::to_vec(self).unwrap_or_default(),
            // serve acknowledges as it reads; a long lease only matters if serve dies mid-batch.
            lease: Duration::from_secs(300),
        }
    }
}

impl QueueUrl {
    /// `beanstalk://HOST:PORT[/TUBE]` or `redis://[[USER]:PASSWORD@]HOST:PORT[/DB][?prefix=NAME]`.
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
                let auth = match url.password() {
                    Some(p) => Some(RedisAuth {
                        user: Some(url.username())
                            .filter(|u| !u.is_empty())
                            .map(percent_decode)
                            .transpose()?,
                        password: percent_decode(p)?,
                    }),
                    None => None,
                };
                Ok(QueueUrl::Redis {
                    addr: addr(6379),
                    db,
                    prefix,
                    auth,
                })
            }
            other => bail!("unknown queue scheme {other:?}: use beanstalk:// or redis://"),
        }
    }

    /// Where workers send back the results of jobs that `serve` scheduled: the tube
    /// `<tube>.results`, or the Redis prefix `<prefix>.results`, on the same broker.
    pub(crate) fn results(&self) -> Result<QueueUrl> {
        Ok(match self {
            QueueUrl::Beanstalk { addr, tube } => QueueUrl::Beanstalk {
                addr: addr.clone(),
                tube: beanstalk::tube_name(&format!("{tube}.results"))?,
            },
            QueueUrl::Redis {
                addr,
                db,
                prefix,
                auth,
            } => QueueUrl::Redis {
                addr: addr.clone(),
                db: *db,
                prefix: format!("{prefix}.results"),
                auth: auth.clone(),
            },
        })
    }

    /// A client for this queue; it connects lazily and reconnects after failures.
    pub(crate) fn open(&self) -> Arc<dyn JobQueue> {
        match self {
            QueueUrl::Beanstalk { addr, tube } => Arc::new(beanstalk::Beanstalk::new(addr, tube)),
            QueueUrl::Redis {
                addr,
                db,
                prefix,
                auth,
            } => Arc::new(redis::RedisQueue::new(addr, *db, prefix, auth.clone())),
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

/// Runs `op` until it succeeds, the broker refuses it for good, or `limit` has passed since
/// the first try, backing off between attempts and reporting the outage once.
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
            // A refusal (bad password, no such database) stays a refusal: stop at once.
            Err(e @ QueueError::Refused(_)) => return Err(e),
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
                prefix: "t1".into(),
                auth: None,
            })
        );
        let auth = |u: &str| match QueueUrl::parse(u) {
            Ok(QueueUrl::Redis { auth, .. }) => auth,
            _ => None,
        };
        assert_eq!(
            auth("redis://:p%40ss@127.0.0.1/1"),
            Some(RedisAuth {
                user: None,
                password: "p@ss".into()
            })
        );
        assert_eq!(
            auth("redis://ops:pw@127.0.0.1/1").and_then(|a| a.user),
            Some("ops".into())
        );
        assert!(
            !format!("{:?}", QueueUrl::parse("redis://:sekrit@127.0.0.1/1").ok())
                .contains("sekrit")
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
