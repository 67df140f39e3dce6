//! `ssh`: the server's identification line starts with `SSH-` (RFC 4253 §4.2).
//!
//! Syntax: `HOST must run ssh [on PORT] [with banner 'REGEX'].` Default port 22.
//! Up to 16 other lines may come before the version line, as the RFC allows. After reading it we
//! send our own `SSH-2.0-custodian_probe` and close, so sshd logs a clean disconnect rather
//! than a protocol error. The detail is the server's version line.
//! Down reasons: connection refused / timed out connecting; timed out or connection closed
//! while waiting for the greeting; `greeting "…" does not start with SSH- (…)` when other lines
//! came first (the parenthesis says why we stopped waiting); banner does not match; binary
//! garbage; line longer than 8192 bytes.
//! Example: `shell1 must run ssh with banner 'OpenSSH' otherwise 'ssh down'.`

use crate::dialog::Dialog;
use crate::{net, tcp, Ctx};
use custodian_core::{Outcome, ParamSpec, ProbeSpec, TargetKind};
use tokio::net::TcpStream;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "ssh",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(22),
    port_required: false,
    takes_port: true,
    params: &[ParamSpec::new(
        "with banner {banner}",
        "the SSH version line must match this case-insensitive regex",
    )
    .kinds(tcp::BANNER)],
    summary: "the server identifies itself with an SSH- version line",
    example: "127.0.0.1 must run ssh on 22 with banner 'OpenSSH' otherwise 'ssh down'.",
    check: None,
    scan: None,
};

/// Our identification line, sent so the server sees a well-formed client.
const OUR_VERSION: &str = "SSH-2.0-custodian_probe";

/// How many non-version lines we accept before the version line.
const MAX_PRE_LINES: usize = 16;

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    match run(cx).await {
        Ok(version) => Outcome::Up {
            detail: Some(net::clip(&version)),
        },
        Err(reason) => Outcome::down(reason),
    }
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let mut d = Dialog::new(net::connect(cx).await?);
    let version = read_version(&mut d, cx).await?;
    if d.send(cx, OUR_VERSION).await.is_ok() {
        d.close(cx).await;
    }
    tcp::banner_matches(cx, &version)?;
    Ok(version)
}

/// Reads lines until the version line, skipping a bounded number of other lines.
async fn read_version(d: &mut Dialog<TcpStream>, cx: &Ctx) -> Result<String, String> {
    let mut first_other: Option<String> = None;
    for _ in 0..=MAX_PRE_LINES {
        let line = match d.line(cx, "the greeting").await {
            Ok(line) => line,
            Err(why) => return Err(not_ssh(first_other.as_deref(), why)),
        };
        if is_version(&line) {
            return Ok(line);
        }
        first_other.get_or_insert(line);
    }
    let why = format!("no version line within {} lines", MAX_PRE_LINES + 1);
    Err(not_ssh(first_other.as_deref(), why))
}

fn is_version(line: &str) -> bool {
    line.starts_with("SSH-")
}

/// The reason for a failed wait, naming the first non-SSH line if one came.
fn not_ssh(first_other: Option<&str>, why: String) -> String {
    match first_other {
        None => why,
        Some(line) => format!(
            "greeting {:?} does not start with SSH- ({why})",
            net::clip(line)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use crate::net::MAX_LINE;
    use custodian_core::Job;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn job(port: u16, banner: Option<&str>) -> Job {
        let mut j = Job::new("ssh", "127.0.0.1", Some(port));
        if let Some(b) = banner {
            j.options.insert("banner".into(), b.into());
        }
        j
    }

    async fn run_against(a: std::net::SocketAddr, banner: Option<&str>, secs: f64) -> Outcome {
        check(&cx(job(a.port(), banner), secs)).await
    }

    fn up(detail: &str) -> Outcome {
        Outcome::Up {
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn version_lines_and_reasons() {
        assert!(is_version("SSH-2.0-OpenSSH_9.2p1 Debian-2"));
        assert!(!is_version("ssh-2.0-x"));
        assert_eq!(not_ssh(None, "timed out".into()), "timed out");
        assert_eq!(
            not_ssh(Some("220 hi"), "timed out".into()),
            "greeting \"220 hi\" does not start with SSH- (timed out)"
        );
    }

    #[tokio::test]
    async fn version_line_passes_and_we_answer_with_ours() {
        let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
        let tx = std::sync::Mutex::new(Some(tx));
        let a = serve(move |mut s| {
            let tx = tx.lock().expect("lock").take();
            async move {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                if let Some(tx) = tx {
                    let _ = tx.send(got);
                }
            }
        })
        .await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(out, up("SSH-2.0-OpenSSH_9.2p1 Debian-2"));
        assert_eq!(rx.await.expect("received"), b"SSH-2.0-custodian_probe\r\n");
    }

    #[tokio::test]
    async fn lines_before_the_version_are_skipped() {
        let a = says(b"Welcome\r\nauthorised use only\r\nSSH-1.99-Cisco-1.25\r\n").await;
        assert_eq!(run_against(a, None, 2.0).await, up("SSH-1.99-Cisco-1.25"));
    }

    #[tokio::test]
    async fn banner_option_matches_the_version() {
        let a = says(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        assert!(run_against(a, Some("openssh_9"), 2.0).await.is_up());
        let out = run_against(a, Some("dropbear"), 2.0).await;
        assert_eq!(
            out,
            Outcome::down("banner \"SSH-2.0-OpenSSH_9.2\" does not match /dropbear/")
        );
    }

    #[tokio::test]
    async fn wrong_greeting_fails() {
        let a = serve(|mut s| async move {
            let _ = s.write_all(b"220 mail.example ESMTP\r\n").await;
        })
        .await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down(
                "greeting \"220 mail.example ESMTP\" does not start with SSH- \
                 (connection closed by peer while waiting for the greeting)"
            )
        );
        let a = says(b"220 mail.example ESMTP\r\n").await;
        let out = run_against(a, None, 0.5).await;
        assert_eq!(
            out,
            Outcome::down(
                "greeting \"220 mail.example ESMTP\" does not start with SSH- \
                 (timed out waiting for the greeting)"
            )
        );
    }

    #[tokio::test]
    async fn floods_are_bounded() {
        let t = Instant::now();
        let a = flood(b"SSH").await;
        let out = run_against(a, None, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("line longer than {MAX_LINE} bytes"))
        );
        let a = flood(b"junk\r\n").await;
        let out = run_against(a, None, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(
                "greeting \"junk\" does not start with SSH- (no version line within 17 lines)"
            )
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn trickle_fails_at_the_deadline() {
        let a = trickle(b"SSH-2.0-slow\r\n", Duration::from_secs(1)).await;
        let t = Instant::now();
        let out = run_against(a, None, 1.5).await;
        assert_eq!(out, Outcome::down("timed out waiting for the greeting"));
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn half_closed_server_fails() {
        let a = serve(|mut s| async move {
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("connection closed by peer while waiting for the greeting")
        );
    }
}
