//! `tcp`: a TCP connection opens; with `with banner 'REGEX'` the first line must match.
//!
//! Syntax: `HOST must run tcp on PORT [with banner 'REGEX'].` The port is required.
//! Down reasons: connection refused / timed out connecting; timed out or closed before the
//! banner; banner does not match; garbage or over-long banner.
//! Example: `db1 must run tcp on 5432 otherwise 'db port closed'.`

use crate::net::{self, MAX_LINE};
use crate::Ctx;
use custodian_core::{Kind, Outcome, ParamSpec, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "tcp",
    aliases: &[],
    target: TargetKind::Host,
    default_port: None,
    port_required: true,
    takes_port: true,
    params: &[ParamSpec::new(
        "with banner {banner}",
        "the first line the server sends must match this case-insensitive regex",
    )
    .kinds(BANNER)],
    summary: "a TCP connection opens (and the greeting matches `with banner`)",
    example: "127.0.0.1 must run tcp on 22 with banner 'ssh' otherwise 'port 22 closed'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

/// The slot kind of every `with banner {banner}` phrase: a case-insensitive regex, checked
/// by the planner and compiled once per job.
pub(crate) const BANNER: &[Kind] = &[Kind::Regex { ignore_case: true }];

async fn run(cx: &Ctx) -> Result<Option<String>, String> {
    let mut stream = net::connect(cx).await?;
    if cx.params.regex("banner").is_none() {
        return Ok(None);
    }
    let line = net::within(
        cx,
        "waiting for the banner",
        net::read_line(&mut stream, MAX_LINE),
    )
    .await?;
    banner_matches(cx, &line)?;
    Ok(Some(net::clip(&line)))
}

/// Whether `line` matches the job's `with banner` regex; passes when none was given.
pub(crate) fn banner_matches(cx: &Ctx, line: &str) -> Result<(), String> {
    match cx.params.regex("banner") {
        Some(re) if !re.is_match(line) => Err(format!(
            "banner {:?} does not match /{}/",
            net::clip(line),
            re.as_str()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::time::Duration;

    fn job(port: u16, banner: Option<&str>) -> Job {
        let mut j = Job::new("tcp", "127.0.0.1", Some(port));
        if let Some(b) = banner {
            j.options.insert("banner".into(), b.into());
        }
        j
    }

    #[tokio::test]
    async fn open_port_passes() {
        let a = silent().await;
        assert!(check(&cx(job(a.port(), None), 2.0)).await.is_up());
    }

    #[tokio::test]
    async fn banner_match_and_mismatch() {
        let a = says(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        assert!(check(&cx(job(a.port(), Some("openssh")), 2.0))
            .await
            .is_up());
        let out = check(&cx(job(a.port(), Some("^220")), 2.0)).await;
        assert!(matches!(out, Outcome::Down { reason } if reason.contains("does not match")));
    }

    #[tokio::test]
    async fn flood_without_newline_is_bounded() {
        let a = flood(b"A").await;
        let out = check(&cx(job(a.port(), Some("x")), 5.0)).await;
        assert_eq!(
            out,
            Outcome::down(format!("line longer than {MAX_LINE} bytes"))
        );
    }

    #[tokio::test]
    async fn trickle_fails_at_the_deadline() {
        let a = trickle(b"abc", Duration::from_millis(200)).await;
        let out = check(&cx(job(a.port(), Some("x")), 0.7)).await;
        assert_eq!(out, Outcome::down("timed out waiting for the banner"));
    }
}
