//! `openresolver`: whether a DNS server resolves names it is not authoritative for, for anyone.
//! Meant for `must not run`: "up" means the server is an open recursive resolver.
//!
//! Syntax: `HOST must not run openresolver [on PORT] [with zone 'ZONE'] [with expect 'IP']
//! [with tcp].` Default port 53. We ask once over UDP (one retry; TCP only with `with tcp`),
//! with a random ID and RD=1, for the A record of a fresh unique name under ZONE, a zone the
//! operator serves with a wildcard answering IP. The defaults (`probe.custodian.invalid`,
//! `192.0.2.1`) are placeholders to be configured: `.invalid` never resolves, so an
//! unconfigured check reports at most "inconclusive".
//! Verdicts: open (NOERROR with the expected address), open (forging: NOERROR with another
//! address), probably-open (SERVFAIL with RA), closed (REFUSED, even with RA or without a
//! question; NOTIMP; SERVFAIL without RA; other codes), inconclusive (NXDOMAIN or an empty
//! answer), no-answer (no reply after the retry). RA alone is never proof.
//! Example: `ns1 must not run openresolver with zone 'probe.example.net' with expect '192.0.2.7'.`

use crate::abuse::{self, Transcript};
use crate::resolver::{self, display_name};
use crate::Ctx;
use custodian_core::{
    Finding, Invalid, Kind, Outcome, ParamSpec, ProbeSpec, ScanSpec, TargetKind, Value, Verdict,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use std::net::IpAddr;
use tokio::time::Instant;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "openresolver",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(53),
    port_required: false,
    takes_port: true,
    params: &[
        ParamSpec::new(
            "with zone {zone}",
            "a zone you serve with a wildcard A record; we ask for a unique name in it",
        )
        .kinds(&[Kind::Parse(parse_zone)]),
        ParamSpec::new(
            "with expect {expect}",
            "the address the zone's wildcard answers",
        )
        .kinds(&[Kind::Parse(parse_expect)]),
        ParamSpec::new("with tcp", "ask over TCP instead of UDP"),
    ],
    summary: "the DNS server recurses for outsiders (for `must not run`)",
    example: "127.0.0.1 must not run openresolver with zone 'probe.example.net' with expect \
              '192.0.2.7' otherwise 'open resolver'.",
    check: None,
    scan: Some(ScanSpec {
        ports: &[53],
        conns: 1,
        flags: &[("zone", "zone"), ("expect", "expect")],
    }),
};

/// Placeholders: `.invalid` never resolves, and 192.0.2.1 is documentation space.
const DEFAULT_ZONE: &str = "probe.custodian.invalid";
const DEFAULT_EXPECT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

/// Longest zone: a name is at most 253 characters, and we put `c` + 16 hex digits + `.`
/// in front of the zone.
const MAX_ZONE: usize = 253 - 18;

/// A zone name for `with zone`: dot-separated labels of letters, digits, `-` and `_`
/// (1-63 characters, no hyphen at either end), short enough for our label in front; an
/// internationalised name is taken in its `xn--` form.
pub(crate) fn parse_zone(text: &str) -> Result<Value, Invalid> {
    let bad = |why: &str| {
        Invalid::new(format!("`{text}` is not a DNS zone name: {why}"))
            .hint("write the zone you serve with a wildcard A record, e.g. 'probe.example.net'")
    };
    let ascii = if text.is_ascii() {
        text.to_string()
    } else {
        Name::from_utf8(text)
            .map_err(|_| bad("it is not a valid internationalised name"))?
            .to_ascii()
    };
    let zone = ascii.strip_suffix('.').unwrap_or(&ascii);
    if zone.is_empty() {
        return Err(bad("it is empty"));
    }
    if zone.len() > MAX_ZONE {
        return Err(bad(&format!(
            "it is longer than {MAX_ZONE} characters, leaving no room for the probe label"
        )));
    }
    for label in zone.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(&format!(
                "label `{label}` is not 1-63 letters, digits, `-` or `_`"
            )));
        }
    }
    resolver::fqdn(zone).map(Value::parsed).map_err(|e| bad(&e))
}

/// The address for `with expect`.
pub(crate) fn parse_expect(text: &str) -> Result<Value, Invalid> {
    text.trim()
        .parse::<IpAddr>()
        .map(Value::parsed)
        .map_err(|_| {
            Invalid::new(format!("`{text}` is not an IP address"))
                .hint("write the address your zone's wildcard record answers, e.g. '192.0.2.7'")
        })
}

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    abuse::settle(cx, assess(cx).await).outcome()
}

/// The verdict with its evidence.
pub(crate) async fn assess(cx: &Ctx) -> Finding {
    let mut t = Transcript::default();
    let f = match run(cx, &mut t).await {
        Ok(f) => f,
        Err(e) => abuse::broken(&e),
    };
    t.attach(f)
}

async fn run(cx: &Ctx, t: &mut Transcript) -> Result<Finding, String> {
    let (name, expect) = question(cx)?;
    let server = abuse::target(cx)?;
    let tcp = cx.params.flag("with_tcp");
    t.source = abuse::source_for(cx, server).await;
    t.client(&format!(
        "A? {} RD=1{}",
        display_name(&name),
        if tcp { " over TCP" } else { "" }
    ));
    let reply = if tcp {
        resolver::exchange_tcp(cx, server, &name, RecordType::A).await?
    } else {
        ask_twice(cx, server, &name).await?
    };
    t.server(&describe(&reply));
    Ok(judge(&reply, expect))
}

/// The unique name to ask for and the address its zone answers.
fn question(cx: &Ctx) -> Result<(Name, IpAddr), String> {
    let zone = match cx.params.parsed::<Name>("zone") {
        Some(z) => z.clone(),
        None => resolver::fqdn(DEFAULT_ZONE)?,
    };
    let expect = cx.params.parsed::<IpAddr>("expect").copied();
    let label = format!("c{:016x}", rand::random::<u64>());
    let name = Name::from_ascii(&label)
        .and_then(|l| l.append_domain(&zone))
        .map_err(|e| format!("the probe name under {zone}: {e}"))?;
    Ok((name, expect.unwrap_or(DEFAULT_EXPECT)))
}

/// UDP with one retry: the first try gets half the time left.
async fn ask_twice(cx: &Ctx, server: std::net::SocketAddr, name: &Name) -> Result<Message, String> {
    let half = cx.deadline.saturating_duration_since(Instant::now()) / 2;
    let mut first = cx.clone();
    first.deadline = Instant::now() + half;
    match resolver::exchange(&first, server, name, RecordType::A).await {
        Err(e) if e.starts_with("timed out") => {
            resolver::exchange(cx, server, name, RecordType::A).await
        }
        other => other,
    }
}

/// The reply in one line: code, flags and answer addresses.
fn describe(m: &Message) -> String {
    let addrs: Vec<String> = resolver::answer_addrs(m)
        .iter()
        .map(|a| a.to_string())
        .collect();
    format!(
        "{}{}{} answers [{}]",
        code(m.response_code),
        if m.recursion_available { " RA" } else { "" },
        if m.authoritative { " AA" } else { "" },
        addrs.join(", ")
    )
}

/// The verdict on a reply to our unique name whose zone answers `expect`.
pub(crate) fn judge(m: &Message, expect: IpAddr) -> Finding {
    let ra = m.recursion_available;
    let addrs = resolver::answer_addrs(m);
    match m.response_code {
        ResponseCode::NoError if addrs.contains(&expect) => Finding::new(
            Verdict::Open,
            format!("resolved the probe name to {expect}"),
        ),
        ResponseCode::NoError if !addrs.is_empty() => Finding::new(
            Verdict::Open,
            format!("forging: answered {} instead of {expect}", addrs[0]),
        ),
        ResponseCode::NoError | ResponseCode::NXDomain => Finding::new(
            Verdict::Inconclusive,
            format!("{} without the expected address", code(m.response_code)),
        ),
        ResponseCode::ServFail if ra => {
            Finding::new(Verdict::ProbablyOpen, "SERVFAIL with recursion available")
        }
        rc => Finding::new(Verdict::Closed, format!("answered {}", code(rc))),
    }
}

/// The code as DNS people write it (`REFUSED`, `SERVFAIL`).
fn code(rc: ResponseCode) -> String {
    format!("{rc:?}").to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::cx;
    use crate::resolver::testutil::*;
    use custodian_core::Job;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::RData;

    const EXPECT: &str = "127.0.70.99";

    fn a(s: &str) -> RData {
        RData::A(A(s.parse().expect("ip")))
    }

    fn with_ra(mut m: Message) -> Vec<Vec<u8>> {
        m.metadata.recursion_available = true;
        one(m)
    }

    fn open(q: &Message, _: bool) -> Vec<Vec<u8>> {
        with_ra(reply(q, ResponseCode::NoError, vec![a(EXPECT)]))
    }

    fn forging(q: &Message, _: bool) -> Vec<Vec<u8>> {
        with_ra(reply(q, ResponseCode::NoError, vec![a("127.0.70.1")]))
    }

    fn refused_with_ra(q: &Message, _: bool) -> Vec<Vec<u8>> {
        let mut r = reply(q, ResponseCode::Refused, vec![]);
        r.queries.clear();
        with_ra(r)
    }

    fn servfail_ra(q: &Message, _: bool) -> Vec<Vec<u8>> {
        with_ra(reply(q, ResponseCode::ServFail, vec![]))
    }

    fn garbage(_: &Message, _: bool) -> Vec<Vec<u8>> {
        vec![vec![0xff; 7]]
    }

    fn silent(_: &Message, _: bool) -> Vec<Vec<u8>> {
        vec![]
    }

    fn job(port: u16, tcp: bool) -> Job {
        let mut j = Job::new("openresolver", "127.0.0.1", Some(port));
        j.options.insert("zone".into(), "probe.test".into());
        j.options.insert("expect".into(), EXPECT.into());
        if tcp {
            j.options.insert("with_tcp".into(), true.into());
        }
        j
    }

    async fn probe(behave: Behave, tcp: bool, secs: f64) -> Outcome {
        let a = fake(behave).await;
        check(&cx(job(a.port(), tcp), secs)).await
    }

    fn text(o: &Outcome) -> &str {
        match o {
            Outcome::Up { detail } => detail.as_deref().unwrap_or(""),
            Outcome::Down { reason } => reason,
            Outcome::Unknown { error } => error,
        }
    }

    #[test]
    fn judge_follows_the_rules() {
        let q = Message::new(0, MessageType::Query, OpCode::Query);
        let exp: IpAddr = EXPECT.parse().expect("ip");
        let mut m = reply(&q, ResponseCode::Refused, vec![]);
        m.metadata.recursion_available = true;
        assert_eq!(judge(&m, exp).verdict, Verdict::Closed);
        let m = reply(&q, ResponseCode::ServFail, vec![]);
        assert_eq!(judge(&m, exp).verdict, Verdict::Closed);
        let m = reply(&q, ResponseCode::NotImp, vec![]);
        assert_eq!(judge(&m, exp).verdict, Verdict::Closed);
        let m = reply(&q, ResponseCode::NXDomain, vec![]);
        assert_eq!(judge(&m, exp).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn zones_and_addresses_parse_or_are_refused() {
        let zone = |t: &str| match parse_zone(t) {
            Ok(Value::Parsed(v)) => v.downcast_ref::<Name>().map(|n| n.to_ascii()),
            _ => None,
        };
        assert_eq!(
            zone("probe.example.net").as_deref(),
            Some("probe.example.net.")
        );
        assert_eq!(
            zone("Probe.Example.NET.").as_deref(),
            Some("Probe.Example.NET.")
        );
        assert_eq!(zone("_probe.example").as_deref(), Some("_probe.example."));
        assert_eq!(
            zone("bücher.example").as_deref(),
            Some("xn--bcher-kva.example.")
        );
        let why = |t: &str| parse_zone(t).expect_err(t).msg;
        assert_eq!(
            why("not a zone"),
            "`not a zone` is not a DNS zone name: label `not a zone` is not 1-63 letters, \
             digits, `-` or `_`"
        );
        assert!(why("a..b").contains("label ``"));
        assert!(why("-a.b").contains("label `-a`"));
        assert!(why("").contains("it is empty"));
        assert!(why(&format!("{}.net", "a".repeat(64))).contains("is not 1-63"));
        assert!(why(&"abcdefg.".repeat(40)).contains("no room"));
        assert!(matches!(parse_expect("192.0.2.7"), Ok(Value::Parsed(_))));
        assert!(matches!(parse_expect("::1"), Ok(Value::Parsed(_))));
        let e = parse_expect("notanip").expect_err("notanip");
        assert_eq!(e.msg, "`notanip` is not an IP address");
        assert!(e.hint.is_some());
    }

    #[tokio::test]
    async fn open_and_forging_resolvers_are_up() {
        let o = probe(open, false, 2.0).await;
        assert!(o.is_up() && text(&o).starts_with("open: resolved"), "{o:?}");
        assert!(text(&o).contains("[from 127.0.0.1: C: A? c"), "{o:?}");
        let o = probe(open, true, 2.0).await;
        assert!(o.is_up() && text(&o).contains("over TCP"), "{o:?}");
        let o = probe(forging, false, 2.0).await;
        assert!(o.is_up() && text(&o).contains("forging"), "{o:?}");
        let o = probe(servfail_ra, false, 2.0).await;
        assert!(o.is_up() && text(&o).starts_with("probably-open"), "{o:?}");
    }

    #[tokio::test]
    async fn refused_with_ra_and_no_question_is_closed() {
        let o = probe(refused_with_ra, false, 2.0).await;
        assert!(
            !o.is_up() && text(&o).starts_with("closed: answered REFUSED"),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn silence_and_garbage_are_no_answer_after_a_retry() {
        let t = std::time::Instant::now();
        let o = probe(silent, false, 0.6).await;
        assert!(text(&o).starts_with("no-answer"), "{o:?}");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        let o = probe(garbage, false, 0.6).await;
        assert!(
            text(&o).starts_with("no-answer") && text(&o).contains("bad replies"),
            "{o:?}"
        );
    }
}
