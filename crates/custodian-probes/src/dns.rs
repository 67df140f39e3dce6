//! `dns`: ask the DNS server under test one question and compare the answer set.
//!
//! Syntax: `SERVER must run dns for NAME resolving TYPE as 'V1,V2'.` TYPE is A, AAAA, NS, MX or
//! TXT; the expected values split on `,`, `;` or spaces (TXT values only on `,`). The answer records of TYPE must equal
//! the expected set: order does not matter, names (NS, MX exchange) compare case-insensitively
//! without the trailing dot, addresses compare as addresses, TXT strings of a record are joined.
//! An NS or MX name also matches an expected address given for it in the additional section.
//! The query goes over UDP (random ID; replies with another ID or question are ignored) and is
//! repeated over TCP when the answer is truncated. Nothing is resolved through the system.
//! Down reasons: unsupported type; NXDOMAIN / SERVFAIL / REFUSED / other error codes; timed out
//! waiting for the answer (with the number of ignored replies); connection refused; answer is X,
//! expected Y.
//! Example: `ns1.example.com must run dns for www.example.com resolving A as '192.0.2.1'.`

use crate::resolver::{self, display_name};
use crate::{net, Ctx};
use custodian_core::{Job, Outcome, ParamSpec, ProbeSpec, TargetKind};
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
    params: &[ParamSpec::new("for {query} resolving {rtype} as {expect}", "ask for NAME's TYPE records (A, AAAA, NS, MX, TXT); the answer must be exactly these values")],
    summary: "the DNS server answers the question with exactly the expected records",
    example: "ns1.example.com must run dns for www.example.com resolving A as '192.0.2.1' otherwise 'dns wrong'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

/// The question and the expected answer set, from the job's options.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Question {
    name: Name,
    rtype: RecordType,
    expected: BTreeSet<String>,
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let q = question(&cx.job)?;
    let server = net::sockaddr(cx)?;
    let reply = resolver::exchange(cx, server, &q.name, q.rtype).await?;
    judge(&q, &reply)
}

/// Reads `for NAME resolving TYPE as VALUES` from the job.
fn question(job: &Job) -> Result<Question, String> {
    let query = job.opt_str("query").ok_or("no `for NAME` given")?;
    let mut name = Name::from_ascii(query).map_err(|e| format!("bad query name {query:?}: {e}"))?;
    name.set_fqdn(true);
    let rtype = rtype(job.opt_str("rtype").unwrap_or(""))?;
    let values = job.opt_str("expect").ok_or("no `as VALUES` given")?;
    let expected = split_expected(rtype, values)
        .map(|v| normalize(rtype, v))
        .collect();
    Ok(Question {
        name,
        rtype,
        expected,
    })
}

/// Splits the expected values. TXT records hold spaces and `;` themselves (`v=spf1 -all`,
/// `v=DKIM1; k=rsa`), so only `,` separates TXT values.
fn split_expected(rtype: RecordType, values: &str) -> impl Iterator<Item = &str> {
    let txt = rtype == RecordType::TXT;
    values
        .split(move |c: char| c == ',' || (!txt && (c == ';' || c.is_whitespace())))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn rtype(word: &str) -> Result<RecordType, String> {
    match word.to_ascii_uppercase().as_str() {
        "A" => Ok(RecordType::A),
        "AAAA" => Ok(RecordType::AAAA),
        "NS" => Ok(RecordType::NS),
        "MX" => Ok(RecordType::MX),
        "TXT" => Ok(RecordType::TXT),
        _ => Err(format!(
            "unsupported record type {word:?} (supported: A, AAAA, NS, MX, TXT)"
        )),
    }
}

/// The comparable form of a value: canonical addresses, lower-case names without the final dot.
fn normalize(rtype: RecordType, v: &str) -> String {
    match rtype {
        RecordType::A | RecordType::AAAA => v
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| v.to_string()),
        RecordType::TXT => v.to_string(),
        _ => v.trim_end_matches('.').to_ascii_lowercase(),
    }
}

/// Compares the answer with the expectation.
fn judge(q: &Question, m: &Message) -> Result<String, String> {
    let name = display_name(&q.name);
    let rtype = q.rtype;
    match m.response_code() {
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
    let got = answer_set(q.rtype, m.answers());
    let by_name = matches!(q.rtype, RecordType::NS | RecordType::MX);
    if got == q.expected || (by_name && matches_by_glue(&got, &glue(m.additionals()), &q.expected))
    {
        return Ok(format!("{name} {rtype} {}", list(&got)));
    }
    if got.is_empty() {
        return Err(format!(
            "{name} has no {rtype} records, expected {}",
            list(&q.expected)
        ));
    }
    Err(format!(
        "{name} {rtype} is {}, expected {}",
        list(&got),
        list(&q.expected)
    ))
}

/// The normalized values of the answer records of `rtype` (CNAMEs and others skipped).
fn answer_set(rtype: RecordType, answers: &[Record]) -> BTreeSet<String> {
    answers
        .iter()
        .filter(|r| r.record_type() == rtype)
        .filter_map(|r| r.data())
        .filter_map(|d| match d {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            RData::NS(ns) => Some(display_name(&ns.0)),
            RData::MX(mx) => Some(display_name(mx.exchange())),
            RData::TXT(t) => Some(
                t.txt_data()
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect(),
            ),
            _ => None,
        })
        .map(|v| normalize(rtype, &v))
        .collect()
}

/// Addresses given for names in the additional section (NS/MX glue), by normalized name.
fn glue(additionals: &[Record]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in additionals {
        let ip = match r.data() {
            Some(RData::A(a)) => a.0.to_string(),
            Some(RData::AAAA(a)) => a.0.to_string(),
            _ => continue,
        };
        out.entry(display_name(r.name())).or_default().insert(ip);
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
    use hickory_proto::rr::rdata::{A, AAAA, MX, NS, TXT};
    use std::time::{Duration, Instant};
    use tokio::net::UdpSocket;

    #[test]
    fn txt_values_split_only_on_commas() {
        let txt: Vec<&str> = split_expected(RecordType::TXT, "v=spf1 -all, v=DKIM1; k=rsa").collect();
        assert_eq!(txt, ["v=spf1 -all", "v=DKIM1; k=rsa"]);
        let a: Vec<&str> = split_expected(RecordType::A, "192.0.2.1; 192.0.2.2 192.0.2.3,").collect();
        assert_eq!(a, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    }

    fn ok(q: &Message, answers: Vec<RData>) -> Message {
        reply(q, ResponseCode::NoError, answers)
    }

    fn a(s: &str) -> RData {
        RData::A(A(s.parse().expect("ip")))
    }

    /// A small zone, one behaviour per name.
    fn zone(q: &Message, tcp: bool) -> Vec<Vec<u8>> {
        let Some(first) = q.queries().first() else {
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
                m.set_truncated(true);
                m
            }
            "big.test" => ok(q, (1..=60).map(|i| a(&format!("192.0.2.{i}"))).collect()),
            "garbage.test" => return vec![b"\x00\x01garbage".to_vec()],
            "wrongid.test" => {
                let mut bad = ok(q, vec![a("192.0.2.99")]);
                bad.set_id(q.id().wrapping_add(1));
                let good = ok(q, vec![a("192.0.2.1")]);
                return vec![bad.to_vec().expect("enc"), good.to_vec().expect("enc")];
            }
            "wrongq.test" => {
                let mut m = ok(q, vec![a("192.0.2.1")]);
                m.queries_mut()[0].set_name(name("other.test."));
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
    async fn silent_server_times_out() {
        let p = fake(zone).await.port();
        let t = Instant::now();
        let out = probe(p, "silent.test", "A", "192.0.2.1", 0.5).await;
        assert_eq!(out, Outcome::down("timed out waiting for the DNS answer"));
        assert!(t.elapsed() < Duration::from_secs(2));
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

    #[tokio::test]
    async fn unsupported_type_is_down() {
        let out = probe(1, "a.test", "SRV", "x", 1.0).await;
        assert_eq!(
            out,
            Outcome::down("unsupported record type \"SRV\" (supported: A, AAAA, NS, MX, TXT)")
        );
    }

    #[test]
    fn question_normalizes_values() {
        let mut j = Job::new("dns", "127.0.0.1", Some(53));
        j.options.insert("query".into(), "www.example.com".into());
        j.options.insert("rtype".into(), "aaaa".into());
        j.options
            .insert("expect".into(), "2001:DB8:0:0::1;; 2001:db8::2".into());
        let q = question(&j).expect("question");
        assert_eq!(q.rtype, RecordType::AAAA);
        assert_eq!(q.name, name("www.example.com."));
        let want: BTreeSet<String> = ["2001:db8::1", "2001:db8::2"].map(String::from).into();
        assert_eq!(q.expected, want);
    }
}
