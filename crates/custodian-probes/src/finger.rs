//! `finger`: the server answers a finger query (RFC 1288).
//!
//! Syntax: `HOST must run finger [on PORT] [with user 'NAME'].` Default port 79. We send the
//! user name (or an empty line, which asks for everyone logged in) and pass when any text
//! answer comes. After the first bytes we keep reading until the server closes, for at most a
//! second and 16 KiB, so the detail can show the answer's first line.
//! `with user` may name `user@host` (a forwarding query, RFC 1288 §2.5.1) but no control
//! character: a line break would end the query early, so `custodian check` refuses it.
//! Down reasons: connection refused / timed out connecting; timed out waiting for the answer;
//! `connection closed by peer without an answer`; binary garbage.
//! Example: `host1 must run finger with user 'root' otherwise 'finger down'.`

use crate::{net, Ctx};
use custodian_core::{Invalid, Kind, Outcome, ParamSpec, ProbeSpec, TargetKind, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "finger",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(79),
    port_required: false,
    takes_port: true,
    params: &[ParamSpec::new(
        "with user {user}",
        "ask about this user instead of everyone logged in",
    )
    .kinds(&[Kind::Parse(user)])],
    summary: "the server answers a finger query",
    example: "127.0.0.1 must run finger on 79 with user 'root' otherwise 'finger down'.",
    check: None,
    scan: None,
};

/// Most bytes of an answer we read.
const MAX_ANSWER: usize = 16 * 1024;

/// How long we keep reading after the first bytes of the answer.
const TAIL_GRACE: Duration = Duration::from_secs(1);

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let query = query(cx.params.text("user"));
    let mut s = net::connect(cx).await?;
    net::within(cx, "sending the query", async {
        s.write_all(query.as_bytes())
            .await
            .map_err(|e| format!("sending the query: {}", net::io_reason(&e)))
    })
    .await?;
    let answer = net::within(cx, "waiting for the answer", read_answer(&mut s, cx)).await?;
    judge(&answer)
}

/// `with user`: one query line's worth of text (no control characters; tabs are fine).
fn user(name: &str) -> Result<Value, Invalid> {
    if name.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Invalid::new("the user name contains a control character")
            .hint("a finger query is one line: write the name alone"));
    }
    Ok(Value::Text(name.to_string()))
}

/// The query line: the user name, or nothing for "everyone".
fn query(user: Option<&str>) -> String {
    format!("{}\r\n", user.unwrap_or(""))
}

/// The first bytes of the answer, then whatever follows within [`TAIL_GRACE`] and [`MAX_ANSWER`].
async fn read_answer(s: &mut TcpStream, cx: &Ctx) -> Result<Vec<u8>, String> {
    let mut chunk = [0u8; 4096];
    let n = s
        .read(&mut chunk)
        .await
        .map_err(|e| format!("{} while waiting for the answer", net::io_reason(&e)))?;
    if n == 0 {
        return Err("connection closed by peer without an answer".into());
    }
    let mut answer = chunk[..n].to_vec();
    let until = cx.deadline.min(Instant::now() + TAIL_GRACE);
    let _ = tokio::time::timeout_at(until, async {
        while answer.len() < MAX_ANSWER {
            match s.read(&mut chunk).await {
                Ok(n) if n > 0 => answer.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
    })
    .await;
    answer.truncate(MAX_ANSWER);
    Ok(answer)
}

/// Any text answer passes; the detail is its first non-blank line.
fn judge(answer: &[u8]) -> Result<String, String> {
    let flat: Vec<u8> = answer
        .iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect();
    net::text(&flat)?;
    let text = String::from_utf8_lossy(answer);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    Ok(match first {
        Some(line) => net::clip(line),
        None => "blank answer".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, BufReader};

    async fn run_against(a: SocketAddr, user: Option<&str>, secs: f64) -> Outcome {
        let mut j = Job::new("finger", "127.0.0.1", Some(a.port()));
        if let Some(u) = user {
            j.options.insert("user".into(), u.into());
        }
        check(&cx(j, secs)).await
    }

    fn answer(line: &str) -> &'static str {
        match line {
            "" => "Login     Name       Tty      Idle  Login Time\r\n",
            _ => "\r\nLogin: root           \t\t\tName: root\r\nNo mail.\r\n",
        }
    }

    /// A finger server: reads one query line, logs it, answers and closes.
    async fn finger_server() -> (SocketAddr, Heard) {
        let heard = Heard::default();
        let log = heard.clone();
        let a = serve(move |s| {
            let log = log.clone();
            async move {
                let (r, mut w) = s.into_split();
                let mut lines = BufReader::new(r).lines();
                if let Ok(Some(line)) = lines.next_line().await {
                    log.lock().expect("lock").push(line.clone());
                    let _ = w.write_all(answer(&line).as_bytes()).await;
                }
            }
        })
        .await;
        (a, heard)
    }

    fn up(detail: &str) -> Outcome {
        Outcome::Up {
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn queries_and_answers() {
        assert_eq!(query(None), "\r\n");
        assert_eq!(query(Some("root")), "root\r\n");
        assert!(user("root@host").is_ok());
        let e = user("root\r\nx").expect_err("line break");
        assert_eq!(e.msg, "the user name contains a control character");
        let mut j = Job::new("finger", "127.0.0.1", Some(79));
        j.options.insert("user".into(), "a\nb".into());
        assert!(crate::prepare(&j).is_err());
        assert_eq!(
            judge(b"\r\n  \r\nNo one logged on.\r\n"),
            Ok("No one logged on.".into())
        );
        assert_eq!(judge(b"\r\n"), Ok("blank answer".into()));
        assert!(judge(b"\x00\x01\x02\x03\xff\xfe\x10\x11").is_err());
    }

    #[tokio::test]
    async fn answers_pass_and_the_server_heard_the_query() {
        let (a, h) = finger_server().await;
        let out = run_against(a, Some("root"), 3.0).await;
        assert_eq!(out, up("Login: root           \t\t\tName: root"));
        let out = run_against(a, None, 3.0).await;
        assert_eq!(out, up("Login     Name       Tty      Idle  Login Time"));
        assert_eq!(heard(&h), ["root", ""]);
    }

    #[tokio::test]
    async fn close_without_answer_fails() {
        let a = serve(|mut s| async move {
            let mut q = [0u8; 64];
            let _ = s.read(&mut q).await;
        })
        .await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("connection closed by peer without an answer")
        );
    }

    #[tokio::test]
    async fn endless_or_stalled_answers_are_cut_short() {
        let t = std::time::Instant::now();
        let a = flood(b"user  tty  ").await;
        let out = run_against(a, None, 10.0).await;
        assert!(matches!(&out, Outcome::Up { detail: Some(d) } if d.starts_with("user  tty")));
        let a = says(b"partial answer, then silence\r\n").await;
        assert_eq!(
            run_against(a, None, 10.0).await,
            up("partial answer, then silence")
        );
        assert!(t.elapsed() < Duration::from_secs(4));
    }
}
