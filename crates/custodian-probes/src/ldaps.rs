//! `ldaps`: the `ldap` check inside TLS from the first byte, the certificate verified for the
//! target's name against the trusted roots.
//!
//! Syntax: as `ldap`; default port 636.
//! Down reasons: those of `ldap`, and TLS handshake errors (unknown issuer, wrong name,
//! expired certificate).
//! Example: `dir1 must run ldaps with username 'cn=probe,dc=example,dc=com' with password 'secret'.`

use crate::{ldap, Ctx};
use custodian_core::{Outcome, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "ldaps",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(636),
    port_required: false,
    takes_port: true,
    params: ldap::PARAMS,
    summary: "over verified TLS, the server accepts a bind (and a search under `with base` finds an entry)",
    example: "127.0.0.1 must run ldaps on 636 with username 'cn=probe,dc=example,dc=com' with \
              password 'secret' otherwise 'directory down'.",
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

    /// The fake directory behind TLS with a leaf for `names`, signed by the test CA or not.
    async fn server(signed: bool, names: &'static [&'static str]) -> SocketAddr {
        let issuer = signed.then(ca);
        let acceptor =
            tokio_rustls::TlsAcceptor::from(server_config(&leaf(issuer, names, 86_400 * 30)));
        serve(move |s| {
            let acceptor = acceptor.clone();
            async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    fake::talk(tls).await;
                }
            }
        })
        .await
    }

    fn job(port: u16) -> Job {
        let mut j = Job::new("ldaps", "127.0.0.1", Some(port));
        j.options.insert("username".into(), fake::USER.into());
        j.options.insert("password".into(), fake::PASS.into());
        j
    }

    #[tokio::test]
    async fn verified_bind_passes() {
        let a = server(true, &["127.0.0.1"]).await;
        let out = check(&cx(job(a.port()), 3.0)).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some(format!("bound as {}", fake::USER))
            }
        );
    }

    #[tokio::test]
    async fn untrusted_certificate_is_down() {
        let a = server(false, &["127.0.0.1"]).await;
        let out = check(&cx(job(a.port()), 3.0)).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if reason.starts_with("TLS handshake: ")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn wrong_name_is_down() {
        let a = server(true, &["other.test"]).await;
        let out = check(&cx(job(a.port()), 3.0)).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if reason.contains("TLS handshake")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn plain_server_fails_the_handshake() {
        let a = fake::plain().await;
        let out = check(&cx(job(a.port()), 3.0)).await;
        assert!(matches!(&out, Outcome::Down { .. }), "{out:?}");
    }
}
