//! `pop3` (alias `pop`): the server greets with `+OK`; with `with tls` it upgrades with STLS
//! (RFC 2595); with credentials it also accepts `USER` and `PASS` (RFC 1939). `pop3s` runs the
//! same conversation inside implicit TLS (port 995).
//!
//! Syntax: `HOST must run pop3 [on PORT] [with banner 'REGEX'] [with tls | with tls insecure]
//! [and cannot expire within N days] [with username 'U' with password 'P'].` Default port
//! 110. `with tls` sends `STLS` and verifies the certificate like `smtp` does (chain, the
//! target's name or IP, N more days, default 14; `with tls insecure` skips
//! chain and name only). With `with username` we send USER then PASS (a missing password
//! counts as empty). We always end with
//! `QUIT` once a greeting came, so the server logs a clean exit; that part never fails the
//! check.
//! Down reasons: connection refused / timed out connecting; `greeting is not +OK: "…"`; banner
//! does not match; `STLS refused: "…"`; data sent after the STLS agreement (possible
//! injection); `TLS handshake on port N failed: …`; `certificate expires in N days …`; `login
//! refused: "…"` (an `-ERR` to USER or PASS, quoted; our command is never quoted); timed out
//! or connection closed while waiting; binary garbage; line longer than 8192 bytes.
//! Example: `mail1 must run pop3 with tls with username 'probe' with password 'secret'.`

use crate::dialog::Dialog;
use crate::tls::{Stream, Verify, EXPIRE_PARAM, INSECURE_PARAM, STARTTLS_PARAM};
use crate::{net, tcp, Ctx};
use custodian_core::{Outcome, ParamSpec, ProbeSpec, TargetKind};

pub(crate) const BANNER_PARAM: ParamSpec = ParamSpec::new(
    "with banner {banner}",
    "the +OK greeting must match this case-insensitive regex",
)
.kinds(tcp::BANNER);

pub(crate) const USERNAME_PARAM: ParamSpec = ParamSpec::new(
    "with username {username}",
    "log in with USER/PASS as this user",
);

pub(crate) const PASSWORD_PARAM: ParamSpec = ParamSpec::new(
    "with password {password}",
    "the password for PASS (masked in all output)",
);

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "pop3",
    aliases: &["pop"],
    target: TargetKind::Host,
    default_port: Some(110),
    port_required: false,
    takes_port: true,
    params: &[
        BANNER_PARAM,
        STARTTLS_PARAM,
        INSECURE_PARAM,
        EXPIRE_PARAM,
        USERNAME_PARAM,
        PASSWORD_PARAM,
    ],
    summary:
        "the server greets with +OK (STLS with `with tls`; USER/PASS when credentials are given)",
    example: "127.0.0.1 must run pop3 on 110 with tls with username 'probe' \
              with password 'secret' otherwise 'pop3 down'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    run(cx, false).await
}

/// The whole check; `implicit_tls` for `pop3s`.
pub(crate) async fn run(cx: &Ctx, implicit_tls: bool) -> Outcome {
    Outcome::from_result(session(cx, implicit_tls).await)
}

async fn session(cx: &Ctx, implicit_tls: bool) -> Result<String, String> {
    let mut d = Dialog::open(cx, implicit_tls).await?;
    let greeting = d.line(cx, "the greeting").await?;
    let verdict = converse(&mut d, cx, &greeting, implicit_tls).await;
    if d.send(cx, "QUIT").await.is_ok() {
        d.close(cx).await;
    }
    verdict
}

async fn converse(
    d: &mut Dialog<Stream>,
    cx: &Ctx,
    greeting: &str,
    implicit_tls: bool,
) -> Result<String, String> {
    if !is_ok(greeting) {
        return Err(format!("greeting is not +OK: {:?}", net::clip(greeting)));
    }
    tcp::banner_matches(cx, greeting)?;
    let mut detail = net::clip(greeting);
    if !implicit_tls && Verify::wanted(cx) {
        command(d, cx, "STLS", "the reply to STLS", "STLS refused").await?;
        d.starttls(cx, Verify::of(cx)).await?;
        detail.push_str("; STLS");
    }
    let Some(user) = cx.params.text("username") else {
        return Ok(detail);
    };
    let pass = cx.params.text("password").unwrap_or("");
    if [user, pass].iter().any(|s| s.contains(['\r', '\n'])) {
        return Err("username or password contains a line break".into());
    }
    command(
        d,
        cx,
        &format!("USER {user}"),
        "the reply to USER",
        "login refused",
    )
    .await?;
    command(
        d,
        cx,
        &format!("PASS {pass}"),
        "the reply to PASS",
        "login refused",
    )
    .await?;
    Ok(format!("{detail}; logged in as {user}"))
}

/// Sends one command and requires `+OK`; the reason (`refused: "…"`) quotes only the
/// server's reply, never our command.
async fn command(
    d: &mut Dialog<Stream>,
    cx: &Ctx,
    line: &str,
    what: &str,
    refused: &str,
) -> Result<(), String> {
    d.send(cx, line).await?;
    let reply = d.line(cx, what).await?;
    if is_ok(&reply) {
        Ok(())
    } else {
        Err(format!("{refused}: {:?}", net::clip(&reply)))
    }
}

/// A positive status line: `+OK`, alone or followed by a space.
fn is_ok(line: &str) -> bool {
    line.strip_prefix("+OK")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use crate::net::MAX_LINE;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    const GREETING: &str = "+OK Dovecot ready.\r\n";

    fn job(port: u16, creds: Option<(&str, &str)>) -> Job {
        let mut j = Job::new("pop3", "127.0.0.1", Some(port));
        if let Some((u, p)) = creds {
            j.options.insert("username".into(), u.into());
            j.options.insert("password".into(), p.into());
        }
        j
    }

    async fn run_against(a: SocketAddr, creds: Option<(&str, &str)>, secs: f64) -> Outcome {
        check(&cx(job(a.port(), creds), secs)).await
    }

    fn accepting(line: &str) -> Option<&'static str> {
        match line.split(' ').next() {
            Some("USER") | Some("PASS") | Some("QUIT") => Some("+OK\r\n"),
            _ => Some("-ERR unknown command\r\n"),
        }
    }

    fn refusing(line: &str) -> Option<&'static str> {
        match line.split(' ').next() {
            Some("PASS") => Some("-ERR [AUTH] Authentication failed.\r\n"),
            _ => accepting(line),
        }
    }

    #[test]
    fn status_lines() {
        assert!(is_ok("+OK"));
        assert!(is_ok("+OK ready"));
        assert!(!is_ok("+OKAY"));
        assert!(!is_ok("-ERR no"));
    }

    #[test]
    fn pop_is_an_alias() {
        assert!(SPEC.is_named("pop"));
        assert!(SPEC.is_named("POP3"));
    }

    #[tokio::test]
    async fn greeting_passes_and_we_quit() {
        let (a, h) = scripted(GREETING, accepting).await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("+OK Dovecot ready.".into())
            }
        );
        assert_eq!(heard(&h), ["QUIT"]);
    }

    #[tokio::test]
    async fn login_accepted() {
        let (a, h) = scripted(GREETING, accepting).await;
        let out = run_against(a, Some(("probe", "s3cret")), 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("+OK Dovecot ready.; logged in as probe".into())
            }
        );
        assert_eq!(heard(&h), ["USER probe", "PASS s3cret", "QUIT"]);
    }

    #[tokio::test]
    async fn login_refused_without_echoing_the_password() {
        let (a, h) = scripted(GREETING, refusing).await;
        let out = run_against(a, Some(("probe", "hunter2")), 2.0).await;
        assert_eq!(
            out,
            Outcome::down("login refused: \"-ERR [AUTH] Authentication failed.\"")
        );
        assert_eq!(heard(&h), ["USER probe", "PASS hunter2", "QUIT"]);
    }

    #[tokio::test]
    async fn line_breaks_in_credentials_are_not_sent() {
        let (a, h) = scripted(GREETING, accepting).await;
        let out = run_against(a, Some(("probe\r\nDELE 1", "pw")), 2.0).await;
        assert_eq!(
            out,
            Outcome::down("username or password contains a line break")
        );
        assert_eq!(heard(&h), ["QUIT"]);
    }

    #[tokio::test]
    async fn wrong_greeting_fails() {
        let (a, _) = scripted("-ERR too busy\r\n", accepting).await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(out, Outcome::down("greeting is not +OK: \"-ERR too busy\""));
    }

    /// A server hung before its greeting is a row of tests/hostile.rs; this one hangs later.
    #[tokio::test]
    async fn hung_login_fails_at_the_deadline() {
        let a = says(GREETING.as_bytes()).await;
        let out = run_against(a, Some(("u", "p")), 0.5).await;
        assert_eq!(
            out,
            Outcome::down("timed out waiting for the reply to USER")
        );
    }

    #[tokio::test]
    async fn flood_is_bounded() {
        let t = Instant::now();
        let a = flood(b"+OK ").await;
        let out = run_against(a, None, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("line longer than {MAX_LINE} bytes"))
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    mod tls {
        //! STLS and pop3s against in-process TLS servers signed by the test CA.

        use super::super::*;
        use super::{accepting, refusing, GREETING};
        use crate::net::testutil::*;
        use crate::tls::testca::{ca, leaf, scripted_tls, server_config, Mode};
        use custodian_core::Job;
        use serde_json::{json, Value};
        use std::net::SocketAddr;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        const DAY: i64 = 86_400;

        fn dovecot(line: &str) -> Option<&'static str> {
            match line {
                "STLS" => Some("+OK Begin TLS negotiation now.\r\n"),
                _ => accepting(line),
            }
        }

        async fn tls_server(
            signed: bool,
            secs: i64,
            mode: Mode,
            answer: fn(&str) -> Option<&'static str>,
        ) -> (SocketAddr, Heard) {
            let config = server_config(&leaf(signed.then(ca), &["127.0.0.1"], secs));
            scripted_tls(config, mode, GREETING, answer).await
        }

        async fn probe(
            implicit: bool,
            a: SocketAddr,
            opts: &[(&str, Value)],
            secs: f64,
        ) -> Outcome {
            let _ = ca();
            let mut j = Job::new(
                if implicit { "pop3s" } else { "pop3" },
                "127.0.0.1",
                Some(a.port()),
            );
            for (k, v) in opts {
                j.options.insert(k.to_string(), v.clone());
            }
            run(&cx(j, secs), implicit).await
        }

        fn login(tls: bool) -> Vec<(&'static str, Value)> {
            let mut v = vec![("username", json!("probe")), ("password", json!("pw"))];
            if tls {
                v.push(("with_tls", json!(true)));
            }
            v
        }

        #[tokio::test]
        async fn stls_then_login_passes() {
            let (a, h) = tls_server(true, 365 * DAY, Mode::After("STLS"), dovecot).await;
            let out = probe(false, a, &login(true), 3.0).await;
            let d = "+OK Dovecot ready.; STLS; logged in as probe";
            assert_eq!(
                out,
                Outcome::Up {
                    detail: Some(d.into())
                }
            );
            assert_eq!(heard(&h), ["STLS", "USER probe", "PASS pw", "QUIT"]);
        }

        #[tokio::test]
        async fn stls_refused_and_injection() {
            let (a, _) = scripted(GREETING, |l| {
                Some(if l == "STLS" {
                    "-ERR TLS support isn't enabled.\r\n"
                } else {
                    "+OK\r\n"
                })
            })
            .await;
            let out = probe(false, a, &[("with_tls", json!(true))], 2.0).await;
            assert_eq!(
                out,
                Outcome::down("STLS refused: \"-ERR TLS support isn't enabled.\"")
            );
            let (a, _) = scripted(GREETING, |_| Some("+OK go\r\n+OK injected\r\n")).await;
            let out = probe(false, a, &[("with_tls", json!(true))], 2.0).await;
            assert!(down_with(&out, "possible STARTTLS injection"), "{out:?}");
        }

        #[tokio::test]
        async fn expiring_or_untrusted_certificates_fail() {
            let (a, _) = tls_server(true, 3 * DAY + 3600, Mode::After("STLS"), dovecot).await;
            let out = probe(false, a, &[("with_tls", json!(true))], 3.0).await;
            assert!(
                down_with(&out, "certificate expires in 3 days (at "),
                "{out:?}"
            );
            let (a, _) = tls_server(false, 365 * DAY, Mode::Implicit, accepting).await;
            let out = probe(true, a, &[], 3.0).await;
            assert!(
                down_with(&out, "certificate is not trusted (unknown issuer)"),
                "{out:?}"
            );
            assert!(probe(true, a, &[("with_tls_insecure", json!(true))], 3.0)
                .await
                .is_up());
        }

        #[tokio::test]
        async fn pop3s_logs_in_inside_tls() {
            let (a, h) = tls_server(true, 365 * DAY, Mode::Implicit, accepting).await;
            assert!(probe(true, a, &login(false), 3.0).await.is_up());
            assert_eq!(heard(&h), ["USER probe", "PASS pw", "QUIT"]);
            let (a, _) = tls_server(true, 365 * DAY, Mode::Implicit, refusing).await;
            let out = probe(true, a, &login(false), 3.0).await;
            assert_eq!(
                out,
                Outcome::down("login refused: \"-ERR [AUTH] Authentication failed.\"")
            );
        }

        #[tokio::test]
        async fn pop3s_hung_garbage_closed_and_flooding_peers_fail() {
            let a = silent().await;
            let out = probe(true, a, &[], 0.5).await;
            assert_eq!(out, Outcome::down("timed out in the TLS handshake"));
            let a = says(b"\x00\x01\x02garbage\xff\xfe").await;
            let out = probe(true, a, &[], 2.0).await;
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
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            })
            .await;
            let out = probe(true, a, &[], 2.0).await;
            assert!(
                down_with(&out, "failed: connection closed by peer"),
                "{out:?}"
            );
            let config = server_config(&leaf(Some(ca()), &["127.0.0.1"], 365 * DAY));
            let g: &'static str = Box::leak("+OK ".repeat(5000).into_boxed_str());
            let (a, _) = scripted_tls(config, Mode::Implicit, g, accepting).await;
            let out = probe(true, a, &[], 3.0).await;
            assert_eq!(out, Outcome::down("line longer than 8192 bytes"));
        }
    }
}
