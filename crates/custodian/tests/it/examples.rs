//! The shipped examples stay valid: every `examples/*.cfg` passes `check --strict`, every
//! `examples/*.toml` loads as settings, and the scan target file parses (nothing is probed).

use crate::common::*;
use std::path::{Path, PathBuf};

/// The repository's examples/ directory.
fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The example files ending in `.ext`, sorted; fails when there are none (a moved directory
/// must not make these tests pass vacuously).
fn examples(ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("read examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples/*.{ext}");
    files
}

#[test]
fn every_example_test_file_passes_strict_check() {
    let files = examples("cfg");
    assert!(files.iter().any(|f| f.ends_with("local.cfg")), "{files:?}");
    for f in &files {
        let path = f.to_string_lossy();
        let r = custodian(&examples_dir(), &["check", "--strict", &path]);
        assert_eq!(r.code, 0, "{path}: {}{}", r.stdout, r.stderr);
        assert_eq!(r.stderr, "", "{path}: warnings");
        assert!(
            r.stdout.ends_with("file(s): valid\n"),
            "{path}: {}",
            r.stdout
        );
    }
}

#[test]
fn the_hosting_example_expands_macros_and_keeps_its_options() {
    let f = examples_dir().join("hosting.cfg");
    let r = custodian(&examples_dir(), &["check", "--json", &f.to_string_lossy()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let jobs: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    // RACK7 (a /30) expands to 4 addresses, each pinged.
    let rack_pings = jobs
        .iter()
        .filter(|j| {
            j["type"] == "ping" && j["line"].as_str().is_some_and(|l| l.starts_with("RACK7"))
        })
        .count();
    assert_eq!(rack_pings, 4, "{}", r.stdout);
    // `between 8-18` and `except between 1-3` keep their windows; `must not run` inverts.
    let window = |from: u64, to: u64, except: bool| {
        jobs.iter().any(|j| {
            j["window"]["from"] == from
                && j["window"]["to"] == to
                && j["window"]["except"] == except
        })
    };
    assert!(window(8, 18, false), "{}", r.stdout);
    assert!(window(1, 3, true), "{}", r.stdout);
    assert!(jobs.iter().any(|j| j["inverted"] == true));
    // The URL password is masked.
    assert!(!r.stdout.contains("stats-pw"), "{}", r.stdout);
}

#[test]
fn every_example_settings_file_loads() {
    let tests = examples_dir().join("local.cfg");
    for f in examples("toml") {
        let path = f.to_string_lossy();
        let r = custodian(
            &examples_dir(),
            &["check", "--settings", &path, &tests.to_string_lossy()],
        );
        assert_eq!(r.code, 0, "{path}: {}{}", r.stdout, r.stderr);
    }
}

#[test]
fn a_changed_example_key_would_be_caught() {
    // The loader used above refuses unknown keys, so a stale example key cannot pass.
    let text = std::fs::read_to_string(examples_dir().join("custodian.toml")).expect("read");
    let (dir, _) = file("stale.toml", &text.replace("per_host", "per_hots"));
    let r = custodian(
        dir.path(),
        &[
            "check",
            "--settings",
            "stale.toml",
            &examples_dir().join("local.cfg").to_string_lossy(),
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("per_hots"), "{}", r.stderr);
}

#[test]
fn the_scan_target_file_parses() {
    // Every address excluded (the file holds IPv4 only): it is read and parsed, and nothing
    // is probed; a bad line would be exit 2.
    let targets = format!("@{}", examples_dir().join("scan-targets.txt").display());
    let r = custodian(
        &examples_dir(),
        &[
            "scan",
            "--checks",
            "openrelay",
            "--recipient",
            "canary@example.com",
            "--quiet",
            "--json",
            "--exclude",
            "0.0.0.0/0",
            &targets,
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "", "nothing may be scanned");
}
