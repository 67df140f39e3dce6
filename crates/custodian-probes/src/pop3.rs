//! `pop3` (alias `pop`): the server greets with `+OK`; with credentials it also accepts
//! `USER` and `PASS` (RFC 1939).
//!
//! Syntax: `HOST must run pop3 [on PORT] [with banner 'REGEX'] [with username 'U'
//! with password 'P'].` Default port 110. With `with username` we send USER then PASS (a
//! missing password counts as empty). We always end with `QUIT` once a greeting came, so the
//! server logs a clean exit; that part never fails the check.
//! Down reasons: connection refused / timed out connecting; `greeting is not +OK: "…"`; banner
//! does not match; `login refused: "…"` (an `-ERR` to USER or PASS, quoted; our command is
//! never quoted); timed out or connection closed while waiting; binary garbage; line longer
//! than 8192 bytes.
//! Example: `mail1 must run pop3 with username 'probe' with password 'secret'.`

use crate::dialog::Dialog;
use crate::{net, tcp, Ctx};
use custodian_core::{Outcome, ParamSpec, ProbeSpec, TargetKind};
use tokio::net::TcpStream;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "pop3",
    aliases: &["pop"],
    target: TargetKind::Host,
    default_port: Some(110),
    port_required: false,
    takes_port: true,
    params: &[
        ParamSpec {
            phrase: "with banner {banner}",
            help: "the +OK greeting must match this case-insensitive regex",
        },
        ParamSpec {
            phrase: "with username {username}",
            help: "log in with USER/PASS as this user",
        },
        ParamSpec {
            phrase: "with password {password}",
            help: "the password for PASS (masked in all output)",
        },
    ],
    summary: "the server greets with +OK (and accepts USER/PASS when credentials are given)",
    example: "127.0.0.1 must run pop3 on 110 with username 'probe' with password 'secret' \
              otherwise 'pop3 down'.",
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    match run(cx).await {
        Ok(detail) => Outcome::Up {
            detail: Some(detail),
        },
        Err(reason) => Outcome::down(reason),
    }
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let mut d = Dialog::new(net::connect(cx).await?);
    let greeting = d.line(cx, "the greeting").await?;
    let verdict = converse(&mut d, cx, &greeting).await;
    if d.send(cx, "QUIT").await.is_ok() {
        d.close(cx).await;
    }
    verdict
}

async fn converse(d: &mut Dialog<TcpStream>, cx: &Ctx, greeting: &str) -> Result<String, String> {
    if !is_ok(greeting) {
        return Err(format!("greeting is not +OK: {:?}", net::clip(greeting)));
    }
    if let Some(pattern) = cx.job.opt_str("banner") {
        tcp::banner_matches(pattern, greeting)?;
    }
    let Some(user) = cx.job.opt_str("username") else {
        return Ok(net::clip(greeting));
    };
    let pass = cx.job.opt_str("password").unwrap_or("");
    if [user, pass].iter().any(|s| s.contains(['\r', '\n'])) {
        return Err("username or password contains a line break".into());
    }
    command(d, cx, &format!("USER {user}"), "the reply to USER").await?;
    command(d, cx, &format!("PASS {pass}"), "the reply to PASS").await?;
    Ok(format!("{}; logged in as {user}", net::clip(greeting)))
}

/// Sends one login command and requires `+OK`; the reason quotes only the server's reply.
async fn command(
    d: &mut Dialog<TcpStream>,
    cx: &Ctx,
    line: &str,
    what: &str,
) -> Result<(), String> {
    d.send(cx, line).await?;
    let reply = d.line(cx, what).await?;
    if is_ok(&reply) {
        Ok(())
    } else {
        Err(format!("login refused: {:?}", net::clip(&reply)))
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

    #[tokio::test]
    async fn refused_port_fails() {
        let a = refused().await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("connect to port {}: connection refused", a.port()))
        );
    }

    #[tokio::test]
    async fn hung_server_fails_at_the_deadline() {
        let a = silent().await;
        let t = Instant::now();
        let out = run_against(a, None, 0.5).await;
        assert_eq!(out, Outcome::down("timed out waiting for the greeting"));
        assert!(t.elapsed() < Duration::from_secs(2));
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

    #[tokio::test]
    async fn garbage_is_reported() {
        let a = says(b"\x00\x01\x02\x03\xff\xfe\x10\x11\x00\x00\x00\x00\x00\x00\x00\x00").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("binary garbage instead of a text reply (16 bytes)")
        );
    }
}
