//! `rsync`: the daemon greets with `@RSYNCD: N.M` and lists its modules.
//!
//! Syntax: `HOST must run rsync [on PORT].` Default port 873. After the greeting we send our
//! own version line and `#list`, the same module-list request `rsync HOST::` makes, and read the
//! listing up to the daemon's `@RSYNCD: EXIT`: a clean exit in the daemon's log, and proof it
//! serves requests rather than just accepting connections. We offer protocol 30, which every
//! daemon since 3.0 speaks, so no checksum negotiation follows.
//! Down reasons: connection refused / timed out connecting; `greeting is not @RSYNCD: "…"`;
//! `daemon refused: "@ERROR: …"` (e.g. max connections reached); module list longer than 1000
//! lines; timed out or connection closed while waiting; binary garbage; line longer than 8192
//! bytes.
//! Example: `mirror1 must run rsync otherwise 'rsync down'.`

use crate::dialog::Dialog;
use crate::{net, Ctx};
use custodian_core::{Outcome, ProbeSpec, TargetKind};
use tokio::net::TcpStream;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "rsync",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(873),
    port_required: false,
    takes_port: true,
    params: &[],
    summary: "the daemon greets with @RSYNCD: and lists its modules",
    example: "127.0.0.1 must run rsync on 873 otherwise 'rsync down'.",
    check: None,
    scan: None,
};

/// Our version line: protocol 30, so the daemon does not negotiate checksums (protocol 31+).
const OUR_VERSION: &str = "@RSYNCD: 30.0";

/// What the daemon sends after the module list.
const EXIT: &str = "@RSYNCD: EXIT";

/// Most lines (motd and modules) we read before calling the listing endless.
const MAX_LISTING: usize = 1000;

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let mut d = Dialog::new(net::connect(cx).await?);
    let greeting = d.line(cx, "the greeting").await?;
    let version = judge_greeting(&greeting)?;
    d.send(cx, OUR_VERSION).await?;
    d.send(cx, "#list").await?;
    let modules = listing(&mut d, cx).await?;
    d.close(cx).await;
    Ok(format!(
        "rsync protocol {version}, {modules} modules listed"
    ))
}

/// The daemon's protocol version, from `@RSYNCD: 31.0 sha512 …` or `@RSYNCD: 29`.
fn judge_greeting(line: &str) -> Result<&str, String> {
    let version = line
        .strip_prefix("@RSYNCD: ")
        .and_then(|rest| rest.split(' ').next())
        .filter(|v| {
            v.split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    version.ok_or_else(|| format!("greeting is not @RSYNCD: {:?}", net::clip(line)))
}

/// Reads the listing up to `@RSYNCD: EXIT`; returns how many module lines (`name\tcomment`) came.
async fn listing(d: &mut Dialog<TcpStream>, cx: &Ctx) -> Result<usize, String> {
    let mut modules = 0;
    for _ in 0..MAX_LISTING {
        let line = d.line(cx, "the module list").await?;
        if line == EXIT {
            return Ok(modules);
        }
        if line.starts_with("@ERROR") {
            return Err(format!("daemon refused: {:?}", net::clip(&line)));
        }
        modules += usize::from(line.contains('\t'));
    }
    Err(format!("module list longer than {MAX_LISTING} lines"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use crate::net::MAX_LINE;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    const GREETING: &str = "@RSYNCD: 31.0 sha512 sha256 sha1 md5 md4\n";

    async fn run_against(a: SocketAddr, secs: f64) -> Outcome {
        check(&cx(Job::new("rsync", "127.0.0.1", Some(a.port())), secs)).await
    }

    fn listing_two(line: &str) -> Option<&'static str> {
        match line {
            "#list" => Some("welcome to the mirror\npub            \tpublic files\ndebian         \t\n@RSYNCD: EXIT\n"),
            _ => Some(""),
        }
    }

    #[test]
    fn greetings() {
        assert_eq!(judge_greeting(GREETING.trim_end()), Ok("31.0"));
        assert_eq!(judge_greeting("@RSYNCD: 29"), Ok("29"));
        assert_eq!(
            judge_greeting("@ERROR: max connections (1) reached -- try again later"),
            Err("greeting is not @RSYNCD: \"@ERROR: max connections (1) reached -- try again later\"".into())
        );
        assert!(judge_greeting("@RSYNCD: x.y").is_err());
        assert!(judge_greeting("@RSYNCD: 31.").is_err());
    }

    #[tokio::test]
    async fn greeting_and_listing_pass() {
        let (a, h) = scripted(GREETING, listing_two).await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("rsync protocol 31.0, 2 modules listed".into())
            }
        );
        assert_eq!(heard(&h), ["@RSYNCD: 30.0", "#list"]);
    }

    #[tokio::test]
    async fn refusals_fail() {
        let (a, _) = scripted(
            "@ERROR: access denied to server from 127.0.0.1\n",
            listing_two,
        )
        .await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down(
                "greeting is not @RSYNCD: \"@ERROR: access denied to server from 127.0.0.1\""
            )
        );
        let (a, _) = scripted(GREETING, |l| match l {
            "#list" => Some("@ERROR: max connections (1) reached -- try again later\n"),
            _ => Some(""),
        })
        .await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down(
                "daemon refused: \"@ERROR: max connections (1) reached -- try again later\""
            )
        );
    }

    #[tokio::test]
    async fn refused_port_fails() {
        let a = refused().await;
        let out = run_against(a, 2.0).await;
        assert_eq!(out, refused_on(a.port()));
    }

    #[tokio::test]
    async fn hung_server_fails_at_the_deadline() {
        let a = silent().await;
        let t = Instant::now();
        let out = run_against(a, 0.5).await;
        assert_eq!(out, Outcome::down("timed out waiting for the greeting"));
        assert!(t.elapsed() < Duration::from_secs(2));
        let a = says(GREETING.as_bytes()).await;
        let out = run_against(a, 0.5).await;
        assert_eq!(out, Outcome::down("timed out waiting for the module list"));
    }

    #[tokio::test]
    async fn floods_are_bounded() {
        let t = Instant::now();
        let a = flood(b"@RSYNCD: ").await;
        let out = run_against(a, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("line longer than {MAX_LINE} bytes"))
        );
        let a = flood(b"@RSYNCD: 31.0\nmodule\tx\n").await;
        let out = run_against(a, 10.0).await;
        assert_eq!(out, Outcome::down("module list longer than 1000 lines"));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn garbage_is_reported() {
        let a = says(b"\x00\x01\x02\x03\xff\xfe\x10\x11\x00\x00\x00\x00\x00\x00\x00\x00").await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("binary garbage instead of a text reply (16 bytes)")
        );
    }
}
