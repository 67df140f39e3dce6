//! Alerting in the binary: results go through a [`StateStore`] (the state machine plus where
//! its states live) and the events it yields go to the configured alerters. `run` uses a local
//! state file; workers share states in Redis so that two of them never raise the same alert.

mod file_store;
mod outbox;
mod redis_store;

pub(crate) use file_store::FileStore;
pub(crate) use outbox::host;
pub(crate) use redis_store::RedisStore;

use crate::queue::QueueUrl;
use crate::settings::Settings;
use anyhow::{bail, Context, Result};
use custodian_alerters::{Common, Dispatcher};
use custodian_core::state::{AlertEvent, EventKind};
use custodian_core::{JobResult, Status};
use futures::future::BoxFuture;
use outbox::Claim;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;

/// Resolves once a handed-on result's state change and notice are stored (or could not be:
/// logged); only then may its job be acknowledged.
pub(crate) type Accepted = oneshot::Receiver<()>;

/// What one result did to its check's state.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// The notice it calls for, if any.
    pub(crate) event: Option<AlertEvent>,
    /// When the check's current failure began, while it is failing (after this result).
    pub(crate) raised_at: Option<u64>,
    /// Why this state change could not be persisted: the notice is delivered all the same
    /// (at least once), and the store keeps what it had, so a later result calls for it again.
    pub(crate) unsaved: Option<anyhow::Error>,
    /// The outbox id under which the notice was stored with the state change, to be removed
    /// once it is delivered.
    pub(crate) parcel: Option<String>,
}

impl Applied {
    /// Steps `state` with `result`; what every store does inside its atomic section.
    pub(crate) fn step(
        state: &mut custodian_core::state::CheckState,
        policy: &custodian_core::state::Policy,
        result: &JobResult,
        now: u64,
    ) -> Self {
        let event = custodian_core::state::step(state, policy, result, now);
        Applied {
            event,
            raised_at: state.raised_at,
            unsaved: None,
            parcel: None,
        }
    }
}

/// Where check states and undelivered notices (the [`outbox`]) live; each update is atomic
/// per check and persisted, together with the notice it calls for, before it is returned (or
/// returned with `unsaved` saying why it could not be).
pub(crate) trait StateStore: Send + Sync {
    /// Feeds `result` into its check's stored state at `now`; a notice is stored as a parcel
    /// under `claim`.
    fn apply<'a>(
        &'a self,
        result: &'a JobResult,
        now: u64,
        claim: &'a Claim,
    ) -> BoxFuture<'a, Result<Applied>>;

    /// Removes a delivered parcel.
    fn delivered<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Renews `claim` on the parcels in `owned` (being delivered here) and takes over, under
    /// `claim`, those abandoned by others, returning them.
    fn sweep<'a>(
        &'a self,
        now: u64,
        claim: &'a Claim,
        owned: HashSet<String>,
    ) -> BoxFuture<'a, Result<Vec<(String, AlertEvent)>>>;

    /// Whether the store can be used at all, checked at start (an error stops the command).
    fn ready(&self) -> Result<()> {
        Ok(())
    }
}

/// The state store and the alerters, shared by everything that finishes jobs.
pub(crate) struct Alerting {
    store: Box<dyn StateStore>,
    dispatcher: Dispatcher,
    tasks: Mutex<JoinSet<()>>,
    /// Bounds the results being alerted at once (a big `run` finishes thousands together).
    limit: Arc<Semaphore>,
    /// Bounds the results handed on and not yet delivered ([`MAX_PENDING`]).
    pending: Arc<Semaphore>,
    /// Parcels being delivered by this process, whose claims the sweeper renews.
    owned: Mutex<HashSet<String>>,
    /// The periodic sweep, stopped by `finish`.
    sweeper: Mutex<Option<tokio::task::AbortHandle>>,
    /// Told of every notice as it is delivered (serve keeps them in its history).
    observer: Mutex<Option<Observer>>,
    /// Asked before a notice goes out (serve's silences).
    mute: Mutex<Option<Mute>>,
    /// Checks whose raise was muted: raised late once a result finds them still failing and
    /// no longer muted (see [`Alerting::mute`]).
    held: Mutex<HashSet<String>>,
}

/// See [`Alerting::observe`]: the notice, and whether it was muted instead of delivered.
pub(crate) type Observer = Arc<dyn Fn(&AlertEvent, bool) + Send + Sync>;

/// See [`Alerting::mute`]: whether this notice is kept from every alerter.
pub(crate) type Mute = Arc<dyn Fn(&AlertEvent) -> bool + Send + Sync>;

/// Longest `finish` waits for pending deliveries: below the worker unit's `TimeoutStopSec=30`
/// minus the worker's 10 s shutdown grace for jobs in flight.
const FINISH_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Results handed to alerting and not yet delivered; past it, workers wait (backpressure)
/// instead of piling up tasks behind a slow receiver.
const MAX_PENDING: usize = 4096;

/// Results alerted at once; the rest wait their turn.
const MAX_IN_FLIGHT: usize = 64;

/// Where a worker keeps states: `state_redis`, else the queue's own Redis, else the local
/// state file (which workers on other hosts do not share: warned about).
pub(crate) fn shared_store(settings: &Settings, queue: &QueueUrl) -> Result<Box<dyn StateStore>> {
    let url = match &settings.state_redis {
        Some(text) => QueueUrl::parse(text).context("state_redis")?,
        None => queue.clone(),
    };
    if let QueueUrl::Redis { server, prefix } = url {
        return Ok(Box::new(RedisStore::new(
            server,
            &prefix,
            settings.policy(),
        )));
    }
    if settings.state_redis.is_some() {
        bail!("state_redis must be a redis:// URL");
    }
    tracing::warn!("alert states are kept in the local state file: set state_redis so that all workers share them");
    Ok(Box::new(FileStore::open(
        &settings.state_file(),
        settings.policy(),
    )))
}

/// A mutex's content, also after a panic elsewhere (the data stays consistent: every holder
/// only inserts or removes).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Deliveries and failures (gave up after every attempt) by alerter since start, for serve's
/// `/metrics`: process-wide, so the counts survive a settings reload's new [`Alerting`].
static DELIVERIES: Mutex<std::collections::BTreeMap<&'static str, (u64, u64)>> =
    Mutex::new(std::collections::BTreeMap::new());

fn count_deliveries<'a>(done: impl Iterator<Item = &'a custodian_alerters::Delivery>) {
    let mut counts = lock(&DELIVERIES);
    for d in done {
        let c = counts.entry(d.alerter).or_default();
        c.0 += 1;
        c.1 += u64::from(d.result.is_err());
    }
}

/// See [`DELIVERIES`].
pub(crate) fn deliveries() -> std::collections::BTreeMap<&'static str, (u64, u64)> {
    lock(&DELIVERIES).clone()
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the epoch.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Alerting {
    /// `None` when no alerter is configured: then `store` is never opened, so no state is read
    /// or written either.
    /// Notices left undelivered by an earlier process are taken over at once and then every
    /// [`outbox::SWEEP_SECS`].
    pub(crate) async fn new(
        settings: &Settings,
        store: impl FnOnce() -> Result<Box<dyn StateStore>>,
    ) -> Result<Option<Arc<Self>>> {
        if settings.alerters.is_empty() {
            return Ok(None);
        }
        let common = Common {
            source: settings.alert_source.clone(),
        };
        let alerters = settings.alerters.build(&common)?;
        let store = store()?;
        store.ready()?;
        let me = Arc::new(Alerting {
            store,
            dispatcher: Dispatcher::new(alerters, settings.alerters.retry),
            tasks: Mutex::new(JoinSet::new()),
            limit: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            pending: Arc::new(Semaphore::new(MAX_PENDING)),
            owned: Mutex::default(),
            sweeper: Mutex::default(),
            observer: Mutex::default(),
            mute: Mutex::default(),
            held: Mutex::default(),
        });
        me.sweep().await;
        let weak = Arc::downgrade(&me);
        let sweeper = tokio::spawn(async move {
            let every = std::time::Duration::from_secs(outbox::SWEEP_SECS);
            loop {
                tokio::time::sleep(every).await;
                let Some(me) = weak.upgrade() else { return };
                me.sweep().await;
            }
        });
        *lock(&me.sweeper) = Some(sweeper.abort_handle());
        Ok(Some(me))
    }

    /// Renews this process's claims and delivers the parcels others abandoned.
    async fn sweep(self: &Arc<Self>) {
        let now = unix_now();
        let owned = lock(&self.owned).clone();
        let taken = match self.store.sweep(now, &Claim::mine(now), owned).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::error!("alert outbox: {e:#}");
                return;
            }
        };
        if !taken.is_empty() {
            tracing::warn!(
                "delivering {} alert notices left undelivered by a stopped process",
                taken.len()
            );
        }
        for (id, event) in taken {
            lock(&self.owned).insert(id.clone());
            let me = Arc::clone(self);
            let pending = Arc::clone(&self.pending).try_acquire_owned().ok();
            self.tasks().spawn(async move {
                let _pending = pending;
                let _permit = Arc::clone(&me.limit).acquire_owned().await;
                let mute = lock(&me.mute).clone();
                if !mute.is_some_and(|m| m(&event)) {
                    me.dispatcher.send(&event).await;
                }
                me.delivered(&id).await;
            });
        }
    }

    /// Calls `observer` with every notice delivered (or muted) from now on.
    pub(crate) fn observe(&self, observer: Observer) {
        *lock(&self.observer) = Some(observer);
    }

    /// Asks `mute` before every notice from now on: a muted one goes to no alerter (its state
    /// change is stored all the same, its outbox parcel removed as handled). A muted raise is
    /// held: the first later result that finds the check still failing and the notice no
    /// longer muted raises it then; a clear of a held raise is not sent (nobody heard the
    /// raise). Held raises live in this process only. Metrics results are never muted.
    pub(crate) fn mute(&self, mute: Mute) {
        *lock(&self.mute) = Some(mute);
    }

    /// The notice to deliver for `event` (None: muted or none due) and the muted one, given
    /// the mute hook; see [`Alerting::mute`].
    fn silence(
        &self,
        event: Option<AlertEvent>,
        result: &JobResult,
        raised_at: Option<u64>,
        now: u64,
    ) -> (Option<AlertEvent>, Option<AlertEvent>) {
        let Some(mute) = lock(&self.mute).clone() else {
            return (event, None);
        };
        let mut held = lock(&self.held);
        let Some(e) = event else {
            // Still failing after a muted raise: raise now unless still muted.
            if raised_at.is_some() && held.contains(&result.id) {
                let late = AlertEvent {
                    kind: EventKind::Raise,
                    result: result.clone(),
                    at: now,
                    raised_at,
                };
                if !mute(&late) {
                    held.remove(&result.id);
                    return (Some(late), None);
                }
            }
            return (None, None);
        };
        if mute(&e) {
            match e.kind {
                EventKind::Raise => held.insert(result.id.clone()),
                EventKind::Clear => held.remove(&result.id),
                _ => false,
            };
            return (None, Some(e));
        }
        let was_held = held.remove(&result.id);
        match e.kind {
            // Receivers never heard of this failure.
            EventKind::Clear if was_held => (None, Some(e)),
            EventKind::StillFailing if was_held => (
                Some(AlertEvent {
                    kind: EventKind::Raise,
                    ..e
                }),
                None,
            ),
            _ => (Some(e), None),
        }
    }

    /// Removes a delivered parcel from the outbox.
    async fn delivered(&self, id: &str) {
        if let Err(e) = self.store.delivered(id).await {
            tracing::error!(
                "alert outbox: removing delivered notice {id}: {e:#}; it may be sent again"
            );
        }
        lock(&self.owned).remove(id);
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        let mut tasks = lock(&self.tasks);
        // Reap finished tasks so the set stays small on a long-running worker.
        while tasks.try_join_next().is_some() {}
        tasks
    }

    /// Updates the check's state, storing its notice with it, signals `accepted`, then
    /// delivers the notice (plus the result itself to metrics alerters) and removes it from
    /// the outbox. Never fails: problems are logged.
    async fn handle(&self, result: JobResult, now: u64, accepted: oneshot::Sender<()>) {
        let claim = Claim::mine(now);
        let applied = match self.store.apply(&result, now, &claim).await {
            Ok(applied) => applied,
            Err(e) => {
                tracing::error!("alert state for {}: {e:#}", result.line);
                Applied::default()
            }
        };
        if let Some(id) = &applied.parcel {
            lock(&self.owned).insert(id.clone());
        }
        // The caller may have stopped waiting; the delivery goes on regardless.
        let _ = accepted.send(());
        if let Some(e) = &applied.unsaved {
            let what = if applied.event.is_some() {
                "delivering its notice anyway"
            } else {
                "no notice due"
            };
            tracing::error!(
                "alert state for {} could not be saved ({e:#}); {what}",
                result.line
            );
        }
        let (event, muted) = self.silence(applied.event, &result, applied.raised_at, now);
        // Skipped checks took no measurement. The raise time tells alerters that keep alerts
        // alive (Alertmanager) that the check is still failing.
        let metric = (result.status != Status::Skipped).then(|| AlertEvent {
            raised_at: applied.raised_at,
            ..AlertEvent::result(result, now)
        });
        // Bounds the deliveries at once (a big `run` finishes thousands together); storing
        // the state above is not held back by slow receivers.
        let _permit = Arc::clone(&self.limit).acquire_owned().await;
        let sends = metric.iter().chain(event.as_ref());
        let done = futures::future::join_all(sends.map(|e| self.dispatcher.send(e))).await;
        count_deliveries(done.iter().flatten());
        if let Some(observe) = lock(&self.observer).clone() {
            if let Some(e) = &event {
                observe(e, false);
            }
            if let Some(e) = &muted {
                observe(e, true);
            }
        }
        if let Some(id) = &applied.parcel {
            self.delivered(id).await;
        }
    }

    /// Hands `result` to a background task, so the caller never waits on a receiver; the
    /// returned [`Accepted`] resolves once its state change and notice are stored.
    pub(crate) fn spawn(self: &Arc<Self>, result: JobResult) -> Accepted {
        let me = Arc::clone(self);
        let now = unix_now();
        // Callers wait for `room()` first, so a permit is normally free; never drop a result
        // for want of one.
        let pending = Arc::clone(&self.pending).try_acquire_owned().ok();
        let (accepted, rx) = oneshot::channel();
        self.tasks().spawn(async move {
            let _pending = pending;
            me.handle(result, now, accepted).await
        });
        rx
    }

    /// The pending-deliveries limit: hand a result on only once it has a free permit.
    pub(crate) fn room(&self) -> Arc<Semaphore> {
        Arc::clone(&self.pending)
    }

    /// Waits for the spawned deliveries, at most [`FINISH_LIMIT`]: a stuck receiver must not
    /// keep the process past its service's stop timeout (where it would be killed without a
    /// word). Deliveries still pending then are abandoned and counted in the log.
    pub(crate) async fn finish(&self) {
        self.finish_within(FINISH_LIMIT).await;
    }

    /// [`Alerting::finish`] with its limit; returns how many deliveries were abandoned.
    async fn finish_within(&self, limit: std::time::Duration) -> usize {
        if let Some(sweeper) = lock(&self.sweeper).take() {
            sweeper.abort();
        }
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        let drained =
            tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_ok() {
            return 0;
        }
        let left = tasks.len();
        tracing::error!(
            "{left} alert deliveries still pending after {}s: stopped; their notices stay in \
             the outbox for the next process",
            limit.as_secs()
        );
        tasks.abort_all();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_core::Job;

    /// A receiver that accepts and never answers cannot hold `finish` past its limit; the
    /// abandoned delivery is counted.
    #[tokio::test]
    async fn finish_is_bounded_behind_a_stuck_receiver() {
        let stuck = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = stuck.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = stuck.accept().await {
                held.push(s);
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings::from_toml(&format!(
            "[alerters.webhook]\nurl = \"http://127.0.0.1:{port}/\"\n[alerters.retry]\ntimeout = 600\n"
        ))
        .expect("settings");
        let path = dir.path().join("state.json");
        let alerting = Alerting::new(&settings, || {
            Ok(Box::new(FileStore::open(&path, settings.policy())))
        })
        .await
        .expect("alerting")
        .expect("an alerter is configured");
        let job = Job::new("tcp", "127.0.0.1", Some(9));
        let accepted = alerting.spawn(JobResult::new(&job, Status::Failed, None, 1, 1));
        accepted.await.expect("the raise is stored before delivery");
        let started = tokio::time::Instant::now();
        let left = alerting
            .finish_within(std::time::Duration::from_millis(500))
            .await;
        assert_eq!(left, 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// A file alerter with a mute hook switched by the returned flag; the observer's calls
    /// (kind, muted) are collected.
    async fn muted_file(
        dir: &tempfile::TempDir,
    ) -> (
        Arc<Alerting>,
        Arc<std::sync::atomic::AtomicBool>,
        Arc<Mutex<Vec<(EventKind, bool)>>>,
    ) {
        let log = dir.path().join("alerts.log");
        let settings = Settings::from_toml(&format!(
            "[alerters.file]\npath = {:?}\n",
            log.display().to_string()
        ))
        .expect("settings");
        let path = dir.path().join("state.json");
        let alerting = Alerting::new(&settings, || {
            Ok(Box::new(FileStore::open(&path, settings.policy())))
        })
        .await
        .expect("alerting")
        .expect("an alerter is configured");
        let on = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = Arc::clone(&on);
        alerting.mute(Arc::new(move |_| {
            flag.load(std::sync::atomic::Ordering::SeqCst)
        }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&seen);
        alerting.observe(Arc::new(move |e, muted| lock(&into).push((e.kind, muted))));
        (alerting, on, seen)
    }

    /// Feeds one result and waits until it is delivered (or muted).
    async fn feed(alerting: &Arc<Alerting>, status: Status) {
        let mut job = Job::new("tcp", "127.0.0.1", Some(9));
        job.line = "127.0.0.1 must run tcp on 9".into();
        let error = (status == Status::Failed).then(|| "refused".to_string());
        let accepted = alerting.spawn(JobResult::new(&job, status, error, 1, 1));
        accepted.await.expect("stored");
        assert_eq!(
            alerting
                .finish_within(std::time::Duration::from_secs(10))
                .await,
            0
        );
    }

    fn log(dir: &tempfile::TempDir) -> String {
        std::fs::read_to_string(dir.path().join("alerts.log")).unwrap_or_default()
    }

    /// A muted raise reaches no alerter but the state is raised (a second failure raises
    /// nothing while muted); once the silence ends, the next failure raises it, and the
    /// recovery clears it.
    #[tokio::test]
    async fn muted_raise_is_held_until_the_silence_ends() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().expect("tempdir");
        let (alerting, on, seen) = muted_file(&dir).await;
        feed(&alerting, Status::Failed).await;
        assert_eq!(*lock(&seen), vec![(EventKind::Raise, true)]);
        assert!(!log(&dir).contains("RAISE"), "{}", log(&dir));
        feed(&alerting, Status::Failed).await;
        assert_eq!(
            lock(&seen).len(),
            1,
            "the state stayed raised: no new raise"
        );
        on.store(false, SeqCst);
        feed(&alerting, Status::Failed).await;
        assert_eq!(lock(&seen).last(), Some(&(EventKind::Raise, false)));
        assert_eq!(log(&dir).matches("RAISE: ").count(), 1, "{}", log(&dir));
        feed(&alerting, Status::Failed).await;
        assert_eq!(log(&dir).matches("RAISE: ").count(), 1, "raised once");
        feed(&alerting, Status::Passed).await;
        assert!(log(&dir).contains("CLEAR: "), "{}", log(&dir));
    }

    /// A check that recovers after a muted raise clears without a word: its raise was never
    /// heard.
    #[tokio::test]
    async fn clear_of_a_muted_raise_is_not_sent() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().expect("tempdir");
        let (alerting, on, seen) = muted_file(&dir).await;
        feed(&alerting, Status::Failed).await;
        on.store(false, SeqCst);
        feed(&alerting, Status::Passed).await;
        assert_eq!(
            *lock(&seen),
            vec![(EventKind::Raise, true), (EventKind::Clear, true)]
        );
        assert_eq!(log(&dir), "");
    }
}
