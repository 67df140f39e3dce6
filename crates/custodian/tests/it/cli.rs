//! Help texts and `custodian examples`.

use crate::common::*;

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    let top = custodian(dir.path(), &["--help"]);
    assert_eq!(top.code, 0);
    for sub in [
        "check", "run", "examples", "enqueue", "worker", "queue", "scan",
    ] {
        assert!(top.stdout.contains(sub), "top help lacks {sub}");
        let h = custodian(dir.path(), &[sub, "--help"]);
        assert_eq!(h.code, 0, "{sub} --help");
        assert!(h.stdout.contains("Usage: custodian"), "{sub}: {}", h.stdout);
    }
    let run = custodian(dir.path(), &["run", "--help"]).stdout;
    for flag in [
        "--json",
        "--concurrency",
        "--timeout",
        "--retries",
        "--settings",
    ] {
        assert!(run.contains(flag), "run --help lacks {flag}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(custodian(dir.path(), &["run"]).code, 2);
    assert_eq!(custodian(dir.path(), &["bogus"]).code, 2);
    assert_eq!(custodian(dir.path(), &["run", "missing.cfg"]).code, 2);
}

/// Every example line `custodian examples` prints is accepted by `custodian check --strict`.
#[test]
fn every_example_line_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ex = custodian(dir.path(), &["examples"]);
    assert_eq!(ex.code, 0);
    let lines: Vec<&str> = ex
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    for ty in ["tcp", "ping", "ssh", "smtp", "http", "https", "dns"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("run {ty}")) || l.contains("must ping")),
            "no example for {ty}"
        );
    }
    let path = dir.path().join("examples.cfg");
    std::fs::write(&path, lines.join("\n")).expect("write");
    let check = custodian(dir.path(), &["check", "--strict", "examples.cfg"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let filtered = custodian(dir.path(), &["examples", "ssh"]);
    assert!(filtered.stdout.contains("run ssh") && !filtered.stdout.contains("run dns"));
}

/// The README's type table names every registered type.
#[test]
fn readme_lists_every_type() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README");
    let dir = tempfile::tempdir().expect("tempdir");
    let ex = custodian(dir.path(), &["examples"]).stdout;
    let types: Vec<&str> = ex
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter_map(|l| l.split_once(':').map(|(t, _)| t))
        .filter(|t| !t.contains(' '))
        .collect();
    assert!(types.len() >= 7, "{types:?}");
    for t in types {
        assert!(
            readme.contains(&format!("| `{t}`")),
            "README type table lacks `{t}`"
        );
    }
}

/// Numbers out of range are usage errors (exit 2) naming the flag and its range, and nothing
/// runs: the listener the check points at is never connected to.
#[test]
fn numeric_flags_out_of_range_exit_2_and_run_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let file = dir.path().join("t.cfg");
    std::fs::write(&file, format!("127.0.0.1 must run tcp on {port}.\n")).expect("write");
    let table = [
        (
            "--timeout",
            "1e300",
            "`timeout` must be seconds in (0, 86400]",
        ),
        (
            "--timeout",
            "nan",
            "`timeout` must be seconds in (0, 86400]",
        ),
        (
            "--retry-delay",
            "inf",
            "`retry_delay` must be seconds in [0, 86400]",
        ),
        (
            "--retries",
            "2.7",
            "`retries` must be a whole number from 1 to 100",
        ),
        (
            "--concurrency",
            "0",
            "`concurrency` must be a whole number from 1 to 1000000",
        ),
    ];
    for (flag, value, want) in table {
        let out = custodian(dir.path(), &["run", "--quiet", flag, value, "t.cfg"]);
        assert_eq!(out.code, 2, "{flag} {value}: {}", out.stderr);
        assert!(
            out.stderr.contains(want) && out.stderr.contains(flag),
            "{}",
            out.stderr
        );
    }
    let worker = custodian(
        dir.path(),
        &[
            "worker",
            "--queue",
            "redis://127.0.0.1:1/",
            "--concurrency=-1",
        ],
    );
    assert_eq!(worker.code, 2, "{}", worker.stderr);
    assert!(
        worker.stderr.contains("`concurrency` must be"),
        "{}",
        worker.stderr
    );
    let accepted = listener.accept().map(|_| ()).map_err(|e| e.kind());
    assert_eq!(accepted, Err(std::io::ErrorKind::WouldBlock), "a check ran");
}

/// Diagnostics quote their source line: a password, a URL password or a credential header in
/// it is masked there and in the message, wherever on the line the mistake is.
#[test]
fn diagnostics_never_show_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = "db must run mysql on 33o6 with password 'hunter2'.\n\
                 db must run mysql with password hunter2 with colour blue.\n\
                 LIST are fetched from http://u:hunter2@127.0.0.1:1/list\n\
                 LIST must run ssh.\n\
                 http://bob:hunter2@127.0.0.1:1/ must run http with stauts 200\n\
                 http://127.0.0.1:1/ must run http with header 'Authorization: Bearer hunter2' on 0.\n";
    std::fs::write(dir.path().join("t.cfg"), lines).expect("write");
    let out = custodian(dir.path(), &["check", "t.cfg"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!all.contains("hunter2"), "{all}");
    for want in [
        "with password '********'",
        "with password ******** with colour blue",
        "http://u:********@127.0.0.1:1/list",
        "'Authorization: ********'",
    ] {
        assert!(all.contains(want), "{want}: {all}");
    }
    // Each line's mistake is still reported at its own place.
    assert!(all.contains("t.cfg:1:22: error"), "{all}");
}

/// `enqueue` and `queue flush` name the queue with its password masked, as does a bad URL.
#[test]
fn queue_urls_are_printed_without_their_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("t.cfg"), "127.0.0.1 must run tcp on 1.\n").expect("write");
    let addr = custodian_testpeers::peers().get("beanstalk");
    let url = format!(
        "beanstalk://u:hunter2@{addr}/it-mask-{}",
        std::process::id()
    );
    let enqueue = custodian(dir.path(), &["enqueue", "--queue", &url, "t.cfg"]);
    assert_eq!(enqueue.code, 0, "{}", enqueue.stderr);
    let flush = custodian(dir.path(), &["queue", "--queue", &url, "flush"]);
    assert_eq!(flush.code, 0, "{}", flush.stderr);
    let bad = custodian(
        dir.path(),
        &[
            "enqueue",
            "--queue",
            "redis://u:hunter2@127.0.0.1:notaport/",
            "t.cfg",
        ],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let masked = url.replace("hunter2", "********");
    for out in [&enqueue, &flush, &bad] {
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(!all.contains("hunter2"), "{all}");
    }
    assert!(
        enqueue
            .stdout
            .contains(&format!("enqueued 1 job(s) on {masked}")),
        "{}",
        enqueue.stdout
    );
    assert!(
        flush.stdout.contains(&format!("from {masked}")),
        "{}",
        flush.stdout
    );
}
