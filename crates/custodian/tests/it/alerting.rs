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
    for verbose in [true, false] {
        let r = custodian(dir.path(), &["enqueue", "--queue", &url, "t.cfg"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mut args = worker.to_vec();
        if verbose {
            args.push("--verbose");
        }
        let r = custodian(dir.path(), &args);
        if verbose {
            assert!(
                r.stdout.contains("FAIL tcp 127.0.0.1"),
                "{}{}",
                r.stdout,
                r.stderr
            );
        } else {
            // Quiet by default: no line per job, a summary in the log instead.
            assert_eq!(r.stdout, "", "{}", r.stderr);
            assert!(
                r.stderr.contains("1 job(s), 1 failed, 0 unknown"),
                "{}",
                r.stderr
            );
        }
    }
    let lines = alerts(dir.path());
    assert_eq!(lines.len(), 1, "one raise over two workers: {lines:?}");
    assert!(lines[0].starts_with("RAISE: "), "{lines:?}");
    assert!(
        !dir.path().join("state.json").exists(),
        "states live in Redis, not in the file"
    );
}

/// Settings with the file alerter into `alerts.log` and states in `state_file`.
fn settings_with_state(dir: &std::path::Path, state_file: &std::path::Path, extra: &str) {
    let cfg = format!(
        "alerter = file\nfile_target = {}\nstate_file = {}\nrenotify = 0\nretries = 1\ntimeout = 3\n{extra}",
        dir.join("alerts.log").display(),
        state_file.display()
    );
    std::fs::write(dir.join("custodian.cfg"), cfg).expect("write cfg");
}

#[test]
fn an_unusable_state_location_stops_run_at_start_naming_it() {
    let port = closed_port();
    let dir = setup(port, "");
    // A file used as a directory: not creatable, even for root.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").expect("write");
    let state = blocker.join("state.json");
    settings_with_state(dir.path(), &state, "");
    let r = custodian(dir.path(), RUN);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&state.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("FAIL"), "nothing ran: {}", r.stdout);
}

/// Two `custodian run`s over the same failing checks and state file, started together (cron
/// runs that overlap): every check is raised once in all, and the file holds every check.
#[test]
fn overlapping_runs_merge_states_and_raise_once() {
    // Low ports on a loopback address nothing uses: refused, and never handed out to another
    // test's listener the way a freed ephemeral port can be.
    let lines: String = (1..=30)
        .map(|p| format!("127.83.41.9 must run tcp on {p} otherwise 'down'.\n"))
        .collect();
    let (dir, _) = file("t.cfg", &lines);
    settings_with_state(dir.path(), &dir.path().join("state.json"), "");
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args(RUN)
            .current_dir(dir.path())
            .env_remove("CUSTODIAN_LOG")
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().expect("a"), b.join().expect("b"))
    });
    for out in [a.expect("run a"), b.expect("run b")] {
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("could not be saved"), "{err}");
    }
    let raised = alerts(dir.path());
    assert_eq!(raised.len(), 30, "one raise per check: {raised:?}");
    assert!(
        raised.iter().all(|l| l.starts_with("RAISE: ")),
        "{raised:?}"
    );
    let state = std::fs::read_to_string(dir.path().join("state.json")).expect("state");
    assert_eq!(state.matches("\"health\"").count(), 30, "{state}");
}

/// A `state_redis` nobody listens on: the worker still delivers the raise, and says the
/// state could not be saved.
#[test]
fn an_unreachable_state_redis_still_delivers_the_alert() {
    let redis = custodian_testpeers::peers().get("redis_queue");
    let url = format!(
        "redis://{redis}/9?prefix=staterefused{}",
        std::process::id()
    );
    let dir = setup(
        closed_port(),
        &format!("state_redis = redis://127.0.0.1:{}/0\n", closed_port()),
    );
    let r = custodian(dir.path(), &["enqueue", "--queue", &url, "t.cfg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = custodian(
        dir.path(),
        &[
            "worker",
            "--settings",
            "custodian.cfg",
            "--queue",
            &url,
            "--drain",
        ],
    );
    assert!(r.stderr.contains("could not be saved"), "{}", r.stderr);
    let lines = alerts(dir.path());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("RAISE: "), "{lines:?}");
}

/// Without `state_file`, the state lives in `$STATE_DIRECTORY` (systemd's `StateDirectory=`).
#[test]
fn the_default_state_file_honours_state_directory() {
    let dir = setup(closed_port(), "");
    let cfg = std::fs::read_to_string(dir.path().join("custodian.cfg")).expect("cfg");
    let cfg: String = cfg
        .lines()
        .filter(|l| !l.starts_with("state_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("custodian.cfg"), cfg).expect("write cfg");
    let states = dir.path().join("states");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(RUN)
        .current_dir(dir.path())
        .env("STATE_DIRECTORY", &states)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(states.join("state.json").is_file());
    assert!(!dir.path().join("state.json").exists());
}

/// kill -9 after a raise was stored but before it was delivered (its webhook receiver never
/// answers): the notice stays in the outbox, and the next run, although the check's state
/// already says "raised", delivers it, once.
#[test]
fn a_notice_survives_kill_9_before_its_delivery() {
    let hung = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hook = hung.local_addr().expect("addr").port();
    let dir = setup(closed_port(), "");
    let cfg = std::fs::read_to_string(dir.path().join("custodian.cfg")).expect("cfg");
    let first = cfg.replace(
        "alerter = file\n",
        &format!("alerter = webhook\nwebhook_target = http://127.0.0.1:{hook}/\n"),
    );
    std::fs::write(dir.path().join("first.cfg"), first).expect("write cfg");
    let mut args = RUN.to_vec();
    args[2] = "first.cfg";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(&args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn run");
    // The delivery starts only after the raise is stored with its notice.
    let (held, _) = hung.accept().expect("the webhook delivery arrives");
    child.kill().expect("kill -9");
    let _ = child.wait();
    drop(held);
    let state = std::fs::read_to_string(dir.path().join("state.json")).expect("state");
    assert_eq!(state.matches("\"claim\"").count(), 1, "{state}");
    let r = custodian(dir.path(), RUN);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("left undelivered"), "{}", r.stderr);
    let lines = alerts(dir.path());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("RAISE: "), "{lines:?}");
    let state = std::fs::read_to_string(dir.path().join("state.json")).expect("state");
    assert_eq!(state.matches("\"claim\"").count(), 0, "{state}");
    // Delivered once: a third run has nothing left to send.
    assert_eq!(custodian(dir.path(), RUN).code, 1);
    assert_eq!(alerts(dir.path()).len(), 1);
}
