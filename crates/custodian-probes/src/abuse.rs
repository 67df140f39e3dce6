//! Shared parts of the abuse checks (openrelay, openresolver, openproxy, opensocks): the
//! verdict scale, the evidence transcript, the canary URL and the bounded HTTP exchange that
//! looks for the canary's token.
//!
//! These checks are written for `must not run`: "up" means the target is open to abuse.

use crate::{net, Ctx};
use custodian_core::Outcome;
use std::fmt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Most bytes of an HTTP answer we read while looking for the token.
const MAX_HTTP: usize = 16 * 1024;

/// Most transcript entries quoted in a verdict.
const MAX_SHOWN: usize = 24;

/// What an abuse check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Open,
    ProbablyOpen,
    Closed,
    NoAnswer,
    Inconclusive,
}

impl Verdict {
    /// The word used in reports and in `custodian scan --json`.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Verdict::Open => "open",
            Verdict::ProbablyOpen => "probably-open",
            Verdict::Closed => "closed",
            Verdict::NoAnswer => "no-answer",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A verdict and why, in a few words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) verdict: Verdict,
    pub(crate) why: String,
}

impl Finding {
    pub(crate) fn new(verdict: Verdict, why: impl Into<String>) -> Self {
        Finding {
            verdict,
            why: why.into(),
        }
    }
}

/// What was said, in order: `C: ...` for us, `S: ...` for the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Transcript {
    pub(crate) source: Option<String>,
    pub(crate) lines: Vec<String>,
}

impl Transcript {
    pub(crate) fn client(&mut self, s: &str) {
        self.lines.push(format!("C: {}", net::clip(s)));
    }

    pub(crate) fn server(&mut self, s: &str) {
        self.lines.push(format!("S: {}", net::clip(s)));
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(src) = &self.source {
            write!(f, "from {src}: ")?;
        }
        let skip = self.lines.len().saturating_sub(MAX_SHOWN);
        if skip > 0 {
            write!(f, "[{skip} earlier lines] ")?;
        }
        let shown: Vec<&str> = self.lines[skip..].iter().map(String::as_str).collect();
        write!(f, "{}", shown.join(" | "))
    }
}

/// The probe's outcome: open and probably open are "up" (so `must not run` fails on them);
/// every text starts with the verdict word and carries the transcript.
pub(crate) fn outcome(f: &Finding, t: &Transcript) -> Outcome {
    let text = format!("{}: {} [{t}]", f.verdict.word(), f.why);
    match f.verdict {
        Verdict::Open | Verdict::ProbablyOpen => Outcome::Up { detail: Some(text) },
        _ => Outcome::down(text),
    }
}

/// The local address the kernel picks to reach `server` (a connected UDP socket sends nothing).
pub(crate) async fn source_for(server: std::net::SocketAddr) -> Option<String> {
    let any: std::net::SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(any).await.ok()?;
    sock.connect(server).await.ok()?;
    sock.local_addr().ok().map(|a| a.ip().to_string())
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

/// Placeholder canary: `.invalid` never resolves, so an unconfigured check finds nothing open.
/// Operators set `with canary 'http://IP:PORT/'` to an HTTP server of their own.
pub(crate) const DEFAULT_CANARY: &str = "http://canary.custodian.invalid/";

/// Placeholder token; operators set `with token` to what their canary page contains.
pub(crate) const DEFAULT_TOKEN: &str = "custodian-canary-token";

impl Canary {
    /// The canary from `with canary`, or the placeholder.
    pub(crate) fn from_ctx(cx: &Ctx) -> Result<Canary, String> {
        Canary::parse(cx.job.opt_str("canary").unwrap_or(DEFAULT_CANARY))
    }

    pub(crate) fn parse(text: &str) -> Result<Canary, String> {
        let url = url::Url::parse(text).map_err(|e| format!("bad canary URL {text:?}: {e}"))?;
        if url.scheme() != "http" {
            return Err(format!("canary URL {text:?} must be http://"));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(format!("canary URL {text:?} has no host")),
        };
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

/// The canary's token: the text its page must contain.
pub(crate) fn token(cx: &Ctx) -> &str {
    cx.job.opt_str("token").unwrap_or(DEFAULT_TOKEN)
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

    #[test]
    fn canary_urls_parse() {
        let c = Canary::parse("http://127.0.0.1:8099/x").expect("parses");
        assert_eq!(c.authority(), "127.0.0.1:8099");
        assert_eq!(c.path, "/x/");
        assert!(Canary::parse("https://a/").is_err());
        assert_eq!(Canary::parse(DEFAULT_CANARY).expect("default").port, 80);
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
    fn outcomes_carry_verdict_and_transcript() {
        let mut t = Transcript {
            source: Some("127.0.0.1".into()),
            ..Default::default()
        };
        t.client("HELLO");
        t.server("HI");
        let o = outcome(&Finding::new(Verdict::Open, "it said hi"), &t);
        assert_eq!(
            o,
            Outcome::Up {
                detail: Some("open: it said hi [from 127.0.0.1: C: HELLO | S: HI]".into())
            }
        );
        let o = outcome(&Finding::new(Verdict::NoAnswer, "silence"), &t);
        assert!(!o.is_up());
    }
}
