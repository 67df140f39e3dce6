//! The beanstalkd backend: a hand-written client for its small text protocol.
//!
//! Jobs go into one tube (default `custodian`) with TTR = the job's lease, so beanstalkd itself
//! hands a job to another worker when its worker dies or runs late. A body is `ID\nJSON`. Dead
//! letters go to the tube `TUBE.dead` as JSON `{reason, body}`, since beanstalkd's own `bury`
//! cannot record a reason.
//!
//! **Connections.** beanstalkd accepts `delete`, `touch`, `release` and `bury` of a reserved
//! job only from the connection that reserved it, and a connection blocked in `reserve` answers
//! nothing else. So `put`, stats and dead letters use one connection, and reservations a small
//! pool ([`Lessors`]): each lease is settled on the connection that took it, and only a
//! connection holding no lease waits in a blocking `reserve-with-timeout 1` (in a task of its
//! own, so a caller with a shorter wait returns in time and the next caller takes the wait
//! over). An idle worker thus sends one command a second, and acks never queue behind a wait.
//!
//! **Duplicates.** `put` skips a job whose id is already pending (ready) in the tube.
//! beanstalkd cannot list a tube or find a job by its content, so the client remembers, for
//! each check id it put, the id beanstalkd gave that copy ([`PutIds`]: in memory in a
//! long-running client, in a file beside the state file for `enqueue`) and asks about those
//! alone, in two pipelined exchanges: `stats-job` (still in our tube and ready?), then `peek`
//! for the ready ones (still that check? ids start again when a broker without a binlog
//! restarts). A put thus costs at most two commands per remembered job of its batch and one
//! per new job, whatever the tube or the broker holds; the memory is swept (a `stats-job`
//! each) whenever it has doubled.
//!
//! The guarantee: exact for the jobs this client (or an earlier `enqueue` with the same state
//! file) put. A copy put by anyone else (an enqueuer on another host, `serve` and `enqueue` on
//! one tube, two `enqueue` runs at once, whose files the last to finish writes) is unknown
//! here, and one more may be added: a worker then runs the check twice and hands on both
//! results, each a true observation. A job is never lost: one is skipped only when its
//! pending copy was seen, and that copy is delivered (or, if a worker took it meanwhile, runs
//! there). A put cut off by a broken connection does not know the ids of up to one pipeline
//! of jobs (500), which the retry puts again.
//!
//! Tried and dropped: asking `stats-job` for every id from the tube's oldest ready job to the
//! newest (the previous version: its cost grew with the broker's traffic since that job);
//! reserving every ready job and kicking it back (beanstalkd 1.12 scans a connection's
//! reservations on every `reserve`: minutes of its CPU for 100,000); a tube per id, or a
//! companion tube of marker jobs, as an index (tubes are found by a linear search, and
//! beanstalkd has no lookup by name in a tube either). `dead` (and so `enqueue`'s check for
//! buried twins) still reads the dead tube by that id range: dead letters are few, but an old
//! one makes it cost the traffic since. Deliveries are `reserves - kicks`.

#[path = "beanstalk_ids.rs"]
mod ids;

use super::resp::unavailable;
use anyhow::bail;
use custodian_core::queue::{
    DeadLetter, JobQueue, Lease, Pending, PutReport, QueueError, QueueFuture, QueueStats,
};
pub(crate) use ids::file_for;
use ids::PutIds;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Mutex};

/// Longest one exchange may take before the connection counts as dead.
const IO_LIMIT: Duration = Duration::from_secs(10);
/// Commands sent before reading their replies.
const PIPELINE: usize = 500;
/// Largest body beanstalkd accepts by default (its `-z`), if `stats` does not say.
const MAX_BODY: usize = 65535;
/// Largest data block we read from the broker; a bigger one ends the connection (read whole,
/// never in part, so a reply can never be taken for the next one's start).
const MAX_READ: usize = 64 * 1024 * 1024;

/// Checks a tube name against beanstalkd's rules.
pub(crate) fn tube_name(name: &str) -> anyhow::Result<String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "-+/;.$_()".contains(c);
    if name.is_empty() || name.len() > 190 || name.starts_with('-') || !name.chars().all(ok) {
        bail!("bad beanstalk tube name {name:?}: letters, digits and -+/;.$_() only");
    }
    Ok(name.to_string())
}

/// One reply: its first line split into words, and its data block if it has one.
/// (Crate-visible, as is [`read_reply`], for the fuzz target, which includes this file.)
pub(crate) struct Reply {
    pub(crate) words: Vec<String>,
    pub(crate) data: Option<Vec<u8>>,
}

impl Reply {
    fn is(&self, word: &str) -> bool {
        self.words.first().is_some_and(|w| w == word)
    }

    fn num(&self, i: usize) -> Result<u64, QueueError> {
        self.words
            .get(i)
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| self.unexpected())
    }

    fn unexpected(&self) -> QueueError {
        QueueError::Protocol(format!(
            "unexpected beanstalkd reply {:?}",
            self.words.join(" ")
        ))
    }

    /// One `key: value` line of a stats reply.
    fn field(&self, key: &str) -> Option<&str> {
        let text = std::str::from_utf8(self.data.as_deref()?).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(": ").map(str::trim))
    }

    /// `key: value` lines of a stats reply.
    fn yaml(&self) -> HashMap<String, String> {
        let text = String::from_utf8_lossy(self.data.as_deref().unwrap_or_default());
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    }
}

/// Socket buffers: a pipeline of puts is a few hundred KiB, written in few system calls.
const IO_BUFFER: usize = 64 * 1024;

/// A connection, its halves apart so that a pipeline is written while its replies are read.
struct Conn {
    rd: BufReader<OwnedReadHalf>,
    wr: BufWriter<OwnedWriteHalf>,
    /// The broker's `max-job-size`: bigger bodies are refused before they are sent.
    max_job: usize,
}

impl Conn {
    async fn open(addr: &str, tube: &str) -> Result<Conn, QueueError> {
        let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
            .await
            .map_err(|_| unavailable(format!("connecting to {addr} timed out")))?
            .map_err(|e| unavailable(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let mut c = Conn::new(stream);
        let setup = [
            format!("use {tube}"),
            format!("watch {tube}"),
            "ignore default".into(),
            "stats".into(),
        ];
        let mut replies = c
            .exchange(setup.iter().map(|s| s.as_bytes().to_vec()).collect())
            .await?;
        let stats = replies.pop().filter(|r| r.is("OK"));
        for r in replies {
            if !(r.is("USING") || r.is("WATCHING")) {
                return Err(r.unexpected());
            }
        }
        if let Some(n) = stats.and_then(|r| r.yaml().get("max-job-size")?.parse().ok()) {
            c.max_job = n;
        }
        Ok(c)
    }

    fn new(stream: TcpStream) -> Conn {
        let (rd, wr) = stream.into_split();
        Conn {
            rd: BufReader::with_capacity(IO_BUFFER, rd),
            wr: BufWriter::with_capacity(IO_BUFFER, wr),
            max_job: MAX_BODY,
        }
    }

    /// Sends the commands (each a full request without its final CRLF) and reads the replies.
    async fn exchange(&mut self, cmds: Vec<Vec<u8>>) -> Result<Vec<Reply>, QueueError> {
        let mut out = Vec::with_capacity(cmds.len());
        for chunk in cmds.chunks(PIPELINE) {
            // The limit is per chunk, so long batches on a busy broker are not cut off.
            match tokio::time::timeout(IO_LIMIT, self.round_trip(chunk, &mut out)).await {
                Ok(r) => r.map_err(unavailable)?,
                Err(_) => return Err(unavailable("beanstalkd stopped answering")),
            }
        }
        Ok(out)
    }

    /// Writes the chunk while reading its replies: the broker works on the first commands
    /// while the rest are on their way, and big replies (`peek`) never stall the writer.
    async fn round_trip(&mut self, chunk: &[Vec<u8>], out: &mut Vec<Reply>) -> std::io::Result<()> {
        let Conn { rd, wr, .. } = self;
        let write = async {
            for c in chunk {
                wr.write_all(c).await?;
                wr.write_all(b"\r\n").await?;
            }
            wr.flush().await
        };
        let read = async {
            for _ in chunk {
                out.push(read_reply(rd).await?);
            }
            Ok(())
        };
        tokio::try_join!(write, read).map(drop)
    }
}

/// Longest reply line we read: real ones are a few words (data comes in blocks), and a broker
/// that never sends a newline must not fill our memory.
const MAX_LINE: u64 = 4096;

/// Reads one reply: its line of words, then the data block the line announces.
pub(crate) async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(
    io: &mut R,
) -> std::io::Result<Reply> {
    let mut line = Vec::new();
    let n = (&mut *io)
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if n as u64 == MAX_LINE && line.last() != Some(&b'\n') {
        return Err(bad_data("a reply line over 4 KiB"));
    }
    let words: Vec<String> = String::from_utf8_lossy(&line)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let with_data = matches!(
        words.first().map(String::as_str),
        Some("RESERVED" | "FOUND" | "OK")
    );
    let mut data = None;
    if with_data {
        let n: usize = words
            .last()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| bad_data("a data reply without its length"))?;
        if n > MAX_READ {
            return Err(bad_data("a data block over 64 MiB"));
        }
        let mut buf = vec![0; n + 2];
        io.read_exact(&mut buf).await?;
        if !buf.ends_with(b"\r\n") {
            return Err(bad_data("a data block not ended by CRLF"));
        }
        buf.truncate(n);
        data = Some(buf);
    }
    Ok(Reply { words, data })
}

fn bad_data(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

pub(crate) struct Beanstalk {
    addr: String,
    tube: String,
    /// Everything but reservations and their settlement: put, stats, peeks, dead letters.
    conn: Mutex<Option<Conn>>,
    /// The connections that reserve jobs, and which job each holds.
    lessors: Mutex<Lessors>,
    /// What this client put (see "Duplicates"); held through a put, so puts take turns.
    put_ids: Mutex<PutIds>,
}

/// Reserving connections. beanstalkd lets only the connection that reserved a job delete,
/// touch, release or bury it, so each lease remembers its connection, and a connection that
/// holds leases never blocks in `reserve`: its acks would wait behind the reserve.
#[derive(Default)]
struct Lessors {
    slots: Vec<Lessor>,
    /// Lease handle (the job id) to the slot that holds it.
    owner: HashMap<String, usize>,
    /// Blocking reserves still in flight, left by callers whose wait ran out first: the next
    /// reserve takes over the oldest, so a job it gets is handed out, not stranded.
    waiting: Vec<Waiting>,
}

#[derive(Default)]
struct Lessor {
    /// `None` while closed (opened on next use) or while a blocking reserve holds it.
    conn: Option<Conn>,
    /// A blocking reserve has this connection.
    busy: bool,
    /// Leases held on this connection.
    held: usize,
}

/// A blocking `reserve-with-timeout` running in its own task; it hands back the connection
/// (none if it broke) and the reply.
struct Waiting {
    slot: usize,
    reply: oneshot::Receiver<(Option<Conn>, Result<Reply, QueueError>)>,
}

impl Lessors {
    /// Forgets a slot's connection and its leases: beanstalkd puts a closed connection's
    /// reserved jobs back on its own, so they are no longer ours to settle.
    fn lost(&mut self, slot: usize) {
        self.owner.retain(|_, s| *s != slot);
        if let Some(l) = self.slots.get_mut(slot) {
            *l = Lessor::default();
        }
    }

    /// Records leases taken on `slot`. A handle seen before (its lease ran out and the job
    /// came back) now belongs to this slot alone.
    fn own(&mut self, slot: usize, leases: &[Lease]) {
        for l in leases {
            if let Some(old) = self.owner.insert(l.handle.clone(), slot) {
                if let Some(s) = self.slots.get_mut(old) {
                    s.held = s.held.saturating_sub(1);
                }
            }
            if let Some(s) = self.slots.get_mut(slot) {
                s.held += 1;
            }
        }
    }

    /// Drops leases that are settled (deleted, released or buried).
    fn settled(&mut self, handles: &[&str]) {
        for h in handles {
            if let Some(slot) = self.owner.remove(*h) {
                if let Some(s) = self.slots.get_mut(slot) {
                    s.held = s.held.saturating_sub(1);
                }
            }
        }
    }

    /// The held leases grouped by slot, in their order; handles not held here are left out
    /// (their connection broke, so the job already went back to the queue).
    fn by_slot<'l>(&self, leases: &'l [Lease]) -> Vec<(usize, Vec<&'l Lease>)> {
        let mut groups: Vec<(usize, Vec<&Lease>)> = Vec::new();
        for l in leases {
            let Some(&slot) = self.owner.get(&l.handle) else {
                continue;
            };
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, g)) => g.push(l),
                None => groups.push((slot, vec![l])),
            }
        }
        groups
    }

    /// A free slot for a blocking reserve (holding nothing, not busy), opening one if the
    /// pool has room; `None` when every slot holds leases and the pool is full.
    fn free_slot(&mut self) -> Option<usize> {
        if let Some(i) = self.slots.iter().position(|l| !l.busy && l.held == 0) {
            return Some(i);
        }
        (self.slots.len() < MAX_LESSORS).then(|| {
            self.slots.push(Lessor::default());
            self.slots.len() - 1
        })
    }
}

/// Most reserving connections per client; past it, reserves poll on the least-loaded one.
const MAX_LESSORS: usize = 16;
/// Seconds one blocking reserve waits for a job: long enough that an idle worker sends one
/// command a second, short enough that a connection is back soon after a stop.
const BLOCK_SECS: u64 = 1;
/// Priority of every job we put (beanstalkd's default); release and bury keep it.
const PRI: u32 = 1024;

fn put_cmd(ttr: u64, body: &[u8]) -> Vec<u8> {
    let mut c = format!("put {PRI} 0 {ttr} {}\r\n", body.len()).into_bytes();
    c.extend_from_slice(body);
    c
}

/// `put` of a job, its body `ID\nJSON`; TTR = its lease.
fn job_put_cmd(p: &Pending) -> Vec<u8> {
    let ttr = p.lease.as_secs().max(1);
    let len = p.id.len() + 1 + p.body.len();
    let mut c = Vec::with_capacity(len + 40);
    c.extend_from_slice(format!("put {PRI} 0 {ttr} {len}\r\n").as_bytes());
    c.extend_from_slice(p.id.as_bytes());
    c.push(b'\n');
    c.extend_from_slice(&p.body);
    c
}

fn text(s: String) -> Vec<u8> {
    s.into_bytes()
}

/// Runs commands on the connection in `slot`, opening it first if needed. The connection is
/// out of the slot during the exchange, so one cut off half-way (its future dropped) or
/// broken is closed, never reused with replies still unread.
async fn on(
    slot: &mut Option<Conn>,
    addr: &str,
    tube: &str,
    cmds: Vec<Vec<u8>>,
) -> Result<Vec<Reply>, QueueError> {
    let mut conn = match slot.take() {
        Some(c) => c,
        None => Conn::open(addr, tube).await?,
    };
    let replies = conn.exchange(cmds).await?;
    *slot = Some(conn);
    Ok(replies)
}

/// One blocking reserve on its own task (see [`Waiting`]).
async fn wait_for_job(
    addr: String,
    tube: String,
    conn: Option<Conn>,
) -> (Option<Conn>, Result<Reply, QueueError>) {
    let reused = conn.is_some();
    let mut slot = conn;
    let cmd = || vec![text(format!("reserve-with-timeout {BLOCK_SECS}"))];
    let mut got = on(&mut slot, &addr, &tube, cmd()).await;
    if got.is_err() && reused {
        // A kept connection the broker closed (it restarted): one fresh try, so an outage
        // that is already over is not reported once per pooled connection.
        got = on(&mut slot, &addr, &tube, cmd()).await;
    }
    match got {
        Ok(mut r) => (slot, r.pop().ok_or_else(|| unavailable("no reply"))),
        Err(e) => (None, Err(e)),
    }
}

impl Beanstalk {
    pub(crate) fn new(addr: &str, tube: &str) -> Self {
        Beanstalk {
            addr: addr.to_string(),
            tube: tube.to_string(),
            conn: Mutex::new(None),
            lessors: Mutex::new(Lessors::default()),
            put_ids: Mutex::new(PutIds::default()),
        }
    }

    /// A client that keeps what it put in `file` between runs (`enqueue`: see
    /// [`ids::file_for`]), so the next run's duplicate check knows this run's jobs.
    pub(crate) fn remembering(addr: &str, tube: &str, file: std::path::PathBuf) -> Self {
        Beanstalk {
            put_ids: Mutex::new(PutIds::in_file(file)),
            ..Beanstalk::new(addr, tube)
        }
    }

    fn dead_tube(&self) -> String {
        format!("{}.dead", self.tube)
    }

    /// Runs commands on the shared connection, reconnecting first if it broke.
    async fn exchange(&self, cmds: Vec<Vec<u8>>) -> Result<Vec<Reply>, QueueError> {
        let mut slot = self.conn.lock().await;
        on(&mut slot, &self.addr, &self.tube, cmds).await
    }

    /// The connected broker's `max-job-size`.
    async fn max_job(&self) -> Result<usize, QueueError> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            *slot = Some(Conn::open(&self.addr, &self.tube).await?);
        }
        Ok(slot.as_ref().map_or(MAX_BODY, |c| c.max_job))
    }

    async fn one(&self, cmd: String) -> Result<Reply, QueueError> {
        self.exchange(vec![text(cmd)])
            .await?
            .pop()
            .ok_or_else(|| unavailable("no reply"))
    }

    /// Runs commands on a reserving connection; a failure forgets its leases.
    async fn on_lessor(
        &self,
        pool: &mut Lessors,
        slot: usize,
        cmds: Vec<Vec<u8>>,
    ) -> Result<Vec<Reply>, QueueError> {
        let Some(lessor) = pool.slots.get_mut(slot) else {
            return Err(unavailable("no such connection"));
        };
        let r = on(&mut lessor.conn, &self.addr, &self.tube, cmds).await;
        if r.is_err() {
            pool.lost(slot);
        }
        r
    }

    /// The jobs ready in `tube` with their bodies, oldest first. beanstalkd cannot list a
    /// tube, so every job id from the tube's first ready one to the newest is looked at.
    async fn ready_in(&self, tube: &str) -> Result<Vec<(u64, Vec<u8>)>, QueueError> {
        let stats = self.tube_stats(tube).await?;
        if count(&stats, "current-jobs-ready") == 0 {
            return Ok(Vec::new());
        }
        let r = self
            .exchange(vec![
                text(format!("use {tube}")),
                text("peek-ready".into()),
                text(format!("use {}", self.tube)),
            ])
            .await?;
        let Some(first) = r.get(1).filter(|r| r.is("FOUND")) else {
            return Ok(Vec::new());
        };
        let lo = first.num(1)?;
        let hi = self.newest_id().await?;
        let states = self
            .exchange(
                (lo..=hi)
                    .map(|id| text(format!("stats-job {id}")))
                    .collect(),
            )
            .await?;
        let mine: Vec<u64> = (lo..=hi)
            .zip(&states)
            .filter(|(_, r)| {
                let y = r.yaml();
                y.get("tube").is_some_and(|t| t == tube)
                    && y.get("state").is_some_and(|s| s == "ready")
            })
            .map(|(id, _)| id)
            .collect();
        let bodies = self
            .exchange(mine.iter().map(|id| text(format!("peek {id}"))).collect())
            .await?;
        // A job deleted between the scan and its peek answers NOT_FOUND: skipped.
        Ok(mine
            .into_iter()
            .zip(bodies)
            .filter_map(|(id, r)| Some((id, r.data?)))
            .collect())
    }

    /// The highest job id so far: put and delete a marker in a side tube.
    async fn newest_id(&self) -> Result<u64, QueueError> {
        let r = self
            .exchange(vec![
                text(format!("use {}.seq", self.tube)),
                put_cmd(1, b""),
                text(format!("use {}", self.tube)),
            ])
            .await?;
        let id = r.get(1).ok_or_else(|| unavailable("no reply"))?.num(1)?;
        self.one(format!("delete {id}")).await?;
        Ok(id)
    }

    /// Of `jobs`, the ids whose copy this client put is still pending: in our tube, ready
    /// (or delayed) and still that job. A `stats-job` per remembered job, then a `peek` per
    /// one that is ready here: two exchanges, whatever the tube holds.
    async fn still_pending<'j>(
        &self,
        ids: &PutIds,
        jobs: &[&'j Pending],
    ) -> Result<HashSet<&'j str>, QueueError> {
        let asked: Vec<(&str, u64)> = jobs
            .iter()
            .filter_map(|p| Some((p.id.as_str(), ids.get(&p.id)?)))
            .collect();
        let cmds = asked
            .iter()
            .map(|(_, n)| text(format!("stats-job {n}")))
            .collect();
        let stats = self.exchange(cmds).await?;
        let ready: Vec<(&str, u64)> = asked
            .into_iter()
            .zip(&stats)
            .filter(|(_, r)| self.is_pending_here(r))
            .map(|(a, _)| a)
            .collect();
        // Still that check? Job ids start again when a broker without a binlog restarts.
        let cmds = ready
            .iter()
            .map(|(_, n)| text(format!("peek {n}")))
            .collect();
        let peeks = self.exchange(cmds).await?;
        Ok(ready
            .into_iter()
            .zip(&peeks)
            .filter(|((id, _), peek)| {
                peek.is("FOUND")
                    && peek
                        .data
                        .as_deref()
                        .and_then(split_body)
                        .is_some_and(|(found, _)| found == *id)
            })
            .map(|((id, _), _)| id)
            .collect())
    }

    /// A `stats-job` reply of a job in our tube waiting to be reserved.
    fn is_pending_here(&self, stats: &Reply) -> bool {
        stats.is("OK")
            && stats.field("tube") == Some(self.tube.as_str())
            && matches!(stats.field("state"), Some("ready" | "delayed"))
    }

    /// Puts `jobs` (each a new id), one pipeline at a time, noting beanstalkd's id for each
    /// as its reply comes, so a later failure forgets no job that went in before it.
    async fn put_new(
        &self,
        ids: &mut PutIds,
        jobs: &[&Pending],
        max: usize,
    ) -> Result<u64, QueueError> {
        let mut added = 0;
        for chunk in jobs.chunks(PIPELINE) {
            let cmds = chunk.iter().map(|p| job_put_cmd(p)).collect();
            for (p, r) in chunk.iter().zip(self.exchange(cmds).await?) {
                // beanstalkd reads and drops a body it finds too big: the framing holds.
                if r.is("JOB_TOO_BIG") {
                    return Err(QueueError::Refused(format!(
                        "a job is over beanstalkd's max-job-size of {max}"
                    )));
                }
                if !r.is("INSERTED") {
                    return Err(r.unexpected());
                }
                ids.insert(&p.id, r.num(1)?);
                added += 1;
            }
        }
        Ok(added)
    }

    /// Drops remembered jobs that are no longer pending here, once they have doubled since
    /// the last sweep. The batch's own (`batch`) were just asked about or put, so they are
    /// kept and not asked again. Housekeeping: a failure leaves them for the next time.
    async fn sweep(&self, ids: &mut PutIds, batch: &HashSet<&String>) {
        if !ids.sweep_due() {
            return;
        }
        let others: Vec<(String, u64)> = ids
            .entries()
            .into_iter()
            .filter(|(id, _)| !batch.contains(id))
            .collect();
        let cmds = others
            .iter()
            .map(|(_, n)| text(format!("stats-job {n}")))
            .collect();
        let Ok(replies) = self.exchange(cmds).await else {
            return;
        };
        let gone: HashSet<&str> = others
            .iter()
            .zip(&replies)
            .filter(|(_, r)| !self.is_pending_here(r))
            .map(|((id, _), _)| id.as_str())
            .collect();
        ids.swept(|id, _| !gone.contains(id));
    }

    /// Up to `max` jobs, waiting for the first on a blocking reserve (see [`Lessors`]).
    async fn reserve_blocking(&self, max: usize, wait: Duration) -> Result<Vec<Lease>, QueueError> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let Some(mut waiting) = self.start_waiting().await else {
                return self.reserve_polling(max, until).await;
            };
            let done = tokio::time::timeout_at(until, &mut waiting.reply).await;
            let mut pool = self.lessors.lock().await;
            let slot = waiting.slot;
            let (conn, reply) = match done {
                Err(_) => {
                    // Still waiting: the next reserve takes it over.
                    pool.waiting.push(waiting);
                    return Ok(Vec::new());
                }
                Ok(Err(_)) => (None, Err(unavailable("the reserving task ended"))),
                Ok(Ok(got)) => got,
            };
            match conn {
                Some(c) => {
                    if let Some(l) = pool.slots.get_mut(slot) {
                        l.conn = Some(c);
                        l.busy = false;
                    }
                }
                None => pool.lost(slot),
            }
            let reply = reply?;
            if reply.is("RESERVED") {
                let first = lease_of(&reply)?;
                return self.top_up(&mut pool, slot, vec![first], max).await;
            }
            if !reply.is("TIMED_OUT") {
                return Err(reply.unexpected());
            }
            self.nudge_holders(&mut pool).await;
            if tokio::time::Instant::now() >= until {
                return Ok(Vec::new());
            }
        }
    }

    /// Sends a no-op on each idle connection holding leases. beanstalkd (1.12) was seen to
    /// leave a reserved job past its TTR when its connection stayed silent after a `touch`
    /// while another connection waited; any command makes it look at the deadline again.
    async fn nudge_holders(&self, pool: &mut Lessors) {
        let idle: Vec<usize> = (0..pool.slots.len())
            .filter(|&i| pool.slots[i].held > 0 && pool.slots[i].conn.is_some())
            .collect();
        for slot in idle {
            // A failure forgets the slot's leases, as beanstalkd has put them back.
            let _ = self
                .on_lessor(pool, slot, vec![text("list-tube-used".into())])
                .await;
        }
    }

    /// A blocking reserve in flight to wait on: one left over, or a new one on a free slot;
    /// `None` when no slot is free.
    async fn start_waiting(&self) -> Option<Waiting> {
        let mut pool = self.lessors.lock().await;
        if !pool.waiting.is_empty() {
            return Some(pool.waiting.remove(0));
        }
        let slot = pool.free_slot()?;
        let lessor = pool.slots.get_mut(slot)?;
        lessor.busy = true;
        let conn = lessor.conn.take();
        let (tx, reply) = oneshot::channel();
        let (addr, tube) = (self.addr.clone(), self.tube.clone());
        tokio::spawn(async move {
            // Nobody listening (the client is gone): the connection closes, and beanstalkd
            // puts back whatever it reserved.
            let _ = tx.send(wait_for_job(addr, tube, conn).await);
        });
        Some(Waiting { slot, reply })
    }

    /// With every connection holding leases: polls on the least-loaded one until `until`.
    async fn reserve_polling(
        &self,
        max: usize,
        until: tokio::time::Instant,
    ) -> Result<Vec<Lease>, QueueError> {
        let mut nap = Duration::from_millis(5);
        loop {
            {
                let mut pool = self.lessors.lock().await;
                let slot = (0..pool.slots.len())
                    .filter(|&i| !pool.slots[i].busy)
                    .min_by_key(|&i| pool.slots[i].held);
                if let Some(slot) = slot {
                    let got = self.top_up(&mut pool, slot, Vec::new(), max).await?;
                    if !got.is_empty() {
                        return Ok(got);
                    }
                }
            }
            if tokio::time::Instant::now() + nap > until {
                return Ok(Vec::new());
            }
            tokio::time::sleep(nap).await;
            nap = (nap * 2).min(Duration::from_millis(100));
        }
    }

    /// Adds up to `max` leases in all to `got` without waiting, on `slot`, reads every
    /// lease's delivery count and records them as held there.
    async fn top_up(
        &self,
        pool: &mut Lessors,
        slot: usize,
        mut got: Vec<Lease>,
        max: usize,
    ) -> Result<Vec<Lease>, QueueError> {
        let more = max.max(1).saturating_sub(got.len());
        if more > 0 {
            let cmds = vec![text("reserve-with-timeout 0".into()); more];
            for r in self.on_lessor(pool, slot, cmds).await? {
                // DEADLINE_SOON: a lease held here is about to run out; no more for now.
                if r.is("RESERVED") {
                    got.push(lease_of(&r)?);
                } else if !(r.is("TIMED_OUT") || r.is("DEADLINE_SOON")) {
                    return Err(r.unexpected());
                }
            }
        }
        if got.is_empty() {
            return Ok(got);
        }
        // beanstalkd counts reservations itself (`reserves`, surviving TTR expiry and
        // release); a scan by `enqueue` reserves too, and kicks each job once to say so.
        let cmds = got
            .iter()
            .map(|l| text(format!("stats-job {}", l.handle)))
            .collect();
        let stats = self.on_lessor(pool, slot, cmds).await?;
        for (lease, s) in got.iter_mut().zip(&stats) {
            let y = s.yaml();
            let n = count(&y, "reserves").saturating_sub(count(&y, "kicks"));
            lease.deliveries = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        }
        pool.own(slot, &got);
        Ok(got)
    }

    /// Sends one command per lease (built by `cmd`) on the connection holding it; with
    /// `settles`, the leases are no longer held afterwards.
    async fn to_holders(
        &self,
        leases: &[Lease],
        settles: bool,
        cmd: impl Fn(&Lease) -> String,
    ) -> Result<(), QueueError> {
        let mut pool = self.lessors.lock().await;
        let groups = pool.by_slot(leases);
        let mut orphans = leases.len() - groups.iter().map(|(_, g)| g.len()).sum::<usize>();
        for (slot, group) in groups {
            let cmds = group.iter().map(|l| text(cmd(l))).collect();
            // NOT_FOUND: the lease ran out and the job went back; nothing more to do.
            match self.on_lessor(&mut pool, slot, cmds).await {
                Ok(_) if settles => {
                    let handles: Vec<&str> = group.iter().map(|l| l.handle.as_str()).collect();
                    pool.settled(&handles);
                }
                Ok(_) => {}
                Err(_) => orphans += group.len(),
            }
        }
        drop(pool);
        if orphans == 0 {
            return Ok(());
        }
        // Leases whose connection broke: beanstalkd has put their jobs back, so nothing is
        // left to settle, but whether the broker is there decides the outage: ask it.
        self.exchange(vec![text("list-tube-used".into())])
            .await
            .map(drop)
    }

    /// Deletes every job `peek_cmd` finds in `tube`; returns how many.
    async fn delete_all(&self, tube: &str, peek_cmd: &str) -> Result<u64, QueueError> {
        let mut n = 0;
        loop {
            let r = self
                .exchange(vec![text(format!("use {tube}")), text(peek_cmd.into())])
                .await?;
            let found = r
                .get(1)
                .filter(|r| r.is("FOUND"))
                .map(|r| r.num(1))
                .transpose()?;
            let Some(id) = found else { break };
            self.one(format!("delete {id}")).await?;
            n += 1;
        }
        self.one(format!("use {}", self.tube)).await?;
        Ok(n)
    }

    async fn tube_stats(&self, tube: &str) -> Result<HashMap<String, String>, QueueError> {
        let r = self.one(format!("stats-tube {tube}")).await?;
        Ok(if r.is("OK") { r.yaml() } else { HashMap::new() })
    }

    async fn oldest(&self) -> Result<Option<Duration>, QueueError> {
        let r = self.one("peek-ready".into()).await?;
        if !r.is("FOUND") {
            return Ok(None);
        }
        let s = self.one(format!("stats-job {}", r.num(1)?)).await?;
        Ok(s.yaml()
            .get("age")
            .and_then(|a| a.parse().ok())
            .map(Duration::from_secs))
    }
}

/// The lease in a RESERVED reply: handle = job id, body without our id line.
fn lease_of(r: &Reply) -> Result<Lease, QueueError> {
    let data = r.data.clone().unwrap_or_default();
    let body = split_body(&data).map_or(data.clone(), |(_, b)| b.to_vec());
    Ok(Lease {
        handle: r.num(1)?.to_string(),
        body,
        deliveries: 1,
    })
}

/// A body over the broker's `max-job-size`, refused before anything is sent (beanstalkd would
/// answer JOB_TOO_BIG), named by the line it came from.
fn too_big(p: &Pending, size: usize, max: usize) -> QueueError {
    let at = custodian_core::queue::decode(&p.body).map_or_else(
        |_| format!("job {}", p.id),
        |j| format!("{}:{}", j.file, j.lineno),
    );
    QueueError::Refused(format!(
        "{at}: the job is {size} bytes, over beanstalkd's max-job-size of {max} (raise it with beanstalkd -z)"
    ))
}

/// Splits a stored body `ID\nJSON`.
fn split_body(data: &[u8]) -> Option<(String, &[u8])> {
    let nl = data.iter().position(|&b| b == b'\n')?;
    Some((
        String::from_utf8_lossy(&data[..nl]).into_owned(),
        &data[nl + 1..],
    ))
}

fn count(y: &HashMap<String, String>, key: &str) -> u64 {
    y.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl JobQueue for Beanstalk {
    fn put<'a>(&'a self, jobs: &'a [Pending]) -> QueueFuture<'a, PutReport> {
        Box::pin(async move {
            // All or nothing: every size is checked before the first job is sent.
            let max = self.max_job().await?;
            if let Some(p) = jobs.iter().find(|p| p.id.len() + 1 + p.body.len() > max) {
                return Err(too_big(p, p.id.len() + 1 + p.body.len(), max));
            }
            let mut ids = self.put_ids.lock().await;
            if let Err(e) = ids.load() {
                tracing::warn!("forgetting what earlier runs put (duplicates possible): {e}");
            }
            // The first of each id in the batch; a later twin is a duplicate already.
            let mut seen = HashSet::with_capacity(jobs.len());
            let firsts: Vec<&Pending> = jobs.iter().filter(|p| seen.insert(&p.id)).collect();
            let pending = self.still_pending(&ids, &firsts).await?;
            let new: Vec<&Pending> = firsts
                .into_iter()
                .filter(|p| !pending.contains(p.id.as_str()))
                .collect();
            let added = self.put_new(&mut ids, &new, max).await;
            if added.is_ok() {
                self.sweep(&mut ids, &seen).await;
            }
            // Even after a failure: the jobs that went in are known to the retry.
            if let Err(e) = ids.save() {
                tracing::warn!("keeping what this run put (the next may add duplicates): {e}");
            }
            let added = added?;
            Ok(PutReport {
                added,
                duplicates: jobs.len() as u64 - added,
            })
        })
    }

    fn reserve(&self, max: usize, wait: Duration) -> QueueFuture<'_, Vec<Lease>> {
        Box::pin(self.reserve_blocking(max, wait))
    }

    fn ack<'a>(&'a self, leases: &'a [Lease]) -> QueueFuture<'a, ()> {
        Box::pin(self.to_holders(leases, true, |l| format!("delete {}", l.handle)))
    }

    fn touch<'a>(&'a self, leases: &'a [Lease]) -> QueueFuture<'a, ()> {
        Box::pin(self.to_holders(leases, false, |l| format!("touch {}", l.handle)))
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        Box::pin(self.to_holders(std::slice::from_ref(lease), true, |l| {
            format!("release {} {PRI} 0", l.handle)
        }))
    }

    fn bury<'a>(&'a self, lease: &'a Lease, reason: &'a str) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let mut letter = serde_json::json!({
                "reason": reason,
                "body": String::from_utf8_lossy(&lease.body),
            });
            // A letter the broker would refuse as too big keeps its reason, not its body.
            let max = self.max_job().await?;
            if letter.to_string().len() > max {
                letter = serde_json::json!({
                    "reason": format!(
                        "{reason} (body of {} bytes dropped: over max-job-size {max})",
                        lease.body.len()
                    ),
                    "body": "",
                });
            }
            // The letter first: a failure between the two leaves the job to come back, not lost.
            let r = self
                .exchange(vec![
                    text(format!("use {}", self.dead_tube())),
                    put_cmd(1, letter.to_string().as_bytes()),
                    text(format!("use {}", self.tube)),
                ])
                .await?;
            match r.get(1) {
                Some(put) if put.is("INSERTED") => {}
                Some(other) => return Err(other.unexpected()),
                None => return Err(unavailable("no reply")),
            }
            self.to_holders(std::slice::from_ref(lease), true, |l| {
                format!("delete {}", l.handle)
            })
            .await
        })
    }

    fn dead(&self) -> QueueFuture<'_, Vec<DeadLetter>> {
        Box::pin(async move {
            let letters = self.ready_in(&self.dead_tube()).await?;
            Ok(letters
                .into_iter()
                .map(|(id, raw)| DeadLetter::parse(id.to_string(), &raw))
                .collect())
        })
    }

    fn drop_dead<'a>(&'a self, letters: &'a [DeadLetter]) -> QueueFuture<'a, u64> {
        Box::pin(async move {
            let cmds = letters
                .iter()
                .map(|l| text(format!("delete {}", l.handle)))
                .collect();
            let replies = self.exchange(cmds).await?;
            Ok(replies.iter().filter(|r| r.is("DELETED")).count() as u64)
        })
    }

    fn stats(&self) -> QueueFuture<'_, QueueStats> {
        Box::pin(async move {
            let main = self.tube_stats(&self.tube).await?;
            let dead = self.tube_stats(&self.dead_tube()).await?;
            Ok(QueueStats {
                pending: count(&main, "current-jobs-ready") + count(&main, "current-jobs-delayed"),
                reserved: count(&main, "current-jobs-reserved"),
                buried: count(&main, "current-jobs-buried") + count(&dead, "current-jobs-ready"),
                oldest: self.oldest().await?,
            })
        })
    }

    fn flush(&self) -> QueueFuture<'_, u64> {
        Box::pin(async move {
            let mut n = 0;
            for peek in ["peek-ready", "peek-delayed", "peek-buried"] {
                n += self.delete_all(&self.tube, peek).await?;
            }
            n += self.delete_all(&self.dead_tube(), "peek-ready").await?;
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
    use std::sync::Arc;

    #[test]
    fn tube_names_follow_beanstalkd_rules() {
        assert_eq!(tube_name("custodian").ok().as_deref(), Some("custodian"));
        assert!(tube_name("night.run_2").is_ok());
        assert!(tube_name("-x").is_err());
        assert!(tube_name("a b").is_err());
        assert!(tube_name("").is_err());
    }

    /// A data block over 1 MiB is read whole: the next reply starts where it should.
    #[tokio::test]
    async fn a_big_data_block_keeps_the_framing() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let big = vec![b'x'; 1_500_000];
        let mut wire = format!("FOUND 1 {}\r\n", big.len()).into_bytes();
        wire.extend_from_slice(&big);
        wire.extend_from_slice(b"\r\nFOUND 2 3\r\nabc\r\n");
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let _ = s.write_all(&wire).await;
            let mut sink = [0u8; 64];
            let _ = s.read(&mut sink).await;
        });
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut c = Conn::new(stream);
        let first = read_reply(&mut c.rd).await.expect("first reply");
        assert_eq!(first.data.map(|d| d.len()), Some(1_500_000));
        let second = read_reply(&mut c.rd).await.expect("second reply");
        assert!(second.is("FOUND"));
        assert_eq!(second.data.as_deref(), Some(&b"abc"[..]));
    }

    /// A job over the peer's max-job-size is refused before sending, naming its line, and the
    /// same client goes on putting and counting jobs.
    #[tokio::test]
    async fn an_oversized_job_is_refused_and_the_connection_goes_on() {
        let addr = custodian_testpeers::peers().get("beanstalk");
        let q = Beanstalk::new(addr, "oversize-unit");
        q.flush().await.expect("flush");
        let job = |port: u16, content: &str| {
            let mut j = custodian_core::Job::new("tcp", "127.0.0.1", Some(port));
            j.file = "big.cfg".into();
            j.lineno = u32::from(port);
            j.options.insert("content".into(), content.into());
            custodian_core::queue::encode(&j, Duration::from_secs(30))
        };
        let huge = job(2, &"x".repeat(70_000));
        let small = job(3, "ok");
        let refused = q.put(&[small.clone(), huge]).await;
        match refused {
            Err(QueueError::Refused(why)) => {
                assert!(why.contains("big.cfg:2"), "{why}");
                assert!(why.contains("max-job-size"), "{why}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(q.stats().await.expect("stats").pending, 0);
        let put = q.put(&[small]).await.expect("put after refusal");
        assert_eq!(put.added, 1);
        assert_eq!(q.stats().await.expect("stats").pending, 1);
        assert_eq!(q.flush().await.expect("flush"), 1);
    }

    /// A TCP proxy to `to` that counts the commands clients send through it (a `put`'s body
    /// is part of its command).
    async fn counting_proxy(to: &str) -> (String, Arc<AtomicU64>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let count = Arc::new(AtomicU64::new(0));
        let (to, n) = (to.to_string(), Arc::clone(&count));
        tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                let server = TcpStream::connect(&to).await.expect("connect");
                let (cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
                let n = Arc::clone(&n);
                tokio::spawn(async move {
                    let mut cr = tokio::io::BufReader::new(cr);
                    let mut line = Vec::new();
                    while matches!(cr.read_until(b'\n', &mut line).await, Ok(1..)) {
                        let text = String::from_utf8_lossy(&line).to_string();
                        if text.starts_with("put ") {
                            let len: usize = text
                                .split_whitespace()
                                .last()
                                .map_or(0, |w| w.parse().expect("put length"));
                            let mut body = vec![0; len + 2];
                            cr.read_exact(&mut body).await.expect("body");
                            line.extend_from_slice(&body);
                        }
                        n.fetch_add(1, AtomicOrdering::SeqCst);
                        if sw.write_all(&line).await.is_err() {
                            break;
                        }
                        line.clear();
                    }
                });
            }
        });
        (addr, count)
    }

    fn jobs(ports: std::ops::Range<u16>) -> Vec<Pending> {
        ports
            .map(|p| {
                let j = custodian_core::Job::new("tcp", "127.0.0.1", Some(p));
                custodian_core::queue::encode(&j, Duration::from_secs(60))
            })
            .collect()
    }

    /// Commands a put of 5 jobs (2 pending, 3 new) costs with `holding` jobs on the tube, all
    /// put by this client, and as many put by another one on the same tube.
    async fn cost_of_a_put(holding: u16) -> u64 {
        let peer = custodian_testpeers::peers().get("beanstalk");
        let tube = format!("bounded-{}-{holding}", std::process::id());
        let (proxy, count) = counting_proxy(peer).await;
        let q = Beanstalk::new(&proxy, &tube);
        let other = Beanstalk::new(peer, &tube);
        q.flush().await.expect("flush");
        q.put(&jobs(0..holding)).await.expect("fill");
        other
            .put(&jobs(30_000..30_000 + holding))
            .await
            .expect("fill");
        let before = count.load(AtomicOrdering::SeqCst);
        let r = q.put(&jobs(holding - 2..holding + 3)).await.expect("put");
        let cost = count.load(AtomicOrdering::SeqCst) - before;
        assert_eq!((r.added, r.duplicates), (3, 2), "holding {holding}");
        assert_eq!(q.flush().await.expect("flush"), 2 * u64::from(holding) + 3);
        cost
    }

    /// Issue 12: a put's cost does not grow with the tube. Two commands per remembered job
    /// (`stats-job`, `peek`) and one `put` per new one, with 10 jobs or 10,000 on the tube.
    #[tokio::test]
    async fn a_puts_cost_does_not_grow_with_the_tube() {
        assert_eq!(cost_of_a_put(10).await, 2 * 2 + 3);
        assert_eq!(cost_of_a_put(10_000).await, 2 * 2 + 3);
    }

    /// `enqueue`'s memory outlives the client: a second run skips what the first put while it
    /// is pending, puts again what a worker took, and never trusts an id that now names
    /// another job (a broker restarted without its binlog numbers jobs from 1 again).
    #[tokio::test]
    async fn the_file_carries_what_was_put_to_the_next_run() {
        let peer = custodian_testpeers::peers().get("beanstalk");
        let tube = format!("remember-{}", std::process::id());
        let dir = tempfile::tempdir().expect("tempdir");
        let file = file_for(&dir.path().join("state.json"), peer, &tube);
        let run = || Beanstalk::remembering(peer, &tube, file.clone());
        let first = run();
        first.flush().await.expect("flush");
        assert_eq!(first.put(&jobs(1..4)).await.expect("put").added, 3);
        let r = run().put(&jobs(1..5)).await.expect("put");
        assert_eq!((r.added, r.duplicates), (1, 3));
        // A worker takes the first job: no longer pending, so it is put again.
        let taken = first
            .reserve(1, Duration::from_secs(1))
            .await
            .expect("take");
        assert_eq!(taken.len(), 1);
        let r = run().put(&jobs(1..5)).await.expect("put");
        assert_eq!((r.added, r.duplicates), (1, 3));
        first.ack(&taken).await.expect("ack");
        // Point job 4's entry at job 2's copy: job 4 is not taken for pending.
        let text = std::fs::read_to_string(&file).expect("file");
        let id_of = |port| jobs(port..port + 1)[0].id.clone();
        let job_of = |id: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{id} ")).map(str::to_string))
                .expect("entry")
        };
        let forged = text.replace(
            &format!("{} {}", id_of(4), job_of(&id_of(4))),
            &format!("{} {}", id_of(4), job_of(&id_of(2))),
        );
        assert_ne!(forged, text);
        std::fs::write(&file, forged).expect("write");
        let r = run().put(&jobs(4..5)).await.expect("put");
        assert_eq!((r.added, r.duplicates), (1, 0));
        assert_eq!(first.flush().await.expect("flush"), 5);
    }

    #[test]
    fn bodies_carry_their_id_first() {
        assert_eq!(
            split_body(b"abc\n{\"v\":1}"),
            Some(("abc".into(), &b"{\"v\":1}"[..]))
        );
        assert_eq!(split_body(b"no newline"), None);
    }

    /// Random and mutated replies, read back to back as a pipeline reads them: never a panic,
    /// and data blocks never longer than the bytes they came from.
    #[tokio::test]
    async fn fuzzed_replies_never_panic() {
        let seeds: [&[u8]; 4] = [
            b"RESERVED 7 9\r\n1\n{\"a\":1}\r\nDELETED\r\n",
            b"OK 38\r\n---\nmax-job-size: 65535\ncurrent-jobs-ready: 2\n\r\n",
            b"USING custodian\r\nWATCHING 2\r\nFOUND 3 0\r\n\r\n",
            b"NOT_FOUND\r\nTIMED_OUT\r\nINSERTED 12\r\n",
        ];
        let mut data = 0;
        for input in custodian_testpeers::fuzz::collect(0xbea, &seeds) {
            let mut io = input.as_slice();
            while let Ok(r) = read_reply(&mut io).await {
                assert!(!r.words.is_empty() || r.data.is_none());
                if let Some(d) = r.data {
                    data += 1;
                    assert!(d.len() < input.len());
                }
            }
        }
        assert!(data > 0);
    }

    #[tokio::test]
    async fn endless_reply_lines_are_refused() {
        let long = vec![b'A'; 10_000];
        let e = read_reply(&mut long.as_slice())
            .await
            .err()
            .expect("too long");
        assert_eq!(e.to_string(), "a reply line over 4 KiB");
        let r = read_reply(&mut b"INSERTED 5\r\n".as_slice())
            .await
            .expect("read");
        assert!(r.is("INSERTED") && r.num(1).ok() == Some(5));
    }
}
