//! Checks from many locations, for real: a broker, `serve` and a target in a hub network
//! namespace; three locations, each a worker process in its own namespace joined to the hub
//! by a veth pair. One location has no route to the target, then a second loses it, then a
//! worker dies. Nothing here touches the host's own network.
// Plain test threads driving child processes: no async runtime to block.
#![allow(clippy::disallowed_methods)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The target's address, on the hub's loopback device, reached from a location through its
/// veth pair when the location has a route to it.
const TARGET: &str = "10.77.100.1";
const TARGET_PORT: u16 = 7000;
const SERVE_PORT: u16 = 8080;

/// Network namespaces made for one test, deleted (with their processes) when it ends.
struct Lab {
    tag: String,
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in ["hub", "loc1", "loc2", "loc3"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(ns)])
                .status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let lab = Lab {
            tag: format!("cus{}{tag}", std::process::id()),
            children: Vec::new(),
        };
        let hub = lab.ns("hub");
        for ns in ["hub", "loc1", "loc2", "loc3"] {
            ip(&["netns", "add", &lab.ns(ns)]);
            ip(&["-n", &lab.ns(ns), "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{TARGET}/32"),
            "dev",
            "lo",
        ]);
        for k in 1..=3 {
            let loc = lab.ns(&format!("loc{k}"));
            let (h, l) = (format!("vh{k}"), format!("vl{k}"));
            ip(&[
                "link", "add", "name", &h, "netns", &hub, "type", "veth", "peer", "name", &l,
                "netns", &loc,
            ]);
            ip(&[
                "-n",
                &hub,
                "addr",
                "add",
                &format!("10.77.{k}.1/24"),
                "dev",
                &h,
            ]);
            ip(&["-n", &hub, "link", "set", &h, "up"]);
            ip(&[
                "-n",
                &loc,
                "addr",
                "add",
                &format!("10.77.{k}.2/24"),
                "dev",
                &l,
            ]);
            ip(&["-n", &loc, "link", "set", &l, "up"]);
        }
        // loc3 never gets a route to the target.
        lab.route("loc1", "add");
        lab.route("loc2", "add");
        lab
    }

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.tag)
    }

    fn route(&self, loc: &str, verb: &str) {
        let k = &loc[3..];
        ip(&[
            "-n",
            &self.ns(loc),
            "route",
            verb,
            "10.77.100.0/24",
            "via",
            &format!("10.77.{k}.1"),
        ]);
    }

    /// Starts `program args` inside namespace `ns`; returns its index in `children`.
    fn spawn(&mut self, ns: &str, dir: &Path, program: &str, args: &[&str]) -> usize {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), program])
            .args(args)
            .current_dir(dir)
            .env_remove("CUSTODIAN_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn in netns");
        self.children.push(child);
        self.children.len() - 1
    }

    /// Runs `f` on a thread inside namespace `ns`: sockets it makes belong to that namespace.
    fn inside<T: Send + 'static>(&self, ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.ns(ns));
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            use std::os::fd::AsRawFd;
            // SAFETY: setns(2) on an fd we own moves only this new thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}");
            f()
        })
        .join()
        .expect("thread in netns")
    }

    /// `GET path` from serve, which listens on the hub's loopback.
    fn get(&self, path: &str) -> String {
        let path = path.to_string();
        self.inside("hub", move || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", SERVE_PORT)) else {
                return String::new();
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(req.as_bytes());
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text.split_once("\r\n\r\n")
                .map_or(String::new(), |(_, b)| b.to_string())
        })
    }

    fn check(&self) -> Value {
        let body = self.get("/api/checks");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let checks = match &v {
            Value::Array(_) => v.clone(),
            _ => v["checks"].clone(),
        };
        checks
            .as_array()
            .and_then(|a| a.first().cloned())
            .unwrap_or(Value::Null)
    }
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("never got to: {what}");
}

/// The whole story on one broker; `broker` starts it in the hub and returns the queue URL
/// as seen from the hub (`127.0.0.1`) and from location `k` (`10.77.k.1`).
fn three_locations(tag: &str, broker: &[&str], url: impl Fn(&str) -> String) {
    let mut lab = Lab::new(tag);
    let dir = tempfile::tempdir().expect("tempdir");
    lab.spawn("hub", dir.path(), broker[0], &broker[1..]);
    // The target: a listener in the hub that accepts and closes.
    let target = lab.inside("hub", || {
        TcpListener::bind((TARGET, TARGET_PORT)).expect("bind target")
    });
    std::thread::spawn(move || {
        for s in target.incoming() {
            drop(s);
        }
    });
    std::fs::write(
        dir.path().join("t.cfg"),
        format!(
            "EUROPE are loc1 and loc2.\n\
             {TARGET} must run tcp on {TARGET_PORT} from EUROPE and loc3 with quorum 2.\n"
        ),
    )
    .expect("tests");
    std::fs::write(
        dir.path().join("custodian.cfg"),
        format!(
            "alerter = file\nfile_target = {}\nstate_file = {}\nretries = 1\ntimeout = 2\n\
             location_silent_after = 2\n",
            dir.path().join("alerts.log").display(),
            dir.path().join("state.json").display()
        ),
    )
    .expect("settings");
    let bin = env!("CARGO_BIN_EXE_custodian");
    let listen = format!("127.0.0.1:{SERVE_PORT}");
    let hub_url = url("127.0.0.1");
    lab.spawn(
        "hub",
        dir.path(),
        bin,
        &[
            "serve",
            "--listen",
            &listen,
            "--interval",
            "5s",
            "--queue",
            &hub_url,
            "--settings",
            "custodian.cfg",
            "t.cfg",
        ],
    );
    let mut workers = Vec::new();
    for k in 1..=3 {
        let loc = format!("loc{k}");
        let u = url(&format!("10.77.{k}.1"));
        let name = format!("w{k}");
        workers.push(lab.spawn(
            &loc,
            dir.path(),
            bin,
            &[
                "worker",
                "--queue",
                &u,
                "--location",
                &loc,
                "--name",
                &name,
                "--settings",
                "custodian.cfg",
            ],
        ));
    }
    let alerts = || std::fs::read_to_string(dir.path().join("alerts.log")).unwrap_or_default();

    // loc3 cannot reach the target: one failure of three, short of the quorum 2.
    wait_for("a partial verdict", 60, || {
        lab.check()["status"] == "partial"
    });
    let c = lab.check();
    let reason = c["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("loc3: FAIL"), "{reason}");
    assert!(
        reason.contains("loc1: ok") && reason.contains("loc2: ok"),
        "{reason}"
    );
    let places: Vec<&str> = c["locations"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["location"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(places, ["loc1", "loc2", "loc3"], "{c}");
    assert!(
        !alerts().contains("RAISE"),
        "partial never raises: {}",
        alerts()
    );

    // loc2 loses its route too: two of three fail, the quorum: down, raised once.
    lab.route("loc2", "del");
    wait_for("a down verdict", 60, || lab.check()["status"] == "failed");
    wait_for("the raise", 30, || alerts().contains("RAISE"));

    // loc1's worker dies: after two intervals without its heartbeat, one silence alert.
    let w1 = workers[0];
    let _ = lab.children[w1].kill();
    let _ = lab.children[w1].wait();
    wait_for("location loc1 silent", 60, || {
        alerts().contains("location loc1 silent")
    });
    let overview: Value = serde_json::from_str(&lab.get("/api/locations")).unwrap_or_default();
    let loc1 = overview
        .as_array()
        .and_then(|a| a.iter().find(|l| l["name"] == "loc1").cloned())
        .unwrap_or_default();
    assert_eq!(loc1["silent"], true, "{overview}");
    std::thread::sleep(Duration::from_secs(6));
    let raised = alerts()
        .lines()
        .filter(|l| l.contains("RAISE") && l.contains("location loc1 silent"))
        .count();
    assert_eq!(raised, 1, "alerted once: {}", alerts());
}

fn have_netns() -> bool {
    // Root and iproute2 are what tests/run.sh provides; say so plainly if they are missing.
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn three_locations_on_beanstalkd() {
    assert!(
        have_netns(),
        "these tests need root and iproute2 (tests/run.sh)"
    );
    three_locations(
        "b",
        &["beanstalkd", "-l", "0.0.0.0", "-p", "11300"],
        |host| format!("beanstalk://{host}:11300/loc"),
    );
}

#[test]
fn three_locations_on_redis() {
    assert!(
        have_netns(),
        "these tests need root and iproute2 (tests/run.sh)"
    );
    three_locations(
        "r",
        &[
            "redis-server",
            "--port",
            "6379",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        |host| format!("redis://{host}:6379/0?prefix=loc"),
    );
}
