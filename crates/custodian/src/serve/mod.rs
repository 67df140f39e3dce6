//! `custodian serve`: runs every check on a schedule, reloads the test files when they change,
//! keeps history, alerts as `run` does, and serves the status page, JSON API and metrics.

mod board;
mod fleet;
mod gauges;
mod history;
mod scans;
mod schedule;
mod web;

use crate::cli::ServeArgs;
use crate::commands::startup::{Overrides, Startup};
use crate::queue::QueueUrl;
use crate::settings::Settings;
use anyhow::{Context, Result};
use board::{Board, CheckView};
use custodian_core::queue::{self, JobQueue};
use custodian_core::{Job, JobResult};
use history::History;
use schedule::Schedule;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};

/// How often the test and settings files are looked at for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// After a stop signal, how long checks in flight may still finish.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What a settings file decides, rebuilt when it changes.
struct Live {
    settings: Settings,
    engine: Arc<crate::worker::Engine>,
    alerting: Option<Arc<crate::alerting::Alerting>>,
}

impl Live {
    /// Notices go to `history` as they are delivered.
    async fn build(args: &ServeArgs, history: &Arc<History>) -> Result<Live> {
        let start = Startup::new(&args.common, Overrides::default())?.with_fd_limit();
        let alerting = start.local_alerting().await?;
        if let Some(a) = &alerting {
            let h = Arc::clone(history);
            a.observe(Arc::new(move |e, muted| match muted {
                true => h.notice_muted(e),
                false => h.notice(e),
            }));
            // Silences: a notice of a check some active one matches goes to no alerter.
            let silences = Arc::clone(history.silences());
            a.mute(Arc::new(move |e| {
                let now = crate::alerting::unix_now();
                silences.matching(&(&e.result).into(), now).is_some()
            }));
        }
        let engine = start.engine();
        Ok(Live {
            settings: start.settings,
            engine,
            alerting,
        })
    }

    /// Lets the alerts of a replaced set finish in the background.
    fn retire(self) {
        if let Some(a) = self.alerting {
            tokio::spawn(async move { a.finish().await });
        }
    }
}

pub(crate) async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let first = Settings::load(args.common.settings.as_deref())?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| beside(&first.state_file(), "history.sqlite"));
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let history = Arc::new(
        History::open(&db, history::Retention::default())
            .with_context(|| format!("history database {}", db.display()))?,
    );
    tokio::spawn(History::keep_silences_fresh(Arc::downgrade(&history)));
    let mut live = Live::build(&args, &history).await?;
    let files: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
    let board = Arc::new(Board::new(files, crate::alerting::unix_now()));
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let (stop_tx, stop) = watch::channel(false);
    let web = Arc::new(web::Web {
        board: Arc::clone(&board),
        history: Arc::clone(&history),
        token: args.token.clone().filter(|t| !t.is_empty()),
        ready: Arc::clone(&ready),
    });
    let web_task = tokio::spawn(web::run(listener, web, stopped(stop.clone())));
    // The settings' scheduled scan, told of each reloaded `[scan]` section.
    let (scan_tx, scan_rx) = watch::channel(live.settings.scan.clone());
    let (h, b) = (Arc::clone(&history), Arc::clone(&board));
    tokio::spawn(scans::every(scan_rx, h, b, stopped(stop.clone())));
    tracing::info!("serving on http://{}/", args.listen);

    let (results_tx, mut results) = mpsc::channel::<Arrived>(1024);
    let (beats_tx, mut beats) = mpsc::channel::<crate::queue::Beat>(256);
    // With a queue, due jobs go to the workers and their results come back on the results
    // queue; serve keeps state, history and alerting for the whole fleet.
    let mut spread = match &args.queue {
        Some(text) => {
            let url = QueueUrl::parse(text)?;
            let results = url.results()?.open();
            tokio::spawn(collect::<crate::queue::Report>(
                results,
                results_tx.clone(),
                stop.clone(),
            ));
            tokio::spawn(collect::<crate::queue::Beat>(
                url.workers()?.open(),
                beats_tx,
                stop.clone(),
            ));
            tokio::spawn(gauges::sample_queue(url.open(), Arc::downgrade(&board)));
            Some(Spread::new(url, crate::alerting::unix_now()))
        }
        None => None,
    };
    let mut schedule = Schedule::new(args.interval);
    let mut reload = Reload::new(&args);
    let (hup_tx, mut hup) = mpsc::channel::<()>(1);
    tokio::spawn(signals(stop_tx, hup_tx));
    let mut stop_rx = stop.clone();

    // The first load must succeed: nothing else could run.
    match reload.load(&args, &live.settings).await {
        Ok(jobs) => install(&board, &mut schedule, spread.as_mut(), jobs, args.interval),
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}\n");
            }
            anyhow::bail!(
                "{} error(s) in the test files: nothing is served",
                errors.len()
            );
        }
    }
    ready.store(true, Ordering::Relaxed);
    notify_systemd("READY=1");

    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = tokio::time::interval(WATCH_EVERY);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let due = schedule.due(tokio::time::Instant::now());
                match &mut spread {
                    Some(spread) => {
                        // The broker holds them now; a job still pending is not added twice.
                        for job in &due {
                            schedule.done(&job.id());
                        }
                        let early = spread.send(due, &live.settings, args.interval);
                        let now = crate::alerting::unix_now();
                        for verdict in early.into_iter().chain(spread.rounds.expire(now)) {
                            conclude(&board, &history, &live, &mut schedule, verdict);
                        }
                        let silent_after = args.interval * u64::from(live.settings.location_silent_after);
                        for (place, silent) in spread.fleet.changes(now, silent_after) {
                            spread.silence(&place, silent, live.alerting.as_ref());
                        }
                        board.places(spread.fleet.overview(now));
                    }
                    None => {
                        for job in due {
                            let engine = Arc::clone(&live.engine);
                            let tx = results_tx.clone();
                            board.engine(|e| e.in_flight += 1);
                            tokio::spawn(async move {
                                let r = engine.run_job(&job).await;
                                let _ = tx.send(Arrived::local(r)).await;
                            });
                        }
                    }
                }
                let overruns = schedule.take_overruns();
                if overruns > 0 {
                    board.engine(|e| e.overruns += overruns);
                }
            }
            Some(a) = results.recv() => {
                if a.worker == "local" {
                    board.engine(|e| e.in_flight = e.in_flight.saturating_sub(1));
                }
                arrive(&board, &history, &live, &mut schedule, spread.as_mut(), a);
            }
            Some(b) = beats.recv() => {
                if let Some(spread) = &mut spread {
                    spread.fleet.beat(&b);
                }
            }
            _ = watch.tick() => {
                if reload.changed() {
                    tracing::info!("test files or settings changed: reloading");
                    reload_now(&mut reload, &args, &mut live, &board, &mut schedule, spread.as_mut(), &history).await;
                }
            }
            Some(()) = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                reload_now(&mut reload, &args, &mut live, &board, &mut schedule, spread.as_mut(), &history).await;
            }
            _ = stopped(stop_rx.clone()) => break,
        }
        scans::follow(&scan_tx, &live.settings.scan);
        if *stop_rx.borrow_and_update() {
            break;
        }
    }
    notify_systemd("STOPPING=1");
    tracing::warn!("stopping: no new checks; finishing those in flight");
    drop(results_tx);
    let grace = tokio::time::sleep(STOP_GRACE);
    tokio::pin!(grace);
    while schedule.running() > 0 {
        tokio::select! {
            Some(a) = results.recv() => {
                arrive(&board, &history, &live, &mut schedule, spread.as_mut(), a);
            }
            _ = &mut grace => {
                tracing::warn!("{} checks still running: abandoned", schedule.running());
                break;
            }
        }
    }
    history.flush().await;
    if let Some(a) = &live.alerting {
        a.finish().await;
    }
    let _ = web_task.await;
    Ok(ExitCode::SUCCESS)
}

/// Puts scheduled jobs on the queue, marked to be reported back.
async fn enqueue(q: Arc<dyn JobQueue>, settings: Settings, due: Vec<Arc<Job>>) {
    let pending: Vec<_> = due
        .iter()
        .map(|j| {
            let job = Job {
                report: true,
                ..Job::clone(j)
            };
            let lease = crate::queue::lease_for(
                &job,
                settings.timeout(),
                settings.retries,
                settings.retry_delay(),
            );
            queue::encode(&job, lease)
        })
        .collect();
    let outage = crate::queue::Outage::default();
    // Within one interval: the next round enqueues them again anyway.
    let patience = Duration::from_secs(30);
    if let Err(e) = crate::queue::retry(&outage, patience, || q.put(&pending)).await {
        tracing::error!("enqueueing {} due checks: {e}", pending.len());
    }
}

/// A result on its way to the board: who ran it and where.
struct Arrived {
    result: JobResult,
    /// `local` on the embedded pool, else the worker's name.
    worker: String,
    /// The worker's location; `None`: the default one.
    location: Option<String>,
    /// When the worker sent it (unix ms; 0 when unknown).
    sent_ms: u64,
}

impl Arrived {
    fn local(result: JobResult) -> Self {
        Arrived {
            result,
            worker: "local".to_string(),
            location: None,
            sent_ms: 0,
        }
    }
}

/// Where a result goes: a multi-location check's round (and, once the round is decided, its
/// verdict on), or straight on as the check's result.
fn arrive(
    board: &Board,
    history: &History,
    live: &Live,
    schedule: &mut Schedule,
    spread: Option<&mut Spread>,
    a: Arrived,
) {
    let id = a.result.id.clone();
    let Some(spread) = spread.filter(|s| s.rounds.tracks(&id)) else {
        finish(
            board,
            history,
            live.alerting.as_ref(),
            schedule,
            a.result,
            &a.worker,
        );
        return;
    };
    let now = crate::alerting::unix_now();
    let answer = fleet::Answer {
        location: a
            .location
            .unwrap_or_else(|| crate::queue::DEFAULT_LOCATION.to_string()),
        status: a.result.status,
        reason: a.result.error,
        duration_ms: a.result.duration_ms,
        worker: a.worker,
        at: now,
    };
    let place = answer.location.clone();
    board.answer(&id, answer.clone());
    let Some(counted) = spread
        .rounds
        .answer(&id, answer, crate::alerting::unix_ms())
    else {
        return;
    };
    spread.fleet.lag(&place, counted.lag_ms);
    if let Some(verdict) = counted.verdict {
        if a.sent_ms > 0 {
            let delay = crate::alerting::unix_ms().saturating_sub(a.sent_ms);
            board.engine(|e| e.verdict_delay(delay));
        }
        conclude(board, history, live, schedule, verdict);
    }
}

/// A multi-location check's verdict, finished like any result; with `partial_alerts`, a
/// partial verdict also raises an alert of its own (`partial: ...`), which any later up or
/// down verdict clears (an unknown one leaves it as it is).
fn conclude(
    board: &Board,
    history: &History,
    live: &Live,
    schedule: &mut Schedule,
    verdict: JobResult,
) {
    board.engine(|e| e.verdicts += 1);
    if let (true, Some(a)) = (live.settings.partial_alerts, &live.alerting) {
        use custodian_core::Status;
        let status = match verdict.status {
            Status::Partial => Some(Status::Failed),
            Status::Passed | Status::Failed => Some(Status::Passed),
            Status::Unknown | Status::Skipped => None,
        };
        if let Some(status) = status {
            let mut partial = verdict.clone();
            partial.id = format!("{}-partial", verdict.id);
            partial.status = status;
            partial.subject = Some(format!(
                "partial: {}",
                verdict.subject.as_deref().unwrap_or(&verdict.target)
            ));
            drop(a.spawn(partial));
        }
    }
    finish(
        board,
        history,
        live.alerting.as_ref(),
        schedule,
        verdict,
        "locations",
    );
}

/// `serve --queue`'s side of the broker: the queue of each location, which locations are
/// alive, and the open rounds of checks run from several.
struct Spread {
    url: QueueUrl,
    /// A client per location sent to (bounded by the locations tests name or workers serve).
    queues: std::collections::BTreeMap<String, Arc<dyn JobQueue>>,
    fleet: fleet::Fleet,
    rounds: fleet::Rounds,
}

impl Spread {
    fn new(url: QueueUrl, now: u64) -> Self {
        Spread {
            url,
            queues: std::collections::BTreeMap::new(),
            fleet: fleet::Fleet::new(now),
            rounds: fleet::Rounds::default(),
        }
    }

    fn queue(&mut self, location: &str) -> Option<Arc<dyn JobQueue>> {
        if let Some(q) = self.queues.get(location) {
            return Some(Arc::clone(q));
        }
        match self.url.at(location) {
            Ok(url) => {
                let q = url.open();
                self.queues.insert(location.to_string(), Arc::clone(&q));
                Some(q)
            }
            Err(e) => {
                tracing::error!("location {location}: {e:#}");
                None
            }
        }
    }

    /// Enqueues the due jobs: a plain check on the default location's queue; a check from
    /// several locations on each chosen location's queue, opening a round that ends when
    /// every answer is in or when the check's lease (capped by its interval) has run out.
    /// Returns the verdicts of rounds a new one replaced before they ended.
    fn send(&mut self, due: Vec<Arc<Job>>, settings: &Settings, interval: u64) -> Vec<JobResult> {
        let now = crate::alerting::unix_now();
        let mut early = Vec::new();
        let mut by_place: std::collections::BTreeMap<String, Vec<Arc<Job>>> = Default::default();
        for job in due {
            let id = job.id();
            let places = self.fleet.choose(&job, &id, now);
            if job.from.is_some() {
                let lease = crate::queue::lease_for(
                    &job,
                    settings.timeout(),
                    settings.retries,
                    settings.retry_delay(),
                );
                let every = job.every.unwrap_or(interval);
                let deadline = now + lease.as_secs().min(every).max(1);
                if let Some(r) = self.rounds.start(
                    id,
                    Arc::clone(&job),
                    places.clone(),
                    crate::alerting::unix_ms(),
                    deadline,
                ) {
                    early.push(r);
                }
            }
            for place in places {
                by_place.entry(place).or_default().push(Arc::clone(&job));
            }
        }
        for (place, jobs) in by_place {
            if let Some(q) = self.queue(&place) {
                tokio::spawn(enqueue(q, settings.clone(), jobs));
            }
        }
        early
    }

    /// Raises (or clears) "location NAME silent" through the alerters.
    fn silence(
        &self,
        place: &str,
        silent: bool,
        alerting: Option<&Arc<crate::alerting::Alerting>>,
    ) {
        match silent {
            true => tracing::error!("location {place} silent: no worker heartbeat"),
            false => tracing::warn!("location {place} heard from again"),
        }
        let Some(a) = alerting else {
            return;
        };
        let mut job = Job::new("location", place, None);
        job.line = format!("location {place} must have live workers").into();
        job.subject = Some(format!("location {place} silent"));
        job.file = "serve".into();
        let (status, why) = match silent {
            true => (
                custodian_core::Status::Failed,
                Some(format!("location {place} silent: no worker heartbeat")),
            ),
            false => (custodian_core::Status::Passed, None),
        };
        drop(a.spawn(JobResult::new(&job, status, why, 0, 1)));
    }
}

/// What a queue reader is for: how it decodes an entry and how loud it is about trouble.
trait Entry: serde::de::DeserializeOwned + Send + 'static {
    type Out: Send + 'static;
    /// Results report the broker's outages and unreadable entries; heartbeats, read from the
    /// same broker, stay quiet about both.
    const LOUD: bool;
    fn into_out(self) -> Self::Out;
}

impl Entry for crate::queue::Report {
    type Out = Arrived;
    const LOUD: bool = true;
    fn into_out(self) -> Arrived {
        Arrived {
            result: self.result,
            worker: self.worker,
            location: self.location,
            sent_ms: self.sent_ms,
        }
    }
}

impl Entry for crate::queue::Beat {
    type Out = crate::queue::Beat;
    const LOUD: bool = false;
    fn into_out(self) -> Self {
        self
    }
}

/// Reads `T`s from `q` until `stop` (the workers' results, or their heartbeats), handing each
/// on and then acknowledging them.
async fn collect<T: Entry>(
    q: Arc<dyn JobQueue>,
    tx: mpsc::Sender<T::Out>,
    mut stop: watch::Receiver<bool>,
) {
    let outage = crate::queue::Outage::default();
    let mut backoff = crate::queue::Backoff::new();
    while !*stop.borrow_and_update() {
        let leases = tokio::select! {
            got = q.reserve(64, Duration::from_millis(500)) => got,
            _ = stopped(stop.clone()) => break,
        };
        let leases = match leases {
            Ok(l) => {
                outage.ok();
                backoff = crate::queue::Backoff::new();
                l
            }
            Err(e) => {
                match T::LOUD {
                    true => outage.failed(&e),
                    false => tracing::debug!("{e}"),
                }
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        for lease in &leases {
            match serde_json::from_slice::<T>(&lease.body) {
                Ok(entry) => {
                    if tx.send(entry.into_out()).await.is_err() {
                        return;
                    }
                }
                Err(e) if T::LOUD => tracing::error!("dropping an unreadable result: {e}"),
                Err(_) => {}
            }
        }
        if !leases.is_empty() {
            let _ = crate::queue::retry(&outage, Duration::from_secs(30), || q.ack(&leases)).await;
        }
    }
}

/// Where a result goes: the board, the history, alerting; and its check may run again.
fn finish(
    board: &Board,
    history: &History,
    alerting: Option<&Arc<crate::alerting::Alerting>>,
    schedule: &mut Schedule,
    r: JobResult,
    worker: &str,
) {
    let now = crate::alerting::unix_now();
    schedule.done(&r.id);
    board.record(&r, worker, now);
    history.record(&r, now, worker);
    if let Some(a) = alerting {
        // serve acknowledges nothing: it need not wait for the state to be stored.
        drop(a.spawn(r));
    }
}

/// Replaces the running set with `jobs`.
fn install(
    board: &Board,
    schedule: &mut Schedule,
    spread: Option<&mut Spread>,
    jobs: Vec<Job>,
    interval: u64,
) {
    let views = jobs
        .iter()
        .map(|j| CheckView::new(j, j.every.unwrap_or(interval)))
        .collect();
    board.load(views, crate::alerting::unix_now());
    match spread {
        Some(spread) => {
            let loaded: Vec<Arc<Job>> = jobs.iter().cloned().map(Arc::new).collect();
            spread.fleet.name(&loaded);
            spread
                .rounds
                .retain(&loaded.iter().map(|j| j.id()).collect());
        }
        None => crate::commands::startup::warn_locations(
            &jobs,
            "without --queue, serve checks them once, from this machine",
        ),
    }
    let n = schedule.replace(jobs);
    tracing::info!("{n} checks loaded");
}

/// Reloads settings (when their file changed) and test files; on any error the running set
/// stays as it was and the errors are shown.
async fn reload_now(
    reload: &mut Reload,
    args: &ServeArgs,
    live: &mut Live,
    board: &Board,
    schedule: &mut Schedule,
    spread: Option<&mut Spread>,
    history: &Arc<History>,
) {
    let settings_changed = reload.settings_changed();
    let fresh = match settings_changed {
        true => match Live::build(args, history).await {
            Ok(fresh) => Some(fresh),
            Err(e) => {
                let e = format!("settings: {e:#}");
                tracing::error!("{e}; the previous set keeps running");
                reload.mark_seen();
                board.load_failed(vec![e]);
                return;
            }
        },
        false => None,
    };
    let settings = fresh.as_ref().map_or(&live.settings, |f| &f.settings);
    match reload.load(args, settings).await {
        Ok(jobs) => {
            if let Some(fresh) = fresh {
                std::mem::replace(live, fresh).retire();
                tracing::info!("settings reloaded");
            }
            install(board, schedule, spread, jobs, args.interval);
        }
        Err(errors) => {
            tracing::error!(
                "{} error(s) in the test files: the previous set keeps running",
                errors.len()
            );
            for e in &errors {
                tracing::error!("{e}");
            }
            if let Some(fresh) = fresh {
                fresh.retire();
            }
            board.load_failed(errors);
        }
    }
}

/// The watched files and what they looked like at the last load.
struct Reload {
    /// The test files, then the settings file when one was given.
    paths: Vec<PathBuf>,
    settings: bool,
    seen: Vec<Option<SystemTime>>,
}

impl Reload {
    fn new(args: &ServeArgs) -> Self {
        let mut paths = args.files.clone();
        paths.extend(args.common.settings.clone());
        Reload {
            seen: Vec::new(),
            settings: args.common.settings.is_some(),
            paths,
        }
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.paths
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// Whether any watched file changed (or appeared, or went) since the last load.
    fn changed(&self) -> bool {
        self.stamps() != self.seen
    }

    /// Whether the settings file (the last watched path, when given) changed.
    fn settings_changed(&self) -> bool {
        self.settings && self.stamps().last() != self.seen.last()
    }

    /// Takes the files as they are now as seen, so an unchanged bad edit is not retried.
    fn mark_seen(&mut self) {
        self.seen = self.stamps();
    }

    /// Loads the test files: the jobs, or every error as `file:line:col: message` text.
    async fn load(
        &mut self,
        args: &ServeArgs,
        settings: &Settings,
    ) -> std::result::Result<Vec<Job>, Vec<String>> {
        self.seen = self.stamps();
        let loaded = crate::load::load(
            &args.files,
            args.strict,
            settings.fetch_timeout(),
            settings.max_jobs,
        )
        .await
        .map_err(|e| vec![format!("{e:#}")])?;
        for d in loaded.diagnostics.iter().filter(|d| !d.is_error()) {
            tracing::warn!("{d}");
        }
        if loaded.errors() > 0 {
            return Err(loaded
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| d.to_string())
                .collect());
        }
        Ok(loaded.jobs)
    }
}

/// `name` in the directory of `path`.
fn beside(path: &Path, name: &str) -> PathBuf {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}

/// Resolves when `stop` turns true (the queue's own wait, on a receiver of its own).
async fn stopped(mut stop: watch::Receiver<bool>) {
    crate::queue::stopped(&mut stop).await
}

/// SIGTERM/SIGINT set `stop`; SIGHUP asks for a reload.
async fn signals(stop: watch::Sender<bool>, hup: mpsc::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot listen for signals; stop serve with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hangup.recv() => {
                // One pending reload is enough.
                let _ = hup.try_send(());
            }
        }
    }
    let _ = stop.send(true);
}

/// Tells systemd (`Type=notify`) about readiness and stopping; nothing without systemd.
fn notify_systemd(state: &str) {
    let state = match state {
        "READY=1" => sd_notify::NotifyState::Ready,
        _ => sd_notify::NotifyState::Stopping,
    };
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
