//! `custodian check`: diagnostics, exit codes and `--json`.

use crate::common::*;

#[test]
fn errors_are_all_reported_with_position_caret_and_hint() {
    let (dir, _) = file(
        "bad.cfg",
        "web1 must run shh otherwise 'down'.\nweb2 must run ssh on port 70000.\nweb3 must run ssh between 22-24.\n",
    );
    let r = custodian(dir.path(), &["check", "bad.cfg"]);
    assert_eq!(r.code, 2);
    insta::assert_snapshot!(r.stderr);
}

#[test]
fn unrecognised_words_warn_and_strict_makes_them_errors() {
    let (dir, _) = file("w.cfg", "web1 must run ssh frobnicate loudly.\n");
    let lax = custodian(dir.path(), &["check", "w.cfg"]);
    assert_eq!(lax.code, 0, "{}", lax.stderr);
    assert!(lax.stderr.contains("w.cfg:1:19: warning"), "{}", lax.stderr);
    let strict = custodian(dir.path(), &["check", "--strict", "w.cfg"]);
    assert_eq!(strict.code, 2);
    assert!(
        strict.stderr.contains("w.cfg:1:19: error"),
        "{}",
        strict.stderr
    );
}

#[test]
fn json_has_one_object_per_expanded_job_with_secrets_masked() {
    let (dir, _) = file(
        "j.cfg",
        "WEB are 127.0.0.1 and 127.0.0.2.\nWEB must run ssh on 2222 otherwise 'ssh down' with subject 'S'.\n\
         http://bob:hunter2@127.0.0.1:8080/ must run http with content 'ok'.\n",
    );
    let r = custodian(dir.path(), &["check", "--json", "j.cfg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.contains("hunter2"),
        "password leaked: {}",
        r.stdout
    );
    let jobs: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[0]["type"], "ssh");
    assert_eq!(jobs[0]["target"], "127.0.0.1");
    assert_eq!(jobs[1]["target"], "127.0.0.2");
    assert_eq!(jobs[0]["port"], 2222);
    assert_eq!(jobs[0]["otherwise"], "ssh down");
    assert_eq!(jobs[0]["subject"], "S");
    assert_eq!(jobs[0]["inverted"], false);
    assert_eq!(jobs[0]["lineno"], 2);
    assert_eq!(jobs[2]["port"], 8080);
    assert_eq!(jobs[2]["options"]["content"], "ok");
    assert_eq!(jobs[2]["target"], "http://bob:********@127.0.0.1:8080/");
    for key in [
        "type",
        "target",
        "port",
        "inverted",
        "otherwise",
        "subject",
        "line",
        "file",
        "lineno",
        "options",
    ] {
        assert!(jobs[1].get(key).is_some(), "missing {key}");
    }
}

#[test]
fn settings_with_unknown_keys_are_rejected() {
    let (dir, _) = file("s.toml", "timout = 3\n");
    std::fs::write(dir.path().join("t.cfg"), "127.0.0.1 must run ssh.\n").expect("write");
    let r = custodian(dir.path(), &["check", "--settings", "s.toml", "t.cfg"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown field `timout`"), "{}", r.stderr);
}

#[test]
fn json_masks_credential_headers_and_data() {
    let (dir, _) = file(
        "h.cfg",
        "http://127.0.0.1:8080/ must run http with header 'Authorization: Bearer s3cr3t' \
         with data 'user=bob&password=pw-s3cr3t'.\n",
    );
    let r = custodian(dir.path(), &["check", "--json", "h.cfg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("s3cr3t"), "secret leaked: {}", r.stdout);
    assert!(!r.stderr.contains("s3cr3t"), "secret leaked: {}", r.stderr);
    let job: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("json");
    assert_eq!(job["options"]["header"], "Authorization: ********");
    assert_eq!(job["options"]["data"], "user=bob&password=********");
    assert!(
        job["line"]
            .as_str()
            .is_some_and(|l| l.contains("'Authorization: ********'")),
        "{job}"
    );
}

/// A list of /16 blocks past `max_jobs` is an error at the line that crosses the cap, and
/// expansion stops there (the 500 lines would be 32 million jobs).
#[test]
fn expansion_past_max_jobs_names_the_line_and_the_cap() {
    let (dir, _) = file("s.toml", "max_jobs = 100000\n");
    let lines: String = (0..500)
        .map(|i| format!("10.{}.0.0/16 must run ssh.\n", i % 256))
        .collect();
    std::fs::write(dir.path().join("t.cfg"), lines).expect("write");
    let r = custodian(dir.path(), &["check", "--settings", "s.toml", "t.cfg"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("t.cfg:2:1: error"), "{}", r.stderr);
    assert!(r.stderr.contains("past 100000 jobs"), "{}", r.stderr);
    assert!(r.stderr.contains("`max_jobs`"), "{}", r.stderr);
    assert!(r.stderr.contains("1 error(s)"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let r = custodian(
        dir.path(),
        &["check", "--settings", "s.toml", "--json", "t.cfg"],
    );
    assert_eq!(r.code, 2, "nothing is listed past the cap");
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

/// `from` and `with quorum` reach `--json`; an impossible quorum stops the file with its
/// position and nothing is planned.
#[test]
fn locations_show_in_json_and_an_impossible_quorum_is_rejected() {
    let (dir, _) = file(
        "l.cfg",
        "EU are lon1 and ams1.\n127.0.0.1 must run ssh from EU with quorum 1.\n",
    );
    let r = custodian(dir.path(), &["check", "--json", "l.cfg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let job: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("json");
    assert_eq!(job["from"], serde_json::json!({"named": ["ams1", "lon1"]}));
    assert_eq!(job["quorum"], 1);
    let (dir, _) = file(
        "q.cfg",
        "127.0.0.1 must run ssh from lon1 and ams1 with quorum 3.\n",
    );
    let r = custodian(dir.path(), &["check", "q.cfg"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("q.cfg:1:43: error: impossible quorum: 3 of 2"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("nothing was run or enqueued"),
        "{}",
        r.stderr
    );
}
