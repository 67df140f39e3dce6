//! `mx`: every mail exchanger of a domain answers SMTP: the domain's MX records are resolved,
//! then each exchange's A/AAAA addresses, and each address must pass the `smtp` check.
//!
//! Syntax: `DOMAIN must run mx [on PORT] [with banner 'REGEX'].` The target is a mail domain,
//! never resolved by the worker; names go to the nameservers of the probe `Env` (the
//! `nameservers` setting), else those of /etc/resolv.conf. `on PORT` (default 25) is the SMTP
//! port of every exchange; `ipv4_only`/`ipv6_only` limit which addresses are asked for. At most
//! [`MAX_EXCHANGES`] exchanges (lowest preference first) and [`MAX_ADDRESSES`] addresses of each
//! (in address order, IPv4 first) are tested, so one check opens at most 40 connections.
//! Down reasons: no MX records / NXDOMAIN; null MX (the domain takes no mail); an exchange has
//! no address; `EXCHANGE (ADDRESS): <smtp reason>` for the first failing address.
//! Unknown: the nameservers gave no usable answer (timeout, SERVFAIL, REFUSED).
//! Example: `example.com must run mx otherwise 'mail for example.com bounces'.`

use crate::resolver::{self, display_name};
use crate::{smtp, tcp, Ctx};
use custodian_core::{Family, Outcome, ParamSpec, ProbeSpec, TargetKind};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, SocketAddr};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "mx",
    aliases: &[],
    target: TargetKind::Name,
    default_port: Some(25),
    port_required: false,
    takes_port: true,
    params: &[ParamSpec::new(
        "with banner {banner}",
        "every exchange's 220 greeting must match this case-insensitive regex",
    )
    .kinds(tcp::BANNER)],
    summary: "every MX host of the mail domain greets with 220 and accepts EHLO",
    example: "custodian.test must run mx on 2525 with banner 'ESMTP' otherwise 'mail bounces'.",
    check: None,
    scan: None,
};

/// Most exchanges tested, lowest preference first; the rest are ignored.
const MAX_EXCHANGES: usize = 10;

/// Most addresses tested per exchange; a hostile zone must not make one check open thousands of
/// connections.
const MAX_ADDRESSES: usize = 4;

/// Why a check could not judge the target: the name lookups failed, not the mail servers.
enum Failure {
    Down(String),
    Unknown(String),
}

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    let result = match cx.env.nameservers() {
        Ok(servers) => run(cx, &servers).await,
        Err(e) => Err(Failure::Unknown(e)),
    };
    match result {
        Ok(detail) => Outcome::Up {
            detail: Some(detail),
        },
        Err(Failure::Down(reason)) => Outcome::down(reason),
        Err(Failure::Unknown(error)) => Outcome::unknown(error),
    }
}

async fn run(cx: &Ctx, servers: &[SocketAddr]) -> Result<String, Failure> {
    let target = &cx.job.target;
    if target.parse::<IpAddr>().is_ok() {
        return Err(Failure::Down(format!(
            "{target} is an address; mx needs a mail domain"
        )));
    }
    let domain = resolver::fqdn(target).map_err(Failure::Down)?;
    let exchanges = exchanges(cx, servers, &domain).await?;
    let mut hosts = Vec::new();
    for ex in &exchanges {
        let addrs = addresses(cx, servers, ex).await?;
        hosts.extend(addrs.into_iter().map(|ip| (display_name(ex), ip)));
    }
    greet_all(cx, &hosts).await?;
    Ok(format!(
        "{} exchanges, {} addresses answer",
        exchanges.len(),
        hosts.len()
    ))
}

/// The domain's exchanges, lowest preference first.
async fn exchanges(cx: &Ctx, servers: &[SocketAddr], domain: &Name) -> Result<Vec<Name>, Failure> {
    let m = resolver::lookup(cx, servers, domain, RecordType::MX)
        .await
        .map_err(Failure::Unknown)?;
    mx_names(&m, &display_name(domain)).map_err(Failure::Down)
}

/// The MX exchanges of an answer, sorted by preference and capped at [`MAX_EXCHANGES`].
fn mx_names(m: &Message, domain: &str) -> Result<Vec<Name>, String> {
    if m.response_code() == ResponseCode::NXDomain {
        return Err(format!("NXDOMAIN: {domain} does not exist"));
    }
    let mut mx: Vec<(u16, Name)> = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            Some(RData::MX(mx)) => Some((mx.preference(), mx.exchange().clone())),
            _ => None,
        })
        .collect();
    if mx.is_empty() {
        return Err(format!("{domain} has no MX records"));
    }
    if mx.iter().any(|(_, n)| n.is_root()) {
        return Err(format!("{domain} has a null MX: it accepts no mail"));
    }
    mx.sort();
    mx.dedup_by(|a, b| a.1 == b.1);
    Ok(mx.into_iter().take(MAX_EXCHANGES).map(|(_, n)| n).collect())
}

/// An exchange's addresses of the families the job allows, capped at [`MAX_ADDRESSES`].
async fn addresses(cx: &Ctx, servers: &[SocketAddr], ex: &Name) -> Result<Vec<IpAddr>, Failure> {
    let types: &[RecordType] = match cx.job.family {
        Family::Any => &[RecordType::A, RecordType::AAAA],
        Family::V4 => &[RecordType::A],
        Family::V6 => &[RecordType::AAAA],
    };
    let mut out = Vec::new();
    for t in types {
        let m = resolver::lookup(cx, servers, ex, *t)
            .await
            .map_err(Failure::Unknown)?;
        out.extend(resolver::answer_addrs(&m));
    }
    out.sort();
    out.dedup();
    out.truncate(MAX_ADDRESSES);
    if out.is_empty() {
        return Err(Failure::Down(format!(
            "MX host {} has no address",
            display_name(ex)
        )));
    }
    Ok(out)
}

/// Runs the smtp check against every address at once; the first failure (in MX order) wins.
async fn greet_all(cx: &Ctx, hosts: &[(String, IpAddr)]) -> Result<(), Failure> {
    let checks = hosts.iter().map(|(_, ip)| {
        let one = cx.at(Some(*ip));
        async move { smtp::check(&one).await }
    });
    let outcomes = futures::future::join_all(checks).await;
    for ((host, ip), out) in hosts.iter().zip(outcomes) {
        match out {
            Outcome::Up { .. } => {}
            Outcome::Down { reason } => {
                return Err(Failure::Down(format!("{host} ({ip}): {reason}")))
            }
            Outcome::Unknown { error } => {
                return Err(Failure::Unknown(format!("{host} ({ip}): {error}")))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::{cx, refused, scripted};
    use crate::resolver::testutil::{fake, name, one, reply};
    use custodian_core::Job;
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::{A, AAAA, MX};
    use std::time::{Duration, Instant};

    fn mx(pref: u16, host: &str) -> RData {
        RData::MX(MX::new(pref, name(host)))
    }

    fn a(ip: &str) -> RData {
        RData::A(A(ip.parse().expect("ip")))
    }

    /// Mail domains: `one.test` → mx1 (127.0.0.1); `two.test` → mx1 and mx2 (127.0.0.1, ::1
    /// unasked under ipv4_only); `none.test` no MX; `null.test` null MX; `bare.test` → an
    /// exchange without address; `nx.test` NXDOMAIN; `fail.test` SERVFAIL.
    fn zone(q: &Message, _tcp: bool) -> Vec<Vec<u8>> {
        let Some(first) = q.queries().first() else {
            return vec![];
        };
        let ok = |answers| one(reply(q, ResponseCode::NoError, answers));
        let (asked, t) = (display_name(first.name()), first.query_type());
        match (asked.as_str(), t) {
            ("one.test", RecordType::MX) => ok(vec![mx(10, "mx1.test.")]),
            ("two.test", RecordType::MX) => ok(vec![mx(20, "mx2.test."), mx(10, "mx1.test.")]),
            ("null.test", RecordType::MX) => ok(vec![mx(0, ".")]),
            ("bare.test", RecordType::MX) => ok(vec![mx(10, "noaddr.test.")]),
            ("mx1.test" | "mx2.test", RecordType::A) => ok(vec![a("127.0.0.1")]),
            ("mx2.test", RecordType::AAAA) => {
                ok(vec![RData::AAAA(AAAA("::1".parse().expect("ip")))])
            }
            ("nx.test", _) => one(reply(q, ResponseCode::NXDomain, vec![])),
            ("fail.test", _) => one(reply(q, ResponseCode::ServFail, vec![])),
            ("silent.test", _) => vec![],
            ("many.test", RecordType::MX) => ok((0..50)
                .map(|i| mx(10, &format!("mx{i}.many.test.")))
                .collect()),
            (host, RecordType::A) if host.ends_with(".many.test") => ok((1..=20)
                .map(|i| a(&format!("127.0.0.{i}")))
                .collect()),
            _ => ok(vec![]),
        }
    }

    fn job(domain: &str, port: u16, v4: bool) -> Ctx {
        let mut j = Job::new("mx", domain, Some(port));
        if v4 {
            j.family = Family::V4;
        }
        cx(j, 2.0)
    }

    async fn probe(c: &Ctx, dns: SocketAddr) -> Outcome {
        match run(c, &[dns]).await {
            Ok(detail) => Outcome::Up {
                detail: Some(detail),
            },
            Err(Failure::Down(r)) => Outcome::down(r),
            Err(Failure::Unknown(e)) => Outcome::unknown(e),
        }
    }

    fn smtp_answer(line: &str) -> Option<&'static str> {
        match line.split(' ').next() {
            Some("EHLO") => Some("250 hi\r\n"),
            Some("QUIT") => None,
            _ => Some("500 what\r\n"),
        }
    }

    #[tokio::test]
    async fn every_exchange_must_greet() {
        let dns = fake(zone).await;
        let (smtp, heard) = scripted("220 mx ESMTP\r\n", smtp_answer).await;
        let out = probe(&job("one.test", smtp.port(), false), dns).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("1 exchanges, 1 addresses answer".into())
            }
        );
        assert_eq!(
            crate::net::testutil::heard(&heard),
            ["EHLO custodian.invalid", "QUIT"]
        );
        let out = probe(&job("two.test", smtp.port(), true), dns).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("2 exchanges, 2 addresses answer".into())
            }
        );
    }

    #[tokio::test]
    async fn a_failing_exchange_is_named() {
        let dns = fake(zone).await;
        let port = refused().await.port();
        let out = probe(&job("two.test", port, true), dns).await;
        let want = format!("mx1.test (127.0.0.1): connect to port {port}: connection refused");
        assert_eq!(out, Outcome::down(want));
        let (smtp, _) = scripted("554 go away\r\n", smtp_answer).await;
        let out = probe(&job("one.test", smtp.port(), false), dns).await;
        assert_eq!(
            out,
            Outcome::down("mx1.test (127.0.0.1): greeting is not 220: \"554 go away\"")
        );
    }

    #[tokio::test]
    async fn missing_mail_setup_is_down() {
        let dns = fake(zone).await;
        let cases = [
            ("none.test", "none.test has no MX records"),
            ("null.test", "null.test has a null MX: it accepts no mail"),
            ("bare.test", "MX host noaddr.test has no address"),
            ("nx.test", "NXDOMAIN: nx.test does not exist"),
            (
                "192.0.2.1",
                "192.0.2.1 is an address; mx needs a mail domain",
            ),
        ];
        for (domain, reason) in cases {
            assert_eq!(
                probe(&job(domain, 25, false), dns).await,
                Outcome::down(reason)
            );
        }
    }

    #[tokio::test]
    async fn broken_nameservers_are_unknown_not_down() {
        let dns = fake(zone).await;
        let out = probe(&job("fail.test", 25, false), dns).await;
        assert_eq!(
            out,
            Outcome::unknown(format!("{dns} answered Server Failure for fail.test"))
        );
        let t = Instant::now();
        let mut c = job("silent.test", 25, false);
        c.deadline = tokio::time::Instant::now() + Duration::from_millis(400);
        let out = probe(&c, dns).await;
        assert!(
            matches!(&out, Outcome::Unknown { error } if error.contains("timed out")),
            "{out:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    /// Our nameservers are ours: when none answers, the mail domain was never judged.
    #[tokio::test]
    async fn dead_nameservers_make_the_check_unknown() {
        let dead = refused().await;
        let env = crate::Env::build(&crate::EnvOptions {
            roots: crate::Roots::Bundled,
            nameservers: vec![dead],
            ..crate::EnvOptions::default()
        })
        .expect("env");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let j = std::sync::Arc::new(Job::new("mx", "one.test", Some(25)));
        let c = Ctx::new_in(std::sync::Arc::new(env), j, None, deadline);
        let out = (crate::find("mx").expect("registered").check)(&c).await;
        assert!(
            matches!(&out, Outcome::Unknown { error } if error.contains(&dead.to_string())),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn check_without_nameservers_is_unknown() {
        // Unit tests never set nameservers, and the system's are off limits to them.
        let out = check(&job("one.test", 25, false)).await;
        assert!(matches!(out, Outcome::Unknown { .. }), "{out:?}");
    }

    /// An SMTP server on every loopback address of one port that counts its connections.
    async fn counting_smtp() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        // 0.0.0.0 so that 127.0.0.2 and up reach it; the test only connects over loopback.
        let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let _ = w.write_all(b"220 mx ESMTP\r\n").await;
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let Some(answer) = smtp_answer(&line) else { break };
                        let _ = w.write_all(answer.as_bytes()).await;
                    }
                });
            }
        });
        (port, count)
    }

    #[tokio::test]
    async fn a_zone_with_many_exchanges_and_addresses_is_capped() {
        let dns = fake(zone).await;
        let (port, count) = counting_smtp().await;
        let out = probe(&job("many.test", port, true), dns).await;
        let want = format!(
            "{MAX_EXCHANGES} exchanges, {} addresses answer",
            MAX_EXCHANGES * MAX_ADDRESSES
        );
        assert_eq!(out, Outcome::Up { detail: Some(want) });
        assert_eq!(
            count.load(std::sync::atomic::Ordering::SeqCst),
            MAX_EXCHANGES * MAX_ADDRESSES,
            "connections opened"
        );
    }

    #[test]
    fn exchanges_are_sorted_deduplicated_and_capped() {
        let q = Message::new();
        let mut m = reply(&q, ResponseCode::NoError, vec![]);
        for i in 0..20u16 {
            let rec = hickory_proto::rr::Record::from_rdata(
                name("d.test."),
                60,
                mx(100 - i, &format!("mx{i}.test.")),
            );
            m.add_answer(rec);
        }
        m.add_answer(hickory_proto::rr::Record::from_rdata(
            name("d.test."),
            60,
            mx(1, "mx0.test."),
        ));
        let names = mx_names(&m, "d.test").expect("names");
        assert_eq!(names.len(), MAX_EXCHANGES);
        assert_eq!(names[0], name("mx0.test."));
        assert_eq!(names[1], name("mx19.test."));
        assert!(!names[2..].contains(&name("mx0.test.")));
    }
}
