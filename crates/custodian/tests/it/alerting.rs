//! Alerting through the binary: `custodian run` from cron keeps its state file and alerts only
//! on transitions; `custodian worker` keeps states in the broker's Redis.

use crate::common::*;
use std::net::TcpListener;

/// A check of one loopback port, with alerts into `alerts.log` and states in `state.json`.
fn setup(port: u16, extra: &str) -> tempfile::TempDir {
    let (dir, _) = file(
        "t.cfg",
        &format!("127.0.0.1 must run tcp on {port} otherwise 'service down'.\n"),
    );
    let cfg = format!(
        "alerter = file\nfile_target = {}\nstate_file = {}\nrenotify = 0\nretries = 1\ntimeout = 3\n{extra}",
        dir.path().join("alerts.log").display(),
        dir.path().join("state.json").display()
    );
    std::fs::write(dir.path().join("custodian.cfg"), cfg).expect("write cfg");
    dir
}

fn alerts(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("alerts.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

const RUN: &[&str] = &[
    "run",
    "--settings",
    "custodian.cfg",
    "--retries",
    "1",
    "--timeout",
    "3",
    "t.cfg",
];

#[test]
fn cron_runs_alert_only_on_transitions() {
    let port = closed_port();
    let dir = setup(port, "");
    for _ in 0..3 {
        assert_eq!(custodian(dir.path(), RUN).code, 1);
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("rebind the port");
    assert_eq!(custodian(dir.path(), RUN).code, 0);
    assert_eq!(custodian(dir.path(), RUN).code, 0);
    drop(listener);
    let lines = alerts(dir.path());
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("RAISE: 127.0.0.1 must run tcp on {port}"))
            && lines[0].ends_with(": connection refused"),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("CLEAR: "), "{lines:?}");
    let state = std::fs::read_to_string(dir.path().join("state.json")).expect("state");
    assert!(state.contains("\"health\": \"passing\""), "{state}");
}

#[test]
fn workers_keep_states_in_redis() {
    let redis = custodian_testpeers::peers().get("redis_queue");
    let url = format!("redis://{redis}/9?prefix=alerting{}", std::process::id());
    let port = closed_port();
    let dir = setup(port, "");
    let worker = [
        "worker",
        "--settings",
        "custodian.cfg",
        "--queue",
        &url,
        "--drain",
    ];
    for _ in 0..2 {
        let r = custodian(dir.path(), &["enqueue", "--queue", &url, "t.cfg"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let r = custodian(dir.path(), &worker);
        assert!(
            r.stdout.contains("FAIL tcp 127.0.0.1"),
            "{}{}",
            r.stdout,
            r.stderr
        );
    }
    let lines = alerts(dir.path());
    assert_eq!(lines.len(), 1, "one raise over two workers: {lines:?}");
    assert!(lines[0].starts_with("RAISE: "), "{lines:?}");
    assert!(
        !dir.path().join("state.json").exists(),
        "states live in Redis, not in the file"
    );
}
