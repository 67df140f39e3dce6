//! `ssl`: a TLS handshake on any port; the certificate chain is trusted, valid now, valid for
//! the target's name (or IP), and does not expire within the limit.
//!
//! Syntax: `HOST must run ssl [on PORT] [with expiration 30d] [and cannot expire within N
//! days] [with tls insecure].` or `https://HOST[:PORT]/ must run ssl …`. Default port 443 (or
//! the URL's port). The limit is `with expiration` (days: `30`, `30d`, or weeks: `2w`), else
//! `and cannot expire within N days`, else 14 days; a bad value is refused by `check`.
//! `with tls insecure` skips chain and name verification only (for a self-signed
//! certificate): its validity period and the limit still count. Nothing is sent after the
//! handshake but the TLS close.
//! Down reasons: connection refused / timed out connecting; `timed out in the TLS handshake`;
//! `TLS handshake on port N failed: ` then `certificate expired on DATE`, `certificate is not
//! valid until DATE`, `certificate is not valid for name "…" (it names …)`, `certificate is not
//! trusted (unknown issuer)`, `the server sent alert …`, `connection closed by peer`, or
//! rustls's words for a broken handshake; `certificate expires in N days (at DATE), less than
//! M`, followed by `(verification skipped: with tls insecure)` when it was.
//! Example: `mail.example.com must run ssl on 993 with expiration 30d otherwise 'renew'.`

use crate::tls::{self, Verify, EXPIRATION_PARAM, EXPIRE_PARAM, INSECURE_PARAM};
use crate::{net, Ctx};
use custodian_core::{Outcome, ProbeSpec, TargetKind};
use tokio::io::AsyncWriteExt;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "ssl",
    aliases: &[],
    target: TargetKind::HostOrUrl(&["https"]),
    default_port: Some(443),
    port_required: false,
    takes_port: true,
    params: &[EXPIRATION_PARAM, EXPIRE_PARAM, INSECURE_PARAM],
    summary: "a TLS handshake succeeds; the certificate is trusted, valid for the name and not expiring soon",
    example: "127.0.0.1 must run ssl on 443 with expiration 30d otherwise 'renew the certificate'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let tcp = net::connect(cx).await?;
    let mut stream = tls::handshake(cx, tcp, Verify::of(cx)).await?;
    let e = tls::expiry(tls::peer_leaf(&stream)?, tls::unix_now())?;
    // Politeness only (close_notify); the verdict is made.
    let _ = net::within(cx, "closing", async { Ok(stream.shutdown().await) }).await;
    Ok(format!(
        "certificate valid until {} ({} days left)",
        e.at, e.days
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use crate::tls::testca::{ca, leaf, leaf_from, server_config, Leaf};
    use custodian_core::Job;
    use serde_json::{json, Value};
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    const DAY: i64 = 86_400;

    /// A TLS server presenting `leaf` that holds each connection open for a while.
    async fn tls_server(leaf: &Leaf) -> SocketAddr {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(leaf));
        serve(move |s| {
            let acceptor = acceptor.clone();
            async move {
                if let Ok(mut t) = acceptor.accept(s).await {
                    let _ = t.read(&mut [0u8; 64]).await;
                }
            }
        })
        .await
    }

    async fn probe(target: &str, a: SocketAddr, opts: &[(&str, Value)], secs: f64) -> Outcome {
        let mut j = Job::new("ssl", target, Some(a.port()));
        for (k, v) in opts {
            j.options.insert(k.to_string(), v.clone());
        }
        check(&cx(j, secs)).await
    }


    fn handshake_failed(a: SocketAddr, why: &str) -> Outcome {
        Outcome::down(format!("TLS handshake on port {} failed: {why}", a.port()))
    }

    #[tokio::test]
    async fn valid_certificate_passes_for_ip_and_url_targets() {
        let a = tls_server(&leaf(Some(ca()), &["127.0.0.1"], 365 * DAY + 3600)).await;
        let out = probe("127.0.0.1", a, &[], 3.0).await;
        assert!(
            matches!(&out, Outcome::Up { detail: Some(d) } if d.ends_with("(365 days left)")),
            "{out:?}"
        );
        let url = format!("https://127.0.0.1:{}/", a.port());
        assert!(probe(&url, a, &[], 3.0).await.is_up());
    }

    #[tokio::test]
    async fn expiring_certificate_fails_under_the_limit() {
        let a = tls_server(&leaf(Some(ca()), &["127.0.0.1"], 20 * DAY + 3600)).await;
        assert!(probe("127.0.0.1", a, &[], 3.0).await.is_up());
        let out = probe("127.0.0.1", a, &[("expiration", json!("30d"))], 3.0).await;
        assert!(
            down_with(&out, "certificate expires in 20 days (at "),
            "{out:?}"
        );
        assert!(down_with(&out, "less than 30"), "{out:?}");
        let out = probe("127.0.0.1", a, &[("expiration", json!("4w"))], 3.0).await;
        assert!(down_with(&out, "less than 28"), "{out:?}");
    }

    #[tokio::test]
    async fn insecure_skips_the_chain_but_not_the_limit() {
        let a = tls_server(&leaf(None, &["other.custodian.test"], 3 * DAY + 3600)).await;
        let insecure = ("with_tls_insecure", json!(true));
        let out = probe("127.0.0.1", a, std::slice::from_ref(&insecure), 3.0).await;
        assert!(
            down_with(&out, "certificate expires in 3 days (at "),
            "{out:?}"
        );
        assert!(
            down_with(&out, "less than 14 (verification skipped: with tls insecure)"),
            "{out:?}"
        );
        let short = [insecure.clone(), ("expiration", json!("2d"))];
        assert!(probe("127.0.0.1", a, &short, 3.0).await.is_up());
        let a = tls_server(&leaf(None, &["127.0.0.1"], -DAY)).await;
        let out = probe("127.0.0.1", a, &[insecure], 3.0).await;
        assert!(down_with(&out, "certificate expired on "), "{out:?}");
        assert!(down_with(&out, "(verification skipped: with tls insecure)"), "{out:?}");
    }

    #[tokio::test]
    async fn expired_and_not_yet_valid_certificates_fail() {
        let a = tls_server(&leaf(Some(ca()), &["127.0.0.1"], -DAY)).await;
        let out = probe("127.0.0.1", a, &[], 3.0).await;
        let prefix = format!(
            "TLS handshake on port {} failed: certificate expired on ",
            a.port()
        );
        assert!(down_with(&out, &prefix), "{out:?}");
        let a = tls_server(&leaf_from(Some(ca()), &["127.0.0.1"], DAY, 365 * DAY)).await;
        let out = probe("127.0.0.1", a, &[], 3.0).await;
        assert!(
            down_with(&out, "failed: certificate is not valid until "),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn wrong_name_and_untrusted_issuer_fail() {
        let a = tls_server(&leaf(Some(ca()), &["other.custodian.test"], 365 * DAY)).await;
        let out = probe("127.0.0.1", a, &[], 3.0).await;
        let why = "certificate is not valid for name \"127.0.0.1\" (it names DnsName(\"other.custodian.test\"))";
        assert_eq!(out, handshake_failed(a, why));
        let a = tls_server(&leaf(None, &["127.0.0.1"], 365 * DAY)).await;
        let out = probe("127.0.0.1", a, &[], 3.0).await;
        let why = "certificate is not trusted (unknown issuer)";
        assert_eq!(out, handshake_failed(a, why));
    }

    #[tokio::test]
    async fn hung_garbage_closed_and_refused_peers_fail() {
        let a = silent().await;
        let out = probe("127.0.0.1", a, &[], 0.5).await;
        assert_eq!(out, Outcome::down("timed out in the TLS handshake"));
        let a = flood(b"HTTP/1.1 400 Bad Request\r\n").await;
        let out = probe("127.0.0.1", a, &[], 3.0).await;
        assert!(
            down_with(
                &out,
                &format!("TLS handshake on port {} failed: ", a.port())
            ),
            "{out:?}"
        );
        let a = serve(|mut s| async move {
            let _ = s.read(&mut [0u8; 4096]).await;
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        })
        .await;
        let out = probe("127.0.0.1", a, &[], 2.0).await;
        assert_eq!(out, handshake_failed(a, "connection closed by peer"));
        let a = refused().await;
        let out = probe("127.0.0.1", a, &[], 2.0).await;
        let want = format!("connect to port {}: connection refused", a.port());
        assert_eq!(out, Outcome::down(want));
    }
}
