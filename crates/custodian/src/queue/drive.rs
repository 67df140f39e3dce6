//! Draining a queue through the engine: reserve up to N jobs, run each, hand its result on,
//! then acknowledge. Used by `worker` (any backend) and by `run` (the embedded queue), so both
//! share one path. Undecodable jobs and crashed probes are buried with their reason.

use super::memory::MemoryQueue;
use super::{retry, Backoff, Outage};
use crate::alerting::Accepted;
use crate::threads::Threads;
use crate::worker::Engine;
use custodian_core::queue::{self, JobQueue, Lease, Pending, QueueError};
use custodian_core::{Job, JobResult, Status};
use futures::FutureExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// After a stop signal, how long jobs in flight may still finish before they are released.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long one reserve call waits for a job.
const RESERVE_WAIT: Duration = Duration::from_millis(200);
/// How long an ack, release or bury keeps retrying through a broker outage.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// Most jobs reserved, or acknowledged, in one exchange with the broker.
const BATCH: usize = 64;
/// How often held leases are restarted; well under the shortest lease (the 5 s margin).
const TOUCH_EVERY: Duration = Duration::from_secs(2);

/// How a worker drains its queue.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Jobs held (and run) at once.
    pub(crate) concurrency: usize,
    /// Exit once the queue is empty and nothing is in flight anywhere.
    pub(crate) drain: bool,
    /// Deliveries a job may have without finishing; the next one buries it instead.
    pub(crate) max_deliveries: u32,
    /// Room downstream (alerting's pending deliveries): a result is handed on, and its job
    /// acknowledged, only once a slot is free, so a slow receiver slows the worker instead of
    /// piling up tasks.
    pub(crate) room: Option<Arc<Semaphore>>,
}

/// Why a lease must not run: reserved more than `max` times, so each worker that held it died
/// or ran out its lease, and running it again would only repeat that.
fn poisoned(lease: &Lease, max: u32) -> Option<String> {
    (lease.deliveries > max).then(|| {
        format!(
            "delivered {} times without finishing: its workers died or timed out",
            lease.deliveries
        )
    })
}

/// What became of one reserved job.
enum Done {
    Finished(Lease, JobResult),
    Crashed(Lease, JobResult, String),
    /// Not to be run: undecodable, or delivered too often (see [`poisoned`]).
    Poison(Lease, String),
    Abandoned(Lease),
}

impl Done {
    fn lease(&self) -> &Lease {
        match self {
            Done::Finished(l, _)
            | Done::Crashed(l, ..)
            | Done::Poison(l, _)
            | Done::Abandoned(l) => l,
        }
    }
}

/// Shared by the reserving loop and the running jobs.
struct Shared {
    queue: Arc<dyn JobQueue>,
    engine: Arc<Engine>,
    outage: Outage,
    /// Leases of the jobs in flight here, by handle.
    held: Mutex<HashMap<String, Lease>>,
    /// See [`Options::room`].
    room: Option<Arc<Semaphore>>,
    /// The broker's refusal (bad password, no such database) that ends the drive.
    refused: Mutex<Option<QueueError>>,
    /// `run`'s jobs, which never leave this process: a lease's body is an index into them
    /// instead of the job as JSON, sparing an encode and a decode of every job.
    local: Option<Vec<Arc<Job>>>,
}

impl Shared {
    /// The job a lease holds: looked up for `run`'s own jobs, else decoded from its body.
    fn job(&self, lease: &Lease) -> Result<Arc<Job>, String> {
        let Some(local) = &self.local else {
            return queue::decode(&lease.body).map(Arc::new);
        };
        let index = <[u8; 8]>::try_from(lease.body.as_slice()).map(u64::from_le_bytes);
        index
            .ok()
            .and_then(|i| local.get(usize::try_from(i).ok()?))
            .cloned()
            .ok_or_else(|| "not a job of this run".to_string())
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Lease>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a failed exchange; true when it is a refusal, after which no retry can help.
    fn refused(&self, e: &QueueError) -> bool {
        if !matches!(e, QueueError::Refused(_)) {
            return false;
        }
        let mut slot = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| e.clone());
        true
    }
}

/// Runs `jobs` once on an embedded queue (`custodian run`): every job, no de-duplication.
pub(crate) async fn embedded(
    engine: Arc<Engine>,
    concurrency: usize,
    threads: usize,
    jobs: Vec<Job>,
    room: Option<Arc<Semaphore>>,
    on_result: impl FnMut(JobResult) -> Option<Accepted>,
) {
    // A handful of jobs is not worth starting threads for.
    let threads = (threads != 1 && jobs.len() > BATCH).then(|| Arc::new(Threads::new(threads)));
    let queue = Arc::new(MemoryQueue::new(false));
    // Nothing else consumes this queue: a lease never needs to run out. The bodies are
    // indexes into `jobs` (see [`Shared::local`]); ids only serve de-duplication, off here.
    let pending: Vec<_> = (0..jobs.len() as u64)
        .map(|i| Pending {
            id: String::new(),
            body: i.to_le_bytes().to_vec(),
            lease: Duration::MAX,
        })
        .collect();
    let _ = queue.put(&pending).await;
    drop(pending);
    let local = Some(jobs.into_iter().map(Arc::new).collect());
    let (_keep, stop) = watch::channel(false);
    let opts = Options {
        concurrency,
        drain: true,
        // Leases never run out here: every job is delivered once.
        max_deliveries: u32::MAX,
        room,
    };
    // The memory queue never refuses anything.
    let _ = drive_jobs(queue, local, threads, engine, opts, stop, on_result).await;
}

/// Drains `queue` until `stop` turns true (or, with `drain`, until it is empty), handing each
/// result to `on_result` and acknowledging its job only once what that returns has resolved
/// (the result's state change and notice are stored). A refusal by the broker (bad password,
/// no such database) stops taking jobs at once and is returned once those in flight are done.
pub(crate) async fn drive(
    queue: Arc<dyn JobQueue>,
    engine: Arc<Engine>,
    opts: Options,
    stop: watch::Receiver<bool>,
    on_result: impl FnMut(JobResult) -> Option<Accepted>,
) -> Result<(), QueueError> {
    drive_jobs(queue, None, None, engine, opts, stop, on_result).await
}

/// [`drive`], with the bodies indexes into `local` when it is given (see [`Shared::local`]),
/// and the jobs spread over `threads` when given. Only this function and the reserving loop
/// hold `threads`, both on the calling thread: it must not be dropped (and its threads
/// joined) by one of its own threads.
async fn drive_jobs(
    queue: Arc<dyn JobQueue>,
    local: Option<Vec<Arc<Job>>>,
    threads: Option<Arc<Threads>>,
    engine: Arc<Engine>,
    opts: Options,
    stop: watch::Receiver<bool>,
    mut on_result: impl FnMut(JobResult) -> Option<Accepted>,
) -> Result<(), QueueError> {
    let shared = Arc::new(Shared {
        queue,
        engine,
        outage: Outage::default(),
        held: Mutex::default(),
        room: opts.room.clone(),
        refused: Mutex::default(),
        local,
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let feeder = tokio::spawn(feed(Arc::clone(&shared), threads.clone(), opts, stop, tx));
    let toucher = tokio::spawn(keep_leases(Arc::clone(&shared)));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(done) => batch.push(done),
                Err(_) => break,
            }
        }
        // Counted out before the ack: until then the queue itself still reports them reserved.
        {
            let mut held = shared.held();
            for done in &batch {
                held.remove(&done.lease().handle);
            }
        }
        settle(&shared, batch, &mut on_result).await;
    }
    let _ = feeder.await;
    toucher.abort();
    let refused = shared
        .refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    refused.map_or(Ok(()), Err)
}

/// Restarts the leases held here every [`TOUCH_EVERY`], so waiting jobs keep their lease.
async fn keep_leases(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(TOUCH_EVERY).await;
        let held: Vec<Lease> = shared.held().values().cloned().collect();
        if held.is_empty() {
            continue;
        }
        match shared.queue.touch(&held).await {
            Ok(()) => shared.outage.ok(),
            Err(e) => shared.outage.failed(&e),
        }
    }
}

/// Hands results on, waits until they are accepted, then acks finished jobs together and
/// buries or releases the rest.
async fn settle(
    shared: &Shared,
    batch: Vec<Done>,
    on_result: &mut impl FnMut(JobResult) -> Option<Accepted>,
) {
    let q = &shared.queue;
    let mut finished = Vec::with_capacity(batch.len());
    let mut buried = Vec::new();
    let mut accepted = Vec::new();
    for done in batch {
        if let (Some(room), Done::Finished(..) | Done::Crashed(..)) = (&shared.room, &done) {
            // Waits for a free slot; the permit itself is taken by whoever hands on.
            let _ = room.acquire().await;
        }
        match done {
            Done::Finished(lease, result) => {
                accepted.extend(on_result(result));
                finished.push(lease);
            }
            Done::Abandoned(lease) => {
                let _ = retry(&shared.outage, SETTLE_LIMIT, || q.release(&lease)).await;
            }
            Done::Crashed(lease, result, reason) => {
                accepted.extend(on_result(result));
                buried.push((lease, reason));
            }
            Done::Poison(lease, reason) => buried.push((lease, reason)),
        }
    }
    // A sender dropped without a word (its task aborted) accepts nothing more: go on.
    futures::future::join_all(accepted).await;
    for (lease, reason) in buried {
        let reason = custodian_core::outcome::escape_controls(&reason);
        tracing::error!("burying job {}: {reason}", lease.handle);
        let _ = retry(&shared.outage, SETTLE_LIMIT, || q.bury(&lease, &reason)).await;
    }
    if !finished.is_empty() {
        let _ = retry(&shared.outage, SETTLE_LIMIT, || q.ack(&finished)).await;
    }
}

/// Reserves jobs while there is room, spawning one task per job.
async fn feed(
    shared: Arc<Shared>,
    threads: Option<Arc<Threads>>,
    opts: Options,
    mut stop: watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<Done>,
) {
    let slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut backoff = Backoff::new();
    loop {
        let first = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => p,
            _ = stopped(&mut stop) => break,
        };
        let Ok(first) = first else { break };
        let mut permits = vec![first];
        while permits.len() < BATCH {
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // Not raced against `stop`: a reserve cut off half-way could lose its jobs.
        let got = shared.queue.reserve(permits.len(), RESERVE_WAIT).await;
        let stopping = *stop.borrow();
        match got {
            Ok(leases) if stopping => {
                for lease in &leases {
                    let _ = shared.queue.release(lease).await;
                }
                break;
            }
            Ok(leases) if leases.is_empty() => {
                shared.outage.ok();
                if opts.drain && drained(&shared).await {
                    break;
                }
            }
            Ok(leases) => {
                shared.outage.ok();
                backoff = Backoff::new();
                shared
                    .held()
                    .extend(leases.iter().map(|l| (l.handle.clone(), l.clone())));
                for (lease, permit) in leases.into_iter().zip(permits) {
                    if let Some(why) = poisoned(&lease, opts.max_deliveries) {
                        let _ = tx.send(Done::Poison(lease, why));
                        continue;
                    }
                    let task =
                        run_one(Arc::clone(&shared), lease, permit, stop.clone(), tx.clone());
                    match &threads {
                        Some(threads) => threads.spawn(task),
                        None => drop(tokio::spawn(task)),
                    }
                }
            }
            Err(e) if shared.refused(&e) => break,
            Err(e) => {
                shared.outage.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next()) => {}
                    _ = stopped(&mut stop) => break,
                }
            }
        }
    }
}

/// Nothing in flight here and nothing pending or reserved anywhere, or the broker refused us
/// (nothing more can be drained).
async fn drained(shared: &Shared) -> bool {
    if !shared.held().is_empty() {
        return false;
    }
    match shared.queue.stats().await {
        Ok(s) => s.pending == 0 && s.reserved == 0,
        Err(e) if shared.refused(&e) => true,
        Err(e) => {
            shared.outage.failed(&e);
            false
        }
    }
}

/// Decodes and runs one job; a panic in the probe becomes a failed result and a burial.
/// The panic is caught in this task rather than by running the job in a second one: a task
/// per job is cost enough (issue 13).
async fn run_one(
    shared: Arc<Shared>,
    lease: Lease,
    permit: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<Done>,
) {
    let job = match shared.job(&lease) {
        Ok(job) => job,
        Err(why) => {
            let _ = tx.send(Done::Poison(lease, format!("cannot decode job: {why}")));
            return;
        }
    };
    let run = std::panic::AssertUnwindSafe(shared.engine.run_job(&job)).catch_unwind();
    let done = tokio::select! {
        caught = run => match caught {
            Ok(result) => Done::Finished(lease, result),
            Err(panic) => {
                let reason = format!("probe crashed: {}", panic_text(panic.as_ref()));
                let result = JobResult::new(&job, Status::Failed, Some(reason.clone()), 0, 1);
                Done::Crashed(lease, result, reason)
            }
        },
        // Dropping the job's future (the other branch) ends it.
        _ = grace_over(stop) => Done::Abandoned(lease),
    };
    drop(permit);
    let _ = tx.send(done);
}

/// What a caught panic says, as a task's join error said it.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    match text {
        Some(t) => format!("task panicked with message {t:?}"),
        None => "task panicked".to_string(),
    }
}

/// Resolves when a stop was requested; never if the sender is gone without one.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves [`SHUTDOWN_GRACE`] after a stop was requested.
async fn grace_over(mut stop: watch::Receiver<bool>) {
    stopped(&mut stop).await;
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use custodian_core::queue::Pending;

    const LONG: Duration = Duration::from_secs(60);

    fn engine() -> Arc<Engine> {
        Engine::new(Settings {
            retries: 1,
            timeout: 1.0,
            ..Settings::default()
        })
    }

    /// A job against a loopback port nothing listens on: fails at once, no network beyond lo.
    fn refused_job() -> Job {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        Job::new("tcp", "127.0.0.1", Some(port))
    }

    /// A broker that refuses every exchange, as Redis does a client without its password.
    struct Refusing;

    fn no<'a, T: Send + 'a>() -> queue::QueueFuture<'a, T> {
        Box::pin(async {
            Err(QueueError::Refused(
                "NOAUTH Authentication required.".into(),
            ))
        })
    }

    impl JobQueue for Refusing {
        fn put<'a>(&'a self, _: &'a [Pending]) -> queue::QueueFuture<'a, queue::PutReport> {
            no()
        }
        fn reserve(&self, _: usize, _: Duration) -> queue::QueueFuture<'_, Vec<Lease>> {
            no()
        }
        fn ack<'a>(&'a self, _: &'a [Lease]) -> queue::QueueFuture<'a, ()> {
            no()
        }
        fn touch<'a>(&'a self, _: &'a [Lease]) -> queue::QueueFuture<'a, ()> {
            no()
        }
        fn release<'a>(&'a self, _: &'a Lease) -> queue::QueueFuture<'a, ()> {
            no()
        }
        fn bury<'a>(&'a self, _: &'a Lease, _: &'a str) -> queue::QueueFuture<'a, ()> {
            no()
        }
        fn dead(&self) -> queue::QueueFuture<'_, Vec<queue::DeadLetter>> {
            no()
        }
        fn drop_dead<'a>(&'a self, _: &'a [queue::DeadLetter]) -> queue::QueueFuture<'a, u64> {
            no()
        }
        fn stats(&self) -> queue::QueueFuture<'_, queue::QueueStats> {
            no()
        }
        fn flush(&self) -> queue::QueueFuture<'_, u64> {
            no()
        }
    }

    #[tokio::test]
    async fn a_refusing_broker_ends_the_drive_with_its_reason() {
        let (_keep, stop) = watch::channel(false);
        let opts = Options {
            concurrency: 4,
            drain: false,
            max_deliveries: 3,
            room: None,
        };
        // Without the refusal rule this drive would retry forever: the guard only ends a hang.
        let driven = tokio::time::timeout(
            LONG,
            drive(Arc::new(Refusing), engine(), opts, stop, |_| None),
        )
        .await
        .expect("the drive stops by itself");
        assert!(
            matches!(&driven, Err(QueueError::Refused(why)) if why.starts_with("NOAUTH")),
            "{driven:?}"
        );
    }

    #[tokio::test]
    async fn run_keeps_duplicate_lines() {
        let job = refused_job();
        let mut seen = Vec::new();
        // More than a batch, on two threads: every copy runs once, on whichever thread.
        embedded(engine(), 10, 2, vec![job; 3 * BATCH], None, |r| {
            seen.push(r.status);
            None
        })
        .await;
        assert_eq!(seen, [Status::Failed; 3 * BATCH]);
    }

    #[test]
    fn only_a_delivery_past_the_limit_is_poison() {
        let lease = |deliveries| Lease {
            handle: "1".into(),
            body: Vec::new(),
            deliveries,
        };
        assert_eq!(poisoned(&lease(3), 3), None);
        assert_eq!(
            poisoned(&lease(4), 3).as_deref(),
            Some("delivered 4 times without finishing: its workers died or timed out")
        );
    }

    /// With no room downstream (a slow alert receiver), a finished job is neither handed on
    /// nor acknowledged until a slot frees: the worker slows down instead of piling up.
    #[tokio::test]
    async fn a_full_room_holds_the_result_and_its_ack() {
        let job = refused_job();
        let queue = Arc::new(MemoryQueue::new(true));
        queue.put(&[queue::encode(&job, LONG)]).await.expect("put");
        let lease = queue.reserve(1, LONG).await.expect("reserve").pop();
        let lease = lease.expect("lease");
        let room = Arc::new(Semaphore::new(1));
        let taken = Arc::clone(&room).acquire_owned().await.expect("permit");
        let shared = Shared {
            queue: Arc::clone(&queue) as Arc<dyn JobQueue>,
            engine: engine(),
            outage: Outage::default(),
            held: Mutex::default(),
            room: Some(room),
            refused: Mutex::default(),
            local: None,
        };
        let result = JobResult::new(&job, Status::Passed, None, 1, 1);
        let mut seen = 0;
        let done = vec![Done::Finished(lease.clone(), result.clone())];
        let waited = tokio::time::timeout(
            Duration::from_millis(300),
            settle(&shared, done, &mut |_| {
                seen += 1;
                None
            }),
        )
        .await;
        assert!(waited.is_err(), "handed on without room");
        assert_eq!(seen, 0);
        assert_eq!(
            queue.stats().await.expect("stats").reserved,
            1,
            "acked early"
        );
        drop(taken);
        let done = vec![Done::Finished(lease, result)];
        settle(&shared, done, &mut |_| {
            seen += 1;
            None
        })
        .await;
        assert_eq!(seen, 1);
        assert_eq!(queue.stats().await.expect("stats").reserved, 0);
    }

    #[tokio::test]
    async fn a_crashed_job_is_handed_on_and_buried() {
        let job = refused_job();
        let queue = Arc::new(MemoryQueue::new(true));
        queue.put(&[queue::encode(&job, LONG)]).await.expect("put");
        let lease = queue.reserve(1, LONG).await.expect("reserve").pop();
        let shared = Shared {
            queue: Arc::clone(&queue) as Arc<dyn JobQueue>,
            engine: engine(),
            outage: Outage::default(),
            held: Mutex::default(),
            room: None,
            refused: Mutex::default(),
            local: None,
        };
        let why = "probe crashed: task panicked".to_string();
        let result = JobResult::new(&job, Status::Failed, Some(why.clone()), 0, 1);
        let done = Done::Crashed(lease.expect("lease"), result, why);
        let mut seen = Vec::new();
        settle(&shared, vec![done], &mut |r| {
            seen.push(r.error);
            None
        })
        .await;
        assert_eq!(seen, [Some("probe crashed: task panicked".to_string())]);
        let s = queue.stats().await.expect("stats");
        assert_eq!((s.pending, s.reserved, s.buried), (0, 0, 1));
    }

    #[tokio::test]
    async fn an_undecodable_job_is_buried_and_the_drain_ends() {
        let queue = Arc::new(MemoryQueue::new(true));
        let garbage = Pending {
            id: "x".into(),
            body: b"{not json".to_vec(),
            lease: LONG,
        };
        let good = queue::encode(&refused_job(), LONG);
        queue.put(&[garbage, good]).await.expect("put");
        let (_keep, stop) = watch::channel(false);
        let opts = Options {
            concurrency: 4,
            drain: true,
            max_deliveries: 3,
            room: None,
        };
        let mut results = 0;
        let driven = drive(queue.clone(), engine(), opts, stop, |_| {
            results += 1;
            None
        })
        .await;
        assert!(driven.is_ok());
        assert_eq!(results, 1);
        let s = queue.stats().await.expect("stats");
        assert_eq!((s.pending, s.reserved, s.buried), (0, 0, 1));
    }

    #[tokio::test]
    async fn a_stopped_worker_leaves_the_rest_queued() {
        let queue = Arc::new(MemoryQueue::new(true));
        let jobs: Vec<_> = (0..5)
            .map(|_| queue::encode(&refused_job(), LONG))
            .collect();
        queue.put(&jobs).await.expect("put");
        let (_keep, stop) = watch::channel(true);
        let opts = Options {
            concurrency: 4,
            drain: false,
            max_deliveries: 3,
            room: None,
        };
        let mut results = 0;
        let driven = drive(queue.clone(), engine(), opts, stop, |_| {
            results += 1;
            None
        })
        .await;
        assert!(driven.is_ok());
        let s = queue.stats().await.expect("stats");
        assert_eq!((results, s.pending, s.reserved), (0, 5, 0));
    }
}
