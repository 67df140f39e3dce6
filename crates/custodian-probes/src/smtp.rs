//! `smtp`: the server greets with `220`, accepts `EHLO` (or `HELO` when EHLO is refused with
//! a 5xx), and is then left with `QUIT`.
//!
//! Syntax: `HOST must run smtp [on PORT] [with banner 'REGEX'].` Default port 25. The banner
//! regex is matched (case-insensitively) against the whole greeting, lines joined by `\n`.
//! Down reasons: connection refused / timed out connecting; `greeting is not 220: "…"`;
//! `EHLO refused: "…"` (a 4xx, or anything but 250/5xx); `HELO refused: "…" (after EHLO was
//! refused)`; timed out or connection closed while waiting for the greeting or a reply;
//! malformed reply line; binary garbage; line or reply longer than the bounds in `dialog.rs`.
//! Once a greeting came we always end with `QUIT` (also after a refusal, RFC 5321 §3.8) and
//! await its reply briefly; that part never fails the check.
//! Example: `mail1 must run smtp otherwise 'mail server down'.`

use crate::dialog::{Dialog, Reply};
use crate::{net, tcp, Ctx};
use custodian_core::{Outcome, ParamSpec, ProbeSpec, TargetKind};
use tokio::net::TcpStream;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "smtp",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(25),
    port_required: false,
    takes_port: true,
    params: &[ParamSpec {
        phrase: "with banner {banner}",
        help: "the 220 greeting must match this case-insensitive regex",
    }],
    summary: "the server greets with 220 and accepts EHLO (or HELO)",
    example: "127.0.0.1 must run smtp on 25 with banner 'ESMTP' otherwise 'mail down'.",
};

/// The name we introduce ourselves with: reserved, so it can never be someone's real host.
const OUR_NAME: &str = "custodian.invalid";

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
    let greeting = d.reply(cx, "the greeting").await?;
    let verdict = converse(&mut d, cx, &greeting).await;
    // RFC 5321 §3.8: end with QUIT even after a refusal, so the server logs a clean exit.
    if d.send(cx, "QUIT").await.is_ok() {
        d.close(cx).await;
    }
    verdict
}

async fn converse(d: &mut Dialog<TcpStream>, cx: &Ctx, greeting: &Reply) -> Result<String, String> {
    greeting.expect(220, "greeting")?;
    if let Some(pattern) = cx.job.opt_str("banner") {
        tcp::banner_matches(pattern, &greeting.text())?;
    }
    let helo = hello(d, cx).await?;
    Ok(detail(greeting, helo))
}

/// Says EHLO, falling back to HELO; returns which one the server accepted.
async fn hello(d: &mut Dialog<TcpStream>, cx: &Ctx) -> Result<&'static str, String> {
    d.send(cx, &format!("EHLO {OUR_NAME}")).await?;
    let ehlo = d.reply(cx, "the reply to EHLO").await?;
    if !judge_ehlo(&ehlo)? {
        return Ok("EHLO");
    }
    d.send(cx, &format!("HELO {OUR_NAME}")).await?;
    let helo = d.reply(cx, "the reply to HELO").await?;
    judge_helo(&helo)?;
    Ok("HELO")
}

/// Whether to fall back to HELO: yes on a permanent refusal (an old server), error on a
/// temporary one (4xx says "not now", HELO would not change that).
fn judge_ehlo(r: &Reply) -> Result<bool, String> {
    match r.code {
        250 => Ok(false),
        500..=599 => Ok(true),
        _ => Err(format!("EHLO refused: {}", r.quoted())),
    }
}

fn judge_helo(r: &Reply) -> Result<(), String> {
    match r.code {
        250 => Ok(()),
        _ => Err(format!(
            "HELO refused: {} (after EHLO was refused)",
            r.quoted()
        )),
    }
}

/// What an operator sees for a passing check: the greeting's first line, and HELO if needed.
fn detail(greeting: &Reply, helo: &str) -> String {
    let first = greeting.lines.first().map_or("", String::as_str);
    match helo {
        "EHLO" => net::clip(first),
        _ => format!("{}; EHLO refused, HELO accepted", net::clip(first)),
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
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    fn job(port: u16, banner: Option<&str>) -> Job {
        let mut j = Job::new("smtp", "127.0.0.1", Some(port));
        if let Some(b) = banner {
            j.options.insert("banner".into(), b.into());
        }
        j
    }

    async fn run_against(a: SocketAddr, banner: Option<&str>, secs: f64) -> Outcome {
        check(&cx(job(a.port(), banner), secs)).await
    }

    type Heard = Arc<Mutex<Vec<String>>>;

    /// A scripted SMTP server: sends `greeting`, then answers each command by its verb.
    /// Returns its address and the commands it heard.
    async fn server(
        greeting: &'static str,
        ehlo: &'static str,
        helo: &'static str,
    ) -> (SocketAddr, Heard) {
        let heard = Heard::default();
        let log = heard.clone();
        let addr = serve(move |s| {
            let log = log.clone();
            async move {
                let (r, mut w) = s.into_split();
                let _ = w.write_all(greeting.as_bytes()).await;
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().expect("lock").push(line.clone());
                    let answer = match line.split(' ').next() {
                        Some("EHLO") => ehlo,
                        Some("HELO") => helo,
                        Some("QUIT") => "221 bye\r\n",
                        _ => "500 what\r\n",
                    };
                    let _ = w.write_all(answer.as_bytes()).await;
                    if line == "QUIT" {
                        break;
                    }
                }
            }
        })
        .await;
        (addr, heard)
    }

    fn heard(h: &Heard) -> Vec<String> {
        h.lock().expect("lock").clone()
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
    fn judges_hello_replies() {
        assert_eq!(judge_ehlo(&reply(&["250-x", "250 SIZE"])), Ok(false));
        assert_eq!(judge_ehlo(&reply(&["502 no"])), Ok(true));
        assert_eq!(
            judge_ehlo(&reply(&["421 busy"])),
            Err("EHLO refused: \"421 busy\"".into())
        );
        assert_eq!(
            judge_helo(&reply(&["550 no"])),
            Err("HELO refused: \"550 no\" (after EHLO was refused)".into())
        );
    }

    #[tokio::test]
    async fn multi_line_greeting_and_ehlo_pass() {
        let (a, h) = server(
            "220-mail.example ESMTP\r\n220-no UCE\r\n220 ready\r\n",
            "250-mail.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "250 hi\r\n",
        )
        .await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("220-mail.example ESMTP".into())
            }
        );
        assert_eq!(heard(&h), ["EHLO custodian.invalid", "QUIT"]);
    }

    #[tokio::test]
    async fn falls_back_to_helo_on_5xx() {
        let (a, h) = server("220 old\r\n", "502 unknown command\r\n", "250 hi\r\n").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("220 old; EHLO refused, HELO accepted".into())
            }
        );
        let said = ["EHLO custodian.invalid", "HELO custodian.invalid", "QUIT"];
        assert_eq!(heard(&h), said);
    }

    #[tokio::test]
    async fn refused_hello_fails() {
        let (a, _) = server("220 x\r\n", "502 no\r\n", "550 no\r\n").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("HELO refused: \"550 no\" (after EHLO was refused)")
        );
        let (a, _) = server("220 x\r\n", "421 busy\r\n", "250 hi\r\n").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(out, Outcome::down("EHLO refused: \"421 busy\""));
    }

    #[tokio::test]
    async fn wrong_greeting_is_quoted() {
        let (a, h) = server("554-no\r\n554 go away\r\n", "250 x\r\n", "250 x\r\n").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("greeting is not 220: \"554-no\\n554 go away\"")
        );
        assert_eq!(heard(&h), ["QUIT"], "a refused client still says goodbye");
        let a = says(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("malformed reply line \"SSH-2.0-OpenSSH_9.2\"")
        );
    }

    #[tokio::test]
    async fn banner_is_matched_against_the_whole_greeting() {
        let (a, _) = server(
            "220-mail.example\r\n220 Postfix ready\r\n",
            "250 x\r\n",
            "250 x\r\n",
        )
        .await;
        assert!(run_against(a, Some("postfix"), 2.0).await.is_up());
        let out = run_against(a, Some("exim"), 2.0).await;
        assert_eq!(
            out,
            Outcome::down("banner \"220-mail.example\\n220 Postfix ready\" does not match /exim/")
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
        let a = says(b"220 ready\r\n").await;
        let out = run_against(a, None, 0.5).await;
        assert_eq!(
            out,
            Outcome::down("timed out waiting for the reply to EHLO")
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
    async fn trickle_fails_at_the_deadline() {
        let a = trickle(b"220-slow\r\n", Duration::from_secs(1)).await;
        let t = Instant::now();
        let out = run_against(a, None, 1.5).await;
        assert_eq!(out, Outcome::down("timed out waiting for the greeting"));
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn garbage_is_reported() {
        let a = says(b"\x00\x01\x02\x03\xff\xfe\x10\x11\x00\x00\x00\x00\x00\x00\x00\x00").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("binary garbage instead of a text reply (16 bytes)")
        );
        let a = says(b"\x16\x03\x01\x00\xa5\x01\n").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("binary garbage instead of a text reply (6 bytes)")
        );
    }

    #[tokio::test]
    async fn half_closed_servers_fail() {
        let a = serve(|mut s| async move {
            let _ = s.write_all(b"220-first\r\n").await;
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("connection closed by peer while waiting for the greeting")
        );
        let a = serve(|mut s| async move {
            let _ = s.write_all(b"220 ready\r\n").await;
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("connection closed by peer while waiting for the reply to EHLO")
        );
    }
}
