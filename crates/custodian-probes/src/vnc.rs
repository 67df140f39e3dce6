//! `vnc`: the server opens with an RFB protocol version line, `RFB xxx.yyy` (RFC 6143 §7.1.1).
//!
//! Syntax: `HOST must run vnc [on PORT].` Default port 5900. Any version passes (003.003,
//! 003.007, 003.008, and vendor ones such as Apple's 003.889); the detail names it. We then
//! close without answering, which servers log as a client that went away before the handshake.
//! Down reasons: connection refused / timed out connecting; `greeting is not an RFB version
//! line: "…"`; timed out or connection closed while waiting; binary garbage; line longer than
//! 8192 bytes.
//! Example: `desk1 must run vnc on 5901 otherwise 'vnc down'.`

use crate::dialog::Dialog;
use crate::{net, Ctx};
use custodian_core::{Outcome, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "vnc",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(5900),
    port_required: false,
    takes_port: true,
    params: &[],
    summary: "the server opens with an RFB protocol version line",
    example: "127.0.0.1 must run vnc on 5901 otherwise 'vnc down'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let mut d = Dialog::new(net::connect(cx).await?);
    let line = d.line(cx, "the greeting").await?;
    d.close(cx).await;
    if is_version(&line) {
        Ok(line)
    } else {
        Err(format!(
            "greeting is not an RFB version line: {:?}",
            net::clip(&line)
        ))
    }
}

/// `RFB ` then three digits, a dot and three digits, nothing more.
fn is_version(line: &str) -> bool {
    let Some(v) = line.strip_prefix("RFB ") else {
        return false;
    };
    let b = v.as_bytes();
    b.len() == 7
        && b[3] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 3 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use crate::net::MAX_LINE;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    async fn run_against(a: SocketAddr, secs: f64) -> Outcome {
        check(&cx(Job::new("vnc", "127.0.0.1", Some(a.port())), secs)).await
    }

    #[test]
    fn version_lines() {
        assert!(is_version("RFB 003.008"));
        assert!(is_version("RFB 003.889"));
        assert!(!is_version("RFB 3.8"));
        assert!(!is_version("RFB 003.008 extra"));
        assert!(!is_version("RFB 003x008"));
        assert!(!is_version("SSH-2.0-x"));
    }

    #[tokio::test]
    async fn version_line_passes() {
        let a = says(b"RFB 003.008\n").await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("RFB 003.008".into())
            }
        );
    }

    #[tokio::test]
    async fn wrong_greeting_fails() {
        let a = says(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("greeting is not an RFB version line: \"SSH-2.0-OpenSSH_9.2\"")
        );
    }

    #[tokio::test]
    async fn flood_is_bounded() {
        let t = Instant::now();
        let a = flood(b"RFB ").await;
        let out = run_against(a, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("line longer than {MAX_LINE} bytes"))
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn garbage_and_early_close_fail() {
        let a = says(b"\x00\x01\x02\x03\xff\xfe\x10\x11\x00\x00\x00\x00\x00\x00\x00\x00").await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("binary garbage instead of a text reply (16 bytes)")
        );
        let a = serve(|s| async move { drop(s) }).await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("connection closed by peer while waiting for the greeting")
        );
    }
}
