//! Where a receiver lives: `IP`, `IP:PORT`, `[IPv6]:PORT`, `NAME` or `NAME:PORT`. A name is
//! resolved when an alert is sent, never while settings load: first /etc/hosts, then the
//! nameservers of /etc/resolv.conf (hickory, as the checks resolve), under a deadline. The
//! answer is kept for [`FRESH`]; after that the last answer is still used while a background
//! lookup refreshes it, so a slow nameserver never holds up a send that had an address before.

use crate::Error;
use hickory_resolver::proto::op::Query;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Hosts, TokioResolver};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long one answer is used before it is looked up again.
const FRESH: Duration = Duration::from_secs(300);
/// Deadline of one lookup.
const LIMIT: Duration = Duration::from_secs(5);

/// A receiver's host and port, parsed without resolving anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(SocketAddr),
    Name(String, u16),
}

/// Parses `text`; a name must be a valid DNS name (letters, digits, `-`, `.`).
pub fn parse(text: &str, default_port: u16) -> Result<Host, Error> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Host::Ip(SocketAddr::new(ip, default_port)));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Host::Ip(addr));
    }
    let bad = || {
        Error::Config(format!(
            "{text:?} is not IP, IP:PORT, NAME or NAME:PORT (IPv6 with a port in brackets)"
        ))
    };
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port)) => (name, port.parse::<u16>().map_err(|_| bad())?),
        None => (text, default_port),
    };
    let labels_ok = name.trim_end_matches('.').split('.').all(|l| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if name.is_empty() || name.len() > 253 || !labels_ok || port == 0 {
        return Err(bad());
    }
    Ok(Host::Name(name.to_string(), port))
}

/// A receiver's address, resolved on demand and cached.
pub struct Target {
    host: Host,
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    last: Mutex<Option<(SocketAddr, Instant)>>,
    refreshing: AtomicBool,
}

impl Target {
    pub fn new(host: Host) -> Target {
        Target {
            host,
            inner: Arc::default(),
        }
    }

    /// The address to send to now.
    pub async fn addr(&self) -> Result<SocketAddr, Error> {
        let (name, port) = match &self.host {
            Host::Ip(a) => return Ok(*a),
            Host::Name(n, p) => (n.clone(), *p),
        };
        let last = *self.inner.last.lock().unwrap_or_else(|e| e.into_inner());
        match last {
            Some((addr, at)) if at.elapsed() < FRESH => Ok(addr),
            Some((addr, _)) => {
                // Stale: send to the old address and refresh in the background, once at a time.
                if !self.inner.refreshing.swap(true, Ordering::AcqRel) {
                    let inner = Arc::clone(&self.inner);
                    tokio::spawn(async move {
                        match lookup(&name, port).await {
                            Ok(a) => inner.store(a),
                            Err(e) => tracing::warn!("re-resolving {name}: {e}; keeping {addr}"),
                        }
                        inner.refreshing.store(false, Ordering::Release);
                    });
                }
                Ok(addr)
            }
            None => {
                let addr = lookup(&name, port).await?;
                self.inner.store(addr);
                Ok(addr)
            }
        }
    }
}

impl Inner {
    fn store(&self, addr: SocketAddr) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((addr, Instant::now()));
    }
}

/// /etc/hosts, read once per process like the system does for a long-running daemon's start.
fn hosts() -> &'static Hosts {
    static HOSTS: OnceLock<Hosts> = OnceLock::new();
    HOSTS.get_or_init(|| Hosts::from_system().unwrap_or_default())
}

/// The resolver of /etc/resolv.conf, built once.
fn resolver() -> Result<&'static TokioResolver, Error> {
    static RESOLVER: OnceLock<Result<TokioResolver, String>> = OnceLock::new();
    RESOLVER
        .get_or_init(|| {
            let (config, mut opts) =
                hickory_resolver::system_conf::read_system_conf().map_err(|e| e.to_string())?;
            opts.timeout = opts.timeout.min(LIMIT);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                .with_options(opts)
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Config(format!("reading /etc/resolv.conf: {e}")))
}

/// One address of `name` (IPv4 first, as most receivers listen there), within [`LIMIT`].
async fn lookup(name: &str, port: u16) -> Result<SocketAddr, Error> {
    let fqdn = Name::from_utf8(name)
        .map_err(|e| Error::Config(format!("{name:?} is not a host name: {e}")))?;
    for t in [RecordType::A, RecordType::AAAA] {
        let found = hosts().lookup_static_host(&Query::query(fqdn.clone(), t));
        if let Some(ip) = found.and_then(|l| l.answers().iter().find_map(|r| r.data.ip_addr())) {
            return Ok(SocketAddr::new(ip, port));
        }
    }
    let answer = tokio::time::timeout(LIMIT, resolver()?.lookup_ip(name))
        .await
        .map_err(|_| Error::Timeout(LIMIT))?
        .map_err(|e| Error::Rejected(format!("resolving {name}: {e}")))?;
    let ips: Vec<IpAddr> = answer.iter().collect();
    let ip = ips.iter().find(|ip| ip.is_ipv4()).or(ips.first());
    ip.map(|ip| SocketAddr::new(*ip, port))
        .ok_or_else(|| Error::Rejected(format!("{name} has no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_without_resolving() {
        assert_eq!(
            parse("127.0.0.9", 7).expect("ip"),
            Host::Ip("127.0.0.9:7".parse().expect("a"))
        );
        assert_eq!(
            parse("[::1]:8", 7).expect("v6"),
            Host::Ip("[::1]:8".parse().expect("a"))
        );
        assert_eq!(
            parse("alert.example.com", 7).expect("name"),
            Host::Name("alert.example.com".into(), 7)
        );
        assert_eq!(
            parse("mauve:99", 7).expect("name"),
            Host::Name("mauve".into(), 99)
        );
        for bad in [
            "",
            "a b",
            "x:0",
            "x:port",
            "bad_name.example",
            "a..b",
            "::1:99999",
        ] {
            assert!(parse(bad, 7).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn names_come_from_etc_hosts_and_literals_need_no_lookup() {
        // `localhost` is in every /etc/hosts; no nameserver is asked for it.
        let t = Target::new(parse("localhost:4000", 7).expect("name"));
        let a = t.addr().await.expect("resolved");
        assert!(a.ip().is_loopback() && a.port() == 4000, "{a}");
        let t = Target::new(parse("127.0.0.5", 7).expect("ip"));
        assert_eq!(
            t.addr().await.expect("ip"),
            "127.0.0.5:7".parse().expect("a")
        );
    }
}
