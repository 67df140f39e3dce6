//! Configuration mistakes `custodian check` must catch (each line alone: exit 2, a spanned
//! diagnostic), and lines of the original language that must stay valid under `--strict`.

use crate::common::*;

/// Lines that cannot work: each must be rejected on its own, with its position and a hint.
const BAD: &[&str] = &[
    "127.0.0.1 must run dns.",
    "127.0.0.1 must run dns for www.example.com resolving www as '192.0.2.1'.",
    "127.0.0.1 must run dns for www.example.com resolving A as 'notanip'.",
    "127.0.0.1 must run dns for 'bad..name' resolving A as '192.0.2.1'.",
    "http://127.0.0.1/ must run http with pattern '('.",
    "http://127.0.0.1/ must run http with status abc.",
    "http://127.0.0.1/ must run http with status 999.",
    "http://127.0.0.1/ must run http with method 'GE T'.",
    "http://127.0.0.1/ must run http with header 'NoColonHere'.",
    "https://127.0.0.1/ must run https with expiration soon.",
    "127.0.0.1 must run ssl with expiration soon.",
    "127.0.0.1 must run tcp on 22 with banner '['.",
    "127.0.0.1 must run ssh with banner '(SSH'.",
    "127.0.0.1 must run ldap with filter '(objectClass=*'.",
    "127.0.0.1 must not run openproxy with canary 'ftp://x/'.",
    "127.0.0.1 must not run openresolver with expect 'notanip'.",
    "127.0.0.1 must not run openresolver with zone 'not a zone'.",
    "127.0.0.1 must not run openrelay with recipient 'nobody'.",
    "127.0.0.1 must ping with count 0.",
    "127.0.0.1 must run ssh on port 0.",
    "127.0.0.1 must run ssh with timeout 0.",
];

/// Lines the original custodian (or its documented extensions) accepts: still valid.
const GOOD: &[&str] = &[
    "foo must run ftp.",
    "foo must run ssh otherwise 'ssh fail'.",
    "localhost must run ssh on port 2222.",
    "foo must ping otherwise 'ping fail'.",
    "foo must run tcp on 22 with banner 'ssh' otherwise 'no ssh'.",
    "foo must run tcp on 25 with banner '^220 .*ESMTP'.",
    "http://example.com/ must run http with status 200 with content 'foo'.",
    "http://example.com/ must run http with status any.",
    "http://example.com/ must run http with status 200,301,302.",
    "http://example.com/ must run http with pattern 'Example [Dd]omain'.",
    "http://example.com/ must run http with method POST with data 'a=b'.",
    "http://example.com/ must run http with header 'X-Test: 1' with user-agent 'probe/1'.",
    "http://example.com/ must run http with host header 'example.org' not following redirects.",
    "https://example.com/ must run https and cannot expire within 30 days.",
    "https://example.com/ must run https with expiration 2w.",
    "https://example.com/ must run https with tls insecure.",
    "https://example.com/ must run https no_ssl_check.",
    "example.com must run ssl with expiration 30d.",
    "ns.example.com must run dns for example.com resolving A as '192.0.2.1'.",
    "ns.example.com must run dns for example.com resolving a as '192.0.2.1,192.0.2.2'.",
    "ns.example.com must run dns for example.com resolving NS as 'ns1.example.com;ns2.example.com'.",
    "ns.example.com must run dns for example.com resolving MX as 'mx.example.com'.",
    "ns.example.com must run dns for example.com resolving AAAA as '2001:db8::1'.",
    "ns.example.com must run dns for example.com resolving TXT as 'v=spf1'.",
    "ldap.example.com must run ldap with base 'dc=example,dc=com' with filter '(objectClass=*)'.",
    "ldap.example.com must run ldap with username 'cn=mon,dc=example,dc=com' with password 'pw'.",
    "mail.example.com must run smtp with tls otherwise 'mail down'.",
    "mail.example.com must not run openrelay with recipient 'probe@example.org'.",
    "ns.example.com must not run openresolver with zone 'example.org' with expect '192.0.2.7'.",
    "proxy.example.com must not run openproxy with canary 'http://192.0.2.9/canary' with token 'k3y'.",
    "192.0.2.1 must ping with count 3.",
    "192.0.2.1 must not run dnsbl via 'zen.spamhaus.org'.",
    "example.com must run mx.",
    "rsync://example.com/ must run rsync.",
    "example.com must run rsync.",
    "tftp://example.com/boot.img must run tftp.",
    "db.example.com must run mysql with username 'mon' with password 'pw'.",
    "db.example.com must run psql with database 'app'.",
    "cache.example.com must run redis with password 'pw'.",
    "foo must run ssh with timeout 10 with retries 2 between 9-17.",
];

/// Every bad line alone exits 2 with a diagnostic at its line; the whole table's output is a
/// snapshot, so a changed message or position shows up in review.
#[test]
fn each_mistake_is_a_spanned_error() {
    let mut all = String::new();
    for (i, line) in BAD.iter().enumerate() {
        let (dir, _) = file("bad.cfg", &format!("{line}\n"));
        let r = custodian(dir.path(), &["check", "--strict", "bad.cfg"]);
        assert_eq!(r.code, 2, "accepted: {line}\n{}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("bad.cfg:1:") && r.stderr.contains("error"),
            "no position for {line}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("nothing was run or enqueued"),
            "{}",
            r.stderr
        );
        all.push_str(&format!("# {i}: {line}\n{}\n", r.stderr));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn original_lines_stay_valid() {
    let text: String = GOOD.iter().map(|l| format!("{l}\n")).collect();
    let (dir, _) = file("good.cfg", &text);
    let r = custodian(dir.path(), &["check", "--strict", "good.cfg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("{} check(s) in 1 file(s): valid", GOOD.len())),
        "{}",
        r.stdout
    );
}

/// `run` refuses a bad line before probing anything: the server never sees a connection.
#[test]
fn run_probes_nothing_when_a_line_is_bad() {
    let (addr, seen) = greeter("SSH-2.0-test\r\n");
    let text = format!(
        "{ip} must run ssh on {port}.\n{ip} must run tcp on {port} with banner '['.\n",
        ip = addr.ip(),
        port = addr.port()
    );
    let (dir, _) = file("t.cfg", &text);
    let r = custodian(dir.path(), &["run", "t.cfg"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// The original's own tests ask for A records as 'foo': accepted with a warning (such a line
/// can never pass), rejected under `--strict`.
#[test]
fn original_dns_values_of_the_wrong_type_warn() {
    let (dir, _) = file(
        "dns.cfg",
        "ns must run dns for example.com resolving A as 'foo'.\n",
    );
    let lax = custodian(dir.path(), &["check", "dns.cfg"]);
    assert_eq!(lax.code, 0, "{}", lax.stderr);
    assert!(
        lax.stderr.contains("dns.cfg:1:48: warning") && lax.stderr.contains("--strict"),
        "{}",
        lax.stderr
    );
    let strict = custodian(dir.path(), &["check", "--strict", "dns.cfg"]);
    assert_eq!(strict.code, 2, "{}", strict.stderr);
}
