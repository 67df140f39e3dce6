//! The Redis backend: a ready list, a lease sorted set and Lua scripts that make each step
//! atomic. Reserving first returns expired leases to the front of the ready list (the reaper),
//! so a job whose worker died is delivered again once its lease has run out.
//!
//! Keys under `PREFIX:`: `ready` (list of handles), `body`/`meta` (hashes by handle; meta is
//! `ID LEASE_MS ENQUEUED_MS`), `tries` (hash by handle: reservations so far), `ids` (set of pending job ids, for de-duplication), `leased`
//! (sorted set, handle → lease expiry in ms), `dead` (list of JSON `{reason, body}`), `seq`.
//! Times come from the broker's clock, so workers' clocks need not agree.

use super::resp::{self, cmd, Conn, Value};
use super::RedisAuth;
use custodian_core::queue::{
    DeadLetter, JobQueue, Lease, Pending, PutReport, QueueError, QueueFuture, QueueStats,
};
use std::time::Duration;
use tokio::sync::Mutex;

/// Jobs per put script call.
const PUT_BATCH: usize = 500;

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

pub(crate) struct RedisQueue {
    addr: String,
    db: u32,
    prefix: String,
    auth: Option<RedisAuth>,
    conn: Mutex<Option<Conn>>,
}

impl RedisQueue {
    pub(crate) fn new(addr: &str, db: u32, prefix: &str, auth: Option<RedisAuth>) -> Self {
        RedisQueue {
            addr: addr.to_string(),
            db,
            prefix: prefix.to_string(),
            auth,
            conn: Mutex::new(None),
        }
    }

    /// A new connection, authenticated and on our database. A refusal names the broker and
    /// the database (never the password).
    async fn connect(&self) -> Result<Conn, QueueError> {
        let mut c = Conn::connect(&self.addr).await?;
        let named = |what: String| {
            move |e: QueueError| match e {
                QueueError::Refused(r) => {
                    QueueError::Refused(format!("{}: {what}: {r}", self.addr))
                }
                other => other,
            }
        };
        if let Some(a) = &self.auth {
            let mut words = vec!["AUTH"];
            words.extend(a.user.as_deref());
            words.push(&a.password);
            c.call(cmd(words)).await.map_err(named("AUTH".into()))?;
        }
        let db = self.db.to_string();
        c.call(cmd(["SELECT", &db]))
            .await
            .map_err(named(format!("database {db}")))?;
        Ok(c)
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// Runs one script (with the broker's time in `now`) on the shared connection.
    async fn eval(
        &self,
        script: &str,
        keys: &[&str],
        args: Vec<Vec<u8>>,
    ) -> Result<Value, QueueError> {
        let mut words = vec![b"EVAL".to_vec(), format!("{NOW}{script}").into_bytes()];
        words.push(keys.len().to_string().into_bytes());
        words.extend(keys.iter().map(|k| self.key(k).into_bytes()));
        words.extend(args);
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            *slot = Some(self.connect().await?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(resp::unavailable("not connected"));
        };
        let reply = conn.call(words).await;
        if matches!(reply, Err(QueueError::Unavailable(_))) {
            *slot = None;
        }
        reply
    }

    async fn put_batch(&self, jobs: &[Pending]) -> Result<u64, QueueError> {
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
        let added = self
            .eval(PUT, &["ids", "seq", "body", "meta", "ready"], args)
            .await?;
        Ok(added.int()? as u64)
    }

    async fn reserve_once(&self, max: usize) -> Result<Vec<Lease>, QueueError> {
        let keys = ["ids", "body", "meta", "ready", "leased", "tries"];
        let reply = self
            .eval(RESERVE, &keys, vec![max.to_string().into_bytes()])
            .await?;
        let Value::Array(items) = reply else {
            return Err(resp::protocol("reserved jobs", &reply));
        };
        items
            .chunks(3)
            .map(|triple| match triple {
                [h, Value::Bytes(body), n] => Ok(Lease {
                    handle: h.int()?.to_string(),
                    body: body.clone(),
                    deliveries: u32::try_from(n.int()?).unwrap_or(u32::MAX),
                }),
                _ => Err(resp::protocol(
                    "handle, body and delivery count",
                    &Value::Array(triple.to_vec()),
                )),
            })
            .collect()
    }

    async fn by_handle(
        &self,
        script: &str,
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
            self.eval(ACK, &["body", "meta", "leased", "tries"], handles)
                .await
                .map(drop)
        })
    }

    fn touch<'a>(&'a self, leases: &'a [Lease]) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let handles = leases
                .iter()
                .map(|l| l.handle.clone().into_bytes())
                .collect();
            self.eval(TOUCH, &["leased", "meta"], handles)
                .await
                .map(drop)
        })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        Box::pin(self.by_handle(RELEASE, &["ids", "meta", "ready", "leased"], lease, ""))
    }

    fn bury<'a>(&'a self, lease: &'a Lease, reason: &'a str) -> QueueFuture<'a, ()> {
        Box::pin(self.by_handle(
            BURY,
            &["body", "meta", "leased", "dead", "tries"],
            lease,
            reason,
        ))
    }

    fn dead(&self) -> QueueFuture<'_, Vec<DeadLetter>> {
        Box::pin(async move {
            let v = self.eval(DEAD, &["dead"], vec![]).await?;
            let Value::Array(items) = v else {
                return Err(resp::protocol("dead letters", &v));
            };
            items
                .into_iter()
                .map(|item| match item {
                    Value::Bytes(raw) => Ok(DeadLetter::parse(
                        String::from_utf8_lossy(&raw).into_owned(),
                        &raw,
                    )),
                    other => Err(resp::protocol("a dead letter", &other)),
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
            let n = self.eval(DROP_DEAD, &["dead"], args).await?;
            Ok(n.int()? as u64)
        })
    }

    fn stats(&self) -> QueueFuture<'_, QueueStats> {
        Box::pin(async move {
            let v = self
                .eval(STATS, &["ready", "meta", "leased", "dead"], vec![])
                .await?;
            let Value::Array(n) = &v else {
                return Err(resp::protocol("four counts", &v));
            };
            let n: Vec<i64> = n.iter().map(Value::int).collect::<Result<_, _>>()?;
            let [pending, reserved, buried, age] = n[..] else {
                return Err(resp::protocol("four counts", &v));
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
            let n = self
                .eval(
                    FLUSH,
                    &["ready", "body", "meta", "dead", "ids", "tries"],
                    vec![],
                )
                .await?;
            Ok(n.int()? as u64)
        })
    }
}
