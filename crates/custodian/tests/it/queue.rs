//! Distributed mode end to end: `enqueue`, several `worker` processes and `queue` against the
//! real beanstalkd and Redis peers (each test on its own tube or key prefix).
// Plain threads driving processes: no async runtime here to block.
#![allow(clippy::disallowed_methods)]

use crate::common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A queue URL of `kind` (`beanstalk` or `redis`) no other test uses.
pub(crate) fn fresh_queue(kind: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "it-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let peers = custodian_testpeers::peers();
    match kind {
        "beanstalk" => format!("beanstalk://{}/{name}", peers.get("beanstalk")),
        _ => format!("redis://{}/0?prefix={name}", peers.get("redis_queue")),
    }
}

/// A loopback server that waits `delay` before greeting each client (one thread per client).
pub(crate) fn slow_greeter(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = s.write_all(b"SSH-2.0-fake\r\n");
            });
        }
    });
    addr
}

/// A test file of `n` distinct checks against `addr`, plus a settings file allowing many
/// checks per host at once; returns the dir and the file names.
pub(crate) fn workload(n: usize, addr: SocketAddr) -> tempfile::TempDir {
    let lines: String = (0..n)
        .map(|i| {
            format!(
                "127.0.0.1 must run tcp on {} with banner '^SSH|never{i}' with timeout 3 with retries 1.\n",
                addr.port()
            )
        })
        .collect();
    let (dir, _) = file("jobs.cfg", &lines);
    std::fs::write(dir.path().join("s.toml"), "per_host = 1000\n").expect("settings");
    dir
}

/// `custodian worker --json --drain` on `url`, its stdout collected by a thread.
pub(crate) struct Worker {
    pub(crate) child: Child,
    out: JoinHandle<Vec<String>>,
    err: JoinHandle<String>,
}

impl Worker {
    pub(crate) fn start(dir: &Path, url: &str, name: &str, extra: &[&str]) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args([
                "worker",
                "--queue",
                url,
                "--json",
                "--name",
                name,
                "--settings",
                "s.toml",
            ])
            .args(extra)
            .current_dir(dir)
            .env_remove("CUSTODIAN_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn worker");
        let stdout = child.stdout.take().expect("stdout");
        let out = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect()
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        Worker { child, out, err }
    }

    /// Waits for exit (at most `limit`); returns the exit code and the result lines.
    pub(crate) fn finish(self, limit: Duration) -> (Option<i32>, Vec<String>) {
        let (code, lines, _) = self.finish_logged(limit);
        (code, lines)
    }

    /// [`Worker::finish`], plus what the worker logged.
    pub(crate) fn finish_logged(mut self, limit: Duration) -> (Option<i32>, Vec<String>, String) {
        let end = Instant::now() + limit;
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status.code();
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("worker did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (
            code,
            self.out.join().expect("reader"),
            self.err.join().expect("reader"),
        )
    }
}

/// Result lines by job id: how many times each id was reported.
pub(crate) fn tally(lines: &[String]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["worker"].is_string(), "{line}");
        let id = v["id"].as_str().expect("id").to_string();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

/// The ids `check --json` gives for the jobs file: what must come out.
pub(crate) fn expected_ids(dir: &Path) -> Vec<String> {
    let r = custodian(dir, &["check", "--json", "jobs.cfg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect()
}

fn status(dir: &Path, url: &str) -> HashMap<String, String> {
    let r = custodian(dir, &["queue", "--queue", url, "status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn three_workers_drain_every_job_once(kind: &str) {
    let dir = workload(2000, slow_greeter(Duration::ZERO));
    let url = fresh_queue(kind);
    let r = custodian(dir.path(), &["enqueue", "--queue", &url, "jobs.cfg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("enqueued 2000 job(s)"), "{}", r.stdout);
    let workers: Vec<Worker> = (0..3)
        .map(|i| {
            Worker::start(
                dir.path(),
                &url,
                &format!("w{i}"),
                &["--drain", "--concurrency", "50"],
            )
        })
        .collect();
    let mut lines = Vec::new();
    for w in workers {
        let (code, out) = w.finish(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{kind}: every check passes");
        lines.extend(out);
    }
    let seen = tally(&lines);
    let want = expected_ids(dir.path());
    assert_eq!(want.len(), 2000);
    for id in &want {
        assert_eq!(seen.get(id), Some(&1), "{kind}: job {id}");
    }
    assert_eq!(lines.len(), 2000, "{kind}: no extra results");
    assert_eq!(status(dir.path(), &url)["pending"], "0");
}

#[test]
fn three_beanstalk_workers_drain_2000_jobs_exactly_once() {
    three_workers_drain_every_job_once("beanstalk");
}

#[test]
fn three_redis_workers_drain_2000_jobs_exactly_once() {
    three_workers_drain_every_job_once("redis");
}

/// Kills one of three workers mid-run: every outcome must still arrive.
fn a_killed_worker_loses_nothing(kind: &str) {
    let dir = workload(600, slow_greeter(Duration::from_millis(200)));
    let url = fresh_queue(kind);
    assert_eq!(
        custodian(dir.path(), &["enqueue", "--queue", &url, "jobs.cfg"]).code,
        0
    );
    let mut victim = Worker::start(
        dir.path(),
        &url,
        "victim",
        &["--drain", "--concurrency", "10"],
    );
    let others: Vec<Worker> = (0..2)
        .map(|i| {
            Worker::start(
                dir.path(),
                &url,
                &format!("w{i}"),
                &["--drain", "--concurrency", "10"],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    victim.child.kill().expect("SIGKILL");
    let (_, mut lines) = victim.finish(Duration::from_secs(5));
    assert!(
        !lines.is_empty() && lines.len() < 600,
        "{kind}: killed mid-run after {} results",
        lines.len()
    );
    for w in others {
        let (code, out) = w.finish(Duration::from_secs(40));
        assert_eq!(code, Some(0), "{kind}");
        lines.extend(out);
    }
    let seen = tally(&lines);
    let want = expected_ids(dir.path());
    let missing = want.iter().filter(|id| !seen.contains_key(*id)).count();
    assert_eq!(missing, 0, "{kind}: outcomes lost");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "{kind}: {} results, {duplicates} duplicate(s) after SIGKILL",
        lines.len()
    );
    assert!(
        duplicates <= 12,
        "{kind}: only the victim's leases run twice, got {duplicates}"
    );
}

#[test]
fn a_sigkilled_beanstalk_worker_loses_nothing() {
    a_killed_worker_loses_nothing("beanstalk");
}

#[test]
fn a_sigkilled_redis_worker_loses_nothing() {
    a_killed_worker_loses_nothing("redis");
}

/// beanstalkd has no lookup by content: `enqueue` keeps beanstalkd's id of each job it put in a
/// file beside the state file, so the next run skips the jobs still pending (issue 12).
#[test]
fn a_second_beanstalk_enqueue_skips_what_is_still_pending() {
    let (up, _) = greeter("SSH-2.0-x\r\n");
    let url = fresh_queue("beanstalk");
    let port = up.port();
    let (dir, _) = file(
        "ok.cfg",
        &format!("127.0.0.1 must run tcp on {port}.\n127.0.0.1 must run ssh on {port}.\n"),
    );
    std::fs::write(dir.path().join("s.toml"), "state_file = \"state.json\"\n").expect("write");
    let enqueue = || {
        custodian(
            dir.path(),
            &["enqueue", "--queue", &url, "--settings", "s.toml", "ok.cfg"],
        )
    };
    let first = enqueue();
    assert!(
        first.stdout.starts_with("enqueued 2 job(s)"),
        "{}{}",
        first.stdout,
        first.stderr
    );
    let again = enqueue();
    assert!(
        again.stdout.starts_with("enqueued 0 job(s)")
            && again.stdout.contains("(2 already pending)"),
        "{}{}",
        again.stdout,
        again.stderr
    );
    let kept = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("enqueued-beanstalk-")
        });
    assert!(kept, "no put-ids file beside the state file");
    let r = custodian(dir.path(), &["queue", "--queue", &url, "flush"]);
    assert!(r.stdout.starts_with("flushed 2 job(s)"), "{}", r.stdout);
}

#[test]
fn enqueue_is_all_or_nothing_and_skips_pending_duplicates() {
    let (up, _) = greeter("SSH-2.0-x\r\n");
    let url = fresh_queue("redis");
    let (dir, _) = file(
        "bad.cfg",
        &format!(
            "127.0.0.1 must run tcp on {}.\n127.0.0.1 must run nosuchtype.\n",
            up.port()
        ),
    );
    let r = custodian(dir.path(), &["enqueue", "--queue", &url, "bad.cfg"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(status(dir.path(), &url)["pending"], "0");
    std::fs::write(
        dir.path().join("ok.cfg"),
        format!("127.0.0.1 must run tcp on {}.\n", up.port()),
    )
    .expect("write");
    assert!(
        custodian(dir.path(), &["enqueue", "--queue", &url, "ok.cfg"])
            .stdout
            .starts_with("enqueued 1 job(s)")
    );
    let again = custodian(dir.path(), &["enqueue", "--queue", &url, "ok.cfg"]);
    assert!(
        again.stdout.starts_with("enqueued 0 job(s)")
            && again.stdout.contains("(1 already pending)"),
        "{}",
        again.stdout
    );
    let s = status(dir.path(), &url);
    assert_eq!((s["pending"].as_str(), s["reserved"].as_str()), ("1", "0"));
    assert_ne!(s["oldest"], "-");
    let r = custodian(dir.path(), &["queue", "--queue", &url, "status", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).expect("status --json");
    assert_eq!(
        (j["pending"].as_u64(), j["reserved"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(j["buried"].as_u64(), Some(0));
    assert!(j["oldest_seconds"].as_f64().is_some(), "{j}");
    let r = custodian(dir.path(), &["queue", "--queue", &url, "flush"]);
    assert!(r.stdout.starts_with("flushed 1 job(s)"), "{}", r.stdout);
    assert_eq!(status(dir.path(), &url)["pending"], "0");
}

#[test]
fn sigterm_finishes_jobs_in_flight_and_exits_0() {
    let dir = workload(5, slow_greeter(Duration::from_millis(1500)));
    let url = fresh_queue("beanstalk");
    assert_eq!(
        custodian(dir.path(), &["enqueue", "--queue", &url, "jobs.cfg"]).code,
        0
    );
    let w = Worker::start(dir.path(), &url, "w", &[]);
    std::thread::sleep(Duration::from_millis(700));
    let pid = w.child.id() as libc::pid_t;
    // SAFETY: signals our own child process by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let t = Instant::now();
    let (code, lines) = w.finish(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        tally(&lines).len(),
        5,
        "every job in flight finished: {lines:?}"
    );
    let s = status(dir.path(), &url);
    assert_eq!((s["pending"].as_str(), s["reserved"].as_str()), ("0", "0"));
}

#[test]
fn an_undecodable_job_is_buried_not_retried() {
    let url = fresh_queue("beanstalk");
    let tube = url.rsplit('/').next().expect("tube");
    let addr = custodian_testpeers::peers().addr("beanstalk");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "use {tube}\r\nput 1024 0 60 10\r\nid\nnotjson\r\n").expect("put");
    let mut reply = String::new();
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    for _ in 0..2 {
        r.read_line(&mut reply).expect("reply");
    }
    assert!(reply.contains("INSERTED"), "{reply}");
    let (dir, _) = file("s.toml", "per_host = 8\n");
    let (code, lines) =
        Worker::start(dir.path(), &url, "w", &["--drain"]).finish(Duration::from_secs(10));
    assert_eq!((code, lines.len()), (Some(0), 0));
    let st = status(dir.path(), &url);
    assert_eq!((st["pending"].as_str(), st["buried"].as_str()), ("0", "1"));
}

#[test]
fn a_bad_queue_url_is_a_usage_error() {
    let (dir, _) = file("t.cfg", "127.0.0.1 must run tcp on 9.\n");
    for args in [
        ["worker", "--queue", "amqp://127.0.0.1:5672"].as_slice(),
        [
            "enqueue",
            "--queue",
            "beanstalk://127.0.0.1/bad tube",
            "t.cfg",
        ]
        .as_slice(),
        ["queue", "--queue", "redis://127.0.0.1/notadb", "status"].as_slice(),
    ] {
        let r = custodian(dir.path(), args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("error:"), "{}", r.stderr);
    }
}

#[test]
fn jobs_waiting_their_turn_keep_their_lease() {
    // Ten 1 s jobs one at a time (per_host = 1) hold their leases for 10 s; a lease is 8 s
    // (timeout 3 + 5 s margin), so only the worker's lease renewal keeps them from running twice.
    let dir = workload(10, slow_greeter(Duration::from_millis(1000)));
    std::fs::write(dir.path().join("s.toml"), "per_host = 1\n").expect("settings");
    let url = fresh_queue("redis");
    assert_eq!(
        custodian(dir.path(), &["enqueue", "--queue", &url, "jobs.cfg"]).code,
        0
    );
    let busy = Worker::start(dir.path(), &url, "busy", &["--drain"]);
    std::thread::sleep(Duration::from_millis(500));
    let idle = Worker::start(dir.path(), &url, "idle", &["--drain"]);
    let (code, mut lines) = busy.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0));
    let (code, more) = idle.finish(Duration::from_secs(10));
    assert_eq!(
        (code, more.len()),
        (Some(0), 0),
        "the idle worker ran {more:?}"
    );
    lines.extend(more);
    assert_eq!(tally(&lines).len(), 10);
    assert_eq!(lines.len(), 10, "no job ran twice");
}

/// The original's custodian.cfg names the queue with `queue_type` + `queue_host`: `--queue`
/// may then be left out; with neither, the queue commands stop with a clear error (exit 2).
#[test]
fn the_original_queue_keys_stand_in_for_dash_dash_queue() {
    let peers = custodian_testpeers::peers();
    for (kind, host) in [
        ("beanstalk", peers.get("beanstalk")),
        ("redis", peers.get("redis_queue")),
    ] {
        let cfg =
            format!("queue_type = {kind}\nqueue_host = {host}\nlog_file = /nonexistent/c.log\n");
        let (dir, path) = file("custodian.cfg", &cfg);
        let settings = path.to_str().expect("utf8");
        let r = custodian(dir.path(), &["queue", "--settings", settings, "status"]);
        assert_eq!(r.code, 0, "{kind}: {}", r.stderr);
        assert!(r.stdout.contains("pending"), "{kind}: {}", r.stdout);
        assert!(
            r.stderr.contains("log_file"),
            "the ignored key is named: {}",
            r.stderr
        );
    }
    let (dir, path) = file("custodian.cfg", "timeout = 5\n");
    let settings = path.to_str().expect("utf8");
    for args in [
        &["queue", "--settings", settings, "status"][..],
        &["worker", "--settings", settings, "--drain"],
        &["enqueue", "--settings", settings, "custodian.cfg"],
    ] {
        let r = custodian(dir.path(), args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("no queue: give --queue URL"),
            "{args:?}: {}",
            r.stderr
        );
    }
}
