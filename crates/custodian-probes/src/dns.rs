//! `dns`: ask the DNS server under test one question and compare the answer set.
//!
//! Syntax: `SERVER must run dns for NAME resolving TYPE as 'V1,V2'.` TYPE is A, AAAA, NS, MX or
//! TXT; the expected values split on `,`, `;` or spaces (TXT values only on `,`). The answer records of TYPE must equal
//! the expected set: order does not matter, names (NS, MX exchange) compare case-insensitively
//! without the trailing dot, addresses compare as addresses, TXT strings of a record are joined.
//! An NS or MX name also matches an expected address given for it in the additional section.
//! The query goes over UDP (random ID; replies with another ID or question are ignored) and is
//! repeated over TCP when the answer is truncated. Nothing is resolved through the system.
//! The phrase is required, and `custodian check` refuses a NAME that is no DNS name, a TYPE
//! it cannot ask for, and values no answer of TYPE can equal (A: IPv4 addresses; AAAA: IPv6;
//! NS, MX: names or addresses).
//! Down reasons: NXDOMAIN / SERVFAIL / REFUSED / other error codes; timed out
//! waiting for the answer (with the number of ignored replies); connection refused; answer is X,
//! expected Y.
//! Example: `ns1.example.com must run dns for www.example.com resolving A as '192.0.2.1'.`

use crate::resolver::{self, display_name};
use crate::{net, Ctx};
use custodian_core::{Invalid, Kind, Outcome, ParamSpec, Params, ProbeSpec, TargetKind, Value};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "dns",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(53),
    port_required: false,
    takes_port: true,
    params: &[ParamSpec::new("for {query} resolving {rtype} as {expect}", "ask for NAME's TYPE records (A, AAAA, NS, MX, TXT); the answer must be exactly these values")
        .kinds(&[Kind::Parse(query_name), Kind::Parse(record_type), Kind::Parse(expected)])
        .required()],
    summary: "the DNS server answers the question with exactly the expected records",
    example: "ns1.example.com must run dns for www.example.com resolving A as '192.0.2.1' otherwise 'dns wrong'.",
    check: Some(values_fit_type),
    scan: None,
};

/// The record types a line may ask for, as written in hints.
const TYPES: &str = "A, AAAA, NS, MX, TXT";

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    let Some(q) = question(&cx.params) else {
        return Outcome::unknown("no `for NAME resolving TYPE as VALUES` given");
    };
    Outcome::from_result(run(cx, &q).await)
}

/// The question and the expected answer set, from the job's parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question<'a> {
    pub(crate) name: &'a Name,
    pub(crate) rtype: RecordType,
    pub(crate) expected: &'a BTreeSet<String>,
}

/// The expected values as written after `as`, split and normalized both ways: the type they
/// are read for is another slot, so each reading is kept until the question is put together.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    /// Split on `,`, `;` and spaces; addresses canonical, names lower-case without the dot.
    values: BTreeSet<String>,
    /// Split on `,` only: TXT strings hold spaces and `;` themselves (`v=DKIM1; k=rsa`).
    txt: BTreeSet<String>,
}

async fn run(cx: &Ctx, q: &Question<'_>) -> Result<String, String> {
    let server = net::sockaddr(cx)?;
    let reply = resolver::exchange(cx, server, q.name, q.rtype).await?;
    judge(q, &reply)
}

/// Puts `for NAME resolving TYPE as VALUES` together from the parsed options.
fn question(p: &Params) -> Option<Question<'_>> {
    let rtype = *p.parsed::<RecordType>("rtype")?;
    let expect = p.parsed::<Expected>("expect")?;
    Some(Question {
        name: p.parsed::<Name>("query")?,
        rtype,
        expected: match rtype {
            RecordType::TXT => &expect.txt,
            _ => &expect.values,
        },
    })
}

/// A DNS name as written in a test line: labels of letters, digits, `-` and `_` (a `*` alone
/// as the first label), each 1-63 characters, 253 in all; one final dot is allowed. `.`
/// alone is the root.
pub(crate) fn dns_name(text: &str) -> Result<Name, Invalid> {
    let bad =
        |why: String| {
            Err(Invalid::new(format!("`{text}` is not a valid DNS name: {why}"))
            .hint("write a name such as `www.example.com`; international names in their xn-- form"))
        };
    let bare = text.strip_suffix('.').unwrap_or(text);
    if text == "." {
        return Ok(Name::root());
    }
    if bare.is_empty() {
        return bad("it is empty".into());
    }
    if bare.len() > 253 {
        return bad(format!(
            "it is {} characters long (at most 253)",
            bare.len()
        ));
    }
    for (i, label) in bare.split('.').enumerate() {
        if label.is_empty() {
            return bad("it has an empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return bad(format!("the label `{label}` is longer than 63 characters"));
        }
        let wildcard = i == 0 && label == "*";
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if let Some(c) = label.chars().find(|c| !ok(*c)).filter(|_| !wildcard) {
            return bad(format!("{c:?} is not allowed in a name"));
        }
    }
    let mut name = Name::from_ascii(bare).or_else(|e| bad(e.to_string()))?;
    name.set_fqdn(true);
    Ok(name)
}

fn query_name(text: &str) -> Result<Value, Invalid> {
    dns_name(text).map(Value::parsed)
}

/// The record type after `resolving`, in any case.
fn record_type(word: &str) -> Result<Value, Invalid> {
    let t = match word.to_ascii_uppercase().as_str() {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        "NS" => RecordType::NS,
        "MX" => RecordType::MX,
        "TXT" => RecordType::TXT,
        _ => {
            return Err(
                Invalid::new(format!("`{word}` is not a record type `dns` can ask for"))
                    .hint(format!("write one of {TYPES} (any case) after `resolving`")),
            )
        }
    };
    Ok(Value::parsed(t))
}

/// The values after `as`, read both ways (see [`Expected`]).
fn expected(text: &str) -> Result<Value, Invalid> {
    let split = |txt: bool| {
        text.split(move |c: char| c == ',' || (!txt && (c == ';' || c.is_whitespace())))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    Ok(Value::parsed(Expected {
        values: split(false).map(normalize).collect(),
        txt: split(true).map(str::to_string).collect(),
    }))
}

/// The comparable form of a value: canonical addresses, lower-case names without the final dot.
fn normalize(v: &str) -> String {
    match v.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => v.trim_end_matches('.').to_ascii_lowercase(),
    }
}

/// The line-wide check: every expected value can be an answer of the asked type (A wants
/// IPv4 addresses, AAAA IPv6 ones, NS and MX names or the addresses of those names).
fn values_fit_type(p: &Params) -> Result<(), Invalid> {
    let (Some(rtype), Some(expect)) = (
        p.parsed::<RecordType>("rtype"),
        p.parsed::<Expected>("expect"),
    ) else {
        return Ok(());
    };
    if *rtype == RecordType::TXT {
        return Ok(());
    }
    for v in &expect.values {
        let ip = v.parse::<IpAddr>().ok();
        let fits = match (*rtype, ip) {
            (RecordType::A, Some(IpAddr::V4(_))) | (RecordType::AAAA, Some(IpAddr::V6(_))) => {
                Ok(())
            }
            (RecordType::A, _) => Err(Invalid::new(format!(
                "`{v}` is not an IPv4 address, so no A record can match it"
            ))
            .hint("A answers are IPv4 addresses such as `192.0.2.1`; for IPv6 ask for AAAA")),
            (RecordType::AAAA, _) => Err(Invalid::new(format!(
                "`{v}` is not an IPv6 address, so no AAAA record can match it"
            ))
            .hint("AAAA answers are IPv6 addresses such as `2001:db8::1`; for IPv4 ask for A")),
            (_, Some(_)) => Ok(()),
            (_, None) => dns_name(v).map(drop).map_err(|e| Invalid {
                hint: Some(format!("{rtype} values are host names or their addresses")),
                ..e
            }),
        };
        // The original accepted any value (its own tests ask for A records as 'foo'): such a
        // line can never pass, so it is a warning, and an error under --strict.
        fits.map_err(|e| e.at("expect").lenient())?;
    }
    Ok(())
}

/// Compares the answer with the expectation.
pub(crate) fn judge(q: &Question<'_>, m: &Message) -> Result<String, String> {
    let name = display_name(q.name);
    let rtype = q.rtype;
    match m.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Err(format!("NXDOMAIN: {name} does not exist")),
        ResponseCode::ServFail => {
            return Err(format!("SERVFAIL: the server failed to resolve {name}"))
        }
        ResponseCode::Refused => {
            return Err(format!("REFUSED: the server refuses to answer for {name}"))
        }
        rc => return Err(format!("the server answered {} ({rc})", u16::from(rc))),
    }
    let got = answer_set(q.rtype, &m.answers);
    let by_name = matches!(q.rtype, RecordType::NS | RecordType::MX);
    if got == *q.expected || (by_name && matches_by_glue(&got, &glue(&m.additionals), q.expected))
    {
        return Ok(format!("{name} {rtype} {}", list(&got)));
    }
    if got.is_empty() {
        return Err(format!(
            "{name} has no {rtype} records, expected {}",
            list(q.expected)
        ));
    }
    Err(format!(
        "{name} {rtype} is {}, expected {}",
        list(&got),
        list(q.expected)
    ))
}

/// The normalized values of the answer records of `rtype` (CNAMEs and others skipped).
fn answer_set(rtype: RecordType, answers: &[Record]) -> BTreeSet<String> {
    answers
        .iter()
        .filter(|r| r.record_type() == rtype)
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            RData::NS(ns) => Some(display_name(&ns.0)),
            RData::MX(mx) => Some(display_name(&mx.exchange)),
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect(),
            ),
            _ => None,
        })
        .map(|v| match rtype {
            RecordType::TXT => v,
            _ => normalize(&v),
        })
        .collect()
}

/// Addresses given for names in the additional section (NS/MX glue), by normalized name.
fn glue(additionals: &[Record]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in additionals {
        let ip = match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            _ => continue,
        };
        out.entry(display_name(&r.name)).or_default().insert(ip);
    }
    out
}

/// NS/MX names match expected addresses through their glue: each answer name is expected by
/// name or by one of its addresses, and each expected value names or addresses some answer.
fn matches_by_glue(
    got: &BTreeSet<String>,
    glue: &BTreeMap<String, BTreeSet<String>>,
    expected: &BTreeSet<String>,
) -> bool {
    let addrs = |g: &String| glue.get(g).into_iter().flatten();
    got.len() == expected.len()
        && got
            .iter()
            .all(|g| expected.contains(g) || addrs(g).any(|a| expected.contains(a)))
        && expected
            .iter()
            .all(|e| got.contains(e) || got.iter().any(|g| addrs(g).any(|a| a == e)))
}

fn list(set: &BTreeSet<String>) -> String {
    let v: Vec<&str> = set.iter().map(String::as_str).collect();
    format!("[{}]", net::clip(&v.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::{cx, LOCAL};
    use crate::resolver::testutil::{fake, name, reply};
    use custodian_core::Job;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, AAAA, MX, NS, TXT};
    use tokio::net::UdpSocket;

    fn expect_of(text: &str) -> Expected {
        let Ok(Value::Parsed(v)) = expected(text) else {
            panic!("not parsed")
        };
        v.downcast_ref::<Expected>().expect("Expected").clone()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn txt_values_split_only_on_commas() {
        let e = expect_of("v=spf1 -all, v=DKIM1; k=rsa");
        assert_eq!(e.txt, set(&["v=spf1 -all", "v=DKIM1; k=rsa"]));
        let e = expect_of("192.0.2.1; 192.0.2.2 192.0.2.3,");
        assert_eq!(e.values, set(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]));
    }

    /// Prepares a `dns` job as the planner would: the kinds, then the line-wide check.
    fn prepared(query: &str, rtype: &str, expect: &str) -> Result<Params, Invalid> {
        let mut j = Job::new("dns", "127.0.0.1", Some(53));
        j.options.insert("query".into(), query.into());
        j.options.insert("rtype".into(), rtype.into());
        j.options.insert("expect".into(), expect.into());
        // The line-wide check is lenient (the planner warns), so run it here as `check` does.
        crate::prepare(&j).and_then(|p| values_fit_type(&p).map(|()| p))
    }

    #[test]
    fn record_types_are_checked_in_any_case() {
        for t in ["A", "aaaa", "Ns", "mx", "TXT"] {
            assert!(record_type(t).is_ok(), "{t}");
        }
        for t in ["www", "SRV", "", "A6"] {
            let e = record_type(t).expect_err(t);
            assert_eq!(
                e.msg,
                format!("`{t}` is not a record type `dns` can ask for")
            );
            assert_eq!(
                e.hint.as_deref(),
                Some("write one of A, AAAA, NS, MX, TXT (any case) after `resolving`")
            );
        }
    }

    #[test]
    fn query_names_are_checked() {
        for good in [
            "www.example.com",
            "MX.test.",
            "_dmarc.example.com",
            "*.example.com",
            ".",
            "localhost",
        ] {
            assert!(dns_name(good).is_ok(), "{good}");
        }
        assert_eq!(
            dns_name("WWW.Example.com").map(|n| display_name(&n)),
            Ok("www.example.com".into())
        );
        for bad in [
            "",
            "bad..name",
            ".lead",
            "not a zone",
            "a,b",
            "bücher.de",
            "a.*.b",
            "x@y",
        ] {
            let e = dns_name(bad).expect_err(bad);
            assert!(
                e.msg
                    .starts_with(&format!("`{bad}` is not a valid DNS name")),
                "{}",
                e.msg
            );
        }
        assert!(dns_name(&"a".repeat(64)).is_err());
        assert!(dns_name(&["a"; 130].join(".")).is_err());
        assert!(dns_name(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn values_must_fit_the_type() {
        assert!(prepared("a.test", "A", "192.0.2.1, 192.0.2.2").is_ok());
        assert!(prepared("a.test", "AAAA", "2001:db8::1").is_ok());
        assert!(prepared("a.test", "MX", "mx1.test; 192.0.2.25").is_ok());
        assert!(prepared("a.test", "NS", "ns1.test ns2.test.").is_ok());
        assert!(prepared("a.test", "TXT", "v=spf1 -all; anything, goes").is_ok());
        let e = prepared("a.test", "A", "notanip").expect_err("A as name");
        assert_eq!(
            e.msg,
            "`notanip` is not an IPv4 address, so no A record can match it"
        );
        assert_eq!((e.key, e.lenient), (Some("expect"), true));
        let e = prepared("a.test", "a", "2001:db8::1").expect_err("A as v6");
        assert!(e.msg.contains("not an IPv4 address"), "{}", e.msg);
        let e = prepared("a.test", "AAAA", "192.0.2.1").expect_err("AAAA as v4");
        assert!(e.msg.contains("not an IPv6 address"), "{}", e.msg);
        let e = prepared("a.test", "NS", "ns1..test").expect_err("bad name");
        assert!(
            e.msg.starts_with("`ns1..test` is not a valid DNS name"),
            "{}",
            e.msg
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("NS values are host names or their addresses")
        );
        let e = prepared("bad..name", "A", "192.0.2.1").expect_err("bad query");
        assert!(
            e.msg.contains("`bad..name` is not a valid DNS name"),
            "{}",
            e.msg
        );
        let e = prepared("a.test", "www", "192.0.2.1").expect_err("bad type");
        assert!(e.msg.contains("`www` is not a record type"), "{}", e.msg);
    }

    #[tokio::test]
    async fn the_phrase_is_required() {
        assert!(SPEC.params.iter().all(|p| p.required));
        let out = check(&cx(Job::new("dns", "127.0.0.1", Some(53)), 1.0)).await;
        assert!(matches!(out, Outcome::Unknown { .. }), "{out:?}");
    }

    fn ok(q: &Message, answers: Vec<RData>) -> Message {
        reply(q, ResponseCode::NoError, answers)
    }

    fn a(s: &str) -> RData {
        RData::A(A(s.parse().expect("ip")))
    }

    /// A small zone, one behaviour per name.
    fn zone(q: &Message, tcp: bool) -> Vec<Vec<u8>> {
        let Some(first) = q.queries.first() else {
            return vec![];
        };
        let asked = display_name(first.name());
        let m = match asked.as_str() {
            "a.test" => ok(q, vec![a("192.0.2.1"), a("192.0.2.2")]),
            "v6.test" => ok(
                q,
                vec![RData::AAAA(AAAA("2001:db8:0::1".parse().expect("ip")))],
            ),
            "mx.test" => ok(
                q,
                vec![
                    RData::MX(MX::new(10, name("mx1.test."))),
                    RData::MX(MX::new(20, name("MX2.Test."))),
                ],
            ),
            "ns.test" => ok(
                q,
                vec![
                    RData::NS(NS(name("ns1.test."))),
                    RData::NS(NS(name("ns2.test."))),
                ],
            ),
            "glue.test" => {
                let mut m = ok(q, vec![RData::MX(MX::new(10, name("mx1.test.")))]);
                m.add_additional(Record::from_rdata(name("mx1.test."), 60, a("192.0.2.25")));
                m
            }
            "txt.test" => ok(
                q,
                vec![RData::TXT(TXT::new(vec!["v=spf1".into(), "-all".into()]))],
            ),
            "empty.test" => ok(q, vec![]),
            "nx.test" => reply(q, ResponseCode::NXDomain, vec![]),
            "fail.test" => reply(q, ResponseCode::ServFail, vec![]),
            "refused.test" => reply(q, ResponseCode::Refused, vec![]),
            "big.test" if !tcp => {
                let mut m = ok(q, vec![]);
                m.metadata.truncation = true;
                m
            }
            "big.test" => ok(q, (1..=60).map(|i| a(&format!("192.0.2.{i}"))).collect()),
            "garbage.test" => return vec![b"\x00\x01garbage".to_vec()],
            "wrongid.test" => {
                let mut bad = ok(q, vec![a("192.0.2.99")]);
                bad.metadata.id = q.id.wrapping_add(1);
                let good = ok(q, vec![a("192.0.2.1")]);
                return vec![bad.to_vec().expect("enc"), good.to_vec().expect("enc")];
            }
            "wrongq.test" => {
                let mut m = ok(q, vec![a("192.0.2.1")]);
                m.queries[0].set_name(name("other.test."));
                m
            }
            _ => return vec![],
        };
        vec![m.to_vec().expect("encode")]
    }

    async fn probe(port: u16, query: &str, rtype: &str, expect: &str, secs: f64) -> Outcome {
        let mut j = Job::new("dns", "127.0.0.1", Some(port));
        j.options.insert("query".into(), query.into());
        j.options.insert("rtype".into(), rtype.into());
        j.options.insert("expect".into(), expect.into());
        check(&cx(j, secs)).await
    }

    #[tokio::test]
    async fn matching_answers_pass() {
        let p = fake(zone).await.port();
        let out = probe(p, "a.test", "A", "192.0.2.2, 192.0.2.1", 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("a.test A [192.0.2.1, 192.0.2.2]".into())
            }
        );
        assert!(probe(p, "v6.test", "aaaa", "2001:db8::1", 2.0)
            .await
            .is_up());
        assert!(probe(p, "MX.test.", "MX", "mx2.test;MX1.TEST.", 2.0)
            .await
            .is_up());
        assert!(probe(p, "ns.test", "NS", "ns1.test ns2.test", 2.0)
            .await
            .is_up());
        assert!(probe(p, "txt.test", "TXT", "v=spf1-all", 2.0).await.is_up());
    }

    #[tokio::test]
    async fn mx_matches_by_glue_address() {
        let p = fake(zone).await.port();
        assert!(probe(p, "glue.test", "MX", "192.0.2.25", 2.0).await.is_up());
        assert!(probe(p, "glue.test", "MX", "mx1.test", 2.0).await.is_up());
        let out = probe(p, "glue.test", "MX", "192.0.2.26", 2.0).await;
        assert_eq!(
            out,
            Outcome::down("glue.test MX is [mx1.test], expected [192.0.2.26]")
        );
        let out = probe(p, "glue.test", "MX", "192.0.2.25 mx2.test", 2.0).await;
        assert!(matches!(out, Outcome::Down { .. }), "{out:?}");
    }

    #[tokio::test]
    async fn mismatch_lists_got_and_expected() {
        let p = fake(zone).await.port();
        let out = probe(p, "a.test", "A", "192.0.2.1", 2.0).await;
        assert_eq!(
            out,
            Outcome::down("a.test A is [192.0.2.1, 192.0.2.2], expected [192.0.2.1]")
        );
        let out = probe(p, "empty.test", "MX", "mx.test", 2.0).await;
        assert_eq!(
            out,
            Outcome::down("empty.test has no MX records, expected [mx.test]")
        );
    }

    #[tokio::test]
    async fn error_codes_are_named() {
        let p = fake(zone).await.port();
        let out = probe(p, "nx.test", "A", "192.0.2.1", 2.0).await;
        assert_eq!(out, Outcome::down("NXDOMAIN: nx.test does not exist"));
        let out = probe(p, "fail.test", "A", "192.0.2.1", 2.0).await;
        assert_eq!(
            out,
            Outcome::down("SERVFAIL: the server failed to resolve fail.test")
        );
        let out = probe(p, "refused.test", "A", "192.0.2.1", 2.0).await;
        assert_eq!(
            out,
            Outcome::down("REFUSED: the server refuses to answer for refused.test")
        );
    }

    #[tokio::test]
    async fn truncated_answer_is_repeated_over_tcp() {
        let p = fake(zone).await.port();
        let all: Vec<String> = (1..=60).map(|i| format!("192.0.2.{i}")).collect();
        assert!(probe(p, "big.test", "A", &all.join(","), 2.0).await.is_up());
    }

    #[tokio::test]
    async fn bad_replies_are_ignored_until_the_deadline() {
        let p = fake(zone).await.port();
        assert!(probe(p, "wrongid.test", "A", "192.0.2.1", 2.0)
            .await
            .is_up());
        let out = probe(p, "garbage.test", "A", "192.0.2.1", 0.5).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if reason.starts_with("timed out waiting for the DNS answer (ignored 1 bad replies; last: malformed reply")),
            "{out:?}"
        );
        let out = probe(p, "wrongq.test", "A", "192.0.2.1", 0.5).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if reason.ends_with("last: reply for another question)")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn closed_udp_port_is_refused() {
        let udp = UdpSocket::bind((LOCAL, 0)).await.expect("bind");
        let port = udp.local_addr().expect("addr").port();
        drop(udp);
        let out = probe(port, "a.test", "A", "192.0.2.1", 2.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("UDP to port {port}: connection refused"))
        );
    }

    #[test]
    fn question_normalizes_values() {
        let p =
            prepared("www.example.com", "aaaa", "2001:DB8:0:0::1;; 2001:db8::2").expect("valid");
        let q = question(&p).expect("question");
        assert_eq!(q.rtype, RecordType::AAAA);
        assert_eq!(*q.name, name("www.example.com."));
        assert_eq!(*q.expected, set(&["2001:db8::1", "2001:db8::2"]));
        let p = prepared("t.test", "TXT", "v=spf1 -all").expect("valid");
        assert_eq!(
            *question(&p).expect("question").expected,
            set(&["v=spf1 -all"])
        );
    }

    /// Random and mutated replies, decoded and judged for an A and an MX question: never a
    /// panic, and a verdict bounded by the reply it judges.
    #[test]
    fn fuzzed_replies_never_panic() {
        let mut q = Message::new(0, MessageType::Query, OpCode::Query);
        q.add_query(hickory_proto::op::Query::query(
            name("mx.test."),
            RecordType::MX,
        ));
        let mut mx = ok(&q, vec![RData::MX(MX::new(10, name("mail.mx.test.")))]);
        mx.add_additional(Record::from_rdata(
            name("mail.mx.test."),
            60,
            a("192.0.2.25"),
        ));
        let mut q = Message::new(0, MessageType::Query, OpCode::Query);
        q.add_query(hickory_proto::op::Query::query(
            name("a.test."),
            RecordType::A,
        ));
        let seeds = [
            mx.to_vec().expect("enc"),
            ok(&q, vec![a("192.0.2.1"), a("192.0.2.2")])
                .to_vec()
                .expect("enc"),
            reply(&q, ResponseCode::NXDomain, vec![])
                .to_vec()
                .expect("enc"),
        ];
        let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
        let (a_name, mx_name) = (name("a.test."), name("mx.test."));
        let (a_set, mx_set) = (set(&["192.0.2.1", "192.0.2.2"]), set(&["192.0.2.25"]));
        let questions = [
            Question {
                name: &a_name,
                rtype: RecordType::A,
                expected: &a_set,
            },
            Question {
                name: &mx_name,
                rtype: RecordType::MX,
                expected: &mx_set,
            },
        ];
        let mut passed = 0;
        custodian_testpeers::fuzz::inputs(0x53, &seeds, |p| {
            let Ok(m) = Message::from_vec(p) else { return };
            for q in &questions {
                let said = judge(q, &m).inspect(|_| passed += 1).unwrap_or_else(|e| e);
                assert!(said.len() < 200 + 8 * p.len(), "{said}");
            }
        });
        assert!(passed > 0);
    }
}
