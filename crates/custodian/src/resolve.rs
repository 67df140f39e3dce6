//! Turning a job's target into the addresses to test: an IP literal as it is, a name through
//! /etc/hosts and then an async DNS resolver built once per run (or worker), under the
//! attempt's own resolve deadline. No getaddrinfo, so a stalled nameserver costs each check
//! its own deadline and never a thread of the blocking pool.

use custodian_core::{Family, Job, Outcome, TargetKind};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Hosts, TokioResolver};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Most answers one resolver keeps (the cache evicts the least used): enough for every name of
/// a large test file, bounded for a worker that sees names come and go.
const CACHE_ENTRIES: u64 = 4096;
/// Longest a "no such name" or "no address" answer is reused, whatever its SOA says, so a
/// name that appears is seen within half a minute. Timeouts and SERVFAIL are never cached.
const NEGATIVE_MAX_TTL: Duration = Duration::from_secs(30);
/// Longest an answer is reused, whatever its TTL, so a long-running worker follows a move.
const POSITIVE_MAX_TTL: Duration = Duration::from_secs(3600);

/// The host part of a target: the URL host for URL targets, the target itself otherwise.
pub(crate) fn host_of(job: &Job, kind: TargetKind) -> String {
    let raw = match kind.is_url(&job.target) {
        true => url::Url::parse(&job.target)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| job.target.clone()),
        false => job.target.clone(),
    };
    raw.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Resolves target names for one run or one worker; its cache lives as long as it does.
///
/// Targets resolve as the rest of the machine does: /etc/hosts first (the name as written,
/// like glibc's `files` before `dns`), then the nameservers, search list and options of
/// /etc/resolv.conf. The `nameservers` setting is deliberately not used here: it names the
/// servers the DNS checks (`mx`, `dnsbl`) ask, often a dedicated resolver for DNSBL zones,
/// while a monitored host must be reached at the address its own clients get.
pub(crate) struct Resolver {
    hosts: Hosts,
    /// One resolver per family, since hickory fixes the A/AAAA strategy per resolver.
    any: TokioResolver,
    v4: TokioResolver,
    v6: TokioResolver,
}

impl Resolver {
    /// The system's resolver: /etc/hosts and /etc/resolv.conf, read once. Without a readable
    /// resolv.conf or any `nameserver` line, glibc's default applies (127.0.0.1).
    pub(crate) fn system(limit: Duration) -> Resolver {
        let (config, opts) = match hickory_resolver::system_conf::read_system_conf() {
            Ok((c, o)) if !c.name_servers().is_empty() => (c, o),
            Ok((c, o)) => (with_local_nameserver(&c), o),
            Err(e) => {
                tracing::warn!("reading /etc/resolv.conf: {e}; asking 127.0.0.1");
                (
                    with_local_nameserver(&ResolverConfig::default()),
                    ResolverOpts::default(),
                )
            }
        };
        let hosts = Hosts::from_system().unwrap_or_else(|e| {
            tracing::warn!("reading /etc/hosts: {e}; names go to the nameservers only");
            Hosts::default()
        });
        Resolver::new(config, opts, hosts, limit)
    }

    /// A resolver asking `config`'s servers, with `hosts` consulted first; hickory's own
    /// per-query timeout is capped at `limit` so it never outlives the caller's deadline.
    pub(crate) fn new(
        config: ResolverConfig,
        opts: ResolverOpts,
        hosts: Hosts,
        limit: Duration,
    ) -> Resolver {
        let build = |strategy| {
            let mut o = opts.clone();
            o.ip_strategy = strategy;
            o.timeout = o.timeout.min(limit);
            o.cache_size = CACHE_ENTRIES;
            o.use_hosts_file = ResolveHosts::Never; // consulted here, before any search-list query
            o.negative_min_ttl = None;
            o.negative_max_ttl = Some(NEGATIVE_MAX_TTL);
            o.positive_max_ttl = Some(POSITIVE_MAX_TTL);
            TokioResolver::builder_with_config(config.clone(), TokioRuntimeProvider::default())
                .with_options(o)
                .build()
                // Only a TLS setup can fail to build, and these resolvers have no TLS feature.
                .expect("a plain UDP/TCP resolver always builds")
        };
        Resolver {
            hosts,
            any: build(LookupIpStrategy::Ipv4AndIpv6),
            v4: build(LookupIpStrategy::Ipv4Only),
            v6: build(LookupIpStrategy::Ipv6Only),
        }
    }

    /// Every address of `host` in the job's family, within `limit`. An IP literal is used as
    /// is, without any query. A name that does not exist or has no such address is the
    /// target's fault (`Down`); our resolver failing or not answering in time is `Unknown`.
    pub(crate) async fn addresses(
        &self,
        host: &str,
        family: Family,
        limit: Duration,
    ) -> Result<Vec<IpAddr>, Outcome> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return match wanted(ip, family) {
                true => Ok(vec![ip]),
                false => Err(Outcome::unknown(format!(
                    "{ip} is not an {} address",
                    family_name(family)
                ))),
            };
        }
        // Boxed, and only for a name: the lookup's state is most of a check's size, and held
        // inline it would sit in every check's task for its whole life (issue 13).
        Box::pin(self.lookup(host, family, limit)).await
    }

    /// [`Resolver::addresses`] of a name: the hosts file, then the nameservers.
    async fn lookup(
        &self,
        host: &str,
        family: Family,
        limit: Duration,
    ) -> Result<Vec<IpAddr>, Outcome> {
        let Ok(name) = Name::from_utf8(host.trim_end_matches('.')) else {
            return Err(Outcome::down(format!(
                "cannot resolve {host}: not a host name"
            )));
        };
        if let Some(ips) = self.in_hosts(&name, family) {
            return Ok(ips);
        }
        let resolver = match family {
            Family::Any => &self.any,
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        };
        let found = tokio::time::timeout(limit, resolver.lookup_ip(host))
            .await
            .map_err(|_| {
                Outcome::unknown(format!(
                    "resolving {host} timed out after {:.1}s",
                    limit.as_secs_f64()
                ))
            })?
            .map_err(|e| failure(host, family, &e))?;
        let mut ips: Vec<IpAddr> = Vec::new();
        for ip in found.iter().filter(|ip| wanted(*ip, family)) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        if ips.is_empty() {
            return Err(no_address(host, family));
        }
        Ok(ips)
    }

    /// The hosts-file addresses of `name` in `family`, if it lists any.
    fn in_hosts(&self, name: &Name, family: Family) -> Option<Vec<IpAddr>> {
        let types: &[RecordType] = match family {
            Family::Any => &[RecordType::A, RecordType::AAAA],
            Family::V4 => &[RecordType::A],
            Family::V6 => &[RecordType::AAAA],
        };
        let ips: Vec<IpAddr> = types
            .iter()
            .filter_map(|t| {
                self.hosts
                    .lookup_static_host(&Query::query(name.clone(), *t))
            })
            .flat_map(|lookup| {
                lookup
                    .answers()
                    .iter()
                    .filter_map(|r| r.data.ip_addr())
                    .collect::<Vec<_>>()
            })
            .collect();
        (!ips.is_empty()).then_some(ips)
    }
}

/// `config` asking 127.0.0.1 on port 53, as glibc does when resolv.conf names no server.
fn with_local_nameserver(config: &ResolverConfig) -> ResolverConfig {
    let local = NameServerConfig::udp_and_tcp(IpAddr::V4(Ipv4Addr::LOCALHOST));
    ResolverConfig::from_parts(
        config.domain().cloned(),
        config.search().to_vec(),
        vec![local],
    )
}

/// What a resolver error says about the target: only "no such name" and "no address of that
/// family" are answers about it; anything else (timeout, SERVFAIL, refused, unreachable
/// server) means our resolver could not tell.
fn failure(host: &str, family: Family, e: &NetError) -> Outcome {
    let answered = |code: ResponseCode| match code {
        ResponseCode::NXDomain => Outcome::down(format!("cannot resolve {host}: no such name")),
        ResponseCode::NoError => no_address(host, family),
        code => Outcome::unknown(format!(
            "cannot resolve {host}: our resolver answered {}",
            code.to_str()
        )),
    };
    match e {
        NetError::Dns(DnsError::NoRecordsFound(no)) => answered(no.response_code),
        // SERVFAIL, REFUSED and the like: the server's own failure, not the target's.
        NetError::Dns(DnsError::ResponseCode(code)) => answered(*code),
        NetError::Timeout => Outcome::unknown(format!(
            "cannot resolve {host}: our resolver did not answer"
        )),
        _ => Outcome::unknown(format!("cannot resolve {host}: our resolver failed: {e}")),
    }
}

fn no_address(host: &str, family: Family) -> Outcome {
    Outcome::down(format!("{host} has no {} address", family_name(family)))
}

fn wanted(ip: IpAddr, family: Family) -> bool {
    match family {
        Family::Any => true,
        Family::V4 => ip.is_ipv4(),
        Family::V6 => ip.is_ipv6(),
    }
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Any => "IP",
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

#[cfg(test)]
pub(crate) mod fake_dns {
    //! A DNS server on a loopback port for tests: answers A records from a table, NXDOMAIN
    //! for other names, and can stall (read queries, answer none) until told to recover.

    use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
    use hickory_resolver::proto::rr::{RData, Record, RecordType};
    use std::net::{IpAddr, SocketAddr};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::net::UdpSocket;

    pub(crate) struct FakeDns {
        pub(crate) addr: SocketAddr,
        stalled: Arc<AtomicBool>,
        queries: Arc<AtomicUsize>,
    }

    impl FakeDns {
        /// Serves `answers` (name without trailing dot → IPv4 address) on `ip`, a free port.
        /// The name `servfail.test` gets SERVFAIL.
        pub(crate) async fn start(ip: &str, answers: &[(&str, IpAddr)]) -> FakeDns {
            let socket = UdpSocket::bind((ip, 0)).await.expect("bind fake dns");
            let addr = socket.local_addr().expect("addr");
            let stalled = Arc::new(AtomicBool::new(false));
            let queries = Arc::new(AtomicUsize::new(0));
            let table: Vec<(String, IpAddr)> = answers
                .iter()
                .map(|(n, ip)| (format!("{n}."), *ip))
                .collect();
            let (st, qs) = (Arc::clone(&stalled), Arc::clone(&queries));
            tokio::spawn(async move {
                let mut buf = [0u8; 1500];
                while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                    qs.fetch_add(1, Ordering::SeqCst);
                    if st.load(Ordering::SeqCst) {
                        continue;
                    }
                    if let Some(reply) = answer(&buf[..n], &table) {
                        let _ = socket.send_to(&reply, from).await;
                    }
                }
            });
            FakeDns {
                addr,
                stalled,
                queries,
            }
        }

        pub(crate) fn stall(&self, on: bool) {
            self.stalled.store(on, Ordering::SeqCst);
        }

        pub(crate) fn queries(&self) -> usize {
            self.queries.load(Ordering::SeqCst)
        }
    }

    fn answer(query: &[u8], table: &[(String, IpAddr)]) -> Option<Vec<u8>> {
        let query = Message::from_vec(query).ok()?;
        let q = query.queries.first()?.clone();
        let mut reply = Message::response(query.id, OpCode::Query);
        reply.metadata.recursion_desired = true;
        reply.metadata.recursion_available = true;
        reply.add_query(q.clone());
        let name = q.name().to_ascii().to_lowercase();
        let known = table.iter().filter(|(n, _)| *n == name);
        let mut exists = false;
        for (_, ip) in known {
            exists = true;
            if let (IpAddr::V4(v4), RecordType::A) = (ip, q.query_type()) {
                let rdata = RData::A((*v4).into());
                reply.add_answer(Record::from_rdata(q.name().clone(), 300, rdata));
            }
        }
        let code = match name.as_str() {
            "servfail.test." => ResponseCode::ServFail,
            _ if exists => ResponseCode::NoError,
            _ => ResponseCode::NXDomain,
        };
        reply.metadata.response_code = code;
        reply.to_vec().ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::fake_dns::FakeDns;
    use super::*;
    use hickory_resolver::config::ConnectionConfig;
    use std::net::SocketAddr;
    use tokio::time::Instant;

    const LIMIT: Duration = Duration::from_secs(2);
    /// The deadline of lookups against a stalled server: short, so the test is too.
    const SHORT: Duration = Duration::from_millis(300);

    /// A resolver asking only `server` over UDP (never the real resolv.conf) with `hosts` as
    /// its hosts file.
    pub(crate) fn test_resolver(server: SocketAddr, hosts: &str, limit: Duration) -> Resolver {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp]);
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let mut table = Hosts::default();
        table.read_hosts_conf(hosts.as_bytes()).expect("hosts text");
        Resolver::new(config, ResolverOpts::default(), table, limit)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[tokio::test]
    async fn literals_are_used_without_lookup() {
        let dns = FakeDns::start("127.0.0.1", &[]).await;
        let r = test_resolver(dns.addr, "", LIMIT);
        assert_eq!(
            r.addresses("127.0.0.2", Family::Any, LIMIT).await,
            Ok(vec![ip("127.0.0.2")])
        );
        assert_eq!(
            r.addresses("::1", Family::V6, LIMIT).await,
            Ok(vec![ip("::1")])
        );
        let err = r.addresses("127.0.0.1", Family::V6, LIMIT).await;
        assert_eq!(
            err,
            Err(Outcome::unknown("127.0.0.1 is not an IPv6 address"))
        );
        assert_eq!(dns.queries(), 0, "an IP literal was sent to the nameserver");
    }

    #[tokio::test]
    async fn hosts_file_comes_first_and_is_never_queried() {
        // The server stalls: a name found in the hosts text must not wait for it.
        let dns = FakeDns::start("127.0.0.1", &[]).await;
        dns.stall(true);
        let r = test_resolver(dns.addr, "127.0.0.5 web1\n::5 web1\n", LIMIT);
        let t = Instant::now();
        assert_eq!(
            r.addresses("web1", Family::V4, LIMIT).await,
            Ok(vec![ip("127.0.0.5")])
        );
        assert_eq!(
            r.addresses("WEB1", Family::V6, LIMIT).await,
            Ok(vec![ip("::5")])
        );
        assert_eq!(
            r.addresses("web1", Family::Any, LIMIT).await,
            Ok(vec![ip("127.0.0.5"), ip("::5")])
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(dns.queries(), 0);
    }

    #[tokio::test]
    async fn system_hosts_file_is_honoured() {
        // `localhost` comes from /etc/hosts, so no query leaves the machine.
        let ips = Resolver::system(LIMIT)
            .addresses("localhost", Family::V4, LIMIT)
            .await
            .expect("localhost");
        assert!(ips.contains(&ip("127.0.0.1")), "{ips:?}");
    }

    #[tokio::test]
    async fn answers_are_judged_by_what_they_say_about_the_target() {
        let dns = FakeDns::start("127.0.0.1", &[("up.test", ip("127.0.0.7"))]).await;
        let r = test_resolver(dns.addr, "", LIMIT);
        assert_eq!(
            r.addresses("up.test", Family::V4, LIMIT).await,
            Ok(vec![ip("127.0.0.7")])
        );
        assert_eq!(
            r.addresses("up.test.", Family::Any, LIMIT).await,
            Ok(vec![ip("127.0.0.7")])
        );
        assert_eq!(
            r.addresses("nope.test", Family::V4, LIMIT).await,
            Err(Outcome::down("cannot resolve nope.test: no such name"))
        );
        assert_eq!(
            r.addresses("up.test", Family::V6, LIMIT).await,
            Err(Outcome::down("up.test has no IPv6 address"))
        );
        assert_eq!(
            r.addresses("servfail.test", Family::V4, LIMIT).await,
            Err(Outcome::unknown(
                "cannot resolve servfail.test: our resolver answered Server Failure"
            ))
        );
        assert_eq!(
            r.addresses("bad name", Family::V4, LIMIT).await,
            Err(Outcome::down("cannot resolve bad name: not a host name"))
        );
    }

    #[tokio::test]
    async fn answers_are_cached_for_the_run() {
        let dns = FakeDns::start("127.0.0.1", &[("up.test", ip("127.0.0.7"))]).await;
        let r = test_resolver(dns.addr, "", LIMIT);
        for _ in 0..3 {
            assert!(r.addresses("up.test", Family::V4, LIMIT).await.is_ok());
        }
        assert_eq!(dns.queries(), 1, "the answer was asked for again");
    }

    #[tokio::test]
    async fn a_stall_longer_than_the_deadline_does_not_poison_later_lookups() {
        let dns = FakeDns::start("127.0.0.1", &[("up.test", ip("127.0.0.7"))]).await;
        let r = test_resolver(dns.addr, "", SHORT);
        dns.stall(true);
        // Several deadlines pass while the server stalls; each lookup ends at its own.
        for _ in 0..3 {
            let t = Instant::now();
            let got = r.addresses("up.test", Family::V4, SHORT).await;
            assert!(
                matches!(&got, Err(Outcome::Unknown { error }) if error.contains("up.test")),
                "{got:?}"
            );
            assert!(
                t.elapsed() < SHORT + Duration::from_millis(500),
                "{:?}",
                t.elapsed()
            );
        }
        dns.stall(false);
        let t = Instant::now();
        assert_eq!(
            r.addresses("up.test", Family::V4, SHORT).await,
            Ok(vec![ip("127.0.0.7")])
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[test]
    fn url_hosts_are_extracted() {
        let job = Job::new("http", "http://u:p@[::1]:8080/x", Some(8080));
        assert_eq!(host_of(&job, TargetKind::Url(&["http"])), "::1");
        let job = Job::new("ssh", "web1", Some(22));
        assert_eq!(host_of(&job, TargetKind::Host), "web1");
        let either = TargetKind::HostOrUrl(&["ftp"]);
        let job = Job::new("ftp", "ftp://u:p@127.0.0.9:2121/f", Some(2121));
        assert_eq!(host_of(&job, either), "127.0.0.9");
        let job = Job::new("ftp", "127.0.0.9", Some(21));
        assert_eq!(host_of(&job, either), "127.0.0.9");
    }
}
