//! `redis`: the server answers `PING` with `PONG`; with `with password` it first accepts `AUTH`.
//!
//! Syntax: `HOST must run redis [on PORT] [with username 'U'] [with password 'P'].` Default
//! port 6379. Commands go out as RESP arrays (so any byte in a password is safe); replies are
//! read as single bounded lines, since AUTH and PING only ever answer with a status or an error.
//! `with username` alone is ignored: Redis has no password-less AUTH.
//! Down reasons: connection refused / timed out connecting; `AUTH refused: "WRONGPASS …"`;
//! `PING refused: "NOAUTH Authentication required."` (a password is needed); `PING answered …
//! instead of PONG`; `not a Redis reply: "…"`; timed out or closed while waiting; binary
//! garbage; line longer than 8192 bytes.
//! Example: `cache1 must run redis with password 'secret' otherwise 'redis down'.`

use crate::dialog::LineBuf;
use crate::net::{self, MAX_LINE};
use crate::Ctx;
use custodian_core::{Outcome, ParamSpec, ProbeSpec, TargetKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "redis",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(6379),
    port_required: false,
    takes_port: true,
    params: &[
        ParamSpec::new(
            "with username {username}",
            "the ACL user for AUTH (Redis 6+; needs `with password`)",
        ),
        ParamSpec::new(
            "with password {password}",
            "send AUTH with this password before PING (masked in all output)",
        ),
    ],
    summary: "the server answers PING with PONG (after accepting AUTH when a password is given)",
    example: "127.0.0.1 must run redis on 6379 with password 'secret' otherwise 'redis down'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let mut conn = Resp {
        stream: net::connect(cx).await?,
        pending: LineBuf::default(),
    };
    let mut detail = "PONG".to_string();
    if let Some(pass) = cx.params.text("password") {
        let mut args = vec!["AUTH"];
        args.extend(cx.params.text("username"));
        args.push(pass);
        match conn.call(cx, &args).await? {
            Reply::Status(_) => {}
            Reply::Error(e) => return Err(format!("AUTH refused: {:?}", net::clip(&e))),
        }
        detail.push_str(" after AUTH");
    }
    match conn.call(cx, &["PING"]).await? {
        Reply::Status(s) if s == "PONG" => {}
        Reply::Status(s) => {
            return Err(format!("PING answered {:?} instead of PONG", net::clip(&s)))
        }
        Reply::Error(e) => return Err(format!("PING refused: {:?}", net::clip(&e))),
    }
    // Best effort: the verdict is made, QUIT only spares the server a dropped connection.
    let _ = conn.call(cx, &["QUIT"]).await;
    Ok(detail)
}

/// A reply to AUTH, PING or QUIT: a status (`+OK`) or an error (`-ERR …`).
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Status(String),
    Error(String),
}

/// Encodes a command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Judges one reply line; anything but a status or an error is not what these commands get.
fn parse(line: &str) -> Result<Reply, String> {
    if let Some(s) = line.strip_prefix('+') {
        Ok(Reply::Status(s.to_string()))
    } else if let Some(e) = line.strip_prefix('-') {
        Ok(Reply::Error(e.to_string()))
    } else {
        Err(format!("not a Redis reply: {:?}", net::clip(line)))
    }
}

/// One connection: commands out, bounded reply lines in.
struct Resp {
    stream: TcpStream,
    pending: LineBuf,
}

impl Resp {
    /// Sends a command and reads its reply; reasons name only the command word.
    async fn call(&mut self, cx: &Ctx, args: &[&str]) -> Result<Reply, String> {
        let verb = args.first().copied().unwrap_or_default();
        let data = encode(args);
        net::within(cx, &format!("sending {verb}"), async {
            self.stream
                .write_all(&data)
                .await
                .map_err(|e| format!("sending {verb}: {}", net::io_reason(&e)))
        })
        .await?;
        let what = format!("the reply to {verb}");
        let line = net::within(cx, &format!("waiting for {what}"), self.line(&what)).await?;
        parse(&line)
    }

    async fn line(&mut self, what: &str) -> Result<String, String> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(line) = self.pending.next_line(MAX_LINE)? {
                return Ok(line);
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("{} while waiting for {what}", net::io_reason(&e)))?;
            if n == 0 {
                return Err(format!(
                    "connection closed by peer while waiting for {what}"
                ));
            }
            self.pending.extend(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, BufReader};

    fn job(port: u16, user: Option<&str>, pass: Option<&str>) -> Job {
        let mut j = Job::new("redis", "127.0.0.1", Some(port));
        if let Some(u) = user {
            j.options.insert("username".into(), u.into());
        }
        if let Some(p) = pass {
            j.options.insert("password".into(), p.into());
        }
        j
    }

    async fn run_against(a: SocketAddr, user: Option<&str>, pass: Option<&str>) -> Outcome {
        check(&cx(job(a.port(), user, pass), 2.0)).await
    }

    /// A RESP server that wants password `pw` (when given) and logs each command's words.
    async fn fake(pw: Option<&'static str>) -> (SocketAddr, Heard) {
        let heard = Heard::default();
        let log = heard.clone();
        let addr = serve(move |s| {
            let log = log.clone();
            async move {
                let (r, mut w) = s.into_split();
                let mut lines = BufReader::new(r).lines();
                let mut authed = pw.is_none();
                while let Some(words) = read_command(&mut lines).await {
                    log.lock().expect("lock").push(words.join(" "));
                    let reply = answer(&words, pw, &mut authed);
                    let _ = w.write_all(reply.as_bytes()).await;
                }
            }
        })
        .await;
        (addr, heard)
    }

    async fn read_command(
        lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    ) -> Option<Vec<String>> {
        let head = lines.next_line().await.ok()??;
        let n: usize = head.strip_prefix('*')?.parse().ok()?;
        let mut words = Vec::new();
        for _ in 0..n {
            lines.next_line().await.ok()??;
            words.push(lines.next_line().await.ok()??);
        }
        Some(words)
    }

    fn answer(words: &[String], pw: Option<&str>, authed: &mut bool) -> &'static str {
        match words.first().map(String::as_str) {
            Some("AUTH") if words.last().map(String::as_str) == pw => {
                *authed = true;
                "+OK\r\n"
            }
            Some("AUTH") => "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
            Some("PING") if *authed => "+PONG\r\n",
            Some("PING") => "-NOAUTH Authentication required.\r\n",
            _ => "+OK\r\n",
        }
    }

    #[test]
    fn commands_are_resp_arrays() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&["AUTH", "a b"]),
            b"*2\r\n$4\r\nAUTH\r\n$3\r\na b\r\n"
        );
    }

    #[test]
    fn replies() {
        assert_eq!(parse("+PONG"), Ok(Reply::Status("PONG".into())));
        assert_eq!(parse("-ERR x"), Ok(Reply::Error("ERR x".into())));
        assert_eq!(parse("$4"), Err("not a Redis reply: \"$4\"".into()));
    }

    #[tokio::test]
    async fn ping_passes_and_we_quit() {
        let (a, h) = fake(None).await;
        let out = run_against(a, None, None).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("PONG".into())
            }
        );
        assert_eq!(heard(&h), ["PING", "QUIT"]);
    }

    #[tokio::test]
    async fn auth_with_user_and_password() {
        let (a, h) = fake(Some("pa ss")).await;
        let out = run_against(a, Some("probe"), Some("pa ss")).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("PONG after AUTH".into())
            }
        );
        assert_eq!(heard(&h), ["AUTH probe pa ss", "PING", "QUIT"]);
    }

    #[tokio::test]
    async fn wrong_password_is_down_without_the_password() {
        let (a, _) = fake(Some("right")).await;
        let out = run_against(a, None, Some("hunter2")).await;
        let Outcome::Down { reason } = out else {
            panic!("{out:?}")
        };
        assert!(reason.starts_with("AUTH refused: \"WRONGPASS"), "{reason}");
        assert!(!reason.contains("hunter2"));
    }

    #[tokio::test]
    async fn missing_password_is_noauth() {
        let (a, _) = fake(Some("right")).await;
        let out = run_against(a, None, None).await;
        assert_eq!(
            out,
            Outcome::down("PING refused: \"NOAUTH Authentication required.\"")
        );
    }

    #[tokio::test]
    async fn other_status_is_not_pong() {
        let a = says(b"+HELLO\r\n").await;
        let out = run_against(a, None, None).await;
        assert_eq!(
            out,
            Outcome::down("PING answered \"HELLO\" instead of PONG")
        );
    }

    #[tokio::test]
    async fn oversized_reply_is_bounded() {
        let a = flood(b"+").await;
        let out = run_against(a, None, None).await;
        assert_eq!(
            out,
            Outcome::down(format!("line longer than {MAX_LINE} bytes"))
        );
    }

    #[tokio::test]
    async fn half_closed_server() {
        let a = serve(|mut s| async move {
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        assert_eq!(
            run_against(a, None, None).await,
            Outcome::down("connection closed by peer while waiting for the reply to PING")
        );
    }
}
