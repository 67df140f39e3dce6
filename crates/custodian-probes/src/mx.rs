//! `mx`: every mail exchanger of a domain answers SMTP: the domain's MX records are resolved,
//! then each exchange's A/AAAA addresses, and each address must pass the `smtp` check.
//!
//! Syntax: `DOMAIN must run mx [on PORT] [with banner 'REGEX'].` The target is a mail domain,
//! never resolved by the worker; names go to the nameservers of the probe `Env` (the
//! `nameservers` setting), else those of /etc/resolv.conf. `on PORT` (default 25) is the SMTP
//! port of every exchange; `ipv4_only`/`ipv6_only` limit which addresses are asked for. At most
//! [`MAX_EXCHANGES`] exchanges (lowest preference first) and [`MAX_ADDRESSES`] addresses of each
//! (in address order, IPv4 first) are tested, so one check opens at most 40 connections.
//! Under a worker they also stay inside its limits, an exchange counting as one attempt
//! against a host: the first exchange runs in the check's own slot, further ones in as many
//! global slots as are free at the time (never waited for), so a check greets at most that
//! many exchanges at once; with `per_host`, each exchange also waits for its name's slot.
//! Down reasons: no MX records / NXDOMAIN; null MX (the domain takes no mail); an exchange has
//! no address; `EXCHANGE (ADDRESS): <smtp reason>` for the first failing address.
//! Unknown: the nameservers gave no usable answer (timeout, SERVFAIL, REFUSED).
//! Example: `example.com must run mx otherwise 'mail for example.com bounces'.`

use crate::resolver::{self, display_name};
use crate::{smtp, tcp, Ctx};
use custodian_core::{Family, Outcome, ParamSpec, ProbeSpec, TargetKind};
use futures::StreamExt;
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
pub(crate) const MAX_EXCHANGES: usize = 10;

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
        hosts.push((display_name(ex), addresses(cx, servers, ex).await?));
    }
    greet_all(cx, &hosts).await?;
    Ok(format!(
        "{} exchanges, {} addresses answer",
        exchanges.len(),
        hosts.iter().map(|(_, ips)| ips.len()).sum::<usize>()
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
pub(crate) fn mx_names(m: &Message, domain: &str) -> Result<Vec<Name>, String> {
    if m.response_code == ResponseCode::NXDomain {
        return Err(format!("NXDOMAIN: {domain} does not exist"));
    }
    let mut mx: Vec<(u16, Name)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
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

/// Runs the smtp check against every address of every exchange, as many exchanges at once as
/// the worker's slots allow (all without a worker); the first failure (in MX order) wins.
async fn greet_all(cx: &Ctx, hosts: &[(String, Vec<IpAddr>)]) -> Result<(), Failure> {
    let (width, _extra) = match cx.limits() {
        Some(limits) => {
            let extra: Vec<_> = (1..hosts.len())
                .map_while(|_| limits.try_global())
                .collect();
            (1 + extra.len(), extra)
        }
        None => (hosts.len().max(1), Vec::new()),
    };
    // `width` exchanges at a time, results in MX order (a loop: a stream adaptor's closure
    // trips the compiler's Send check of the boxed probe future).
    let (mut queue, mut running) = (hosts.iter(), futures::stream::FuturesOrdered::new());
    let mut outcomes = Vec::with_capacity(hosts.len());
    loop {
        while running.len() < width {
            let Some((host, ips)) = queue.next() else {
                break;
            };
            running.push_back(greet(cx, host, ips));
        }
        match running.next().await {
            Some(out) => outcomes.push(out),
            None => break,
        }
    }
    let flat = hosts
        .iter()
        .flat_map(|(host, ips)| ips.iter().map(move |ip| (host, ip)));
    for ((host, ip), out) in flat.zip(outcomes.into_iter().flatten()) {
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

/// Greets one exchange's addresses at once, in its host slot when hosts have a limit (unless
/// it is the check's own target, whose slot the check already holds).
async fn greet(cx: &Ctx, host: &str, ips: &[IpAddr]) -> Vec<Outcome> {
    let own = cx
        .job
        .target
        .trim_end_matches('.')
        .eq_ignore_ascii_case(host);
    let slot = cx.limits().and_then(|l| l.host(host)).filter(|_| !own);
    let _held = match slot {
        Some(s) => match tokio::time::timeout_at(cx.deadline, s.acquire_owned()).await {
            Ok(permit) => permit.ok(),
            Err(_) => {
                // Our own limit ran out the clock: the exchange was never judged.
                let why = format!("timed out waiting for a per_host slot for {host}");
                return ips.iter().map(|_| Outcome::unknown(why.clone())).collect();
            }
        },
        None => None,
    };
    let checks = ips.iter().map(|ip| {
        let one = cx.at(Some(*ip));
        async move { smtp::check(&one).await }
    });
    futures::future::join_all(checks).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::{cx, refused, scripted};
    use crate::resolver::testutil::{fake, name, one, reply};
    use custodian_core::Job;
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, AAAA, MX};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tokio::sync::Semaphore;

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
        let Some(first) = q.queries.first() else {
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
            ("self.test", RecordType::MX) => ok(vec![mx(10, "self.test.")]),
            ("self.test", RecordType::A) => ok(vec![a("127.0.0.1")]),
            ("nx.test", _) => one(reply(q, ResponseCode::NXDomain, vec![])),
            ("fail.test", _) => one(reply(q, ResponseCode::ServFail, vec![])),
            ("silent.test", _) => vec![],
            ("many.test", RecordType::MX) => ok((0..50)
                .map(|i| mx(10, &format!("mx{i}.many.test.")))
                .collect()),
            (host, RecordType::A) if host.ends_with(".many.test") => {
                ok((1..=20).map(|i| a(&format!("127.0.0.{i}"))).collect())
            }
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
        let l = tokio::net::TcpListener::bind("0.0.0.0:0")
            .await
            .expect("bind");
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
                        let Some(answer) = smtp_answer(&line) else {
                            break;
                        };
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

    /// Slots as a worker hands them over: a global semaphore and fixed per-host ones.
    #[derive(Debug)]
    struct Slots {
        global: Arc<Semaphore>,
        hosts: HashMap<String, Arc<Semaphore>>,
    }

    impl crate::Limits for Slots {
        fn try_global(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
            Arc::clone(&self.global).try_acquire_owned().ok()
        }

        fn host(&self, host: &str) -> Option<Arc<Semaphore>> {
            self.hosts.get(host).cloned()
        }
    }

    /// An SMTP server on every loopback address of one port that greets after `delay` and
    /// records the most connections it held open at once (a connection ends at QUIT).
    async fn slow_smtp(delay: Duration) -> (u16, Arc<AtomicUsize>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let l = tokio::net::TcpListener::bind("0.0.0.0:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let (open, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let seen = Arc::clone(&most);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                seen.fetch_max(now, Ordering::SeqCst);
                let open = Arc::clone(&open);
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    tokio::time::sleep(delay).await;
                    let _ = w.write_all(b"220 mx ESMTP\r\n").await;
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let Some(answer) = smtp_answer(&line) else {
                            break;
                        };
                        let _ = w.write_all(answer.as_bytes()).await;
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (port, most)
    }

    #[tokio::test]
    async fn exchanges_are_greeted_only_in_free_worker_slots() {
        let dns = fake(zone).await;
        let delay = Duration::from_millis(100);
        let (port, most) = slow_smtp(delay).await;
        // Three slots, one held by this check itself as the worker holds it: two are free.
        let global = Arc::new(Semaphore::new(3));
        let own = Arc::clone(&global).try_acquire_owned().expect("own slot");
        let slots = Slots {
            global: Arc::clone(&global),
            hosts: HashMap::new(),
        };
        let c = job("many.test", port, true).with_limits(Arc::new(slots));
        let t = Instant::now();
        let out = probe(&c, dns).await;
        let want = format!("{MAX_EXCHANGES} exchanges, 40 addresses answer");
        assert_eq!(out, Outcome::Up { detail: Some(want) });
        // Three exchanges of four addresses at a time, never the 40 a free check opens...
        let most = most.load(Ordering::SeqCst);
        assert!((5..=3 * MAX_ADDRESSES).contains(&most), "{most} at once");
        // ...so ten exchanges take four rounds of greetings...
        assert!(t.elapsed() >= 4 * delay, "{:?}", t.elapsed());
        // ...and the extra slots are given back.
        assert_eq!(global.available_permits(), 2);
        drop(own);
    }

    #[tokio::test]
    async fn a_busy_exchange_waits_for_its_host_slot_until_the_deadline() {
        let dns = fake(zone).await;
        let (smtp, _) = scripted("220 mx ESMTP\r\n", smtp_answer).await;
        let busy = Arc::new(Semaphore::new(1));
        let held = Arc::clone(&busy).try_acquire_owned().expect("held");
        let slots = Slots {
            global: Arc::new(Semaphore::new(10)),
            hosts: HashMap::from([("mx2.test".to_string(), Arc::clone(&busy))]),
        };
        let mut c = job("two.test", smtp.port(), true).with_limits(Arc::new(slots));
        c.deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        let out = probe(&c, dns).await;
        let why = "mx2.test (127.0.0.1): timed out waiting for a per_host slot for mx2.test";
        assert_eq!(out, Outcome::unknown(why));
        // Once the host's other check is done, the same check passes.
        drop(held);
        let c = job("two.test", smtp.port(), true).with_limits(Arc::new(Slots {
            global: Arc::new(Semaphore::new(10)),
            hosts: HashMap::from([("mx2.test".to_string(), busy)]),
        }));
        let out = probe(&c, dns).await;
        assert!(out.is_up(), "{out:?}");
    }

    /// A domain that is its own exchange: the check holds that host's slot already, so it
    /// must not wait for it (per_host 1 would wait for itself until the deadline).
    #[tokio::test]
    async fn the_own_target_is_never_waited_for() {
        let dns = fake(zone).await;
        let (smtp, _) = scripted("220 mx ESMTP\r\n", smtp_answer).await;
        let own = Arc::new(Semaphore::new(1));
        let _held = Arc::clone(&own).try_acquire_owned().expect("held");
        let slots = Slots {
            global: Arc::new(Semaphore::new(1)),
            hosts: HashMap::from([("self.test".to_string(), own)]),
        };
        let out = probe(
            &job("self.test", smtp.port(), true).with_limits(Arc::new(slots)),
            dns,
        )
        .await;
        assert!(out.is_up(), "{out:?}");
    }

    #[test]
    fn exchanges_are_sorted_deduplicated_and_capped() {
        let q = Message::new(0, MessageType::Query, OpCode::Query);
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
