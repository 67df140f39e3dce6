//! `dnsbl`: whether an IPv4 address is listed in DNS blocklists. "Passes" when it is listed,
//! so write `must not run dnsbl`.
//!
//! Syntax: `ADDRESS must not run dnsbl [via ZONE,ZONE].` For 192.0.2.1 and zone `bl.example`
//! we ask for the A record of `1.2.0.192.bl.example`; an answer in 127.0.0.0/24 means listed,
//! NXDOMAIN (or no A record) means not listed. Without `via`, [`DEFAULT_ZONES`] are asked.
//! Names go to the nameservers of the probe `Env` (the `nameservers` setting), else
//! those of /etc/resolv.conf; the target itself is never resolved.
//! Up: `listed in ZONE (127.0.0.N)` for the first zone (in the given order) that lists it.
//! Down: `not listed in ZONE, ZONE`.
//! Unknown (never a pass, inverted or not): the target is not an IPv4 address; a zone gave no
//! usable answer (timeout, SERVFAIL, REFUSED, our nameservers unreachable: they are ours, not
//! the target's) or answered outside 127.0.0.0/24 (Spamhaus answers 127.255.255.x to refuse a
//! query). `custodian check` refuses a `via` that names no zone, more than 20, or a zone that
//! is not a DNS name.
//! Example: `127.0.0.2 must not run dnsbl via bl.example.org otherwise 'we are blocklisted'.`

use crate::{dns, resolver, Ctx};
use custodian_core::{Invalid, Kind, Outcome, ParamSpec, ProbeSpec, TargetKind, Value};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "dnsbl",
    aliases: &[],
    target: TargetKind::Name,
    default_port: None,
    port_required: false,
    takes_port: false,
    params: &[ParamSpec::new("via {zones}", "the blocklist zones to ask, comma-separated (default: zen.spamhaus.org, bl.spamcop.net, b.barracudacentral.org)")
        .kinds(&[Kind::Parse(zones)])],
    summary: "\"passes\" when the IPv4 address is listed in a DNS blocklist (write `must not run dnsbl`)",
    example: "127.0.0.2 must not run dnsbl via 'zen.spamhaus.org,bl.spamcop.net' otherwise 'we are blocklisted'.",
    check: None,
    scan: None,
};

/// Widely used public blocklists, asked when the line names none.
pub(crate) const DEFAULT_ZONES: &[&str] = &[
    "zen.spamhaus.org",
    "bl.spamcop.net",
    "b.barracudacentral.org",
];

/// Most zones one line may ask.
const MAX_ZONES: usize = 20;

/// What one zone said about the address.
#[derive(Debug, PartialEq, Eq)]
enum Listing {
    Listed(Ipv4Addr),
    NotListed,
}

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    match cx.env.nameservers() {
        Ok(servers) => run(cx, &servers).await,
        Err(e) => Outcome::unknown(e),
    }
}

async fn run(cx: &Ctx, servers: &[SocketAddr]) -> Outcome {
    let Ok(IpAddr::V4(ip)) = cx.job.target.parse::<IpAddr>() else {
        return Outcome::unknown(format!(
            "dnsbl needs an IPv4 address, not {:?}",
            cx.job.target
        ));
    };
    let zones = cx.params.parsed::<Zones>("zones").map_or_else(
        || DEFAULT_ZONES.iter().map(|z| z.to_string()).collect(),
        |z| z.0.clone(),
    );
    let asks = zones.iter().map(|z| ask(cx, servers, ip, z));
    let answers = futures::future::join_all(asks).await;
    verdict(&zones, answers)
}

/// The zones of `via`, lower-case without the final dot, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Zones(Vec<String>);

/// `via`: zones split on commas and spaces (empty parts dropped), each a DNS name.
fn zones(text: &str) -> Result<Value, Invalid> {
    let mut zones = Vec::new();
    for z in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|z| !z.is_empty())
    {
        let name = dns::dns_name(z).map_err(|e| Invalid {
            hint: Some("write zones such as `zen.spamhaus.org`, separated by commas".into()),
            ..e
        })?;
        zones.push(resolver::display_name(&name));
    }
    match zones.len() {
        0 => Err(Invalid::new("`via` names no zone")
            .hint("write `via zen.spamhaus.org` or leave `via` out for the defaults")),
        n if n > MAX_ZONES => Err(Invalid::new(format!(
            "`via` names {n} zones; at most {MAX_ZONES}"
        ))),
        _ => Ok(Value::parsed(Zones(zones))),
    }
}

/// The name to ask: the address's octets reversed, under the zone.
fn query_name(ip: Ipv4Addr, zone: &str) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.{zone}")
}

async fn ask(
    cx: &Ctx,
    servers: &[SocketAddr],
    ip: Ipv4Addr,
    zone: &str,
) -> Result<Listing, String> {
    let name = resolver::fqdn(&query_name(ip, zone))?;
    let m = resolver::lookup(cx, servers, &name, RecordType::A).await?;
    listing(&m).map_err(|e| format!("{zone}: {e}"))
}

/// Reads one zone's answer.
fn listing(m: &Message) -> Result<Listing, String> {
    if m.response_code == ResponseCode::NXDomain {
        return Ok(Listing::NotListed);
    }
    let addrs = resolver::answer_addrs(m);
    let Some(first) = addrs.first() else {
        return Ok(Listing::NotListed);
    };
    match first {
        IpAddr::V4(a) if a.octets()[..3] == [127, 0, 0] => Ok(Listing::Listed(*a)),
        other => Err(format!("answered {other}, not a 127.0.0.x listing code")),
    }
}

/// Listed anywhere wins (in zone order); otherwise any failed zone makes the check unknown.
fn verdict(zones: &[String], answers: Vec<Result<Listing, String>>) -> Outcome {
    let mut failed = None;
    for (zone, answer) in zones.iter().zip(answers) {
        match answer {
            Ok(Listing::Listed(code)) => {
                return Outcome::Up {
                    detail: Some(format!("listed in {zone} ({code})")),
                }
            }
            Ok(Listing::NotListed) => {}
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    match failed {
        Some(e) => Outcome::unknown(e),
        None => Outcome::down(format!("not listed in {}", zones.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::cx;
    use crate::resolver::display_name;
    use crate::resolver::testutil::{fake, one, reply};
    use custodian_core::Job;
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::RData;
    use std::time::{Duration, Instant};

    fn a(ip: &str) -> RData {
        RData::A(A(ip.parse().expect("ip")))
    }

    /// Zone `bl.test` lists 127.0.0.2; `refuse.test` answers like Spamhaus to a public
    /// resolver; `fail.test` fails; `slow.test` never answers; all else is NXDOMAIN.
    fn zone(q: &Message, _tcp: bool) -> Vec<Vec<u8>> {
        let Some(first) = q.queries.first() else {
            return vec![];
        };
        let asked = display_name(first.name());
        let ok = |answers| one(reply(q, ResponseCode::NoError, answers));
        match asked.as_str() {
            "2.0.0.127.bl.test" => ok(vec![a("127.0.0.2")]),
            "3.0.0.127.bl.test" => ok(vec![]),
            n if n.ends_with(".refuse.test") => ok(vec![a("127.255.255.254")]),
            n if n.ends_with(".fail.test") => one(reply(q, ResponseCode::ServFail, vec![])),
            n if n.ends_with(".slow.test") => vec![],
            _ => one(reply(q, ResponseCode::NXDomain, vec![])),
        }
    }

    async fn probe(ip: &str, via: Option<&str>, secs: f64) -> Outcome {
        let dns = fake(zone).await;
        let mut j = Job::new("dnsbl", ip, None);
        if let Some(v) = via {
            j.options.insert("zones".into(), v.into());
        }
        run(&cx(j, secs), &[dns]).await
    }

    #[test]
    fn query_names_reverse_the_octets() {
        assert_eq!(
            query_name(Ipv4Addr::new(192, 0, 2, 1), "bl.test"),
            "1.2.0.192.bl.test"
        );
    }

    fn zones_of(text: &str) -> Result<Vec<String>, String> {
        match zones(text) {
            Ok(Value::Parsed(v)) => Ok(v.downcast_ref::<Zones>().expect("Zones").0.clone()),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.msg),
        }
    }

    #[test]
    fn zones_split_on_commas_and_spaces() {
        let z = zones_of("BL.test., other.test  third.test").expect("zones");
        assert_eq!(z, ["bl.test", "other.test", "third.test"]);
        assert_eq!(zones_of(" , "), Err("`via` names no zone".into()));
        let many = vec!["z.test"; MAX_ZONES + 1].join(",");
        assert!(zones_of(&many).is_err());
        let bad = zones_of("zen.spamhaus.org,bad..zone").expect_err("empty label");
        assert!(
            bad.starts_with("`bad..zone` is not a valid DNS name"),
            "{bad}"
        );
        assert!(
            zones_of("bl_test.example;x").is_err(),
            "`;` is no separator"
        );
        let mut j = Job::new("dnsbl", "127.0.0.2", None);
        j.options.insert("zones".into(), "not/a/zone".into());
        assert!(crate::prepare(&j).is_err());
    }

    #[tokio::test]
    async fn without_via_the_default_zones_are_asked() {
        let dns = fake(zone).await;
        let out = run(&cx(Job::new("dnsbl", "127.0.0.9", None), 2.0), &[dns]).await;
        assert_eq!(
            out,
            Outcome::down(format!("not listed in {}", DEFAULT_ZONES.join(", ")))
        );
    }

    /// Our nameservers not answering is our failure: the check is unknown, and `must not run
    /// dnsbl` (which passes when the address is not listed) does not pass on it.
    #[tokio::test]
    async fn dead_nameservers_make_the_check_unknown_never_passed() {
        let dead = crate::net::testutil::refused().await;
        let env = crate::Env::build(&crate::EnvOptions {
            roots: crate::Roots::Bundled,
            nameservers: vec![dead],
            ..crate::EnvOptions::default()
        })
        .expect("env");
        let mut j = Job::new("dnsbl", "127.0.0.2", None);
        j.options.insert("zones".into(), "bl.test".into());
        j.inverted = true;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let c = Ctx::new_in(
            std::sync::Arc::new(env),
            std::sync::Arc::new(j),
            None,
            deadline,
        );
        let probe = crate::find("dnsbl").expect("registered");
        let out = (probe.check)(&c).await;
        assert!(
            matches!(&out, Outcome::Unknown { error } if error.contains(&dead.to_string())),
            "{out:?}"
        );
        let (status, why) = custodian_core::judge(&out, true);
        assert_eq!(status, custodian_core::Status::Unknown, "{why:?}");
    }

    #[tokio::test]
    async fn listed_address_passes() {
        let out = probe("127.0.0.2", Some("nx.test,bl.test"), 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("listed in bl.test (127.0.0.2)".into())
            }
        );
    }

    #[tokio::test]
    async fn unlisted_address_is_down() {
        let out = probe("127.0.0.1", Some("bl.test,nx.test"), 2.0).await;
        assert_eq!(out, Outcome::down("not listed in bl.test, nx.test"));
        let out = probe("127.0.0.3", Some("bl.test"), 2.0).await;
        assert_eq!(
            out,
            Outcome::down("not listed in bl.test"),
            "NOERROR without A"
        );
    }

    #[tokio::test]
    async fn broken_zones_are_unknown() {
        let out = probe("127.0.0.1", Some("bl.test,refuse.test"), 2.0).await;
        assert_eq!(
            out,
            Outcome::unknown("refuse.test: answered 127.255.255.254, not a 127.0.0.x listing code")
        );
        let out = probe("127.0.0.1", Some("fail.test"), 2.0).await;
        assert!(
            matches!(&out, Outcome::Unknown { error } if error.ends_with("answered Server Failure for 1.0.0.127.fail.test")),
            "{out:?}"
        );
        let t = Instant::now();
        let out = probe("127.0.0.1", Some("slow.test"), 0.4).await;
        assert!(
            matches!(&out, Outcome::Unknown { error } if error.contains("timed out")),
            "{out:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_listing_beats_a_broken_zone() {
        let out = probe("127.0.0.2", Some("fail.test,bl.test"), 2.0).await;
        assert!(out.is_up(), "{out:?}");
    }

    #[tokio::test]
    async fn only_ipv4_targets() {
        for t in ["::1", "mail.example"] {
            let out = probe(t, Some("bl.test"), 1.0).await;
            assert!(
                matches!(&out, Outcome::Unknown { error } if error.starts_with("dnsbl needs an IPv4 address")),
                "{out:?}"
            );
        }
    }

    #[tokio::test]
    async fn check_without_nameservers_is_unknown() {
        let j = Job::new("dnsbl", "127.0.0.2", None);
        let out = check(&cx(j, 1.0)).await;
        assert!(matches!(out, Outcome::Unknown { .. }), "{out:?}");
    }
}
