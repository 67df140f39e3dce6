//! `redis`: the original's layout on a Redis server, one transaction per notice:
//! `known_tests` (set of test lines), `<sha1 of line>.current` (`FAIL` while firing, else
//! `OK`), `<sha1>.count` (notices recorded), `<sha1>.history` (newest-first JSON list of
//! `{"time", "result", "reason", "event"}`, capped at `history` entries). Keys may carry a
//! `prefix`; `db` selects the database. Settings: `redis_target = IP[:PORT]` or a URL
//! (`redis://[user:pass@]host[:port][/db]`, `rediss://...`, `unix:///path`), or
//! `[alerters.redis]` with `address`, `db`, `prefix`, `history` and `password`.
//!
//! [`RedisServer`] is also how the queue and the shared state store reach Redis: one place
//! that turns a URL into a `redis` crate client (AUTH, SELECT, TLS roots, timeouts).

use crate::{socket_addr, Alerter, Common, Error};
use custodian_core::state::{AlertEvent, EventKind};
use futures::future::BoxFuture;
use serde::Deserialize;
use sha1::{Digest, Sha1};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 6379;

/// Longest a connection (TCP, TLS, AUTH, SELECT) may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(3);

/// Longest one command may wait for its reply before the connection counts as dead.
const RESPONSE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `IP`, `IP:PORT` or a `redis://`, `rediss://` or `unix://` URL.
    pub address: String,
    /// Database, unless the URL names one.
    #[serde(default)]
    pub db: u32,
    #[serde(default)]
    pub prefix: String,
    /// Most history entries kept per test (default 100).
    #[serde(default = "default_history")]
    pub history: u32,
    /// `AUTH` password, if the server wants one and the URL carries none.
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
        self.server()?;
        if self.history == 0 {
            return Err(Error::Config("history must be at least 1".into()));
        }
        Ok(())
    }

    /// The server to write to: a URL as it says, with `db` and `password` filling what it
    /// leaves out; a bare `IP[:PORT]` (names refused) as plain TCP.
    pub fn server(&self) -> Result<RedisServer, Error> {
        let mut server = if self.address.contains("://") {
            RedisServer::parse(&self.address)?
        } else {
            let addr = socket_addr(&self.address, DEFAULT_PORT)?;
            RedisServer::tcp(&addr.ip().to_string(), addr.port())
        };
        if server.db == 0 {
            server.db = self.db;
        }
        if server.password.is_none() {
            server.password.clone_from(&self.password);
        }
        Ok(server)
    }
}

/// Where a Redis server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// A Redis server and how to log in to it, from `redis://[user:pass@]host[:port][/db]`,
/// `rediss://...` (TLS, verified against the system's roots plus `?ca_file=PEM`) or
/// `unix:///path?db=N&user=U&pass=P` (also `redis+unix://`). Debug and Display never show
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisServer {
    pub place: Place,
    pub tls: bool,
    /// Extra PEM bundle of CA certificates trusted for TLS, on top of the system's roots.
    pub ca_file: Option<PathBuf>,
    pub db: u32,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl RedisServer {
    /// Plain TCP, no credentials, database 0.
    pub fn tcp(host: &str, port: u16) -> Self {
        RedisServer {
            place: Place::Tcp {
                host: host.to_string(),
                port,
            },
            tls: false,
            ca_file: None,
            db: 0,
            user: None,
            password: None,
        }
    }

    /// Parses a Redis URL; unknown query parameters (such as the queue's `prefix`) are left
    /// to the caller.
    pub fn parse(text: &str) -> Result<RedisServer, Error> {
        let shown = custodian_core::mask_url(text);
        let bad = |why: &str| Error::Config(format!("bad Redis URL {shown:?}: {why}"));
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let query = |key: &str| {
            url.query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let number = |text: &str| {
            text.parse::<u32>()
                .map_err(|_| bad("the database must be a number"))
        };
        let mut server = match url.scheme() {
            "redis" | "rediss" => {
                let host = match url.host() {
                    Some(url::Host::Ipv6(ip)) => ip.to_string(),
                    Some(host) => host.to_string(),
                    None => return Err(bad("no host")),
                };
                let path = url.path().trim_matches('/');
                let mut s = RedisServer::tcp(&host, url.port().unwrap_or(DEFAULT_PORT));
                s.tls = url.scheme() == "rediss";
                s.db = if path.is_empty() { 0 } else { number(path)? };
                s.user =
                    Some(percent_decode(url.username()).map_err(&bad)?).filter(|u| !u.is_empty());
                s.password = url
                    .password()
                    .map(percent_decode)
                    .transpose()
                    .map_err(&bad)?;
                s
            }
            "unix" | "redis+unix" => {
                let path = url.to_file_path().map_err(|()| bad("no socket path"))?;
                RedisServer {
                    place: Place::Unix(path),
                    tls: false,
                    ca_file: None,
                    db: query("db").as_deref().map(number).transpose()?.unwrap_or(0),
                    user: query("user"),
                    password: query("pass"),
                }
            }
            other => {
                return Err(bad(&format!(
                    "unknown scheme {other:?}: use redis://, rediss:// or unix://"
                )))
            }
        };
        server.ca_file = query("ca_file").map(PathBuf::from);
        if server.ca_file.is_some() && !server.tls {
            return Err(bad("ca_file is for rediss:// only"));
        }
        Ok(server)
    }

    /// A client for this server (nothing is connected yet).
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        use redis::IntoConnectionInfo;
        let info = match &self.place {
            Place::Tcp { host, port } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                let scheme = if self.tls { "rediss" } else { "redis" };
                format!("{scheme}://{host}:{port}").into_connection_info()?
            }
            Place::Unix(path) => {
                redis::ConnectionAddr::Unix(path.clone()).into_connection_info()?
            }
        };
        let mut login = redis::RedisConnectionInfo::default().set_db(i64::from(self.db));
        if let Some(user) = &self.user {
            login = login.set_username(user);
        }
        if let Some(password) = &self.password {
            login = login.set_password(password);
        }
        let info = info.set_redis_settings(login);
        match &self.ca_file {
            Some(path) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(roots_with(path)?),
                },
            ),
            None => redis::Client::open(info),
        }
    }

    /// A new connection, logged in and on the database, with bounded connect and reply times.
    pub async fn connect(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_LIMIT))
            .set_response_timeout(Some(RESPONSE_LIMIT));
        self.client()?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// The system's roots and the PEM bundle at `path`, as one PEM bundle: the crate trusts only
/// the roots it is given once any are given.
fn roots_with(path: &std::path::Path) -> redis::RedisResult<Vec<u8>> {
    use base64::Engine as _;
    let extra = std::fs::read(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("ca_file {}: {e}", path.display())))?;
    let mut pem = Vec::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem.extend_from_slice(&extra);
    Ok(pem)
}

/// Undoes the URL's percent-encoding of a user name or password.
fn percent_decode(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad %-escape in the credentials")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the credentials are not UTF-8")
}

impl std::fmt::Display for RedisServer {
    /// The URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Place::Tcp { host, port } => {
                let scheme = if self.tls { "rediss" } else { "redis" };
                let user = self.user.as_deref().unwrap_or_default();
                let login = match (&self.user, &self.password) {
                    (_, Some(_)) => format!("{user}:***@"),
                    (Some(_), None) => format!("{user}@"),
                    (None, None) => String::new(),
                };
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                write!(f, "{scheme}://{login}{host}:{port}/{}", self.db)
            }
            Place::Unix(path) => write!(f, "unix://{}?db={}", path.display(), self.db),
        }
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisServer({self})")
    }
}

/// A Redis error as the server worded it (`WRONGPASS invalid username-password pair`), or
/// the crate's description when the server said nothing.
pub fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

pub struct RedisAlerter {
    config: RedisConfig,
    server: RedisServer,
}

impl RedisAlerter {
    pub fn new(config: RedisConfig, _: &Common) -> Result<Self, Error> {
        let server = config.server()?;
        Ok(RedisAlerter { config, server })
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
    // `time`, as the original wrote it: tools reading its layout look for that key.
    let entry = serde_json::json!({
        "time": event.at,
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

/// The rendered transaction as a `redis` pipeline (the crate adds MULTI and EXEC).
fn pipeline(commands: &[Vec<String>]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for words in commands {
        if let [name, args @ ..] = words.as_slice() {
            if name != "MULTI" && name != "EXEC" {
                pipe.cmd(name).arg(args).ignore();
            }
        }
    }
    pipe
}

/// A delivery failure, named by the server (never its password).
fn failure(server: &RedisServer, e: &redis::RedisError) -> Error {
    let text = format!("{server}: {}", error_text(e));
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        Error::Io(std::io::Error::other(text))
    } else {
        Error::Rejected(text)
    }
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
            let mut conn = self
                .server
                .connect()
                .await
                .map_err(|e| failure(&self.server, &e))?;
            let pipe = pipeline(&render(event, &self.config));
            // `None` would mean EXEC was aborted; we WATCH nothing, so that is a refusal.
            let done: Option<()> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| failure(&self.server, &e))?;
            done.ok_or_else(|| Error::Rejected(format!("{}: EXEC aborted", self.server)))
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
        assert_eq!(
            cmds[5],
            ["LTRIM", format!("{key}.history").as_str(), "0", "9"]
        );
        assert!(!format!("{cmds:?}").contains(SECRET));
        let clear = render(&event(EventKind::Clear, 'P'), &cfg);
        assert_eq!(clear[2][2], "OK");
        cfg.db = 3;
        assert_eq!(cfg.server().expect("server").db, 3);
    }

    /// The original's history entries carry `time`, not `when`.
    #[test]
    fn history_entries_say_time() {
        let cfg = RedisConfig::from_target("127.0.0.1").expect("cfg");
        let e = event(EventKind::Raise, 'F');
        let cmds = render(&e, &cfg);
        let entry: serde_json::Value = serde_json::from_str(&cmds[4][2]).expect("json");
        assert_eq!(entry["time"], serde_json::json!(e.at));
        assert!(entry.get("when").is_none(), "{entry}");
        assert_eq!(entry["result"], "FAIL");
    }

    #[test]
    fn urls_name_place_tls_database_and_credentials() {
        let s = RedisServer::parse("rediss://ops:p%40ss@10.0.0.1:6380/2?ca_file=/ca.pem")
            .expect("parse");
        assert_eq!(
            s.place,
            Place::Tcp {
                host: "10.0.0.1".into(),
                port: 6380
            }
        );
        assert!(s.tls);
        assert_eq!((s.db, s.user.as_deref()), (2, Some("ops")));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert_eq!(s.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(s.to_string(), "rediss://ops:***@10.0.0.1:6380/2");
        assert!(!format!("{s:?}").contains("p@ss"));
        let u = RedisServer::parse("unix:///run/redis.sock?db=4&pass=pw").expect("unix");
        assert_eq!(u.place, Place::Unix("/run/redis.sock".into()));
        assert_eq!((u.db, u.password.as_deref()), (4, Some("pw")));
        assert!(!u.to_string().contains("pw"));
        let v6 = RedisServer::parse("redis://[::1]").expect("v6");
        assert_eq!(v6.to_string(), "redis://[::1]:6379/0");
        assert!(RedisServer::parse("redis+unix:///x.sock").is_ok());
        assert!(RedisServer::parse("redis://10.0.0.1/x").is_err());
        assert!(RedisServer::parse("redis://10.0.0.1/?ca_file=/x").is_err());
        let err = RedisServer::parse("http://:sekrit@10.0.0.1/").expect_err("scheme");
        assert!(!err.to_string().contains("sekrit"), "{err}");
    }

    #[test]
    fn a_target_may_be_an_address_or_a_url() {
        let mut cfg = RedisConfig::from_target("127.0.0.1:7000").expect("cfg");
        cfg.password = Some("pw".into());
        let s = cfg.server().expect("server");
        assert_eq!(s.to_string(), "redis://:***@127.0.0.1:7000/0");
        let cfg = RedisConfig::from_target("unix:///tmp/r.sock").expect("cfg");
        assert!(cfg.validate().is_ok());
        assert!(RedisConfig::from_target("redis.example.com")
            .expect("cfg")
            .validate()
            .is_err());
    }

    /// Delivers one raise through `address` and reads the history entry back.
    async fn deliver_and_read(address: &str) -> Result<serde_json::Value, Error> {
        let mut cfg = RedisConfig::from_target(address)?;
        cfg.prefix = format!("alerter{}:", std::process::id());
        let common = Common {
            source: "test".into(),
        };
        let alerter = RedisAlerter::new(cfg.clone(), &common)?;
        let e = event(EventKind::Raise, 'F');
        alerter.deliver(&e).await?;
        let mut conn = cfg.server()?.connect().await.expect("connect");
        let key = format!("{}{}.history", cfg.prefix, stem(&e.result.line));
        let newest: String = redis::cmd("LINDEX")
            .arg(&key)
            .arg(0)
            .query_async(&mut conn)
            .await
            .expect("LINDEX");
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("DEL");
        Ok(serde_json::from_str(&newest).expect("json"))
    }

    /// TLS verified against the test CA (`ca_file`), logged in as an ACL user; a unix socket
    /// on database 1; a wrong password is a refusal that does not repeat the password.
    #[tokio::test]
    async fn delivers_over_tls_with_an_acl_user_and_over_a_unix_socket() {
        let peers = custodian_testpeers::peers();
        let (user, pw) = (peers.get("redis_acl_user"), peers.get("redis_acl_password"));
        let tls = format!(
            "rediss://{user}:{pw}@{}/0?ca_file={}",
            peers.get("redis_tls"),
            peers.get("ca")
        );
        let entry = deliver_and_read(&tls).await.expect("tls");
        assert_eq!(entry["result"], "FAIL");
        assert!(entry["time"].is_u64(), "{entry}");
        let sock = format!("unix://{}?db=1", peers.get("redis_socket"));
        let entry = deliver_and_read(&sock).await.expect("unix");
        assert_eq!(entry["event"], "raise");
        let wrong = format!(
            "rediss://{user}:not-{pw}@{}/0?ca_file={}",
            peers.get("redis_tls"),
            peers.get("ca")
        );
        let err = deliver_and_read(&wrong).await.expect_err("wrong password");
        let text = err.to_string();
        assert!(text.contains("authentication failed"), "{text}");
        assert!(!text.contains(&format!("not-{pw}")), "{text}");
        // Without the test CA the server's certificate is not trusted.
        let untrusted = format!("rediss://{user}:{pw}@{}/0", peers.get("redis_tls"));
        assert!(deliver_and_read(&untrusted).await.is_err());
    }
}
