//! `smtp`: the server greets with `220`, accepts `EHLO` (or `HELO` when EHLO is refused with
//! a 5xx), optionally upgrades with STARTTLS and logs in, and is then left with `QUIT`.
//! `smtps` runs the same conversation inside implicit TLS (port 465).
//!
//! Syntax: `HOST must run smtp [on PORT] [with banner 'REGEX'] [with tls | with tls insecure]
//! [and cannot expire within N days] [with username 'U' with password 'P'] [with cleartext
//! login].` Default port 25. The banner regex is matched (case-insensitively) against the
//! whole greeting, lines joined by `\n`. `with tls` sends STARTTLS after EHLO, verifies the
//! certificate (chain, the target's name or IP, at least N more days, default 14; `with tls
//! insecure` skips chain and name, not the limit) and says EHLO again.
//! With credentials we log in with AUTH PLAIN, or
//! AUTH LOGIN when only that is advertised; the password is only ever sent inside TLS unless
//! `with cleartext login` explicitly allows it in clear text.
//! Down reasons: connection refused / timed out connecting; `greeting is not 220: "…"`;
//! `EHLO refused: "…"` (a 4xx, or anything but 250/5xx); `HELO refused: "…" (after EHLO was
//! refused)`; `server does not offer STARTTLS`; `STARTTLS refused: "…"`; data sent after the
//! STARTTLS agreement (possible injection); `TLS handshake on port N failed: …` (expired, not
//! yet valid, wrong name, untrusted, alert); `certificate expires in N days (at DATE), less
//! than M`; `refusing to send the password in clear text …`; `server offers no AUTH PLAIN or
//! LOGIN`; `login refused: "…"`; timed out or connection closed while waiting for a reply;
//! malformed reply line; binary garbage; line or reply longer than the bounds in `dialog.rs`.
//! Once a greeting came we always end with `QUIT` (also after a refusal, RFC 5321 §3.8) and
//! await its reply briefly; that part never fails the check.
//! Example: `mail1 must run smtp with tls with username 'probe' with password 'secret'.`

use crate::dialog::{Dialog, Reply};
use crate::tls::{Stream, Verify, EXPIRE_PARAM, INSECURE_PARAM, STARTTLS_PARAM};
use crate::{net, tcp, Ctx};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use custodian_core::{Outcome, ParamSpec, ProbeSpec, TargetKind};

pub(crate) const BANNER_PARAM: ParamSpec = ParamSpec::new(
    "with banner {banner}",
    "the 220 greeting must match this case-insensitive regex",
)
.kinds(tcp::BANNER);

pub(crate) const USERNAME_PARAM: ParamSpec = ParamSpec::new(
    "with username {username}",
    "log in with AUTH PLAIN (or LOGIN) as this user",
);

pub(crate) const PASSWORD_PARAM: ParamSpec = ParamSpec::new(
    "with password {password}",
    "the password for AUTH (masked in all output; sent only inside TLS)",
);

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "smtp",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(25),
    port_required: false,
    takes_port: true,
    params: &[
        BANNER_PARAM,
        STARTTLS_PARAM,
        INSECURE_PARAM,
        EXPIRE_PARAM,
        USERNAME_PARAM,
        PASSWORD_PARAM,
        ParamSpec::new(
            "with cleartext login",
            "allow sending the password without TLS",
        ),
    ],
    summary: "the server greets with 220 and accepts EHLO (or HELO); STARTTLS and AUTH when asked",
    example:
        "127.0.0.1 must run smtp on 587 with tls with username 'probe' with password 'secret' \
              otherwise 'mail down'.",
    check: None,
    scan: None,
};

/// The name we introduce ourselves with: reserved, so it can never be someone's real host.
const OUR_NAME: &str = "custodian.invalid";

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    run(cx, false).await
}

/// The whole check; `implicit_tls` for `smtps`.
pub(crate) async fn run(cx: &Ctx, implicit_tls: bool) -> Outcome {
    Outcome::from_result(session(cx, implicit_tls).await)
}

async fn session(cx: &Ctx, implicit_tls: bool) -> Result<String, String> {
    let mut d = Dialog::open(cx, implicit_tls).await?;
    let greeting = d.reply(cx, "the greeting").await?;
    let verdict = converse(&mut d, cx, &greeting, implicit_tls).await;
    // RFC 5321 §3.8: end with QUIT even after a refusal, so the server logs a clean exit.
    if d.send(cx, "QUIT").await.is_ok() {
        d.close(cx).await;
    }
    verdict
}

async fn converse(
    d: &mut Dialog<Stream>,
    cx: &Ctx,
    greeting: &Reply,
    implicit_tls: bool,
) -> Result<String, String> {
    greeting.expect(220, "greeting")?;
    tcp::banner_matches(cx, &greeting.text())?;
    let mut ehlo = hello(d, cx).await?;
    let mut notes = Vec::new();
    if ehlo.is_none() {
        notes.push("EHLO refused, HELO accepted".to_string());
    }
    let starttls = !implicit_tls && Verify::wanted(cx);
    if starttls {
        upgrade(d, cx, ehlo.as_ref()).await?;
        ehlo = hello(d, cx).await?;
        notes.push("STARTTLS".into());
    }
    if let Some(user) = cx.params.text("username") {
        login(d, cx, ehlo.as_ref(), implicit_tls || starttls).await?;
        notes.push(format!("logged in as {user}"));
    }
    Ok(detail(greeting, &notes))
}

/// Says EHLO, falling back to HELO; returns the EHLO reply (its extensions), or `None` when
/// only HELO was accepted.
async fn hello(d: &mut Dialog<Stream>, cx: &Ctx) -> Result<Option<Reply>, String> {
    d.send(cx, &format!("EHLO {OUR_NAME}")).await?;
    let ehlo = d.reply(cx, "the reply to EHLO").await?;
    if !judge_ehlo(&ehlo)? {
        return Ok(Some(ehlo));
    }
    d.send(cx, &format!("HELO {OUR_NAME}")).await?;
    let helo = d.reply(cx, "the reply to HELO").await?;
    judge_helo(&helo)?;
    Ok(None)
}

/// STARTTLS (RFC 3207), when the EHLO reply offers it, then the TLS handshake.
async fn upgrade(d: &mut Dialog<Stream>, cx: &Ctx, ehlo: Option<&Reply>) -> Result<(), String> {
    if ehlo.and_then(|r| extension(r, "STARTTLS")).is_none() {
        return Err("server does not offer STARTTLS".into());
    }
    d.send(cx, "STARTTLS").await?;
    let r = d.reply(cx, "the reply to STARTTLS").await?;
    if r.code != 220 {
        return Err(format!("STARTTLS refused: {}", r.quoted()));
    }
    d.starttls(cx, Verify::of(cx)).await
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

/// The parameters of EHLO extension `name` (upper-case words), if the reply lists it. The
/// first line is the server's name, not an extension. `AUTH=` is the pre-standard spelling.
fn extension(r: &Reply, name: &str) -> Option<Vec<String>> {
    r.lines.iter().skip(1).find_map(|line| {
        let mut words = line.get(4..)?.split([' ', '=']);
        let key = words.next()?;
        key.eq_ignore_ascii_case(name)
            .then(|| words.map(str::to_ascii_uppercase).collect())
    })
}

/// How we authenticate, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mech {
    Plain,
    Login,
}

/// The mechanism to use, from the AUTH extension of the EHLO reply.
fn pick_mech(ehlo: Option<&Reply>) -> Result<Mech, String> {
    let offered = ehlo.and_then(|r| extension(r, "AUTH")).unwrap_or_default();
    if offered.iter().any(|m| m == "PLAIN") {
        Ok(Mech::Plain)
    } else if offered.iter().any(|m| m == "LOGIN") {
        Ok(Mech::Login)
    } else if offered.is_empty() {
        Err("server offers no AUTH".into())
    } else {
        Err(format!(
            "server offers no AUTH PLAIN or LOGIN (only {})",
            net::clip(&offered.join(" "))
        ))
    }
}

/// AUTH (RFC 4954); refuses to send the password in clear text unless told to.
async fn login(
    d: &mut Dialog<Stream>,
    cx: &Ctx,
    ehlo: Option<&Reply>,
    secured: bool,
) -> Result<(), String> {
    if !secured && !cx.params.flag("with_cleartext_login") {
        return Err(
            "refusing to send the password in clear text: add `with tls` \
                    (or `with cleartext login` to allow it)"
                .into(),
        );
    }
    let user = cx.params.text("username").unwrap_or("");
    let pass = cx.params.text("password").unwrap_or("");
    let last = match pick_mech(ehlo)? {
        Mech::Plain => {
            let token = B64.encode(format!("\0{user}\0{pass}"));
            d.send_as(cx, &format!("AUTH PLAIN {token}"), "AUTH PLAIN")
                .await?;
            d.reply(cx, "the reply to AUTH PLAIN").await?
        }
        Mech::Login => auth_login(d, cx, user, pass).await?,
    };
    match last.code {
        235 => Ok(()),
        _ => Err(format!("login refused: {}", last.quoted())),
    }
}

/// AUTH LOGIN: the username and the password, each after a 334 challenge.
async fn auth_login(
    d: &mut Dialog<Stream>,
    cx: &Ctx,
    user: &str,
    pass: &str,
) -> Result<Reply, String> {
    d.send(cx, "AUTH LOGIN").await?;
    for (secret, what) in [(user, "the username"), (pass, "the password")] {
        let r = d.reply(cx, "the reply to AUTH LOGIN").await?;
        if r.code != 334 {
            return Err(format!("login refused: {}", r.quoted()));
        }
        d.send_as(cx, &B64.encode(secret), what).await?;
    }
    d.reply(cx, "the reply to AUTH LOGIN").await
}

/// What an operator sees for a passing check: the greeting's first line, then notes.
fn detail(greeting: &Reply, notes: &[String]) -> String {
    let first = greeting.lines.first().map_or("", String::as_str);
    let mut out = net::clip(first);
    for n in notes {
        out.push_str("; ");
        out.push_str(n);
    }
    out
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

    /// A server hung before its greeting is a row of tests/hostile.rs; this one hangs later.
    #[tokio::test]
    async fn hung_after_the_greeting_fails_at_the_deadline() {
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
    async fn a_tls_hello_on_the_plain_port_is_garbage() {
        // Random binary is a row of tests/hostile.rs; this is a TLS record ending in a newline.
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

    mod tls {
        //! STARTTLS and AUTH against in-process TLS servers signed by the test CA.

        use super::super::*;
        use crate::net::testutil::*;
        use crate::tls::testca::{ca, leaf, scripted_tls, server_config, Mode};
        use custodian_core::Job;
        use serde_json::{json, Value};
        use std::net::SocketAddr;
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        const DAY: i64 = 86_400;
        const EHLO_TLS: &str = "250-mail.example\r\n250-STARTTLS\r\n250 8BITMIME\r\n";
        const EHLO_AUTH: &str = "250-mail.example\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n";

        fn mta(line: &str) -> Option<&'static str> {
            let verb = line.split(' ').next().unwrap_or("");
            Some(match verb {
                "EHLO" => "250-mail.example\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 OK\r\n",
                "STARTTLS" => "220 2.0.0 Ready to start TLS\r\n",
                // base64 of "\0probe\0s3cret"
                "AUTH" if line == "AUTH PLAIN AHByb2JlAHMzY3JldA==" => "235 2.7.0 ok\r\n",
                "AUTH" => "535 5.7.8 Error: authentication failed\r\n",
                "QUIT" => "221 bye\r\n",
                _ => "500 what\r\n",
            })
        }

        fn login_only(line: &str) -> Option<&'static str> {
            Some(match line {
                l if l.starts_with("EHLO") => "250-x\r\n250-STARTTLS\r\n250 AUTH=LOGIN\r\n",
                "AUTH LOGIN" => "334 VXNlcm5hbWU6\r\n",
                "cHJvYmU=" => "334 UGFzc3dvcmQ6\r\n",
                "czNjcmV0" => "235 ok\r\n",
                _ => return mta(line),
            })
        }

        async fn tls_server(
            signed: bool,
            secs: i64,
            mode: Mode,
            answer: fn(&str) -> Option<&'static str>,
        ) -> (SocketAddr, Heard) {
            let issuer = signed.then(ca);
            let config = server_config(&leaf(issuer, &["127.0.0.1"], secs));
            scripted_tls(config, mode, "220 mail.example ESMTP\r\n", answer).await
        }

        async fn probe(kind: &str, a: SocketAddr, opts: &[(&str, Value)]) -> Outcome {
            let _ = ca();
            let mut j = Job::new(kind, "127.0.0.1", Some(a.port()));
            for (k, v) in opts {
                j.options.insert(k.to_string(), v.clone());
            }
            let cx = cx(j, 3.0);
            if kind == "smtps" {
                run(&cx, true).await
            } else {
                check(&cx).await
            }
        }

        fn creds(pw: &str) -> Vec<(&'static str, Value)> {
            vec![
                ("with_tls", json!(true)),
                ("username", json!("probe")),
                ("password", json!(pw)),
            ]
        }

        #[test]
        fn extensions_and_mechanisms() {
            let r = super::reply(&["250-mail", "250-AUTH PLAIN login", "250 STARTTLS"]);
            assert_eq!(extension(&r, "starttls"), Some(vec![]));
            assert_eq!(pick_mech(Some(&r)), Ok(Mech::Plain));
            let r = super::reply(&["250-mail", "250 AUTH=LOGIN"]);
            assert_eq!(pick_mech(Some(&r)), Ok(Mech::Login));
            let r = super::reply(&["250-AUTH mail", "250 AUTH CRAM-MD5"]);
            assert_eq!(extension(&r, "AUTH"), Some(vec!["CRAM-MD5".to_string()]));
            assert_eq!(
                pick_mech(Some(&r)),
                Err("server offers no AUTH PLAIN or LOGIN (only CRAM-MD5)".into())
            );
            assert_eq!(pick_mech(None), Err("server offers no AUTH".into()));
        }

        #[tokio::test]
        async fn starttls_and_auth_plain_pass() {
            let (a, h) = tls_server(true, 365 * DAY, Mode::After("STARTTLS"), mta).await;
            let out = probe("smtp", a, &creds("s3cret")).await;
            let detail = "220 mail.example ESMTP; STARTTLS; logged in as probe";
            assert_eq!(
                out,
                Outcome::Up {
                    detail: Some(detail.into())
                }
            );
            let said = [
                "EHLO custodian.invalid",
                "STARTTLS",
                "EHLO custodian.invalid",
                "AUTH PLAIN AHByb2JlAHMzY3JldA==",
                "QUIT",
            ];
            assert_eq!(heard(&h), said);
        }

        #[tokio::test]
        async fn auth_login_when_only_login_is_offered() {
            let (a, h) = tls_server(true, 365 * DAY, Mode::After("STARTTLS"), login_only).await;
            assert!(probe("smtp", a, &creds("s3cret")).await.is_up());
            assert_eq!(
                heard(&h)[3..],
                ["AUTH LOGIN", "cHJvYmU=", "czNjcmV0", "QUIT"]
            );
        }

        #[tokio::test]
        async fn wrong_password_is_refused() {
            let (a, _) = tls_server(true, 365 * DAY, Mode::After("STARTTLS"), mta).await;
            let out = probe("smtp", a, &creds("wrong")).await;
            assert_eq!(
                out,
                Outcome::down("login refused: \"535 5.7.8 Error: authentication failed\"")
            );
        }

        #[tokio::test]
        async fn no_password_in_clear_text() {
            let (a, h) = scripted("220 x\r\n", mta).await;
            let mut opts = creds("s3cret");
            opts.remove(0);
            let out = probe("smtp", a, &opts).await;
            assert!(
                down_with(&out, "refusing to send the password in clear text"),
                "{out:?}"
            );
            assert_eq!(heard(&h), ["EHLO custodian.invalid", "QUIT"]);
            opts.push(("with_cleartext_login", json!(true)));
            assert!(probe("smtp", a, &opts).await.is_up());
        }

        #[tokio::test]
        async fn starttls_missing_or_refused() {
            let (a, h) = scripted("220 x\r\n", |l| {
                Some(if l.starts_with("EHLO") {
                    EHLO_AUTH
                } else {
                    "221 bye\r\n"
                })
            })
            .await;
            let out = probe("smtp", a, &[("with_tls", json!(true))]).await;
            assert_eq!(out, Outcome::down("server does not offer STARTTLS"));
            assert_eq!(heard(&h), ["EHLO custodian.invalid", "QUIT"]);
            let (a, _) = scripted("220 x\r\n", |l| {
                Some(if l.starts_with("EHLO") {
                    EHLO_TLS
                } else {
                    "454 4.7.0 TLS not available\r\n"
                })
            })
            .await;
            let out = probe("smtp", a, &[("with_tls", json!(true))]).await;
            assert_eq!(
                out,
                Outcome::down("STARTTLS refused: \"454 4.7.0 TLS not available\"")
            );
        }

        #[tokio::test]
        async fn injected_lines_after_starttls_are_refused() {
            let (a, _) = scripted("220 x\r\n", |l| {
                Some(match l {
                    "STARTTLS" => "220 go ahead\r\n250-injected\r\n",
                    _ => EHLO_TLS,
                })
            })
            .await;
            let out = probe("smtp", a, &[("with_tls", json!(true))]).await;
            assert!(down_with(&out, "possible STARTTLS injection"), "{out:?}");
        }

        #[tokio::test]
        async fn untrusted_certificate_fails_unless_insecure() {
            let (a, _) = tls_server(false, 365 * DAY, Mode::After("STARTTLS"), mta).await;
            let out = probe("smtp", a, &[("with_tls", json!(true))]).await;
            let want = format!(
                "TLS handshake on port {} failed: certificate is not trusted (unknown issuer)",
                a.port()
            );
            assert_eq!(out, Outcome::down(want));
            assert!(probe("smtp", a, &[("with_tls_insecure", json!(true))])
                .await
                .is_up());
        }

        #[tokio::test]
        async fn expiring_certificate_fails_under_the_limit() {
            let (a, _) = tls_server(true, 3 * DAY + 3600, Mode::After("STARTTLS"), mta).await;
            let out = probe("smtp", a, &[("with_tls", json!(true))]).await;
            assert!(
                down_with(&out, "certificate expires in 3 days (at "),
                "{out:?}"
            );
            let opts = [("with_tls", json!(true)), ("expire_days", json!(2))];
            assert!(probe("smtp", a, &opts).await.is_up());
        }

        /// A server that agrees to STARTTLS and then runs `after` on the raw socket.
        async fn agrees_then<F, Fut>(after: F) -> SocketAddr
        where
            F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + Copy + 'static,
            Fut: std::future::Future<Output = ()> + Send + 'static,
        {
            serve(move |mut s| async move {
                let _ = s.write_all(b"220 x\r\n").await;
                let mut buf = [0u8; 256];
                for answer in [EHLO_TLS, "220 go ahead\r\n"] {
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                }
                after(s).await;
            })
            .await
        }

        #[tokio::test]
        async fn hung_garbage_and_closed_handshakes_fail() {
            let opts = [("with_tls", json!(true))];
            let a = agrees_then(|s| async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(s);
            })
            .await;
            let j = Job::new("smtp", "127.0.0.1", Some(a.port()));
            let mut j = j;
            j.options.insert("with_tls".into(), json!(true));
            let out = check(&cx(j, 0.7)).await;
            assert_eq!(out, Outcome::down("timed out in the TLS handshake"));
            let a = agrees_then(|mut s| async move {
                let _ = s.write_all(&[0x42; 4096]).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            })
            .await;
            let out = probe("smtp", a, &opts).await;
            assert!(
                down_with(
                    &out,
                    &format!("TLS handshake on port {} failed: ", a.port())
                ),
                "{out:?}"
            );
            let a = agrees_then(|s| async move { drop(s) }).await;
            let out = probe("smtp", a, &opts).await;
            assert!(
                down_with(&out, "failed: connection closed by peer"),
                "{out:?}"
            );
        }

        #[tokio::test]
        async fn smtps_speaks_tls_first() {
            let (a, h) = tls_server(true, 365 * DAY, Mode::Implicit, mta).await;
            let opts = [("username", json!("probe")), ("password", json!("s3cret"))];
            let out = probe("smtps", a, &opts).await;
            assert_eq!(
                out,
                Outcome::Up {
                    detail: Some("220 mail.example ESMTP; logged in as probe".into())
                }
            );
            assert_eq!(heard(&h)[1], "AUTH PLAIN AHByb2JlAHMzY3JldA==");
            let (a, _) = scripted("220 plain\r\n", mta).await;
            let out = probe("smtps", a, &[]).await;
            assert!(down_with(&out, "TLS handshake on port"), "{out:?}");
        }

        fn spam(_: &str) -> Option<&'static str> {
            static SPAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            Some(SPAM.get_or_init(|| "250-spam\r\n".repeat(200)))
        }

        #[tokio::test]
        async fn smtps_floods_inside_tls_are_bounded() {
            let (a, _) = tls_server(true, 365 * DAY, Mode::Implicit, spam).await;
            let out = probe("smtps", a, &[]).await;
            assert_eq!(out, Outcome::down("reply longer than 100 lines"));
        }
    }
}
