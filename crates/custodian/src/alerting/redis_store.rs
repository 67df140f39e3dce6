//! Check states in Redis, shared by every worker: one JSON value per check under
//! `<prefix>:state:<id>`, updated optimistically (WATCH, GET, step, MULTI/SET/EXEC, again on
//! conflict), so two workers finishing the same check at once produce one notice, not two.
//! When Redis cannot be used, the notice is still delivered: the result is stepped from the
//! last state this worker saw persisted, and marked as not saved.

use super::{Applied, StateStore};
use crate::queue::resp::{cmd, Conn, Value};
use crate::queue::RedisAuth;
use anyhow::{bail, Context, Result};
use custodian_core::state::{CheckState, Policy};
use custodian_core::JobResult;
use futures::future::BoxFuture;
use std::collections::HashMap;
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
    async fn attempt(&self, c: &mut Conn, result: &JobResult, now: u64) -> Result<Option<Applied>> {
        let key = self.key(&result.id);
        c.call(cmd(["WATCH", &key])).await?;
        let mut st: CheckState = match c.call(cmd(["GET", &key])).await? {
            Value::Bytes(b) => serde_json::from_slice(&b).unwrap_or_default(),
            _ => CheckState::default(),
        };
        let applied = Applied::step(&mut st, &self.policy, result, now);
        let json = serde_json::to_string(&st)?;
        let replies = c
            .pipeline(&[cmd(["MULTI"]), cmd(["SET", &key, &json]), cmd(["EXEC"])])
            .await?;
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

    async fn update(&self, result: &JobResult, now: u64) -> Result<Applied> {
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
            let done = self.attempt(&mut c, result, now).await?;
            *guard = Some(c);
            if let Some(applied) = done {
                return Ok(applied);
            }
        }
        bail!("state of {} kept changing under us", result.id)
    }
}

impl StateStore for RedisStore {
    fn apply<'a>(&'a self, result: &'a JobResult, now: u64) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(async move {
            match self.update(result, now).await {
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
            let (x, y) = tokio::join!(a.apply(&r, 100), b.apply(&r, 100));
            let kinds = [x.expect("a"), y.expect("b")].map(|a| a.event.map(|e| e.kind));
            raises += kinds
                .iter()
                .filter(|k| **k == Some(EventKind::Raise))
                .count();
        }
        assert_eq!(raises, 20, "one raise per check, not two");
        let clear = a
            .apply(&result(1, Status::Passed), 200)
            .await
            .expect("clear")
            .event;
        assert_eq!(clear.map(|e| e.kind), Some(EventKind::Clear));
        assert!(b
            .apply(&result(1, Status::Passed), 201)
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
                .apply(&result(1, Status::Failed), t)
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
            .apply(&result(7, Status::Failed), 100)
            .await
            .expect("apply");
        assert!(a.unsaved.is_none(), "{:?}", a.unsaved);
        let without = RedisStore::new(&addr, 0, None, &prefix, Policy::default());
        let b = without
            .apply(&result(8, Status::Failed), 100)
            .await
            .expect("apply");
        assert_eq!(b.event.map(|e| e.kind), Some(EventKind::Raise));
        let why = format!("{:#}", b.unsaved.expect("refused without AUTH"));
        assert!(why.contains("NOAUTH") || why.contains("auth"), "{why}");
    }
}
