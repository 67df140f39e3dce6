//! `ftp`: the server greets with `220` (possibly multi-line, possibly after a `120` "ready
//! soon"); with credentials it also accepts `USER`/`PASS` with `230` (RFC 959).
//!
//! Syntax: `HOST must run ftp [on PORT] [with banner 'REGEX'] [with username 'U'
//! with password 'P'].` Default port 21. With `with username` we send USER, then PASS when the
//! server asks for it with `331` (a missing password counts as empty). We always end with
//! `QUIT` once a greeting came; that part never fails the check.
//! Down reasons: connection refused / timed out connecting; `greeting is not 220: "…"`; banner
//! does not match; `login refused: "…"` (the server's reply, quoted; our command never is);
//! `server wants an account (ACCT) too: "…"`; timed out or connection closed while waiting;
//! malformed reply line; binary garbage; line or reply longer than the bounds in `dialog.rs`.
//! Example: `files1 must run ftp with username 'anonymous' with password 'probe@'.`

use crate::dialog::{Dialog, Reply};
use crate::{net, tcp, Ctx};
use custodian_core::{Outcome, ParamSpec, ProbeSpec, TargetKind};
use tokio::net::TcpStream;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "ftp",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(21),
    port_required: false,
    takes_port: true,
    params: &[
        ParamSpec {
            phrase: "with banner {banner}",
            help: "the 220 greeting must match this case-insensitive regex",
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
    summary: "the server greets with 220 (and logs in with 230 when credentials are given)",
    example: "127.0.0.1 must run ftp on 21 with username 'anonymous' with password 'probe@' \
              otherwise 'ftp down'.",
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
    let greeting = greeting(&mut d, cx).await?;
    let verdict = converse(&mut d, cx, &greeting).await;
    if d.send(cx, "QUIT").await.is_ok() {
        d.close(cx).await;
    }
    verdict
}

/// The greeting, skipping one `120` ("service ready in nnn minutes") that may precede it.
async fn greeting(d: &mut Dialog<TcpStream>, cx: &Ctx) -> Result<Reply, String> {
    let first = d.reply(cx, "the greeting").await?;
    if first.code != 120 {
        return Ok(first);
    }
    d.reply(cx, "the greeting after 120").await
}

async fn converse(d: &mut Dialog<TcpStream>, cx: &Ctx, greeting: &Reply) -> Result<String, String> {
    greeting.expect(220, "greeting")?;
    if let Some(pattern) = cx.job.opt_str("banner") {
        tcp::banner_matches(pattern, &greeting.text())?;
    }
    let first = greeting.lines.first().map_or("", String::as_str);
    let Some(user) = cx.job.opt_str("username") else {
        return Ok(net::clip(first));
    };
    let pass = cx.job.opt_str("password").unwrap_or("");
    if [user, pass].iter().any(|s| s.contains(['\r', '\n'])) {
        return Err("username or password contains a line break".into());
    }
    d.send(cx, &format!("USER {user}")).await?;
    let reply = d.reply(cx, "the reply to USER").await?;
    if judge_login(&reply)? == Step::NeedPassword {
        d.send(cx, &format!("PASS {pass}")).await?;
        let reply = d.reply(cx, "the reply to PASS").await?;
        if judge_login(&reply)? == Step::NeedPassword {
            return Err(format!("login refused: {}", reply.quoted()));
        }
    }
    Ok(format!("{}; logged in as {user}", net::clip(first)))
}

/// Where a login stands after a reply to USER or PASS.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    LoggedIn,
    NeedPassword,
}

fn judge_login(r: &Reply) -> Result<Step, String> {
    match r.code {
        230 | 202 => Ok(Step::LoggedIn),
        331 => Ok(Step::NeedPassword),
        332 => Err(format!(
            "server wants an account (ACCT) too: {}",
            r.quoted()
        )),
        _ => Err(format!("login refused: {}", r.quoted())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::{ReplyParser, MAX_REPLY_LINES};
    use crate::net::testutil::*;
    use crate::net::MAX_LINE;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    const GREETING: &str = "220-Welcome\r\n220 (vsFTPd 3.0.3)\r\n";

    fn job(port: u16, creds: Option<(&str, &str)>) -> Job {
        let mut j = Job::new("ftp", "127.0.0.1", Some(port));
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
            Some("USER") => Some("331 Please specify the password.\r\n"),
            Some("PASS") => Some("230 Login successful.\r\n"),
            Some("QUIT") => Some("221 Goodbye.\r\n"),
            _ => Some("500 Unknown command.\r\n"),
        }
    }

    fn refusing(line: &str) -> Option<&'static str> {
        match line.split(' ').next() {
            Some("PASS") => Some("530 Login incorrect.\r\n"),
            _ => accepting(line),
        }
    }

    fn reply(lines: &[&str]) -> Reply {
        let mut p = ReplyParser::default();
        let mut out = None;
        for l in lines {
            out = p.push(l.to_string()).expect("valid line");
        }
        out.expect("complete reply")
    }

    #[test]
    fn judges_login_replies() {
        assert_eq!(judge_login(&reply(&["230 ok"])), Ok(Step::LoggedIn));
        assert_eq!(judge_login(&reply(&["331 pw?"])), Ok(Step::NeedPassword));
        assert_eq!(
            judge_login(&reply(&["332 acct?"])),
            Err("server wants an account (ACCT) too: \"332 acct?\"".into())
        );
        assert_eq!(
            judge_login(&reply(&["530 no"])),
            Err("login refused: \"530 no\"".into())
        );
    }

    #[tokio::test]
    async fn multi_line_greeting_passes_and_we_quit() {
        let (a, h) = scripted(GREETING, accepting).await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("220-Welcome".into())
            }
        );
        assert_eq!(heard(&h), ["QUIT"]);
    }

    #[tokio::test]
    async fn greeting_after_120_passes() {
        let (a, _) = scripted("120 Ready in 1 minute\r\n220 Ready\r\n", accepting).await;
        assert!(run_against(a, None, 2.0).await.is_up());
    }

    #[tokio::test]
    async fn login_accepted() {
        let (a, h) = scripted(GREETING, accepting).await;
        let out = run_against(a, Some(("probe", "s3cret")), 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("220-Welcome; logged in as probe".into())
            }
        );
        assert_eq!(heard(&h), ["USER probe", "PASS s3cret", "QUIT"]);
    }

    #[tokio::test]
    async fn login_without_password_step() {
        let (a, h) = scripted("220 hi\r\n", |l| match l.split(' ').next() {
            Some("USER") => Some("230 Already in.\r\n"),
            _ => Some("221 bye\r\n"),
        })
        .await;
        assert!(run_against(a, Some(("anonymous", "x")), 2.0).await.is_up());
        assert_eq!(heard(&h), ["USER anonymous", "QUIT"]);
    }

    #[tokio::test]
    async fn login_refused_without_echoing_the_password() {
        let (a, h) = scripted(GREETING, refusing).await;
        let out = run_against(a, Some(("probe", "hunter2")), 2.0).await;
        assert_eq!(
            out,
            Outcome::down("login refused: \"530 Login incorrect.\"")
        );
        assert_eq!(heard(&h), ["USER probe", "PASS hunter2", "QUIT"]);
    }

    #[tokio::test]
    async fn wrong_greeting_fails() {
        let (a, _) = scripted("421 Too many users\r\n", accepting).await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("greeting is not 220: \"421 Too many users\"")
        );
        let a = says(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("malformed reply line \"SSH-2.0-OpenSSH_9.2\"")
        );
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
        let a = says(b"220 hi\r\n").await;
        let out = run_against(a, Some(("u", "p")), 0.5).await;
        assert_eq!(
            out,
            Outcome::down("timed out waiting for the reply to USER")
        );
    }

    #[tokio::test]
    async fn floods_are_bounded() {
        let t = Instant::now();
        let a = flood(b"220-").await;
        let out = run_against(a, None, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("line longer than {MAX_LINE} bytes"))
        );
        let a = flood(b"220-spam\r\n").await;
        let out = run_against(a, None, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("reply longer than {MAX_REPLY_LINES} lines"))
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
