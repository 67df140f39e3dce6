//! `redis`: the original's layout on a Redis server, one transaction per notice:
//! `known_tests` (set of test lines), `<sha1 of line>.current` (`FAIL` while firing, else
//! `OK`), `<sha1>.count` (notices recorded), `<sha1>.history` (newest-first JSON list of
//! `{"when", "result", "reason", "event"}`, capped at `history` entries). Keys may carry a
//! `prefix`; `db` selects the database. Settings: `redis_target = IP[:PORT]`, or
//! `[alerters.redis]` with `address`, `db`, `prefix`, `history` and `password`.

use crate::resp::{self, Reply};
use crate::{socket_addr, Alerter, Common, Error};
use custodian_core::state::{AlertEvent, EventKind};
use futures::future::BoxFuture;
use serde::Deserialize;
use sha1::{Digest, Sha1};
use std::net::SocketAddr;
use tokio::io::{AsyncWriteExt, BufStream};

pub const DEFAULT_PORT: u16 = 6379;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `IP` or `IP:PORT` of the server.
    pub address: String,
    #[serde(default)]
    pub db: u32,
    #[serde(default)]
    pub prefix: String,
    /// Most history entries kept per test (default 100).
    #[serde(default = "default_history")]
    pub history: u32,
    /// `AUTH` password, if the server wants one.
    pub password: Option<String>,
}

fn default_history() -> u32 {
    100
}

impl RedisConfig {
    pub fn from_target(target: &str) -> Result<Self, Error> {
        Ok(RedisConfig {
            address: target.to_string(),
            db: 0,
            prefix: String::new(),
            history: default_history(),
            password: None,
        })
    }

    pub fn validate(&self) -> Result<(), Error> {
        socket_addr(&self.address, DEFAULT_PORT)?;
        if self.history == 0 {
            return Err(Error::Config("history must be at least 1".into()));
        }
        Ok(())
    }
}

pub struct RedisAlerter {
    config: RedisConfig,
    addr: SocketAddr,
}

impl RedisAlerter {
    pub fn new(config: RedisConfig, _: &Common) -> Result<Self, Error> {
        let addr = socket_addr(&config.address, DEFAULT_PORT)?;
        Ok(RedisAlerter { config, addr })
    }
}

/// The key stem of a test: the SHA-1 of its (masked) line, as the original used.
pub fn stem(line: &str) -> String {
    hex::encode(Sha1::digest(line.as_bytes()))
}

/// The commands recording `event`, inside MULTI/EXEC (connection setup excluded).
pub fn render(event: &AlertEvent, config: &RedisConfig) -> Vec<Vec<String>> {
    let r = &event.result;
    let p = &config.prefix;
    let key = format!("{p}{}", stem(&r.line));
    let current = if event.kind.is_firing() { "FAIL" } else { "OK" };
    let entry = serde_json::json!({
        "when": event.at,
        "result": current,
        "reason": r.error,
        "event": event.kind,
    });
    let w = |words: &[&str]| words.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cap = (config.history - 1).to_string();
    vec![
        w(&["MULTI"]),
        w(&["SADD", &format!("{p}known_tests"), &r.line]),
        w(&["SET", &format!("{key}.current"), current]),
        w(&["INCR", &format!("{key}.count")]),
        w(&["LPUSH", &format!("{key}.history"), &entry.to_string()]),
        w(&["LTRIM", &format!("{key}.history"), "0", &cap]),
        w(&["EXEC"]),
    ]
}

/// AUTH and SELECT as needed, before the transaction.
fn setup(config: &RedisConfig) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if let Some(pw) = &config.password {
        out.push(vec!["AUTH".to_string(), pw.clone()]);
    }
    if config.db != 0 {
        out.push(vec!["SELECT".to_string(), config.db.to_string()]);
    }
    out
}

impl Alerter for RedisAlerter {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// This channel holds the check's alert state: "cannot check" says nothing about the
    /// service, so it must neither raise nor clear here.
    fn wants(&self, kind: EventKind) -> bool {
        !matches!(kind, EventKind::Result | EventKind::CannotCheck)
    }

    fn deliver<'a>(&'a self, event: &'a AlertEvent) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let cmds: Vec<_> = setup(&self.config)
                .into_iter()
                .chain(render(event, &self.config))
                .collect();
            let mut io = BufStream::new(tokio::net::TcpStream::connect(self.addr).await?);
            for c in &cmds {
                io.write_all(&resp::encode(c)).await?;
            }
            io.flush().await?;
            let mut last = Reply::Simple(String::new());
            for _ in &cmds {
                last = resp::read(&mut io).await?;
            }
            match last {
                Reply::Array(_) => Ok(()),
                other => Err(Error::Rejected(format!("EXEC answered {other:?}"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{event, SECRET};
    use custodian_core::state::EventKind;

    #[test]
    fn commands_follow_the_original_layout() {
        let mut cfg = RedisConfig::from_target("127.0.0.1").expect("cfg");
        cfg.prefix = "t:".into();
        cfg.history = 10;
        let e = event(EventKind::Raise, 'F');
        let cmds = render(&e, &cfg);
        let key = format!("t:{}", stem(&e.result.line));
        assert_eq!(cmds[1], ["SADD", "t:known_tests", e.result.line.as_str()]);
        assert_eq!(cmds[2], ["SET", format!("{key}.current").as_str(), "FAIL"]);
        assert_eq!(cmds[5], ["LTRIM", format!("{key}.history").as_str(), "0", "9"]);
        assert!(!format!("{cmds:?}").contains(SECRET));
        let clear = render(&event(EventKind::Clear, 'P'), &cfg);
        assert_eq!(clear[2][2], "OK");
        cfg.db = 3;
        assert_eq!(setup(&cfg), [["SELECT", "3"]]);
    }
}
