//! What `/metrics` shows besides each check's state: jobs run by status, the workers that sent
//! results, the broker's queue depth, the peers' certificate expiry and the last scan's
//! findings. Kept by the board as results arrive; cheap to update, copied out per scrape.

use custodian_core::queue::{JobQueue, QueueStats};
use custodian_core::{JobResult, Status};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A worker counts as seen while its last result is at most this old.
pub(crate) const WORKER_SEEN_SECS: u64 = 600;
/// Workers silent for longer are forgotten (a renamed worker must not stay a series forever).
const WORKER_FORGET_SECS: u64 = 86_400;
/// How often the broker is asked for its queue depth.
pub(crate) const QUEUE_EVERY: Duration = Duration::from_secs(5);

/// The last scan report, as counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ScanSummary {
    /// When it was stored (unix seconds).
    pub(crate) at: u64,
    /// Findings listed in the report by (check, verdict).
    pub(crate) findings: BTreeMap<(String, String), u64>,
}

impl ScanSummary {
    /// Counts the `findings` rows of a report (as `custodian scan --report-to` sends it).
    pub(crate) fn of(report: &serde_json::Value, at: u64) -> Self {
        let mut findings = BTreeMap::new();
        let rows = report["findings"].as_array().map(Vec::as_slice);
        for row in rows.unwrap_or_default() {
            let word = |k: &str| row[k].as_str().unwrap_or("unknown").to_owned();
            *findings
                .entry((word("check"), word("verdict")))
                .or_default() += 1;
        }
        ScanSummary { at, findings }
    }
}

/// A copy of the gauges for one scrape.
#[derive(Debug, Clone, Default)]
pub(crate) struct Readings {
    /// Results received by status word.
    pub(crate) jobs: BTreeMap<&'static str, u64>,
    /// Each worker's last result (unix seconds).
    pub(crate) workers: BTreeMap<String, u64>,
    /// The broker's counts, with `--queue` once sampled.
    pub(crate) queue: Option<QueueStats>,
    /// Certificate notAfter (unix seconds) by check id, as its latest TLS handshake saw it.
    pub(crate) certificates: HashMap<String, i64>,
    /// Deliveries and failures by alerter, since start.
    pub(crate) deliveries: BTreeMap<&'static str, (u64, u64)>,
    pub(crate) scan: Option<ScanSummary>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: BTreeMap<&'static str, u64>,
    workers: HashMap<String, u64>,
    queue: Option<QueueStats>,
    certificates: HashMap<String, i64>,
    scan: Option<ScanSummary>,
}

/// Shared by the scheduler (writer) and `/metrics` (reader).
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    inner: Mutex<Inner>,
}

impl Gauges {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a result from `worker` at `now`.
    pub(crate) fn result(&self, r: &JobResult, worker: &str, now: u64) {
        let mut g = self.lock();
        *g.jobs.entry(status_word(r.status)).or_default() += 1;
        if let Some(t) = r.certificate_expiry {
            g.certificates.insert(r.id.clone(), t);
        }
        match g.workers.get_mut(worker) {
            Some(seen) => *seen = now,
            None => {
                g.workers
                    .retain(|_, at| now.saturating_sub(*at) <= WORKER_FORGET_SECS);
                g.workers.insert(worker.to_owned(), now);
            }
        }
    }

    pub(crate) fn queue(&self, stats: QueueStats) {
        self.lock().queue = Some(stats);
    }

    /// Takes the last scan report's counts.
    pub(crate) fn scan(&self, summary: ScanSummary) {
        self.lock().scan = Some(summary);
    }

    /// Whether a scan report was seen since start.
    pub(crate) fn has_scan(&self) -> bool {
        self.lock().scan.is_some()
    }

    pub(crate) fn read(&self) -> Readings {
        let g = self.lock();
        Readings {
            jobs: g.jobs.clone(),
            workers: g.workers.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            queue: g.queue,
            certificates: g.certificates.clone(),
            deliveries: crate::alerting::deliveries(),
            scan: g.scan.clone(),
        }
    }
}

/// The words of `custodian_jobs_total`'s `status` label.
fn status_word(s: Status) -> &'static str {
    super::web::state_word(Some(s))
}

/// Asks the broker for its counts every [`QUEUE_EVERY`] (not per scrape: a scrape must not
/// wait on the broker) until the gauges' owner is gone.
pub(crate) async fn sample_queue(q: Arc<dyn JobQueue>, gauges: std::sync::Weak<super::Board>) {
    let mut every = tokio::time::interval(QUEUE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(board) = gauges.upgrade() else {
            return;
        };
        // One try: a broker outage is logged by the scheduler; the last counts stay.
        if let Ok(Ok(s)) = tokio::time::timeout(QUEUE_EVERY, q.stats()).await {
            board.gauges.queue(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_core::Job;

    #[test]
    fn results_count_by_status_and_worker() {
        let g = Gauges::default();
        let job = Job::new("ssl", "127.0.0.1", Some(443));
        let mut r = JobResult::new(&job, Status::Passed, None, 1, 1);
        r.certificate_expiry = Some(1_800_000_000);
        g.result(&r, "w1", 1000);
        let r = JobResult::new(&job, Status::Failed, None, 1, 1);
        g.result(&r, "w2", 1100);
        g.result(&r, "w2", 1200);
        let got = g.read();
        assert_eq!(got.jobs.get("passed"), Some(&1));
        assert_eq!(got.jobs.get("failed"), Some(&2));
        assert_eq!(got.workers.get("w2"), Some(&1200));
        // A result without a handshake keeps the expiry last seen.
        assert_eq!(got.certificates.get(&job.id()), Some(&1_800_000_000));
        // A worker silent for a day is forgotten when a new one appears.
        g.result(&r, "w3", 1000 + WORKER_FORGET_SECS + 200);
        assert!(!g.read().workers.contains_key("w1"));
    }

    /// The sampler reads the broker's counts into the board's gauges at once, then every
    /// [`QUEUE_EVERY`].
    #[tokio::test]
    async fn queue_depth_is_sampled() {
        let q = Arc::new(crate::queue::memory::MemoryQueue::new(true));
        let job = Job::new("tcp", "127.0.0.1", Some(22));
        q.put(&[custodian_core::queue::encode(&job, Duration::from_secs(60))])
            .await
            .expect("put");
        let board = Arc::new(super::super::Board::new(Vec::new(), 0));
        let task = tokio::spawn(sample_queue(q, Arc::downgrade(&board)));
        let mut got = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            got = board.gauges.read().queue;
            if got.is_some() {
                break;
            }
        }
        let got = got.expect("sampled");
        assert_eq!((got.pending, got.reserved), (1, 0));
        task.abort();
    }

    #[test]
    fn scan_summary_counts_findings_by_check_and_verdict() {
        let report = serde_json::json!({
            "findings": [
                {"check": "opensocks", "verdict": "open"},
                {"check": "opensocks", "verdict": "open"},
                {"check": "openrelay", "verdict": "unknown"},
            ]
        });
        let s = ScanSummary::of(&report, 5);
        assert_eq!(s.findings[&("opensocks".into(), "open".into())], 2);
        assert_eq!(s.findings[&("openrelay".into(), "unknown".into())], 1);
        assert_eq!(ScanSummary::of(&serde_json::json!({}), 5).findings.len(), 0);
    }
}
