//! Planner tables against a few test-local probe specs.

use super::*;
use crate::probe::ParamSpec;
use crate::spec::Locations;
use custodian_dsl::{expand, parse};
use serde_json::json;

const fn spec(
    name: &'static str,
    target: TargetKind,
    port: Option<u16>,
    params: &'static [ParamSpec],
) -> ProbeSpec {
    ProbeSpec {
        name,
        aliases: &[],
        target,
        default_port: port,
        port_required: false,
        takes_port: port.is_some(),
        params,
        summary: "",
        example: "",
        check: None,
        scan: None,
    }
}

const fn p(phrase: &'static str) -> ParamSpec {
    ParamSpec::new(phrase, "")
}

static SSH: ProbeSpec = spec("ssh", TargetKind::Host, Some(22), &[]);
static TCP: ProbeSpec = ProbeSpec {
    port_required: true,
    takes_port: true,
    ..spec("tcp", TargetKind::Host, None, &[p("with banner {banner}")])
};
static PING: ProbeSpec = spec(
    "ping",
    TargetKind::Host,
    None,
    &[p("with count {count:int}")],
);
const WEB: &[ParamSpec] = &[
    p("with status {status}"),
    p("with content {content}"),
    p("not following redirects"),
    p("with username {username}"),
    p("with password {password}"),
    p("with header {header}"),
    p("with data {data}"),
];
static HTTP: ProbeSpec = spec("http", TargetKind::Url(&["http"]), None, WEB);
static HTTPS: ProbeSpec = spec("https", TargetKind::Url(&["https"]), None, WEB);
static FTP: ProbeSpec = spec("ftp", TargetKind::HostOrUrl(&["ftp"]), Some(21), &[]);
static PSQL: ProbeSpec = ProbeSpec {
    aliases: &["psql"],
    ..spec("postgresql", TargetKind::Host, Some(5432), &[])
};

fn run(src: &str, strict: bool) -> (Vec<Job>, Vec<Diagnostic>) {
    let (file, diags) = parse("t.cfg", src);
    assert!(diags.is_empty(), "{diags:?}");
    let files = [file];
    let (tests, diags) = expand(&files, &mut |_| Err("no network".to_string()));
    assert!(diags.is_empty(), "{diags:?}");
    plan(
        &tests,
        &[&SSH, &TCP, &PING, &HTTP, &HTTPS, &FTP, &PSQL],
        strict,
    )
}

fn job(src: &str) -> Job {
    let (jobs, diags) = run(src, true);
    assert!(diags.is_empty(), "{src}: {diags:?}");
    assert_eq!(jobs.len(), 1);
    jobs.into_iter().next().unwrap()
}

/// The one diagnostic of `src` (planned strictly when `strict`).
fn diag(src: &str, strict: bool) -> Diagnostic {
    let (_, diags) = run(src, strict);
    assert_eq!(diags.len(), 1, "{src}: {diags:?}");
    diags.into_iter().next().unwrap()
}

#[test]
fn unknown_type_suggests_the_nearest_or_lists_all() {
    let d = diag("a must run sshh", false);
    assert!(d.is_error());
    assert_eq!(d.message, "unknown test type `sshh`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `ssh`?"));
    assert_eq!((d.col, d.width), (12, 4));
    let d = diag("a must run zzzzzz", false);
    assert!(d.hint.unwrap().starts_with("known types: ssh, tcp, ping"));
}

#[test]
fn one_error_per_line_however_many_macro_members() {
    let (jobs, diags) = run("HOSTS are a and b and c\nHOSTS must run sshh\n", false);
    assert!(jobs.is_empty());
    assert_eq!(diags.len(), 1);
}

#[test]
fn unrecognised_words_warn_once_per_run_or_fail_when_strict() {
    let (jobs, diags) = run("a must run ssh with foo bar on 2222 baz", false);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].port, Some(2222));
    let msgs: Vec<_> = diags
        .iter()
        .map(|d| (d.severity, d.message.as_str()))
        .collect();
    assert_eq!(
        msgs,
        [
            (
                Severity::Warning,
                "unrecognised words `with foo bar` (ignored)"
            ),
            (Severity::Warning, "unrecognised words `baz` (ignored)"),
        ]
    );
    assert!(diags[0].hint.as_deref().unwrap().contains("on port N"));
    let d = diag("a must run ssh with foo", true);
    assert!(d.is_error());
    assert_eq!(run("a must run ssh with foo", true).0.len(), 0);
}

#[test]
fn ports_three_forms_and_range() {
    for line in [
        "a must run tcp on 1",
        "a must run tcp on port 1",
        "a must run tcp with port 1",
    ] {
        assert_eq!(job(line).port, Some(1), "{line}");
    }
    assert_eq!(job("a must run tcp on 65535").port, Some(65535));
    for bad in ["a must run tcp on 0", "a must run tcp on 65536"] {
        let d = diag(bad, false);
        assert!(
            d.message.contains("out of range (1-65535)"),
            "{}",
            d.message
        );
    }
    assert_eq!(
        diag("a must run tcp on x", false).message,
        "`x` is not a whole number"
    );
}

#[test]
fn port_required_and_port_not_taken() {
    let d = diag("a must run tcp", false);
    assert_eq!(d.message, "`tcp` needs a port");
    let d = diag("a must ping on 22", false);
    assert_eq!(d.severity, Severity::Warning);
}

#[test]
fn default_ports_from_spec_and_url() {
    assert_eq!(job("a must run ssh").port, Some(22));
    assert_eq!(job("a must run psql").port, Some(5432));
    assert_eq!(job("a must run psql").probe, "postgresql");
    assert_eq!(job("a must ping").port, None);
    assert_eq!(job("http://x.example/ must run http").port, Some(80));
    assert_eq!(
        job("https://x.example:8443/ must run https").port,
        Some(8443)
    );
    assert_eq!(job("ftp://x.example/f must run ftp").port, Some(21));
}

#[test]
fn host_or_url_targets_take_either() {
    assert_eq!(job("x.example must run ftp").port, Some(21));
    assert_eq!(
        job("ftp://u:pw@x.example:2121/f must run ftp").port,
        Some(2121)
    );
    assert_eq!(job("x.example must run ftp ipv4_only").family, Family::V4);
    let d = diag("http://x.example/ must run ftp", false);
    assert!(d.message.ends_with("\"ftp != http\""), "{}", d.message);
    let d = diag("ftp://[x]/f must run ftp", false);
    assert!(
        d.message.starts_with("The target wasn't a URL"),
        "{}",
        d.message
    );
}

#[test]
fn url_scheme_must_match_type() {
    let d = diag("https://x.example/ must run http", false);
    assert!(
        d.message
            .starts_with("The test case has a different protocol"),
        "{}",
        d.message
    );
    assert!(d.message.ends_with("\"http != https\""));
    let d = diag("http://x.example/ must run HTTPS", false);
    assert!(d.message.ends_with("\"https != http\""));
    let d = diag("x.example must run http", false);
    assert!(
        d.message.starts_with("The target wasn't a URL"),
        "{}",
        d.message
    );
}

#[test]
fn address_family_options() {
    assert_eq!(job("a must run ssh ipv4_only").family, Family::V4);
    assert_eq!(job("a must run ssh with IPv6").family, Family::V6);
    assert_eq!(job("http://x/ must run http with IPv4").family, Family::V4);
    let d = diag("http://x/ must run http ipv6_only", false);
    assert_eq!(
        d.message,
        "We cannot limit HTTP/HTTPS tests to IPv4/IPv6-only"
    );
    assert!(diag("a must run ssh ipv4_only with ipv6", false).is_error());
}

#[test]
fn secrets_are_masked_in_line_but_kept_in_options() {
    let j = job(
        "http://bob:s3cret@x.example/ must run http with username 'bob' with password 'hunter2'.",
    );
    assert_eq!(
        &*j.line,
        "http://bob:********@x.example/ must run http with username 'bob' with password '********'."
    );
    assert_eq!(j.opt_str("password"), Some("hunter2"));
    assert_eq!(j.target, "http://bob:s3cret@x.example/");
    let j = job("http://x/ must run http \\\n with password pw1");
    assert_eq!(
        &*j.line,
        &format!("http://x/ must run http  with password {MASK}")
    );
}

/// A secret reference is kept as written (the worker reads it) and masked in the line; only
/// its syntax is checked, so an unset variable on the planning machine is no error.
#[test]
fn secret_references_are_syntax_checked_and_kept() {
    let j = job("http://x/ must run http with password '${env:CUSTODIAN_PLAN_UNSET_PW}'.");
    assert_eq!(
        j.opt_str("password"),
        Some("${env:CUSTODIAN_PLAN_UNSET_PW}")
    );
    assert_eq!(
        &*j.line,
        &format!("http://x/ must run http with password '{MASK}'.")
    );
    let d = diag(
        "http://x/ must run http with password '${vault:db}'.",
        false,
    );
    assert!(d.is_error());
    assert_eq!(d.message, "password: unknown secret source `vault`");
    let d = diag("http://x/ must run http with password '${env:}'.", false);
    assert!(d.is_error(), "{d:?}");
    assert!(
        job("http://x/ must run http with password '${not a reference}'.")
            .opt_str("password")
            .is_some()
    );
}

#[test]
fn int_slots_flags_and_common_numbers() {
    let j = job("a must ping with count 5 with timeout 10 with retries 2");
    assert_eq!(j.options["count"], json!(5));
    assert_eq!((j.timeout, j.retries), (Some(10), Some(2)));
    assert_eq!(
        diag("a must ping with count five", false).message,
        "`five` is not a whole number"
    );
    assert!(diag("a must ping with timeout 0", false)
        .message
        .contains("out of range"));
    let j = job("http://x/ must run http not following redirects with status 301");
    assert_eq!(j.options["not_following_redirects"], json!(true));
    assert_eq!(j.options["status"], json!("301"));
}

#[test]
fn repeated_option_warns_and_first_counts() {
    let (jobs, diags) = run(
        "http://x/ must run http with status 301 with status 302",
        false,
    );
    assert_eq!(jobs[0].options["status"], json!("301"));
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].severity, Severity::Warning);
}

#[test]
fn statement_fields_are_carried() {
    let (jobs, _) = run(
        "\nHOSTS are a and b\nHOSTS must not run ssh otherwise 'down' with subject 'S' between 22-3.\n",
        true,
    );
    let targets: Vec<_> = jobs.iter().map(|j| j.target.as_str()).collect();
    assert_eq!(targets, ["a", "b"]);
    let j = &jobs[1];
    assert!(j.inverted);
    assert_eq!(j.otherwise.as_deref(), Some("down"));
    assert_eq!(j.subject.as_deref(), Some("S"));
    assert_eq!(
        j.window.map(|w| (w.from, w.to, w.except)),
        Some((22, 3, false))
    );
    assert_eq!((&*j.file, j.lineno), ("t.cfg", 3));
    assert_eq!(
        &*j.line,
        "HOSTS must not run ssh otherwise 'down' with subject 'S' between 22-3."
    );
}

#[test]
fn credential_header_and_data_values_are_masked_in_line() {
    let j = job("http://x/ must run http with header 'Authorization: Bearer s3cr3t' with data 'u=bob&password=pw9'.");
    assert_eq!(
        &*j.line,
        "http://x/ must run http with header 'Authorization: ********' with data 'u=bob&password=********'."
    );
    assert_eq!(j.opt_str("header"), Some("Authorization: Bearer s3cr3t"));
    let j = job("http://x/ must run http with header 'X-Probe: yes'.");
    assert_eq!(
        &*j.line,
        "http://x/ must run http with header 'X-Probe: yes'."
    );
}

#[test]
fn every_sets_the_lines_interval_and_keeps_the_id() {
    let j = job("a must run ssh every 30s");
    assert_eq!(j.every, Some(30));
    assert_eq!(job("a must run ssh every 5m").every, Some(300));
    assert_eq!(job("a must run ssh every 90").every, Some(90));
    assert_eq!(
        j.id(),
        job("a must run ssh").id(),
        "the schedule is not the check"
    );
    for bad in ["every 2s", "every 2d", "every soon", "every 5x"] {
        let d = diag(&format!("a must run ssh {bad}"), false);
        assert!(
            d.message.contains("not an interval"),
            "{bad}: {}",
            d.message
        );
    }
    assert_eq!(super::parse_every("1h"), Some(3600));
    assert_eq!(super::parse_every(""), None);
}

/// Every diagnostic of parsing, expanding and planning `src`, with `fetch` for macros.
fn all_diags(src: &str, fetch: &mut custodian_dsl::Fetch<'_>) -> (Vec<Job>, Vec<Diagnostic>) {
    let (file, mut diags) = parse("t.cfg", src);
    let files = [file];
    let (tests, more) = expand(&files, fetch);
    diags.extend(more);
    let (jobs, more) = plan(&tests, &[&SSH, &HTTPS], true);
    diags.extend(more);
    (jobs, diags)
}

fn named(names: &[&str]) -> Option<Locations> {
    Some(Locations::Named(
        names.iter().map(|n| n.to_string()).collect(),
    ))
}

#[test]
fn from_any_number_of_locations() {
    let j = job("https://x/ must run https from 3 locations");
    assert_eq!((j.from.clone(), j.quorum), (Some(Locations::Any(3)), None));
    assert_eq!(j.quorum_needed(), 3);
    assert_eq!(
        job("a must run ssh from 1 location").from,
        Some(Locations::Any(1))
    );
    assert_eq!(
        job("a must run ssh FROM 100 Locations.").from,
        Some(Locations::Any(100))
    );
    let plain = job("a must run ssh");
    assert_eq!((plain.from, plain.quorum), (None, None));
}

#[test]
fn from_named_locations_sorted_whatever_the_list_form() {
    for line in [
        "a must run ssh from lon1 and ams1",
        "a must run ssh from ams1, lon1",
        "a must run ssh from lon1,ams1.",
        "a must run ssh from lon1 , ams1",
    ] {
        assert_eq!(job(line).from, named(&["ams1", "lon1"]), "{line}");
    }
    let j = job("a must run ssh from lon1, ams1 and nyc1");
    assert_eq!(j.from, named(&["ams1", "lon1", "nyc1"]));
    assert_eq!(j.quorum_needed(), 3);
    assert_eq!(
        job("a must run ssh from lon1 and ams1").id(),
        job("a must run ssh from ams1 and lon1").id()
    );
    assert_ne!(
        job("a must run ssh from lon1 and ams1").id(),
        job("a must run ssh").id()
    );
}

#[test]
fn from_takes_macros_mixed_with_names_and_shared_with_targets() {
    let (jobs, diags) = run(
        "EUROPE are lon1 and ams1.\na must run ssh from EUROPE and nyc1.",
        true,
    );
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(jobs[0].from, named(&["ams1", "lon1", "nyc1"]));
    // Two macros sharing a location name it once.
    let (jobs, diags) = run(
        "EU are lon1 and ams1.\nWEST are lon1, nyc1.\na must run ssh from EU and WEST with quorum 2.",
        true,
    );
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(jobs[0].from, named(&["ams1", "lon1", "nyc1"]));
    // A macro can be the target list and the location list of one line.
    let (jobs, diags) = run("EU are lon1 and ams1.\nEU must run ssh from EU.", true);
    assert!(diags.is_empty(), "{diags:?}");
    let targets: Vec<_> = jobs.iter().map(|j| j.target.as_str()).collect();
    assert_eq!(targets, ["lon1", "ams1"]);
    assert!(jobs.iter().all(|j| j.from == named(&["ams1", "lon1"])));
}

/// `fetched from` (macro definitions) keeps its meaning, and a fetched macro can list locations.
#[test]
fn fetched_from_macros_still_work_and_can_name_locations() {
    let mut fetch = |url: &str| match url {
        "http://lists.example/hosts" => Ok(vec!["web1".to_string(), "web2".to_string()]),
        "http://lists.example/dcs" => Ok(vec!["lon1".to_string(), "ams1".to_string()]),
        _ => Err("not found".to_string()),
    };
    let src = "HOSTS are fetched from lists.example/hosts.\nDCS is fetched from http://lists.example/dcs.\n\
               HOSTS must run ssh from DCS with quorum 1.";
    let (jobs, diags) = all_diags(src, &mut fetch);
    assert!(diags.is_empty(), "{diags:?}");
    let got: Vec<_> = jobs
        .iter()
        .map(|j| (j.target.as_str(), j.from.clone(), j.quorum))
        .collect();
    assert_eq!(
        got,
        [
            ("web1", named(&["ams1", "lon1"]), Some(1)),
            ("web2", named(&["ams1", "lon1"]), Some(1))
        ]
    );
}

#[test]
fn from_and_quorum_go_anywhere_among_the_options() {
    let lines = [
        "a must run ssh from lon1 and ams1 with quorum 1 otherwise 'x'.",
        "a must run ssh with quorum 1 otherwise 'x' from ams1 and lon1 on 22.",
        "a must run ssh otherwise 'x' with quorum 1 with timeout 5 from lon1, ams1 between 9-17",
    ];
    let jobs: Vec<Job> = lines.iter().map(|l| job(l)).collect();
    for (j, line) in jobs.iter().zip(lines) {
        assert_eq!(j.from, named(&["ams1", "lon1"]), "{line}");
        assert_eq!(j.quorum, Some(1), "{line}");
        assert_eq!(j.quorum_needed(), 1, "{line}");
        assert_eq!(j.otherwise.as_deref(), Some("x"), "{line}");
        assert_eq!(j.port, Some(22), "{line}");
    }
    assert_eq!(jobs[2].timeout, Some(5));
    assert_eq!(jobs[0].id(), jobs[1].id());
    // Quoted text is never a clause.
    let j = job("a must run ssh otherwise 'down from 3 locations'");
    assert_eq!(j.from, None);
}

/// The one error of `src` (strict), with its message, column, width and hint.
fn error(src: &str) -> (String, u32, u32, String) {
    let (jobs, diags) = all_diags(src, &mut |_| Err("no network".to_string()));
    assert!(jobs.is_empty(), "{src}: planned {jobs:?}");
    assert_eq!(diags.len(), 1, "{src}: {diags:?}");
    let d = &diags[0];
    assert!(d.is_error(), "{d:?}");
    let hint = d.hint.clone().unwrap_or_default();
    (d.message.clone(), d.col, d.width, hint)
}

#[test]
fn bad_location_names_are_errors_saying_what_is_allowed() {
    let (msg, col, width, hint) = error("a must run ssh from lon1 and Ams1");
    assert_eq!(msg, "`Ams1` is not a location name");
    assert_eq!((col, width), (30, 4));
    assert!(
        hint.contains("lower-case letters a-z, digits, `-` and `_`"),
        "{hint}"
    );
    let (msg, col, _, _) = error("EU are lon1 and 'ams 1'.\na must run ssh from nyc1, EU");
    assert_eq!(msg, "`ams 1` is not a location name (a member of EU)");
    assert_eq!(col, 27);
    let (msg, ..) = error(&format!("a must run ssh from {}", "x".repeat(33)));
    assert!(msg.ends_with("is not a location name"), "{msg}");
    let (msg, col, width, hint) = error("a must run ssh from lon1 and ams1 and lon1");
    assert_eq!(msg, "`lon1` is named twice in `from`");
    assert_eq!((col, width), (39, 4));
    assert_eq!(hint, "name each location once");
    let (msg, ..) = error("EU are lon1 and ams1.\na must run ssh from EU and EU");
    assert_eq!(msg, "`EU` is named twice in `from`");
}

#[test]
fn unknown_macro_in_from_is_an_error() {
    let (msg, col, width, hint) = error("a must run ssh from EUROPE and nyc1");
    assert_eq!(msg, "unknown macro `EUROPE` in `from`");
    assert_eq!((col, width), (21, 6));
    assert!(hint.starts_with("define it above this line"), "{hint}");
    // Macros are defined in file order, for `from` as for targets.
    let (msg, ..) = error("a must run ssh from EU.\nEU are lon1 and ams1.");
    assert_eq!(msg, "unknown macro `EU` in `from`");
}

#[test]
fn location_counts_and_quorums_out_of_range_are_errors() {
    let (msg, col, width, hint) = error("a must run ssh from 0 locations");
    assert_eq!(msg, "`from 0 locations` names no location");
    assert_eq!((col, width), (21, 1));
    assert_eq!(hint, "write `from 1 location` or more");
    let (msg, ..) = error("a must run ssh from 101 locations");
    assert_eq!(msg, "101 locations is out of range (1-100)");
    let (msg, col, _, hint) = error("a must run ssh from three locations");
    assert_eq!(msg, "`three` is not a number of locations");
    assert_eq!(col, 21);
    assert!(hint.contains("from 3 locations"), "{hint}");
    let (msg, col, width, hint) = error("a must run ssh from 2 locations with quorum 0");
    assert_eq!(msg, "quorum 0 is impossible");
    assert_eq!((col, width), (33, 13));
    assert!(hint.contains("1 or more"), "{hint}");
    let (msg, col, width, hint) = error("a must run ssh with quorum 3 from lon1 and ams1");
    assert_eq!(
        msg,
        "impossible quorum: 3 of 2 location(s) must see a failure"
    );
    assert_eq!((col, width), (16, 13));
    assert_eq!(
        hint,
        "write `with quorum 2` or less, or run it from more locations"
    );
    let (msg, ..) = error("a must run ssh from 2 locations with quorum 3");
    assert!(msg.starts_with("impossible quorum: 3 of 2"), "{msg}");
    let (msg, col, width, hint) = error("a must run ssh with quorum 2");
    assert_eq!(msg, "`with quorum` needs `from`");
    assert_eq!((col, width), (16, 13));
    assert_eq!(hint, "add `from N locations` (or `from lon1 and ams1`)");
    let (msg, ..) = error("a must run ssh from 3 locations with quorum 1 with quorum 2");
    assert_eq!(msg, "`with quorum` is given twice");
}

#[test]
fn malformed_from_clauses_are_parse_errors() {
    let (msg, col, _, hint) = error("a must run ssh from");
    assert_eq!(msg, "missing a location after `from`");
    assert_eq!(col, 16);
    assert!(hint.contains("from lon1 and ams1"), "{hint}");
    let (msg, ..) = error("a must run ssh from lon1 and.");
    assert_eq!(msg, "missing a location after `and`");
    let (msg, ..) = error("a must run ssh from lon1,");
    assert_eq!(msg, "missing a location after `lon1,`");
    let (msg, col, ..) = error("a must run ssh from lon1 with quorum 1 from ams1");
    assert_eq!(msg, "a second `from` on one line");
    assert_eq!(col, 40);
}
