//! `nntp`: the news server greets with `200` (posting allowed) or `201` (no posting)
//! (RFC 3977 §5.1).
//!
//! Syntax: `HOST must run nntp [on PORT] [with banner 'REGEX'].` Default port 119. We end with
//! `QUIT` once a greeting came; that part never fails the check.
//! Down reasons: connection refused / timed out connecting; `greeting is not 200 or 201: "…"`
//! (e.g. 400 service unavailable, 502 access denied); banner does not match; timed out or
//! connection closed while waiting; malformed reply line; binary garbage; line longer than 8192
//! bytes.
//! Example: `news1 must run nntp otherwise 'news down'.`

use crate::dialog::{Dialog, Reply};
use crate::{net, tcp, Ctx};
use custodian_core::{Outcome, ParamSpec, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "nntp",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(119),
    port_required: false,
    takes_port: true,
    params: &[ParamSpec::new(
        "with banner {banner}",
        "the 200/201 greeting must match this case-insensitive regex",
    )
    .kinds(tcp::BANNER)],
    summary: "the news server greets with 200 or 201",
    example: "127.0.0.1 must run nntp on 119 otherwise 'news down'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let mut d = Dialog::new(net::connect(cx).await?);
    let greeting = d.reply(cx, "the greeting").await?;
    if d.send(cx, "QUIT").await.is_ok() {
        d.close(cx).await;
    }
    judge(cx, &greeting)
}

fn judge(cx: &Ctx, greeting: &Reply) -> Result<String, String> {
    if !matches!(greeting.code, 200 | 201) {
        return Err(format!("greeting is not 200 or 201: {}", greeting.quoted()));
    }
    tcp::banner_matches(cx, &greeting.text())?;
    Ok(net::clip(&greeting.text()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use crate::net::MAX_LINE;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    async fn run_against(a: SocketAddr, banner: Option<&str>, secs: f64) -> Outcome {
        let mut j = Job::new("nntp", "127.0.0.1", Some(a.port()));
        if let Some(b) = banner {
            j.options.insert("banner".into(), b.into());
        }
        check(&cx(j, secs)).await
    }

    fn answer(line: &str) -> Option<&'static str> {
        match line {
            "QUIT" => Some("205 closing connection\r\n"),
            _ => Some("500 what?\r\n"),
        }
    }

    fn up(detail: &str) -> Outcome {
        Outcome::Up {
            detail: Some(detail.into()),
        }
    }

    #[tokio::test]
    async fn greetings_200_and_201_pass_and_we_quit() {
        let (a, h) = scripted("200 news.example InterNetNews ready\r\n", answer).await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(out, up("200 news.example InterNetNews ready"));
        assert_eq!(heard(&h), ["QUIT"]);
        let (a, _) = scripted("201 read only\r\n", answer).await;
        assert_eq!(run_against(a, None, 2.0).await, up("201 read only"));
    }

    #[tokio::test]
    async fn banner_option_matches() {
        let (a, _) = scripted("200 InterNetNews ready\r\n", answer).await;
        assert!(run_against(a, Some("internetnews"), 2.0).await.is_up());
        let out = run_against(a, Some("leafnode"), 2.0).await;
        assert_eq!(
            out,
            Outcome::down("banner \"200 InterNetNews ready\" does not match /leafnode/")
        );
    }

    #[tokio::test]
    async fn wrong_greeting_fails() {
        let (a, _) = scripted("502 access denied\r\n", answer).await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("greeting is not 200 or 201: \"502 access denied\"")
        );
        let (a, _) = scripted("220 smtp.example ESMTP\r\n", answer).await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("greeting is not 200 or 201: \"220 smtp.example ESMTP\"")
        );
    }

    #[tokio::test]
    async fn flood_is_bounded() {
        let t = Instant::now();
        let a = flood(b"200 ").await;
        let out = run_against(a, None, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("line longer than {MAX_LINE} bytes"))
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
