//! `custodian probe` as a monitoring plugin: one line, plugin exit codes, perfdata.

use crate::common::*;
use std::sync::atomic::Ordering;

/// Runs `custodian probe ARGS` with quick defaults.
fn probe(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all = vec!["probe", "--timeout", "3", "--retries", "1"];
    all.extend_from_slice(args);
    custodian(dir.path(), &all)
}

/// The perfdata after ` | `: each `label=value[UOM];warn;crit;min;max` as (label, number,
/// unit), per the Nagios plugin guidelines.
fn perfdata(line: &str) -> Vec<(String, f64, String)> {
    let (_, perf) = line.split_once(" | ").expect("perfdata part");
    perf.split(' ')
        .map(|item| {
            let (label, rest) = item.split_once('=').expect("label=value");
            let value = rest.split(';').next().expect("value");
            let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
            let number: f64 = digits.parse().expect("a number");
            let unit = value[digits.len()..].to_string();
            assert!(rest.split(';').count() <= 5, "{item}");
            (label.to_string(), number, unit)
        })
        .collect()
}

#[test]
fn a_passing_check_is_one_ok_line_with_perfdata_and_exit_0() {
    let (up, seen) = greeter("SSH-2.0-OpenSSH_9.2\r\n");
    let port = up.port().to_string();
    let r = probe(&["ssh", "127.0.0.1", "on", "port", &port]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    let line = r.stdout.trim_end();
    assert!(
        line.starts_with(&format!("SSH OK - 127.0.0.1:{port} answered in ")),
        "{line}"
    );
    let perf = perfdata(line);
    assert_eq!(perf[0].0, "time");
    assert_eq!(perf[0].2, "s");
    assert!(perf[0].1 >= 0.0 && perf[0].1 < 3.0, "{line}");
    assert_eq!(perf[1], ("attempts".into(), 1.0, String::new()));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[test]
fn a_refused_connection_is_critical_with_exit_2() {
    let down = closed_port().to_string();
    let r = probe(&["ssh", "127.0.0.1", "on", "port", &down]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let line = r.stdout.trim_end();
    assert!(
        line.starts_with(&format!("SSH CRITICAL - 127.0.0.1:{down}: ")),
        "{line}"
    );
    assert!(line.contains("refused"), "{line}");
    assert_eq!(perfdata(line)[1].1, 1.0, "{line}");
    // Inverted, the same closed port is what we want.
    let r = probe(&["--not", "tcp", "127.0.0.1", "on", "port", &down]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("TCP OK - "), "{}", r.stdout);
}

#[test]
fn a_bad_option_is_unknown_with_exit_3_and_nothing_is_probed() {
    let (up, seen) = greeter("SSH-2.0-OpenSSH_9.2\r\n");
    let port = up.port().to_string();
    let r = probe(&["ssh", "127.0.0.1", "on", "prot", &port]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(r.stdout.starts_with("SSH UNKNOWN - "), "{}", r.stdout);
    // The diagnostic, with its caret, goes to stderr.
    assert!(r.stderr.contains("prot"), "{}", r.stderr);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "something was probed");
    // Bad flag values are UNKNOWN too, and so is an unknown type.
    let dir = tempfile::tempdir().expect("tempdir");
    let r = custodian(
        dir.path(),
        &["probe", "--retries", "zero", "ssh", "127.0.0.1"],
    );
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let r = probe(&["nosuchtype", "127.0.0.1"]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("NOSUCHTYPE UNKNOWN - "),
        "{}",
        r.stdout
    );
}

#[test]
fn passwords_are_masked_in_every_line() {
    let down = closed_port();
    let url = format!("http://ops:hunter2@127.0.0.1:{down}/");
    let r = probe(&["http", &url, "with", "content", "ok"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("HTTP CRITICAL - "), "{}", r.stdout);
    assert!(r.stdout.contains("ops:"), "{}", r.stdout);
    assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    let r = probe(&["http", &url, "with", "contnet", "ok"]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
}
