//! The HTTP side of `serve`: status pages, the JSON API, `/metrics`, `/healthz`, `/readyz`.
//!
//! Read-only except `POST /api/scans` and the silences ([`silence`]). With a token every route
//! but `/healthz`, `/readyz` and `/login` needs `Authorization: Bearer TOKEN` or the login
//! form's cookie; without one, those writes are taken from loopback peers only.

mod api;
mod metrics;
mod page;
mod silence;
#[cfg(test)]
mod tests;

use super::board::{Board, CheckView};
use super::history::History;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Router};
use custodian_core::Status;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the handlers share.
pub(crate) struct Web {
    pub(crate) board: Arc<Board>,
    pub(crate) history: Arc<History>,
    /// When set, every page and API call needs `Authorization: Bearer TOKEN` (or the login
    /// form's cookie); `/healthz` and `/readyz` never do.
    pub(crate) token: Option<String>,
    /// Whether the first load succeeded (readiness).
    pub(crate) ready: Arc<std::sync::atomic::AtomicBool>,
}

/// Largest scan report `POST /api/scans` takes.
const MAX_SCAN_BYTES: usize = 8 << 20;
/// Longest request target (path and query): filters are short; anything longer is refused.
const MAX_URI: usize = 4096;
/// Longest filter value.
const MAX_FILTER: usize = 256;
/// The login cookie's name.
const COOKIE: &str = "custodian_session";
/// Rows of the status page and `/api/checks`, at most: beyond it filters narrow the list.
/// Their history is read in a few batched queries ([`History::listing`]), so this bounds the
/// page's size (about 1 KiB of HTML per row), not the database's work.
const MAX_LISTED: usize = 10_000;
/// The uptime windows of a listed check: 24 h, 7 d, 30 d.
const WINDOWS: [u64; 3] = [86_400, 7 * 86_400, 30 * 86_400];
/// A listed check's sparkline: the last 24 h in hourly points.
const SPARK_SPAN: u64 = 86_400;
const SPARK_POINTS: usize = 24;

/// Serves on `listener` until `shutdown` resolves.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    web: Arc<Web>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(
        listener,
        router(web).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

/// Every route, with authentication and the security headers.
fn router(web: Arc<Web>) -> Router {
    let guarded = Router::new()
        .route("/", get(page::index))
        .route("/check/{id}", get(page::check))
        .route("/scans", get(page::scans))
        .route("/metrics", get(metrics::metrics))
        .route("/api/checks", get(api::checks))
        .route("/api/checks/{id}", get(api::check))
        .route("/api/checks/{id}/history", get(api::history))
        .route("/api/notices", get(api::notices))
        .route("/api/locations", get(api::locations))
        .route("/silences", get(silence::page))
        .route("/api/silences", get(silence::list).post(silence::post))
        .route("/api/silences/{id}", delete(silence::delete))
        .route("/silence", post(silence::form_post))
        .route("/silences/{id}/end", post(silence::form_end))
        .route(
            "/api/scans",
            get(api::scans)
                .post(api::post_scan)
                .layer(DefaultBodyLimit::max(MAX_SCAN_BYTES)),
        )
        .route_layer(middleware::from_fn_with_state(Arc::clone(&web), guard));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/login",
            get(login_form)
                .post(login)
                .layer(DefaultBodyLimit::max(4096)),
        )
        .merge(guarded)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn(headers))
        .with_state(web)
}

async fn readyz(State(web): State<Arc<Web>>) -> Response {
    if web.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

/// Security headers on every response; over-long request targets refused before routing.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = if req.uri().to_string().len() > MAX_URI {
        (StatusCode::URI_TOO_LONG, "request target too long\n").into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// With a token, lets through requests that carry it (header or cookie); pages get the login
/// form, the API and metrics a bare 401.
async fn guard(State(web): State<Arc<Web>>, req: Request, next: Next) -> Response {
    let Some(token) = &web.token else {
        return next.run(req).await;
    };
    if authorized(token, req.headers()) {
        return next.run(req).await;
    }
    let path = req.uri().path();
    if path.starts_with("/api/") || path == "/metrics" {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Html(page::login(None)),
        )
            .into_response()
    }
}

/// Whether the request carries `token` as a bearer token or as the login cookie.
fn authorized(token: &str, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .any(|t| same_token(token, t.trim()));
    bearer
        || headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
            .any(|c| cookie_ok(token, c))
}

/// Constant-time token comparison: both sides go through the same HMAC, compared by ring in
/// constant time, so neither content nor length leaks through timing.
fn same_token(token: &str, given: &str) -> bool {
    use ring::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"custodian serve token comparison");
    let want = hmac::sign(&key, token.as_bytes());
    hmac::verify(&key, given.as_bytes(), want.as_ref()).is_ok()
}

/// What the login cookie holds: an HMAC keyed by the token, so the cookie does not reveal it,
/// survives restarts and stops working when the token changes.
fn cookie_value(token: &str) -> String {
    use ring::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
    let tag = hmac::sign(&key, b"custodian serve session v1");
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn cookie_ok(token: &str, cookie: &str) -> bool {
    use ring::hmac;
    let Some(tag) = unhex(cookie) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
    hmac::verify(&key, b"custodian serve session v1", &tag).is_ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    // A tag is 32 bytes: 64 hex digits, nothing else.
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn login_form(State(web): State<Arc<Web>>) -> Response {
    if web.token.is_none() {
        return Redirect::to("/").into_response();
    }
    Html(page::login(None)).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(web): State<Arc<Web>>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &web.token else {
        return Redirect::to("/").into_response();
    };
    if !same_token(token, form.token.trim()) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(page::login(Some("wrong token"))),
        )
            .into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        cookie_value(token)
    );
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, "/".into())],
    )
        .into_response()
}

/// Whether an unauthenticated `POST /api/scans` may come from `peer`: without a token, only
/// loopback peers naming a loopback host (a page rebinding its name to 127.0.0.1 still says its
/// own name in `Host`).
fn loopback_post(peer: SocketAddr, headers: &HeaderMap) -> bool {
    let peer_ok = peer.ip().is_loopback();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    let host_ok = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    peer_ok && host_ok
}

/// The filters of the status page and `/api/checks` (GET query parameters).
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct Filter {
    /// `passed` (or `ok`), `failed`, `unknown`, `skipped`, `pending` (never run), or
    /// `failing` (failed or unknown).
    #[serde(default)]
    pub(crate) state: Option<String>,
    /// Probe type, exactly (case-insensitive).
    #[serde(default, rename = "type")]
    pub(crate) probe: Option<String>,
    /// Part of the target (case-insensitive).
    #[serde(default)]
    pub(crate) target: Option<String>,
    /// Part of the test file's path.
    #[serde(default)]
    pub(crate) file: Option<String>,
}

impl Filter {
    /// Empty values are no filter; an over-long value or an unknown state is refused.
    fn checked(mut self) -> Result<Self, Refusal> {
        for v in [
            &mut self.state,
            &mut self.probe,
            &mut self.target,
            &mut self.file,
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *v = None;
            }
            if v.as_deref().is_some_and(|s| s.len() > MAX_FILTER) {
                return Err(Refusal::bad(format!(
                    "filter values are at most {MAX_FILTER} bytes"
                )));
            }
        }
        if let Some(s) = &self.state {
            if !STATES.contains(&s.as_str()) {
                return Err(Refusal::bad(format!(
                    "state: want one of {}",
                    STATES.join(", ")
                )));
            }
        }
        Ok(self)
    }

    fn matches(&self, c: &CheckView) -> bool {
        let state_ok = match self.state.as_deref() {
            None => true,
            Some("failing") => c.failing(),
            Some("ok") => state_word(c.status) == "passed",
            Some(s) => state_word(c.status) == s,
        };
        let contains = |hay: &str, needle: &Option<String>| match needle {
            Some(n) => hay.to_lowercase().contains(&n.to_lowercase()),
            None => true,
        };
        let probe_ok = match &self.probe {
            Some(p) => c.probe.eq_ignore_ascii_case(p),
            None => true,
        };
        state_ok && probe_ok && contains(&c.target, &self.target) && contains(&c.file, &self.file)
    }
}

/// The states a filter takes.
const STATES: &[&str] = &[
    "failing", "passed", "ok", "failed", "unknown", "skipped", "partial", "pending",
];

/// A check's state as a word: its status, or `pending` before its first result.
pub(crate) fn state_word(s: Option<Status>) -> &'static str {
    match s {
        Some(Status::Passed) => "passed",
        Some(Status::Failed) => "failed",
        Some(Status::Unknown) => "unknown",
        Some(Status::Skipped) => "skipped",
        Some(Status::Partial) => "partial",
        None => "pending",
    }
}

/// Uptime over the three windows shown (fractions 0..1; `None`: no results).
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Uptime {
    #[serde(rename = "24h")]
    pub(crate) day: Option<f64>,
    #[serde(rename = "7d")]
    pub(crate) week: Option<f64>,
    #[serde(rename = "30d")]
    pub(crate) month: Option<f64>,
}

/// One listed check with what the history says about it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Listed {
    #[serde(flatten)]
    pub(crate) view: CheckView,
    pub(crate) state: &'static str,
    pub(crate) uptime: Uptime,
    /// Mean response time (ms) of each hour of the last 24 h, oldest first.
    pub(crate) sparkline: Vec<Option<f64>>,
}

/// The history of one check as listed; a history error is logged and shown as no data (the
/// page must still come up).
async fn lookup(web: &Web, mut view: CheckView, now: u64) -> Listed {
    let history = &web.history;
    view.silenced_until = silence::covering(web, &view, now).map(|s| s.until);
    let uptime = |secs: u64| {
        let id = view.id.clone();
        async move {
            history
                .uptime(&id, now.saturating_sub(secs))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!("history of {id}: {e:#}");
                    None
                })
        }
    };
    let (day, week, month) = tokio::join!(uptime(86_400), uptime(7 * 86_400), uptime(30 * 86_400));
    let sparkline = history
        .sparkline(&view.id, now.saturating_sub(86_400), 24)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("history of {}: {e:#}", view.id);
            Vec::new()
        });
    Listed {
        state: state_word(view.status),
        uptime: Uptime { day, week, month },
        sparkline,
        view,
    }
}

/// The checks that pass `filter`, failing first, the first [`MAX_LISTED`] with their
/// history (read for all of them at once); and how many matched in all.
async fn listed(web: &Web, filter: &Filter, checks: Vec<CheckView>) -> (Vec<Listed>, usize) {
    let now = crate::alerting::unix_now();
    let mut views: Vec<CheckView> = checks.into_iter().filter(|c| filter.matches(c)).collect();
    let total = views.len();
    views.truncate(MAX_LISTED);
    let ids = views.iter().map(|v| v.id.clone()).collect();
    let mut found = web
        .history
        .listing(ids, WINDOWS.to_vec(), SPARK_SPAN, SPARK_POINTS)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("history of the listed checks: {e:#}");
            Default::default()
        });
    let rows = views
        .into_iter()
        .map(|mut view| {
            view.silenced_until = silence::covering(web, &view, now).map(|s| s.until);
            let l = found.remove(&view.id).unwrap_or_default();
            let up = |i: usize| l.uptime.get(i).copied().flatten();
            let sparkline = match l.sparkline.is_empty() {
                true => vec![None; SPARK_POINTS],
                false => l.sparkline.clone(),
            };
            Listed {
                state: state_word(view.status),
                uptime: Uptime {
                    day: up(0),
                    week: up(1),
                    month: up(2),
                },
                sparkline,
                view,
            }
        })
        .collect();
    (rows, total)
}

/// An error answer: status and a short text (HTML-escaped by whoever renders it).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) msg: String,
}

impl Refusal {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            msg: msg.into(),
        }
    }

    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::NOT_FOUND,
            msg: msg.into(),
        }
    }

    pub(crate) fn internal(e: anyhow::Error) -> Self {
        tracing::error!("serving a request: {e:#}");
        Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            msg: "internal error (logged)".into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, format!("{}\n", self.msg)).into_response()
    }
}
