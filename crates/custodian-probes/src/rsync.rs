//! `rsync`: the daemon greets with `@RSYNCD: N.M` and lists its modules; with an
//! `rsync://HOST[:PORT]/MODULE` target the listing must name MODULE.
//!
//! Syntax: `HOST must run rsync [on PORT].` or `rsync://HOST[:PORT]/[MODULE[/PATH]] must run
//! rsync.` Default port 873. After the greeting we send our own version line and `#list`, the
//! same module-list request `rsync HOST::` makes, and read the listing (motd lines, then one
//! `NAME<spaces>\tCOMMENT` line per module) up to the daemon's `@RSYNCD: EXIT`: a clean exit in
//! the daemon's log, and proof it serves requests rather than just accepting connections. We
//! offer protocol 30, which every daemon since 3.0 speaks, so no checksum negotiation follows.
//! MODULE is the URL path's first segment, compared exactly (as the daemon does); a module
//! configured with `list = no` is not listed, so it fails. Without a module (`rsync://HOST/`)
//! any listing passes.
//! Down reasons: connection refused / timed out connecting; `greeting is not @RSYNCD: "…"`;
//! `daemon refused: "@ERROR: …"` (e.g. max connections reached); `module "M" is not listed
//! (listed: …)`; module list longer than 1000 lines; timed out or connection closed while
//! waiting; binary garbage; line longer than 8192 bytes.
//! Example: `rsync://mirror1/debian must run rsync otherwise 'debian mirror down'.`

use crate::dialog::Dialog;
use crate::{net, Ctx};
use custodian_core::{Outcome, ProbeSpec, TargetKind};
use tokio::net::TcpStream;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "rsync",
    aliases: &[],
    target: TargetKind::HostOrUrl(&["rsync"]),
    default_port: Some(873),
    port_required: false,
    takes_port: true,
    params: &[],
    summary: "the daemon greets with @RSYNCD: and lists its modules (the URL's module among them)",
    example: "rsync://127.0.0.1:873/pub must run rsync otherwise 'rsync down'.",
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
    let module = match module(&cx.job.target) {
        Ok(m) => m,
        Err(e) => return Outcome::unknown(e),
    };
    Outcome::from_result(run(cx, module.as_deref()).await)
}

/// The module an `rsync://` target names: its path's first segment, percent-decoded; none
/// for a plain host or `rsync://HOST/`.
fn module(target: &str) -> Result<Option<String>, String> {
    if !SPEC.target.is_url(target) {
        return Ok(None);
    }
    let url = url::Url::parse(target).map_err(|e| format!("the target is not a URL: {e}"))?;
    let first = url
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    let name = percent_encoding::percent_decode_str(first).decode_utf8_lossy();
    Ok(Some(name.into_owned()).filter(|n| !n.is_empty()))
}

async fn run(cx: &Ctx, module: Option<&str>) -> Result<String, String> {
    let mut d = Dialog::new(net::connect(cx).await?);
    let greeting = d.line(cx, "the greeting").await?;
    let version = judge_greeting(&greeting)?.to_string();
    d.send(cx, OUR_VERSION).await?;
    d.send(cx, "#list").await?;
    let modules = listing(&mut d, cx).await?;
    d.close(cx).await;
    judge_listing(&version, &modules, module)
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

/// Reads the listing up to `@RSYNCD: EXIT`; returns the names of the module lines
/// (`name`, padded with spaces, a tab, then the comment).
async fn listing(d: &mut Dialog<TcpStream>, cx: &Ctx) -> Result<Vec<String>, String> {
    let mut modules = Vec::new();
    for _ in 0..MAX_LISTING {
        let line = d.line(cx, "the module list").await?;
        if line == EXIT {
            return Ok(modules);
        }
        if line.starts_with("@ERROR") {
            return Err(format!("daemon refused: {:?}", net::clip(&line)));
        }
        if let Some((name, _comment)) = line.split_once('\t') {
            modules.push(name.trim_end().to_string());
        }
    }
    Err(format!("module list longer than {MAX_LISTING} lines"))
}

/// Passes when the listing names `module` (or, with none asked for, always).
fn judge_listing(
    version: &str,
    modules: &[String],
    module: Option<&str>,
) -> Result<String, String> {
    match module {
        None => Ok(format!(
            "rsync protocol {version}, {} modules listed",
            modules.len()
        )),
        Some(m) if modules.iter().any(|n| n == m) => {
            Ok(format!("rsync protocol {version}, module {m:?} listed"))
        }
        Some(m) if modules.is_empty() => Err(format!(
            "module {m:?} is not listed (the daemon lists none)"
        )),
        Some(m) => Err(format!(
            "module {m:?} is not listed (listed: {})",
            net::clip(&modules.join(", "))
        )),
    }
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

    async fn module_against(a: SocketAddr, path: &str) -> Outcome {
        let target = format!("rsync://127.0.0.1:{}/{path}", a.port());
        check(&cx(Job::new("rsync", &target, Some(a.port())), 2.0)).await
    }

    fn listing_two(line: &str) -> Option<&'static str> {
        match line {
            "#list" => Some("welcome to the mirror\npub            \tpublic files\ndebian         \t\n@RSYNCD: EXIT\n"),
            _ => Some(""),
        }
    }

    #[test]
    fn modules_come_from_the_url_path() {
        assert_eq!(module("mirror1"), Ok(None));
        assert_eq!(module("rsync://mirror1/"), Ok(None));
        assert_eq!(module("rsync://mirror1"), Ok(None));
        assert_eq!(module("rsync://mirror1:8873/pub"), Ok(Some("pub".into())));
        assert_eq!(
            module("rsync://mirror1/debian/dists/"),
            Ok(Some("debian".into()))
        );
        assert_eq!(
            module("rsync://mirror1/my%20files"),
            Ok(Some("my files".into()))
        );
    }

    #[test]
    fn listings_are_judged_by_module() {
        let mods = vec!["pub".to_string(), "debian".to_string()];
        assert_eq!(
            judge_listing("31.0", &mods, Some("debian")),
            Ok("rsync protocol 31.0, module \"debian\" listed".into())
        );
        assert_eq!(
            judge_listing("31.0", &mods, Some("Debian")),
            Err("module \"Debian\" is not listed (listed: pub, debian)".into())
        );
        assert_eq!(
            judge_listing("31.0", &[], Some("pub")),
            Err("module \"pub\" is not listed (the daemon lists none)".into())
        );
        assert_eq!(
            judge_listing("30.0", &mods, None),
            Ok("rsync protocol 30.0, 2 modules listed".into())
        );
    }

    #[tokio::test]
    async fn a_listed_module_passes_and_a_missing_one_is_named() {
        let (a, h) = scripted(GREETING, listing_two).await;
        assert_eq!(
            module_against(a, "debian/pool").await,
            Outcome::Up {
                detail: Some("rsync protocol 31.0, module \"debian\" listed".into())
            }
        );
        assert_eq!(heard(&h), ["@RSYNCD: 30.0", "#list"]);
        assert_eq!(
            module_against(a, "ubuntu").await,
            Outcome::down("module \"ubuntu\" is not listed (listed: pub, debian)")
        );
        assert!(
            module_against(a, "").await.is_up(),
            "no module: the greeting check"
        );
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
