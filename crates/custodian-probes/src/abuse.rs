//! Shared parts of the abuse checks (openrelay, openresolver, openproxy, opensocks): the
//! typed finding `custodian scan` gets ([`assess`]), with our own errors told apart from the
//! target's; the evidence transcript, the canary URL option and the bounded HTTP exchange that
//! looks for the canary's token.
//!
//! These checks are written for `must not run`: "up" means the target is open to abuse.

use crate::{net, openproxy, openrelay, openresolver, opensocks, Ctx};
use custodian_core::outcome::escape_controls;
use custodian_core::{Finding, Invalid, Value, Verdict};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Most bytes of an HTTP answer we read while looking for the token.
const MAX_HTTP: usize = 16 * 1024;

/// The typed finding of an abuse check for `custodian scan`; `None` when the job's type is
/// not one. A fault of ours (no socket, no address) makes it [`Verdict::Unknown`], never
/// "closed".
pub async fn assess(cx: &Ctx) -> Option<Finding> {
    if let Some(f) = cx.faulted() {
        return Some(Finding::new(Verdict::Unknown, f));
    }
    let found = match cx.job.probe.as_str() {
        "openrelay" => openrelay::assess(cx).await,
        "openresolver" => openresolver::assess(cx).await,
        "openproxy" => openproxy::assess(cx).await,
        "opensocks" => opensocks::assess(cx).await,
        _ => return None,
    };
    Some(settle(cx, found))
}

/// A finding corrected for our own faults: short of open (which the target proved), a
/// verdict reached after our own error says nothing about the target.
pub(crate) fn settle(cx: &Ctx, f: Finding) -> Finding {
    match cx.faulted() {
        Some(fault) if !f.verdict.is_open() => Finding {
            verdict: Verdict::Unknown,
            why: fault.to_string(),
            ..f
        },
        _ => f,
    }
}

/// What was said, in order: `C: ...` for us, `S: ...` for the server; each line clipped and
/// its control characters escaped, since a server's bytes are quoted in every report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Transcript {
    pub(crate) source: Option<String>,
    pub(crate) lines: Vec<String>,
}

impl Transcript {
    pub(crate) fn client(&mut self, s: &str) {
        self.lines
            .push(format!("C: {}", escape_controls(&net::clip(s))));
    }

    pub(crate) fn server(&mut self, s: &str) {
        self.lines
            .push(format!("S: {}", escape_controls(&net::clip(s))));
    }

    /// `f` with this transcript as its evidence.
    pub(crate) fn attach(self, f: Finding) -> Finding {
        Finding {
            source: self.source,
            transcript: self.lines,
            ..f
        }
    }
}

/// The local address the kernel picks to reach `server` (a connected UDP socket sends
/// nothing). No socket at all is our fault; no route is left to the connection to report.
pub(crate) async fn source_for(cx: &Ctx, server: SocketAddr) -> Option<String> {
    let any: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = match tokio::net::UdpSocket::bind(any).await {
        Ok(s) => s,
        Err(e) => {
            cx.fault(format!("cannot open a socket: {}", net::io_reason(&e)));
            return None;
        }
    };
    sock.connect(server).await.ok()?;
    sock.local_addr().ok().map(|a| a.ip().to_string())
}

/// The address under test; none (a bad job) is our fault.
pub(crate) fn target(cx: &Ctx) -> Result<SocketAddr, String> {
    net::sockaddr(cx).inspect_err(|e| cx.fault(e.clone()))
}

/// The verdict when the dialogue broke off with `error`: silence is no answer, anything
/// else (refused, closed, garbage) is not an open service.
pub(crate) fn broken(error: &str) -> Finding {
    if error.starts_with("timed out") {
        Finding::new(Verdict::NoAnswer, error)
    } else {
        Finding::new(Verdict::Closed, error)
    }
}

/// Where the canary lives: the URL the operator's own HTTP server answers with the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Canary {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path prefix, ending in `/`.
    pub(crate) path: String,
}

/// Placeholder canary host: `.invalid` never resolves, so an unconfigured check finds
/// nothing open. Operators set `with canary 'http://IP:PORT/'` to an HTTP server of their own.
const DEFAULT_CANARY_HOST: &str = "canary.custodian.invalid";

/// Placeholder token; operators set `with token` to what their canary page contains.
pub(crate) const DEFAULT_TOKEN: &str = "custodian-canary-token";

/// Longest canary host name: SOCKS5 carries its length in one byte.
const MAX_CANARY_HOST: usize = 255;

/// How to write a canary, for every refusal.
const CANARY_HINT: &str = "the canary is a plain HTTP server of yours whose pages contain the \
                           token: write it as 'http://IP:PORT/'";

impl Canary {
    /// The canary from `with canary`, or the placeholder.
    pub(crate) fn of(cx: &Ctx) -> Canary {
        cx.params
            .parsed::<Canary>("canary")
            .cloned()
            .unwrap_or_else(|| Canary {
                host: DEFAULT_CANARY_HOST.into(),
                port: 80,
                path: "/".into(),
            })
    }

    /// Parses a canary URL: `http://`, a host, nothing we would drop (credentials, query,
    /// fragment). The planner and `custodian scan` refuse anything else before running.
    pub(crate) fn parse(text: &str) -> Result<Canary, Invalid> {
        let bad = |why: String| Invalid::new(why).hint(CANARY_HINT);
        let url = url::Url::parse(text.trim())
            .map_err(|e| bad(format!("`{text}` is not a canary URL: {e}")))?;
        if url.scheme() != "http" {
            return Err(bad(format!(
                "the canary `{text}` must be an http:// URL, not {}://",
                url.scheme()
            )));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(bad(format!("the canary `{text}` has no host"))),
        };
        if host.is_empty() || host.len() > MAX_CANARY_HOST {
            return Err(bad(format!("the canary `{text}` has no usable host")));
        }
        if !url.username().is_empty() || url.query().is_some() || url.fragment().is_some() {
            return Err(bad(format!(
                "the canary `{text}` has credentials, a query or a fragment, which the check \
                 would drop (it asks for a fresh path under the canary's)"
            )));
        }
        let mut path = url.path().to_string();
        if !path.ends_with('/') {
            path.push('/');
        }
        let port = url.port().unwrap_or(80);
        Ok(Canary { host, port, path })
    }

    /// `host:port` as written in a CONNECT line or a Host header.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A request for `path` (our nonce appended to the canary's path), closing afterwards.
    pub(crate) fn request(&self, target: &str) -> String {
        format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: custodian\r\n\
             Connection: close\r\n\r\n",
            self.authority()
        )
    }
}

/// The [`Kind::Parse`](custodian_core::Kind::Parse) of `with canary`.
pub(crate) fn parse_canary(text: &str) -> Result<Value, Invalid> {
    Canary::parse(text).map(Value::parsed)
}

/// The canary's token: the text its page must contain.
pub(crate) fn token(cx: &Ctx) -> &str {
    cx.params.text("token").unwrap_or(DEFAULT_TOKEN)
}

/// A fresh random path component, so no cache can answer for the canary.
pub(crate) fn nonce() -> String {
    format!("custodian-{:016x}", rand::random::<u64>())
}

/// An HTTP answer as far as we read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpAnswer {
    /// The status code, when the first line was an HTTP status line.
    pub(crate) status: Option<u16>,
    /// The first line, for the transcript.
    pub(crate) first: String,
    /// Whether the token appeared anywhere in what we read.
    pub(crate) has_token: bool,
}

/// Parses what a server sent back to an HTTP request.
pub(crate) fn parse_answer(bytes: &[u8], token: &str) -> HttpAnswer {
    let text = String::from_utf8_lossy(bytes);
    let first = text.lines().next().unwrap_or("").to_string();
    let mut words = first.split(' ');
    let status = match (words.next(), words.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse().ok(),
        _ => None,
    };
    HttpAnswer {
        status,
        first,
        has_token: !token.is_empty() && text.contains(token),
    }
}

/// Sends `request` and reads the answer until the server closes, the token appears, the
/// buffer is full or the deadline passes; what was read by then is the answer.
pub(crate) async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    cx: &Ctx,
    s: &mut S,
    request: &str,
    token: &str,
) -> Result<HttpAnswer, String> {
    send(cx, s, request.as_bytes()).await?;
    let bytes = read_until(cx, s, |b| contains(b, token.as_bytes())).await;
    answer(cx, &bytes, token)
}

/// Sends a request head (CONNECT) and reads the answer's head only.
pub(crate) async fn http_head<S: AsyncRead + AsyncWrite + Unpin>(
    cx: &Ctx,
    s: &mut S,
    head: &str,
) -> Result<HttpAnswer, String> {
    send(cx, s, head.as_bytes()).await?;
    let bytes = read_until(cx, s, |b| contains(b, b"\r\n\r\n")).await;
    answer(cx, &bytes, "")
}

/// Writes `bytes` before the deadline.
pub(crate) async fn send<S: AsyncWrite + Unpin>(
    cx: &Ctx,
    s: &mut S,
    bytes: &[u8],
) -> Result<(), String> {
    net::within(cx, "sending the request", async {
        s.write_all(bytes)
            .await
            .map_err(|e| format!("sending the request: {}", net::io_reason(&e)))
    })
    .await
}

/// What was read, or why nothing was: silence until the deadline or a closed connection.
fn answer(cx: &Ctx, bytes: &[u8], token: &str) -> Result<HttpAnswer, String> {
    if !bytes.is_empty() {
        Ok(parse_answer(bytes, token))
    } else if tokio::time::Instant::now() >= cx.deadline {
        Err("timed out waiting for the answer".into())
    } else {
        Err("connection closed without an answer".into())
    }
}

/// Reads until `done(bytes)`, EOF, an error, [`MAX_HTTP`] bytes or the deadline.
pub(crate) async fn read_until<S: AsyncRead + Unpin>(
    cx: &Ctx,
    s: &mut S,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < MAX_HTTP && !done(&buf) {
        match tokio::time::timeout_at(cx.deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    buf
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! An in-process canary and fake proxies for the abuse checks' tests.

    use crate::net::testutil::serve;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub(crate) const TOKEN: &str = "tok-5f2a";

    /// Reads a request head (up to the blank line); `None` when the client left first.
    pub(crate) async fn read_head(s: &mut TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let mut b = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).await.ok()? == 0 {
                return None;
            }
            buf.push(b[0]);
        }
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    /// The operator's canary: answers every request with a page holding [`TOKEN`].
    pub(crate) async fn canary() -> SocketAddr {
        serve(|mut s| async move {
            if read_head(&mut s).await.is_some() {
                let page = format!("HTTP/1.0 200 OK\r\n\r\ncanary {TOKEN}\n");
                let _ = s.write_all(page.as_bytes()).await;
            }
        })
        .await
    }

    /// A server answering every request head with `answer`.
    pub(crate) async fn http_fake(answer: &'static [u8]) -> SocketAddr {
        serve(move |mut s| async move {
            if read_head(&mut s).await.is_some() {
                let _ = s.write_all(answer).await;
            }
        })
        .await
    }

    /// An open HTTP proxy: absolute-form GETs (when `get`) and CONNECT (when `connect`) are
    /// carried to the address they name; anything else gets 405.
    pub(crate) async fn proxy(get: bool, connect: bool) -> SocketAddr {
        serve(move |mut s| async move {
            let Some(head) = read_head(&mut s).await else {
                return;
            };
            let target = head.split(' ').nth(1).unwrap_or("").to_string();
            if connect && head.starts_with("CONNECT ") {
                let _ = s
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                tunnel(s, &target).await;
            } else if get && head.starts_with("GET http://") {
                let host = target
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or("");
                let mut up = TcpStream::connect(host).await.expect("canary");
                let _ = up.write_all(head.as_bytes()).await;
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            } else {
                let _ = s
                    .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                    .await;
            }
        })
        .await
    }

    /// Joins `s` to `target` (`host:port`) both ways.
    pub(crate) async fn tunnel(mut s: TcpStream, target: &str) {
        if let Ok(mut up) = TcpStream::connect(target).await {
            let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_core::Outcome;

    #[test]
    fn canary_urls_parse_or_are_refused() {
        let c = Canary::parse("http://127.0.0.1:8099/x").expect("parses");
        assert_eq!(c.authority(), "127.0.0.1:8099");
        assert_eq!(c.path, "/x/");
        let c = Canary::parse("http://[::1]/").expect("v6");
        assert_eq!((c.authority().as_str(), c.port), ("[::1]:80", 80));
        let e = Canary::parse("ftp://x/").expect_err("ftp");
        assert_eq!(
            e.msg,
            "the canary `ftp://x/` must be an http:// URL, not ftp://"
        );
        assert_eq!(e.hint.as_deref(), Some(CANARY_HINT));
        assert!(Canary::parse("https://a/").is_err());
        assert!(Canary::parse("not a url").is_err());
        assert!(Canary::parse("http://a/?q=1").is_err());
        assert!(Canary::parse("http://u:p@a/").is_err());
        let long = format!("http://{}/", "a.".repeat(130));
        assert!(Canary::parse(&long).is_err());
    }

    #[test]
    fn answers_parse_status_and_token() {
        let a = parse_answer(b"HTTP/1.0 200 OK\r\n\r\nhello tok", "tok");
        assert_eq!(a.status, Some(200));
        assert!(a.has_token);
        let a = parse_answer(b"SSH-2.0-x\r\n", "tok");
        assert_eq!(a.status, None);
        assert!(!a.has_token);
    }

    #[test]
    fn transcripts_become_evidence() {
        let mut t = Transcript {
            source: Some("127.0.0.1".into()),
            ..Default::default()
        };
        t.client("HELLO");
        t.server("HI");
        t.server("220 \u{1b}]0;pwned\u{7}\u{1b}[2J hi\r");
        let f = t.attach(Finding::new(Verdict::Open, "it said hi"));
        assert_eq!(f.source.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            f.transcript,
            [
                "C: HELLO",
                "S: HI",
                "S: 220 \\u{1b}]0;pwned\\u{7}\\u{1b}[2J hi\\r"
            ]
        );
    }

    #[tokio::test]
    async fn a_fault_of_ours_is_unknown_and_never_closed() {
        let job = custodian_core::Job::new("openproxy", "127.0.0.1", Some(8080));
        // No address: the job cannot be checked, which is our problem, not the target's.
        let cx = crate::net::testutil::cx(job, 1.0).at(None);
        let f = assess(&cx).await.expect("an abuse check");
        assert_eq!(f.verdict, Verdict::Unknown, "{f:?}");
        assert!(f.why.contains("no address"), "{f:?}");
        let probe = crate::find("openproxy").expect("registered");
        let out = (probe.check)(&cx).await;
        assert!(
            matches!(&out, Outcome::Unknown { error } if error.contains("no address")),
            "{out:?}"
        );
        let other = custodian_core::Job::new("ssh", "127.0.0.1", Some(22));
        assert_eq!(assess(&crate::net::testutil::cx(other, 1.0)).await, None);
    }
}
