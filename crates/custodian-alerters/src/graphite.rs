//! `graphite`: each finished check's duration over Carbon's plaintext protocol (TCP, port
//! 2003): `custodian.<type>.<target>.test_duration_ms <ms> <unix time>`, with `.`, `/`, `\`
//! (and blanks) in the target written as `_`. Settings: `graphite_target = IP[:PORT]`, or
//! `[alerters.graphite]` with `address` and `prefix` (default `custodian`).
//! It takes `Result` events only: durations, not notices.

use crate::{socket_addr, Alerter, Common, Error};
use custodian_core::state::{AlertEvent, EventKind};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;

/// Carbon's plaintext port.
pub const DEFAULT_PORT: u16 = 2003;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphiteConfig {
    /// `IP` or `IP:PORT` of the Carbon receiver.
    pub address: String,
    /// First component of every metric name.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "custodian".into()
}

impl GraphiteConfig {
    pub fn from_target(target: &str) -> Result<Self, Error> {
        Ok(GraphiteConfig {
            address: target.to_string(),
            prefix: default_prefix(),
        })
    }

    pub fn validate(&self) -> Result<(), Error> {
        socket_addr(&self.address, DEFAULT_PORT)?;
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err(Error::Config("prefix must be one word".into()));
        }
        Ok(())
    }
}

pub struct GraphiteAlerter {
    addr: SocketAddr,
    prefix: String,
}

impl GraphiteAlerter {
    pub fn new(config: GraphiteConfig, _: &Common) -> Result<Self, Error> {
        Ok(GraphiteAlerter {
            addr: socket_addr(&config.address, DEFAULT_PORT)?,
            prefix: config.prefix,
        })
    }
}

/// A metric-name component: separators and blanks become `_`.
pub fn component(text: &str) -> String {
    text.chars()
        .map(|c| if matches!(c, '.' | '/' | '\\') || c.is_whitespace() { '_' } else { c })
        .collect()
}

/// The plaintext line for `event`, newline included.
pub fn render(event: &AlertEvent, prefix: &str) -> String {
    let r = &event.result;
    format!(
        "{prefix}.{}.{}.test_duration_ms {} {}\n",
        component(&r.probe),
        component(&r.target),
        r.duration_ms,
        event.at
    )
}

impl Alerter for GraphiteAlerter {
    fn name(&self) -> &'static str {
        "graphite"
    }

    fn wants(&self, kind: EventKind) -> bool {
        kind == EventKind::Result
    }

    fn deliver<'a>(&'a self, event: &'a AlertEvent) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut s = tokio::net::TcpStream::connect(self.addr).await?;
            s.write_all(render(event, &self.prefix).as_bytes()).await?;
            s.shutdown().await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{event, SECRET};
    use tokio::io::AsyncReadExt;

    #[test]
    fn lines_name_type_and_target() {
        let line = render(&event(EventKind::Result, 'P'), "custodian");
        assert_eq!(
            line,
            "custodian.http.http:__bob:********@127_0_0_1:8080_.test_duration_ms 42 1700000300\n"
        );
        assert!(!line.contains(SECRET));
        assert_eq!(component(r"a.b/c\d e"), "a_b_c_d_e");
        assert!(GraphiteConfig::from_target("graphite.example").expect("cfg").validate().is_err());
    }

    #[tokio::test]
    async fn deliver_sends_the_line_over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let a = GraphiteAlerter::new(GraphiteConfig::from_target(&addr).expect("cfg"), &Common { source: "s".into() }).expect("alerter");
        assert!(!a.wants(EventKind::Raise) && a.wants(EventKind::Result));
        let recv = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut got = String::new();
            s.read_to_string(&mut got).await.expect("read");
            got
        });
        a.deliver(&event(EventKind::Result, 'P')).await.expect("deliver");
        let got = recv.await.expect("join");
        assert!(got.starts_with("custodian.http.") && got.ends_with(" 42 1700000300\n"), "{got}");
    }
}
