//! Check states in Redis, shared by every worker: one JSON value per check under
//! `<prefix>:state:<id>`, updated optimistically (WATCH, GET, step, MULTI/SET/EXEC, again on
//! conflict), so two workers finishing the same check at once produce one notice, not two.
//! When Redis cannot be used, the notice is still delivered: the result is stepped from the
//! last state this worker saw persisted, and marked as not saved.
//!
//! The outbox lives beside the states: `<prefix>:outbox` maps a parcel id to its notice
//! (JSON) and `<prefix>:outbox:claims` maps it to its claim; a notice is written in the same
//! transaction as the state change that calls for it.

use super::outbox::{parcel_id, Claim};
use super::{Applied, StateStore};
use anyhow::{anyhow, bail, Context, Result};
use custodian_alerters::redis::{error_text, RedisServer};
use custodian_core::state::{AlertEvent, CheckState, Policy};
use custodian_core::JobResult;
use futures::future::BoxFuture;
use redis::aio::MultiplexedConnection as Conn;
use std::collections::{HashMap, HashSet};
use tokio::sync::Mutex;

/// Conflicting updates tolerated before giving up on one result.
const MAX_TRIES: usize = 20;

/// A client error in the server's words (`NOAUTH Authentication required.`).
fn failed(e: redis::RedisError) -> anyhow::Error {
    anyhow!(error_text(&e))
}

/// One command's reply, its error in the server's words.
async fn call<T: redis::FromRedisValue>(c: &mut Conn, cmd: &redis::Cmd) -> Result<T> {
    cmd.query_async(c).await.map_err(failed)
}

/// A MULTI/EXEC transaction: `false` when EXEC was aborted because a watched key changed.
async fn commit(c: &mut Conn, tx: &redis::Pipeline) -> Result<bool> {
    let done: Option<()> = tx.query_async(c).await.map_err(failed)?;
    Ok(done.is_some())
}

pub(crate) struct RedisStore {
    /// Where, with the URL's credentials and database (never printed with its password).
    server: RedisServer,
    prefix: String,
    policy: Policy,
    /// One connection of our own: WATCH belongs to a connection, so no other request may
    /// slip in between WATCH and EXEC.
    conn: Mutex<Option<Conn>>,
    /// The last state of each check this worker read or wrote in Redis: what an update steps
    /// from while Redis is unreachable. Never ahead of Redis, since only saved states go here.
    seen: std::sync::Mutex<HashMap<String, CheckState>>,
}

impl RedisStore {
    pub(crate) fn new(server: RedisServer, prefix: &str, policy: Policy) -> Self {
        RedisStore {
            server,
            prefix: prefix.to_string(),
            policy,
            conn: Mutex::new(None),
            seen: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}:state:{id}", self.prefix)
    }

    fn outbox(&self) -> String {
        format!("{}:outbox", self.prefix)
    }

    fn claims(&self) -> String {
        format!("{}:outbox:claims", self.prefix)
    }

    /// A new connection, logged in (AUTH) and on our database (SELECT) by the client.
    async fn connect(&self) -> Result<Conn> {
        self.server.connect().await.map_err(failed)
    }

    /// One optimistic attempt: `None` when another client changed the state meanwhile.
    async fn attempt(
        &self,
        c: &mut Conn,
        result: &JobResult,
        now: u64,
        claim: &Claim,
    ) -> Result<Option<Applied>> {
        let key = self.key(&result.id);
        call::<()>(c, redis::cmd("WATCH").arg(&key)).await?;
        let got: Option<Vec<u8>> = call(c, redis::cmd("GET").arg(&key)).await?;
        let mut st: CheckState = got
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut applied = Applied::step(&mut st, &self.policy, result, now);
        let json = serde_json::to_string(&st)?;
        let mut tx = redis::pipe();
        tx.atomic().set(&key, &json).ignore();
        if let Some(event) = &applied.event {
            let id = parcel_id(now);
            let (outbox, claims) = (self.outbox(), self.claims());
            tx.hset(&outbox, &id, serde_json::to_string(event)?)
                .ignore();
            tx.hset(&claims, &id, serde_json::to_string(claim)?)
                .ignore();
            applied.parcel = Some(id);
        }
        if !commit(c, &tx).await? {
            return Ok(None);
        }
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(result.id.clone(), st);
        Ok(Some(applied))
    }

    async fn update(&self, result: &JobResult, now: u64, claim: &Claim) -> Result<Applied> {
        let mut guard = self.conn.lock().await;
        for _ in 0..MAX_TRIES {
            let mut c = self.take_conn(&mut guard).await?;
            // A connection that failed mid-way is dropped, not reused.
            let done = self.attempt(&mut c, result, now, claim).await?;
            *guard = Some(c);
            if let Some(applied) = done {
                return Ok(applied);
            }
        }
        bail!("state of {} kept changing under us", result.id)
    }

    /// The shared connection, connecting first if need be. The caller puts it back after a
    /// successful exchange; one that failed mid-way is dropped, not reused.
    async fn take_conn(&self, slot: &mut Option<Conn>) -> Result<Conn> {
        match slot.take() {
            Some(c) => Ok(c),
            None => self
                .connect()
                .await
                .with_context(|| format!("state store {}", self.server)),
        }
    }

    /// One optimistic pass over the claims (see [`StateStore::sweep`]): `None` on conflict.
    async fn sweep_once(
        &self,
        c: &mut Conn,
        now: u64,
        claim: &Claim,
        owned: &HashSet<String>,
    ) -> Result<Option<Vec<(String, AlertEvent)>>> {
        let (outbox, claims) = (self.outbox(), self.claims());
        call::<()>(c, redis::cmd("WATCH").arg(&claims)).await?;
        let all: Vec<(Vec<u8>, Vec<u8>)> = call(c, redis::cmd("HGETALL").arg(&claims))
            .await
            .with_context(|| format!("HGETALL {claims}"))?;
        let mine = serde_json::to_string(claim)?;
        let mut renew = Vec::new();
        let mut taken = Vec::new();
        for (id, old) in all {
            let id = String::from_utf8_lossy(&id).into_owned();
            // An unreadable claim is treated as run out.
            let abandoned =
                serde_json::from_slice::<Claim>(&old).map_or(true, |old| old.abandoned(now, claim));
            if owned.contains(&id) || abandoned {
                renew.push(id.clone());
                if !owned.contains(&id) {
                    taken.push(id);
                }
            }
        }
        if renew.is_empty() {
            call::<()>(c, &redis::cmd("UNWATCH")).await?;
            return Ok(Some(Vec::new()));
        }
        let mut tx = redis::pipe();
        tx.atomic();
        for id in &renew {
            tx.hset(&claims, id, &mine).ignore();
        }
        if !commit(c, &tx).await? {
            return Ok(None);
        }
        let mut events = Vec::with_capacity(taken.len());
        for id in taken {
            let notice: Option<Vec<u8>> = call(c, redis::cmd("HGET").arg(&outbox).arg(&id)).await?;
            match notice {
                Some(b) => match serde_json::from_slice::<AlertEvent>(&b) {
                    Ok(event) => events.push((id, event)),
                    Err(e) => {
                        tracing::error!("alert outbox: dropping unreadable notice {id}: {e}");
                        self.remove(c, &id).await?;
                    }
                },
                // Delivered meanwhile by its owner.
                None => call::<()>(c, redis::cmd("HDEL").arg(&claims).arg(&id)).await?,
            }
        }
        Ok(Some(events))
    }

    async fn remove(&self, c: &mut Conn, id: &str) -> Result<()> {
        let mut both = redis::pipe();
        both.hdel(self.outbox(), id).ignore();
        both.hdel(self.claims(), id).ignore();
        both.query_async::<()>(c).await.map_err(failed)
    }
}

impl StateStore for RedisStore {
    fn apply<'a>(
        &'a self,
        result: &'a JobResult,
        now: u64,
        claim: &'a Claim,
    ) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(async move {
            match self.update(result, now, claim).await {
                Ok(applied) => Ok(applied),
                Err(e) => {
                    // A copy: the stepped state was not saved, so it must not be remembered.
                    let mut st = self
                        .seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&result.id)
                        .cloned()
                        .unwrap_or_default();
                    let mut applied = Applied::step(&mut st, &self.policy, result, now);
                    applied.unsaved = Some(e);
                    Ok(applied)
                }
            }
        })
    }

    fn delivered<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            let mut c = self.take_conn(&mut slot).await?;
            self.remove(&mut c, id).await?;
            *slot = Some(c);
            Ok(())
        })
    }

    fn sweep<'a>(
        &'a self,
        now: u64,
        claim: &'a Claim,
        owned: HashSet<String>,
    ) -> BoxFuture<'a, Result<Vec<(String, AlertEvent)>>> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            for _ in 0..MAX_TRIES {
                let mut c = self.take_conn(&mut slot).await?;
                let swept = self.sweep_once(&mut c, now, claim, &owned).await?;
                *slot = Some(c);
                if let Some(taken) = swept {
                    return Ok(taken);
                }
            }
            bail!("the alert outbox kept changing under us")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_core::state::EventKind;
    use custodian_core::{Job, Status};

    /// A plain-TCP server at `addr` (`IP:PORT`), on database `db`.
    fn server(addr: &str, db: u32) -> RedisServer {
        let mut s = RedisServer::parse(&format!("redis://{addr}")).expect("server");
        s.db = db;
        s
    }

    fn result(n: u16, status: Status) -> JobResult {
        JobResult::new(&Job::new("tcp", "127.0.0.1", Some(n)), status, None, 1, 1)
    }

    #[tokio::test]
    async fn two_workers_finishing_the_same_checks_raise_once() {
        let addr = custodian_testpeers::peers().get("redis_queue").to_string();
        let prefix = format!("alertstate{}", std::process::id());
        let policy = Policy::default();
        let (a, b) = (
            RedisStore::new(server(&addr, 9), &prefix, policy),
            RedisStore::new(server(&addr, 9), &prefix, policy),
        );
        let mut raises = 0;
        for port in 1..=20 {
            let r = result(port, Status::Failed);
            let claim = Claim::mine(100);
            let (x, y) = tokio::join!(a.apply(&r, 100, &claim), b.apply(&r, 100, &claim));
            let kinds = [x.expect("a"), y.expect("b")].map(|a| a.event.map(|e| e.kind));
            raises += kinds
                .iter()
                .filter(|k| **k == Some(EventKind::Raise))
                .count();
        }
        assert_eq!(raises, 20, "one raise per check, not two");
        let clear = a
            .apply(&result(1, Status::Passed), 200, &Claim::mine(200))
            .await
            .expect("clear")
            .event;
        assert_eq!(clear.map(|e| e.kind), Some(EventKind::Clear));
        assert!(b
            .apply(&result(1, Status::Passed), 201, &Claim::mine(201))
            .await
            .expect("b")
            .event
            .is_none());
    }

    #[tokio::test]
    async fn an_unreachable_redis_still_yields_the_notice() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let store = RedisStore::new(
            server(&format!("127.0.0.1:{port}"), 0),
            "x",
            Policy::default(),
        );
        for t in [1, 2] {
            let a = store
                .apply(&result(1, Status::Failed), t, &Claim::mine(t))
                .await
                .expect("apply");
            assert_eq!(a.event.map(|e| e.kind), Some(EventKind::Raise));
            assert!(a.unsaved.is_some(), "the failure is reported");
        }
    }

    /// A Redis that requires a password: states are saved with the URL's password and not
    /// without it (the notice is delivered either way).
    #[tokio::test]
    async fn the_urls_password_is_sent_as_auth() {
        let peers = custodian_testpeers::peers();
        let addr = peers.get("redis_auth").to_string();
        let password = peers.get("redis_password").to_string();
        let mut auth = server(&addr, 0);
        auth.password = Some(password);
        let prefix = format!("authstate{}", std::process::id());
        let with = RedisStore::new(auth, &prefix, Policy::default());
        let a = with
            .apply(&result(7, Status::Failed), 100, &Claim::mine(100))
            .await
            .expect("apply");
        assert!(a.unsaved.is_none(), "{:?}", a.unsaved);
        let without = RedisStore::new(server(&addr, 0), &prefix, Policy::default());
        let b = without
            .apply(&result(8, Status::Failed), 100, &Claim::mine(100))
            .await
            .expect("apply");
        assert_eq!(b.event.map(|e| e.kind), Some(EventKind::Raise));
        let why = format!("{:#}", b.unsaved.expect("refused without AUTH"));
        assert!(why.contains("NOAUTH") || why.contains("auth"), "{why}");
    }

    /// The outbox in Redis: a raise is stored with its state; a dead owner's parcel is taken
    /// over by a sweep, and gone once delivered.
    #[tokio::test]
    async fn notices_wait_in_the_redis_outbox_until_delivered() {
        let addr = custodian_testpeers::peers().get("redis_queue").to_string();
        let prefix = format!("outbox{}", std::process::id());
        let store = RedisStore::new(server(&addr, 9), &prefix, Policy::default());
        let dead = Claim {
            pid: 1 << 30,
            ..Claim::mine(100)
        };
        let a = store
            .apply(&result(3, Status::Failed), 100, &dead)
            .await
            .expect("apply");
        assert!(a.unsaved.is_none(), "{:?}", a.unsaved);
        let id = a.parcel.expect("stored");
        let mine = Claim::mine(101);
        let none = HashSet::new();
        let taken = store.sweep(101, &mine, none.clone()).await.expect("sweep");
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, id);
        assert_eq!(taken[0].1.kind, EventKind::Raise);
        let again = store.sweep(102, &mine, none.clone()).await.expect("sweep");
        assert!(again.is_empty(), "now ours, and we live");
        store.delivered(&id).await.expect("delivered");
        let later = store
            .sweep(100_000, &Claim::mine(100_000), none)
            .await
            .expect("sweep");
        assert!(later.is_empty(), "delivered: gone");
    }

    /// `state_redis` over TLS (ACL user, the test CA as `ca_file`) and over a unix socket:
    /// states are saved, and a second raise is not repeated.
    #[tokio::test]
    async fn states_are_kept_over_tls_and_a_unix_socket() {
        let p = custodian_testpeers::peers();
        let urls = [
            format!(
                "rediss://{}:{}@{}/4?ca_file={}",
                p.get("redis_acl_user"),
                p.get("redis_acl_password"),
                p.get("redis_tls"),
                p.get("ca")
            ),
            format!("unix://{}?db=4", p.get("redis_socket")),
        ];
        for url in urls {
            let server = RedisServer::parse(&url).expect("url");
            let prefix = format!("tlsstate{}", std::process::id());
            let store = RedisStore::new(server, &prefix, Policy::default());
            let first = store
                .apply(&result(5, Status::Failed), 100, &Claim::mine(100))
                .await
                .expect("apply");
            assert!(first.unsaved.is_none(), "{url}: {:?}", first.unsaved);
            assert_eq!(first.event.map(|e| e.kind), Some(EventKind::Raise));
            let again = store
                .apply(&result(5, Status::Failed), 101, &Claim::mine(101))
                .await
                .expect("apply");
            assert!(
                again.event.map(|e| e.kind) != Some(EventKind::Raise),
                "{url}"
            );
            if let Some(id) = first.parcel {
                store.delivered(&id).await.expect("delivered");
            }
        }
    }
}
