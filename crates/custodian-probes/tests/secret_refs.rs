//! `${env:..}` / `${file:..}` references in an http header's value and an http(s) URL's
//! password: checked by the planner with a span, carried by the job only as written (masked in
//! its JSON, the id independent of the value), read by the worker, sent resolved to a loopback
//! server, and scrubbed from reasons.

use base64::Engine;
use custodian_core::dsl::{expand, parse, Diagnostic};
use custodian_core::{plan, Job, Outcome};
use custodian_probes::{find, specs, Ctx};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Plans `src` with the real probe specs.
fn planned(src: &str) -> (Vec<Job>, Vec<Diagnostic>) {
    let (file, diags) = parse("t.cfg", src);
    assert!(diags.is_empty(), "{diags:?}");
    let files = [file];
    let (tests, diags) = expand(&files, &mut |_| Err("no network".to_string()));
    assert!(diags.is_empty(), "{diags:?}");
    plan::plan(&tests, &specs(), true)
}

fn one_job(src: &str) -> Job {
    let (jobs, diags) = planned(src);
    assert!(diags.is_empty(), "{src}: {diags:?}");
    assert_eq!(jobs.len(), 1);
    jobs.into_iter().next().expect("one job")
}

fn one_error(src: &str) -> Diagnostic {
    let (jobs, diags) = planned(src);
    assert!(jobs.is_empty(), "{src}: planned anyway");
    assert_eq!(diags.len(), 1, "{src}: {diags:?}");
    diags.into_iter().next().expect("one diagnostic")
}

#[test]
fn planner_checks_reference_syntax_with_a_span() {
    let line =
        "http://127.0.0.1/ must run http with header 'Authorization: Bearer ${env:BAD-NAME}'.";
    let d = one_error(line);
    assert!(d.is_error());
    assert_eq!(d.message, "`BAD-NAME` is not an environment variable name");
    // The caret sits on the header's quoted value.
    let col = line.find("'Authorization").expect("quote") as u32 + 1;
    assert_eq!(d.col, col, "{d:?}");
    let d = one_error("http://127.0.0.1/ must run http with header 'X-Key: ${vault:k}'.");
    assert_eq!(d.message, "unknown secret source `vault`");

    let d = one_error("http://mon:${env:1PW}@127.0.0.1/ must run http.");
    assert!(d.message.starts_with("URL password: "), "{d:?}");
    assert_eq!((d.col, d.width), (1, 32), "the caret covers the URL");
    // ftp reads URL passwords itself and would send the reference as written.
    let d = one_error("ftp://mon:${env:PW}@127.0.0.1/ must run ftp.");
    assert!(
        d.message.contains("cannot read the URL's password"),
        "{d:?}"
    );
}

#[test]
fn jobs_hold_references_masked_and_ids_do_not_depend_on_them() {
    let j = one_job(
        "https://mon:${env:CUSTODIAN_IT_WEB_PW}@127.0.0.1/ must run https \
         with header 'Authorization: Bearer ${env:CUSTODIAN_IT_TOKEN}'.",
    );
    // The wire form keeps the reference (the worker reads it); no value is known here.
    assert_eq!(
        j.target,
        "https://mon:${env:CUSTODIAN_IT_WEB_PW}@127.0.0.1/"
    );
    assert_eq!(
        j.opt_str("header"),
        Some("Authorization: Bearer ${env:CUSTODIAN_IT_TOKEN}")
    );
    assert_eq!(j.display_target(), "https://mon:********@127.0.0.1/");
    assert_eq!(
        j.masked_options()["header"],
        serde_json::json!("Authorization: ********")
    );
    assert!(!j.line.contains("CUSTODIAN_IT"), "{}", j.line);
    // Rotating the secret, or moving it to another variable, keeps the check's id.
    let other = one_job(
        "https://mon:literal@127.0.0.1/ must run https \
         with header 'Authorization: Bearer ${env:ELSEWHERE}'.",
    );
    assert_eq!(j.id(), other.id());
    let user = one_job(
        "https://bob:${env:CUSTODIAN_IT_WEB_PW}@127.0.0.1/ must run https \
         with header 'Authorization: Bearer ${env:CUSTODIAN_IT_TOKEN}'.",
    );
    assert_ne!(j.id(), user.id(), "the user name still counts");
}

/// A one-shot-per-connection HTTP server: records each request head and answers with
/// `respond(head)`.
async fn server(respond: fn(&str) -> String) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let reply = respond(&head);
                log.lock().expect("log").push(head);
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

/// `/` redirects to a path holding whatever Authorization arrived, which then fails: the
/// reason names that final URL, so it must come out scrubbed.
fn echo_auth_in_redirect(head: &str) -> String {
    let first = head.lines().next().unwrap_or("");
    if first.starts_with("GET /next") {
        return "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into();
    }
    let token = head
        .lines()
        .find_map(|l| l.strip_prefix("x-token: "))
        .unwrap_or("none")
        .trim()
        .to_string();
    format!(
        "HTTP/1.1 302 Found\r\nlocation: /next/{token}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}

fn ok(_: &str) -> String {
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".into()
}

async fn check(job: Job, addr: SocketAddr) -> Outcome {
    let probe = find(&job.probe).expect("type");
    let deadline = Instant::now() + Duration::from_secs(5);
    let cx = Ctx::new(Arc::new(job), Some(addr.ip()), deadline);
    (probe.check)(&cx).await
}

// Each test sets its own variables: names are unique to this file, so the process's other
// tests never read them.
#[tokio::test]
async fn header_and_url_password_arrive_resolved_and_reasons_stay_masked() {
    std::env::set_var("CUSTODIAN_IT_TOKEN_A", "tok-3f9a7c");
    std::env::set_var("CUSTODIAN_IT_PW_A", "pw:3f9a/7c");
    let (addr, seen) = server(ok).await;
    let port = addr.port();
    let job = one_job(&format!(
        "http://mon:${{env:CUSTODIAN_IT_PW_A}}@127.0.0.1:{port}/ must run http \
         with header 'Authorization: Bearer ${{env:CUSTODIAN_IT_TOKEN_A}}'."
    ));
    let body = serde_json::to_string(&job).expect("json");
    assert!(
        !body.contains("tok-3f9a7c") && !body.contains("3f9a/7c"),
        "{body}"
    );
    let out = check(job, addr).await;
    assert!(out.is_up(), "{out:?}");
    let heads = seen.lock().expect("log").clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    // `with header` wins over the URL's basic auth for the one Authorization header the
    // server keeps; both were resolved before sending.
    let lower = heads[0].to_ascii_lowercase();
    assert!(
        lower.contains("authorization: bearer tok-3f9a7c"),
        "{}",
        heads[0]
    );
    assert!(
        !heads[0].contains("${"),
        "a reference was sent: {}",
        heads[0]
    );

    // Basic auth alone: the password read, percent-decoding and all.
    let (addr, seen) = server(ok).await;
    let job = one_job(&format!(
        "http://mon:${{env:CUSTODIAN_IT_PW_A}}@127.0.0.1:{}/ must run http.",
        addr.port()
    ));
    assert!(check(job, addr).await.is_up());
    let basic = base64::engine::general_purpose::STANDARD.encode("mon:pw:3f9a/7c");
    let head = seen.lock().expect("log")[0].clone();
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "authorization: basic {}",
            basic.to_ascii_lowercase()
        )),
        "{head}"
    );
}

#[tokio::test]
async fn a_value_echoed_by_the_server_is_masked_in_the_reason() {
    std::env::set_var("CUSTODIAN_IT_TOKEN_B", "echoed-5d2e1b");
    let (addr, _) = server(echo_auth_in_redirect).await;
    let job = one_job(&format!(
        "http://127.0.0.1:{}/ must run http with header 'X-Token: ${{env:CUSTODIAN_IT_TOKEN_B}}'.",
        addr.port()
    ));
    let Outcome::Down { reason } = check(job, addr).await else {
        panic!("expected down")
    };
    assert!(reason.contains("final URL"), "{reason}");
    assert!(!reason.contains("echoed-5d2e1b"), "leaked: {reason}");
    assert!(reason.contains("/next/********"), "{reason}");
}

#[tokio::test]
async fn an_unset_variable_is_unknown_not_down() {
    let (addr, seen) = server(ok).await;
    let job = one_job(&format!(
        "http://127.0.0.1:{}/ must run http with header 'Authorization: Bearer ${{env:CUSTODIAN_IT_NEVER_SET}}'.",
        addr.port()
    ));
    let out = check(job, addr).await;
    let Outcome::Unknown { error } = out else {
        panic!("expected unknown, got {out:?}")
    };
    assert!(
        error.contains("environment variable CUSTODIAN_IT_NEVER_SET is not set"),
        "{error}"
    );
    assert!(seen.lock().expect("log").is_empty(), "nothing is sent");
    let job = one_job(&format!(
        "http://mon:${{env:CUSTODIAN_IT_NEVER_SET}}@127.0.0.1:{}/ must run http.",
        addr.port()
    ));
    let Outcome::Unknown { error } = check(job, addr).await else {
        panic!("expected unknown")
    };
    assert!(
        error.contains("URL password: environment variable"),
        "{error}"
    );
}
