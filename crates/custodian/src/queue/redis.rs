//! The Redis backend: a ready list, a lease sorted set and Lua scripts that make each step
//! atomic. Reserving first returns expired leases to the front of the ready list (the reaper),
//! so a job whose worker died is delivered again once its lease has run out.
//!
//! Keys under `PREFIX:`: `ready` (list of handles), `body`/`meta` (hashes by handle; meta is
//! `ID LEASE_MS ENQUEUED_MS`), `tries` (hash by handle: reservations so far), `ids` (set of pending job ids, for de-duplication), `leased`
//! (sorted set, handle → lease expiry in ms), `dead` (list of JSON `{reason, body}`), `seq`.
//! Times come from the broker's clock, so workers' clocks need not agree.
//! Scripts run by SHA (EVALSHA, loading them again when the broker has forgotten them).

use super::resp::{classify, unavailable};
use custodian_alerters::redis::{error_text, RedisServer};
use custodian_core::queue::{
    DeadLetter, JobQueue, Lease, Pending, PutReport, QueueError, QueueFuture, QueueStats,
};
use redis::aio::MultiplexedConnection;
use redis::{Script, Value};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::Mutex;

/// Jobs per put script call.
const PUT_BATCH: usize = 500;

/// Largest job body taken or handed out (a job is a few hundred bytes): the crate bounds the
/// protocol, this bounds what we keep.
const MAX_BODY: usize = 64 * 1024 * 1024;

const NOW: &str = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) ";

const PUT: &str = "local added = 0
for i = 1, #ARGV, 3 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    local h = redis.call('INCR', KEYS[2])
    redis.call('HSET', KEYS[3], h, ARGV[i + 2])
    redis.call('HSET', KEYS[4], h, ARGV[i] .. ' ' .. ARGV[i + 1] .. ' ' .. now)
    redis.call('RPUSH', KEYS[5], h)
    added = added + 1
  end
end
return added";

const RESERVE: &str =
    "for _, h in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', KEYS[5], h)
  local m = redis.call('HGET', KEYS[3], h)
  if m then
    redis.call('LPUSH', KEYS[4], h)
    redis.call('SADD', KEYS[1], string.match(m, '^(%S+)'))
  end
end
local out = {}
while #out < 3 * tonumber(ARGV[1]) do
  local h = redis.call('LPOP', KEYS[4])
  if not h then break end
  local m = redis.call('HGET', KEYS[3], h)
  if m then
    local id, lease = string.match(m, '^(%S+) (%d+)')
    redis.call('SREM', KEYS[1], id)
    redis.call('ZADD', KEYS[5], now + tonumber(lease), h)
    out[#out + 1] = h
    out[#out + 1] = redis.call('HGET', KEYS[2], h)
    out[#out + 1] = redis.call('HINCRBY', KEYS[6], h, 1)
  end
end
return out";

const ACK: &str = "for _, h in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[3], h) == 1 then
    redis.call('HDEL', KEYS[1], h)
    redis.call('HDEL', KEYS[2], h)
    redis.call('HDEL', KEYS[4], h)
  end
end
return 1";

const TOUCH: &str = "for _, h in ipairs(ARGV) do
  local m = redis.call('HGET', KEYS[2], h)
  if m and redis.call('ZSCORE', KEYS[1], h) then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(string.match(m, '^%S+ (%d+)')), h)
  end
end
return 1";

const RELEASE: &str = "if redis.call('ZREM', KEYS[4], ARGV[1]) == 1 then
  local m = redis.call('HGET', KEYS[2], ARGV[1])
  if m then
    redis.call('LPUSH', KEYS[3], ARGV[1])
    redis.call('SADD', KEYS[1], string.match(m, '^(%S+)'))
  end
end
return 1";

const BURY: &str = "if redis.call('ZREM', KEYS[3], ARGV[1]) == 1 then
  local body = redis.call('HGET', KEYS[1], ARGV[1]) or ''
  redis.call('RPUSH', KEYS[4], cjson.encode({reason = ARGV[2], body = body}))
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
end
return 1";

const STATS: &str = "local age = -1
local h = redis.call('LINDEX', KEYS[1], 0)
if h then
  local m = redis.call('HGET', KEYS[2], h)
  if m then age = now - tonumber(string.match(m, '(%d+)$')) end
end
return {redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[3]), redis.call('LLEN', KEYS[4]), age}";

const FLUSH: &str = "local n = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[4])
for _, h in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  redis.call('HDEL', KEYS[2], h)
  redis.call('HDEL', KEYS[3], h)
  redis.call('HDEL', KEYS[6], h)
end
redis.call('DEL', KEYS[1], KEYS[4], KEYS[5])
return n";

const DEAD: &str = "return redis.call('LRANGE', KEYS[1], 0, -1)";

/// A letter's handle is its stored text: list positions shift as letters come and go.
const DROP_DEAD: &str = "local n = 0
for _, v in ipairs(ARGV) do n = n + redis.call('LREM', KEYS[1], 1, v) end
return n";

/// Every script once, with the broker's time in `now`: hashed once, sent by SHA.
struct Scripts {
    put: Script,
    reserve: Script,
    ack: Script,
    touch: Script,
    release: Script,
    bury: Script,
    stats: Script,
    flush: Script,
    dead: Script,
    drop_dead: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let s = |body: &str| Script::new(&format!("{NOW}{body}"));
    Scripts {
        put: s(PUT),
        reserve: s(RESERVE),
        ack: s(ACK),
        touch: s(TOUCH),
        release: s(RELEASE),
        bury: s(BURY),
        stats: s(STATS),
        flush: s(FLUSH),
        dead: s(DEAD),
        drop_dead: s(DROP_DEAD),
    }
});

/// Sorts a client error: refusals (credentials, database) stop at once, a lost or silent
/// broker is waited out, anything else is a protocol error. Names the broker, never its
/// password.
fn queue_error(server: &RedisServer, e: &redis::RedisError) -> QueueError {
    let text = error_text(e);
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        // The client keeps the server's words to itself; WRONGPASS is what Redis answers.
        return QueueError::Refused(format!(
            "{server}: AUTH refused (WRONGPASS: wrong user name or password)"
        ));
    }
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return unavailable(format!("{server}: {text}"));
    }
    match classify(text) {
        QueueError::Refused(t) => {
            QueueError::Refused(format!("{server} (database {}): {t}", server.db))
        }
        QueueError::Unavailable(t) => QueueError::Unavailable(format!("{server}: {t}")),
        other => other,
    }
}

fn protocol(want: &str, got: &Value) -> QueueError {
    QueueError::Protocol(format!("expected {want}, got {got:?}"))
}

fn int(v: &Value) -> Result<i64, QueueError> {
    match v {
        Value::Int(n) => Ok(*n),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| protocol("a number", v)),
        _ => Err(protocol("a number", v)),
    }
}

/// A queue on Redis through the `redis` crate: one multiplexed connection (the crate's
/// pipelining client), dropped when a call fails and made again on the next. We keep the
/// reconnect in our hands rather than `redis::aio::ConnectionManager`'s background one so that
/// every connect, the first and each after a failure, goes through [`RedisServer::connect`] and
/// its error mapping: a refused login or unknown database is `QueueError::Refused` (exit 2)
/// at the call that met it, and our callers' backoff logs an outage once.
pub(crate) struct RedisQueue {
    server: RedisServer,
    prefix: String,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisQueue {
    pub(crate) fn new(server: RedisServer, prefix: &str) -> Self {
        RedisQueue {
            server,
            prefix: prefix.to_string(),
            conn: Mutex::new(None),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// The shared connection, made (logged in, on our database) when there is none.
    async fn conn(&self) -> Result<MultiplexedConnection, QueueError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .server
            .connect()
            .await
            .map_err(|e| queue_error(&self.server, &e))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one script; a connection that failed is dropped so that the next call reconnects.
    async fn eval(
        &self,
        script: &Script,
        keys: &[&str],
        args: Vec<Vec<u8>>,
    ) -> Result<Value, QueueError> {
        let mut conn = self.conn().await?;
        let mut call = script.prepare_invoke();
        for k in keys {
            call.key(self.key(k));
        }
        for a in args {
            call.arg(a);
        }
        let reply = call.invoke_async::<Value>(&mut conn).await;
        reply.map_err(|e| {
            let e = queue_error(&self.server, &e);
            if matches!(e, QueueError::Unavailable(_)) {
                // try_lock: another caller may hold the slot; it will find out for itself.
                if let Ok(mut slot) = self.conn.try_lock() {
                    *slot = None;
                }
            }
            e
        })
    }

    async fn put_batch(&self, jobs: &[Pending]) -> Result<u64, QueueError> {
        if let Some(big) = jobs.iter().find(|p| p.body.len() > MAX_BODY) {
            return Err(QueueError::Protocol(format!(
                "job {} is {} bytes, over the {MAX_BODY}-byte limit",
                big.id,
                big.body.len()
            )));
        }
        let args = jobs
            .iter()
            .flat_map(|p| {
                [
                    p.id.clone().into_bytes(),
                    p.lease.as_millis().to_string().into_bytes(),
                    p.body.clone(),
                ]
            })
            .collect();
        let keys = ["ids", "seq", "body", "meta", "ready"];
        let added = self.eval(&SCRIPTS.put, &keys, args).await?;
        Ok(int(&added)? as u64)
    }

    async fn reserve_once(&self, max: usize) -> Result<Vec<Lease>, QueueError> {
        let keys = ["ids", "body", "meta", "ready", "leased", "tries"];
        let reply = self
            .eval(&SCRIPTS.reserve, &keys, vec![max.to_string().into_bytes()])
            .await?;
        let Value::Array(items) = reply else {
            return Err(protocol("reserved jobs", &reply));
        };
        items
            .chunks(3)
            .map(|triple| match triple {
                [_, Value::BulkString(body), _] if body.len() > MAX_BODY => Err(
                    QueueError::Protocol(format!("a job body of {} bytes", body.len())),
                ),
                [h, Value::BulkString(body), n] => Ok(Lease {
                    handle: int(h)?.to_string(),
                    body: body.clone(),
                    deliveries: u32::try_from(int(n)?).unwrap_or(u32::MAX),
                }),
                _ => Err(protocol(
                    "handle, body and delivery count",
                    &Value::Array(triple.to_vec()),
                )),
            })
            .collect()
    }

    async fn by_handle(
        &self,
        script: &Script,
        keys: &[&str],
        lease: &Lease,
        extra: &str,
    ) -> Result<(), QueueError> {
        let mut args = vec![lease.handle.clone().into_bytes()];
        if !extra.is_empty() {
            args.push(extra.as_bytes().to_vec());
        }
        self.eval(script, keys, args).await.map(drop)
    }
}

impl JobQueue for RedisQueue {
    fn put<'a>(&'a self, jobs: &'a [Pending]) -> QueueFuture<'a, PutReport> {
        Box::pin(async move {
            let mut added = 0;
            for batch in jobs.chunks(PUT_BATCH) {
                added += self.put_batch(batch).await?;
            }
            Ok(PutReport {
                added,
                duplicates: jobs.len() as u64 - added,
            })
        })
    }

    fn reserve(&self, max: usize, wait: Duration) -> QueueFuture<'_, Vec<Lease>> {
        Box::pin(async move {
            let until = tokio::time::Instant::now() + wait;
            let mut nap = Duration::from_millis(5);
            loop {
                let got = self.reserve_once(max).await?;
                if !got.is_empty() || tokio::time::Instant::now() + nap > until {
                    return Ok(got);
                }
                tokio::time::sleep(nap).await;
                nap = (nap * 2).min(Duration::from_millis(100));
            }
        })
    }

    fn ack<'a>(&'a self, leases: &'a [Lease]) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let handles = leases
                .iter()
                .map(|l| l.handle.clone().into_bytes())
                .collect();
            let keys = ["body", "meta", "leased", "tries"];
            self.eval(&SCRIPTS.ack, &keys, handles).await.map(drop)
        })
    }

    fn touch<'a>(&'a self, leases: &'a [Lease]) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let handles = leases
                .iter()
                .map(|l| l.handle.clone().into_bytes())
                .collect();
            self.eval(&SCRIPTS.touch, &["leased", "meta"], handles)
                .await
                .map(drop)
        })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        let keys = &["ids", "meta", "ready", "leased"];
        Box::pin(self.by_handle(&SCRIPTS.release, keys, lease, ""))
    }

    fn bury<'a>(&'a self, lease: &'a Lease, reason: &'a str) -> QueueFuture<'a, ()> {
        let keys = &["body", "meta", "leased", "dead", "tries"];
        Box::pin(self.by_handle(&SCRIPTS.bury, keys, lease, reason))
    }

    fn dead(&self) -> QueueFuture<'_, Vec<DeadLetter>> {
        Box::pin(async move {
            let v = self.eval(&SCRIPTS.dead, &["dead"], vec![]).await?;
            let Value::Array(items) = v else {
                return Err(protocol("dead letters", &v));
            };
            items
                .into_iter()
                .map(|item| match item {
                    Value::BulkString(raw) => Ok(DeadLetter::parse(
                        String::from_utf8_lossy(&raw).into_owned(),
                        &raw,
                    )),
                    other => Err(protocol("a dead letter", &other)),
                })
                .collect()
        })
    }

    fn drop_dead<'a>(&'a self, letters: &'a [DeadLetter]) -> QueueFuture<'a, u64> {
        Box::pin(async move {
            let args = letters
                .iter()
                .map(|l| l.handle.clone().into_bytes())
                .collect();
            let n = self.eval(&SCRIPTS.drop_dead, &["dead"], args).await?;
            Ok(int(&n)? as u64)
        })
    }

    fn stats(&self) -> QueueFuture<'_, QueueStats> {
        Box::pin(async move {
            let keys = ["ready", "meta", "leased", "dead"];
            let v = self.eval(&SCRIPTS.stats, &keys, vec![]).await?;
            let Value::Array(n) = &v else {
                return Err(protocol("four counts", &v));
            };
            let n: Vec<i64> = n.iter().map(int).collect::<Result<_, _>>()?;
            let [pending, reserved, buried, age] = n[..] else {
                return Err(protocol("four counts", &v));
            };
            Ok(QueueStats {
                pending: pending as u64,
                reserved: reserved as u64,
                buried: buried as u64,
                oldest: u64::try_from(age).ok().map(Duration::from_millis),
            })
        })
    }

    fn flush(&self) -> QueueFuture<'_, u64> {
        Box::pin(async move {
            let keys = ["ready", "body", "meta", "dead", "ids", "tries"];
            let n = self.eval(&SCRIPTS.flush, &keys, vec![]).await?;
            Ok(int(&n)? as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::QueueUrl;
    use custodian_core::queue::{Pending, QueueError};
    use std::time::Duration;

    /// One job in, reserved, acked: the queue works through `url`.
    async fn round_trip(url: &str) -> Result<(), QueueError> {
        let q = QueueUrl::parse(url).expect("url").open();
        q.flush().await?;
        let job = Pending {
            id: "j1".into(),
            body: b"{}".to_vec(),
            lease: Duration::from_secs(30),
        };
        assert_eq!(q.put(&[job]).await?.added, 1);
        let got = q.reserve(1, Duration::from_secs(1)).await?;
        assert_eq!(got.len(), 1, "{url}");
        assert_eq!(got[0].body, b"{}");
        q.ack(&got).await?;
        assert_eq!(q.stats().await?.pending, 0);
        Ok(())
    }

    /// TLS verified against the test CA with an ACL user, and a unix socket on database 2.
    #[tokio::test]
    async fn rediss_and_unix_socket_queues_work() {
        let p = custodian_testpeers::peers();
        let prefix = format!("tlsq{}", std::process::id());
        let tls = format!(
            "rediss://{}:{}@{}/1?prefix={prefix}&ca_file={}",
            p.get("redis_acl_user"),
            p.get("redis_acl_password"),
            p.get("redis_tls"),
            p.get("ca")
        );
        round_trip(&tls).await.expect("rediss");
        let sock = format!("unix://{}?db=2&prefix={prefix}", p.get("redis_socket"));
        round_trip(&sock).await.expect("unix");
    }

    /// Refusals (a wrong password, a database that does not exist, an untrusted certificate
    /// aside) are told apart from outages, and never repeat the password.
    #[tokio::test]
    async fn refusals_are_refused_and_mask_the_password() {
        let p = custodian_testpeers::peers();
        let wrong = format!(
            "rediss://{}:not-the-pw@{}/0?ca_file={}",
            p.get("redis_acl_user"),
            p.get("redis_tls"),
            p.get("ca")
        );
        match round_trip(&wrong).await {
            Err(QueueError::Refused(why)) => {
                assert!(why.contains("WRONGPASS"), "{why}");
                assert!(!why.contains("not-the-pw"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let no_db = format!("unix://{}?db=99", p.get("redis_socket"));
        match round_trip(&no_db).await {
            Err(QueueError::Refused(why)) => assert!(why.contains("database 99"), "{why}"),
            other => panic!("{other:?}"),
        }
        let untrusted = format!(
            "rediss://{}:{}@{}/0",
            p.get("redis_acl_user"),
            p.get("redis_acl_password"),
            p.get("redis_tls")
        );
        assert!(round_trip(&untrusted).await.is_err());
    }
}
