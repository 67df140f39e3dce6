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
use crate::queue::resp::{cmd, Conn, Value};
use crate::queue::RedisAuth;
use anyhow::{bail, Context, Result};
use custodian_core::state::{AlertEvent, CheckState, Policy};
use custodian_core::JobResult;
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use tokio::sync::Mutex;

/// Conflicting updates tolerated before giving up on one result.
const MAX_TRIES: usize = 20;

pub(crate) struct RedisStore {
    addr: String,
    db: u32,
    /// The URL's credentials, sent as `AUTH` on every new connection.
    auth: Option<RedisAuth>,
    prefix: String,
    policy: Policy,
    conn: Mutex<Option<Conn>>,
    /// The last state of each check this worker read or wrote in Redis: what an update steps
    /// from while Redis is unreachable. Never ahead of Redis, since only saved states go here.
    seen: std::sync::Mutex<HashMap<String, CheckState>>,
}

impl RedisStore {
    pub(crate) fn new(
        addr: &str,
        db: u32,
        auth: Option<RedisAuth>,
        prefix: &str,
        policy: Policy,
    ) -> Self {
        RedisStore {
            addr: addr.to_string(),
            db,
            auth,
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

    async fn connect(&self) -> Result<Conn> {
        let mut c = Conn::connect(&self.addr).await?;
        if let Some(a) = &self.auth {
            let mut words = vec!["AUTH"];
            words.extend(a.user.as_deref());
            words.push(&a.password);
            c.call(cmd(words)).await.context("AUTH")?;
        }
        if self.db != 0 {
            c.call(cmd(["SELECT", &self.db.to_string()])).await?;
        }
        Ok(c)
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
        c.call(cmd(["WATCH", &key])).await?;
        let mut st: CheckState = match c.call(cmd(["GET", &key])).await? {
            Value::Bytes(b) => serde_json::from_slice(&b).unwrap_or_default(),
            _ => CheckState::default(),
        };
        let mut applied = Applied::step(&mut st, &self.policy, result, now);
        let json = serde_json::to_string(&st)?;
        let mut tx = vec![cmd(["MULTI"]), cmd(["SET", &key, &json])];
        if let Some(event) = &applied.event {
            let id = parcel_id(now);
            let (outbox, claims) = (self.outbox(), self.claims());
            tx.push(cmd(["HSET", &outbox, &id, &serde_json::to_string(event)?]));
            tx.push(cmd(["HSET", &claims, &id, &serde_json::to_string(claim)?]));
            applied.parcel = Some(id);
        }
        tx.push(cmd(["EXEC"]));
        let replies = c.pipeline(&tx).await?;
        match replies.last() {
            Some(Value::Array(_)) => {
                self.seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(result.id.clone(), st);
                Ok(Some(applied))
            }
            Some(Value::Nil) => Ok(None),
            other => bail!("EXEC answered {other:?}"),
        }
    }

    async fn update(&self, result: &JobResult, now: u64, claim: &Claim) -> Result<Applied> {
        let mut guard = self.conn.lock().await;
        for _ in 0..MAX_TRIES {
            let mut c = match guard.take() {
                Some(c) => c,
                None => self
                    .connect()
                    .await
                    .with_context(|| format!("state store {}", self.addr))?,
            };
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
                .with_context(|| format!("state store {}", self.addr)),
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
        c.call(cmd(["WATCH", &claims])).await?;
        let Value::Array(flat) = c.call(cmd(["HGETALL", &claims])).await? else {
            bail!("HGETALL {claims} answered no array");
        };
        let mine = serde_json::to_string(claim)?;
        let mut renew = Vec::new();
        let mut taken = Vec::new();
        for pair in flat.chunks(2) {
            let [Value::Bytes(id), Value::Bytes(old)] = pair else {
                continue;
            };
            let id = String::from_utf8_lossy(id).into_owned();
            // An unreadable claim is treated as run out.
            let abandoned =
                serde_json::from_slice::<Claim>(old).map_or(true, |old| old.abandoned(now, claim));
            if owned.contains(&id) || abandoned {
                renew.push(id.clone());
                if !owned.contains(&id) {
                    taken.push(id);
                }
            }
        }
        if renew.is_empty() {
            c.call(cmd(["UNWATCH"])).await?;
            return Ok(Some(Vec::new()));
        }
        let mut tx = vec![cmd(["MULTI"])];
        tx.extend(renew.iter().map(|id| cmd(["HSET", &claims, id, &mine])));
        tx.push(cmd(["EXEC"]));
        match c.pipeline(&tx).await?.last() {
            Some(Value::Array(_)) => {}
            Some(Value::Nil) => return Ok(None),
            other => bail!("EXEC answered {other:?}"),
        }
        let mut events = Vec::with_capacity(taken.len());
        for id in taken {
            match c.call(cmd(["HGET", &outbox, &id])).await? {
                Value::Bytes(b) => match serde_json::from_slice::<AlertEvent>(&b) {
                    Ok(event) => events.push((id, event)),
                    Err(e) => {
                        tracing::error!("alert outbox: dropping unreadable notice {id}: {e}");
                        self.remove(c, &id).await?;
                    }
                },
                // Delivered meanwhile by its owner.
                _ => {
                    c.call(cmd(["HDEL", &claims, &id])).await?;
                }
            }
        }
        Ok(Some(events))
    }

    async fn remove(&self, c: &mut Conn, id: &str) -> Result<()> {
        c.pipeline(&[
            cmd(["HDEL", &self.outbox(), id]),
            cmd(["HDEL", &self.claims(), id]),
        ])
        .await?;
        Ok(())
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

    fn result(n: u16, status: Status) -> JobResult {
        JobResult::new(&Job::new("tcp", "127.0.0.1", Some(n)), status, None, 1, 1)
    }

    #[tokio::test]
    async fn two_workers_finishing_the_same_checks_raise_once() {
        let addr = custodian_testpeers::peers().get("redis_queue").to_string();
        let prefix = format!("alertstate{}", std::process::id());
        let policy = Policy::default();
        let (a, b) = (
            RedisStore::new(&addr, 9, None, &prefix, policy),
            RedisStore::new(&addr, 9, None, &prefix, policy),
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
            &format!("127.0.0.1:{port}"),
            0,
            None,
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
        let auth = RedisAuth {
            user: None,
            password,
        };
        let prefix = format!("authstate{}", std::process::id());
        let with = RedisStore::new(&addr, 0, Some(auth), &prefix, Policy::default());
        let a = with
            .apply(&result(7, Status::Failed), 100, &Claim::mine(100))
            .await
            .expect("apply");
        assert!(a.unsaved.is_none(), "{:?}", a.unsaved);
        let without = RedisStore::new(&addr, 0, None, &prefix, Policy::default());
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
        let store = RedisStore::new(&addr, 9, None, &prefix, Policy::default());
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
}
