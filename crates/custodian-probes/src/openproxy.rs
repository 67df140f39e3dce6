//! `openproxy`: whether an HTTP proxy fetches pages for anyone. Meant for `must not run`:
//! "up" means the proxy is open.
//!
//! Syntax: `HOST must not run openproxy [on PORT] [with canary 'http://IP:PORT/'] [with token
//! 'TEXT'].` Default port 8080 (3128 is the other usual one). The canary is an HTTP server of
//! the operator's whose pages contain TOKEN; the defaults (`http://canary.custodian.invalid/`,
//! `custodian-canary-token`) are placeholders to be configured. We send `GET
//! http://CANARY/NONCE` in absolute form, and on a second connection `CONNECT CANARY` followed
//! by `GET /NONCE` through the tunnel (the nonce defeats caches). Only the token coming back
//! proves an open proxy: a 200 alone does not (captive portals and fakes answer 200 to
//! everything), and the token is never sent, so no echo can fake it.
//! Verdicts: open (GET or tunnel returned the token); closed: 403/407 (proxy refuses),
//! 400/404/405/501 (a web server, not a proxy), 200 without the token, not HTTP, refused;
//! inconclusive: 5xx; no-answer: timed out.
//! Example: `proxy1 must not run openproxy on 3128 with canary 'http://192.0.2.9:8099/' with
//! token 'k3y'.`

use crate::abuse::{self, Canary, HttpAnswer, Transcript};
use crate::{net, Ctx};
use custodian_core::{Finding, Kind, Outcome, ParamSpec, ProbeSpec, ScanSpec, TargetKind, Verdict};
use tokio::time::Instant;

pub(crate) const CANARY_PARAM: ParamSpec = ParamSpec::new(
    "with canary {canary}",
    "http://IP:PORT/ of your own server whose pages contain the token",
)
.kinds(&[Kind::Parse(abuse::parse_canary)]);

pub(crate) const TOKEN_PARAM: ParamSpec = ParamSpec::new(
    "with token {token}",
    "text the canary's pages contain (never sent by the probe)",
)
.kinds(&[Kind::NonEmpty]);

/// The `custodian scan` flags of the canary checks (openproxy, opensocks).
pub(crate) const CANARY_FLAGS: &[(&str, &str)] = &[("canary", "canary"), ("token", "token")];

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "openproxy",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(8080),
    port_required: false,
    takes_port: true,
    params: &[CANARY_PARAM, TOKEN_PARAM],
    summary: "the HTTP proxy fetches the canary page for outsiders (for `must not run`)",
    example: "127.0.0.1 must not run openproxy on 3128 with canary 'http://192.0.2.9:8099/' \
              with token 'k3y' otherwise 'open proxy'.",
    check: None,
    scan: Some(ScanSpec {
        ports: &[3128, 8080],
        conns: 2,
        flags: CANARY_FLAGS,
    }),
};

/// What each of the two attempts brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tried {
    pub(crate) get: Result<HttpAnswer, String>,
    pub(crate) connect: Option<Result<HttpAnswer, String>>,
    pub(crate) tunnel: Option<Result<HttpAnswer, String>>,
}

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    abuse::settle(cx, assess(cx).await).outcome()
}

/// The verdict with its evidence.
pub(crate) async fn assess(cx: &Ctx) -> Finding {
    let mut t = Transcript::default();
    let f = match run(cx, &mut t).await {
        Ok(tried) => judge(&tried),
        Err(e) => abuse::broken(&e),
    };
    t.attach(f)
}

async fn run(cx: &Ctx, t: &mut Transcript) -> Result<Tried, String> {
    let canary = Canary::of(cx);
    let token = abuse::token(cx);
    t.source = abuse::source_for(cx, abuse::target(cx)?).await;
    let mut first = cx.clone();
    first.deadline = Instant::now() + cx.deadline.saturating_duration_since(Instant::now()) / 2;
    let get = absolute_get(&first, &canary, token, t).await;
    if get.as_ref().is_ok_and(|a| a.has_token) {
        return Ok(Tried {
            get,
            connect: None,
            tunnel: None,
        });
    }
    let (connect, tunnel) = connect_get(cx, &canary, token, t).await;
    Ok(Tried {
        get,
        connect: Some(connect),
        tunnel,
    })
}

async fn absolute_get(
    cx: &Ctx,
    canary: &Canary,
    token: &str,
    t: &mut Transcript,
) -> Result<HttpAnswer, String> {
    let url = format!(
        "http://{}{}{}",
        canary.authority(),
        canary.path,
        abuse::nonce()
    );
    t.client(&format!("GET {url}"));
    let mut s = net::connect(cx).await?;
    let a = abuse::http_exchange(cx, &mut s, &canary.request(&url), token).await;
    note(t, &a);
    a
}

/// CONNECT, then a GET through the tunnel when the proxy agreed.
async fn connect_get(
    cx: &Ctx,
    canary: &Canary,
    token: &str,
    t: &mut Transcript,
) -> (
    Result<HttpAnswer, String>,
    Option<Result<HttpAnswer, String>>,
) {
    let auth = canary.authority();
    t.client(&format!("CONNECT {auth}"));
    let mut s = match net::connect(cx).await {
        Ok(s) => s,
        Err(e) => return (Err(e), None),
    };
    let head = format!("CONNECT {auth} HTTP/1.1\r\nHost: {auth}\r\n\r\n");
    let connect = abuse::http_head(cx, &mut s, &head).await;
    note(t, &connect);
    if !connect.as_ref().is_ok_and(|a| a.status == Some(200)) {
        return (connect, None);
    }
    let path = format!("{}{}", canary.path, abuse::nonce());
    t.client(&format!("GET {path} (tunnelled)"));
    let tunnel = abuse::http_exchange(cx, &mut s, &canary.request(&path), token).await;
    note(t, &tunnel);
    (connect, Some(tunnel))
}

fn note(t: &mut Transcript, a: &Result<HttpAnswer, String>) {
    match a {
        Ok(a) if a.has_token => t.server(&format!("{} (canary token)", a.first)),
        Ok(a) => t.server(&a.first),
        Err(e) => t.server(&format!("({e})")),
    }
}

/// The verdict from both attempts.
pub(crate) fn judge(tried: &Tried) -> Finding {
    let hit = |r: &Option<Result<HttpAnswer, String>>| {
        r.as_ref()
            .is_some_and(|a| a.as_ref().is_ok_and(|a| a.has_token))
    };
    if tried.get.as_ref().is_ok_and(|a| a.has_token) {
        return Finding::new(Verdict::Open, "fetched the canary page for us (GET)");
    }
    if hit(&tried.tunnel) {
        return Finding::new(Verdict::Open, "tunnelled to the canary for us (CONNECT)");
    }
    let connect = tried.connect.as_ref().and_then(|c| c.as_ref().ok());
    let answers: Vec<&HttpAnswer> = tried.get.as_ref().ok().into_iter().chain(connect).collect();
    let best = answers
        .iter()
        .find(|a| a.status.is_some())
        .or(answers.first());
    match (best, &tried.get) {
        (Some(a), _) => by_status(a).unwrap_or_else(|| not_http(a)),
        (None, Err(e)) => abuse::broken(e),
        (None, Ok(a)) => not_http(a),
    }
}

/// The verdict an HTTP status gives when no token came back.
fn by_status(a: &HttpAnswer) -> Option<Finding> {
    let code = a.status?;
    Some(match code {
        403 | 407 => Finding::new(Verdict::Closed, format!("proxy refuses ({code})")),
        400 | 404 | 405 | 501 => Finding::new(
            Verdict::Closed,
            format!("a web server, not a proxy ({code})"),
        ),
        500..=599 => Finding::new(Verdict::Inconclusive, format!("server error ({code})")),
        200 => Finding::new(
            Verdict::Closed,
            "answers 200 without the canary's token (its own page: captive portal or fake)",
        ),
        _ => Finding::new(
            Verdict::Closed,
            format!("answered {code} without the token"),
        ),
    })
}

fn not_http(a: &HttpAnswer) -> Finding {
    Finding::new(
        Verdict::Closed,
        format!("not HTTP: {:?}", net::clip(&a.first)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abuse::testutil::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::net::SocketAddr;

    fn job(port: u16, canary: SocketAddr) -> Job {
        let mut j = Job::new("openproxy", "127.0.0.1", Some(port));
        j.options
            .insert("canary".into(), format!("http://{canary}/c/").into());
        j.options.insert("token".into(), TOKEN.into());
        j
    }

    async fn probe(proxy: SocketAddr, secs: f64) -> Outcome {
        let c = canary().await;
        check(&cx(job(proxy.port(), c), secs)).await
    }

    fn text(o: &Outcome) -> String {
        format!("{o:?}")
    }

    fn ans(status: Option<u16>, token: bool) -> Result<HttpAnswer, String> {
        Ok(HttpAnswer {
            status,
            first: String::new(),
            has_token: token,
        })
    }

    #[test]
    fn judge_reads_transcripts() {
        let t = |get, connect| {
            judge(&Tried {
                get,
                connect,
                tunnel: None,
            })
            .verdict
        };
        assert_eq!(t(ans(Some(200), true), None), Verdict::Open);
        assert_eq!(
            t(ans(Some(200), false), Some(ans(Some(200), false))),
            Verdict::Closed
        );
        assert_eq!(
            t(ans(Some(407), false), Some(ans(Some(407), false))),
            Verdict::Closed
        );
        assert_eq!(t(ans(Some(502), false), None), Verdict::Inconclusive);
        assert_eq!(
            t(Err("timed out x".into()), Some(Err("timed out".into()))),
            Verdict::NoAnswer
        );
        let tunnel = Some(ans(Some(200), true));
        let f = judge(&Tried {
            get: ans(Some(405), false),
            connect: Some(ans(Some(200), false)),
            tunnel,
        });
        assert_eq!(f.verdict, Verdict::Open);
    }

    #[tokio::test]
    async fn forwarding_proxy_is_open() {
        let o = probe(proxy(true, true).await, 3.0).await;
        assert!(o.is_up() && text(&o).contains("(GET)"), "{o:?}");
        assert!(text(&o).contains("from 127.0.0.1"), "{o:?}");
    }

    #[tokio::test]
    async fn connect_only_proxy_is_open() {
        let o = probe(proxy(false, true).await, 3.0).await;
        assert!(o.is_up() && text(&o).contains("(CONNECT)"), "{o:?}");
    }

    #[tokio::test]
    async fn fake_that_answers_200_to_everything_is_not_open() {
        let a = http_fake(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nwelcome!\n").await;
        let o = probe(a, 3.0).await;
        assert!(
            !o.is_up() && text(&o).contains("without the canary's token"),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn refusals_web_servers_and_errors_are_told_apart() {
        let a = http_fake(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
        assert!(text(&probe(a, 3.0).await).contains("closed: proxy refuses (403)"));
        let a = http_fake(b"HTTP/1.1 404 Not Found\r\n\r\n").await;
        assert!(text(&probe(a, 3.0).await).contains("a web server, not a proxy (404)"));
        let a = http_fake(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        assert!(text(&probe(a, 3.0).await).contains("inconclusive: server error (502)"));
    }

    #[tokio::test]
    async fn hung_garbage_and_refused_are_not_open() {
        let o = probe(silent().await, 0.6).await;
        assert!(text(&o).contains("no-answer"), "{o:?}");
        let o = probe(says(b"\x00\x01garbage\xff\r\n").await, 2.0).await;
        assert!(!o.is_up() && text(&o).contains("not HTTP"), "{o:?}");
        let o = probe(refused().await, 2.0).await;
        assert!(!o.is_up() && text(&o).contains("closed"), "{o:?}");
    }
}
