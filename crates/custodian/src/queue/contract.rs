//! The queue contract, run against every backend: embedded, and the real beanstalkd and Redis
//! started from tests/peers (each test on its own tube or key prefix).

use super::memory::MemoryQueue;
use super::QueueUrl;
use custodian_core::queue::{encode, JobQueue, Lease, Pending};
use custodian_core::Job;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

/// A fresh, empty queue of each backend.
fn backends() -> Vec<(&'static str, Arc<dyn JobQueue>)> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let name = format!("contract-{}-{n}", std::process::id());
    let peers = custodian_testpeers::peers();
    let open = |url: String| QueueUrl::parse(&url).expect("queue url").open();
    vec![
        ("memory", Arc::new(MemoryQueue::new(true))),
        (
            "beanstalk",
            open(format!("beanstalk://{}/{name}", peers.get("beanstalk"))),
        ),
        (
            "redis",
            open(format!(
                "redis://{}/0?prefix={name}",
                peers.get("redis_queue")
            )),
        ),
    ]
}

fn jobs(ports: std::ops::Range<u16>, lease: Duration) -> Vec<Pending> {
    ports
        .map(|p| encode(&Job::new("tcp", "127.0.0.1", Some(p)), lease))
        .collect()
}

async fn take(q: &dyn JobQueue) -> Option<Lease> {
    let mut got = q
        .reserve(1, Duration::from_millis(300))
        .await
        .expect("reserve");
    assert!(got.len() <= 1, "asked for one job, got {}", got.len());
    got.pop()
}

async fn ack(q: &dyn JobQueue, lease: Lease) {
    q.ack(&[lease]).await.expect("ack");
}

fn port_of(lease: &Lease) -> Option<u16> {
    custodian_core::queue::decode(&lease.body).ok()?.port
}

#[tokio::test]
async fn identical_pending_jobs_are_stored_once() {
    for (name, q) in backends() {
        let r = q.put(&jobs(1..4, LONG)).await.expect("put");
        assert_eq!((r.added, r.duplicates), (3, 0), "{name}");
        let r = q.put(&jobs(2..6, LONG)).await.expect("put");
        assert_eq!((r.added, r.duplicates), (2, 2), "{name}");
        let s = q.stats().await.expect("stats");
        assert_eq!((s.pending, s.reserved, s.buried), (5, 0, 0), "{name}");
        assert!(s.oldest.is_some(), "{name}: oldest age");
        // A reserved job is no longer pending: the same job may be queued again.
        let first = take(q.as_ref()).await.expect("job");
        assert_eq!(
            q.put(&jobs(1..2, LONG)).await.expect("put").added,
            1,
            "{name}"
        );
        ack(q.as_ref(), first).await;
        assert_eq!(q.flush().await.expect("flush"), 5, "{name}");
    }
}

#[tokio::test]
async fn jobs_come_out_in_order_and_ack_removes_them() {
    for (name, q) in backends() {
        q.put(&jobs(10..13, LONG)).await.expect("put");
        let mut seen = Vec::new();
        while let Some(lease) = take(q.as_ref()).await {
            seen.push(port_of(&lease));
            let s = q.stats().await.expect("stats");
            assert_eq!(s.reserved, 1, "{name}");
            ack(q.as_ref(), lease).await;
        }
        assert_eq!(seen, [Some(10), Some(11), Some(12)], "{name}");
        let s = q.stats().await.expect("stats");
        assert_eq!((s.pending, s.reserved, s.oldest), (0, 0, None), "{name}");
    }
}

#[tokio::test]
async fn batches_are_reserved_and_acked_together() {
    for (name, q) in backends() {
        q.put(&jobs(50..55, LONG)).await.expect("put");
        let first = q.reserve(3, LONG).await.expect("reserve");
        let ports: Vec<_> = first.iter().map(port_of).collect();
        assert_eq!(ports, [Some(50), Some(51), Some(52)], "{name}");
        let rest = q.reserve(10, LONG).await.expect("reserve");
        assert_eq!(rest.len(), 2, "{name}");
        q.ack(&first).await.expect("ack");
        q.ack(&rest).await.expect("ack");
        let s = q.stats().await.expect("stats");
        assert_eq!((s.pending, s.reserved), (0, 0), "{name}");
    }
}

#[tokio::test]
async fn released_jobs_are_delivered_again() {
    for (name, q) in backends() {
        q.put(&jobs(20..21, LONG)).await.expect("put");
        let lease = take(q.as_ref()).await.expect("job");
        assert!(take(q.as_ref()).await.is_none(), "{name}: only one job");
        q.release(&lease).await.expect("release");
        let again = take(q.as_ref()).await.expect("released job");
        assert_eq!(port_of(&again), Some(20), "{name}");
        ack(q.as_ref(), again).await;
    }
}

#[tokio::test]
async fn an_expired_lease_puts_the_job_back() {
    for (name, q) in backends() {
        q.put(&jobs(30..31, Duration::from_secs(1)))
            .await
            .expect("put");
        let _lost = take(q.as_ref()).await.expect("job");
        let t = Instant::now();
        let again = loop {
            if let Some(l) = take(q.as_ref()).await {
                break l;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{name}: never redelivered"
            );
        };
        assert_eq!(port_of(&again), Some(30), "{name}");
        assert!(
            t.elapsed() >= Duration::from_millis(500),
            "{name}: redelivered too early"
        );
        ack(q.as_ref(), again).await;
    }
}

#[tokio::test]
async fn a_touched_lease_starts_again() {
    for (name, q) in backends() {
        q.put(&jobs(35..36, Duration::from_secs(2)))
            .await
            .expect("put");
        let held = take(q.as_ref()).await.expect("job");
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        q.touch(std::slice::from_ref(&held)).await.expect("touch");
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(
            take(q.as_ref()).await.is_none(),
            "{name}: expired despite the touch"
        );
        let again = loop {
            if let Some(l) = take(q.as_ref()).await {
                break l;
            }
            assert!(
                t.elapsed() < Duration::from_secs(8),
                "{name}: never expired"
            );
        };
        assert_eq!(port_of(&again), Some(35), "{name}");
        ack(q.as_ref(), again).await;
    }
}

#[tokio::test]
async fn buried_jobs_stay_out_and_flush_clears_them() {
    for (name, q) in backends() {
        q.put(&jobs(40..42, LONG)).await.expect("put");
        let lease = take(q.as_ref()).await.expect("job");
        q.bury(&lease, "cannot decode job: test")
            .await
            .expect("bury");
        let s = q.stats().await.expect("stats");
        assert_eq!((s.pending, s.reserved, s.buried), (1, 0, 1), "{name}");
        let next = take(q.as_ref()).await.expect("the other job");
        assert_eq!(port_of(&next), Some(41), "{name}");
        ack(q.as_ref(), next).await;
        assert!(
            take(q.as_ref()).await.is_none(),
            "{name}: buried job came back"
        );
        assert_eq!(q.flush().await.expect("flush"), 1, "{name}");
        assert_eq!(q.stats().await.expect("stats").buried, 0, "{name}");
    }
}

#[tokio::test]
async fn an_empty_queue_answers_within_the_wait() {
    for (name, q) in backends() {
        let t = Instant::now();
        assert!(
            q.reserve(5, Duration::from_millis(200))
                .await
                .expect("reserve")
                .is_empty(),
            "{name}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{name}: waited {:?}",
            t.elapsed()
        );
    }
}

#[tokio::test]
async fn an_unreachable_broker_is_an_unavailable_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    for url in [format!("beanstalk://{addr}"), format!("redis://{addr}")] {
        let q = QueueUrl::parse(&url).expect("url").open();
        let e = q.stats().await.expect_err("no broker");
        assert!(
            matches!(e, custodian_core::queue::QueueError::Unavailable(_)),
            "{url}: {e}"
        );
    }
}

/// Every delivery is counted, whether the lease ran out or the job was given back, and the
/// worker buries the job on the delivery after `max_deliveries` instead of running it.
#[tokio::test]
async fn a_job_delivered_too_often_is_buried_and_never_handed_out_again() {
    use super::drive::{drive, Options};
    let max = 3;
    for (name, q) in backends() {
        q.put(&jobs(60..61, Duration::from_secs(1)))
            .await
            .expect("put");
        // First delivery: its worker "dies" (the lease runs out); then two given back.
        let first = take(q.as_ref()).await.expect("job");
        assert_eq!(first.deliveries, 1, "{name}");
        let t = Instant::now();
        let second = loop {
            if let Some(l) = take(q.as_ref()).await {
                break l;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{name}: never redelivered"
            );
        };
        assert_eq!(second.deliveries, 2, "{name}");
        q.release(&second).await.expect("release");
        for n in 3..=max {
            let lease = take(q.as_ref()).await.expect("released job");
            assert_eq!(lease.deliveries, n, "{name}");
            q.release(&lease).await.expect("release");
        }
        // A worker now gets it a fourth time and buries it without running it.
        let (_keep, stop) = tokio::sync::watch::channel(false);
        let opts = Options {
            concurrency: 2,
            drain: true,
            max_deliveries: max,
            room: None,
        };
        let engine = crate::worker::Engine::new(crate::settings::Settings::default());
        let mut results = 0;
        let driven = drive(Arc::clone(&q), engine, opts, stop, |_| {
            results += 1;
            None
        })
        .await;
        assert!(driven.is_ok(), "{name}: {driven:?}");
        assert_eq!(results, 0, "{name}: the poison job ran");
        let s = q.stats().await.expect("stats");
        assert_eq!((s.pending, s.reserved, s.buried), (0, 0, 1), "{name}");
        assert!(take(q.as_ref()).await.is_none(), "{name}: handed out again");
        let dead = q.dead().await.expect("dead");
        let reasons: Vec<_> = dead.iter().map(|l| l.reason.as_str()).collect();
        assert_eq!(
            reasons,
            ["delivered 4 times without finishing: its workers died or timed out"],
            "{name}"
        );
        assert_eq!(q.flush().await.expect("flush"), 1, "{name}");
    }
}

/// Dead letters are listed with their job and reason, and dropped by handle.
#[tokio::test]
async fn dead_letters_are_listed_and_dropped() {
    for (name, q) in backends() {
        assert!(q.dead().await.expect("dead").is_empty(), "{name}");
        q.put(&jobs(70..73, LONG)).await.expect("put");
        for why in ["first reason", "second reason"] {
            let lease = take(q.as_ref()).await.expect("job");
            q.bury(&lease, why).await.expect("bury");
        }
        let dead = q.dead().await.expect("dead");
        let seen: Vec<_> = dead
            .iter()
            .map(|l| {
                let port = custodian_core::queue::decode(&l.body)
                    .ok()
                    .and_then(|j| j.port);
                (port, l.reason.as_str())
            })
            .collect();
        assert_eq!(
            seen,
            [(Some(70), "first reason"), (Some(71), "second reason")],
            "{name}"
        );
        assert_eq!(q.drop_dead(&dead[..1]).await.expect("drop"), 1, "{name}");
        let left = q.dead().await.expect("dead");
        assert_eq!(left.len(), 1, "{name}");
        assert_eq!(left[0].reason, "second reason", "{name}");
        // A letter already gone is not an error, and not counted.
        assert_eq!(q.drop_dead(&dead).await.expect("drop"), 1, "{name}");
        let s = q.stats().await.expect("stats");
        assert_eq!((s.pending, s.buried), (1, 0), "{name}");
        assert_eq!(q.flush().await.expect("flush"), 1, "{name}");
    }
}
