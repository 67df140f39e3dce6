//! The status pages: server-rendered HTML with plain tables and inline SVG, no script, so they
//! work in a text browser; every text from a check, a peer or a report is HTML-escaped here.

use super::api::view;
use super::{listed, state_word, Filter, Listed, Refusal, Web, MAX_LISTED};
use crate::serve::board::{CheckView, Snapshot};
use crate::serve::history::{Bucket, HistoryRow, ScanRow};
use axum::extract::{Path, Query, State};
use axum::response::Html;
use custodian_core::Status;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

/// Findings shown per scan report; the JSON API has them all.
const MAX_FINDINGS: usize = 1000;

/// Escapes text for HTML content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string value (for links).
fn url_part(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em;color:#222}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}\
.failed{background:#fdd}.unknown,.partial{background:#ffd}.passed{background:#efe}.pending,.skipped{background:#eee}\
.errors{border:2px solid #c00;padding:0 1em;background:#fee}.silenced{font-style:italic}pre{white-space:pre-wrap;margin:0}\
td.num{text-align:right}";

/// The page around `body`; `refresh` adds the 30 s auto-refresh.
pub(super) fn layout(title: &str, refresh: bool, body: &str) -> String {
    let meta = if refresh {
        "<meta http-equiv=refresh content=30>"
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>{meta}\
         <meta name=viewport content=\"width=device-width\">\
         <title>{} - custodian</title><style>{STYLE}</style></head><body>\n\
         <p><a href=\"/\">checks</a> | <a href=\"/scans\">scans</a> | \
         <a href=\"/silences\">silences</a> | \
         <a href=\"/metrics\">metrics</a></p>\n{body}</body></html>\n",
        esc(title)
    )
}

/// Unix seconds as UTC text.
pub(super) fn when(at: u64) -> String {
    i64::try_from(at)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || at.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// How long ago, roughly.
fn ago(now: u64, at: u64) -> String {
    let d = now.saturating_sub(at);
    match d {
        0..=119 => format!("{d}s ago"),
        120..=7199 => format!("{}m ago", d / 60),
        7200..=172_799 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

fn percent(f: Option<f64>) -> String {
    f.map_or_else(|| "-".to_string(), |f| format!("{:.2}%", f * 100.0))
}

fn opt(s: Option<&str>) -> String {
    s.map_or_else(String::new, esc)
}

/// The response-time sparkline: one point per slice with results, scaled to the largest.
fn sparkline(points: &[Option<f64>]) -> String {
    let (w, h) = (120.0, 20.0);
    let max = points.iter().flatten().fold(0.0_f64, |m, v| m.max(*v));
    if max <= 0.0 || points.len() < 2 {
        return String::new();
    }
    let step = w / (points.len() - 1) as f64;
    let coords: Vec<String> = points
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let v = (*v)?;
            Some(format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - v / max * (h - 2.0) - 1.0
            ))
        })
        .collect();
    format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=img \
         aria-label=\"response time over 24 h, at most {max:.0} ms\">\
         <title>response time over 24 h, at most {max:.0} ms</title>\
         <polyline fill=none stroke=\"#36c\" stroke-width=1.5 points=\"{}\"/></svg>",
        coords.join(" ")
    )
}

/// `GET /`: every check, failing first, with the filter form and the last reload's errors.
pub(super) async fn index(
    State(web): State<Arc<Web>>,
    Query(filter): Query<Filter>,
) -> Result<Html<String>, Refusal> {
    let filter = filter.checked()?;
    let snap = web.board.snapshot();
    let form = filter_form(&snap, &filter);
    let all = snap.checks.len();
    let failing = snap.checks.iter().filter(|c| c.failing()).count();
    let (rows, matched) = listed(&web, &filter, snap.checks.clone()).await;
    let now = crate::alerting::unix_now();
    let mut body = String::new();
    errors(&mut body, &snap.errors);
    let _ = writeln!(
        body,
        "<h1>custodian</h1>\n<p>{all} checks, {failing} failing; loaded {}, {} results since \
         start.</p>",
        when(snap.engine.loaded_at),
        snap.engine.results
    );
    body.push_str(&form);
    if matched > rows.len() {
        let _ = writeln!(
            body,
            "<p>Showing the first {MAX_LISTED} of {matched}: narrow them with the filters.</p>"
        );
    }
    body.push_str(
        "<table>\n<tr><th>State</th><th>Check</th><th>Since</th><th>Last reason</th>\
         <th>Otherwise</th><th>24 h</th><th>7 d</th><th>30 d</th><th>Response time</th>\
         <th>File</th></tr>\n",
    );
    for r in &rows {
        row(&mut body, r, now);
    }
    body.push_str("</table>\n");
    if rows.is_empty() {
        body.push_str("<p>No check matches.</p>\n");
    }
    places(&mut body, &snap.places, now);
    Ok(Html(layout("checks", true, &body)))
}

/// The locations overview (`serve --queue`): nothing when no location is known.
pub(super) fn places(body: &mut String, places: &[crate::serve::fleet::PlaceView], now: u64) {
    if places.is_empty() {
        return;
    }
    body.push_str(
        "<h2>Locations</h2>\n<table>\n<tr><th>Location</th><th>State</th><th>Workers</th>\
         <th>Last heartbeat</th><th>Lag</th></tr>\n",
    );
    for p in places {
        let state = match (p.silent, p.live) {
            (true, _) => "silent",
            (false, true) => "live",
            (false, false) => "quiet",
        };
        let class = match state {
            "silent" => "failed",
            "live" => "passed",
            _ => "unknown",
        };
        let _ =
            writeln!(
            body,
            "<tr class={class}><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.name),
            esc(&p.workers.join(", ")),
            p.last_beat
                .map_or_else(|| "never".to_string(), |t| format!("{} ({})", ago(now, t), when(t))),
            p.lag_ms.map_or_else(String::new, |l| format!("{l} ms")),
        );
    }
    body.push_str("</table>\n");
}

/// Each location's latest answer for a check run from several.
pub(super) fn answers(body: &mut String, c: &CheckView, now: u64) {
    let Some(from) = &c.from else {
        return;
    };
    let _ = writeln!(body, "<h2>From {}</h2>", esc(from));
    if c.locations.is_empty() {
        body.push_str("<p>No location has answered yet.</p>\n");
        return;
    }
    body.push_str(
        "<table>\n<tr><th>Location</th><th>State</th><th>Reason</th><th>Time</th>\
         <th>Worker</th><th>When</th></tr>\n",
    );
    for a in &c.locations {
        let state = state_word(Some(a.status));
        let _ = writeln!(
            body,
            "<tr class={state}><td>{}</td><td>{state}</td><td>{}</td><td class=num>{} ms</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&a.location),
            opt(a.reason.as_deref()),
            a.duration_ms,
            esc(&a.worker),
            ago(now, a.at),
        );
    }
    body.push_str("</table>\n");
}

fn errors(body: &mut String, errors: &[String]) {
    if errors.is_empty() {
        return;
    }
    body.push_str(
        "<div class=errors><h2>The last reload failed; the previous checks keep running</h2><ul>\n",
    );
    for e in errors {
        let _ = writeln!(body, "<li><pre>{}</pre></li>", esc(e));
    }
    body.push_str("</ul></div>\n");
}

fn row(body: &mut String, r: &Listed, now: u64) {
    let c = &r.view;
    let since = c
        .since
        .map_or_else(String::new, |s| format!("{} ({})", ago(now, s), when(s)));
    let silenced = c.silenced_until.map_or_else(String::new, |u| {
        format!(
            " <span class=silenced title=\"silenced until {}\">(silenced)</span>",
            when(u)
        )
    });
    let _ = writeln!(
        body,
        "<tr class={state}><td>{state}</td><td><a href=\"/check/{id}\">{probe} {target}</a>{silenced}</td>\
         <td>{since}</td><td>{reason}</td><td>{otherwise}</td><td class=num>{d}</td>\
         <td class=num>{w}</td><td class=num>{m}</td><td>{spark}</td><td>{file}:{line}</td></tr>",
        state = r.state,
        id = url_part(&c.id),
        probe = esc(&c.probe),
        target = esc(&c.target),
        reason = opt(c.reason.as_deref()),
        otherwise = opt(c.otherwise.as_deref()),
        d = percent(r.uptime.day),
        w = percent(r.uptime.week),
        m = percent(r.uptime.month),
        spark = sparkline(&r.sparkline),
        file = esc(&c.file),
        line = c.lineno,
    );
}

/// The filter form: a plain GET form, the current values selected.
fn filter_form(snap: &Snapshot, f: &Filter) -> String {
    let types: BTreeSet<&str> = snap.checks.iter().map(|c| c.probe.as_str()).collect();
    let files: BTreeSet<&str> = snap.checks.iter().map(|c| c.file.as_str()).collect();
    let select = |name: &str, values: &mut dyn Iterator<Item = &str>, cur: Option<&str>| {
        let mut s = format!("<label>{name} <select name={name}><option value=\"\">any</option>");
        for v in values {
            let sel = if cur == Some(v) { " selected" } else { "" };
            let _ = write!(s, "<option{sel}>{}</option>", esc(v));
        }
        s.push_str("</select></label>\n");
        s
    };
    let mut out = String::from("<form method=get action=\"/\">\n");
    out.push_str(&select(
        "state",
        &mut super::STATES.iter().copied(),
        f.state.as_deref(),
    ));
    out.push_str(&select(
        "type",
        &mut types.iter().copied(),
        f.probe.as_deref(),
    ));
    let _ = writeln!(
        out,
        "<label>target <input name=target size=20 maxlength=256 value=\"{}\"></label>",
        opt(f.target.as_deref())
    );
    out.push_str(&select(
        "file",
        &mut files.iter().copied(),
        f.file.as_deref(),
    ));
    out.push_str("<button type=submit>Filter</button> <a href=\"/\">all</a></form>\n");
    out
}

/// `GET /check/{id}`: the check's line, history chart, recent results, failures and notices.
pub(super) async fn check(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
) -> Result<Html<String>, Refusal> {
    let c = view(&web, &id)?;
    let now = crate::alerting::unix_now();
    let week = now.saturating_sub(7 * 86_400);
    let silence = super::silence::covering(&web, &c, now);
    let listed = super::lookup(&web, c.clone(), now).await;
    let buckets = web
        .history
        .buckets(&id, week, now, true)
        .await
        .map_err(Refusal::internal)?;
    let results = web
        .history
        .results(&id, 0, now, 200)
        .await
        .map_err(Refusal::internal)?;
    let notices = web
        .history
        .notices(Some(&id), 20)
        .await
        .map_err(Refusal::internal)?;
    let mut body = String::new();
    summary(&mut body, &c, &listed, now);
    answers(&mut body, &c, now);
    super::silence::check_part(&mut body, &c, silence.as_ref());
    let _ = writeln!(
        body,
        "<h2>Last 7 days, hourly</h2>\n{}",
        chart(&buckets, week)
    );
    failures(&mut body, &results);
    body.push_str("<h2>Recent results</h2>\n");
    results_table(&mut body, results.iter().take(50));
    body.push_str("<h2>Alert notices</h2>\n");
    if notices.is_empty() {
        body.push_str("<p>None.</p>\n");
    } else {
        body.push_str("<table><tr><th>When</th><th>Kind</th><th>Reason</th></tr>\n");
        for n in &notices {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                when(n.at),
                esc(&n.kind),
                if n.muted { " (muted: silenced)" } else { "" },
                opt(n.reason.as_deref())
            );
        }
        body.push_str("</table>\n");
    }
    Ok(Html(layout(
        &format!("{} {}", c.probe, c.target),
        true,
        &body,
    )))
}

fn summary(body: &mut String, c: &CheckView, l: &Listed, now: u64) {
    let state = state_word(c.status);
    let _ = writeln!(
        body,
        "<h1>{} {}</h1>\n<pre>{}</pre>\n<table>\n\
         <tr><th>File</th><td>{}:{}</td></tr>\n\
         <tr><th>State</th><td class={state}>{state}{}</td></tr>\n\
         <tr><th>Last result</th><td>{}</td></tr>\n\
         <tr><th>Reason</th><td>{}</td></tr>\n\
         <tr><th>Otherwise</th><td>{}</td></tr>\n\
         <tr><th>Uptime</th><td>{} (24 h), {} (7 d), {} (30 d)</td></tr>\n\
         <tr><th>Runs every</th><td>{} s</td></tr>\n\
         <tr><th>Ran by</th><td>{}</td></tr>\n\
         <tr><th>Id</th><td>{}</td></tr>\n</table>",
        esc(&c.probe),
        esc(&c.target),
        esc(&c.line),
        esc(&c.file),
        c.lineno,
        c.since.map_or_else(String::new, |s| format!(
            " since {} ({})",
            when(s),
            ago(now, s)
        )),
        c.last_at.map_or_else(String::new, |s| format!(
            "{} ({} ms)",
            when(s),
            c.duration_ms.unwrap_or(0)
        )),
        opt(c.reason.as_deref()),
        opt(c.otherwise.as_deref()),
        percent(l.uptime.day),
        percent(l.uptime.week),
        percent(l.uptime.month),
        c.every,
        opt(c.worker.as_deref()),
        esc(&c.id),
    );
}

/// Hourly bars over 7 days: height the mean response time, red with failures, yellow with
/// unknowns only; a text line with the totals for text browsers.
fn chart(buckets: &[Bucket], from: u64) -> String {
    const SLOTS: u64 = 7 * 24;
    let (bw, h) = (4.0, 60.0);
    let max = buckets.iter().fold(0.0_f64, |m, b| m.max(b.mean_ms));
    let mut bars = String::new();
    let (mut passed, mut failed, mut unknown) = (0, 0, 0);
    for b in buckets {
        passed += b.passed;
        failed += b.failed;
        unknown += b.unknown;
        let slot = b.at.saturating_sub(from) / 3600;
        if slot >= SLOTS {
            continue;
        }
        let height = if max > 0.0 {
            (b.mean_ms / max * (h - 4.0)).max(2.0)
        } else {
            2.0
        };
        let colour = if b.failed > 0 {
            "#c33"
        } else if b.unknown > 0 {
            "#cc3"
        } else {
            "#3a3"
        };
        let _ = write!(
            bars,
            "<rect x=\"{:.0}\" y=\"{:.1}\" width=\"3\" height=\"{height:.1}\" fill=\"{colour}\">\
             <title>{}: {} passed, {} failed, {} unknown, mean {:.0} ms</title></rect>",
            slot as f64 * bw,
            h - height,
            when(b.at),
            b.passed,
            b.failed,
            b.unknown,
            b.mean_ms
        );
    }
    let w = SLOTS as f64 * bw;
    format!(
        "<p>{passed} passed, {failed} failed, {unknown} unknown; slowest hour's mean \
         {max:.0} ms.</p>\n<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=img \
         aria-label=\"hourly results over 7 days\"><rect width=\"{w}\" height=\"{h}\" \
         fill=\"#f8f8f8\"/>{bars}</svg>\n"
    )
}

/// The reasons of the latest failures (failed or unknown), newest first.
fn failures(body: &mut String, results: &[HistoryRow]) {
    let failed: Vec<&HistoryRow> = results
        .iter()
        .filter(|r| matches!(r.status, Status::Failed | Status::Unknown))
        .take(10)
        .collect();
    body.push_str("<h2>Last failures</h2>\n");
    if failed.is_empty() {
        body.push_str("<p>None recently.</p>\n");
        return;
    }
    results_table(body, failed.into_iter());
}

fn results_table<'a>(body: &mut String, rows: impl Iterator<Item = &'a HistoryRow>) {
    body.push_str(
        "<table><tr><th>When</th><th>Status</th><th>Time</th><th>Reason</th><th>Ran by</th></tr>\n",
    );
    for r in rows {
        let s = state_word(Some(r.status));
        let _ = writeln!(
            body,
            "<tr class={s}><td>{}</td><td>{s}</td><td class=num>{} ms</td><td>{}</td><td>{}</td></tr>",
            when(r.at),
            r.duration_ms,
            opt(r.reason.as_deref()),
            opt(r.worker.as_deref())
        );
    }
    body.push_str("</table>\n");
}

/// `GET /scans`: the latest scan reports with their findings and evidence.
pub(super) async fn scans(State(web): State<Arc<Web>>) -> Result<Html<String>, Refusal> {
    let rows = web.history.scans(3).await.map_err(Refusal::internal)?;
    let mut body = String::from("<h1>Scan reports</h1>\n");
    if rows.is_empty() {
        body.push_str(
            "<p>None yet: run <code>custodian scan --report-to \
             http://HOST:PORT/api/scans ...</code></p>\n",
        );
    }
    for r in &rows {
        scan_report(&mut body, r);
    }
    Ok(Html(layout("scans", true, &body)))
}

/// A JSON value as short text (strings unquoted).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn scan_report(body: &mut String, r: &ScanRow) {
    let rep = &r.report;
    let _ = writeln!(body, "<h2>Received {}</h2>", when(r.at));
    let field = |k: &str| rep.get(k).map(text).unwrap_or_default();
    let _ = writeln!(
        body,
        "<p>Targets: {}; excluded: {}; checks: {}; {} probes.</p>",
        esc(&field("targets")),
        esc(&field("exclude")),
        esc(&field("checks")),
        esc(&field("probes"))
    );
    if let Some(counts) = rep.get("counts").and_then(Value::as_object) {
        let parts: Vec<String> = counts
            .iter()
            .map(|(k, v)| format!("{} {}", esc(&text(v)), esc(k)))
            .collect();
        let _ = writeln!(body, "<p>{}</p>", parts.join(", "));
    }
    let Some(findings) = rep.get("findings").and_then(Value::as_array) else {
        body.push_str("<p>No findings list in this report.</p>\n");
        return;
    };
    if findings.is_empty() {
        body.push_str("<p>No findings.</p>\n");
        return;
    }
    body.push_str(
        "<table><tr><th>Verdict</th><th>Target</th><th>Check</th><th>Reason</th>\
         <th>Evidence</th><th>Source</th></tr>\n",
    );
    for f in findings.iter().take(MAX_FINDINGS) {
        let g = |k: &str| esc(&f.get(k).map(text).unwrap_or_default());
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td><td>{}</td></tr>",
            g("verdict"),
            g("target"),
            g("port"),
            g("check"),
            g("reason"),
            g("evidence"),
            g("source")
        );
    }
    body.push_str("</table>\n");
    if findings.len() > MAX_FINDINGS {
        let _ = writeln!(
            body,
            "<p>{} more findings: see <a href=\"/api/scans?limit=1\">/api/scans</a>.</p>",
            findings.len() - MAX_FINDINGS
        );
    }
}

/// The login form (`/login`), with an error line after a wrong token.
pub(crate) fn login(error: Option<&str>) -> String {
    let err = error.map_or_else(String::new, |e| {
        format!("<p><strong>{}</strong></p>", esc(e))
    });
    layout(
        "log in",
        false,
        &format!(
            "<h1>custodian</h1>\n{err}<form method=post action=\"/login\">\
             <label>Token <input type=password name=token autocomplete=current-password></label> \
             <button type=submit>Log in</button></form>\n"
        ),
    )
}
