//! `${env:..}` references in http header values, URL passwords and `fetched from` URLs, through
//! the binary: `check --json` shows only the reference (masked where the option is a
//! credential), `run` sends the value read and never prints it.

use crate::common::{file, Run};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "tok-7c1e9d";
const PW: &str = "pw-4b8a2f";

/// `custodian ARGS` in `dir` with `env` set (the worker's environment).
fn custodian_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env_remove("CUSTODIAN_LOG")
        .output()
        .expect("run custodian");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A loopback HTTP server recording each request head and answering `respond(head)`.
fn server(respond: fn(&str) -> String) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(3)));
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let _ = s.write_all(respond(&head).as_bytes());
            log.lock().expect("log").push(head);
        }
    });
    (addr, seen)
}

fn reply(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// 200 when the bearer token read from the environment arrived; otherwise 401 with a body
/// and a redirect-free reason. `/echo` fails naming the token in its final URL.
fn bearer(head: &str) -> String {
    let first = head.lines().next().unwrap_or("");
    if first.starts_with("GET /echo ") || first.starts_with("GET /echo?") {
        return reply("302 Found", &format!("location: /gone/{TOKEN}\r\n"), "");
    }
    if first.starts_with("GET /gone/") {
        return reply("500 Oops", "", "");
    }
    let lower = head.to_ascii_lowercase();
    if lower.contains(&format!("authorization: bearer {TOKEN}")) {
        reply("200 OK", "", "ok")
    } else {
        reply("401 Unauthorized", "", "")
    }
}

#[test]
fn header_references_are_masked_in_check_and_sent_resolved_by_run() {
    let (addr, seen) = server(bearer);
    let port = addr.port();
    let (dir, _) = file(
        "t.cfg",
        &format!(
            "http://127.0.0.1:{port}/ must run http with header 'Authorization: Bearer ${{env:CUSTODIAN_IT_TOKEN}}'.\n\
             http://127.0.0.1:{port}/echo must run http with header 'Authorization: Bearer ${{env:CUSTODIAN_IT_TOKEN}}'.\n"
        ),
    );
    let env = [("CUSTODIAN_IT_TOKEN", TOKEN)];
    let check = custodian_with(dir.path(), &env, &["check", "--json", "t.cfg"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(!check.stdout.contains(TOKEN), "{}", check.stdout);
    let job: serde_json::Value =
        serde_json::from_str(check.stdout.lines().next().expect("a job")).expect("json");
    assert_eq!(job["options"]["header"], "Authorization: ********");

    let run = custodian_with(
        dir.path(),
        &env,
        &["run", "--json", "--retries", "1", "t.cfg"],
    );
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(!all.contains(TOKEN), "secret printed: {all}");
    let results: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(results.len(), 2, "{all}");
    let passed = results.iter().filter(|r| r["status"] == "passed").count();
    assert_eq!(passed, 1, "the token reached the server: {all}");
    let failed = results
        .iter()
        .find(|r| r["status"] == "failed")
        .expect("the /echo check fails");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("/gone/********"), "{error}");
    let heads = seen.lock().expect("log").clone();
    assert!(
        heads.iter().all(|h| !h.contains("${") && h.contains(TOKEN)),
        "{heads:?}"
    );
}

#[test]
fn an_unset_variable_makes_the_check_unknown() {
    let (addr, seen) = server(bearer);
    let (dir, _) = file(
        "t.cfg",
        &format!(
            "http://mon:${{env:CUSTODIAN_IT_UNSET_PW}}@127.0.0.1:{}/ must run http.\n",
            addr.port()
        ),
    );
    let check = custodian_with(dir.path(), &[], &["check", "t.cfg"]);
    assert_eq!(check.code, 0, "syntax alone is checked: {}", check.stderr);
    let run = custodian_with(
        dir.path(),
        &[],
        &["run", "--json", "--retries", "1", "t.cfg"],
    );
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(v["status"], "unknown", "{}", run.stdout);
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("environment variable CUSTODIAN_IT_UNSET_PW is not set"),
        "{error}"
    );
    assert!(seen.lock().expect("log").is_empty(), "nothing was sent");
}

/// Serves a host list only to basic auth `u:PW` (base64 below).
fn listing(head: &str) -> String {
    const BASIC: &str = "dTpwdy00YjhhMmY=";
    if head.to_ascii_lowercase().contains(&format!(
        "authorization: basic {}",
        BASIC.to_ascii_lowercase()
    )) {
        reply("200 OK", "", "127.0.0.7\n127.0.0.8\n")
    } else {
        reply("401 Unauthorized", "", "")
    }
}

#[test]
fn fetched_from_urls_read_their_password_and_never_print_it() {
    let (addr, _) = server(listing);
    let (dir, _) = file(
        "t.cfg",
        &format!(
            "HOSTS are fetched from http://u:${{env:CUSTODIAN_IT_LIST_PW}}@127.0.0.1:{}/list\n\
             HOSTS must run ssh.\n",
            addr.port()
        ),
    );
    let ok = custodian_with(
        dir.path(),
        &[("CUSTODIAN_IT_LIST_PW", PW)],
        &["check", "--json", "t.cfg"],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let targets: Vec<String> = ok
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["target"].to_string())
        .collect();
    assert_eq!(targets, ["\"127.0.0.7\"", "\"127.0.0.8\""]);

    let wrong = custodian_with(
        dir.path(),
        &[("CUSTODIAN_IT_LIST_PW", "not-it")],
        &["check", "t.cfg"],
    );
    assert_eq!(wrong.code, 2);
    assert!(wrong.stderr.contains("401"), "{}", wrong.stderr);
    assert!(!wrong.stderr.contains("not-it"), "{}", wrong.stderr);
    let unset = custodian_with(dir.path(), &[], &["check", "t.cfg"]);
    assert_eq!(unset.code, 2);
    assert!(
        unset
            .stderr
            .contains("environment variable CUSTODIAN_IT_LIST_PW is not set"),
        "{}",
        unset.stderr
    );
    assert!(
        unset.stderr.contains("http://u:********@127.0.0.1"),
        "{}",
        unset.stderr
    );
}
