//! Probes against the real daemons of `tests/peers` (OpenSSH, Postfix, nginx, unbound): each
//! type passes against the real server, and fails for the stated reason when it should.

use custodian_core::{Job, Outcome};
use custodian_probes::{add_ca_file, find, Ctx};
use custodian_testpeers::peers;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::time::Instant;

/// Runs the `job.probe` check against `addr`, with `secs` to finish.
async fn run(job: Job, addr: SocketAddr, secs: u64) -> Outcome {
    let probe = find(&job.probe).unwrap_or_else(|| panic!("no probe type {}", job.probe));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let cx = Ctx::new(Arc::new(job), Some(addr.ip()), deadline);
    (probe.check)(&cx).await
}

fn with_opts(mut job: Job, opts: &[(&str, Value)]) -> Job {
    for (k, v) in opts {
        job.options.insert(k.to_string(), v.clone());
    }
    job
}

/// A host-type job (`ssh`, `smtp`) on `addr`.
async fn host(kind: &str, addr: SocketAddr, opts: &[(&str, Value)]) -> Outcome {
    let job = Job::new(kind, &addr.ip().to_string(), Some(addr.port()));
    run(with_opts(job, opts), addr, 10).await
}

/// A URL-type job (`http`, `https`) for `path` on the peer named `peer`.
async fn url(kind: &str, peer: &str, path: &str, opts: &[(&str, Value)]) -> Outcome {
    if kind == "https" {
        trust_peer_ca();
    }
    let addr = peers().addr(peer);
    let job = Job::new(kind, &format!("{kind}://{addr}{path}"), Some(addr.port()));
    run(with_opts(job, opts), addr, 10).await
}

/// The peers' certificates are signed by their own test CA; trust it once per process.
fn trust_peer_ca() {
    static TRUST: Once = Once::new();
    TRUST.call_once(|| {
        let ca = peers().get("ca");
        let added = add_ca_file(Path::new(ca)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(added, 1, "{ca} should hold exactly the test CA");
    });
}

/// The same address with a port nothing listens on.
fn closed(peer: &str) -> SocketAddr {
    let mut a = peers().addr(peer);
    a.set_port(a.port() + 1);
    a
}

#[track_caller]
fn assert_up(out: &Outcome, detail: &str) {
    match out {
        Outcome::Up { detail: Some(d) } if d.contains(detail) => {}
        _ => panic!("expected up with detail containing {detail:?}, got {out:?}"),
    }
}

#[track_caller]
fn assert_down(out: &Outcome, needle: &str) {
    match out {
        Outcome::Down { reason } if reason.contains(needle) => {}
        _ => panic!("expected down mentioning {needle:?}, got {out:?}"),
    }
}

// ---- ssh: OpenSSH on CUSTODIAN_PEER_SSH

#[tokio::test]
async fn ssh_real_server_passes_with_its_banner() {
    let out = host(
        "ssh",
        peers().addr("ssh"),
        &[("banner", json!("^SSH-2\\.0-OpenSSH_"))],
    )
    .await;
    assert_up(&out, "SSH-2.0-OpenSSH_");
}

#[tokio::test]
async fn ssh_wrong_banner_fails() {
    let out = host("ssh", peers().addr("ssh"), &[("banner", json!("dropbear"))]).await;
    assert_down(&out, "does not match /dropbear/");
}

#[tokio::test]
async fn ssh_closed_port_is_refused() {
    let addr = closed("ssh");
    let out = host("ssh", addr, &[]).await;
    assert_down(
        &out,
        &format!("connect to port {}: connection refused", addr.port()),
    );
}

#[tokio::test]
async fn ssh_against_a_mail_server_fails() {
    let job = Job::new("ssh", "127.0.10.4", Some(peers().addr("smtp").port()));
    let out = run(job, peers().addr("smtp"), 2).await;
    assert_down(&out, "does not start with SSH-");
}

// ---- smtp: Postfix on CUSTODIAN_PEER_SMTP

#[tokio::test]
async fn smtp_real_server_passes_with_its_banner() {
    let out = host(
        "smtp",
        peers().addr("smtp"),
        &[("banner", json!("ESMTP custodian"))],
    )
    .await;
    assert_up(&out, "ESMTP custodian test peer");
}

#[tokio::test]
async fn smtp_wrong_banner_fails() {
    let out = host("smtp", peers().addr("smtp"), &[("banner", json!("Exim"))]).await;
    assert_down(&out, "does not match /Exim/");
}

#[tokio::test]
async fn smtp_closed_port_is_refused() {
    let addr = closed("smtp");
    let out = host("smtp", addr, &[]).await;
    assert_down(
        &out,
        &format!("connect to port {}: connection refused", addr.port()),
    );
}

#[tokio::test]
async fn smtp_against_an_ssh_server_fails() {
    let out = host("smtp", peers().addr("ssh"), &[]).await;
    assert_down(&out, "malformed reply line \"SSH-2.0-");
}

// ---- http: nginx on CUSTODIAN_PEER_HTTP

#[tokio::test]
async fn http_page_passes_with_its_content() {
    let out = url("http", "http", "/", &[("content", json!("custodian-ok"))]).await;
    assert_up(&out, "status 200");
}

#[tokio::test]
async fn http_wrong_content_fails() {
    let out = url(
        "http",
        "http",
        "/",
        &[("content", json!("not-on-the-page"))],
    )
    .await;
    assert_down(&out, "content \"not-on-the-page\" not found");
}

#[tokio::test]
async fn http_missing_page_fails_on_status() {
    let out = url("http", "http", "/status/404", &[]).await;
    assert_down(&out, "status 404 Not Found, expected 200");
    let out = url("http", "http", "/status/404", &[("status", json!(404))]).await;
    assert_up(&out, "status 404");
}

#[tokio::test]
async fn http_redirect_is_followed_unless_told_not_to() {
    let out = url(
        "http",
        "http",
        "/redirect",
        &[("content", json!("custodian-ok"))],
    )
    .await;
    assert_up(&out, "status 200");
    let out = url(
        "http",
        "http",
        "/redirect",
        &[("not_following_redirects", json!(true))],
    )
    .await;
    assert_down(&out, "status 302 Found, expected 200");
}

#[tokio::test]
async fn http_big_file_is_read_whole() {
    let out = url("http", "http", "/big", &[]).await;
    assert_up(&out, "status 200, 2097152 bytes");
}

#[tokio::test]
async fn http_closed_port_is_refused() {
    let addr = closed("http");
    let job = Job::new("http", &format!("http://{addr}/"), Some(addr.port()));
    let out = run(job, addr, 10).await;
    assert_down(
        &out,
        &format!("connect to port {}: connection refused", addr.port()),
    );
}

// ---- https: nginx with certificates from the peers' test CA

#[tokio::test]
async fn https_valid_certificate_passes() {
    let out = url("https", "https", "/", &[("content", json!("custodian-ok"))]).await;
    assert_up(&out, "status 200");
}

#[tokio::test]
async fn https_year_long_certificate_fails_a_longer_demand() {
    let out = url("https", "https", "/", &[("expire_days", json!(400))]).await;
    assert_down(&out, "less than 400");
}

#[tokio::test]
async fn https_expiring_certificate_fails_the_default_14_days() {
    let out = url("https", "https_expiring", "/", &[]).await;
    assert_down(&out, "certificate expires in ");
    assert_down(&out, "less than 14");
}

#[tokio::test]
async fn https_expiring_certificate_passes_a_2_day_demand() {
    let out = url("https", "https_expiring", "/", &[("expire_days", json!(2))]).await;
    assert_up(&out, "status 200");
}

#[tokio::test]
async fn https_against_plain_http_fails_the_handshake() {
    let addr = peers().addr("http");
    trust_peer_ca();
    let job = Job::new("https", &format!("https://{addr}/"), Some(addr.port()));
    let out = run(job, addr, 10).await;
    assert_down(
        &out,
        &format!("TLS handshake on port {} failed", addr.port()),
    );
}

// ---- dns: unbound serving custodian.test on CUSTODIAN_PEER_DNS

/// Asks the peer (or `addr`) for `query`'s `rtype` records, expecting `expect`.
async fn dns_at(addr: SocketAddr, query: &str, rtype: &str, expect: &str) -> Outcome {
    let opts = [
        ("query", json!(query)),
        ("rtype", json!(rtype)),
        ("expect", json!(expect)),
    ];
    host("dns", addr, &opts).await
}

async fn dns(query: &str, rtype: &str, expect: &str) -> Outcome {
    dns_at(peers().addr("dns"), query, rtype, expect).await
}

#[tokio::test]
async fn dns_each_record_type_passes() {
    let www = "www.custodian.test";
    assert_up(&dns(www, "A", "192.0.2.11, 192.0.2.10").await, "192.0.2.10");
    assert_up(&dns(www, "AAAA", "2001:DB8:0::10").await, "2001:db8::10");
    let ns = dns("custodian.test", "NS", "ns1.custodian.test.").await;
    assert_up(&ns, "ns1.custodian.test");
    let mx = dns("custodian.test", "MX", "mail.custodian.test").await;
    assert_up(&mx, "mail.custodian.test");
    assert_up(
        &dns("mail.custodian.test", "A", "192.0.2.25").await,
        "192.0.2.25",
    );
}

#[tokio::test]
async fn dns_wrong_expected_value_fails() {
    let out = dns("www.custodian.test", "A", "192.0.2.10").await;
    assert_down(&out, "A is [192.0.2.10, 192.0.2.11], expected [192.0.2.10]");
    let out = dns("custodian.test", "MX", "mx.example.org").await;
    assert_down(
        &out,
        "MX is [mail.custodian.test], expected [mx.example.org]",
    );
    let out = dns("custodian.test", "TXT", "v=spf2").await;
    assert_down(&out, "TXT is [v=spf1 -all], expected [v=spf2]");
}

#[tokio::test]
async fn dns_missing_records_fail() {
    let out = dns("nothing.custodian.test", "A", "192.0.2.1").await;
    assert_down(&out, "NXDOMAIN");
    let out = dns("www.custodian.test", "MX", "mail.custodian.test").await;
    assert_down(&out, "has no MX records");
}

#[tokio::test]
async fn dns_foreign_zone_is_refused() {
    // The peer serves only custodian.test and refuses the rest: nothing is forwarded.
    let out = dns("example.org", "A", "192.0.2.1").await;
    assert_down(&out, "REFUSED");
}

#[tokio::test]
async fn dns_closed_port_is_refused() {
    let addr = closed("dns");
    let out = dns_at(addr, "www.custodian.test", "A", "192.0.2.10").await;
    assert_down(
        &out,
        &format!("UDP to port {}: connection refused", addr.port()),
    );
}

#[tokio::test]
async fn dns_txt_record_with_spaces_passes() {
    let out = dns("custodian.test", "TXT", "v=spf1 -all").await;
    assert_up(&out, "v=spf1 -all");
}

// ---- databases and directories: PostgreSQL, MariaDB, Redis and slapd on 127.0.30.x

/// The login options for the probe's database user.
fn db_login(password: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("username", json!(peers().get("db_user"))),
        ("password", json!(password)),
        ("database", json!("custodian_probe")),
    ]
}

#[tokio::test]
async fn postgresql_real_server_answers_and_logs_in() {
    let addr = peers().addr("postgresql");
    assert_up(
        &host("psql", addr, &[]).await,
        "server asks for authentication",
    );
    let out = host("postgresql", addr, &db_login(peers().get("db_password"))).await;
    assert_up(&out, "logged in as custodian_probe");
}

#[tokio::test]
async fn postgresql_wrong_password_is_refused() {
    let out = host(
        "postgresql",
        peers().addr("postgresql"),
        &db_login("hunter2"),
    )
    .await;
    assert_down(
        &out,
        "login refused: \"password authentication failed for user",
    );
    assert_down(&out, "(28P01)");
    assert!(!format!("{out:?}").contains("hunter2"));
}

#[tokio::test]
async fn mysql_real_server_greets_and_logs_in() {
    let addr = peers().addr("mysql");
    assert_up(&host("mysql", addr, &[]).await, "MariaDB");
    let out = host("mysql", addr, &db_login(peers().get("db_password"))).await;
    assert_up(&out, "logged in as custodian_probe");
}

#[tokio::test]
async fn mysql_wrong_password_and_stopped_port_fail() {
    let out = host("mysql", peers().addr("mysql"), &db_login("hunter2")).await;
    assert_down(&out, "Access denied for user 'custodian_probe'@'127.0.0.1'");
    assert!(!format!("{out:?}").contains("hunter2"));
    let addr = closed("mysql");
    let out = host("mysql", addr, &[]).await;
    assert_down(
        &out,
        &format!("connect to port {}: connection refused", addr.port()),
    );
}

#[tokio::test]
async fn redis_real_servers_pong() {
    assert_up(&host("redis", peers().addr("redis"), &[]).await, "PONG");
    let pw = json!(peers().get("redis_password"));
    let out = host(
        "redis",
        peers().addr("redis_auth"),
        &[("password", pw.clone())],
    )
    .await;
    assert_up(&out, "PONG after AUTH");
    let with_user = [("username", json!("default")), ("password", pw)];
    assert_up(
        &host("redis", peers().addr("redis_auth"), &with_user).await,
        "PONG",
    );
}

#[tokio::test]
async fn redis_without_or_with_a_wrong_password_fails() {
    let addr = peers().addr("redis_auth");
    assert_down(&host("redis", addr, &[]).await, "PING refused: \"NOAUTH");
    let out = host("redis", addr, &[("password", json!("hunter2"))]).await;
    assert_down(&out, "AUTH refused: \"WRONGPASS");
    assert!(!format!("{out:?}").contains("hunter2"));
}

/// The bind and search options for the directory's probe entry.
fn ldap_opts(password: &str, filter: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("username", json!(peers().get("ldap_user"))),
        ("password", json!(password)),
        ("base", json!(peers().get("ldap_base"))),
        ("filter", json!(filter)),
    ]
}

#[tokio::test]
async fn ldap_real_server_binds_and_finds_the_entry() {
    let addr = peers().addr("ldap");
    assert_up(&host("ldap", addr, &[]).await, "anonymous bind");
    let out = host(
        "ldap",
        addr,
        &ldap_opts(peers().get("ldap_password"), "(uid=probe)"),
    )
    .await;
    assert_up(&out, "found cn=probe,dc=custodian,dc=test");
}

#[tokio::test]
async fn ldap_wrong_password_and_missing_entry_fail() {
    let addr = peers().addr("ldap");
    let out = host("ldap", addr, &ldap_opts("hunter2", "(uid=probe)")).await;
    assert_down(&out, "bind refused: invalidCredentials (49)");
    let out = host(
        "ldap",
        addr,
        &ldap_opts(peers().get("ldap_password"), "(uid=nobody)"),
    )
    .await;
    assert_down(&out, "search found no entry");
}

#[tokio::test]
async fn ldaps_real_server_binds_over_verified_tls() {
    trust_peer_ca();
    let addr = peers().addr("ldaps");
    let out = host(
        "ldaps",
        addr,
        &ldap_opts(peers().get("ldap_password"), "(uid=probe)"),
    )
    .await;
    assert_up(&out, "found cn=probe,dc=custodian,dc=test");
}

#[tokio::test]
async fn ldaps_on_the_plain_port_fails_the_handshake() {
    trust_peer_ca();
    let out = host("ldaps", peers().addr("ldap"), &[]).await;
    assert_down(&out, "TLS handshake");
}
