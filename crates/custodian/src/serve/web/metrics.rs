//! `/metrics`: the board as Prometheus metrics, encoded by `prometheus-client` (OpenMetrics
//! text, which Prometheus scrapes natively).
//!
//! A fresh registry per scrape: the set of checks changes with every reload, and a scrape of
//! 10,000 checks is a few milliseconds of formatting.

use super::Web;
use crate::serve::board::{CheckView, Snapshot};
use crate::serve::gauges::{Readings, ScanSummary, WORKER_SEEN_SECS};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use custodian_core::Status;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The labels of a check's series: one label set per check.
type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics to clients that ask for it (Prometheus does), else the classic text format
/// (curl, `promtool check metrics`).
pub(super) async fn metrics(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if !web.board.gauges.has_scan() {
        // Once after start: the last report stored by an earlier run (then kept as posted).
        if let Ok(Some(last)) = web.history.scans(1).await.map(|s| s.into_iter().next()) {
            web.board
                .gauges
                .scan(ScanSummary::of(&last.report, last.at));
        }
    }
    let readings = web.board.gauges.read();
    let text = match render(&web.board.snapshot(), web.history.dropped(), &readings) {
        Ok(t) => t,
        Err(e) => {
            return super::Refusal::internal(anyhow::anyhow!("encoding metrics: {e}"))
                .into_response()
        }
    };
    let open = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if open {
        ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            prometheus_text(&text),
        )
            .into_response()
    }
}

/// The encoder's OpenMetrics text as the Prometheus text format 0.0.4: a counter's HELP and
/// TYPE lines name its `_total` samples, and there is no `# EOF`. Our metrics are counters and
/// gauges only, so that is the whole difference.
pub(crate) fn prometheus_text(open: &str) -> String {
    let counters: HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len() + 64);
    for line in open.lines().filter(|l| *l != "# EOF") {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {rest}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn labels(c: &CheckView) -> Labels {
    vec![
        ("id", c.id.clone()),
        ("type", c.probe.clone()),
        ("target", c.target.clone()),
        ("file", c.file.clone()),
        ("line", c.lineno.to_string()),
    ]
}

/// `custodian_check_state`'s value.
pub(crate) fn state_value(s: Option<Status>) -> i64 {
    match s {
        Some(Status::Passed) => 0,
        Some(Status::Failed) => 1,
        Some(Status::Unknown) => 2,
        Some(Status::Skipped) => 3,
        Some(Status::Partial) => 4,
        None => -1,
    }
}

/// The exposition text of `snap`, with `dropped` history rows and the `readings`.
pub(crate) fn render(
    snap: &Snapshot,
    dropped: u64,
    readings: &Readings,
) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    let up = Family::<Labels, Gauge>::default();
    let state = Family::<Labels, Gauge>::default();
    let duration = Family::<Labels, FloatGauge>::default();
    let last = Family::<Labels, Gauge>::default();
    let expiry = Family::<Labels, Gauge>::default();
    for c in &snap.checks {
        let l = labels(c);
        if let Some(t) = readings.certificates.get(&c.id) {
            expiry.get_or_create(&l).set(*t);
        }
        state.get_or_create(&l).set(state_value(c.status));
        // Only a pass or a failure says whether the service is up; unknown, skipped and
        // never-run checks have no `up` sample at all.
        let passed = match c.status {
            // Failing from some locations, short of the quorum: not down.
            Some(Status::Passed | Status::Partial) => Some(1),
            Some(Status::Failed) => Some(0),
            _ => None,
        };
        if let Some(v) = passed {
            up.get_or_create(&l).set(v);
        }
        if let Some(ms) = c.duration_ms {
            duration.get_or_create(&l).set(ms as f64 / 1000.0);
        }
        if let Some(at) = c.last_at {
            last.get_or_create(&l).set(secs(at));
        }
    }
    reg.register(
        "custodian_check_up",
        "1 when the check's latest result passed, 0 when it failed; no sample while unknown, skipped or never run",
        up,
    );
    reg.register(
        "custodian_check_state",
        "The check's state: 0 passed, 1 failed, 2 unknown (we could not check), 3 skipped, 4 partial (failing from some locations, short of the quorum), -1 never run",
        state,
    );
    reg.register(
        "custodian_check_duration_seconds",
        "How long the check's latest run took",
        duration,
    );
    reg.register(
        "custodian_check_last_result_timestamp_seconds",
        "When the check's latest result arrived (unix time)",
        last,
    );
    reg.register(
        "custodian_check_certificate_expiry_timestamp_seconds",
        "When the certificate the check's latest TLS handshake saw expires (notAfter, unix time); only checks that completed one",
        expiry,
    );
    engine(&mut reg, snap, dropped);
    fleet(&mut reg, readings, crate::alerting::unix_now());
    locations(&mut reg, snap);
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

fn secs(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Checks run from several locations: each location's latest answer per check, and each
/// location's workers, heartbeat and lag (`serve --queue`; nothing otherwise).
fn locations(reg: &mut Registry, snap: &Snapshot) {
    let up = Family::<Labels, Gauge>::default();
    let duration = Family::<Labels, FloatGauge>::default();
    for c in &snap.checks {
        for a in &c.locations {
            let mut l = labels(c);
            l.push(("location", a.location.clone()));
            let v = match a.status {
                Status::Passed => Some(1),
                Status::Failed => Some(0),
                _ => None,
            };
            if let Some(v) = v {
                up.get_or_create(&l).set(v);
            }
            duration
                .get_or_create(&l)
                .set(a.duration_ms as f64 / 1000.0);
        }
    }
    reg.register(
        "custodian_check_location_up",
        "Per location of a check run from several: 1 when its latest answer passed, 0 when it failed",
        up,
    );
    reg.register(
        "custodian_check_location_duration_seconds",
        "Per location of a check run from several: how long its latest answer took",
        duration,
    );
    let live = Family::<Vec<(&'static str, String)>, Gauge>::default();
    let silent = Family::<Vec<(&'static str, String)>, Gauge>::default();
    let workers = Family::<Vec<(&'static str, String)>, Gauge>::default();
    let beat = Family::<Vec<(&'static str, String)>, Gauge>::default();
    let lag = Family::<Vec<(&'static str, String)>, FloatGauge>::default();
    for p in &snap.places {
        let l = vec![("location", p.name.clone())];
        live.get_or_create(&l).set(i64::from(p.live));
        silent.get_or_create(&l).set(i64::from(p.silent));
        workers.get_or_create(&l).set(count(p.workers.len()));
        if let Some(t) = p.last_beat {
            beat.get_or_create(&l).set(secs(t));
        }
        if let Some(ms) = p.lag_ms {
            lag.get_or_create(&l).set(ms as f64 / 1000.0);
        }
    }
    reg.register(
        "custodian_location_live",
        "1 while a worker of the location beat in the last 15 seconds",
        live,
    );
    reg.register(
        "custodian_location_silent",
        "1 once the location's workers have been silent for location_silent_after intervals (alerted)",
        silent,
    );
    reg.register(
        "custodian_location_workers",
        "Workers of the location heard from in the last hour",
        workers,
    );
    reg.register(
        "custodian_location_last_heartbeat_timestamp_seconds",
        "When a worker of the location last beat (unix time)",
        beat,
    );
    reg.register(
        "custodian_location_lag_seconds",
        "How long the location's latest answer waited on the broker (arrival - enqueue - run time)",
        lag,
    );
    let e = &snap.engine;
    let verdicts = Counter::<u64>::default();
    verdicts.inc_by(e.verdicts);
    reg.register(
        "custodian_location_verdicts",
        "Verdicts of checks run from several locations since start",
        verdicts,
    );
    let delay = Counter::<f64, AtomicU64>::default();
    delay.inc_by(e.verdict_delay_ms_sum as f64 / 1000.0);
    reg.register(
        "custodian_location_verdict_delay_seconds",
        "Sum over verdicts of the time from the deciding answer leaving its worker to the verdict",
        delay,
    );
    let worst = FloatGauge::default();
    worst.set(e.verdict_delay_ms_max as f64 / 1000.0);
    reg.register(
        "custodian_location_verdict_delay_max_seconds",
        "The longest time from a deciding answer leaving its worker to its verdict since start",
        worst,
    );
}

/// Serve's own counters.
fn engine(reg: &mut Registry, snap: &Snapshot, dropped: u64) {
    let e = &snap.engine;
    let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        reg.register(name, help, g);
    };
    counter(
        reg,
        "custodian_results",
        "Results received since start",
        e.results,
    );
    counter(
        reg,
        "custodian_overruns",
        "Runs skipped because the check's previous run was still going",
        e.overruns,
    );
    counter(
        reg,
        "custodian_reloads",
        "Successful loads of the test files since start",
        e.reloads,
    );
    counter(
        reg,
        "custodian_history_dropped",
        "Results not written to the history because its writer could not keep up",
        dropped,
    );
    gauge(
        reg,
        "custodian_in_flight",
        "Checks started and not finished, or enqueued and not answered",
        i64::try_from(e.in_flight).unwrap_or(i64::MAX),
    );
    gauge(
        reg,
        "custodian_checks",
        "Checks loaded",
        count(snap.checks.len()),
    );
    gauge(
        reg,
        "custodian_config_errors",
        "Errors of the last reload (0 when it loaded; the previous set keeps running otherwise)",
        count(snap.errors.len()),
    );
    gauge(
        reg,
        "custodian_last_reload_success_timestamp_seconds",
        "When the running set of checks was loaded (unix time)",
        secs(e.loaded_at),
    );
    gauge(
        reg,
        "custodian_start_time_seconds",
        "When serve started (unix time)",
        secs(e.started_at),
    );
}

/// Jobs by status, workers, the queue, alert deliveries and the last scan, at `now`.
fn fleet(reg: &mut Registry, r: &Readings, now: u64) {
    let jobs = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    for (status, n) in &r.jobs {
        jobs.get_or_create(&vec![("status", *status)]).inc_by(*n);
    }
    reg.register(
        "custodian_jobs",
        "Results received since start, by status (passed, failed, unknown, skipped)",
        jobs,
    );
    let seen = Family::<Vec<(&'static str, String)>, Gauge>::default();
    for (w, at) in &r.workers {
        seen.get_or_create(&vec![("worker", w.clone())])
            .set(secs(*at));
    }
    reg.register(
        "custodian_worker_last_result_timestamp_seconds",
        "When each worker last sent a result (unix time; `local` is serve's own pool)",
        seen,
    );
    let live = r
        .workers
        .values()
        .filter(|at| now.saturating_sub(**at) <= WORKER_SEEN_SECS)
        .count();
    let g = Gauge::<i64>::default();
    g.set(count(live));
    reg.register(
        "custodian_workers_seen",
        "Workers that sent a result in the last 10 minutes",
        g,
    );
    if let Some(q) = &r.queue {
        let depth = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        for (state, n) in [
            ("pending", q.pending),
            ("reserved", q.reserved),
            ("buried", q.buried),
        ] {
            depth
                .get_or_create(&vec![("state", state)])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        reg.register(
            "custodian_queue_jobs",
            "Jobs on the broker (--queue) by state, sampled every few seconds",
            depth,
        );
        let oldest = FloatGauge::default();
        oldest.set(q.oldest.map_or(0.0, |d| d.as_secs_f64()));
        reg.register(
            "custodian_queue_oldest_pending_seconds",
            "Age of the oldest pending job on the broker (0 when none)",
            oldest,
        );
    }
    let sent = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    let failed = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    for (alerter, (n, bad)) in &r.deliveries {
        sent.get_or_create(&vec![("alerter", *alerter)]).inc_by(*n);
        failed
            .get_or_create(&vec![("alerter", *alerter)])
            .inc_by(*bad);
    }
    reg.register(
        "custodian_alert_deliveries",
        "Notices and results handed to each alerter since start (retries not counted)",
        sent,
    );
    reg.register(
        "custodian_alert_delivery_failures",
        "Deliveries an alerter gave up on after every attempt",
        failed,
    );
    if let Some(scan) = &r.scan {
        let found = Family::<Vec<(&'static str, String)>, Gauge>::default();
        for ((check, verdict), n) in &scan.findings {
            let l = vec![("check", check.clone()), ("verdict", verdict.clone())];
            found
                .get_or_create(&l)
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        reg.register(
            "custodian_scan_findings",
            "Findings of the last scan report, by check and verdict",
            found,
        );
        let at = Gauge::<i64>::default();
        at.set(secs(scan.at));
        reg.register(
            "custodian_scan_last_timestamp_seconds",
            "When the last scan report was stored (unix time)",
            at,
        );
    }
}
