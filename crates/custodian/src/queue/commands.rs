//! The `enqueue`, `worker` and `queue` commands, and [`hand_on`], where results leave a worker.

use super::drive::{self, Options};
use super::{lease_for, retry, Outage, QueueUrl};
use crate::cli::{EnqueueArgs, QueueAction, QueueArgs, WorkerArgs};
use crate::commands::startup::{load_jobs, Overrides, Startup};
use crate::settings::Settings;
use anyhow::Result;
use custodian_core::{mask_url, queue, JobResult, Status};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long `enqueue` and `queue` keep retrying an unreachable broker before giving up.
const BROKER_PATIENCE: Duration = Duration::from_secs(120);

/// `custodian enqueue`: parse everything, then put every job (all or nothing on bad input).
pub(crate) async fn enqueue(args: EnqueueArgs) -> Result<ExitCode> {
    let settings = Settings::load(args.common.settings.as_deref())?;
    let queue = settings.queue_url(args.queue.as_deref())?;
    let url = QueueUrl::parse(&queue)?;
    let Some(jobs) = load_jobs(&args.files, args.strict, &settings).await? else {
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    };
    crate::commands::startup::warn_locations(
        &jobs,
        "`enqueue` puts them on the default location's queue, once",
    );
    let pending: Vec<_> = jobs
        .iter()
        .map(|j| {
            queue::encode(
                j,
                lease_for(
                    j,
                    settings.timeout(),
                    settings.retries,
                    settings.retry_delay(),
                ),
            )
        })
        .collect();
    let q = url.open_remembering(&settings.state_file());
    let outage = Outage::default();
    // A job whose twin is buried would only be buried again: it waits for `queue dead`.
    let dead = retry(&outage, BROKER_PATIENCE, || q.dead())
        .await
        .map_err(|e| refusal(&e, "enqueueing", &queue))?;
    let (pending, twins) = without_buried_twins(pending, &dead);
    let report = retry(&outage, BROKER_PATIENCE, || q.put(&pending))
        .await
        .map_err(|e| refusal(&e, "enqueueing", &queue))?;
    println!(
        "enqueued {} job(s) on {} ({} already pending)",
        report.added,
        mask_url(&queue),
        report.duplicates
    );
    if twins > 0 {
        println!("{twins} buried twin(s) not added: see `custodian queue dead`");
    }
    Ok(ExitCode::SUCCESS)
}

/// The jobs with no buried twin (same id), and how many had one.
fn without_buried_twins(
    pending: Vec<queue::Pending>,
    dead: &[queue::DeadLetter],
) -> (Vec<queue::Pending>, usize) {
    let buried: std::collections::HashSet<String> = dead
        .iter()
        .filter_map(|l| queue::decode(&l.body).ok())
        .map(|j| j.id())
        .collect();
    let before = pending.len();
    let kept: Vec<_> = pending
        .into_iter()
        .filter(|p| !buried.contains(&p.id))
        .collect();
    let twins = before - kept.len();
    (kept, twins)
}

/// One dead letter as `queue dead` lists it: `t.cfg:3 tcp 127.0.0.1 — reason`, the target
/// masked and control characters escaped.
fn dead_line(letter: &queue::DeadLetter) -> String {
    let what = match queue::decode(&letter.body) {
        Ok(j) => format!("{}:{} {} {}", j.file, j.lineno, j.probe, j.display_target()),
        Err(_) => format!("job {}", letter.handle),
    };
    custodian_core::outcome::escape_controls(&format!("{what} — {}", letter.reason))
}

/// `custodian queue status|flush`.
pub(crate) async fn queue(args: QueueArgs) -> Result<ExitCode> {
    // Settings are read only when --queue is missing: `status` needs nothing else from them.
    let queue = match &args.queue {
        Some(q) => q.clone(),
        None => Settings::load(args.common.settings.as_deref())?.queue_url(None)?,
    };
    let q = QueueUrl::parse(&queue)?.open();
    let outage = Outage::default();
    match args.action {
        QueueAction::Status { json } => {
            let s = retry(&outage, BROKER_PATIENCE, || q.stats())
                .await
                .map_err(|e| refusal(&e, "queue status", &queue))?;
            if json {
                let v = serde_json::json!({
                    "pending": s.pending,
                    "reserved": s.reserved,
                    "buried": s.buried,
                    "oldest_seconds": s.oldest.map(|d| d.as_secs_f64()),
                });
                println!("{v}");
                return Ok(ExitCode::SUCCESS);
            }
            let oldest = s
                .oldest
                .map_or("-".to_string(), |d| format!("{:.1}s", d.as_secs_f64()));
            println!(
                "pending {}\nreserved {}\nburied {}\noldest {oldest}",
                s.pending, s.reserved, s.buried
            );
        }
        QueueAction::Flush => {
            let n = retry(&outage, BROKER_PATIENCE, || q.flush())
                .await
                .map_err(|e| refusal(&e, "queue flush", &queue))?;
            println!("flushed {n} job(s) from {}", mask_url(&queue));
        }
        QueueAction::Dead { requeue, drop } => {
            let fail = |e| refusal(&e, "queue dead", &queue);
            let dead = retry(&outage, BROKER_PATIENCE, || q.dead())
                .await
                .map_err(fail)?;
            if drop {
                let n = retry(&outage, BROKER_PATIENCE, || q.drop_dead(&dead))
                    .await
                    .map_err(fail)?;
                println!("dropped {n} dead letter(s)");
            } else if requeue {
                let settings = Settings::load(args.common.settings.as_deref())?;
                let (again, skipped) = requeueable(&dead, &settings);
                let put = retry(&outage, BROKER_PATIENCE, || q.put(&again))
                    .await
                    .map_err(fail)?;
                // Only letters whose job is back (or already pending) are removed.
                let back: Vec<_> = dead
                    .iter()
                    .filter(|l| queue::decode(&l.body).is_ok())
                    .cloned()
                    .collect();
                retry(&outage, BROKER_PATIENCE, || q.drop_dead(&back))
                    .await
                    .map_err(fail)?;
                println!(
                    "requeued {} job(s) ({} already pending)",
                    put.added, put.duplicates
                );
                if skipped > 0 {
                    println!("{skipped} undecodable dead letter(s) left: drop them with --drop");
                }
            } else {
                let mut out = std::io::stdout().lock();
                for letter in &dead {
                    writeln!(out, "{}", dead_line(letter))?;
                }
                writeln!(out, "{} dead letter(s)", dead.len())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The buried jobs that can go back on the queue (with a fresh lease from `settings`), and
/// how many letters hold no job that can.
fn requeueable(dead: &[queue::DeadLetter], settings: &Settings) -> (Vec<queue::Pending>, usize) {
    let jobs: Vec<_> = dead
        .iter()
        .filter_map(|l| queue::decode(&l.body).ok())
        .collect();
    let skipped = dead.len() - jobs.len();
    let again = jobs
        .iter()
        .map(|j| {
            let lease = lease_for(
                j,
                settings.timeout(),
                settings.retries,
                settings.retry_delay(),
            );
            queue::encode(j, lease)
        })
        .collect();
    (again, skipped)
}

/// `custodian worker`: drain the queue until stopped (or empty, with `--drain`).
pub(crate) async fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let settings = Settings::load(args.common.settings.as_deref())?;
    let queue = settings.queue_url(args.queue.as_deref())?;
    let url = QueueUrl::parse(&queue)?;
    let flags = Overrides {
        concurrency: args.concurrency,
        ..Overrides::default()
    };
    let start = Startup::from_settings(settings, flags)?.with_fd_limit();
    let settings = &start.settings;
    let opts = Options {
        concurrency: settings.concurrency,
        drain: args.drain,
        max_deliveries: settings.max_deliveries,
        room: None,
    };
    let name = args.name.unwrap_or_else(default_name);
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(signals(stop_tx));
    let mut out = Output {
        name,
        json: args.json,
        verbose: args.verbose,
        tally: Tally::default(),
        since: Instant::now(),
        worst: None,
        reports: url.results()?.open(),
        location: None,
        alerting: start
            .alerting(|| crate::alerting::shared_store(settings, &url))
            .await?,
    };
    let opts = Options {
        room: out.alerting.as_ref().map(|a| a.room()),
        ..opts
    };
    let engine = start.engine();
    let location = args.location.clone();
    let place = location.as_deref().unwrap_or(super::DEFAULT_LOCATION);
    let jobs = url.at(place)?;
    tokio::spawn(beat(
        url.workers()?.open(),
        super::Beat {
            worker: out.name.clone(),
            location: place.to_string(),
            at: 0,
        },
        stop.clone(),
    ));
    out.location = location;
    let driven = drive::drive(jobs.open(), engine, opts, stop, |r| out.hand_on(r)).await;
    if let Some(a) = &out.alerting {
        a.finish().await;
    }
    out.summarise();
    driven.map_err(|e| refusal(&e, "worker", &queue))?;
    Ok(match (args.drain, out.worst) {
        (true, Some(Status::Failed)) => ExitCode::FAILURE,
        (true, Some(Status::Unknown)) => ExitCode::from(crate::EXIT_UNKNOWN),
        _ => ExitCode::SUCCESS,
    })
}

/// A broker error as the command's own (exit 2): what we were doing, the queue URL with its
/// password masked, and the broker's words with control characters escaped.
fn refusal(e: &queue::QueueError, doing: &str, url: &str) -> anyhow::Error {
    let said = custodian_core::outcome::escape_controls(&e.to_string());
    anyhow::anyhow!("{doing} on {}: {said}", mask_url(url))
}

/// Sets `stop` on the first SIGTERM or SIGINT.
async fn signals(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop this worker with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("stopping: no new jobs; finishing those in flight");
    let _ = stop.send(true);
}

/// Says every [`super::BEAT_EVERY`] on the workers queue that this worker is alive and where,
/// until `stop`. A beat still pending is not added twice, so an unread queue holds at most one
/// per worker; a broker outage costs beats, never jobs.
async fn beat(
    q: std::sync::Arc<dyn queue::JobQueue>,
    mut beat: super::Beat,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(super::BEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = super::stopped(&mut stop) => return,
        }
        beat.at = crate::alerting::unix_now();
        if let Err(e) = q.put(&[beat.pending()]).await {
            tracing::debug!("heartbeat: {e}");
        }
    }
}

/// `host-pid`, unique enough to tell workers apart in results.
fn default_name() -> String {
    format!("{}-{}", crate::alerting::host(), std::process::id())
}

/// How often a worker logs its [`Tally`] (when jobs arrive; an idle worker stays quiet).
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// What a worker finished since its last summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    jobs: u64,
    failed: u64,
    unknown: u64,
}

impl Tally {
    fn count(&mut self, status: Status) {
        self.jobs += 1;
        match status {
            Status::Failed => self.failed += 1,
            Status::Unknown => self.unknown += 1,
            _ => {}
        }
    }

    /// `last 60s: 120 job(s), 3 failed, 1 unknown`.
    fn line(&self, over: Duration) -> String {
        format!(
            "last {}s: {} job(s), {} failed, {} unknown",
            over.as_secs(),
            self.jobs,
            self.failed,
            self.unknown
        )
    }
}

/// Where a worker's results go.
struct Output {
    name: String,
    /// One JSON object per job on stdout (`--json`).
    json: bool,
    /// One text line per job on stdout (`--verbose`); otherwise only the periodic summary,
    /// so a journal is not flooded with a line per passing check.
    verbose: bool,
    tally: Tally,
    /// Start of the period `tally` counts.
    since: Instant,
    /// Failed if any job failed, else Unknown if any could not be judged.
    worst: Option<Status>,
    alerting: Option<std::sync::Arc<crate::alerting::Alerting>>,
    /// Where results of jobs scheduled by `serve` go back ([`QueueUrl::results`]).
    reports: std::sync::Arc<dyn queue::JobQueue>,
    /// `--location`, named in every result sent back.
    location: Option<String>,
}

impl Output {
    /// Every finished job passes through here before it is acknowledged; alerting takes it
    /// on in the background (shared state, then the alerters), and the job is acknowledged
    /// once the returned [`crate::alerting::Accepted`] says its state and notice are stored.
    fn hand_on(&mut self, result: JobResult) -> Option<crate::alerting::Accepted> {
        match (result.status, self.worst) {
            (Status::Failed, _) => self.worst = Some(Status::Failed),
            (Status::Unknown, None) => self.worst = Some(Status::Unknown),
            _ => {}
        }
        let accepted = if result.report {
            // serve scheduled it: serve keeps its state and alerts; the job is acknowledged
            // once the result is on the results queue.
            Some(self.report(&result))
        } else {
            self.alerting.as_ref().map(|a| a.spawn(result.clone()))
        };
        let line = if self.json {
            Some(json_line(&result, &self.name))
        } else if self.verbose {
            Some(text_line(&result))
        } else {
            None
        };
        if let Some(line) = line {
            // A closed stdout must not stop the worker from acknowledging its jobs.
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
        self.tally.count(result.status);
        if self.since.elapsed() >= SUMMARY_EVERY {
            self.summarise();
        }
        accepted
    }

    /// Logs what was finished since the last summary (nothing if no job was) and starts a
    /// new period.
    fn summarise(&mut self) {
        let tally = std::mem::take(&mut self.tally);
        let over = std::mem::replace(&mut self.since, Instant::now()).elapsed();
        if tally.jobs > 0 {
            tracing::info!(
                jobs = tally.jobs,
                failed = tally.failed,
                unknown = tally.unknown,
                "{}",
                tally.line(over)
            );
        }
    }
}

impl Output {
    /// Sends `result` back to serve; resolves once the broker took it (or gave up, logged:
    /// the job is then acknowledged without its result, as a worker's own alert would be
    /// lost on the same outage).
    fn report(&self, result: &JobResult) -> crate::alerting::Accepted {
        let report = super::Report {
            at: crate::alerting::unix_now(),
            worker: self.name.clone(),
            location: self.location.clone(),
            sent_ms: crate::alerting::unix_ms(),
            result: result.clone(),
        };
        let q = std::sync::Arc::clone(&self.reports);
        let (done, accepted) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let pending = [report.pending()];
            let outage = Outage::default();
            if let Err(e) = retry(&outage, BROKER_PATIENCE, || q.put(&pending)).await {
                tracing::error!("sending a result back to serve: {e}");
            }
            let _ = done.send(());
        });
        accepted
    }
}

/// The `run --json` object plus `worker`.
fn json_line(result: &JobResult, worker: &str) -> String {
    let mut v = serde_json::to_value(result).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("worker".into(), worker.into());
    }
    v.to_string()
}

/// `FAIL tcp 127.0.0.1 — connection refused — t.cfg:3`, one line whatever the reason holds
/// (control characters escaped).
fn text_line(r: &JobResult) -> String {
    let status = crate::report::label(r.status);
    let mut parts = vec![format!("{status} {} {}", r.probe, r.target)];
    parts.extend(r.error.clone());
    parts.push(format!("{}:{}", r.file, r.lineno));
    custodian_core::outcome::escape_controls(&parts.join(" — "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_core::Job;

    fn result() -> JobResult {
        let mut job = Job::new("tcp", "127.0.0.1", Some(9));
        job.file = "t.cfg".into();
        job.lineno = 3;
        JobResult::new(
            &job,
            Status::Failed,
            Some("connection refused".into()),
            4,
            1,
        )
    }

    fn letter(job: &Job, reason: &str) -> queue::DeadLetter {
        queue::DeadLetter {
            handle: "9".into(),
            body: queue::encode(job, Duration::from_secs(1)).body,
            reason: reason.into(),
        }
    }

    #[test]
    fn a_job_whose_twin_is_buried_is_not_added() {
        let buried = Job::new("tcp", "127.0.0.1", Some(1));
        let other = Job::new("tcp", "127.0.0.1", Some(2));
        let pending = [&buried, &other, &buried]
            .map(|j| queue::encode(j, Duration::from_secs(1)))
            .to_vec();
        let garbage = queue::DeadLetter {
            handle: "1".into(),
            body: b"{not json".to_vec(),
            reason: "cannot decode job".into(),
        };
        let (kept, twins) = without_buried_twins(pending, &[garbage, letter(&buried, "x")]);
        assert_eq!(twins, 2);
        assert_eq!(
            kept.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
            [other.id()]
        );
    }

    #[test]
    fn dead_letters_list_line_type_masked_target_and_reason() {
        let mut job = Job::new("http", "http://ops:hunter2@127.0.0.1/", None);
        job.file = "web.cfg".into();
        job.lineno = 7;
        let line = dead_line(&letter(&job, "delivered 4 times\x1b[2J"));
        assert!(line.starts_with("web.cfg:7 http http://ops:"), "{line}");
        assert!(!line.contains("hunter2"), "{line}");
        assert!(line.ends_with(" — delivered 4 times\\u{1b}[2J"), "{line}");
        let raw = queue::DeadLetter {
            handle: "5".into(),
            body: b"{not json".to_vec(),
            reason: "bad \u{1b}]0;x\u{7}".into(),
        };
        assert_eq!(dead_line(&raw), "job 5 — bad \\u{1b}]0;x\\u{7}");
    }

    #[test]
    fn requeue_skips_letters_without_a_job() {
        let job = Job::new("tcp", "127.0.0.1", Some(3));
        let garbage = queue::DeadLetter {
            handle: "1".into(),
            body: Vec::new(),
            reason: "cannot decode job".into(),
        };
        let (again, skipped) = requeueable(&[letter(&job, "x"), garbage], &Settings::default());
        assert_eq!(skipped, 1);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, job.id());
    }

    #[test]
    fn json_results_name_their_worker() {
        let v: serde_json::Value = serde_json::from_str(&json_line(&result(), "w1")).expect("json");
        assert_eq!(v["worker"], "w1");
        assert_eq!(v["status"], "failed");
        assert_eq!(v["attempts"], 1);
    }

    #[test]
    fn the_summary_counts_jobs_failures_and_unknowns() {
        let mut t = Tally::default();
        for s in [
            Status::Passed,
            Status::Failed,
            Status::Unknown,
            Status::Failed,
        ] {
            t.count(s);
        }
        assert_eq!(
            t,
            Tally {
                jobs: 4,
                failed: 2,
                unknown: 1
            }
        );
        assert_eq!(
            t.line(Duration::from_secs(61)),
            "last 61s: 4 job(s), 2 failed, 1 unknown"
        );
    }

    #[test]
    fn text_results_read_like_the_table() {
        assert_eq!(
            text_line(&result()),
            "FAIL tcp 127.0.0.1 — connection refused — t.cfg:3"
        );
        // A result from elsewhere (not built by `JobResult::new`) is escaped all the same.
        let mut raw = result();
        raw.error = Some("bad \u{1b}[2J\nline".into());
        assert_eq!(
            text_line(&raw),
            "FAIL tcp 127.0.0.1 — bad \\u{1b}[2J\\nline — t.cfg:3"
        );
    }
}
