//! `custodian serve` through the binary: it schedules, reloads on edits (keeping the old set on
//! errors), alerts, answers its API, stops on SIGTERM; with a queue, workers' results come back.
// Plain test threads driving child processes: no async runtime to block.
#![allow(clippy::disallowed_methods)]

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `custodian serve`, killed if the test fails before stopping it.
struct Serve {
    child: Child,
    port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(dir: &Path, extra: &[&str], files: &[&str]) -> Serve {
        let port = closed_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &listen, "--interval", "5s"];
        args.extend(extra);
        args.extend(files);
        let child = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args(&args)
            .current_dir(dir)
            .env_remove("CUSTODIAN_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let serve = Serve { child, port };
        serve.wait_for("/readyz is 200", |s| s.get("/readyz").0 == 200);
        serve
    }

    /// `GET path`: status and body (0 when nothing answers).
    fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, String::new());
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            return (0, String::new());
        }
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (code, body.to_string())
    }

    /// Every check the API lists.
    fn checks(&self) -> Vec<Value> {
        let (_, body) = self.get("/api/checks");
        match serde_json::from_str::<Value>(&body) {
            Ok(Value::Array(a)) => a,
            Ok(Value::Object(o)) => match o.get("checks") {
                Some(Value::Array(a)) => a.clone(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn wait_for(&self, what: &str, mut ok: impl FnMut(&Serve) -> bool) {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if ok(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("serve never got to: {what}");
    }

    /// SIGTERM, then the exit code (within 30 s).
    fn stop(mut self) -> Option<i32> {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

fn status_of(checks: &[Value], port: u16) -> Option<String> {
    checks
        .iter()
        .find(|c| {
            c["line"]
                .as_str()
                .is_some_and(|l| l.contains(&format!("on {port}")))
        })
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

fn field(checks: &[Value], port: u16, name: &str) -> Value {
    checks
        .iter()
        .find(|c| {
            c["line"]
                .as_str()
                .is_some_and(|l| l.contains(&format!("on {port}")))
        })
        .map_or(Value::Null, |c| c[name].clone())
}

#[test]
fn serve_schedules_alerts_reloads_and_stops() {
    let (up, _) = greeter("hello\r\n");
    let down = closed_port();
    let text = format!(
        "127.0.0.1 must run tcp on {} every 5s otherwise 'up one down'.\n\
         127.0.0.1 must run tcp on {down} otherwise 'down one down'.\n",
        up.port()
    );
    let (dir, _) = file("t.cfg", &text);
    let cfg = format!(
        "alerter = file\nfile_target = {}\nstate_file = {}\nretries = 1\ntimeout = 2\n",
        dir.path().join("alerts.log").display(),
        dir.path().join("state.json").display()
    );
    std::fs::write(dir.path().join("custodian.cfg"), cfg).expect("cfg");
    let serve = Serve::start(dir.path(), &["--settings", "custodian.cfg"], &["t.cfg"]);
    serve.wait_for("both checks judged", |s| {
        let c = s.checks();
        status_of(&c, up.port()).as_deref() == Some("passed")
            && status_of(&c, down).as_deref() == Some("failed")
    });
    assert!(dir.path().join("history.sqlite").is_file());
    let since = field(&serve.checks(), up.port(), "since");
    assert!(since.is_u64(), "{since}");
    serve.wait_for("the raise delivered", |_| {
        std::fs::read_to_string(dir.path().join("alerts.log"))
            .unwrap_or_default()
            .contains(&format!("RAISE: 127.0.0.1 must run tcp on {down}"))
    });
    serve.wait_for("the notice in the history", |s| {
        s.get("/api/notices").1.contains("\"raise\"")
    });

    // An edit with an error keeps the running set and shows the error.
    std::fs::write(
        dir.path().join("t.cfg"),
        format!("{text}127.0.0.1 must run nonsense.\n"),
    )
    .expect("edit");
    serve.wait_for("the error shown", |s| s.get("/").1.contains("t.cfg:3"));
    assert_eq!(serve.checks().len(), 2);

    // A good edit: the new line joins, the unchanged ones keep their state.
    let third = closed_port();
    std::fs::write(
        dir.path().join("t.cfg"),
        format!("{text}127.0.0.1 must run tcp on {third}.\n"),
    )
    .expect("edit");
    serve.wait_for("three checks", |s| s.checks().len() == 3);
    let checks = serve.checks();
    assert_eq!(field(&checks, up.port(), "since"), since, "state kept");
    assert!(!serve.get("/").1.contains("t.cfg:3:"), "errors cleared");
    assert_eq!(serve.stop(), Some(0));
    let alerts = std::fs::read_to_string(dir.path().join("alerts.log")).unwrap_or_default();
    assert_eq!(alerts.matches("RAISE").count(), 1, "{alerts}");
}

/// With a queue, serve runs nothing itself: a worker runs the jobs, the results come back
/// naming it, and serve (not the worker) alerts.
fn serve_with_workers(url: &str) {
    let down = closed_port();
    let (dir, _) = file("t.cfg", &format!("127.0.0.1 must run tcp on {down}.\n"));
    let cfg = format!(
        "alerter = file\nfile_target = {}\nstate_file = {}\nretries = 1\ntimeout = 2\n",
        dir.path().join("alerts.log").display(),
        dir.path().join("state.json").display()
    );
    std::fs::write(dir.path().join("custodian.cfg"), cfg).expect("cfg");
    let serve = Serve::start(
        dir.path(),
        &["--settings", "custodian.cfg", "--queue", url],
        &["t.cfg"],
    );
    let mut worker = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args([
            "worker",
            "--queue",
            url,
            "--name",
            "wq1",
            "--settings",
            "custodian.cfg",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    serve.wait_for("the worker's result", |s| {
        field(&s.checks(), down, "worker").as_str() == Some("wq1")
    });
    assert_eq!(status_of(&serve.checks(), down).as_deref(), Some("failed"));
    serve.wait_for("the raise delivered", |_| {
        std::fs::read_to_string(dir.path().join("alerts.log"))
            .unwrap_or_default()
            .contains("RAISE")
    });
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(serve.stop(), Some(0));
    let alerts = std::fs::read_to_string(dir.path().join("alerts.log")).unwrap_or_default();
    assert_eq!(alerts.matches("RAISE").count(), 1, "alerted once: {alerts}");
}

#[test]
fn serve_schedules_onto_beanstalkd_workers() {
    let p = custodian_testpeers::peers();
    let tube = format!("serve{}", std::process::id());
    serve_with_workers(&format!("beanstalk://{}/{tube}", p.get("beanstalk")));
}

#[test]
fn serve_schedules_onto_redis_workers() {
    let p = custodian_testpeers::peers();
    let url = format!(
        "redis://{}/9?prefix=serve{}",
        p.get("redis_queue"),
        std::process::id()
    );
    serve_with_workers(&url);
}

/// `METHOD path` with a JSON body to serve on `port`: status and body.
fn send_json(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}

/// A silenced failing check raises nothing in alerts.log (its notice is kept, marked muted)
/// while an unsilenced one does; once the silence ends, the still failing check is raised.
#[test]
fn serve_silences_keep_raises_from_the_alerters() {
    let (up, _) = greeter("hello\r\n");
    let quiet = closed_port();
    let loud = closed_port();
    let first = format!("127.0.0.1 must run tcp on {}.\n", up.port());
    let (dir, _) = file("t.cfg", &first);
    let cfg = format!(
        "alerter = file\nfile_target = {}\nstate_file = {}\nretries = 1\ntimeout = 2\n",
        dir.path().join("alerts.log").display(),
        dir.path().join("state.json").display()
    );
    std::fs::write(dir.path().join("custodian.cfg"), cfg).expect("cfg");
    let serve = Serve::start(dir.path(), &["--settings", "custodian.cfg"], &["t.cfg"]);
    let (code, made) = send_json(
        serve.port,
        "POST",
        "/api/silences",
        r#"{"pattern": "target:127.0.0.2", "duration": "1h", "comment": "maintenance"}"#,
    );
    assert_eq!(code, 201, "{made}");
    let id = serde_json::from_str::<Value>(&made).expect("json")["id"]
        .as_i64()
        .expect("id");

    // Both failing lines join after the silence is in place.
    std::fs::write(
        dir.path().join("t.cfg"),
        format!("{first}127.0.0.2 must run tcp on {quiet}.\n127.0.0.1 must run tcp on {loud}.\n"),
    )
    .expect("edit");
    let alerts = || std::fs::read_to_string(dir.path().join("alerts.log")).unwrap_or_default();
    serve.wait_for("the unsilenced raise delivered", |_| {
        alerts().contains(&format!("RAISE: 127.0.0.1 must run tcp on {loud}"))
    });
    serve.wait_for("the silenced raise kept as muted", |s| {
        let (_, body) = s.get("/api/notices");
        serde_json::from_str::<Value>(&body).is_ok_and(|v| {
            v["notices"].as_array().is_some_and(|n| {
                n.iter().any(|n| {
                    n["muted"] == true
                        && n["kind"] == "raise"
                        && n["line"].as_str().is_some_and(|l| l.contains("127.0.0.2"))
                })
            })
        })
    });
    assert!(!alerts().contains("127.0.0.2"), "{}", alerts());
    let checks = serve.checks();
    assert!(field(&checks, quiet, "silenced_until").is_u64());
    assert!(field(&checks, loud, "silenced_until").is_null());
    assert!(serve.get("/").1.contains("(silenced)"));

    // Ended while still failing: the next result raises it.
    let (code, _) = send_json(serve.port, "DELETE", &format!("/api/silences/{id}"), "");
    assert_eq!(code, 200);
    serve.wait_for("the late raise", |_| {
        alerts().contains(&format!("RAISE: 127.0.0.2 must run tcp on {quiet}"))
    });
    assert_eq!(serve.stop(), Some(0));
    assert_eq!(alerts().matches("RAISE").count(), 2, "{}", alerts());
}
