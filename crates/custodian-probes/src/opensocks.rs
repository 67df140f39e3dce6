//! `opensocks`: whether a SOCKS server connects anyone anywhere. Meant for `must not run`:
//! "up" means the SOCKS server is open.
//!
//! Syntax: `HOST must not run opensocks [on PORT] [with canary 'http://IP:PORT/'] [with token
//! 'TEXT'].` Default port 1080. The canary and token are as for `openproxy` (placeholders to
//! be configured). We ask SOCKS5 with only the "no authentication" method and CONNECT to the
//! canary; on a second connection SOCKS4 CONNECT (SOCKS4a when the canary is a name; skipped
//! for an IPv6 canary); through each granted tunnel we GET a fresh nonce path. Only the token
//! coming back proves it open: a server that grants and then shows its own page is not.
//! Verdicts: open (token through a tunnel); closed: authentication required, CONNECT
//! rejected, tunnel without the token, not SOCKS, refused; no-answer: timed out.
//! Example: `gw1 must not run opensocks with canary 'http://192.0.2.9:8099/' with token 'k3y'.`

use crate::abuse::{self, Canary, HttpAnswer, Transcript};
use crate::openproxy::{CANARY_FLAGS, CANARY_PARAM, TOKEN_PARAM};
use crate::{net, Ctx};
use custodian_core::{Finding, Outcome, ProbeSpec, ScanSpec, TargetKind, Verdict};
use std::net::IpAddr;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "opensocks",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(1080),
    port_required: false,
    takes_port: true,
    params: &[CANARY_PARAM, TOKEN_PARAM],
    summary: "the SOCKS server tunnels outsiders to the canary (for `must not run`)",
    example: "127.0.0.1 must not run opensocks with canary 'http://192.0.2.9:8099/' with token \
              'k3y' otherwise 'open socks'.",
    check: None,
    scan: Some(ScanSpec {
        ports: &[1080],
        conns: 2,
        flags: CANARY_FLAGS,
    }),
};

/// One SOCKS conversation: the server's handshake bytes and what the tunnel brought back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub(crate) version: u8,
    pub(crate) handshake: Vec<u8>,
    pub(crate) tunnel: Option<Result<HttpAnswer, String>>,
    pub(crate) error: Option<String>,
}

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    abuse::settle(cx, assess(cx).await).outcome()
}

/// The verdict with its evidence.
pub(crate) async fn assess(cx: &Ctx) -> Finding {
    let mut t = Transcript::default();
    let f = match run(cx, &mut t).await {
        Ok(attempts) => judge(&attempts),
        Err(e) => abuse::broken(&e),
    };
    t.attach(f)
}

async fn run(cx: &Ctx, t: &mut Transcript) -> Result<Vec<Attempt>, String> {
    let canary = Canary::of(cx);
    t.source = abuse::source_for(cx, abuse::target(cx)?).await;
    let mut first = cx.clone();
    first.deadline = Instant::now() + cx.deadline.saturating_duration_since(Instant::now()) / 2;
    let mut attempts = vec![attempt5(&first, &canary, t).await];
    let opened = attempts[0]
        .tunnel
        .as_ref()
        .is_some_and(|a| a.as_ref().is_ok_and(|a| a.has_token));
    if !opened {
        if let Some(req) = request4(&canary) {
            attempts.push(attempt4(cx, &canary, &req, t).await);
        }
    }
    Ok(attempts)
}

async fn attempt5(cx: &Ctx, canary: &Canary, t: &mut Transcript) -> Attempt {
    let mut a = Attempt {
        version: 5,
        ..Default::default()
    };
    let r = socks5(cx, canary, &mut a, t).await;
    a.error = r.err();
    a
}

async fn attempt4(cx: &Ctx, canary: &Canary, req: &[u8], t: &mut Transcript) -> Attempt {
    let mut a = Attempt {
        version: 4,
        ..Default::default()
    };
    let r = socks4(cx, canary, req, &mut a, t).await;
    a.error = r.err();
    a
}

async fn socks5(
    cx: &Ctx,
    canary: &Canary,
    a: &mut Attempt,
    t: &mut Transcript,
) -> Result<(), String> {
    let mut s = net::connect(cx).await?;
    t.client("SOCKS5 hello, methods [no-auth]");
    abuse::send(cx, &mut s, &[5, 1, 0]).await?;
    let m = read_n(cx, &mut s, 2, a, t).await?;
    if m != [5, 0] {
        return Ok(());
    }
    t.client(&format!("SOCKS5 CONNECT {}", canary.authority()));
    abuse::send(cx, &mut s, &request5(canary)?).await?;
    let head = read_n(cx, &mut s, 4, a, t).await?;
    if head[..2] != [5, 0] {
        return Ok(());
    }
    let rest = match head[3] {
        1 => 6,
        4 => 18,
        3 => usize::from(read_n(cx, &mut s, 1, a, t).await?[0]) + 2,
        _ => return Err("malformed SOCKS5 reply".into()),
    };
    read_n(cx, &mut s, rest, a, t).await?;
    through(cx, canary, &mut s, a, t).await;
    Ok(())
}

async fn socks4(
    cx: &Ctx,
    canary: &Canary,
    req: &[u8],
    a: &mut Attempt,
    t: &mut Transcript,
) -> Result<(), String> {
    let mut s = net::connect(cx).await?;
    t.client(&format!("SOCKS4 CONNECT {}", canary.authority()));
    abuse::send(cx, &mut s, req).await?;
    let r = read_n(cx, &mut s, 8, a, t).await?;
    if r[..2] == [0, 0x5A] {
        through(cx, canary, &mut s, a, t).await;
    }
    Ok(())
}

/// A GET for a fresh nonce through the granted tunnel.
async fn through(
    cx: &Ctx,
    canary: &Canary,
    s: &mut TcpStream,
    a: &mut Attempt,
    t: &mut Transcript,
) {
    let path = format!("{}{}", canary.path, abuse::nonce());
    t.client(&format!("GET {path} (tunnelled)"));
    let answer = abuse::http_exchange(cx, s, &canary.request(&path), abuse::token(cx)).await;
    match &answer {
        Ok(h) if h.has_token => t.server(&format!("{} (canary token)", h.first)),
        Ok(h) => t.server(&h.first),
        Err(e) => t.server(&format!("({e})")),
    }
    a.tunnel = Some(answer);
}

/// Reads exactly `n` bytes of handshake, noting them in hex.
async fn read_n(
    cx: &Ctx,
    s: &mut TcpStream,
    n: usize,
    a: &mut Attempt,
    t: &mut Transcript,
) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    net::within(cx, "waiting for the SOCKS reply", async {
        s.read_exact(&mut buf)
            .await
            .map(|_| ())
            .map_err(|e| format!("{} while waiting for the SOCKS reply", net::io_reason(&e)))
    })
    .await?;
    let hex: Vec<String> = buf.iter().map(|b| format!("{b:02x}")).collect();
    t.server(&hex.join(" "));
    a.handshake.extend_from_slice(&buf);
    Ok(buf)
}

/// The SOCKS5 CONNECT request for the canary.
fn request5(c: &Canary) -> Result<Vec<u8>, String> {
    let mut r = vec![5, 1, 0];
    match c.host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => r.extend([1].into_iter().chain(ip.octets())),
        Ok(IpAddr::V6(ip)) => r.extend([4].into_iter().chain(ip.octets())),
        Err(_) => {
            let len = u8::try_from(c.host.len()).map_err(|_| "canary host name too long")?;
            r.extend([3, len].into_iter().chain(c.host.bytes()));
        }
    }
    r.extend(c.port.to_be_bytes());
    Ok(r)
}

/// The SOCKS4 (or 4a, for a name) CONNECT request; none for an IPv6 canary.
fn request4(c: &Canary) -> Option<Vec<u8>> {
    let mut r = vec![4, 1];
    r.extend(c.port.to_be_bytes());
    match c.host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => r.extend(ip.octets().into_iter().chain(*b"custodian\0")),
        Ok(IpAddr::V6(_)) => return None,
        Err(_) => r.extend(
            [0, 0, 0, 1]
                .into_iter()
                .chain(*b"custodian\0")
                .chain(c.host.bytes())
                .chain([0]),
        ),
    }
    Some(r)
}

/// The verdict over all attempts: the most open one wins, every one is named.
pub(crate) fn judge(attempts: &[Attempt]) -> Finding {
    let found: Vec<Finding> = attempts.iter().map(judge_one).collect();
    let rank = |v: Verdict| match v {
        Verdict::Open => 4,
        Verdict::ProbablyOpen => 3,
        Verdict::Inconclusive | Verdict::Unknown => 2,
        Verdict::Closed => 1,
        Verdict::NoAnswer => 0,
    };
    let verdict = found.iter().map(|f| f.verdict).max_by_key(|v| rank(*v));
    let why: Vec<&str> = found.iter().map(|f| f.why.as_str()).collect();
    Finding::new(verdict.unwrap_or(Verdict::NoAnswer), why.join("; "))
}

/// The verdict on one attempt.
fn judge_one(a: &Attempt) -> Finding {
    let v = a.version;
    match &a.tunnel {
        Some(Ok(h)) if h.has_token => {
            return Finding::new(Verdict::Open, format!("SOCKS{v} tunnel reached the canary"))
        }
        Some(_) => {
            return Finding::new(
                Verdict::Closed,
                format!(
                    "SOCKS{v} granted CONNECT but the tunnel did not return the canary's token"
                ),
            )
        }
        None => {}
    }
    let h = &a.handshake;
    let closed = |why: String| Finding::new(Verdict::Closed, format!("SOCKS{v}: {why}"));
    match (v, h.as_slice()) {
        (_, []) => {
            let e = a.error.as_deref().unwrap_or("no reply");
            Finding::new(abuse::broken(e).verdict, format!("SOCKS{v}: {e}"))
        }
        (5, [5, 0xFF, ..]) => closed("requires authentication".into()),
        (5, [5, 0, 5, rep, ..]) => closed(format!("CONNECT rejected (reply {rep})")),
        (5, [5, m, ..]) if *m != 0 => closed(format!("asks for method {m}")),
        (4, [0, code, ..]) if *code != 0x5A => closed(format!("CONNECT rejected (0x{code:02x})")),
        _ => closed(format!(
            "not a SOCKS{v} reply ({})",
            a.error.as_deref().unwrap_or("unexpected bytes")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abuse::testutil::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use tokio::io::AsyncWriteExt;

    #[derive(Clone, Copy)]
    enum Mode {
        Open,
        Auth,
        Liar,
    }

    /// A SOCKS4/5 server: `Open` tunnels, `Auth` wants a password (and rejects SOCKS4),
    /// `Liar` grants everything and then answers with its own page.
    async fn socks(mode: Mode) -> SocketAddr {
        serve(move |mut s| async move {
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).await.is_err() {
                return;
            }
            let target = match b[0] {
                5 => socks5_server(&mut s, mode).await,
                _ => socks4_server(&mut s, mode).await,
            };
            match (mode, target) {
                (Mode::Liar, Some(_)) => {
                    let _ = read_head(&mut s).await;
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nwelcome").await;
                }
                (_, Some(t)) => tunnel(s, &t).await,
                _ => {}
            }
        })
        .await
    }

    async fn socks5_server(s: &mut TcpStream, mode: Mode) -> Option<String> {
        let mut m = [0u8; 2];
        s.read_exact(&mut m).await.ok()?;
        if matches!(mode, Mode::Auth) {
            let _ = s.write_all(&[5, 0xFF]).await;
            return None;
        }
        s.write_all(&[5, 0]).await.ok()?;
        let mut req = [0u8; 10];
        s.read_exact(&mut req).await.ok()?;
        let ip = std::net::Ipv4Addr::new(req[4], req[5], req[6], req[7]);
        let port = u16::from_be_bytes([req[8], req[9]]);
        s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await.ok()?;
        Some(format!("{ip}:{port}"))
    }

    async fn socks4_server(s: &mut TcpStream, mode: Mode) -> Option<String> {
        let mut req = [0u8; 17];
        s.read_exact(&mut req).await.ok()?;
        if matches!(mode, Mode::Auth) {
            let _ = s.write_all(&[0, 0x5B, 0, 0, 0, 0, 0, 0]).await;
            return None;
        }
        s.write_all(&[0, 0x5A, 0, 0, 0, 0, 0, 0]).await.ok()?;
        let port = u16::from_be_bytes([req[1], req[2]]);
        Some(format!(
            "{}.{}.{}.{}:{port}",
            req[3], req[4], req[5], req[6]
        ))
    }

    async fn probe(server: SocketAddr, secs: f64) -> Outcome {
        let c = canary().await;
        let mut j = Job::new("opensocks", "127.0.0.1", Some(server.port()));
        j.options
            .insert("canary".into(), format!("http://{c}/").into());
        j.options.insert("token".into(), TOKEN.into());
        check(&cx(j, secs)).await
    }

    fn text(o: &Outcome) -> String {
        format!("{o:?}")
    }

    #[test]
    fn requests_encode_addresses_and_names() {
        let c = Canary::parse("http://127.0.0.1:8099/").expect("canary");
        assert_eq!(request5(&c), Ok(vec![5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0xa3]));
        let r4 = request4(&c).expect("v4");
        assert_eq!(&r4[..8], &[4, 1, 0x1f, 0xa3, 127, 0, 0, 1]);
        let n = Canary::parse("http://canary.test/").expect("canary");
        assert_eq!(&request5(&n).expect("name")[3..5], &[3, 11]);
        assert!(request4(&n).expect("4a").ends_with(b"canary.test\0"));
        assert!(request4(&Canary::parse("http://[::1]:80/").expect("v6")).is_none());
    }

    #[test]
    fn judge_reads_handshakes() {
        let a = |v, h: &[u8]| Attempt {
            version: v,
            handshake: h.to_vec(),
            ..Default::default()
        };
        assert_eq!(
            judge(&[a(5, &[5, 0xFF])]).why,
            "SOCKS5: requires authentication"
        );
        assert_eq!(
            judge(&[a(5, &[5, 0, 5, 2, 0, 1])]).why,
            "SOCKS5: CONNECT rejected (reply 2)"
        );
        assert_eq!(
            judge(&[a(4, &[0, 0x5B, 0, 0])]).why,
            "SOCKS4: CONNECT rejected (0x5b)"
        );
        assert_eq!(judge(&[a(5, b"HT")]).verdict, Verdict::Closed);
        let mut e = a(5, &[]);
        e.error = Some("timed out waiting for the SOCKS reply".into());
        assert_eq!(
            judge(&[e.clone(), a(4, &[0, 0x5B])]).verdict,
            Verdict::Closed
        );
        assert_eq!(judge(&[e]).verdict, Verdict::NoAnswer);
    }

    #[tokio::test]
    async fn open_socks_is_open() {
        let o = probe(socks(Mode::Open).await, 3.0).await;
        assert!(
            o.is_up() && text(&o).contains("SOCKS5 tunnel reached the canary"),
            "{o:?}"
        );
        assert!(text(&o).contains("from 127.0.0.1"), "{o:?}");
    }

    #[tokio::test]
    async fn auth_and_liars_are_closed() {
        let o = probe(socks(Mode::Auth).await, 3.0).await;
        assert!(
            !o.is_up() && text(&o).contains("requires authentication"),
            "{o:?}"
        );
        assert!(text(&o).contains("SOCKS4: CONNECT rejected"), "{o:?}");
        let o = probe(socks(Mode::Liar).await, 3.0).await;
        assert!(
            !o.is_up() && text(&o).contains("did not return the canary's token"),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn hung_garbage_and_refused_are_not_open() {
        let o = probe(silent().await, 0.6).await;
        assert!(text(&o).contains("no-answer: SOCKS5: timed out"), "{o:?}");
        let o = probe(says(b"HTTP/1.0 400 Bad Request\r\n\r\n").await, 2.0).await;
        assert!(
            !o.is_up() && text(&o).contains("not a SOCKS5 reply"),
            "{o:?}"
        );
        let o = probe(refused().await, 2.0).await;
        assert!(!o.is_up() && text(&o).contains("closed"), "{o:?}");
    }

    /// Random and mutated handshakes without a tunnel: never a panic, and never open, since only
    /// the canary's token through a tunnel shows a SOCKS server open.
    #[test]
    fn fuzzed_handshakes_never_panic_nor_open() {
        let seeds: [&[u8]; 4] = [
            b"\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01\x1f\x90",
            b"\x05\xff",
            b"\x00\x5a\x00\x00\x00\x00\x00\x00",
            b"\x00\x5b\x00\x00\x00\x00\x00\x00",
        ];
        custodian_testpeers::fuzz::inputs(0x1080, &seeds, |h| {
            let a = Attempt {
                version: if h.first() == Some(&0) { 4 } else { 5 },
                handshake: h.to_vec(),
                tunnel: None,
                error: None,
            };
            let f = judge(&[a]);
            assert_ne!(f.verdict, Verdict::Open);
            assert!(f.why.starts_with("SOCKS") && f.why.len() < 200, "{}", f.why);
        });
    }
}
