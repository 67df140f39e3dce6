//! `imap`: the server greets with `* OK`; with `with tls` it upgrades with STARTTLS; with
//! credentials it also accepts `LOGIN` (RFC 9051). `imaps` runs the same conversation inside
//! implicit TLS (port 993).
//!
//! Syntax: `HOST must run imap [on PORT] [with banner 'REGEX'] [with tls | with tls insecure]
//! [and cannot expire within N days] [with username 'U' with password 'P'].` Default port
//! 143. `with tls` sends `a0 STARTTLS` and verifies the certificate like `smtp` does (chain,
//! the target's name or IP, N more days, default 14; `with tls insecure` skips
//! chain and name only). With `with username` we send `a1 LOGIN` (a missing password
//! counts as empty); a tagged `OK`
//! means logged in. We always end with `a2 LOGOUT` once a greeting came, so the server logs a
//! clean exit; that part never fails the check.
//! Down reasons: connection refused / timed out connecting; `greeting is not * OK: "…"`; banner
//! does not match; `STARTTLS refused: "…"`; data sent after the STARTTLS agreement (possible
//! injection); `TLS handshake on port N failed: …`; `certificate expires in N days …`;
//! `server forbids plaintext LOGIN (LOGINDISABLED)` (only checked without TLS); `login
//! refused: "…"` (a tagged NO or BAD, quoted; our command is never quoted); no tagged reply
//! within 100 lines; timed out or connection closed while waiting; binary garbage; line
//! longer than 8192 bytes.
//! Example: `mail1 must run imap with tls with username 'probe' with password 'secret'.`

use crate::dialog::Dialog;
use crate::tls::{Stream, Verify, EXPIRE_PARAM, INSECURE_PARAM, STARTTLS_PARAM};
use crate::{net, tcp, Ctx};
use custodian_core::{Outcome, ParamSpec, ProbeSpec, TargetKind};

pub(crate) const BANNER_PARAM: ParamSpec = ParamSpec::new(
    "with banner {banner}",
    "the * OK greeting must match this case-insensitive regex",
)
.kinds(tcp::BANNER);

pub(crate) const USERNAME_PARAM: ParamSpec =
    ParamSpec::new("with username {username}", "log in with LOGIN as this user");

pub(crate) const PASSWORD_PARAM: ParamSpec = ParamSpec::new(
    "with password {password}",
    "the password for LOGIN (masked in all output)",
);

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "imap",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(143),
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
        "the server greets with * OK (STARTTLS with `with tls`; LOGIN when credentials are given)",
    example: "127.0.0.1 must run imap on 143 with tls with username 'probe' \
              with password 'secret' otherwise 'imap down'.",
    check: None,
    scan: None,
};

/// Untagged lines we skip while waiting for a tagged reply (a real server sends one or two).
const MAX_UNTAGGED: usize = 100;

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    run(cx, false).await
}

/// The whole check; `implicit_tls` for `imaps`.
pub(crate) async fn run(cx: &Ctx, implicit_tls: bool) -> Outcome {
    Outcome::from_result(session(cx, implicit_tls).await)
}

async fn session(cx: &Ctx, implicit_tls: bool) -> Result<String, String> {
    let mut d = Dialog::open(cx, implicit_tls).await?;
    let greeting = d.line(cx, "the greeting").await?;
    let verdict = converse(&mut d, cx, &greeting, implicit_tls).await;
    if d.send(cx, "a2 LOGOUT").await.is_ok() {
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
    judge_greeting(greeting)?;
    tcp::banner_matches(cx, greeting)?;
    let mut detail = net::clip(greeting);
    let starttls = !implicit_tls && Verify::wanted(cx);
    if starttls {
        d.send(cx, "a0 STARTTLS").await?;
        judge_tagged(
            &tagged(d, cx, "a0", "the reply to STARTTLS").await?,
            "STARTTLS",
        )?;
        d.starttls(cx, Verify::of(cx)).await?;
        detail.push_str("; STARTTLS");
    }
    let Some(user) = cx.params.text("username") else {
        return Ok(detail);
    };
    // The greeting's capabilities describe the clear-text session only.
    if !implicit_tls && !starttls && login_disabled(greeting) {
        return Err("server forbids plaintext LOGIN (LOGINDISABLED)".into());
    }
    let pass = cx.params.text("password").unwrap_or("");
    d.send(cx, &format!("a1 LOGIN {} {}", quote(user)?, quote(pass)?))
        .await?;
    judge_tagged(&tagged(d, cx, "a1", "the reply to LOGIN").await?, "LOGIN")?;
    Ok(format!("{detail}; logged in as {user}"))
}

fn judge_greeting(line: &str) -> Result<(), String> {
    let head = line
        .get(..4)
        .is_some_and(|h| h.eq_ignore_ascii_case("* OK"));
    if head && matches!(line.as_bytes().get(4), None | Some(b' ')) {
        Ok(())
    } else {
        Err(format!("greeting is not * OK: {:?}", net::clip(line)))
    }
}

/// Whether the greeting's capability list says LOGIN must not be used (RFC 9051 §6.2.3).
fn login_disabled(greeting: &str) -> bool {
    greeting
        .split([' ', '[', ']'])
        .any(|w| w.eq_ignore_ascii_case("LOGINDISABLED"))
}

/// An IMAP quoted string; line breaks cannot be quoted, so they are refused.
fn quote(s: &str) -> Result<String, String> {
    if s.contains(['\r', '\n']) {
        return Err("username or password contains a line break".into());
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Reads lines until the one tagged `tag`, skipping a bounded number of untagged ones.
async fn tagged(d: &mut Dialog<Stream>, cx: &Ctx, tag: &str, what: &str) -> Result<String, String> {
    for _ in 0..MAX_UNTAGGED {
        let line = d.line(cx, what).await?;
        if line.split(' ').next() == Some(tag) {
            return Ok(line);
        }
    }
    Err(format!(
        "no tagged reply within {MAX_UNTAGGED} lines while waiting for {what}"
    ))
}

/// A tagged reply to `command`: `OK` passes; `NO`/`BAD` is a refusal (LOGIN: "login refused").
fn judge_tagged(line: &str, command: &str) -> Result<(), String> {
    let status = line.split(' ').nth(1).unwrap_or("");
    let refused = match command {
        "LOGIN" => "login refused".to_string(),
        other => format!("{other} refused"),
    };
    if status.eq_ignore_ascii_case("OK") {
        Ok(())
    } else if status.eq_ignore_ascii_case("NO") || status.eq_ignore_ascii_case("BAD") {
        Err(format!("{refused}: {:?}", net::clip(line)))
    } else {
        Err(format!(
            "malformed reply to {command}: {:?}",
            net::clip(line)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use crate::net::MAX_LINE;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    const GREETING: &str = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Dovecot ready.\r\n";

    fn job(port: u16, creds: Option<(&str, &str)>) -> Job {
        let mut j = Job::new("imap", "127.0.0.1", Some(port));
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
        match line.split(' ').nth(1) {
            Some("LOGIN") => Some("* CAPABILITY IMAP4rev1\r\na1 OK Logged in\r\n"),
            Some("LOGOUT") => Some("* BYE Logging out\r\na2 OK Logout completed.\r\n"),
            _ => Some("* BAD what\r\n"),
        }
    }

    fn refusing(line: &str) -> Option<&'static str> {
        match line.split(' ').nth(1) {
            Some("LOGIN") => Some("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
            _ => accepting(line),
        }
    }

    #[test]
    fn greetings_quotes_and_login_replies() {
        assert_eq!(judge_greeting("* ok ready"), Ok(()));
        assert_eq!(
            judge_greeting("* OKAY"),
            Err("greeting is not * OK: \"* OKAY\"".into())
        );
        assert!(login_disabled(
            "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] x"
        ));
        assert!(!login_disabled(GREETING));
        assert_eq!(quote(r#"a"b\c"#), Ok(r#""a\"b\\c""#.into()));
        assert!(quote("a\r\nb").is_err());
        assert_eq!(judge_tagged("a1 OK done", "LOGIN"), Ok(()));
        assert_eq!(
            judge_tagged("a1 BAD syntax", "LOGIN"),
            Err("login refused: \"a1 BAD syntax\"".into())
        );
        assert_eq!(
            judge_tagged("a1 MAYBE", "LOGIN"),
            Err("malformed reply to LOGIN: \"a1 MAYBE\"".into())
        );
    }

    #[tokio::test]
    async fn greeting_passes_and_we_log_out() {
        let (a, h) = scripted(GREETING, accepting).await;
        let out = run_against(a, None, 2.0).await;
        let detail = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Dovecot ready.";
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some(detail.into())
            }
        );
        assert_eq!(heard(&h), ["a2 LOGOUT"]);
    }

    #[tokio::test]
    async fn login_accepted() {
        let (a, h) = scripted(GREETING, accepting).await;
        let out = run_against(a, Some(("probe", "s3cr\"et")), 2.0).await;
        assert!(
            matches!(&out, Outcome::Up { detail: Some(d) } if d.ends_with("; logged in as probe")),
            "{out:?}"
        );
        assert_eq!(
            heard(&h),
            ["a1 LOGIN \"probe\" \"s3cr\\\"et\"", "a2 LOGOUT"]
        );
    }

    #[tokio::test]
    async fn login_refused_without_echoing_the_password() {
        let (a, h) = scripted(GREETING, refusing).await;
        let out = run_against(a, Some(("probe", "hunter2")), 2.0).await;
        assert_eq!(
            out,
            Outcome::down("login refused: \"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\"")
        );
        assert_eq!(heard(&h).last().map(String::as_str), Some("a2 LOGOUT"));
    }

    #[tokio::test]
    async fn login_disabled_is_not_attempted() {
        let g = "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] ready\r\n";
        let (a, h) = scripted(g, accepting).await;
        let out = run_against(a, Some(("probe", "pw")), 2.0).await;
        assert_eq!(
            out,
            Outcome::down("server forbids plaintext LOGIN (LOGINDISABLED)")
        );
        assert_eq!(heard(&h), ["a2 LOGOUT"]);
    }

    #[tokio::test]
    async fn wrong_greeting_fails() {
        let (a, _) = scripted("* BYE too many connections\r\n", accepting).await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("greeting is not * OK: \"* BYE too many connections\"")
        );
        let a = says(b"+OK POP3 ready\r\n").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("greeting is not * OK: \"+OK POP3 ready\"")
        );
    }

    /// A server hung before its greeting is a row of tests/hostile.rs; this one hangs later.
    #[tokio::test]
    async fn hung_login_fails_at_the_deadline() {
        let a = says(GREETING.as_bytes()).await;
        let out = run_against(a, Some(("u", "p")), 0.5).await;
        assert_eq!(
            out,
            Outcome::down("timed out waiting for the reply to LOGIN")
        );
    }

    #[tokio::test]
    async fn floods_are_bounded() {
        let t = Instant::now();
        let a = flood(b"* OK ").await;
        let out = run_against(a, None, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("line longer than {MAX_LINE} bytes"))
        );
        let a = flood(b"* OK chatter\r\n").await;
        let out = run_against(a, Some(("u", "p")), 10.0).await;
        assert_eq!(
            out,
            Outcome::down("no tagged reply within 100 lines while waiting for the reply to LOGIN")
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    mod tls {
        //! STARTTLS and imaps against in-process TLS servers signed by the test CA.

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
                "a0 STARTTLS" => Some("a0 OK Begin TLS negotiation now.\r\n"),
                _ => accepting(line),
            }
        }

        async fn tls_server(
            signed: bool,
            mode: Mode,
            answer: fn(&str) -> Option<&'static str>,
        ) -> (SocketAddr, Heard) {
            let config = server_config(&leaf(signed.then(ca), &["127.0.0.1"], 365 * DAY));
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
                if implicit { "imaps" } else { "imap" },
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
        async fn starttls_then_login_passes() {
            let (a, h) = tls_server(true, Mode::After("a0 STARTTLS"), dovecot).await;
            let out = probe(false, a, &login(true), 3.0).await;
            let d = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Dovecot ready.; STARTTLS; logged in as probe";
            assert_eq!(
                out,
                Outcome::Up {
                    detail: Some(d.into())
                }
            );
            assert_eq!(
                heard(&h),
                ["a0 STARTTLS", "a1 LOGIN \"probe\" \"pw\"", "a2 LOGOUT"]
            );
        }

        #[tokio::test]
        async fn logindisabled_before_tls_does_not_matter_after_it() {
            let g = "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n";
            let config = server_config(&leaf(Some(ca()), &["127.0.0.1"], 365 * DAY));
            let (a, _) = scripted_tls(config, Mode::After("a0 STARTTLS"), g, dovecot).await;
            assert!(probe(false, a, &login(true), 3.0).await.is_up());
        }

        #[tokio::test]
        async fn starttls_refused_and_injection() {
            let (a, _) = scripted(GREETING, |l| {
                Some(if l == "a0 STARTTLS" {
                    "a0 BAD TLS support isn't enabled.\r\n"
                } else {
                    "a2 OK\r\n"
                })
            })
            .await;
            let out = probe(false, a, &[("with_tls", json!(true))], 2.0).await;
            assert_eq!(
                out,
                Outcome::down("STARTTLS refused: \"a0 BAD TLS support isn't enabled.\"")
            );
            let (a, _) = scripted(GREETING, |_| Some("a0 OK go\r\n* OK injected\r\n")).await;
            let out = probe(false, a, &[("with_tls", json!(true))], 2.0).await;
            assert!(down_with(&out, "possible STARTTLS injection"), "{out:?}");
        }

        #[tokio::test]
        async fn untrusted_certificate_fails_unless_insecure() {
            let (a, _) = tls_server(false, Mode::After("a0 STARTTLS"), dovecot).await;
            let out = probe(false, a, &[("with_tls", json!(true))], 3.0).await;
            assert!(
                down_with(&out, "certificate is not trusted (unknown issuer)"),
                "{out:?}"
            );
            assert!(probe(false, a, &[("with_tls_insecure", json!(true))], 3.0)
                .await
                .is_up());
        }

        #[tokio::test]
        async fn imaps_logs_in_inside_tls() {
            let (a, h) = tls_server(true, Mode::Implicit, accepting).await;
            assert!(probe(true, a, &login(false), 3.0).await.is_up());
            assert_eq!(heard(&h), ["a1 LOGIN \"probe\" \"pw\"", "a2 LOGOUT"]);
            let (a, _) = tls_server(true, Mode::Implicit, refusing).await;
            let out = probe(true, a, &login(false), 3.0).await;
            assert!(
                down_with(&out, "login refused: \"a1 NO [AUTHENTICATIONFAILED]"),
                "{out:?}"
            );
        }

        fn chatter(_: &str) -> Option<&'static str> {
            static SPAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            Some(SPAM.get_or_init(|| "* OK chatter\r\n".repeat(200)))
        }

        #[tokio::test]
        async fn imaps_hung_garbage_closed_and_flooding_peers_fail() {
            let a = silent().await;
            let out = probe(true, a, &[], 0.5).await;
            assert_eq!(out, Outcome::down("timed out in the TLS handshake"));
            let a = says(GREETING.as_bytes()).await;
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
            let (a, _) = tls_server(true, Mode::Implicit, chatter).await;
            let out = probe(true, a, &login(false), 3.0).await;
            assert_eq!(
                out,
                Outcome::down(
                    "no tagged reply within 100 lines while waiting for the reply to LOGIN"
                )
            );
        }
    }
}
