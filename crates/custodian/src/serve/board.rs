//! What `serve` knows about each check right now (the board): updated by the scheduler as
//! results arrive, read by the web pages, the JSON API and the metrics.

use custodian_core::{Job, JobResult, Status};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::RwLock;

/// One check as shown: its line and its latest result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckView {
    /// The check's stable id ([`Job::id`]): the key of its state and history.
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) probe: String,
    /// The target, any URL password masked.
    pub(crate) target: String,
    /// The source line, secrets masked.
    pub(crate) line: String,
    pub(crate) file: String,
    pub(crate) lineno: u32,
    pub(crate) otherwise: Option<String>,
    /// Seconds between runs.
    pub(crate) every: u64,
    /// The latest verdict; `None` until the first result.
    pub(crate) status: Option<Status>,
    /// When the current status began (unix seconds).
    pub(crate) since: Option<u64>,
    /// When the latest result arrived (unix seconds).
    pub(crate) last_at: Option<u64>,
    /// The latest result's reason (escaped, secrets masked).
    pub(crate) reason: Option<String>,
    pub(crate) duration_ms: Option<u64>,
    /// Who ran the latest result: `local` on the embedded pool, else the worker's name.
    pub(crate) worker: Option<String>,
    /// Until when a silence keeps its notices from the alerters (unix seconds); set by the
    /// web side as it lists the check.
    pub(crate) silenced_until: Option<u64>,
    /// Where it runs from (`3 locations`, `ams1, lon1`), with the quorum; `None` for a check
    /// of the default location only.
    pub(crate) from: Option<String>,
    /// Each location's latest answer, by location name (checks run from several).
    pub(crate) locations: Vec<super::fleet::Answer>,
}

impl CheckView {
    pub(crate) fn new(job: &Job, every: u64) -> Self {
        CheckView {
            id: job.id(),
            probe: job.probe.clone(),
            target: job.display_target(),
            line: job.line.to_string(),
            file: job.file.to_string(),
            lineno: job.lineno,
            otherwise: job.otherwise.clone(),
            every,
            status: None,
            since: None,
            last_at: None,
            reason: None,
            duration_ms: None,
            worker: None,
            silenced_until: None,
            from: job.from.as_ref().map(|f| {
                let places = match f {
                    custodian_core::Locations::Any(n) => format!("any {n} locations"),
                    custodian_core::Locations::Named(names) => names.join(", "),
                };
                format!("{places} (quorum {})", job.quorum_needed())
            }),
            locations: Vec::new(),
        }
    }

    /// Whether it is failing now (failed, unknown, or failing from some locations): shown
    /// first.
    pub(crate) fn failing(&self) -> bool {
        matches!(
            self.status,
            Some(Status::Failed | Status::Unknown | Status::Partial)
        )
    }
}

/// Counters about serve itself, for the page and `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Engine {
    /// Results received since start.
    pub(crate) results: u64,
    /// Checks started and not finished (embedded pool) or enqueued and not answered.
    pub(crate) in_flight: u64,
    /// Runs due but not started because the previous run of the same check was still going.
    pub(crate) overruns: u64,
    /// Successful loads of the test files.
    pub(crate) reloads: u64,
    /// When the current set was loaded (unix seconds).
    pub(crate) loaded_at: u64,
    /// Unix seconds when serve started.
    pub(crate) started_at: u64,
    /// Verdicts of checks run from several locations.
    pub(crate) verdicts: u64,
    /// Time from the deciding location's answer leaving its worker to the verdict: sum and
    /// worst since start, milliseconds.
    pub(crate) verdict_delay_ms_sum: u64,
    pub(crate) verdict_delay_ms_max: u64,
}

impl Engine {
    pub(crate) fn verdict_delay(&mut self, ms: u64) {
        self.verdict_delay_ms_sum = self.verdict_delay_ms_sum.saturating_add(ms);
        self.verdict_delay_ms_max = self.verdict_delay_ms_max.max(ms);
    }
}

/// The board's content at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Snapshot {
    /// Every check, failing ones first, then by file and line.
    pub(crate) checks: Vec<CheckView>,
    /// The last reload's errors (`file:line:col: message`); empty when it loaded. The set
    /// in `checks` is then the last one that loaded.
    pub(crate) errors: Vec<String>,
    pub(crate) engine: Engine,
    /// The files being watched.
    pub(crate) files: Vec<String>,
    /// The locations known to `serve --queue`: named by tests or served by workers.
    pub(crate) places: Vec<super::fleet::PlaceView>,
}

#[derive(Debug, Default)]
struct Inner {
    checks: BTreeMap<String, CheckView>,
    errors: Vec<String>,
    engine: Engine,
    files: Vec<String>,
    places: Vec<super::fleet::PlaceView>,
}

/// Shared between the scheduler (writer) and the web (readers).
#[derive(Debug, Default)]
pub(crate) struct Board {
    inner: RwLock<Inner>,
    /// Counts and gauges for `/metrics` beyond each check's state.
    pub(crate) gauges: super::gauges::Gauges,
}

impl Board {
    pub(crate) fn new(files: Vec<String>, started_at: u64) -> Self {
        Board {
            inner: RwLock::new(Inner {
                files,
                engine: Engine {
                    started_at,
                    ..Engine::default()
                },
                ..Inner::default()
            }),
            gauges: Default::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let inner = self.read();
        let mut checks: Vec<CheckView> = inner.checks.values().cloned().collect();
        checks.sort_by(|a, b| {
            (!a.failing(), &a.file, a.lineno, &a.target).cmp(&(
                !b.failing(),
                &b.file,
                b.lineno,
                &b.target,
            ))
        });
        Snapshot {
            checks,
            errors: inner.errors.clone(),
            engine: inner.engine.clone(),
            files: inner.files.clone(),
            places: inner.places.clone(),
        }
    }

    pub(crate) fn check(&self, id: &str) -> Option<CheckView> {
        self.read().checks.get(id).cloned()
    }

    /// Replaces the set of checks after a successful load: a check whose id is unchanged
    /// keeps its status and since; new ones start empty; removed ones go.
    pub(crate) fn load(&self, views: Vec<CheckView>, now: u64) {
        let mut inner = self.write();
        let mut old = std::mem::take(&mut inner.checks);
        for mut v in views {
            if let Some(prev) = old.remove(&v.id) {
                v.status = prev.status;
                v.since = prev.since;
                v.last_at = prev.last_at;
                v.reason = prev.reason;
                v.duration_ms = prev.duration_ms;
                v.worker = prev.worker;
                v.locations = prev.locations;
            }
            inner.checks.insert(v.id.clone(), v);
        }
        inner.errors.clear();
        inner.engine.reloads += 1;
        inner.engine.loaded_at = now;
    }

    /// A reload that failed: the old set stays, the errors are shown.
    pub(crate) fn load_failed(&self, errors: Vec<String>) {
        self.write().errors = errors;
    }

    /// Records a result; ignored when its check is no longer loaded.
    pub(crate) fn record(&self, r: &JobResult, worker: &str, now: u64) {
        self.gauges.result(r, worker, now);
        let mut inner = self.write();
        inner.engine.results += 1;
        let Some(v) = inner.checks.get_mut(&r.id) else {
            return;
        };
        if v.status != Some(r.status) {
            v.since = Some(now);
        }
        v.status = Some(r.status);
        v.last_at = Some(now);
        v.reason = r.error.clone();
        v.duration_ms = Some(r.duration_ms);
        v.worker = Some(worker.to_string());
    }

    /// Records one location's answer for a check run from several.
    pub(crate) fn answer(&self, id: &str, answer: super::fleet::Answer) {
        let mut inner = self.write();
        let Some(v) = inner.checks.get_mut(id) else {
            return;
        };
        match v
            .locations
            .iter_mut()
            .find(|a| a.location == answer.location)
        {
            Some(slot) => *slot = answer,
            None => {
                v.locations.push(answer);
                v.locations.sort_by(|a, b| a.location.cmp(&b.location));
            }
        }
    }

    /// The locations overview, as serve's loop sees it now.
    pub(crate) fn places(&self, places: Vec<super::fleet::PlaceView>) {
        self.write().places = places;
    }

    /// Adjusts the engine counters.
    pub(crate) fn engine(&self, f: impl FnOnce(&mut Engine)) {
        f(&mut self.write().engine);
    }
}
