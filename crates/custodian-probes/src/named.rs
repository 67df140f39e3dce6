//! `named`: a TCP connection to the DNS port opens; no query is sent.
//!
//! Syntax: `HOST must run named [on PORT].` Default port 53. This is the original custodian's
//! cheap liveness check for a name server; use `dns` to check real answers. We send nothing,
//! read nothing, and close.
//! Down reasons: connection refused; timed out connecting (no answer to the handshake).
//! Example: `ns1 must run named otherwise 'DNS server down'.`

use crate::{net, Ctx};
use custodian_core::{Outcome, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "named",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(53),
    port_required: false,
    takes_port: true,
    params: &[],
    summary: "a TCP connection to the DNS port opens",
    example: "127.0.0.1 must run named on 53 otherwise 'DNS server down'.",
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
    use tokio::io::AsyncReadExt;

    async fn run_against(a: SocketAddr, secs: f64) -> Outcome {
        check(&cx(Job::new("named", "127.0.0.1", Some(a.port())), secs)).await
    }

    #[tokio::test]
    async fn open_port_passes_and_nothing_is_sent() {
        let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
        let tx = std::sync::Mutex::new(Some(tx));
        let a = serve(move |mut s| {
            let tx = tx.lock().expect("lock").take();
            async move {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                if let Some(tx) = tx {
                    let _ = tx.send(got);
                }
            }
        })
        .await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("connection opened".into())
            }
        );
        assert_eq!(rx.await.expect("server saw the close"), b"");
    }

    #[tokio::test]
    async fn flood_and_garbage_are_never_read() {
        let t = Instant::now();
        let a = flood(b"\x00\xff").await;
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
