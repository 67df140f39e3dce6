//! `https`: the `http` check over TLS, plus the certificate: chain and host name verified, and
//! not expiring within `N` days (default 14).
//!
//! Syntax: every `http` option, and `and cannot expire within N days` or `with expiration 30d`
//! (days, or weeks as `2w`). `with tls insecure` skips chain and name verification only: the
//! certificate's validity period and the expiry limit (given, or 14 days) still count.
//! `no_ssl_check` (the original's) skips every certificate check, the expiry limit too unless
//! one is given.
//! Down reasons: those of `http`; TLS handshake errors (unknown issuer, wrong name, expired);
//! `certificate expires in N days (at DATE), less than M`, followed by `(verification
//! skipped: with tls insecure)` when it was.
//! Example: `https://example.com/ must run https and cannot expire within 30 days otherwise 'renew'.`

use crate::http::{self, http_params};
use crate::Ctx;
use crate::tls::{EXPIRATION_PARAM, EXPIRE_PARAM};
use custodian_core::{Outcome, ParamSpec, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "https",
    aliases: &[],
    target: TargetKind::Url(&["https"]),
    default_port: Some(443),
    port_required: false,
    takes_port: false,
    params: http_params!(EXPIRE_PARAM, EXPIRATION_PARAM),
    summary: "the URL answers over verified TLS with the expected status; the certificate is not about to expire",
    example: "https://example.com/ must run https with content 'Example' and cannot expire within 30 days.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    http::run(cx, true).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fake;
    use crate::net::testutil::{cx, down_with};
    use crate::tls::testca::{ca, leaf, server_config};
    use custodian_core::Job;
    use serde_json::json;

    const DAY: i64 = 86_400;

    fn hello(_: &str) -> Vec<u8> {
        fake::reply("200 OK", "", "hello")
    }

    /// Serves `hello` over TLS with a leaf for `names` valid `secs` more seconds.
    async fn server(signed: bool, names: &[&str], secs: i64) -> u16 {
        let issuer = signed.then(ca);
        fake::https(server_config(&leaf(issuer, names, secs)), hello)
            .await
            .port()
    }

    async fn probe(port: u16, opts: &[(&str, serde_json::Value)]) -> Outcome {
        let url = format!("https://www.custodian.test:{port}/");
        let mut j = Job::new("https", &url, Some(port));
        for (k, v) in opts {
            j.options.insert(k.to_string(), v.clone());
        }
        check(&cx(j, 3.0)).await
    }


    #[tokio::test]
    async fn trusted_certificate_passes() {
        let port = server(true, &["www.custodian.test"], 365 * DAY).await;
        let out = probe(port, &[("content", json!("hello"))]).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("status 200, 5 bytes".into())
            }
        );
    }

    #[tokio::test]
    async fn expiring_certificate_fails_under_the_limit() {
        let port = server(true, &["www.custodian.test"], 3 * DAY + 3600).await;
        let out = probe(port, &[]).await;
        assert!(
            down_with(&out, "certificate expires in 3 days (at "),
            "{out:?}"
        );
        assert!(down_with(&out, "), less than 14"), "{out:?}");
        assert!(probe(port, &[("expire_days", json!(2))]).await.is_up());
    }

    #[tokio::test]
    async fn with_expiration_sets_the_limit() {
        let port = server(true, &["www.custodian.test"], 3 * DAY + 3600).await;
        let out = probe(port, &[("expiration", json!("1w"))]).await;
        assert!(down_with(&out, "), less than 7"), "{out:?}");
        assert!(probe(port, &[("expiration", json!("2d"))]).await.is_up());
    }

    #[tokio::test]
    async fn insecure_keeps_the_expiry_limit_and_says_so() {
        // Self-signed and misnamed: only the skipped verification would refuse it.
        let port = server(false, &["other.custodian.test"], 3 * DAY + 3600).await;
        let insecure = ("with_tls_insecure", json!(true));
        let out = probe(port, std::slice::from_ref(&insecure)).await;
        assert!(
            down_with(&out, "certificate expires in 3 days (at "),
            "{out:?}"
        );
        assert!(
            down_with(&out, "), less than 14 (verification skipped: with tls insecure)"),
            "{out:?}"
        );
        let out = probe(port, &[insecure.clone(), ("expiration", json!("1w"))]).await;
        assert!(down_with(&out, "less than 7 (verification skipped"), "{out:?}");
        assert!(probe(port, &[insecure, ("expire_days", json!(2))])
            .await
            .is_up());
        // The original's no_ssl_check drops the default limit, but not a given one.
        let nocheck = ("no_ssl_check", json!(true));
        assert!(probe(port, std::slice::from_ref(&nocheck)).await.is_up());
        let out = probe(port, &[nocheck, ("expire_days", json!(30))]).await;
        assert!(
            down_with(&out, "less than 30 (verification skipped: no_ssl_check)"),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn wrong_host_name_fails() {
        let port = server(true, &["other.custodian.test"], 365 * DAY).await;
        let out = probe(port, &[]).await;
        assert!(down_with(&out, "TLS handshake on port"), "{out:?}");
        assert!(
            down_with(&out, "not valid for name \"www.custodian.test\""),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn untrusted_self_signed_fails_unless_insecure() {
        let port = server(false, &["www.custodian.test"], 365 * DAY).await;
        let out = probe(port, &[]).await;
        assert!(
            down_with(&out, "failed: certificate is not trusted (unknown issuer)"),
            "{out:?}"
        );
        assert!(probe(port, &[("with_tls_insecure", json!(true))])
            .await
            .is_up());
        assert!(probe(port, &[("no_ssl_check", json!(true))]).await.is_up());
    }

    #[tokio::test]
    async fn plain_http_server_is_a_tls_error() {
        let a = crate::net::testutil::says(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let out = probe(a.port(), &[]).await;
        assert!(
            down_with(
                &out,
                &format!("TLS handshake on port {} failed: ", a.port())
            ),
            "{out:?}"
        );
    }
    /// `/down` redirects to the same host and port over plain http, `/same` to `/inspect` over
    /// TLS; `/inspect` names the credentials that arrived.
    fn downgrade(req: &str) -> Vec<u8> {
        let path = req.split(' ').nth(1).unwrap_or("");
        let host = req
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .unwrap_or("");
        let go = |loc: String| fake::reply("302 Found", &format!("Location: {loc}\r\n"), "");
        match path {
            "/down" => go(format!("http://{host}/inspect")),
            "/same" => go("/inspect".into()),
            "/inspect" => fake::inspect(req),
            _ => fake::reply("404 Not Found", "", ""),
        }
    }

    #[tokio::test]
    async fn credentials_are_not_sent_in_clear_after_a_downgrade() {
        let leaf = leaf(Some(ca()), &["www.custodian.test"], 365 * DAY);
        let port = fake::dual(server_config(&leaf), downgrade).await.port();
        let url = |path: &str| format!("https://bob:pw@www.custodian.test:{port}{path}");
        let run = |path: &str, content: &str| {
            let mut j = Job::new("https", &url(path), Some(port));
            for (k, v) in [
                ("without_cache_busting", json!(true)),
                ("header", json!("X-Probe: yes")),
                ("content", json!(content)),
            ] {
                j.options.insert(k.to_string(), v);
            }
            async move { check(&cx(j, 3.0)).await }
        };
        let out = run("/same", "carried [authorization: x-probe:]").await;
        assert!(out.is_up(), "over TLS they arrive: {out:?}");
        let out = run("/down", "carried []").await;
        assert!(out.is_up(), "in clear they must not: {out:?}");
        let out = run("/down", "carried [authorization").await;
        assert!(
            down_with(
                &out,
                &format!("; final URL http://www.custodian.test:{port}/inspect")
            ),
            "{out:?}"
        );
    }
}
