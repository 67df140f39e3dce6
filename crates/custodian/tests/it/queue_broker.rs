//! A broker restarted mid-run: workers ride out the outage and the run completes. Each test
//! starts its own broker on its own port (never the shared peer) with durable storage.
// Plain threads driving processes: no async runtime here to block.
#![allow(clippy::disallowed_methods)]

use crate::common::*;
use crate::queue::{expected_ids, slow_greeter, tally, workload, Worker};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A broker process of our own on 127.0.50.1, its data in `dir`.
struct Broker {
    kind: &'static str,
    port: u16,
    child: Child,
}

impl Broker {
    fn start(kind: &'static str, dir: &Path, port: u16) -> Broker {
        let p = port.to_string();
        let mut cmd = match kind {
            "beanstalk" => {
                let mut c = Command::new("/usr/bin/beanstalkd");
                c.args(["-l", "127.0.50.1", "-p", &p, "-b"]).arg(dir);
                c
            }
            _ => {
                let mut c = Command::new("/usr/bin/redis-server");
                c.args([
                    "--bind",
                    "127.0.50.1",
                    "--port",
                    &p,
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                ])
                .args(["--appendfsync", "always", "--protected-mode", "no", "--dir"])
                .arg(dir);
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start broker");
        let b = Broker { kind, port, child };
        b.wait_ready();
        b
    }

    fn wait_ready(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.50.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} on port {} never came up", self.kind, self.port);
    }

    /// SIGTERM (so the broker writes its data out), then wait for it to exit.
    fn stop(&mut self) {
        // SAFETY: signals our own child process by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    fn url(&self) -> String {
        match self.kind {
            "beanstalk" => format!("beanstalk://127.0.50.1:{}", self.port),
            _ => format!("redis://127.0.50.1:{}", self.port),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.50.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn the_run_survives_a_broker_restart(kind: &'static str) {
    custodian_testpeers::peers(); // installs the broker packages if needed
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut broker = Broker::start(kind, data.path(), port);
    let dir = workload(400, slow_greeter(Duration::from_millis(200)));
    let url = broker.url();
    assert_eq!(
        custodian(dir.path(), &["enqueue", "--queue", &url, "jobs.cfg"]).code,
        0
    );
    let workers: Vec<Worker> = (0..2)
        .map(|i| {
            Worker::start(
                dir.path(),
                &url,
                &format!("w{i}"),
                &["--drain", "--concurrency", "10"],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1200));
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    let _broker = Broker::start(kind, data.path(), port);
    let mut lines = Vec::new();
    for w in workers {
        let (code, out, log) = w.finish_logged(Duration::from_secs(40));
        assert_eq!(code, Some(0), "{kind}: {log}");
        let outages = log.matches("queue broker unreachable").count();
        assert_eq!(outages, 1, "{kind}: one log line per outage:\n{log}");
        lines.extend(out);
    }
    let seen = tally(&lines);
    let lost = expected_ids(dir.path())
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .count();
    assert_eq!(lost, 0, "{kind}: outcomes lost across the restart");
    eprintln!(
        "{kind}: {} results for 400 jobs across a restart",
        lines.len()
    );
}

#[test]
fn a_beanstalkd_restart_mid_run_is_ridden_out() {
    the_run_survives_a_broker_restart("beanstalk");
}

#[test]
fn a_redis_restart_mid_run_is_ridden_out() {
    the_run_survives_a_broker_restart("redis");
}

/// A worker refused by Redis (no password, no such database) exits 2 at once with the reason.
#[test]
fn a_redis_refusal_ends_the_worker_with_the_reason() {
    let p = custodian_testpeers::peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (format!("redis://{}", p.get("redis_auth")), "NOAUTH"),
        (
            format!("redis://{}/99", p.get("redis_queue")),
            "database 99",
        ),
        (
            format!("redis://:not-the-password@{}/3", p.get("redis_auth")),
            "WRONGPASS",
        ),
    ];
    for (url, reason) in cases {
        let started = std::time::Instant::now();
        let run = custodian(dir.path(), &["worker", "--queue", &url, "--drain"]);
        assert_eq!(run.code, 2, "{url}: {}", run.stderr);
        assert!(run.stderr.contains(reason), "{url}: {}", run.stderr);
        assert!(!run.stderr.contains("not-the-password"), "{}", run.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{url}: retried"
        );
        let status = custodian(dir.path(), &["queue", "--queue", &url, "status"]);
        assert_eq!(status.code, 2, "{url}: {}", status.stderr);
        assert!(status.stderr.contains(reason), "{url}: {}", status.stderr);
    }
}

/// The URL's password is sent as AUTH, so a password-protected Redis serves as a queue.
#[test]
fn a_redis_queue_url_with_the_password_authenticates() {
    let p = custodian_testpeers::peers();
    let url = format!(
        "redis://:{}@{}/3?prefix=authq",
        p.get("redis_password"),
        p.get("redis_auth")
    );
    let (dir, _) = file("jobs.cfg", "127.0.0.1 must run tcp on 9.\n");
    let flushed = custodian(dir.path(), &["queue", "--queue", &url, "flush"]);
    assert_eq!(flushed.code, 0, "{}", flushed.stderr);
    let put = custodian(dir.path(), &["enqueue", "--queue", &url, "jobs.cfg"]);
    assert_eq!(put.code, 0, "{}", put.stderr);
    assert!(
        !put.stdout.contains(p.get("redis_password")),
        "{}",
        put.stdout
    );
    let status = custodian(dir.path(), &["queue", "--queue", &url, "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("pending 1"), "{}", status.stdout);
    let flushed = custodian(dir.path(), &["queue", "--queue", &url, "flush"]);
    assert_eq!(flushed.code, 0, "{}", flushed.stderr);
}

/// A job over beanstalkd's max-job-size is refused by `enqueue` before anything is sent,
/// naming its line (exit 2, all or nothing); the next enqueue and status work as before.
#[test]
fn an_oversized_beanstalk_job_is_refused_by_its_line() {
    let p = custodian_testpeers::peers();
    let url = format!("beanstalk://{}/oversize", p.get("beanstalk"));
    let text = format!(
        "127.0.0.1 must run tcp on 9.\nhttp://127.0.0.1:9/ must run http with content '{}'.\n",
        "x".repeat(70_000)
    );
    let (dir, _) = file("big.cfg", &text);
    std::fs::write(
        dir.path().join("small.cfg"),
        "127.0.0.1 must run tcp on 9.\n",
    )
    .expect("write");
    let flushed = custodian(dir.path(), &["queue", "--queue", &url, "flush"]);
    assert_eq!(flushed.code, 0, "{}", flushed.stderr);
    let big = custodian(dir.path(), &["enqueue", "--queue", &url, "big.cfg"]);
    assert_eq!(big.code, 2, "{}", big.stderr);
    assert!(big.stderr.contains("big.cfg:2"), "{}", big.stderr);
    assert!(big.stderr.contains("max-job-size"), "{}", big.stderr);
    let status = custodian(dir.path(), &["queue", "--queue", &url, "status"]);
    assert!(status.stdout.contains("pending 0"), "{}", status.stdout);
    let small = custodian(dir.path(), &["enqueue", "--queue", &url, "small.cfg"]);
    assert_eq!(small.code, 0, "{}", small.stderr);
    let status = custodian(dir.path(), &["queue", "--queue", &url, "status"]);
    assert!(status.stdout.contains("pending 1"), "{}", status.stdout);
    let flushed = custodian(dir.path(), &["queue", "--queue", &url, "flush"]);
    assert_eq!(flushed.code, 0, "{}", flushed.stderr);
}
