//! `telnet`: a TCP connection to the telnet port opens.
//!
//! Syntax: `HOST must run telnet [on PORT].` Default port 23. We read nothing: a telnet server
//! may open with IAC option negotiation or a login prompt, and neither is a reliable greeting,
//! so the open connection is the whole check (as in the original custodian). We then close.
//! Down reasons: connection refused; timed out connecting (no answer to the handshake).
//! Example: `router1 must run telnet otherwise 'telnet down'.`

use crate::{net, Ctx};
use custodian_core::{Outcome, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "telnet",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(23),
    port_required: false,
    takes_port: true,
    params: &[],
    summary: "a TCP connection to the telnet port opens",
    example: "127.0.0.1 must run telnet on 23 otherwise 'telnet down'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    match net::connect(cx).await {
        Ok(_) => Outcome::Up {
            detail: Some("connection opened".into()),
        },
        Err(reason) => Outcome::down(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    async fn run_against(a: SocketAddr, secs: f64) -> Outcome {
        check(&cx(Job::new("telnet", "127.0.0.1", Some(a.port())), secs)).await
    }

    #[tokio::test]
    async fn open_port_passes_whatever_the_server_says() {
        let a = silent().await;
        assert!(run_against(a, 2.0).await.is_up());
        // IAC DO ECHO, IAC WILL SUPPRESS-GO-AHEAD, then a prompt.
        let a = says(b"\xff\xfd\x01\xff\xfb\x03login: ").await;
        assert!(run_against(a, 2.0).await.is_up());
    }

    #[tokio::test]
    async fn flood_and_garbage_are_never_read() {
        let t = Instant::now();
        let a = flood(b"\xff\xfb\x01\x00").await;
        assert!(run_against(a, 5.0).await.is_up());
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn unanswered_handshake_fails_at_the_deadline() {
        let (a, _full) = unanswered().await;
        let t = Instant::now();
        let out = run_against(a, 0.5).await;
        let reason = format!("timed out connecting to port {}", a.port());
        assert_eq!(out, Outcome::down(reason));
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
