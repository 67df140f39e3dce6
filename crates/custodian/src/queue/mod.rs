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

pub(crate) use drive::{embedded, stopped};

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
        /// Where and how: address or socket, TLS, database, credentials (never printed).
        server: custodian_alerters::redis::RedisServer,
        prefix: String,
    },
}

/// A result sent back to `serve` on the results queue ([`QueueUrl::results`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Report {
    /// When the worker finished it (unix seconds).
    pub(crate) at: u64,
    /// The worker's name.
    pub(crate) worker: String,
    /// The worker's location (`worker --location`); `None`: the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) location: Option<String>,
    /// Unix milliseconds when it was put on the results queue (for the time from a location's
    /// answer to the verdict); 0 from older workers.
    #[serde(default)]
    pub(crate) sent_ms: u64,
    pub(crate) result: custodian_core::JobResult,
}

/// The location of workers started without `--location`, whose queue is the URL's own.
pub(crate) const DEFAULT_LOCATION: &str = "default";

/// How often a worker says it is alive on the workers queue ([`QueueUrl::workers`]).
pub(crate) const BEAT_EVERY: Duration = Duration::from_secs(5);

/// A worker's heartbeat: who, where, when. Its queue id is the worker's name, so a worker
/// never has more than one pending (the queue skips a twin), whether or not `serve` reads them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Beat {
    pub(crate) worker: String,
    pub(crate) location: String,
    /// Unix seconds when it was sent.
    pub(crate) at: u64,
}

impl Beat {
    pub(crate) fn pending(&self) -> custodian_core::queue::Pending {
        custodian_core::queue::Pending {
            id: format!("beat-{}", self.worker),
            body: serde_json::to_vec(self).unwrap_or_default(),
            lease: Duration::from_secs(60),
        }
    }
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
    /// `beanstalk://HOST:PORT[/TUBE]`, `redis://[[USER]:PASSWORD@]HOST:PORT[/DB][?prefix=NAME]`,
    /// `rediss://...` (TLS; `&ca_file=PEM` adds CAs to the system's) or
    /// `unix:///PATH?db=N&pass=PASSWORD&prefix=NAME`.
    pub(crate) fn parse(text: &str) -> Result<QueueUrl> {
        let url = url::Url::parse(text)
            .with_context(|| format!("bad queue URL {:?}", custodian_core::mask_url(text)))?;
        let path = url.path().trim_matches('/');
        let addr = |default: u16| -> Result<String> {
            let host = url.host_str().context("queue URL needs a host")?;
            Ok(format!("{host}:{}", url.port().unwrap_or(default)))
        };
        match url.scheme() {
            "beanstalk" => Ok(QueueUrl::Beanstalk {
                addr: addr(11300)?,
                tube: beanstalk::tube_name(if path.is_empty() { "custodian" } else { path })?,
            }),
            "redis" | "rediss" | "unix" | "redis+unix" => {
                let server = custodian_alerters::redis::RedisServer::parse(text)?;
                let prefix = url
                    .query_pairs()
                    .find(|(k, _)| k == "prefix")
                    .map_or("custodian".to_string(), |(_, v)| v.into_owned());
                Ok(QueueUrl::Redis { server, prefix })
            }
            other => bail!(
                "unknown queue scheme {other:?}: use beanstalk://, redis://, rediss:// or unix://"
            ),
        }
    }

    /// Where workers send back the results of jobs that `serve` scheduled: the tube
    /// `<tube>.results`, or the Redis prefix `<prefix>.results`, on the same broker.
    pub(crate) fn results(&self) -> Result<QueueUrl> {
        self.suffixed("results")
    }

    /// The queue of one location's workers: `<tube>.at.<location>` or `<prefix>.at.<location>`
    /// on the same broker; the default location's is this queue itself.
    pub(crate) fn at(&self, location: &str) -> Result<QueueUrl> {
        if location == DEFAULT_LOCATION {
            return Ok(self.clone());
        }
        self.suffixed(&format!("at.{location}"))
    }

    /// Where workers send heartbeats ([`Beat`]): `<tube>.workers` or `<prefix>.workers`.
    pub(crate) fn workers(&self) -> Result<QueueUrl> {
        self.suffixed("workers")
    }

    fn suffixed(&self, suffix: &str) -> Result<QueueUrl> {
        Ok(match self {
            QueueUrl::Beanstalk { addr, tube } => QueueUrl::Beanstalk {
                addr: addr.clone(),
                tube: beanstalk::tube_name(&format!("{tube}.{suffix}"))?,
            },
            QueueUrl::Redis { server, prefix } => QueueUrl::Redis {
                server: server.clone(),
                prefix: format!("{prefix}.{suffix}"),
            },
        })
    }

    /// A client for `enqueue`, a run that ends: on beanstalkd it keeps what it put in a file
    /// beside `state_file`, for the next run's duplicate check (see beanstalk.rs).
    pub(crate) fn open_remembering(&self, state_file: &std::path::Path) -> Arc<dyn JobQueue> {
        match self {
            QueueUrl::Beanstalk { addr, tube } => Arc::new(beanstalk::Beanstalk::remembering(
                addr,
                tube,
                beanstalk::file_for(state_file, addr, tube),
            )),
            QueueUrl::Redis { .. } => self.open(),
        }
    }

    /// A client for this queue; it connects lazily and reconnects after failures.
    pub(crate) fn open(&self) -> Arc<dyn JobQueue> {
        match self {
            QueueUrl::Beanstalk { addr, tube } => Arc::new(beanstalk::Beanstalk::new(addr, tube)),
            QueueUrl::Redis { server, prefix } => {
                Arc::new(redis::RedisQueue::new(server.clone(), prefix))
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
        let redis = |u: &str| match QueueUrl::parse(u) {
            Ok(QueueUrl::Redis { server, prefix }) => Some((server, prefix)),
            _ => None,
        };
        let (server, prefix) = redis("redis://127.0.0.1:6380/2?prefix=t1").expect("redis");
        assert_eq!(server.to_string(), "redis://127.0.0.1:6380/2");
        assert_eq!(prefix, "t1");
        let (server, _) = redis("redis://:p%40ss@127.0.0.1/1").expect("auth");
        assert_eq!(
            (server.user, server.password.as_deref()),
            (None, Some("p@ss"))
        );
        let (server, _) = redis("redis://ops:pw@127.0.0.1/1").expect("user");
        assert_eq!(server.user.as_deref(), Some("ops"));
        let (server, prefix) = redis("rediss://127.0.0.1:6390/3").expect("tls");
        assert!(server.tls && server.db == 3 && prefix == "custodian");
        let (server, prefix) = redis("unix:///run/r.sock?db=2&prefix=p").expect("unix");
        assert_eq!(server.to_string(), "unix:///run/r.sock?db=2");
        assert_eq!(prefix, "p");
        assert!(
            !format!("{:?}", QueueUrl::parse("redis://:sekrit@127.0.0.1/1").ok())
                .contains("sekrit")
        );
        assert!(QueueUrl::parse("redis://127.0.0.1/x").is_err());
        assert!(QueueUrl::parse("amqp://127.0.0.1/").is_err());
        assert!(QueueUrl::parse("beanstalk://127.0.0.1/bad tube!").is_err());
    }

    #[test]
    fn locations_and_heartbeats_have_their_own_queues_on_the_same_broker() {
        let b = QueueUrl::parse("beanstalk://127.0.0.1/night").expect("url");
        let tube = |u: QueueUrl| match u {
            QueueUrl::Beanstalk { tube, .. } => tube,
            QueueUrl::Redis { prefix, .. } => prefix,
        };
        assert_eq!(tube(b.at("lon1").expect("at")), "night.at.lon1");
        assert_eq!(tube(b.at(DEFAULT_LOCATION).expect("default")), "night");
        assert_eq!(tube(b.workers().expect("workers")), "night.workers");
        assert_eq!(tube(b.results().expect("results")), "night.results");
        let r = QueueUrl::parse("redis://127.0.0.1/1?prefix=p").expect("url");
        assert_eq!(tube(r.at("ams-1").expect("at")), "p.at.ams-1");
        assert_eq!(tube(r.workers().expect("workers")), "p.workers");
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
