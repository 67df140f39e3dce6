//! `ldaps`: the `ldap` check inside TLS from the first byte, default port 636.
//!
//! Syntax: as `ldap`, plus `[with tls insecure] [and cannot expire within N days]`. The
//! certificate must be valid for the target's name (or IP) and stay valid N more days
//! (default 14); `with tls insecure` skips the name and chain, not the limit.
//! Down reasons: `TLS handshake on port N failed: …` (expired, wrong name, untrusted, closed);
//! `certificate expires in N days (at DATE), less than M`; then those of `ldap`.
//! Example: `dir1 must run ldaps with username 'cn=probe,dc=example,dc=com' with password 'secret'.`

use crate::ldap::{self, BASE_PARAM, FILTER_PARAM, PASSWORD_PARAM, USERNAME_PARAM};
use crate::tls::{EXPIRE_PARAM, INSECURE_PARAM};
use crate::Ctx;
use custodian_core::{Outcome, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "ldaps",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(636),
    port_required: false,
    takes_port: true,
    params: &[
        USERNAME_PARAM,
        PASSWORD_PARAM,
        BASE_PARAM,
        FILTER_PARAM,
        INSECURE_PARAM,
        EXPIRE_PARAM,
    ],
    summary: "over verified TLS, the server accepts a bind (and a search under `with base` finds an entry)",
    example: "127.0.0.1 must run ldaps on 636 with username 'cn=probe,dc=example,dc=com' with \
              password 'secret' otherwise 'directory down'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    ldap::run(cx, true).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldap::fake;
    use crate::net::testutil::{cx, serve};
    use crate::tls::testca::{ca, leaf, server_config};
    use custodian_core::Job;
    use std::net::SocketAddr;

    const DAY: i64 = 86_400;

    /// The fake directory behind TLS with a leaf for `names` valid `secs` more seconds,
    /// signed by the test CA or self-signed.
    async fn server(signed: bool, names: &'static [&'static str], secs: i64) -> SocketAddr {
        serve_tls(signed, names, secs, false).await
    }

    /// As [`server`], with the fake directory or (`hostile`) the deeply nested reply.
    async fn serve_tls(
        signed: bool,
        names: &'static [&'static str],
        secs: i64,
        hostile: bool,
    ) -> SocketAddr {
        let issuer = signed.then(ca);
        let config = server_config(&leaf(issuer, names, secs));
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        serve(move |s| {
            let acceptor = acceptor.clone();
            async move {
                match acceptor.accept(s).await {
                    Ok(tls) if hostile => fake::hostile(tls).await,
                    Ok(tls) => fake::talk(tls).await,
                    Err(_) => {}
                }
            }
        })
        .await
    }

    fn job(port: u16, insecure: bool) -> Job {
        let mut j = Job::new("ldaps", "127.0.0.1", Some(port));
        j.options.insert("username".into(), fake::USER.into());
        j.options.insert("password".into(), fake::PASS.into());
        if insecure {
            j.options.insert("with_tls_insecure".into(), true.into());
        }
        j
    }

    async fn reason(a: SocketAddr, insecure: bool) -> String {
        match check(&cx(job(a.port(), insecure), 3.0)).await {
            Outcome::Down { reason } => reason,
            out => panic!("expected down, got {out:?}"),
        }
    }

    #[tokio::test]
    async fn verified_bind_passes() {
        let a = server(true, &["127.0.0.1"], 30 * DAY).await;
        let out = check(&cx(job(a.port(), false), 3.0)).await;
        let detail = format!("bound as {}", fake::USER);
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some(detail)
            }
        );
    }

    #[tokio::test]
    async fn untrusted_or_misnamed_certificate_is_down() {
        let a = server(false, &["127.0.0.1"], 30 * DAY).await;
        let prefix = format!("TLS handshake on port {} failed: ", a.port());
        assert!(reason(a, false).await.starts_with(&prefix));
        let a = server(true, &["other.test"], 30 * DAY).await;
        let prefix = format!("TLS handshake on port {} failed: ", a.port());
        assert!(reason(a, false).await.starts_with(&prefix));
    }

    #[tokio::test]
    async fn deeply_nested_reply_is_down_not_a_crash() {
        let a = serve_tls(true, &["127.0.0.1"], 30 * DAY, true).await;
        let why = reason(a, false).await;
        assert_eq!(why, "LDAP reply nested deeper than 32 levels");
    }

    #[tokio::test]
    async fn insecure_accepts_an_untrusted_certificate() {
        let a = server(false, &["127.0.0.1"], 30 * DAY).await;
        assert!(check(&cx(job(a.port(), true), 3.0)).await.is_up());
    }

    #[tokio::test]
    async fn expiring_certificate_is_down() {
        let a = server(true, &["127.0.0.1"], 3 * DAY + 3600).await;
        let why = reason(a, false).await;
        assert!(why.starts_with("certificate expires in 3 days"), "{why}");
    }

    #[tokio::test]
    async fn plain_server_fails_the_handshake() {
        let a = fake::plain().await;
        let prefix = format!("TLS handshake on port {} failed: ", a.port());
        let why = reason(a, false).await;
        assert!(why.starts_with(&prefix), "{why}");
    }
}
