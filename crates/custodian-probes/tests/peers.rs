//! Probes against the real daemons of `tests/peers` (listed in its README): each
//! type passes against the real server, and fails for the stated reason when it should.

use custodian_core::{Job, Outcome};
use custodian_probes::{find, Ctx, Env, EnvOptions, Roots};
use custodian_testpeers::peers;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Runs the `job.probe` check against `addr`, with `secs` to finish.
async fn run(job: Job, addr: SocketAddr, secs: u64) -> Outcome {
    let probe = find(&job.probe).unwrap_or_else(|| panic!("no probe type {}", job.probe));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let cx = Ctx::new_in(env(), Arc::new(job), Some(addr.ip()), deadline);
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
    let addr = peers().addr(peer);
    let job = Job::new(kind, &format!("{kind}://{addr}{path}"), Some(addr.port()));
    run(with_opts(job, opts), addr, 10).await
}

/// The probes' environment here, built once: the bundled roots plus the peers' own test CA
/// (which signs their certificates), and the unbound peer as the only nameserver, so `mx` and
/// `dnsbl` never reach the system's resolver.
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let options = EnvOptions {
            roots: Roots::Bundled,
            ca_file: Some(peers().get("ca").into()),
            nameservers: vec![peers().addr("dns")],
        };
        Arc::new(Env::build(&options).unwrap_or_else(|e| panic!("{e}")))
    })
    .clone()
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

/// `with tls insecure` skips the chain and name only: the expiring certificate still fails
/// the limit (default or given), and the reason says verification was skipped.
#[tokio::test]
async fn https_insecure_still_fails_an_expiring_certificate() {
    let insecure = ("with_tls_insecure", json!(true));
    let skipped = "(verification skipped: with tls insecure)";
    let out = url(
        "https",
        "https_expiring",
        "/",
        std::slice::from_ref(&insecure),
    )
    .await;
    assert_down(&out, "certificate expires in ");
    assert_down(&out, &format!("less than 14 {skipped}"));
    let limit = [insecure.clone(), ("expiration", json!("1w"))];
    assert_down(
        &url("https", "https_expiring", "/", &limit).await,
        &format!("less than 7 {skipped}"),
    );
    let out = tls_host("ssl", "https_expiring", std::slice::from_ref(&insecure)).await;
    assert_down(&out, &format!("less than 14 {skipped}"));
    let short = [insecure, ("expire_days", json!(1))];
    assert_up(
        &url("https", "https_expiring", "/", &short).await,
        "status 200",
    );
}

#[tokio::test]
async fn https_expiring_certificate_passes_a_2_day_demand() {
    let out = url("https", "https_expiring", "/", &[("expire_days", json!(2))]).await;
    assert_up(&out, "status 200");
}

#[tokio::test]
async fn https_against_plain_http_fails_the_handshake() {
    let addr = peers().addr("http");
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

/// A password written as a reference is read on the worker: from its environment (the peers'
/// env file holds the password) or a file; a reference it cannot read is our fault, "unknown".
#[tokio::test]
async fn redis_password_from_the_environment_or_a_file() {
    let addr = peers().addr("redis_auth");
    let env_ref = json!("${env:CUSTODIAN_PEER_REDIS_PASSWORD}");
    assert_up(
        &host("redis", addr, &[("password", env_ref)]).await,
        "PONG after AUTH",
    );
    let file = std::env::temp_dir().join(format!("custodian-redis-pw-{}", std::process::id()));
    std::fs::write(&file, format!("{}\n", peers().get("redis_password"))).expect("write");
    let file_ref = json!(format!("${{file:{}}}", file.display()));
    let out = host("redis", addr, &[("password", file_ref)]).await;
    std::fs::remove_file(&file).expect("cleanup");
    assert_up(&out, "PONG after AUTH");
    let unset = json!("${env:CUSTODIAN_TEST_NEVER_SET_PW}");
    match host("redis", addr, &[("password", unset)]).await {
        Outcome::Unknown { error } => assert_eq!(
            error,
            "bad option: password: environment variable CUSTODIAN_TEST_NEVER_SET_PW is not set \
             (set it in the worker's environment, e.g. the unit's EnvironmentFile=)"
        ),
        other => panic!("expected unknown, got {other:?}"),
    }
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
    let out = host("ldaps", peers().addr("ldap"), &[]).await;
    assert_down(&out, "TLS handshake");
}

// ---- mail over TLS, ftp and ssl: Dovecot, the submission Postfix and vsftpd on 127.0.20.x

/// The Dovecot test user's credentials, `password` replaced; `tls` adds `with tls`.
fn mail_login(password: &str, tls: bool) -> Vec<(&'static str, Value)> {
    let mut opts = vec![
        ("username", json!(peers().get("mail_user"))),
        ("password", json!(password)),
    ];
    if tls {
        opts.push(("with_tls", json!(true)));
    }
    opts
}

fn mail_password() -> String {
    peers().get("mail_password").to_string()
}

/// A host-type check of `peer` with the test CA trusted.
async fn tls_host(kind: &str, peer: &str, opts: &[(&str, Value)]) -> Outcome {
    host(kind, peers().addr(peer), opts).await
}

/// As [`tls_host`], but the target is a name the peer's certificate does not carry (the
/// address comes from the peers, so nothing is resolved).
async fn misnamed(kind: &str, peer: &str, opts: &[(&str, Value)]) -> Outcome {
    let addr = peers().addr(peer);
    let job = Job::new(kind, "mail.custodian.test", Some(addr.port()));
    run(with_opts(job, opts), addr, 10).await
}

const WRONG_NAME: &str = "certificate is not valid for name \"mail.custodian.test\"";

#[tokio::test]
async fn imap_starttls_login_passes() {
    let out = tls_host("imap", "imap", &mail_login(&mail_password(), true)).await;
    assert_up(&out, "; STARTTLS; logged in as probe");
}

#[tokio::test]
async fn imap_plain_login_passes_and_a_wrong_password_fails() {
    let out = tls_host("imap", "imap", &mail_login(&mail_password(), false)).await;
    assert_up(&out, "; logged in as probe");
    let out = tls_host("imap", "imap", &mail_login("wrong", true)).await;
    assert_down(&out, "login refused: \"a1 NO [AUTHENTICATIONFAILED]");
}

#[tokio::test]
async fn imap_starttls_for_another_name_fails() {
    let out = misnamed("imap", "imap", &[("with_tls", json!(true))]).await;
    assert_down(&out, WRONG_NAME);
}

#[tokio::test]
async fn imaps_login_passes_and_a_longer_expiry_demand_fails() {
    let out = tls_host("imaps", "imaps", &mail_login(&mail_password(), false)).await;
    assert_up(&out, "; logged in as probe");
    let out = tls_host("imaps", "imaps", &[("expire_days", json!(400))]).await;
    assert_down(&out, "), less than 400");
}

#[tokio::test]
async fn imaps_closed_port_is_refused() {
    let addr = closed("imaps");
    let out = host("imaps", addr, &[]).await;
    assert_down(
        &out,
        &format!("connect to port {}: connection refused", addr.port()),
    );
}

#[tokio::test]
async fn pop3_stls_login_passes_and_a_wrong_password_fails() {
    let out = tls_host("pop3", "pop3", &mail_login(&mail_password(), true)).await;
    assert_up(&out, "; STLS; logged in as probe");
    let out = tls_host("pop3", "pop3", &mail_login("wrong", true)).await;
    assert_down(
        &out,
        "login refused: \"-ERR [AUTH] Authentication failed.\"",
    );
}

#[tokio::test]
async fn pop3s_login_passes_and_another_name_fails() {
    let out = tls_host("pop3s", "pop3s", &mail_login(&mail_password(), false)).await;
    assert_up(&out, "ready.; logged in as probe");
    let out = misnamed("pop3s", "pop3s", &[]).await;
    assert_down(&out, WRONG_NAME);
}

#[tokio::test]
async fn smtp_submission_starttls_and_auth_pass() {
    let out = tls_host("smtp", "submission", &mail_login(&mail_password(), true)).await;
    assert_up(
        &out,
        "ESMTP custodian submission peer; STARTTLS; logged in as probe",
    );
}

#[tokio::test]
async fn smtp_submission_wrong_password_fails() {
    let out = tls_host("smtp", "submission", &mail_login("wrong", true)).await;
    assert_down(
        &out,
        "login refused: \"535 5.7.8 Error: authentication failed",
    );
}

#[tokio::test]
async fn smtp_password_is_never_sent_without_tls() {
    let out = tls_host("smtp", "submission", &mail_login(&mail_password(), false)).await;
    assert_down(&out, "refusing to send the password in clear text");
}

#[tokio::test]
async fn smtp_starttls_on_a_server_without_tls_fails() {
    let out = host("smtp", peers().addr("smtp"), &[("with_tls", json!(true))]).await;
    assert_down(&out, "server does not offer STARTTLS");
}

#[tokio::test]
async fn smtps_auth_passes_and_another_name_fails() {
    let out = tls_host("smtps", "smtps", &mail_login(&mail_password(), false)).await;
    assert_up(&out, "ESMTP custodian submission peer; logged in as probe");
    let out = misnamed("smtps", "smtps", &[]).await;
    assert_down(&out, WRONG_NAME);
}

#[tokio::test]
async fn smtps_on_a_starttls_port_fails_the_handshake() {
    let addr = peers().addr("submission");
    let out = tls_host("smtps", "submission", &[]).await;
    assert_down(
        &out,
        &format!("TLS handshake on port {} failed: ", addr.port()),
    );
}

/// An `ftp` check of `ftp://[userinfo@]PEER/path`.
async fn ftp(userinfo: &str, path: &str, opts: &[(&str, Value)]) -> Outcome {
    let addr = peers().addr("ftp");
    let target = format!("ftp://{userinfo}{addr}/{path}");
    run(
        with_opts(Job::new("ftp", &target, Some(addr.port())), opts),
        addr,
        10,
    )
    .await
}

fn ftp_user(password: &str) -> String {
    format!("{}:{password}@", peers().get("ftp_user"))
}

#[tokio::test]
async fn ftp_anonymous_fetch_passes_and_wrong_content_fails() {
    let want = [("content", json!("custodian-ftp-ok"))];
    let out = ftp("", "welcome.txt", &want).await;
    assert_up(
        &out,
        "custodian test ftp peer; logged in as anonymous; fetched welcome.txt (",
    );
    let out = ftp("", "welcome.txt", &[("content", json!("nope"))]).await;
    assert_down(
        &out,
        "file welcome.txt (43 bytes) does not contain \"nope\"",
    );
}

#[tokio::test]
async fn ftp_missing_file_fails() {
    let out = ftp("", "missing.txt", &[]).await;
    assert_down(&out, "RETR refused: \"550 Failed to open file.\"");
}

#[tokio::test]
async fn ftp_local_user_fetch_passes_and_a_wrong_password_fails() {
    let pw = peers().get("ftp_password").to_string();
    let want = [("content", json!("custodian-ftp-private"))];
    let out = ftp(&ftp_user(&pw), "private.txt", &want).await;
    assert_up(&out, "; logged in as custodianftp; fetched private.txt (");
    let out = ftp(&ftp_user("wrong"), "private.txt", &[]).await;
    assert_down(&out, "login refused: \"530 Login incorrect.\"");
}

#[tokio::test]
async fn ftp_greeting_only_and_closed_port() {
    let out = host(
        "ftp",
        peers().addr("ftp"),
        &[("banner", json!("custodian test"))],
    )
    .await;
    assert_up(&out, "220 custodian test ftp peer");
    let addr = closed("ftp");
    let out = host("ftp", addr, &[]).await;
    assert_down(
        &out,
        &format!("connect to port {}: connection refused", addr.port()),
    );
}

#[tokio::test]
async fn ssl_valid_certificates_pass() {
    for peer in ["https", "imaps", "pop3s", "smtps"] {
        let out = tls_host("ssl", peer, &[("expiration", json!("30d"))]).await;
        assert_up(&out, "days left)");
    }
    let addr = peers().addr("https");
    let job = Job::new("ssl", &format!("https://{addr}/"), Some(addr.port()));
    assert_up(&run(job, addr, 10).await, "certificate valid until ");
}

#[tokio::test]
async fn ssl_expiring_certificate_fails_unless_the_demand_is_short() {
    let out = tls_host("ssl", "https_expiring", &[]).await;
    assert_down(&out, "certificate expires in 2 days (at ");
    let out = tls_host("ssl", "https_expiring", &[("expiration", json!("1w"))]).await;
    assert_down(&out, "), less than 7");
    let out = tls_host("ssl", "https_expiring", &[("expiration", json!("2d"))]).await;
    assert_up(&out, "(2 days left)");
}

#[tokio::test]
async fn ssl_wrong_name_and_plain_port_fail() {
    let out = misnamed("ssl", "imaps", &[]).await;
    assert_down(&out, WRONG_NAME);
    let addr = peers().addr("http");
    let out = tls_host("ssl", "http", &[]).await;
    assert_down(
        &out,
        &format!("TLS handshake on port {} failed: ", addr.port()),
    );
}

// ---- tftp, mx, dnsbl and the 127.0.40.x daemons (tftpd-hpa, rsync, Prosody, telnetd,
// Xtigervnc, fingerd, leafnode, xrdp); named against unbound

/// A job whose target the worker does not resolve (`mx`, `dnsbl`), run with 10 s to finish.
async fn unresolved(job: Job) -> Outcome {
    let probe = find(&job.probe).unwrap_or_else(|| panic!("no probe type {}", job.probe));
    let deadline = Instant::now() + Duration::from_secs(10);
    (probe.check)(&Ctx::new_in(env(), Arc::new(job), None, deadline)).await
}

/// A `tftp://` job for `file` on the tftpd-hpa peer.
async fn tftp(file: &str, secs: u64) -> Outcome {
    let addr = peers().addr("tftp");
    let job = Job::new("tftp", &format!("tftp://{addr}/{file}"), Some(addr.port()));
    run(job, addr, secs).await
}

#[tokio::test]
async fn tftp_real_file_downloads() {
    assert_up(&tftp("hello.txt", 10).await, "hello.txt: 18 bytes");
}

#[tokio::test]
async fn tftp_missing_and_empty_files_fail() {
    assert_eq!(
        tftp("no-such-file", 10).await,
        Outcome::down("server error 1: File not found")
    );
    assert_eq!(
        tftp("empty.txt", 10).await,
        Outcome::down("empty.txt is empty")
    );
}

#[tokio::test]
async fn tftp_without_a_server_times_out() {
    let addr = closed("tftp");
    let job = Job::new(
        "tftp",
        &format!("tftp://{addr}/hello.txt"),
        Some(addr.port()),
    );
    let out = run(job, addr, 2).await;
    assert_eq!(out, Outcome::down("timed out waiting for block 1"));
}

#[tokio::test]
async fn mx_real_exchange_passes() {
    let smtp = peers().addr("smtp");
    let job = Job::new("mx", "mx-ok.custodian.test", Some(smtp.port()));
    let job = with_opts(job, &[("banner", json!("ESMTP"))]);
    assert_up(&unresolved(job).await, "1 exchanges, 1 addresses answer");
}

#[tokio::test]
async fn mx_fails_on_a_dead_exchange_or_no_mx() {
    let port = peers().addr("smtp").port();
    let out = unresolved(Job::new("mx", "mx-dead.custodian.test", Some(port))).await;
    let reason =
        format!("dead.custodian.test (127.0.40.99): connect to port {port}: connection refused");
    assert_eq!(out, Outcome::down(reason));
    let out = unresolved(Job::new("mx", "nomx.custodian.test", Some(port))).await;
    assert_eq!(out, Outcome::down("nomx.custodian.test has no MX records"));
    let out = unresolved(Job::new("mx", "gone.custodian.test", Some(port))).await;
    assert_eq!(
        out,
        Outcome::down("NXDOMAIN: gone.custodian.test does not exist")
    );
}

fn dnsbl(ip: &str, zones: &str) -> Job {
    with_opts(Job::new("dnsbl", ip, None), &[("zones", json!(zones))])
}

#[tokio::test]
async fn dnsbl_listed_address_passes() {
    let out = unresolved(dnsbl("127.0.0.2", "bl.custodian.test")).await;
    assert_up(&out, "listed in bl.custodian.test (127.0.0.2)");
}

#[tokio::test]
async fn dnsbl_unlisted_address_is_down_and_refusal_is_unknown() {
    let out = unresolved(dnsbl("127.0.0.3", "bl.custodian.test")).await;
    assert_eq!(out, Outcome::down("not listed in bl.custodian.test"));
    // unbound refuses every zone but its own: that must never count as "not listed".
    let out = unresolved(dnsbl("127.0.0.3", "bl.custodian.test,bl.example.org")).await;
    assert!(
        matches!(&out, Outcome::Unknown { error } if error.contains("Refused")),
        "{out:?}"
    );
}

#[tokio::test]
async fn rsync_real_daemon_lists_its_module() {
    let out = host("rsync", peers().addr("rsync"), &[]).await;
    assert_up(&out, "1 modules listed");
}

#[tokio::test]
async fn rsync_closed_port_and_wrong_daemon_fail() {
    let out = host("rsync", closed("rsync"), &[]).await;
    assert_down(&out, "connection refused");
    let out = host("rsync", peers().addr("nntp"), &[]).await;
    assert_down(&out, "greeting is not @RSYNCD: \"200 Leafnode");
}

#[tokio::test]
async fn jabber_real_server_opens_its_stream() {
    let addr = peers().addr("jabber");
    let out = run(
        Job::new("jabber", "custodian.test", Some(addr.port())),
        addr,
        10,
    )
    .await;
    assert_up(&out, "XMPP stream from custodian.test");
}

#[tokio::test]
async fn jabber_against_rsync_fails() {
    let out = host("jabber", peers().addr("rsync"), &[]).await;
    assert_down(&out, "reply is not an XMPP stream header");
}

#[tokio::test]
async fn telnet_real_daemon_accepts() {
    assert_up(
        &host("telnet", peers().addr("telnet"), &[]).await,
        "connection opened",
    );
}

#[tokio::test]
async fn telnet_closed_port_is_refused() {
    let out = host("telnet", closed("telnet"), &[]).await;
    assert_down(&out, "connection refused");
}

#[tokio::test]
async fn vnc_real_server_greets() {
    assert_up(&host("vnc", peers().addr("vnc"), &[]).await, "RFB 003.008");
}

#[tokio::test]
async fn vnc_against_rsync_fails() {
    let out = host("vnc", peers().addr("rsync"), &[]).await;
    assert_down(&out, "greeting is not an RFB version line: \"@RSYNCD:");
}

#[tokio::test]
async fn finger_real_daemon_answers_for_root() {
    let out = host("finger", peers().addr("finger"), &[("user", json!("root"))]).await;
    assert_up(&out, "Login: root");
}

#[tokio::test]
async fn finger_closed_port_is_refused() {
    let out = host("finger", closed("finger"), &[]).await;
    assert_down(&out, "connection refused");
}

#[tokio::test]
async fn nntp_real_server_greets() {
    let out = host(
        "nntp",
        peers().addr("nntp"),
        &[("banner", json!("leafnode"))],
    )
    .await;
    assert_up(&out, "200 Leafnode NNTP Daemon");
}

#[tokio::test]
async fn nntp_wrong_banner_and_wrong_server_fail() {
    let out = host(
        "nntp",
        peers().addr("nntp"),
        &[("banner", json!("^200 INN"))],
    )
    .await;
    assert_down(&out, "does not match /^200 INN/");
    let out = host("nntp", peers().addr("smtp"), &[]).await;
    assert_down(&out, "greeting is not 200 or 201: \"220 ");
}

#[tokio::test]
async fn rdp_real_server_confirms() {
    assert_up(
        &host("rdp", peers().addr("rdp"), &[]).await,
        "X.224 connection confirm",
    );
}

#[tokio::test]
async fn rdp_against_vnc_fails() {
    let out = host("rdp", peers().addr("vnc"), &[]).await;
    assert_down(&out, "reply is not a TPKT");
}

#[tokio::test]
async fn named_real_unbound_accepts() {
    assert_up(
        &host("named", peers().addr("dns"), &[]).await,
        "connection opened",
    );
}

#[tokio::test]
async fn named_closed_port_is_refused() {
    let out = host("named", closed("dns"), &[]).await;
    assert_down(&out, "connection refused");
}

// ---- abuse checks: Postfix relays, unbound resolvers, tinyproxy and microsocks on 127.0.70.x

const CANARY_TOKEN: &str = "peers-canary-7d1e";

/// The operator's canary, in this process: every request gets a page holding the token.
async fn canary() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && matches!(s.read(&mut b).await, Ok(1)) {
                    head.push(b[0]);
                }
                let page =
                    format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{CANARY_TOKEN}\n");
                let _ = s.write_all(page.as_bytes()).await;
            });
        }
    });
    addr
}

async fn relay(peer: &str, confirm: bool) -> Outcome {
    let mut opts = vec![("recipient", json!("relay-test@canary.custodian.test"))];
    if confirm {
        opts.push(("with_data_confirmation", json!(true)));
    }
    host("openrelay", peers().addr(peer), &opts).await
}

#[tokio::test]
async fn openrelay_postfix_trusting_loopback_is_open_and_confirmed() {
    assert_up(&relay("relay_open", false).await, "not confirmed with DATA");
    let out = relay("relay_open", true).await;
    assert_up(
        &out,
        "open: confirmed: accepted <relay-test@canary.custodian.test>",
    );
    assert_up(&out, "from 127.0.0.1");
}

#[tokio::test]
async fn openrelay_postfix_refusing_loopback_is_closed() {
    let out = relay("relay_closed", true).await;
    assert_down(&out, "closed: refused all 9 address forms");
    assert_down(&out, "Relay access denied");
}

#[tokio::test]
async fn openrelay_postfix_refusing_data_is_told_apart() {
    assert_down(&relay("relay_nodata", true).await, "accepts any recipient");
}

async fn resolver(peer: &str, tcp: bool) -> Outcome {
    let mut opts = vec![
        ("zone", json!("probe.custodian.test")),
        ("expect", json!("127.0.70.99")),
    ];
    if tcp {
        opts.push(("with_tcp", json!(true)));
    }
    host("openresolver", peers().addr(peer), &opts).await
}

#[tokio::test]
async fn openresolver_unbound_recursing_is_open() {
    assert_up(
        &resolver("resolver_open", false).await,
        "open: resolved the probe name to 127.0.70.99",
    );
    assert_up(&resolver("resolver_open", true).await, "over TCP");
}

#[tokio::test]
async fn openresolver_unbound_refusing_is_closed() {
    assert_down(
        &resolver("resolver_refusing", false).await,
        "closed: answered REFUSED",
    );
    assert_down(
        &resolver("resolver_refusing", true).await,
        "closed: answered REFUSED",
    );
}

async fn via(kind: &str, peer: &str) -> Outcome {
    let c = canary().await;
    let opts = [
        ("canary", json!(format!("http://{c}/"))),
        ("token", json!(CANARY_TOKEN)),
    ];
    host(kind, peers().addr(peer), &opts).await
}

#[tokio::test]
async fn openproxy_tinyproxy_open_and_denying() {
    assert_up(
        &via("openproxy", "proxy_open").await,
        "fetched the canary page for us (GET)",
    );
    assert_down(
        &via("openproxy", "proxy_denying").await,
        "closed: proxy refuses (403)",
    );
}

#[tokio::test]
async fn openproxy_web_server_is_not_a_proxy() {
    let out = via("openproxy", "http").await;
    match &out {
        Outcome::Down { reason } if reason.starts_with("closed") => {}
        _ => panic!("nginx must not look like an open proxy: {out:?}"),
    }
}

#[tokio::test]
async fn opensocks_microsocks_open_and_with_auth() {
    assert_up(
        &via("opensocks", "socks_open").await,
        "SOCKS5 tunnel reached the canary",
    );
    assert_down(
        &via("opensocks", "socks_auth").await,
        "SOCKS5: requires authentication",
    );
}

// ---- rsync://HOST:PORT/MODULE targets against the real daemon (one module, `pub`)

/// An `rsync://` job for `path` (module first) on the rsync peer.
async fn rsync_url(path: &str) -> Outcome {
    let addr = peers().addr("rsync");
    let job = Job::new(
        "rsync",
        &format!("rsync://{addr}/{path}"),
        Some(addr.port()),
    );
    run(job, addr, 10).await
}

#[tokio::test]
async fn rsync_url_passes_when_its_module_is_listed() {
    assert_up(&rsync_url("pub").await, "module \"pub\" listed");
    assert_up(&rsync_url("pub/hello.txt").await, "module \"pub\" listed");
    assert_up(&rsync_url("").await, "1 modules listed");
}

#[tokio::test]
async fn rsync_url_fails_naming_a_module_not_listed() {
    let out = rsync_url("nosuch").await;
    assert_down(&out, "module \"nosuch\" is not listed (listed: pub)");
    assert_down(&rsync_url("Pub").await, "module \"Pub\" is not listed");
}
