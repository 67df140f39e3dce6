//! `custodian run` end to end against the real daemons of tests/peers (OpenSSH, Postfix, nginx,
//! unbound): one file, a table, JSON and exit codes.

use crate::common::*;
use custodian_testpeers::peers;

/// A test file over every peer: all lines pass except the ones that say `expect-fail`.
fn peer_file(with_failures: bool) -> String {
    let p = peers();
    let (ssh, smtp, http, https, exp, dns) = (
        p.addr("ssh"),
        p.addr("smtp"),
        p.addr("http"),
        p.addr("https"),
        p.addr("https_expiring"),
        p.addr("dns"),
    );
    let mut text = format!(
        "PEERS are {ssh_ip}.\n\
         PEERS must run ssh on {ssh_port} otherwise 'expect-pass'.\n\
         {smtp_ip} must run smtp on port {smtp_port} otherwise 'expect-pass'.\n\
         http://{http}/ must run http with content 'custodian-ok' otherwise 'expect-pass'.\n\
         https://{https}/ must run https with content 'custodian-ok' and cannot expire within 14 days otherwise 'expect-pass'.\n\
         https://{exp}/ must run https and cannot expire within 2 days otherwise 'expect-pass'.\n\
         {dns_ip} must run dns on {dns_port} for www.custodian.test resolving A as '192.0.2.10,192.0.2.11' otherwise 'expect-pass'.\n",
        ssh_ip = ssh.ip(),
        ssh_port = ssh.port(),
        smtp_ip = smtp.ip(),
        smtp_port = smtp.port(),
        dns_ip = dns.ip(),
        dns_port = dns.port(),
    );
    if with_failures {
        text += &format!(
            "https://{exp}/ must run https otherwise 'expect-fail'.\n\
             http://{http}/ must run http with content 'not-on-the-page' otherwise 'expect-fail'.\n\
             {dns_ip} must run dns on {dns_port} for www.custodian.test resolving A as '192.0.2.99' otherwise 'expect-fail'.\n\
             {ssh_ip} must not run ssh on {ssh_port} otherwise 'expect-fail'.\n",
            dns_ip = dns.ip(),
            dns_port = dns.port(),
            ssh_ip = ssh.ip(),
            ssh_port = ssh.port(),
        );
    }
    text
}

fn settings_toml() -> String {
    format!(
        "ca_file = {:?}\nretries = 1\ntimeout = 10\n",
        peers().get("ca")
    )
}

#[test]
fn real_daemons_pass_and_exit_0() {
    let (dir, _) = file("peers.cfg", &peer_file(false));
    std::fs::write(dir.path().join("s.toml"), settings_toml()).expect("write");
    let r = custodian(dir.path(), &["run", "--settings", "s.toml", "peers.cfg"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("6 passed, 0 failed, 0 unknown, 0 skipped"),
        "{}",
        r.stdout
    );
}

#[test]
fn real_daemons_fail_for_the_right_reasons() {
    let (dir, _) = file("peers.cfg", &peer_file(true));
    std::fs::write(dir.path().join("s.toml"), settings_toml()).expect("write");
    let r = custodian(
        dir.path(),
        &["run", "--json", "--settings", "s.toml", "peers.cfg"],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let rows: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), 10);
    for row in &rows {
        let expected = if row["otherwise"] == "expect-pass" {
            "passed"
        } else {
            "failed"
        };
        assert_eq!(row["status"], expected, "{row}");
    }
    let error_of = |needle: &str| {
        rows.iter()
            .find(|r| r["line"].as_str().unwrap_or("").contains(needle) && r["status"] == "failed")
            .and_then(|r| r["error"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    assert!(
        error_of("must run https otherwise").contains("expire"),
        "{rows:?}"
    );
    assert!(
        error_of("not-on-the-page").contains("not-on-the-page"),
        "{rows:?}"
    );
    assert!(error_of("192.0.2.99").contains("192.0.2.10"), "{rows:?}");
    assert!(
        error_of("must not run ssh").contains("running but must not be"),
        "{rows:?}"
    );
    let table = custodian(dir.path(), &["run", "--settings", "s.toml", "peers.cfg"]);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[1..5]
            .iter()
            .all(|l| l.starts_with("FAIL") && l.contains("otherwise 'expect-fail'")),
        "{}",
        table.stdout
    );
    assert!(
        lines[5..11].iter().all(|l| l.starts_with("ok")),
        "{}",
        table.stdout
    );
}

/// `mx` and `dnsbl` resolve through the `nameservers` setting (the unbound peer), and `tftp`
/// downloads from tftpd-hpa: each passes or fails as its line says.
#[test]
fn nameservers_setting_serves_mx_and_dnsbl() {
    let p = peers();
    let (dns, smtp, tftp) = (p.addr("dns"), p.addr("smtp"), p.addr("tftp"));
    let port = smtp.port();
    let text = format!(
        "mx-ok.custodian.test must run mx on {port} otherwise 'expect-pass'.\n\
         mx-dead.custodian.test must run mx on {port} otherwise 'expect-fail'.\n\
         127.0.0.3 must not run dnsbl via bl.custodian.test otherwise 'expect-pass'.\n\
         127.0.0.2 must not run dnsbl via 'bl.custodian.test' otherwise 'expect-fail'.\n\
         tftp://{tftp}/hello.txt must run tftp otherwise 'expect-pass'.\n\
         tftp://{tftp}/missing.txt must run tftp otherwise 'expect-fail'.\n"
    );
    let (dir, _) = file("names.cfg", &text);
    let settings = format!("nameservers = [\"{dns}\"]\nretries = 1\ntimeout = 10\n");
    std::fs::write(dir.path().join("s.toml"), settings).expect("write");
    let r = custodian(
        dir.path(),
        &["run", "--json", "--settings", "s.toml", "names.cfg"],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let rows: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), 6, "{}", r.stdout);
    let mut errors = Vec::new();
    for row in &rows {
        let want = if row["otherwise"] == "expect-pass" {
            "passed"
        } else {
            "failed"
        };
        assert_eq!(row["status"], want, "{row}");
        errors.extend(row["error"].as_str().map(str::to_string));
    }
    let want = [
        format!("dead.custodian.test (127.0.40.99): connect to port {port}: connection refused"),
        "service is running but must not be (listed in bl.custodian.test (127.0.0.2))".into(),
        "server error 1: File not found".into(),
    ];
    for w in &want {
        assert!(errors.contains(w), "{w:?} not in {errors:?}");
    }
}

/// A password written as `${env:NAME}` travels as the reference: `check --json` masks it, the
/// worker reads the variable (here the peers' env file sets it) and the value never reaches
/// the output; a variable the worker lacks makes the check unknown, naming the variable.
#[test]
fn passwords_from_the_environment_are_read_by_the_worker_and_never_shown() {
    let addr = peers().addr("redis_auth");
    let password = peers().get("redis_password");
    let text = format!(
        "{ip} must run redis on {port} with password '${{env:CUSTODIAN_PEER_REDIS_PASSWORD}}'.\n\
         {ip} must run redis on {port} with password '${{env:CUSTODIAN_IT_NEVER_SET_PW}}'.\n",
        ip = addr.ip(),
        port = addr.port(),
    );
    let (dir, _) = file("pw.cfg", &text);
    let check = custodian(dir.path(), &["check", "--json", "pw.cfg"]);
    assert_eq!(
        check.code, 0,
        "an unset variable is the worker's business: {}",
        check.stderr
    );
    assert!(
        !check.stdout.contains("CUSTODIAN_PEER_REDIS"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("with password '********'"),
        "{}",
        check.stdout
    );
    std::fs::write(dir.path().join("s.toml"), settings_toml()).expect("write");
    let r = custodian(
        dir.path(),
        &["run", "--json", "--settings", "s.toml", "pw.cfg"],
    );
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        !format!("{}{}", r.stdout, r.stderr).contains(password),
        "{}",
        r.stdout
    );
    let mut rows: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), 2, "{}", r.stdout);
    rows.sort_by_key(|row| row["lineno"].as_u64());
    assert_eq!(rows[0]["status"], "passed", "{}", rows[0]);
    assert_eq!(rows[1]["status"], "unknown", "{}", rows[1]);
    assert_eq!(
        rows[1]["error"],
        "could not check: bad option: password: environment variable CUSTODIAN_IT_NEVER_SET_PW is not set \
             (set it in the worker's environment, e.g. the unit's EnvironmentFile=)"
    );
}
