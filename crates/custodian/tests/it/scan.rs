//! `custodian scan` end to end over the abuse-check peers on 127.0.70.1-10 (Postfix relays,
//! unbound resolvers, tinyproxy, microsocks), with an in-test canary; only 127.x is scanned.

use crate::common::*;
use custodian_testpeers::peers;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

const TOKEN: &str = "scan-canary-41c9";

/// The canary: answers every request with a page holding [`TOKEN`], on its own thread.
fn canary() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && matches!(s.read(&mut b), Ok(1)) {
                    head.push(b[0]);
                }
                let page = format!("HTTP/1.0 200 OK\r\n\r\n{TOKEN}\n");
                let _ = s.write_all(page.as_bytes());
            });
        }
    });
    addr
}

/// The verdict the scan gave `addr` for `check`.
fn verdict<'a>(rows: &'a [Value], addr: SocketAddr, check: &str) -> &'a str {
    rows.iter()
        .find(|r| {
            r["target"] == addr.ip().to_string() && r["port"] == addr.port() && r["check"] == check
        })
        .and_then(|r| r["verdict"].as_str())
        .unwrap_or_else(|| panic!("no {check} row for {addr}"))
}

#[test]
fn scan_finds_exactly_the_open_peers() {
    let p = peers();
    let c = canary();
    let dir = tempfile::tempdir().expect("tempdir");
    let canary_url = format!("http://{c}/");
    let run = custodian(
        dir.path(),
        &[
            "scan",
            "--json",
            "--timeout",
            "4",
            "--rate",
            "500",
            "--port",
            "openrelay=2525",
            "--port",
            "openresolver=5353",
            "--port",
            "openproxy=8888",
            "--port",
            "opensocks=11080",
            "--recipient",
            "relay-test@canary.custodian.test",
            "--data-confirmation",
            "--zone",
            "probe.custodian.test",
            "--expect",
            "127.0.70.99",
            "--canary",
            &canary_url,
            "--token",
            TOKEN,
            "--exclude",
            "127.0.70.4",
            "127.0.70.1-10",
        ],
    );
    assert_eq!(run.code, 1, "open services found: {}", run.stderr);
    let rows: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 9 * 4, "{}", run.stdout);
    assert!(rows
        .iter()
        .all(|r| r["source"] == "127.0.0.1" || r["verdict"] == "closed"));
    assert_eq!(verdict(&rows, p.addr("relay_open"), "openrelay"), "open");
    assert_eq!(
        verdict(&rows, p.addr("relay_closed"), "openrelay"),
        "closed"
    );
    assert_eq!(
        verdict(&rows, p.addr("relay_nodata"), "openrelay"),
        "closed"
    );
    assert_eq!(
        verdict(&rows, p.addr("resolver_open"), "openresolver"),
        "open"
    );
    assert_eq!(
        verdict(&rows, p.addr("resolver_refusing"), "openresolver"),
        "closed"
    );
    assert_eq!(verdict(&rows, p.addr("proxy_open"), "openproxy"), "open");
    assert_eq!(
        verdict(&rows, p.addr("proxy_denying"), "openproxy"),
        "closed"
    );
    assert_eq!(verdict(&rows, p.addr("socks_open"), "opensocks"), "open");
    assert_eq!(verdict(&rows, p.addr("socks_auth"), "opensocks"), "closed");
    let open = rows.iter().filter(|r| r["verdict"] == "open").count();
    assert_eq!(open, 4, "no false positives: {}", run.stdout);
    let relay = rows
        .iter()
        .find(|r| r["verdict"] == "open" && r["check"] == "openrelay");
    let evidence = relay.and_then(|r| r["evidence"].as_str()).unwrap_or("");
    assert!(evidence.contains("C: DATA | S: 354"), "{evidence}");
}

#[test]
fn scan_table_csv_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("targets.txt");
    std::fs::write(&list, "# nothing listens on these ports\n127.0.71.1\n").expect("write");
    let args = ["scan", "--checks", "openrelay", "--port", "openrelay=9,10"];
    let table = custodian(dir.path(), &[&args[..], &["@targets.txt"]].concat());
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.starts_with("2 probes: 0 open,"),
        "{}",
        table.stdout
    );
    let csv = custodian(dir.path(), &[&args[..], &["--csv", "127.0.71.1"]].concat());
    assert!(csv
        .stdout
        .starts_with("target,port,check,verdict,source,reason,evidence\n"));
    assert!(
        csv.stdout.contains("127.0.71.1,9,openrelay,closed,"),
        "{}",
        csv.stdout
    );
    let large = custodian(dir.path(), &["scan", "127.0.0.0/15"]);
    assert_eq!(large.code, 2);
    assert!(large.stderr.contains("--allow-large"), "{}", large.stderr);
    let name = custodian(dir.path(), &["scan", "localhost"]);
    assert_eq!(name.code, 2);
    assert!(
        name.stderr.contains("names are not resolved"),
        "{}",
        name.stderr
    );
}

/// Bad flags: exit 2 with a message naming the flag, and nothing scanned (the target is a
/// loopback address where a probe would be answered at once, so a scan would print rows).
#[test]
fn bad_flags_exit_2_and_scan_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--canary", "ftp://x/"],
            "--canary 'ftp://x/': the canary `ftp://x/` must be an http:// URL, not ftp://\n  hint: ",
        ),
        (&["--canary", "not a url"], "--canary 'not a url': `not a url` is not a canary URL"),
        (&["--token", ""], "--token '': the value is empty"),
        (&["--expect", "notanip"], "--expect 'notanip': `notanip` is not an IP address\n  hint: "),
        (
            &["--zone", "not a zone"],
            "--zone 'not a zone': `not a zone` is not a DNS zone name",
        ),
        (
            &["--recipient", "nobody"],
            "--recipient 'nobody': `nobody` is not a mail address: it has no @domain\n  hint: ",
        ),
        (&["--sender", "a b@c.d"], "--sender 'a b@c.d': `a b@c.d` is not a mail address"),
        // CR LF would smuggle commands (DATA, a body, the dot) into the dialogue.
        (
            &["--recipient", "a@b\r\nDATA"],
            "--recipient 'a@b\\r\\nDATA': `a@b\\r\\nDATA` is not a mail address: a plain address",
        ),
        (&["--sender", "<a@b.example>"], "a plain address has no spaces, `<`, `>`"),
        (&["--port", "typo=25"], "--port typo=25: unknown check `typo` (known: openrelay, "),
        (&["--port", "openrelay=0"], "--port openrelay=0: port 0 is out of range (1-65535)"),
        (&["--port", "openrelay=70000"], "port 70000 is out of range (1-65535)"),
        (&["--port", "openrelay=x"], "--port openrelay=x: `x` is not a port number"),
        (&["--port", "openrelay"], "--port openrelay: want CHECK=PORT[,PORT]"),
        (&["--checks", "openrelay,typo"], "--checks: unknown check `typo`"),
        (
            &["--checks", "openrelay", "--port", "opensocks=1080"],
            "--port opensocks=...: opensocks is not among --checks openrelay",
        ),
        (
            &["--checks", "openrelay", "--canary", "http://127.0.0.1/"],
            "--canary is not used by any of --checks openrelay",
        ),
        (&["--concurrency", "0"], "--concurrency 0: want at least 1"),
        (&["--rate", "nan"], "--rate NaN: want new connections per second"),
        (&["--rate", "inf"], "--rate inf: want new connections per second"),
        (&["--rate", "0"], "--rate 0.0: want new connections per second"),
        (&["--rate=-5"], "--rate -5.0: want new connections per second"),
        (&["--rate", "1e300"], "--rate 1e300: want new connections per second"),
        (&["--timeout", "inf"], "--timeout inf: want a number of seconds above 0 and at most 3600"),
        (&["--timeout", "nan"], "--timeout NaN: want a number of seconds"),
        (&["--timeout", "1e300"], "--timeout 1e300: want a number of seconds"),
        (&["--timeout", "0"], "--timeout 0.0: want a number of seconds"),
        (&["--timeout=-1"], "--timeout -1.0: want a number of seconds"),
    ];
    for (flags, message) in cases {
        let args = [&["scan", "--json"][..], flags, &["127.0.0.1"]].concat();
        let run = custodian(dir.path(), &args);
        assert_eq!(run.code, 2, "{flags:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(message), "{flags:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{flags:?} scanned: {}", run.stdout);
    }
}

/// Valid flag values in every accepted form are taken (each check run once on a closed port).
#[test]
fn good_flags_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = closed_port().to_string();
    let ports: Vec<String> = ["openrelay", "openresolver", "openproxy", "opensocks"]
        .iter()
        .map(|c| format!("{c}={port}"))
        .collect();
    let mut args = vec!["scan", "--json", "--timeout", "2"];
    for p in &ports {
        args.extend(["--port", p]);
    }
    args.extend([
        "--sender",
        "\"odd@local\"@[192.0.2.1]",
        "--recipient",
        "probe@relaytest.example.net",
        "--data-confirmation",
        "--zone",
        "probe.example.net.",
        "--expect",
        "2001:db8::7",
        "--canary",
        "http://[::1]:8099/c",
        "--token",
        "k3y",
        "127.0.0.1",
    ]);
    let run = custodian(dir.path(), &args);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let rows: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 4, "{}", run.stdout);
    assert!(
        rows.iter()
            .all(|r| r["verdict"] != "open" && r["verdict"] != "unknown"),
        "{}",
        run.stdout
    );
}

/// A relay's hostile greeting (ESC, BEL) reaches the JSON and CSV rows escaped only.
#[test]
fn a_hostile_greeting_is_escaped_in_scan_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, _) = greeter("220 \x1b]0;pwned\x07\x1b[2J hi\r\n");
    let port = format!("openrelay={}", a.port());
    // JSON doubles each backslash of the escape; CSV shows it as it is.
    let shown = [
        ("--json", r"220 \\u{1b}]0;pwned\\u{7}\\u{1b}[2J hi"),
        ("--csv", r"220 \u{1b}]0;pwned\u{7}\u{1b}[2J hi"),
    ];
    for (format, escaped) in shown {
        let args = [
            "scan",
            format,
            "--checks",
            "openrelay",
            "--port",
            &port,
            "--timeout",
            "3",
            "127.0.0.1",
        ];
        let run = custodian(dir.path(), &args);
        assert!(
            !run.stdout.contains(['\x1b', '\x07']) && !run.stdout.contains(r"\u001b"),
            "{format}: {:?}",
            run.stdout
        );
        assert!(
            run.stdout.contains(escaped),
            "{format}: {}{}",
            run.stdout,
            run.stderr
        );
    }
}
