//! `custodian run` end to end against loopback servers: table, JSON, exit codes.

use crate::common::*;
use std::sync::atomic::Ordering;

#[test]
fn failures_come_first_and_exit_is_1() {
    let (up, _) = greeter("SSH-2.0-OpenSSH_9.2\r\n");
    let down = closed_port();
    let text = format!(
        "127.0.0.1 must run ssh on {} otherwise 'ssh ok'.\n127.0.0.1 must run ssh on {down} otherwise 'ssh is down'.\n\
         127.0.0.1 must not run tcp on {down} otherwise 'nothing may listen'.\n",
        up.port()
    );
    let (dir, _) = file("t.cfg", &text);
    let r = custodian(
        dir.path(),
        &["run", "--retries", "1", "--timeout", "3", "t.cfg"],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("STATUS"), "{}", r.stdout);
    assert!(
        lines[1].starts_with("FAIL")
            && lines[1].contains("connection refused")
            && lines[1].contains("otherwise 'ssh is down'"),
        "{}",
        r.stdout
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("ok")).count(),
        2,
        "{}",
        r.stdout
    );
    let summary = lines.last().expect("summary");
    assert!(
        summary.starts_with("2 passed, 1 failed, 0 unknown, 0 skipped in "),
        "{summary}"
    );
}

#[test]
fn all_passing_exits_0_and_json_has_the_fields() {
    let (up, _) = greeter("220 mail ESMTP\r\n");
    let (dir, _) = file(
        "t.cfg",
        &format!(
            "127.0.0.1 must run tcp on {} with banner '^220'.\n",
            up.port()
        ),
    );
    let r = custodian(dir.path(), &["run", "--json", "--retries", "2", "t.cfg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one json line");
    assert_eq!(v["status"], "passed");
    assert_eq!(v["type"], "tcp");
    assert_eq!(v["attempts"], 1);
    assert!(v["error"].is_null());
    assert!(v["duration_ms"].as_u64().is_some());
    assert!(v["line"].as_str().unwrap_or("").contains("with banner"));
    assert!(
        r.stderr
            .contains("1 passed, 0 failed, 0 unknown, 0 skipped"),
        "{}",
        r.stderr
    );
}

#[test]
fn retries_mean_total_attempts() {
    let down = closed_port();
    let (dir, _) = file("t.cfg", &format!("127.0.0.1 must run tcp on {down}.\n"));
    let r = custodian(
        dir.path(),
        &[
            "run",
            "--json",
            "--retries",
            "3",
            "--retry-delay",
            "0.05",
            "t.cfg",
        ],
    );
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("json");
    assert_eq!(v["attempts"], 3);
    assert_eq!(v["status"], "failed");
}

#[test]
fn a_config_error_means_nothing_runs() {
    let (up, hits) = greeter("SSH-2.0-x\r\n");
    let (dir, _) = file(
        "t.cfg",
        &format!(
            "127.0.0.1 must run ssh on {}.\n127.0.0.1 must run sshh.\n",
            up.port()
        ),
    );
    let r = custodian(dir.path(), &["run", "t.cfg"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("t.cfg:2:"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was run"), "{}", r.stderr);
    // Give the accept thread time to count a connection that may have raced the exit.
    #[allow(clippy::disallowed_methods)] // a plain test thread, no async runtime to block
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a check ran despite the error"
    );
}

#[test]
fn settings_file_sets_defaults_and_flags_override() {
    let down = closed_port();
    let (dir, _) = file("t.cfg", &format!("127.0.0.1 must run tcp on {down}.\n"));
    std::fs::write(dir.path().join("c.cfg"), "retries = 2\nretry_delay = 0\n").expect("write");
    let from_file = custodian(
        dir.path(),
        &["run", "--json", "--settings", "c.cfg", "t.cfg"],
    );
    let v: serde_json::Value = serde_json::from_str(from_file.stdout.trim()).expect("json");
    assert_eq!(v["attempts"], 2);
    let flag = custodian(
        dir.path(),
        &[
            "run",
            "--json",
            "--settings",
            "c.cfg",
            "--retries",
            "1",
            "t.cfg",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(flag.stdout.trim()).expect("json");
    assert_eq!(v["attempts"], 1);
}

/// Our own nameserver not answering is "unknown" (exit 3), never a pass, not even for
/// `must not run`; a real failure beside it outranks it (exit 1).
#[test]
fn our_dead_nameserver_is_unknown_with_exit_3() {
    let dead = closed_port();
    let settings = format!("nameservers = [\"127.0.0.1:{dead}\"]\ntimeout = 2\nretries = 1\n");
    let (dir, _) = file(
        "t.cfg",
        "127.0.0.2 must not run dnsbl via 'bl.test' otherwise 'listed'.\n",
    );
    std::fs::write(dir.path().join("s.toml"), settings).expect("write");
    let r = custodian(
        dir.path(),
        &["run", "--json", "--settings", "s.toml", "t.cfg"],
    );
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("json");
    assert_eq!(v["status"], "unknown", "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("could not check")),
        "{v}"
    );
    assert!(
        r.stderr.contains("0 passed, 0 failed, 1 unknown"),
        "{}",
        r.stderr
    );
    let both =
        format!("127.0.0.2 must not run dnsbl via 'bl.test'.\n127.0.0.1 must run ssh on {dead}.\n");
    std::fs::write(dir.path().join("t.cfg"), both).expect("write");
    let r = custodian(dir.path(), &["run", "--settings", "s.toml", "t.cfg"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[1].starts_with("FAIL") && lines[2].starts_with("UNKNOWN"),
        "{}",
        r.stdout
    );
}

/// A server's escape sequences never reach the operator's terminal: the greeting's ESC and
/// BEL are shown escaped (`\u{1b}`, `\u{7}`) in the table and in `--json`, whether the
/// probe quoted it (smtp: a banner that does not match) or passed it on raw (tcp under
/// `must not run`: the "service is running" detail).
#[test]
fn a_hostile_greeting_is_escaped_in_every_output() {
    let (a, _) = greeter("220 \x1b]0;pwned\x07\x1b[2J hi\r\n");
    let text = format!(
        "127.0.0.1 must run smtp on {p} with banner 'exim'.\n\
         127.0.0.1 must not run tcp on {p} with banner '^220'.\n",
        p = a.port()
    );
    let (dir, _) = file("t.cfg", &text);
    let raw = |s: &str| s.contains(['\x1b', '\x07']);
    let table = custodian(dir.path(), &["run", "t.cfg"]);
    assert_eq!(table.code, 1, "{}{}", table.stdout, table.stderr);
    assert!(
        !raw(&table.stdout) && !raw(&table.stderr),
        "{:?}{:?}",
        table.stdout,
        table.stderr
    );
    let lines: Vec<&str> = table.stdout.lines().collect();
    // The header, one row per line, then the summary.
    assert_eq!(lines.len(), 4, "{}", table.stdout);
    for line in &lines[1..3] {
        assert!(
            line.starts_with("FAIL") && line.contains(r"220 \u{1b}]0;pwned\u{7}\u{1b}[2J hi"),
            "{}",
            table.stdout
        );
    }
    let json = custodian(dir.path(), &["run", "--json", "t.cfg"]);
    assert_eq!(json.code, 1, "{}{}", json.stdout, json.stderr);
    assert!(!json.stdout.contains(r"\u001b") && !json.stdout.contains(r"\u0007"));
    let errors: Vec<String> = json
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["error"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(errors.len(), 2, "{}", json.stdout);
    for e in &errors {
        assert!(!raw(e), "{e:?}");
        assert!(e.contains(r"220 \u{1b}]0;pwned\u{7}\u{1b}[2J hi"), "{e}");
    }
}
