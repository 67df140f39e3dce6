//! Silences on the web: `GET/POST /api/silences`, `DELETE /api/silences/{id}`, the `/silences`
//! page and its plain HTML forms (`POST /silence`, `POST /silences/{id}/end`).
//!
//! Writes pass the token guard when a token is set; without one they are taken from loopback
//! peers naming a loopback host only. The API wants JSON (a cross-site form cannot send it);
//! the forms want an `Origin` (or, failing that, `Referer`) naming the host they were posted
//! to, so another site cannot post them through the operator's browser; with a token the
//! login cookie is `SameSite=Strict` as well.

use super::page::{esc, layout, when};
use super::{loopback_post, Refusal, Web};
use crate::serve::board::CheckView;
use crate::serve::history::silences::{parse_duration, MAX_TEXT};
use crate::serve::history::{Silence, Subject};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a new silence is asked with (JSON body or form).
#[derive(Debug, Deserialize)]
pub(super) struct NewSilence {
    pattern: String,
    /// `"2h"`, `"1d"`, `"90m"` or seconds (number or digits).
    duration: serde_json::Value,
    #[serde(default)]
    comment: String,
}

/// The form of the check page and `/silences`.
#[derive(Debug, Deserialize)]
pub(super) struct SilenceForm {
    pattern: String,
    duration: String,
    #[serde(default)]
    comment: String,
    /// The check page to go back to.
    #[serde(default)]
    check: Option<String>,
}

/// The silence covering check `c` now, if any.
pub(super) fn covering(web: &Web, c: &CheckView, now: u64) -> Option<Silence> {
    let subject = Subject {
        id: &c.id,
        probe: &c.probe,
        target: &c.target,
        file: &c.file,
        line: &c.line,
    };
    web.history.silences().matching(&subject, now)
}

/// Who is writing: `token` past the token guard, else the loopback peer; refused when
/// neither applies.
fn writer(web: &Web, peer: SocketAddr, headers: &HeaderMap) -> Result<String, Refusal> {
    if web.token.is_some() {
        // The guard let it through: it carries the token.
        return Ok("token".into());
    }
    if !loopback_post(peer, headers) {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            msg: "without a token, silences are set from loopback only".into(),
        });
    }
    Ok(format!("loopback {}", peer.ip()))
}

/// Whether a form post names this server as its origin: `Origin`, else `Referer`, must
/// name the `Host` it was sent to. Without either, only a token (its SameSite cookie)
/// vouches for it.
fn same_origin(web: &Web, headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok());
    match from {
        Some(from) => url::Url::parse(from).is_ok_and(|u| {
            let authority = match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => return false,
            };
            !host.is_empty() && authority.eq_ignore_ascii_case(host)
        }),
        None => web.token.is_some(),
    }
}

fn forbidden(msg: &str) -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        msg: msg.into(),
    }
}

/// Checks and stores a new silence.
async fn add(web: &Web, new: NewSilence, author: &str) -> Result<Silence, Refusal> {
    let secs = match &new.duration {
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| Refusal::bad("duration: want whole seconds"))
            .and_then(|s| parse_duration(&s.to_string()).map_err(Refusal::bad))?,
        serde_json::Value::String(s) => parse_duration(s).map_err(Refusal::bad)?,
        _ => return Err(Refusal::bad("duration: want e.g. \"2h\" or seconds")),
    };
    if new.comment.len() > MAX_TEXT {
        return Err(Refusal::bad(format!("comment: at most {MAX_TEXT} bytes")));
    }
    crate::serve::history::silences::Pattern::parse(&new.pattern)
        .map_err(|e| Refusal::bad(format!("pattern: {e}")))?;
    let s = web
        .history
        .add_silence(&new.pattern, secs, author, new.comment.trim())
        .await
        .map_err(Refusal::internal)?;
    tracing::info!(
        "silence {} of {:?} until {} set by {author}",
        s.id,
        s.pattern,
        when(s.until)
    );
    Ok(s)
}

/// `GET /api/silences`: the active silences, ending soonest first.
pub(super) async fn list(State(web): State<Arc<Web>>) -> Response {
    let now = crate::alerting::unix_now();
    Json(json!({ "silences": web.history.silences().list(now) })).into_response()
}

/// `POST /api/silences`: `{"pattern": ..., "duration": "2h" | seconds, "comment": ...}`;
/// answers 201 with the stored silence.
pub(super) async fn post(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let author = writer(&web, peer, &headers)?;
    super::api::json_body(&headers)?;
    let new: NewSilence =
        serde_json::from_slice(&body).map_err(|e| Refusal::bad(format!("not a silence: {e}")))?;
    let s = add(&web, new, &author).await?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

/// `DELETE /api/silences/{id}`: ends it now (kept for the record); 404 when not active.
pub(super) async fn delete(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, Refusal> {
    let author = writer(&web, peer, &headers)?;
    end(&web, id, &author).await?;
    Ok(Json(json!({ "ended": id })).into_response())
}

async fn end(web: &Web, id: i64, author: &str) -> Result<(), Refusal> {
    if !web
        .history
        .end_silence(id)
        .await
        .map_err(Refusal::internal)?
    {
        return Err(Refusal::not_found("no such active silence"));
    }
    tracing::info!("silence {id} ended by {author}");
    Ok(())
}

/// `POST /silence`: the check page's and `/silences`' form; back to the page it came from.
pub(super) async fn form_post(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SilenceForm>,
) -> Result<Response, Refusal> {
    let author = writer(&web, peer, &headers)?;
    if !same_origin(&web, &headers) {
        return Err(forbidden(
            "this form must be posted from this server's own page",
        ));
    }
    let new = NewSilence {
        pattern: form.pattern,
        duration: serde_json::Value::String(form.duration),
        comment: form.comment,
    };
    add(&web, new, &author).await?;
    let back = match form.check.filter(|c| web.board.check(c).is_some()) {
        Some(id) => format!("/check/{id}"),
        None => "/silences".into(),
    };
    Ok(Redirect::to(&back).into_response())
}

/// `POST /silences/{id}/end`: the "end now" button.
pub(super) async fn form_end(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, Refusal> {
    let author = writer(&web, peer, &headers)?;
    if !same_origin(&web, &headers) {
        return Err(forbidden(
            "this form must be posted from this server's own page",
        ));
    }
    end(&web, id, &author).await?;
    Ok(Redirect::to("/silences").into_response())
}

/// The check page's part: the silence covering it, or buttons to silence it.
pub(super) fn check_part(body: &mut String, c: &CheckView, silence: Option<&Silence>) {
    body.push_str("<h2>Silence</h2>\n");
    if let Some(s) = silence {
        let _ = writeln!(
            body,
            "<p class=silenced>Silenced until {} by <code>{}</code> ({}): its notices go to no \
             alerter. <a href=\"/silences\">silences</a></p>",
            when(s.until),
            esc(&s.pattern),
            esc(&s.comment)
        );
    }
    let _ = writeln!(
        body,
        "<form method=post action=\"/silence\"><input type=hidden name=pattern value=\"{id}\">\
         <input type=hidden name=check value=\"{id}\">\
         <label>Comment <input name=comment size=30 maxlength={MAX_TEXT}></label> \
         <button name=duration value=1h>silence for 1h</button> \
         <button name=duration value=4h>silence for 4h</button> \
         <button name=duration value=1d>silence for 1d</button></form>",
        id = esc(&c.id)
    );
}

/// `GET /silences`: the active silences with an "end now" button each, and a form for a
/// pattern.
pub(super) async fn page(State(web): State<Arc<Web>>) -> Html<String> {
    let now = crate::alerting::unix_now();
    let active = web.history.silences().list(now);
    let mut body = String::from("<h1>Silences</h1>\n");
    if active.is_empty() {
        body.push_str("<p>None active.</p>\n");
    } else {
        body.push_str(
            "<table><tr><th>Pattern</th><th>Until</th><th>Set</th><th>By</th><th>Comment</th>\
             <th></th></tr>\n",
        );
        for s in &active {
            let _ = writeln!(
                body,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td><form method=post action=\"/silences/{}/end\">\
                 <button type=submit>end now</button></form></td></tr>",
                esc(&s.pattern),
                when(s.until),
                when(s.created_at),
                esc(&s.author),
                esc(&s.comment),
                s.id
            );
        }
        body.push_str("</table>\n");
    }
    let _ = writeln!(
        body,
        "<h2>New silence</h2>\n<p>A check id, or <code>type:GLOB</code>, \
         <code>target:GLOB</code>, <code>file:GLOB</code>, <code>line:GLOB</code> (<code>*</code> \
         any run, <code>?</code> one character, case ignored).</p>\n\
         <form method=post action=\"/silence\">\
         <label>Pattern <input name=pattern size=30 maxlength={MAX_TEXT} required></label> \
         <label>For <input name=duration size=6 value=1h required></label> \
         <label>Comment <input name=comment size=30 maxlength={MAX_TEXT}></label> \
         <button type=submit>Silence</button></form>"
    );
    Html(layout("silences", true, &body))
}
