//! `http` (and the shared engine of `https`): fetch the URL from the address under test and
//! judge the status, body and (for https) certificate.
//!
//! Syntax: `URL must run http [with status N|any|N,M] [with content 'TEXT'] [with pattern 'RE']
//! [not following redirects] [without cache busting] [with host header 'H'] [with method M]
//! [with data 'BODY'] [with header 'K: V'] [with user-agent 'UA'] [with tls insecure].`
//! `user:pass@` in the URL is sent as basic auth and never shown. The URL's password and a
//! header's value may name secrets the worker reads (`http://mon:${env:WEB_PW}@host/`,
//! `with header 'Authorization: Bearer ${env:TOKEN}'`, or `${file:/path}`), so jobs carry only
//! the reference; the values read are scrubbed from every reason.
//!
//! The connection always goes to the worker-resolved address (`Ctx::addr`); nothing is looked up
//! here. Redirects (up to 10) are followed only to the same host or to IP literals; a redirect
//! to another host name fails, since following it would need a DNS lookup. Basic auth, the Host
//! header and `with header` go only to the URL's own origin (scheme, host and port), so never to
//! another port nor in clear after an https → http redirect; a redirect elsewhere that would
//! resend a `with data` holding credentials is not followed. A failure after a redirect names
//! the final URL. At most 4 MiB of
//! body is read: a longer body passes if the content (and pattern) is in that prefix.
//! Down reasons: connect errors; timed out waiting for the response / reading the body; bad
//! HTTP reply; status N, expected …; content or pattern not found; too many redirects; redirect
//! to another host; TLS errors; certificate expiring within the limit (https); each followed by
//! `; final URL …` once a redirect was followed.
//! Example: `http://www.example.com/ must run http with content 'Welcome' otherwise 'web down'.`

use crate::http1;
use crate::net;
use crate::tls::{self, Stream, Verify};
use crate::Ctx;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use custodian_core::secret::{self as refs, URL_PASSWORD};
use custodian_core::spec::secret_ranges;
use custodian_core::{
    mask_url, Invalid, Job, Outcome, ParamSpec, Params, ProbeSpec, TargetKind, Value,
};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, HOST, RANGE,
    USER_AGENT,
};
use http::{Method, StatusCode};
use regex::Regex;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use url::{Host, Url};

/// Most body bytes read before judging; a longer body is judged on this prefix.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Most redirects followed.
const MAX_REDIRECTS: usize = 10;

/// The option phrases of `http`, plus any given (https adds its expiry limit). Each value is
/// checked by the planner and parsed once per job by the kinds below.
macro_rules! http_params {
    ($($extra:expr),* $(,)?) => {
        &[
            ParamSpec::new("with status {status}", "expected status: a number from 100 to 599, `any`, or a comma list such as 200,301 (default 200)")
                .kinds(&[::custodian_core::Kind::Parse($crate::http::parse_status)]),
            ParamSpec::new("with content {content}", "the body must contain this text"),
            ParamSpec::new("with pattern {pattern}", "the body must match this regex (case-sensitive)")
                .kinds(&[::custodian_core::Kind::Regex { ignore_case: false }]),
            ParamSpec::new("not following redirects", "judge a redirect itself instead of following it"),
            ParamSpec::new("without cache busting", "do not add `ctime=<unix time>` to a URL without query"),
            ParamSpec::new("with host header {host_header}", "send this Host header")
                .kinds(&[::custodian_core::Kind::Parse($crate::http::parse_host)]),
            ParamSpec::new("with method {method}", "request method, one word such as HEAD (default GET, or POST with data)")
                .kinds(&[::custodian_core::Kind::Parse($crate::http::parse_method)]),
            ParamSpec::new("with data {data}", "request body (form-encoded)"),
            ParamSpec::new("with header {header}", "an extra request header, 'Name: value'")
                .kinds(&[::custodian_core::Kind::Parse($crate::http::parse_header)]),
            ParamSpec::new("with user-agent {user_agent}", "the User-Agent header")
                .kinds(&[::custodian_core::Kind::Parse($crate::http::parse_user_agent)]),
            $crate::tls::INSECURE_PARAM,
            ParamSpec::new("no_ssl_check", "skip every certificate check, expiry included unless a limit is given (the original's option)"),
            $($extra),*
        ]
    };
}
pub(crate) use http_params;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "http",
    aliases: &[],
    target: TargetKind::Url(&["http"]),
    default_port: Some(80),
    port_required: false,
    takes_port: false,
    params: http_params!(),
    summary: "the URL answers with the expected status (and content)",
    example: "http://example.com/ must run http with status 200 with content 'Example' otherwise 'site down'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    run(cx, false).await
}

/// Runs an http (or, with `https`, an https) check and scrubs secrets from the verdict.
pub(crate) async fn run(cx: &Ctx, https: bool) -> Outcome {
    match fetch_and_judge(cx, https).await {
        Ok(detail) => Outcome::Up {
            detail: Some(detail),
        },
        Err(reason) => Outcome::down(cx.params.scrub(&cx.job.scrub(&reason))),
    }
}

/// What to send, derived from the job alone.
#[derive(Debug)]
struct Plan {
    url: Url,
    auth: Option<(String, String)>,
    method: Method,
    data: Option<String>,
    /// Sent to every hop (User-Agent).
    headers: HeaderMap,
    /// Sent only to the URL's own origin: the Host header and `with header`.
    origin_headers: HeaderMap,
    follow: bool,
    insecure: bool,
}

/// What to expect, derived from the job alone.
#[derive(Debug)]
struct Expect {
    status: Vec<u16>,
    content: Option<String>,
    pattern: Option<Regex>,
    /// How the certificate is judged (https only).
    verify: Option<Verify>,
}

async fn fetch_and_judge(cx: &Ctx, https: bool) -> Result<String, String> {
    let plan = plan(&cx.job, &cx.params, tls::unix_now())?;
    let expect = expect(&cx.params, https);
    let ip = cx.addr.ok_or("no address to connect to")?;
    let mut at = Trail {
        url: plan.url.clone(),
        redirects: 0,
        not_after: None,
    };
    let fetched = net::within(
        cx,
        "waiting for the response",
        fetch(cx, ip, &plan, &expect, &mut at),
    )
    .await;
    if let Some(t) = at.not_after {
        cx.saw_certificate_expiry(t);
    }
    let judged = match fetched {
        Ok(resp) => judge(cx, resp, &expect).await,
        Err(e) => Err(e),
    };
    // After a redirect the reason alone would point at the URL the operator wrote.
    judged.map_err(|e| {
        if at.redirects == 0 {
            e
        } else {
            format!("{e}; final URL {}", mask_url(at.url.as_str()))
        }
    })
}

/// Judges the final response: status, then body.
async fn judge(cx: &Ctx, resp: http1::Response, expect: &Expect) -> Result<String, String> {
    let status = StatusCode::from_u16(resp.head.status)
        .map_err(|_| "bad HTTP reply: invalid HTTP status-code parsed".to_string())?;
    judge_status(status, &expect.status)?;
    let (body, truncated) = net::within(cx, "reading the body", async {
        resp.body(MAX_BODY)
            .await
            .map_err(|e| format!("reading the body: {}", net::clip(&e)))
    })
    .await?;
    judge_body(&body, truncated, expect)?;
    Ok(format!("status {}, {} bytes", status.as_u16(), body.len()))
}

/// Builds the request plan from the job's URL and parsed options; `now` is for cache busting.
fn plan(job: &Job, params: &Params, now: i64) -> Result<Plan, String> {
    let mut url = Url::parse(&job.target).map_err(|e| format!("bad URL: {e}"))?;
    let mut auth = take_auth(&mut url);
    // The password the worker read for a `${env:..}` URL password replaces the reference.
    if let (Some((_, pass)), Some(read)) = (auth.as_mut(), params.text(URL_PASSWORD)) {
        *pass = read.to_string();
    }
    if url.query().is_none() && !params.flag("without_cache_busting") {
        url.set_query(Some(&format!("ctime={now}")));
    }
    let data = params.text("data").map(str::to_string);
    let method = match params.parsed::<Method>("method") {
        Some(m) => m.clone(),
        None if data.is_some() => Method::POST,
        None => Method::GET,
    };
    let (headers, origin_headers) = headers(params);
    Ok(Plan {
        url,
        auth,
        method,
        data,
        headers,
        origin_headers,
        follow: !params.flag("not_following_redirects"),
        insecure: params.flag("with_tls_insecure") || params.flag("no_ssl_check"),
    })
}

/// Removes `user:pass@` from the URL and returns it decoded.
fn take_auth(url: &mut Url) -> Option<(String, String)> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let user = custodian_core::secret::percent_decode(url.username());
    let pass = custodian_core::secret::percent_decode(url.password().unwrap_or(""));
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some((user, pass))
}

/// The request headers from the options: for every hop, User-Agent (ours by default); for the
/// URL's origin only, Host and `with header`.
fn headers(params: &Params) -> (HeaderMap, HeaderMap) {
    let mut every = HeaderMap::new();
    let ua = params.parsed::<HeaderValue>("user_agent").cloned();
    every.insert(
        USER_AGENT,
        ua.unwrap_or(HeaderValue::from_static(concat!(
            "custodian/",
            env!("CARGO_PKG_VERSION")
        ))),
    );
    let mut origin = HeaderMap::new();
    if let Some(host) = params.parsed::<HeaderValue>("host_header") {
        origin.insert(HOST, host.clone());
    }
    if let Some(Header(name, value)) = params.parsed::<Header>("header") {
        origin.append(name.clone(), value.clone());
    }
    (every, origin)
}

/// Builds the expectations; `https` adds the certificate check.
fn expect(params: &Params, https: bool) -> Expect {
    Expect {
        status: params
            .parsed::<Statuses>("status")
            .map_or_else(|| vec![200], |s| s.0.clone()),
        content: params.text("content").map(str::to_string),
        pattern: params.regex("pattern").cloned(),
        verify: https.then(|| Verify::from_params(params)),
    }
}

/// `with status`: the statuses that pass; empty means any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statuses(pub(crate) Vec<u16>);

/// `with status`: a number from 100 to 599, `any`, or a comma list.
pub(crate) fn parse_status(text: &str) -> Result<Value, Invalid> {
    statuses(text).map(Value::parsed)
}

fn statuses(text: &str) -> Result<Statuses, Invalid> {
    if text.trim().eq_ignore_ascii_case("any") {
        return Ok(Statuses(Vec::new()));
    }
    text.split(',')
        .map(|s| match s.trim().parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) => Ok(n),
            _ => Err(
                Invalid::new(format!("`{}` is not an HTTP status", net::clip(s.trim())))
                    .hint("write a number from 100 to 599, `any`, or a comma list such as 200,301"),
            ),
        })
        .collect::<Result<_, _>>()
        .map(Statuses)
}

/// `with method`: one HTTP token (`GET`, `PROPFIND`), upper-cased as the original did.
pub(crate) fn parse_method(text: &str) -> Result<Value, Invalid> {
    Method::from_bytes(text.to_ascii_uppercase().as_bytes())
        .map(Value::parsed)
        .map_err(|_| {
            Invalid::new(format!("`{}` is not an HTTP method", net::clip(text)))
                .hint("write one word without spaces, such as GET, HEAD or POST")
        })
}

/// `with header 'Name: value'`.
#[derive(Debug, Clone)]
pub(crate) struct Header(HeaderName, HeaderValue);

/// The value may hold `${env:NAME}` / `${file:/path}` references, read by the worker before
/// this parses the result; here (on the planner) only their syntax is checked.
pub(crate) fn parse_header(text: &str) -> Result<Value, Invalid> {
    let hint = "write 'Name: value', such as 'X-Token: abc'";
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| Invalid::new(format!("`{}` is not a header", net::clip(text))).hint(hint))?;
    refs::references(value)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
        Invalid::new(format!(
            "`{}` is not a valid header name",
            net::clip(name.trim())
        ))
        .hint("a header name is one word of letters, digits and - such as X-Token")
    })?;
    Ok(Value::parsed(Header(name, header_value(value.trim())?)))
}

/// `with host header`: a non-empty header value.
pub(crate) fn parse_host(text: &str) -> Result<Value, Invalid> {
    if text.trim().is_empty() {
        return Err(Invalid::new("the Host header is empty")
            .hint("write the host name the server expects, such as 'www.example.com'"));
    }
    header_value(text).map(Value::parsed)
}

/// `with user-agent`: a header value.
pub(crate) fn parse_user_agent(text: &str) -> Result<Value, Invalid> {
    header_value(text).map(Value::parsed)
}

fn header_value(text: &str) -> Result<HeaderValue, Invalid> {
    HeaderValue::from_str(text).map_err(|_| {
        Invalid::new(format!("{:?} is not a valid header value", net::clip(text)))
            .hint("use printable ASCII only: no line breaks or control characters")
    })
}

/// Where a fetch has got to: the URL being fetched and how many redirects led there.
struct Trail {
    url: Url,
    redirects: usize,
    /// The first response's certificate's notAfter (unix seconds), for `/metrics`.
    not_after: Option<i64>,
}

/// Sends the request and follows redirects allowed by [`next_hop`]; returns the final response
/// after checking the certificate of the first one. `at` follows the redirects, so a failure
/// (or the deadline) can name the URL it happened at.
async fn fetch(
    cx: &Ctx,
    ip: IpAddr,
    plan: &Plan,
    expect: &Expect,
    at: &mut Trail,
) -> Result<http1::Response, String> {
    let mut method = plan.method.clone();
    for hop in 0..=MAX_REDIRECTS {
        let verify = expect.verify.as_ref().filter(|_| hop == 0);
        let stream = open(cx, ip, plan, &at.url, verify, &mut at.not_after).await?;
        let request = request(plan, &at.url, &method);
        let resp = http1::exchange(stream, &request, method == Method::HEAD).await?;
        let Some(loc) = redirect_location(&resp.head, plan.follow) else {
            return Ok(resp);
        };
        let next = next_hop(&at.url, &plan.url, &loc)?;
        method = redirect_method(resp.head.status, &method);
        if body(plan, &method).is_some_and(holds_credentials) && !same_origin(&next, &plan.url) {
            return Err(format!(
                "redirect to another origin ({}); not followed, as it would resend `with data`, \
                 which holds credentials",
                net::clip(&mask_url(next.as_str()))
            ));
        }
        at.url = next;
        at.redirects = hop + 1;
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// Connects to `url`'s host: the address under test (`ip`) for the host the job names, the
/// address itself for an IP literal; nothing is ever looked up. An https URL gets its TLS
/// handshake, and with `verify` (the first hop of `https`) its certificate's expiry judged;
/// `not_after` receives that certificate's notAfter.
async fn open(
    cx: &Ctx,
    ip: IpAddr,
    plan: &Plan,
    url: &Url,
    verify: Option<&Verify>,
    not_after: &mut Option<i64>,
) -> Result<Stream, String> {
    let port = url.port_or_known_default().unwrap_or(80);
    let (addr, name) = match url.host() {
        Some(Host::Ipv4(a)) => (IpAddr::V4(a), None),
        Some(Host::Ipv6(a)) => (IpAddr::V6(a), None),
        Some(Host::Domain(d)) => (ip, Some(d)),
        None => {
            return Err(format!(
                "{} names no host",
                net::clip(&mask_url(url.as_str()))
            ))
        }
    };
    let tcp = net::dial(cx, SocketAddr::new(addr, port)).await?;
    // Plain HTTP writes its request at once, so Nagle never holds anything back; TLS sends
    // its Finished and then the request, which Nagle would hold for the server's ACK.
    if url.scheme() != "https" {
        return Ok(Box::new(tcp));
    }
    let _ = tcp.set_nodelay(true);
    let name = match name {
        Some(d) => ServerName::try_from(d.to_string())
            .map_err(|_| format!("{:?} is no host name for TLS", net::clip(d)))?,
        None => ServerName::from(addr),
    };
    let config = cx.env.tls_config(plan.insecure);
    // Boxed: a handshake's state is kilobytes, needed only while it runs (issue 13).
    let tls = Box::pin(tls::connect(config, name, port, tcp)).await?;
    if let Some(verify) = verify {
        let der = tls::peer_leaf(&tls)?;
        *not_after = tls::not_after(der);
        verify.judge(der, tls::unix_now())?;
    }
    Ok(Box::new(tls))
}

/// Whether two URLs share scheme, host and port: only the original origin gets credentials.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The body sent with `method`: `with data`, unless the method takes none.
fn body<'a>(plan: &'a Plan, method: &Method) -> Option<&'a str> {
    let sends = method != Method::GET && method != Method::HEAD;
    plan.data.as_deref().filter(|_| sends)
}

/// Whether `with data` carries credentials (as the masking in output sees them).
fn holds_credentials(data: &str) -> bool {
    !secret_ranges("data", data).is_empty()
}

/// The request's bytes. Credentials, the Host header and `with header` go only to the
/// original origin. The headers are those reqwest sent before (issue 13 replaced it): `accept:
/// */*` and gzip accepted unless the line says otherwise, `host` from the URL unless given.
fn request(plan: &Plan, url: &Url, method: &Method) -> Vec<u8> {
    let origin = same_origin(url, &plan.url);
    let mut headers = plan.headers.clone();
    if origin {
        headers.extend(plan.origin_headers.clone());
    }
    let data = body(plan, method);
    let mut out = Vec::with_capacity(256 + data.map_or(0, str::len));
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(url.path().as_bytes());
    if let Some(q) = url.query() {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut field = |name: &str, value: &[u8]| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    if !headers.contains_key(ACCEPT) {
        field("accept", b"*/*");
    }
    for (name, value) in &headers {
        field(name.as_str(), value.as_bytes());
    }
    if let (true, Some((user, pass))) = (origin, &plan.auth) {
        let basic = format!("Basic {}", B64.encode(format!("{user}:{pass}")));
        field(AUTHORIZATION.as_str(), basic.as_bytes());
    }
    if let Some(data) = data {
        field("content-type", b"application/x-www-form-urlencoded");
        field("content-length", data.len().to_string().as_bytes());
    }
    if !headers.contains_key(ACCEPT_ENCODING) && !headers.contains_key(RANGE) {
        field("accept-encoding", b"gzip");
    }
    if !headers.contains_key(HOST) {
        let host = url.host_str().unwrap_or_default();
        match url.port() {
            Some(port) => field("host", format!("{host}:{port}").as_bytes()),
            None => field("host", host.as_bytes()),
        }
    }
    out.extend_from_slice(b"\r\n");
    if let Some(data) = data {
        out.extend_from_slice(data.as_bytes());
    }
    out
}

/// The `Location` of a redirect we should follow.
fn redirect_location(head: &http1::Head, follow: bool) -> Option<String> {
    if !follow || !(300..400).contains(&head.status) {
        return None;
    }
    head.location.clone()
}

/// 303, and 301/302 after a POST, continue as GET (as browsers do); others keep the method.
fn redirect_method(status: u16, method: &Method) -> Method {
    let to_get = status == 303 || (*method == Method::POST && (status == 301 || status == 302));
    if to_get {
        Method::GET
    } else {
        method.clone()
    }
}

/// Where a redirect leads, if we may follow it without a name lookup: the original host (pinned
/// to the address under test) or an IP literal.
fn next_hop(current: &Url, original: &Url, location: &str) -> Result<Url, String> {
    let next = current
        .join(location)
        .map_err(|e| format!("redirect to a bad location {:?}: {e}", net::clip(location)))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(format!(
            "redirect to a non-HTTP URL {}",
            net::clip(next.as_str())
        ));
    }
    match next.host() {
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => Ok(next),
        Some(Host::Domain(d)) if Some(d) == original.host_str() => Ok(next),
        _ => Err(format!(
            "redirect to another host ({}); not followed, as that needs a DNS lookup \
             (test that URL directly, or use `not following redirects`)",
            net::clip(next.as_str())
        )),
    }
}

/// Checks the status against the expected list (empty: any).
fn judge_status(status: StatusCode, expected: &[u16]) -> Result<(), String> {
    if expected.is_empty() || expected.contains(&status.as_u16()) {
        return Ok(());
    }
    let want: Vec<String> = expected.iter().map(u16::to_string).collect();
    Err(format!("status {status}, expected {}", want.join(" or ")))
}

/// Checks content and pattern; `truncated` means only the first [`MAX_BODY`] bytes were read.
fn judge_body(body: &[u8], truncated: bool, expect: &Expect) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    let where_ = if truncated {
        format!(
            "the first {} MiB of the body (it is longer)",
            MAX_BODY >> 20
        )
    } else {
        format!("the body ({} bytes)", body.len())
    };
    if let Some(c) = &expect.content {
        if !text.contains(c.as_str()) {
            return Err(format!("content {:?} not found in {where_}", net::clip(c)));
        }
    }
    if let Some(re) = &expect.pattern {
        if !re.is_match(&text) {
            return Err(format!(
                "pattern /{}/ does not match {where_}",
                net::clip(re.as_str())
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod fake {
    //! An HTTP(S) server fake: answers each request (head and body as text) with `respond`.

    use crate::net::testutil::serve;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub(crate) type Respond = fn(&str) -> Vec<u8>;

    pub(crate) async fn http(respond: Respond) -> SocketAddr {
        serve(move |s| answer(s, respond)).await
    }

    pub(crate) async fn https(config: Arc<rustls::ServerConfig>, respond: Respond) -> SocketAddr {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        serve(move |s| {
            let acceptor = acceptor.clone();
            async move {
                if let Ok(t) = acceptor.accept(s).await {
                    answer(t, respond).await;
                }
            }
        })
        .await
    }

    /// Serves TLS and plain HTTP on one port, told apart by the first byte (0x16 opens a TLS
    /// handshake), so a redirect can change the scheme alone.
    pub(crate) async fn dual(config: Arc<rustls::ServerConfig>, respond: Respond) -> SocketAddr {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        serve(move |s| {
            let acceptor = acceptor.clone();
            async move {
                let mut first = [0u8; 1];
                if !matches!(s.peek(&mut first).await, Ok(1)) {
                    return;
                }
                if first[0] != 0x16 {
                    answer(s, respond).await;
                } else if let Ok(t) = acceptor.accept(s).await {
                    answer(t, respond).await;
                }
            }
        })
        .await
    }

    /// A server that reads the request head, then hands the connection to `handler`.
    pub(crate) async fn raw<F, Fut>(handler: F) -> SocketAddr
    where
        F: Fn(TcpStream) -> Fut + Copy + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        serve(move |mut s| async move {
            if read_head(&mut s).await.is_some() {
                handler(s).await;
            }
        })
        .await
    }

    async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if !matches!(s.read(&mut b).await, Ok(1)) || head.len() > 65536 {
                return None;
            }
            head.push(b[0]);
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, respond: Respond) {
        let Some(mut text) = read_head(&mut s).await else {
            return;
        };
        let len = text
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len.min(65536)];
        if s.read_exact(&mut body).await.is_err() {
            return;
        }
        text.push_str(&String::from_utf8_lossy(&body));
        let _ = s.write_all(&respond(&text)).await;
        let _ = s.shutdown().await;
    }

    /// A complete response with this status line and body.
    pub(crate) fn reply(status: &str, extra: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// 200 naming which credentials and origin-only headers reached this server, as
    /// `carried [authorization: x-probe: host: vhost]` (each only if present).
    pub(crate) fn inspect(req: &str) -> Vec<u8> {
        let head = req.to_ascii_lowercase();
        let carried: Vec<&str> = ["authorization:", "x-probe:", "host: vhost"]
            .into_iter()
            .filter(|h| head.contains(h))
            .collect();
        reply("200 OK", "", &format!("carried [{}]", carried.join(" ")))
    }

    /// 200 with the request itself as the body, so tests can look at what was sent.
    pub(crate) fn echo(req: &str) -> Vec<u8> {
        reply("200 OK", "", req)
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{self, reply};
    use super::*;
    use crate::net::testutil::*;
    use serde_json::json;
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;

    fn job(url: &str, opts: &[(&str, serde_json::Value)]) -> Job {
        let mut j = Job::new("http", url, None);
        for (k, v) in opts {
            j.options.insert(k.to_string(), v.clone());
        }
        j
    }

    async fn probe(url: String, opts: &[(&str, serde_json::Value)], secs: f64) -> Outcome {
        check(&cx(job(&url, opts), secs)).await
    }

    #[tokio::test]
    async fn pass_on_a_pinned_host_name_with_cache_busting() {
        let a = fake::http(fake::echo).await;
        let url = format!("http://www.custodian.test:{}/x", a.port());
        let out = probe(url.clone(), &[("content", json!("GET /x?ctime="))], 2.0).await;
        assert!(out.is_up(), "{out:?}");
        let out = probe(
            url.clone(),
            &[("content", json!("host: www.custodian.test"))],
            2.0,
        )
        .await;
        assert!(out.is_up(), "{out:?}");
        let opts = [
            ("content", json!("ctime=")),
            ("without_cache_busting", json!(true)),
        ];
        assert!(down_with(
            &probe(url, &opts, 2.0).await,
            "content \"ctime=\" not found"
        ));
    }

    #[tokio::test]
    async fn request_options_are_sent() {
        let a = fake::http(fake::echo).await;
        let url = format!("http://bob:s%3Acret@127.0.0.1:{}/?q=1", a.port());
        let opts = [
            ("data", json!("a=1&b=2")),
            ("header", json!("X-Probe: yes")),
            ("user_agent", json!("probe/1")),
            ("host_header", json!("vhost.example")),
            (
                "pattern",
                json!("(?s)^POST /\\?q=1 .*host: vhost.example.*x-probe: yes.*a=1&b=2$"),
            ),
        ];
        assert!(probe(url.clone(), &opts, 2.0).await.is_up());
        // "bob:s:cret" in base64; the password itself must never appear in a reason.
        let auth = [("content", json!("authorization: Basic Ym9iOnM6Y3JldA=="))];
        assert!(probe(url.clone(), &auth, 2.0).await.is_up());
        let out = probe(url, &[("status", json!("201"))], 2.0).await;
        assert_eq!(out, Outcome::down("status 200 OK, expected 201"));
    }

    #[tokio::test]
    async fn secrets_are_scrubbed_from_reasons() {
        let a = fake::http(fake::echo).await;
        let url = format!("http://bob:hunter2@127.0.0.1:{}/", a.port());
        let out = probe(url, &[("content", json!("hunter2-missing"))], 2.0).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if !reason.contains("hunter2")),
            "{out:?}"
        );
    }

    fn not_found(_: &str) -> Vec<u8> {
        reply("404 Not Found", "", "nothing here")
    }

    #[tokio::test]
    async fn wrong_status_and_status_lists() {
        let a = fake::http(not_found).await;
        let url = format!("http://127.0.0.1:{}/", a.port());
        let out = probe(url.clone(), &[], 2.0).await;
        assert_eq!(out, Outcome::down("status 404 Not Found, expected 200"));
        assert!(probe(url.clone(), &[("status", json!(404))], 2.0)
            .await
            .is_up());
        assert!(probe(url.clone(), &[("status", json!("any"))], 2.0)
            .await
            .is_up());
        assert!(probe(url.clone(), &[("status", json!("200, 404"))], 2.0)
            .await
            .is_up());
        let out = probe(url, &[("status", json!("200,301"))], 2.0).await;
        assert_eq!(
            out,
            Outcome::down("status 404 Not Found, expected 200 or 301")
        );
    }

    #[tokio::test]
    async fn missing_content_and_pattern() {
        let a = fake::http(not_found).await;
        let url = format!("http://127.0.0.1:{}/", a.port());
        let s = ("status", json!(404));
        let out = probe(
            url.clone(),
            &[s.clone(), ("content", json!("welcome"))],
            2.0,
        )
        .await;
        assert_eq!(
            out,
            Outcome::down("content \"welcome\" not found in the body (12 bytes)")
        );
        let out = probe(url.clone(), &[s.clone(), ("pattern", json!("^here"))], 2.0).await;
        assert_eq!(
            out,
            Outcome::down("pattern /^here/ does not match the body (12 bytes)")
        );
        assert!(probe(url, &[s, ("pattern", json!("here$"))], 2.0)
            .await
            .is_up());
    }

    fn redirects(req: &str) -> Vec<u8> {
        let path = req.split(' ').nth(1).unwrap_or("");
        let port = req
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .and_then(|h| h.rsplit(':').next())
            .unwrap_or("0");
        let to = |loc: String| reply("302 Found", &format!("Location: {loc}\r\n"), "");
        match path {
            "/start" => to("/final".into()),
            "/to-ip" => to(format!("http://127.0.0.1:{port}/final")),
            "/away" => to("http://elsewhere.custodian.test/".into()),
            "/loop" => to("/loop".into()),
            "/final" => reply("200 OK", "", "arrived"),
            _ => reply("404 Not Found", "", ""),
        }
    }

    #[tokio::test]
    async fn redirects_followed_and_not_followed() {
        let a = fake::http(redirects).await;
        let base = format!("http://www.custodian.test:{}", a.port());
        let nocb = ("without_cache_busting", json!(true));
        let out = probe(
            format!("{base}/start"),
            &[nocb.clone(), ("content", json!("arrived"))],
            2.0,
        )
        .await;
        assert!(out.is_up(), "{out:?}");
        assert!(probe(
            format!("{base}/to-ip"),
            &[nocb.clone(), ("content", json!("arrived"))],
            2.0
        )
        .await
        .is_up());
        let nf = ("not_following_redirects", json!(true));
        let out = probe(format!("{base}/start"), &[nocb.clone(), nf.clone()], 2.0).await;
        assert_eq!(out, Outcome::down("status 302 Found, expected 200"));
        assert!(probe(
            format!("{base}/start"),
            &[nocb.clone(), nf, ("status", json!(302))],
            2.0
        )
        .await
        .is_up());
        let out = probe(format!("{base}/loop"), std::slice::from_ref(&nocb), 2.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("more than 10 redirects; final URL {base}/loop"))
        );
        let out = probe(format!("{base}/away"), &[nocb], 2.0).await;
        assert!(
            down_with(
                &out,
                "redirect to another host (http://elsewhere.custodian.test/)"
            ),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn endless_body_is_bounded() {
        let a = fake::raw(|mut s| async move {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                .await;
            let block = b"spam ".repeat(8192);
            while s.write_all(&block).await.is_ok() {}
        })
        .await;
        let url = format!("http://127.0.0.1:{}/", a.port());
        let t = Instant::now();
        let out = probe(url.clone(), &[("content", json!("needle"))], 10.0).await;
        assert_eq!(
            out,
            Outcome::down(
                "content \"needle\" not found in the first 4 MiB of the body (it is longer)"
            )
        );
        let out = probe(url, &[("content", json!("spam"))], 10.0).await;
        assert_eq!(out, up(&format!("status 200, {MAX_BODY} bytes")));
        assert!(t.elapsed() < Duration::from_secs(8));
    }

    #[tokio::test]
    async fn trickle_fails_at_the_deadline() {
        let a = fake::raw(|mut s| async move {
            for b in b"HTTP/1.1 200 OK\r\n".iter().cycle() {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        let out = probe(format!("http://127.0.0.1:{}/", a.port()), &[], 0.7).await;
        assert_eq!(out, Outcome::down("timed out waiting for the response"));
        let a = fake::raw(|mut s| async move {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                .await;
            while s.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        let out = probe(format!("http://127.0.0.1:{}/", a.port()), &[], 0.7).await;
        assert_eq!(out, Outcome::down("timed out reading the body"));
    }

    /// A server that answers every request with `bytes` and closes.
    async fn sends(bytes: &'static [u8]) -> String {
        let a = fake::raw(move |mut s| async move {
            let _ = s.write_all(bytes).await;
            let _ = s.shutdown().await;
        })
        .await;
        format!("http://127.0.0.1:{}/", a.port())
    }

    #[tokio::test]
    async fn bodies_are_framed_as_the_server_says() {
        let chunked = sends(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
        .await;
        let out = probe(chunked, &[("content", json!("hello, world"))], 2.0).await;
        assert_eq!(out, up("status 200, 12 bytes"), "{out:?}");
        // No length: the body runs to the close. Bare LF line ends are accepted.
        let close = sends(b"HTTP/1.0 200 OK\nServer: old\n\nto the end").await;
        let out = probe(close, &[("content", json!("the end"))], 2.0).await;
        assert_eq!(out, up("status 200, 10 bytes"), "{out:?}");
        // Interim answers are skipped; the final one is judged.
        let interim =
            sends(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        assert!(probe(interim, &[], 2.0).await.is_up());
        let short = sends(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
        assert_eq!(
            probe(short, &[], 2.0).await,
            Outcome::down("reading the body: end of file before message length reached")
        );
        let bad_chunk = sends(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await;
        assert_eq!(
            probe(bad_chunk, &[], 2.0).await,
            Outcome::down("reading the body: invalid chunk size line")
        );
    }

    #[tokio::test]
    async fn a_head_request_reads_no_body() {
        // The length describes the GET body that HEAD does not get: waiting for it would hang.
        let a = fake::raw(|mut s| async move {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
                .await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        })
        .await;
        let url = format!("http://127.0.0.1:{}/", a.port());
        let out = probe(url, &[("method", json!("HEAD"))], 2.0).await;
        assert_eq!(out, up("status 200, 0 bytes"), "{out:?}");
    }

    #[tokio::test]
    async fn broken_heads_are_bad_replies() {
        let cases: [(&'static [u8], &str); 4] = [
            (
                b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
                "bad HTTP reply: invalid HTTP version parsed",
            ),
            (
                b"HTTP/1.1 2x0 OK\r\n\r\n",
                "bad HTTP reply: invalid HTTP status-code parsed",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
                "bad HTTP reply: invalid content-length parsed",
            ),
            (
                b"HTTP/1.1 200",
                "bad HTTP reply: connection closed before message completed",
            ),
        ];
        for (bytes, reason) in cases {
            assert_eq!(
                probe(sends(bytes).await, &[], 2.0).await,
                Outcome::down(reason)
            );
        }
        let many: &'static [u8] = Box::leak(
            format!("HTTP/1.1 200 OK\r\n{}\r\n", "X-A: b\r\n".repeat(101))
                .into_bytes()
                .into_boxed_slice(),
        );
        assert_eq!(
            probe(sends(many).await, &[], 2.0).await,
            Outcome::down("bad HTTP reply: message head is too large")
        );
        // Garbage on a connection held open fails at once, not at the timeout.
        let held = fake::raw(|mut s| async move {
            let _ = s.write_all(b"\x16\x03\x01garbage with no blank line").await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let started = std::time::Instant::now();
        let out = probe(format!("http://127.0.0.1:{}/", held.port()), &[], 20.0).await;
        assert_eq!(
            out,
            Outcome::down("bad HTTP reply: invalid HTTP version parsed")
        );
        assert!(started.elapsed() < Duration::from_secs(10), "waited for the timeout");
    }

    fn up(detail: &str) -> Outcome {
        Outcome::Up {
            detail: Some(detail.into()),
        }
    }

    /// A response with `body` gzipped, less its last `cut` bytes.
    fn gzipped(body: &[u8], cut: usize) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(body).expect("gzip");
        let mut z = z.finish().expect("gzip");
        z.truncate(z.len() - cut);
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            z.len()
        )
        .into_bytes();
        out.extend_from_slice(&z);
        out
    }

    #[tokio::test]
    async fn gzip_bodies_are_decoded_and_bounded() {
        let small: &'static [u8] = gzipped(b"compressed welcome", 0).leak();
        let out = probe(sends(small).await, &[("content", json!("welcome"))], 2.0).await;
        assert_eq!(out, up("status 200, 18 bytes"), "{out:?}");
        // 64 MiB of zeros in about 64 KiB: only the first 4 MiB are ever decoded.
        let bomb: &'static [u8] = gzipped(&vec![0u8; 64 << 20], 0).leak();
        let out = probe(sends(bomb).await, &[("content", json!("x"))], 5.0).await;
        assert_eq!(
            out,
            Outcome::down("content \"x\" not found in the first 4 MiB of the body (it is longer)")
        );
        // The stream ends before the gzip trailer: the body is broken, not empty.
        let cut: &'static [u8] = gzipped(b"a body cut short", 6).leak();
        let out = probe(sends(cut).await, &[], 2.0).await;
        assert!(
            down_with(&out, "reading the body: bad gzip body: "),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn oversized_headers_are_bounded() {
        let a = fake::raw(|mut s| async move {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Big: ").await;
            let block = b"a".repeat(65536);
            while s.write_all(&block).await.is_ok() {}
        })
        .await;
        let t = Instant::now();
        let out = probe(format!("http://127.0.0.1:{}/", a.port()), &[], 5.0).await;
        assert!(
            out == Outcome::down("bad HTTP reply: message head is too large"),
            "{out:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(4));
    }

    /// The options as the worker parses them, or the first refusal.
    fn params(opts: &[(&str, serde_json::Value)]) -> Result<Params, Invalid> {
        crate::prepare(&job("http://h.example/", opts))
    }

    /// The refusal of one option's value: its message and hint.
    fn refusal(key: &str, value: &str) -> (String, String) {
        let e = params(&[(key, json!(value))]).expect_err(value);
        (e.msg, e.hint.unwrap_or_default())
    }

    #[test]
    fn status_lists_parse() {
        let status = |v: serde_json::Value| {
            let p = params(&[("status", v)]).expect("valid status");
            p.parsed::<Statuses>("status").expect("parsed").0.clone()
        };
        assert_eq!(expect(&Params::default(), false).status, vec![200]);
        assert_eq!(status(json!(301)), vec![301]);
        assert_eq!(status(json!("ANY")), Vec::<u16>::new());
        assert_eq!(status(json!("200,301, 302")), vec![200, 301, 302]);
        assert_eq!(status(json!("599")), vec![599]);
        let (msg, hint) = refusal("status", "abc");
        assert_eq!(msg, "option `status`: `abc` is not an HTTP status");
        assert!(hint.contains("a number from 100 to 599, `any`"), "{hint}");
        for bad in ["999", "99", "2xx", "200,,301", "", "-1"] {
            assert!(params(&[("status", json!(bad))]).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods_are_one_token() {
        let method = |m: &str| {
            params(&[("method", json!(m))]).map(|p| p.parsed::<Method>("method").cloned())
        };
        assert_eq!(method("head"), Ok(Some(Method::HEAD)));
        assert_eq!(
            method("propfind").map(|m| m.map(|m| m.to_string())),
            Ok(Some("PROPFIND".into()))
        );
        let (msg, hint) = refusal("method", "GE T");
        assert_eq!(msg, "option `method`: `GE T` is not an HTTP method");
        assert!(hint.contains("without spaces"), "{hint}");
        assert!(method("").is_err());
        assert!(method("GET\r\nX: y").is_err());
    }

    #[test]
    fn headers_need_a_name_a_colon_and_a_clean_value() {
        let p = params(&[("header", json!("X-Probe:  yes "))]).expect("valid");
        let (every, h) = headers(&p);
        assert!(every.get("x-probe").is_none());
        assert_eq!(h.get("x-probe").map(|v| v.as_bytes()), Some(&b"yes"[..]));
        let (msg, hint) = refusal("header", "NoColonHere");
        assert_eq!(msg, "option `header`: `NoColonHere` is not a header");
        assert!(hint.contains("'Name: value'"), "{hint}");
        let (msg, _) = refusal("header", "Bad Name: x");
        assert_eq!(
            msg,
            "option `header`: `Bad Name` is not a valid header name"
        );
        let (msg, hint) = refusal("header", "X-A: b\nc");
        assert_eq!(
            msg,
            "option `header`: \"b\\nc\" is not a valid header value"
        );
        assert!(hint.contains("no line breaks"), "{hint}");
        assert!(params(&[("header", json!(": x"))]).is_err());
        assert!(params(&[("header", json!("X-Empty:"))]).is_ok());
    }

    #[test]
    fn host_header_and_user_agent_are_header_values() {
        let p = params(&[
            ("host_header", json!("vhost.example")),
            ("user_agent", json!("probe/1 (custodian)")),
        ])
        .expect("valid");
        let (every, origin) = headers(&p);
        assert_eq!(
            origin.get(HOST).map(|v| v.as_bytes()),
            Some(&b"vhost.example"[..])
        );
        assert!(every.get(HOST).is_none());
        assert_eq!(
            every.get(USER_AGENT).map(|v| v.as_bytes()),
            Some(&b"probe/1 (custodian)"[..])
        );
        let (default, _) = headers(&Params::default());
        let ua = default.get(USER_AGENT).map(|v| v.as_bytes().to_vec());
        assert_eq!(
            ua,
            Some(format!("custodian/{}", env!("CARGO_PKG_VERSION")).into_bytes())
        );
        let (msg, _) = refusal("host_header", " ");
        assert_eq!(msg, "option `host_header`: the Host header is empty");
        assert!(params(&[("host_header", json!("a\r\nX: y"))]).is_err());
        assert!(params(&[("user_agent", json!("ua\u{7f}"))]).is_err());
    }

    #[test]
    fn patterns_are_case_sensitive_regexes_and_data_is_text() {
        let p =
            params(&[("pattern", json!("^Wel+come")), ("data", json!("a=1&b= 2"))]).expect("valid");
        let e = expect(&p, false);
        let re = e.pattern.expect("pattern");
        assert!(re.is_match("Wellcome") && !re.is_match("wellcome"));
        assert_eq!(p.text("data"), Some("a=1&b= 2"));
        let (msg, _) = refusal("pattern", "(");
        assert!(
            msg.starts_with("option `pattern`: `(` is not a valid regular expression"),
            "{msg}"
        );
    }

    #[test]
    fn next_hop_stays_on_pinned_hosts() {
        let orig = Url::parse("http://Www.Example.com:8080/a").expect("url");
        assert_eq!(
            next_hop(&orig, &orig, "/b").map(String::from),
            Ok("http://www.example.com:8080/b".into())
        );
        assert!(next_hop(&orig, &orig, "https://www.example.com/").is_ok());
        assert!(next_hop(&orig, &orig, "http://[::1]/").is_ok());
        assert!(next_hop(&orig, &orig, "http://example.com/").is_err());
        assert!(next_hop(&orig, &orig, "ftp://www.example.com/").is_err());
    }

    #[test]
    fn plan_takes_credentials_out_and_picks_the_method() {
        let j = job("http://a%40b:p%25w@h.example/p", &[("data", json!("x"))]);
        let p = plan(&j, &crate::prepare(&j).expect("valid"), 42).expect("plan");
        assert_eq!(p.url.as_str(), "http://h.example/p?ctime=42");
        assert_eq!(p.auth, Some(("a@b".into(), "p%w".into())));
        assert_eq!(p.method, Method::POST);
        let j = job("http://h.example/?x", &[("method", json!("head"))]);
        let p = plan(&j, &crate::prepare(&j).expect("valid"), 0).expect("plan");
        assert_eq!(
            (p.url.as_str(), p.method),
            ("http://h.example/?x", Method::HEAD)
        );
        assert_eq!(custodian_core::secret::percent_decode("%41%zz%"), "A%zz%");
    }
    /// `/KIND/PORT/REST` redirects to `http://127.0.0.1:PORT/REST`: `other` with 302, `keep`
    /// with 307 (method and body kept), `as-eve` with a password in the URL; `/same` redirects
    /// to `/inspect` here; `/inspect` answers with [`fake::inspect`].
    fn hops(req: &str) -> Vec<u8> {
        let path = req.split(' ').nth(1).unwrap_or("");
        let go = |status: &str, loc: String| reply(status, &format!("Location: {loc}\r\n"), "");
        let mut parts = path.splitn(4, '/').skip(1);
        match (parts.next(), parts.next(), parts.next()) {
            (Some("other"), Some(port), Some(rest)) => {
                go("302 Found", format!("http://127.0.0.1:{port}/{rest}"))
            }
            (Some("keep"), Some(port), Some(rest)) => go(
                "307 Temporary Redirect",
                format!("http://127.0.0.1:{port}/{rest}"),
            ),
            (Some("as-eve"), Some(port), Some(rest)) => go(
                "302 Found",
                format!("http://eve:evepw1@127.0.0.1:{port}/{rest}"),
            ),
            (Some("same"), None, None) => go("302 Found", "/inspect".into()),
            (Some("inspect"), None, None) => fake::inspect(req),
            _ => reply("404 Not Found", "", ""),
        }
    }

    /// Options sending every credential: basic auth is in the URL.
    fn credentialed(content: &str) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("without_cache_busting", json!(true)),
            ("header", json!("X-Probe: yes")),
            ("host_header", json!("vhost.example")),
            ("content", json!(content)),
        ]
    }

    #[tokio::test]
    async fn credentials_and_custom_headers_stay_on_their_origin() {
        let a = fake::http(hops).await;
        let b = fake::http(hops).await;
        let url = |path: &str| format!("http://bob:pw@127.0.0.1:{}{path}", a.port());
        let all = credentialed("carried [authorization: x-probe: host: vhost]");
        let out = probe(url("/same"), &all, 2.0).await;
        assert!(out.is_up(), "same origin keeps them: {out:?}");
        let none = credentialed("carried []");
        let out = probe(url(&format!("/other/{}/inspect", b.port())), &none, 2.0).await;
        assert!(out.is_up(), "another port gets none: {out:?}");
        // Back to the first origin after a detour: they are sent again, to it only.
        let back = format!("/other/{}/other/{}/inspect", b.port(), a.port());
        let out = probe(url(&back), &all, 2.0).await;
        assert!(out.is_up(), "{out:?}");
    }

    #[tokio::test]
    async fn credential_data_is_not_resent_to_another_origin() {
        let a = fake::http(hops).await;
        let b = fake::http(hops).await;
        let url = format!("http://127.0.0.1:{}/keep/{}/inspect", a.port(), b.port());
        let nocb = ("without_cache_busting", json!(true));
        let out = probe(
            url.clone(),
            &[nocb.clone(), ("data", json!("user=bob&password=pw"))],
            2.0,
        )
        .await;
        assert_eq!(
            out,
            Outcome::down(format!(
                "redirect to another origin (http://127.0.0.1:{}/inspect); not followed, as it \
                 would resend `with data`, which holds credentials",
                b.port()
            ))
        );
        let out = probe(url, &[nocb, ("data", json!("q=cats"))], 2.0).await;
        assert!(out.is_up(), "{out:?}");
    }

    #[tokio::test]
    async fn failure_after_redirects_names_the_final_url() {
        let a = fake::http(hops).await;
        let b = fake::http(hops).await;
        let url = |path: String| format!("http://bob:pw@127.0.0.1:{}{path}", a.port());
        let nocb = ("without_cache_busting", json!(true));
        let opts = std::slice::from_ref(&nocb);
        let out = probe(url(format!("/other/{}/missing", b.port())), opts, 2.0).await;
        let final_b = format!("final URL http://127.0.0.1:{}/missing", b.port());
        assert_eq!(
            out,
            Outcome::down(format!("status 404 Not Found, expected 200; {final_b}"))
        );
        let out = probe(url(format!("/as-eve/{}/missing", b.port())), opts, 2.0).await;
        assert_eq!(
            out,
            Outcome::down(format!(
                "status 404 Not Found, expected 200; final URL http://eve:********@127.0.0.1:{}/missing",
                b.port()
            ))
        );
        let r = refused().await;
        let out = probe(url(format!("/other/{}/x", r.port())), opts, 2.0).await;
        let Outcome::Down { reason } = &out else {
            panic!("{out:?}");
        };
        assert!(
            reason.starts_with(&format!("connect to port {}: ", r.port())),
            "{reason}"
        );
        assert!(
            reason.ends_with(&format!("; final URL http://127.0.0.1:{}/x", r.port())),
            "{reason}"
        );
        let s = silent().await;
        let out = probe(url(format!("/other/{}/x", s.port())), opts, 0.7).await;
        assert_eq!(
            out,
            Outcome::down(format!(
                "timed out waiting for the response; final URL http://127.0.0.1:{}/x",
                s.port()
            ))
        );
    }
}
