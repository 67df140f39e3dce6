//! The job queue contract every backend (embedded, beanstalkd, Redis) fulfils, and the wire
//! envelope jobs travel in. Pure: backends with their I/O live in the binary.
//!
//! Delivery is at-least-once: [`JobQueue::reserve`] leases a job, [`JobQueue::ack`] removes it
//! once its outcome was handed on; a lease that runs out (its worker died) makes the job pending
//! again. Identical pending jobs (same [`Job::id`]) are stored once.

use crate::Job;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, so the trait stays object safe without an async-trait dependency.
pub type QueueFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, QueueError>> + Send + 'a>>;

/// Why a queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The broker could not be reached or the connection broke; worth retrying.
    #[error("queue broker unreachable: {0}")]
    Unavailable(String),
    /// The broker answered something this client does not understand.
    #[error("queue broker protocol error: {0}")]
    Protocol(String),
    /// The broker refused us for good (bad password, no such database, a job too big):
    /// retrying cannot help, so the command stops with this reason.
    #[error("queue broker refused: {0}")]
    Refused(String),
}

/// A job ready to be put: its identity, its encoded body and how long a worker may hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// [`Job::id`]: pending jobs with equal ids are stored once.
    pub id: String,
    /// The job's JSON ([`encode`]).
    pub body: Vec<u8>,
    /// Lease length: after this long without an ack the job is delivered again.
    pub lease: Duration,
}

/// A reserved job: the backend's handle for ack/release/bury, and the raw body (decoding is the
/// worker's business, so an undecodable body can be buried with its reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub handle: String,
    pub body: Vec<u8>,
    /// How many times the job has been reserved, this time included: a job whose workers keep
    /// dying or running late shows a growing count, so the worker can bury it.
    pub deliveries: u32,
}

/// A buried job as `custodian queue dead` shows it: the backend's handle for
/// [`JobQueue::drop_dead`], the job's body and why it was buried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub handle: String,
    pub body: Vec<u8>,
    pub reason: String,
}

impl DeadLetter {
    /// Reads a stored letter, JSON `{reason, body}` (the form both brokers keep).
    pub fn parse(handle: String, raw: &[u8]) -> DeadLetter {
        let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
        let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
        DeadLetter {
            handle,
            body: field("body").unwrap_or_default().as_bytes().to_vec(),
            reason: field("reason")
                .unwrap_or("unreadable dead letter")
                .to_string(),
        }
    }
}

/// What `custodian queue status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Waiting to be reserved.
    pub pending: u64,
    /// Leased to a worker and not yet acknowledged.
    pub reserved: u64,
    /// Dead-lettered with a reason.
    pub buried: u64,
    /// Age of the oldest pending job, if any.
    pub oldest: Option<Duration>,
}

/// Counts from [`JobQueue::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PutReport {
    pub added: u64,
    /// Already pending, not added again.
    pub duplicates: u64,
}

/// A job queue. Handles are only meaningful to the queue that issued them.
pub trait JobQueue: Send + Sync {
    /// Adds jobs in order, skipping any whose id is already pending.
    fn put<'a>(&'a self, jobs: &'a [Pending]) -> QueueFuture<'a, PutReport>;
    /// Leases up to `max` pending jobs in order, waiting up to `wait` for the first; empty when
    /// there is none (a queue may also answer empty sooner, once something else changed, such
    /// as a job acknowledged, so that a caller waiting for the queue to drain sees it at once).
    fn reserve(&self, max: usize, wait: Duration) -> QueueFuture<'_, Vec<Lease>>;
    /// Removes finished jobs. Acking a lease that already expired is not an error.
    fn ack<'a>(&'a self, leases: &'a [Lease]) -> QueueFuture<'a, ()>;
    /// Restarts the leases still held, each for its full length from now, so jobs waiting
    /// their turn in a busy worker are not handed to another one.
    fn touch<'a>(&'a self, leases: &'a [Lease]) -> QueueFuture<'a, ()>;
    /// Gives a job back unfinished: pending again at once.
    fn release<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()>;
    /// Dead-letters a job that must not be retried, recording why.
    fn bury<'a>(&'a self, lease: &'a Lease, reason: &'a str) -> QueueFuture<'a, ()>;
    /// Every dead letter, oldest first.
    fn dead(&self) -> QueueFuture<'_, Vec<DeadLetter>>;
    /// Deletes these dead letters; returns how many went (one already gone is not an error).
    fn drop_dead<'a>(&'a self, letters: &'a [DeadLetter]) -> QueueFuture<'a, u64>;
    /// Counts of pending, reserved and buried jobs.
    fn stats(&self) -> QueueFuture<'_, QueueStats>;
    /// Drops every pending and buried job (reserved ones finish); returns how many went.
    fn flush(&self) -> QueueFuture<'_, u64>;
}

/// A job's queue body: its versioned JSON.
pub fn encode(job: &Job, lease: Duration) -> Pending {
    Pending {
        id: job.id(),
        body: serde_json::to_vec(job).unwrap_or_default(),
        lease,
    }
}

/// Reads a queue body back into a job; the error says why it cannot be run.
pub fn decode(body: &[u8]) -> Result<Job, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON job: {e}"))?;
    let v = value.get("v").and_then(serde_json::Value::as_u64);
    if v != Some(u64::from(crate::WIRE_VERSION)) {
        return Err(format!(
            "job wire version {} is not {}",
            v.map_or("missing".to_string(), |v| v.to_string()),
            crate::WIRE_VERSION
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("malformed job: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_survives_the_wire() {
        let mut job = Job::new("tcp", "127.0.0.1", Some(22));
        job.options.insert("banner".into(), "SSH".into());
        let p = encode(&job, Duration::from_secs(9));
        assert_eq!(p.id, job.id());
        assert_eq!(decode(&p.body), Ok(job));
    }

    #[test]
    fn dead_letters_are_read_back_whatever_they_hold() {
        let l = DeadLetter::parse("7".into(), br#"{"reason":"why","body":"{}"}"#);
        assert_eq!((l.reason.as_str(), l.body.as_slice()), ("why", &b"{}"[..]));
        let bad = DeadLetter::parse("8".into(), b"\xff");
        assert_eq!(bad.reason, "unreadable dead letter");
        assert!(bad.body.is_empty());
    }

    #[test]
    fn undecodable_bodies_say_why() {
        assert!(decode(b"\xff").unwrap_err().starts_with("not a JSON job"));
        assert_eq!(
            decode(br#"{"v":99}"#).unwrap_err(),
            "job wire version 99 is not 1"
        );
        assert!(decode(br#"{"v":1,"type":"tcp"}"#)
            .unwrap_err()
            .starts_with("malformed job"));
    }
}
