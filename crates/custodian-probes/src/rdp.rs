//! `rdp`: the server answers an X.224 Connection Request with a Connection Confirm
//! ([MS-RDPBCGR] 2.2.1.1–2.2.1.2, ISO 8073 over TPKT, RFC 1006).
//!
//! Syntax: `HOST must run rdp [on PORT].` Default port 3389. We send one TPKT holding a
//! Connection Request with an RDP negotiation request for TLS or CredSSP, read one TPKT back
//! and require an X.224 Connection Confirm (code 0xD0). A negotiation failure inside the
//! confirm still passes (the server is speaking RDP); the detail names the selected protocol
//! or the failure code. We then close without going on to TLS.
//! Down reasons: connection refused / timed out connecting; `reply is not a TPKT (…)`;
//! `TPKT length N …` (too short, or longer than 1024 bytes); `X.224 reply is not a connection
//! confirm (code 0x..)`; timed out or connection closed while waiting for the confirm.
//! Example: `desktop1 must run rdp otherwise 'remote desktop down'.`

use crate::{net, Ctx};
use custodian_core::{Outcome, ProbeSpec, TargetKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "rdp",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(3389),
    port_required: false,
    takes_port: true,
    params: &[],
    summary: "the server answers an X.224 connection request with a connection confirm",
    example: "127.0.0.1 must run rdp on 3389 otherwise 'remote desktop down'.",
    check: None,
    scan: None,
};

/// Longest reply TPKT we accept; a real confirm is 19 bytes.
pub(crate) const MAX_TPKT: usize = 1024;

/// Protocols we ask for: TLS (1) and CredSSP (2), which every current server offers.
const REQUESTED_PROTOCOLS: u32 = 0x1 | 0x2;

/// X.224 TPDU codes (upper nibble of the second header byte).
const CONNECTION_REQUEST: u8 = 0xE0;
const CONNECTION_CONFIRM: u8 = 0xD0;

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let mut s = net::connect(cx).await?;
    net::within(cx, "sending the connection request", async {
        s.write_all(&connection_request())
            .await
            .map_err(|e| format!("sending the connection request: {}", net::io_reason(&e)))
    })
    .await?;
    let what = "waiting for the connection confirm";
    let tpdu = net::within(cx, what, read_tpkt(&mut s, what)).await?;
    judge_confirm(&tpdu)
}

/// A TPKT holding an X.224 Connection Request with an RDP Negotiation Request.
pub(crate) fn connection_request() -> Vec<u8> {
    let mut neg = vec![0x01, 0x00, 0x08, 0x00];
    neg.extend_from_slice(&REQUESTED_PROTOCOLS.to_le_bytes());
    // Length indicator: the header after itself (code, dst-ref, src-ref, class) plus variable part.
    let li = 6 + neg.len();
    let total = 4 + 1 + li;
    let mut out = vec![0x03, 0x00];
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&[li as u8, CONNECTION_REQUEST, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&neg);
    out
}

/// Reads one TPKT and returns its payload (the X.224 TPDU).
pub(crate) async fn read_tpkt<R: AsyncRead + Unpin>(r: &mut R, what: &str) -> Result<Vec<u8>, String> {
    let io = |e: std::io::Error| format!("{} while {what}", net::io_reason(&e));
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await.map_err(io)?;
    let mut tpdu = vec![0u8; tpkt_length(head)? - 4];
    r.read_exact(&mut tpdu).await.map_err(io)?;
    Ok(tpdu)
}

/// The total length a TPKT header announces, within what a confirm can need.
pub(crate) fn tpkt_length(head: [u8; 4]) -> Result<usize, String> {
    if head[0] != 0x03 || head[1] != 0x00 {
        return Err(format!(
            "reply is not a TPKT (starts {:02x} {:02x} {:02x} {:02x})",
            head[0], head[1], head[2], head[3]
        ));
    }
    match usize::from(u16::from_be_bytes([head[2], head[3]])) {
        n if n < 11 => Err(format!("TPKT length {n} is too short for an X.224 header")),
        n if n > MAX_TPKT => Err(format!("TPKT length {n} is longer than {MAX_TPKT} bytes")),
        n => Ok(n),
    }
}

/// Judges the X.224 TPDU of the reply; on a confirm, says what was negotiated.
pub(crate) fn judge_confirm(tpdu: &[u8]) -> Result<String, String> {
    let code = tpdu.get(1).copied().unwrap_or(0);
    if code & 0xF0 != CONNECTION_CONFIRM {
        return Err(format!(
            "X.224 reply is not a connection confirm (code 0x{code:02x})"
        ));
    }
    let negotiation = tpdu.get(7..).unwrap_or(&[]);
    let value = negotiation
        .get(4..8)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    Ok(match (negotiation.first(), value) {
        (Some(0x02), Some(p)) => format!("X.224 connection confirm, {} selected", protocol(p)),
        (Some(0x03), Some(f)) => format!("X.224 connection confirm, negotiation failure {f}"),
        _ => "X.224 connection confirm".to_string(),
    })
}

fn protocol(p: u32) -> String {
    match p {
        0 => "standard RDP security".into(),
        1 => "TLS".into(),
        2 => "CredSSP".into(),
        8 => "RDSTLS".into(),
        other => format!("protocol 0x{other:x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// A confirm as xrdp sends it: TLS selected.
    const XRDP_CONFIRM: &[u8] = b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\
                                  \x02\x1f\x08\x00\x01\x00\x00\x00";

    async fn run_against(a: SocketAddr, secs: f64) -> Outcome {
        check(&cx(Job::new("rdp", "127.0.0.1", Some(a.port())), secs)).await
    }

    /// A server that reads the 19-byte request, records it, and answers `reply`.
    async fn server(reply: &'static [u8]) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let a = serve(move |mut s| {
            let log = log.clone();
            async move {
                let mut req = [0u8; 19];
                if s.read_exact(&mut req).await.is_ok() {
                    log.lock().expect("lock").extend_from_slice(&req);
                    let _ = s.write_all(reply).await;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
        .await;
        (a, heard)
    }

    #[test]
    fn request_bytes() {
        let want = b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00";
        assert_eq!(connection_request(), want);
    }

    #[test]
    fn tpkt_headers() {
        assert_eq!(tpkt_length([3, 0, 0, 19]), Ok(19));
        assert_eq!(
            tpkt_length(*b"SSH-"),
            Err("reply is not a TPKT (starts 53 53 48 2d)".into())
        );
        assert_eq!(
            tpkt_length([3, 0, 0, 7]),
            Err("TPKT length 7 is too short for an X.224 header".into())
        );
        assert_eq!(
            tpkt_length([3, 0, 0xff, 0xff]),
            Err("TPKT length 65535 is longer than 1024 bytes".into())
        );
    }

    #[test]
    fn confirms_and_other_tpdus() {
        assert_eq!(
            judge_confirm(&XRDP_CONFIRM[4..]),
            Ok("X.224 connection confirm, TLS selected".into())
        );
        assert_eq!(
            judge_confirm(b"\x06\xd0\x00\x00\x12\x34\x00"),
            Ok("X.224 connection confirm".into())
        );
        let failure = b"\x0e\xd0\x00\x00\x12\x34\x00\x03\x00\x08\x00\x02\x00\x00\x00";
        assert_eq!(
            judge_confirm(failure),
            Ok("X.224 connection confirm, negotiation failure 2".into())
        );
        assert_eq!(
            judge_confirm(b"\x06\x80\x00\x00\x00\x00\x00"),
            Err("X.224 reply is not a connection confirm (code 0x80)".into())
        );
    }

    #[tokio::test]
    async fn confirm_passes_and_the_server_heard_a_request() {
        let (a, heard) = server(XRDP_CONFIRM).await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("X.224 connection confirm, TLS selected".into())
            }
        );
        assert_eq!(*heard.lock().expect("lock"), connection_request());
    }

    #[tokio::test]
    async fn wrong_replies_fail() {
        let (a, _) = server(b"\x03\x00\x00\x0b\x06\x80\x00\x00\x00\x00\x00").await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("X.224 reply is not a connection confirm (code 0x80)")
        );
        let a = says(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("reply is not a TPKT (starts 53 53 48 2d)")
        );
    }

    /// A hung server is a row of tests/hostile.rs; this one sends half a confirm and closes.
    #[tokio::test]
    async fn short_replies_fail() {
        let a = serve(|mut s| async move {
            let mut req = [0u8; 19];
            let _ = s.read_exact(&mut req).await;
            let _ = s.write_all(b"\x03\x00\x00\x13\x0e\xd0").await;
        })
        .await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("connection closed by peer while waiting for the connection confirm")
        );
    }

    #[tokio::test]
    async fn floods_and_garbage_are_bounded() {
        let t = Instant::now();
        let a = flood(b"\x03\x00\xff\xff").await;
        let out = run_against(a, 5.0).await;
        assert_eq!(
            out,
            Outcome::down("TPKT length 65535 is longer than 1024 bytes")
        );
        let a = flood(b"\x00\xff").await;
        let out = run_against(a, 5.0).await;
        assert_eq!(
            out,
            Outcome::down("reply is not a TPKT (starts 00 ff 00 ff)")
        );
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    /// Random and mutated replies, read as the probe reads them: never a panic, and a TPKT is
    /// only read within the announced, capped length.
    #[tokio::test]
    async fn fuzzed_replies_never_panic() {
        let failure =
            b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x03\x00\x08\x00\x02\x00\x00\x00";
        let mut confirms = 0;
        for input in custodian_testpeers::fuzz::collect(0x5d9, &[XRDP_CONFIRM, failure]) {
            if let Ok(tpdu) = read_tpkt(&mut input.as_slice(), "fuzzing").await {
                assert!(tpdu.len() + 4 <= MAX_TPKT && tpdu.len() + 4 <= input.len());
                if let Ok(said) = judge_confirm(&tpdu) {
                    confirms += 1;
                    assert!(said.len() < 100, "{said}");
                }
            }
        }
        assert!(confirms > 0);
    }
}
