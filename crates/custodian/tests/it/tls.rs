//! Trust like the rest of the system, end to end: `custodian run` of an https check against the
//! nginx peer, whose certificate the peers' own test CA signs, with that CA installed in the
//! system trust store of a private mount namespace (the real /etc is never touched), given
//! through `SSL_CERT_FILE`, or not installed at all; with `tls_roots = "bundled"`; and with a
//! `ca_file` that cannot be used.

use crate::common::*;
use custodian_testpeers::peers;
use std::path::Path;
use std::process::Command;

/// The distribution's bundle, which OpenSSL, curl and custodian read.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

const UNTRUSTED: &str = "certificate is not trusted (unknown issuer)";

/// A temp dir with `t.cfg` (one https check of the peer), `s.toml` (`settings` added) and
/// `bundle.pem`: the system's bundle plus the peers' test CA.
fn setup(settings: &str) -> tempfile::TempDir {
    let https = peers().addr("https");
    let (dir, _) = file("t.cfg", &format!("https://{https}/ must run https.\n"));
    let toml = format!("retries = 1\ntimeout = 10\n{settings}");
    std::fs::write(dir.path().join("s.toml"), toml).expect("write settings");
    let mut bundle = std::fs::read(SYSTEM_BUNDLE).expect("read the system bundle");
    bundle.extend(std::fs::read(peers().get("ca")).expect("read the peers' CA"));
    std::fs::write(dir.path().join("bundle.pem"), bundle).expect("write bundle");
    dir
}

/// `custodian run --settings s.toml t.cfg` in `dir`, started through `wrap` (a program and its
/// arguments, or nothing), with `vars` set and the caller's trust-store variables removed.
fn run(dir: &Path, wrap: &[&str], vars: &[(&str, &str)]) -> Run {
    let bin = env!("CARGO_BIN_EXE_custodian");
    let args = ["run", "--settings", "s.toml", "t.cfg"];
    let mut cmd = match wrap.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(args)
        .current_dir(dir)
        .env_remove("CUSTODIAN_LOG")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .envs(vars.iter().copied());
    let out = cmd.output().expect("run custodian");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs in a private mount namespace whose system bundle is `dir/bundle.pem` (bind-mounted
/// over it; the mount vanishes with the namespace).
fn run_with_ca_in_system_store(dir: &Path) -> Run {
    let bundle = dir.join("bundle.pem");
    let script = format!("mount --bind \"$0\" {SYSTEM_BUNDLE} && exec \"$@\"");
    let wrap = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        bundle.to_str().expect("utf-8 path"),
    ];
    run(dir, &wrap, &[])
}

#[track_caller]
fn assert_passed(r: &Run) {
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("1 passed, 0 failed"), "{}", r.stdout);
}

#[track_caller]
fn assert_untrusted(r: &Run) {
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(UNTRUSTED), "{}{}", r.stdout, r.stderr);
}

#[test]
fn a_ca_in_the_system_store_is_trusted_without_ca_file() {
    let dir = setup("");
    assert_passed(&run_with_ca_in_system_store(dir.path()));
    // Outside the namespace the system store lacks the CA.
    assert_untrusted(&run(dir.path(), &[], &[]));
}

#[test]
fn ssl_cert_file_names_the_system_store() {
    let dir = setup("");
    let bundle = dir.path().join("bundle.pem");
    let bundle = bundle.to_str().expect("utf-8 path");
    assert_passed(&run(dir.path(), &[], &[("SSL_CERT_FILE", bundle)]));
}

#[test]
fn bundled_roots_ignore_the_system_store() {
    let dir = setup("tls_roots = \"bundled\"\n");
    assert_untrusted(&run_with_ca_in_system_store(dir.path()));
    // ca_file still adds to the bundled roots.
    let ca = format!(
        "tls_roots = \"bundled\"\nca_file = {:?}\n",
        peers().get("ca")
    );
    assert_passed(&run(setup(&ca).path(), &[], &[]));
}

#[test]
fn an_unreadable_system_store_falls_back_to_the_bundled_roots() {
    let dir = setup("");
    let r = run(dir.path(), &[], &[("SSL_CERT_FILE", "/nonexistent/ca.pem")]);
    assert_untrusted(&r);
    assert!(
        r.stderr.contains("cannot use the system trust store")
            && r.stderr
                .contains("trusting the bundled Mozilla roots instead"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_bad_ca_file_stops_start_up() {
    let dir = setup("ca_file = \"missing.pem\"\n");
    let r = run(dir.path(), &[], &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("loading ca_file") && r.stderr.contains("cannot read CA file"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "nothing may run: {}", r.stdout);
    let dir = setup("ca_file = \"t.cfg\"\n");
    let r = run(dir.path(), &[], &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("holds no certificate"), "{}", r.stderr);
}
