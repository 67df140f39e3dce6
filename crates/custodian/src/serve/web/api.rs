//! The JSON API: what the pages show, as JSON; and `POST /api/scans` for scan reports.

use super::{listed, lookup, loopback_post, Filter, Listed, Refusal, Web};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// Most raw results one history call returns.
const MAX_RESULTS: usize = 10_000;
/// Most notices or scans one call returns.
const MAX_ROWS: usize = 1000;
/// Longest check id taken (ids are 40 hex digits).
const MAX_ID: usize = 64;

/// `GET /api/checks`: every check passing the filters, failing first.
pub(super) async fn checks(
    State(web): State<Arc<Web>>,
    Query(filter): Query<Filter>,
) -> Result<Response, Refusal> {
    let filter = filter.checked()?;
    let snap = web.board.snapshot();
    let (rows, total) = listed(&web, &filter, snap.checks).await;
    Ok(Json(json!({
        "checks": rows,
        "matched": total,
        "errors": snap.errors,
        "engine": snap.engine,
        "files": snap.files,
    }))
    .into_response())
}

/// The locations `serve --queue` knows (named by tests or served by workers): workers seen in
/// the last hour, last heartbeat, lag, live and silent; empty without a queue.
pub(super) async fn locations(State(web): State<Arc<Web>>) -> Response {
    Json(web.board.snapshot().places).into_response()
}

/// The loaded check `id`, or 404.
pub(super) fn view(web: &Web, id: &str) -> Result<super::CheckView, Refusal> {
    if id.len() > MAX_ID {
        return Err(Refusal::not_found("no such check"));
    }
    web.board
        .check(id)
        .ok_or_else(|| Refusal::not_found("no such check"))
}

/// `GET /api/checks/{id}`: the check, its uptime and sparkline.
pub(super) async fn check(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
) -> Result<Json<Listed>, Refusal> {
    let v = view(&web, &id)?;
    Ok(Json(lookup(&web, v, crate::alerting::unix_now()).await))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Range {
    from: Option<u64>,
    to: Option<u64>,
    limit: Option<usize>,
    resolution: Option<String>,
}

/// `GET /api/checks/{id}/history`: raw results newest first (`from`, `to`, `limit`), or with
/// `resolution=hour|day` roll-ups oldest first.
pub(super) async fn history(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<Response, Refusal> {
    view(&web, &id)?;
    let to = range.to.unwrap_or_else(crate::alerting::unix_now);
    let hourly = match range.resolution.as_deref() {
        None | Some("") | Some("raw") => None,
        Some("hour") => Some(true),
        Some("day") => Some(false),
        Some(_) => return Err(Refusal::bad("resolution: want hour or day")),
    };
    let span = match hourly {
        None => 86_400,
        Some(true) => 7 * 86_400,
        Some(false) => 90 * 86_400,
    };
    let from = range.from.unwrap_or_else(|| to.saturating_sub(span));
    if from > to {
        return Err(Refusal::bad("from is after to"));
    }
    let body = match hourly {
        None => {
            let limit = range.limit.unwrap_or(1000).min(MAX_RESULTS);
            let rows = web
                .history
                .results(&id, from, to, limit)
                .await
                .map_err(Refusal::internal)?;
            json!({ "id": id, "from": from, "to": to, "results": rows })
        }
        Some(h) => {
            let rows = web
                .history
                .buckets(&id, from, to, h)
                .await
                .map_err(Refusal::internal)?;
            let resolution = if h { "hour" } else { "day" };
            json!({ "id": id, "from": from, "to": to, "resolution": resolution, "buckets": rows })
        }
    };
    Ok(Json(body).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct NoticeQuery {
    check: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/notices`: alert notices newest first, of one check or all.
pub(super) async fn notices(
    State(web): State<Arc<Web>>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, Refusal> {
    let check = q.check.filter(|c| !c.is_empty());
    if check.as_ref().is_some_and(|c| c.len() > MAX_ID) {
        return Err(Refusal::bad("check: not a check id"));
    }
    let limit = q.limit.unwrap_or(100).min(MAX_ROWS);
    let rows = web
        .history
        .notices(check.as_deref(), limit)
        .await
        .map_err(Refusal::internal)?;
    Ok(Json(json!({ "notices": rows })).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Limit {
    limit: Option<usize>,
}

/// `GET /api/scans`: stored scan reports, newest first.
pub(super) async fn scans(
    State(web): State<Arc<Web>>,
    Query(q): Query<Limit>,
) -> Result<Response, Refusal> {
    let limit = q.limit.unwrap_or(10).min(MAX_ROWS);
    let rows = web.history.scans(limit).await.map_err(Refusal::internal)?;
    Ok(Json(json!({ "scans": rows })).into_response())
}

/// `POST /api/scans`: stores a scan report (a JSON object, at most 8 MiB). Past the guard
/// when a token is set; without one, only from loopback. JSON only, so a cross-site form
/// cannot post one.
pub(super) async fn post_scan(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    if web.token.is_none() && !loopback_post(peer, &headers) {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            msg: "without a token, scan reports are taken from loopback only".into(),
        });
    }
    json_body(&headers)?;
    let report: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Refusal::bad(format!("not a JSON scan report: {e}")))?;
    if !report.is_object() {
        return Err(Refusal::bad("a scan report is a JSON object"));
    }
    let at = crate::alerting::unix_now();
    web.board
        .gauges
        .scan(crate::serve::gauges::ScanSummary::of(&report, at));
    web.history.scan(report, at);
    // Stored before the answer, so the page a client opens next shows it.
    web.history.flush().await;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "stored": true, "at": at })),
    )
        .into_response())
}

/// A write's body must be declared JSON: a cross-site HTML form cannot send that type.
pub(super) fn json_body(headers: &HeaderMap) -> Result<(), Refusal> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json_type {
        return Ok(());
    }
    Err(Refusal {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        msg: "want Content-Type: application/json".into(),
    })
}
