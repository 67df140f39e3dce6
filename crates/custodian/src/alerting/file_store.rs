//! Check states in a local JSON file, for `custodian run` (and a worker without Redis).
//!
//! One writer task per store applies results in batches. Each batch holds an advisory lock on
//! `<state_file>.lock` while it re-reads the file, steps the states and writes them back
//! atomically (a temporary file unique to the process and write, fsync, rename, fsync of the
//! directory). So overlapping `run`s from cron merge their updates instead of overwriting each
//! other's, and nothing is kept in memory that the file does not say: a result's notice is
//! returned only after its state change is on disk, or together with why it is not.
//!
//! The content this writer last wrote is kept, with the file's identity at that moment, and
//! used instead of re-reading while the file is still that one (a long-lived `serve` or
//! worker is then not parsing its whole file for every batch): any other writer replaces the
//! file by rename, so it has another inode and is read again.

use super::outbox::{parcel_id, Claim, Parcel};
use super::{Applied, StateStore};
use anyhow::{anyhow, bail, Context, Result};
use custodian_core::state::{AlertEvent, CheckState, Policy};
use custodian_core::JobResult;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// States by check id.
type States = BTreeMap<String, CheckState>;

/// The file's content: the states, and the notices not yet delivered (the outbox).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Content {
    states: States,
    #[serde(default)]
    outbox: BTreeMap<String, Parcel>,
}

/// One request waiting for the writer.
enum Request {
    /// Step a result, storing its notice as a parcel claimed by `claim`.
    Apply {
        result: JobResult,
        now: u64,
        claim: Claim,
        reply: oneshot::Sender<Applied>,
    },
    /// A parcel was delivered: remove it.
    Delivered {
        id: String,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Renew the claims on `owned`; claim and return the abandoned parcels.
    Sweep {
        now: u64,
        claim: Claim,
        owned: HashSet<String>,
        reply: oneshot::Sender<Result<Vec<(String, AlertEvent)>>>,
    },
}

pub(crate) struct FileStore {
    path: PathBuf,
    /// To the writer task; unbounded because `Alerting` already bounds the results in flight.
    requests: mpsc::UnboundedSender<Request>,
}

impl FileStore {
    /// A store over `path`, which is read under the lock for every batch (a missing file is an
    /// empty one). Starts the writer task, so it must be called inside the runtime.
    pub(crate) fn open(path: &Path, policy: Policy) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(path.to_path_buf(), policy, rx));
        FileStore {
            path: path.to_path_buf(),
            requests,
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let gone = || anyhow!("the writer of {} has stopped", self.path.display());
        self.requests.send(make(reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

/// The only writer of this process: takes every request waiting, commits them as one batch.
async fn writer(path: PathBuf, policy: Policy, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut written: Option<Written> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let path = path.clone();
        // Locking, reading and fsync block: they run off the async workers. A panicking
        // commit drops its requests: their callers see the writer gone (and the kept content
        // is gone with it, so the file is read next time).
        written = tokio::task::spawn_blocking(move || commit(&path, &policy, batch, written))
            .await
            .unwrap_or(None);
    }
}

/// What this writer last put in the file, and which file that was.
struct Written {
    content: Content,
    stamp: Stamp,
}

/// A file's identity and version: device, inode, size and modification time. A rename by
/// another writer changes the inode; an edit in place changes the size or the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(u64, u64, u64, i64, i64);

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Stamp(
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
        )
    }
}

/// What a request's reply will be, decided before the write and sent after it.
enum Answer {
    Applied(oneshot::Sender<Applied>, Box<Applied>),
    Done(oneshot::Sender<Result<()>>),
    Swept(
        oneshot::Sender<Result<Vec<(String, AlertEvent)>>>,
        Vec<(String, AlertEvent)>,
    ),
}

/// Carries out every request of `batch` against the file's current content and writes it
/// back, all under the lock; replies once the write is done. When any of that fails, results
/// still get their notices (stepped from what could be read) with `unsaved` set and no
/// parcel, and the file keeps what it had. The current content is `last` when the file is
/// still the one it describes, else read; returns what was written, when it was.
fn commit(
    path: &Path,
    policy: &Policy,
    batch: Vec<Request>,
    last: Option<Written>,
) -> Option<Written> {
    let lock = lock(path);
    let now_on_disk = std::fs::metadata(path).ok().map(|m| Stamp::of(&m));
    let kept = last.filter(|w| lock.is_ok() && Some(w.stamp) == now_on_disk);
    let (mut content, read) = match kept {
        Some(w) => (w.content, Ok(())),
        None => match read(path) {
            Ok(content) => (content, Ok(())),
            Err(e) => (Content::default(), Err(e)),
        },
    };
    let answers: Vec<Answer> = batch
        .into_iter()
        .map(|req| match req {
            Request::Apply {
                result,
                now,
                claim,
                reply,
            } => {
                let st = content.states.entry(result.id.clone()).or_default();
                let mut applied = Applied::step(st, policy, &result, now);
                if let Some(event) = &applied.event {
                    let id = parcel_id(now);
                    let parcel = Parcel {
                        event: event.clone(),
                        claim,
                    };
                    content.outbox.insert(id.clone(), parcel);
                    applied.parcel = Some(id);
                }
                Answer::Applied(reply, Box::new(applied))
            }
            Request::Delivered { id, reply } => {
                content.outbox.remove(&id);
                Answer::Done(reply)
            }
            Request::Sweep {
                now,
                claim,
                owned,
                reply,
            } => {
                let mut taken = Vec::new();
                for (id, parcel) in &mut content.outbox {
                    if owned.contains(id) {
                        parcel.claim = claim.clone();
                    } else if parcel.claim.abandoned(now, &claim) {
                        parcel.claim = claim.clone();
                        taken.push((id.clone(), parcel.event.clone()));
                    }
                }
                Answer::Swept(reply, taken)
            }
        })
        .collect();
    let saved = lock
        .as_ref()
        .map(|_| ())
        .map_err(|e| anyhow!("{e:#}"))
        .and(read)
        .and_then(|()| write(path, &content));
    drop(lock);
    let (written, why) = match saved {
        Ok(stamp) => (Some(Written { content, stamp }), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    for answer in answers {
        // A caller may have given up waiting; nothing to do then.
        match (answer, &why) {
            (Answer::Applied(reply, a), None) => {
                let _ = reply.send(*a);
            }
            (Answer::Applied(reply, mut a), Some(why)) => {
                a.unsaved = Some(anyhow!("{why}"));
                a.parcel = None;
                let _ = reply.send(*a);
            }
            (Answer::Done(reply), why) => {
                let _ = reply.send(why.as_ref().map_or(Ok(()), |w| Err(anyhow!("{w}"))));
            }
            (Answer::Swept(reply, taken), why) => {
                let _ = reply.send(why.as_ref().map_or(Ok(taken), |w| Err(anyhow!("{w}"))));
            }
        }
    }
    written
}

/// `<state_file>.lock`: a separate file, since the state file itself is replaced by rename.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The state file's directory ("." for a bare name).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Takes the exclusive lock shared by every process using `path`; held until the file drops.
fn lock(path: &Path) -> Result<File> {
    let dir = dir_of(path);
    if dir.exists() && !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lp = lock_path(path);
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lp)
        .with_context(|| format!("opening {}", lp.display()))?;
    // flock(2) through libc, which std's `File::lock` (Rust 1.89, our MSRV) also uses; the
    // loop retries EINTR explicitly. flock is advisory and released when the file is closed, also when
    // the process dies, so a killed run never leaves a stale lock behind.
    loop {
        // SAFETY: the descriptor is owned by `f`, open for the whole call.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("locking {}", lp.display()));
        }
    }
}

/// The content on disk: a missing file is empty; a file of an earlier version (states only)
/// is read as such; an unparsable one starts afresh (with a warning) so that one bad file
/// never stops alerting for good; an unreadable one is an error, so that it is not
/// overwritten with nothing.
fn read(path: &Path) -> Result<Content> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes)
            .or_else(|_| {
                serde_json::from_slice::<States>(&bytes).map(|states| Content {
                    states,
                    ..Content::default()
                })
            })
            .unwrap_or_else(|e| {
                tracing::warn!(
                    "state file {} is unreadable ({e}); starting afresh",
                    path.display()
                );
                Content::default()
            })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Content::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Makes temporary names unique among this process's writes (with the pid: among processes).
static WRITES: AtomicU64 = AtomicU64::new(0);

/// A new temporary file next to `path` (same filesystem, so the rename is atomic).
fn temp_file(path: &Path) -> Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .with_context(|| format!("state file {} has no file name", path.display()))?;
    let tmp = dir_of(path).join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    Ok((tmp, f))
}

/// Replaces the file with `content`, durably: the data is synced before the rename and the
/// directory after it, so a crash leaves either the old file or the new one. Returns the new
/// file's stamp.
fn write(path: &Path, content: &Content) -> Result<Stamp> {
    let text = serde_json::to_vec_pretty(content)?;
    let (tmp, mut f) = temp_file(path)?;
    let written = f
        .write_all(&text)
        .and_then(|()| f.sync_all())
        .and_then(|()| f.metadata())
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|meta| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
                .map(|()| Stamp::of(&meta))
        });
    if written.is_err() {
        // Best effort: the write already failed, a leftover is only untidy.
        let _ = std::fs::remove_file(&tmp);
    }
    let stamp = written?;
    let dir = dir_of(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(stamp)
}

impl StateStore for FileStore {
    fn apply<'a>(
        &'a self,
        result: &'a JobResult,
        now: u64,
        claim: &'a Claim,
    ) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(self.ask(move |reply| Request::Apply {
            result: result.clone(),
            now,
            claim: claim.clone(),
            reply,
        }))
    }

    fn delivered<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.ask(|reply| Request::Delivered {
                id: id.to_string(),
                reply,
            })
            .await?
        })
    }

    fn sweep<'a>(
        &'a self,
        now: u64,
        claim: &'a Claim,
        owned: HashSet<String>,
    ) -> BoxFuture<'a, Result<Vec<(String, AlertEvent)>>> {
        Box::pin(async move {
            self.ask(move |reply| Request::Sweep {
                now,
                claim: claim.clone(),
                owned,
                reply,
            })
            .await?
        })
    }

    /// The directory can be created and written, and the lock taken: checked at start so that
    /// an unusable location is an error then, not a silent loss of every state change.
    fn ready(&self) -> Result<()> {
        let unusable = || format!("state file {} cannot be used", self.path.display());
        let _lock = lock(&self.path).with_context(unusable)?;
        let (tmp, _f) = temp_file(&self.path).with_context(unusable)?;
        std::fs::remove_file(&tmp)
            .with_context(|| format!("removing {}", tmp.display()))
            .with_context(unusable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_core::state::EventKind;
    use custodian_core::{Job, Status};

    fn result(port: u16, status: Status) -> JobResult {
        JobResult::new(
            &Job::new("tcp", "127.0.0.1", Some(port)),
            status,
            None,
            1,
            1,
        )
    }

    fn kind(a: Result<Applied>) -> Option<EventKind> {
        let a = a.expect("apply");
        assert!(a.unsaved.is_none(), "{:?}", a.unsaved);
        a.event.map(|e| e.kind)
    }

    #[tokio::test]
    async fn states_survive_between_runs_and_writes_are_atomic() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub/state.json");
        let mut kinds = Vec::new();
        // Four cron runs: fail, fail, fail, pass.
        for (t, status) in [
            (0, Status::Failed),
            (60, Status::Failed),
            (120, Status::Failed),
            (180, Status::Passed),
        ] {
            let store = FileStore::open(&path, Policy::default());
            kinds.extend(kind(
                store.apply(&result(9, status), t, &Claim::mine(t)).await,
            ));
        }
        assert_eq!(kinds, [EventKind::Raise, EventKind::Clear]);
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["state.json", "state.json.lock"],
            "no temporary file left behind"
        );
    }

    #[tokio::test]
    async fn a_corrupt_file_starts_afresh() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").expect("write");
        let store = FileStore::open(&path, Policy::default());
        let e = kind(
            store
                .apply(&result(9, Status::Failed), 5, &Claim::mine(5))
                .await,
        );
        assert_eq!(e, Some(EventKind::Raise));
    }

    /// 400 failing checks finished from 64 tasks at once (what a worker does): every one is
    /// raised and recorded, none lost to a clash of writers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_concurrent_results_are_all_raised_and_recorded() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.json");
        let store = std::sync::Arc::new(FileStore::open(&path, Policy::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..64u16 {
            let store = std::sync::Arc::clone(&store);
            tasks.spawn(async move {
                let mut raises = 0;
                for port in (1..=400u16).filter(|p| p % 64 == lane) {
                    let a = store
                        .apply(&result(port, Status::Failed), 10, &Claim::mine(10))
                        .await;
                    raises += usize::from(kind(a) == Some(EventKind::Raise));
                }
                raises
            });
        }
        let mut raises = 0;
        while let Some(n) = tasks.join_next().await {
            raises += n.expect("task");
        }
        assert_eq!(raises, 400);
        let on_disk: States = read(&path).expect("state").states;
        assert_eq!(on_disk.len(), 400);
        assert!(on_disk.values().all(|s| s.raised_at == Some(10)));
    }

    /// Two stores on one file (two overlapping `run`s): each sees the other's updates, so
    /// nothing is lost and every check is raised once, not twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_on_one_file_merge_and_raise_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.json");
        let (a, b) = (
            FileStore::open(&path, Policy::default()),
            FileStore::open(&path, Policy::default()),
        );
        let mut raises = 0;
        for port in 1..=50u16 {
            let r = result(port, Status::Failed);
            let own = result(1000 + port, Status::Failed);
            let (ca, cb) = (Claim::mine(7), Claim::mine(7));
            let (x, y, z) = tokio::join!(
                a.apply(&r, 7, &ca),
                b.apply(&r, 7, &cb),
                b.apply(&own, 7, &cb)
            );
            raises += [kind(x), kind(y)]
                .iter()
                .filter(|k| **k == Some(EventKind::Raise))
                .count();
            assert_eq!(kind(z), Some(EventKind::Raise));
        }
        assert_eq!(raises, 50, "one raise per shared check");
        let on_disk: States = read(&path).expect("state").states;
        assert_eq!(on_disk.len(), 100, "no store overwrote the other's checks");
    }

    /// The content kept from the last write stands for the file only while the file is that
    /// one: a file edited in place, or replaced, is read again.
    #[tokio::test]
    async fn a_file_changed_behind_the_writer_is_read_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.json");
        let store = FileStore::open(&path, Policy::default());
        let fail = |t| {
            let store = &store;
            async move {
                kind(
                    store
                        .apply(&result(9, Status::Failed), t, &Claim::mine(t))
                        .await,
                )
            }
        };
        assert_eq!(fail(1).await, Some(EventKind::Raise));
        assert_eq!(fail(2).await, None, "already raised");
        // Garbage of the same size with the time put back: the stamp is unchanged, so the
        // kept content is used (a read would start afresh and raise again).
        let meta = std::fs::metadata(&path).expect("stat");
        std::fs::write(&path, vec![b'x'; meta.len() as usize]).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(meta.modified()?))
            .expect("set time");
        assert_eq!(fail(3).await, None, "the kept content is used");
        // The garbage was replaced by what the writer kept.
        assert_eq!(read(&path).expect("state").states.len(), 1);
        // Edited in place (same inode): the check's state is gone, so it is raised again.
        std::fs::write(&path, r#"{"states":{}}"#).expect("write");
        assert_eq!(fail(4).await, Some(EventKind::Raise));
        // Replaced by another file: read again too.
        let other = dir.path().join("other.json");
        std::fs::write(&other, r#"{"states":{}}"#).expect("write");
        std::fs::rename(&other, &path).expect("rename");
        assert_eq!(fail(5).await, Some(EventKind::Raise));
        assert_eq!(read(&path).expect("state").states.len(), 1);
    }

    /// When the state cannot be written, the notice is still returned (to be delivered), with
    /// the reason; and as nothing was saved, the next result raises again.
    #[tokio::test]
    async fn a_failed_write_still_yields_the_notice_and_does_not_advance() {
        let dir = tempfile::tempdir().expect("tmp");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").expect("write");
        let path = blocker.join("state.json");
        let store = FileStore::open(&path, Policy::default());
        assert!(store.ready().is_err());
        for t in [1, 2] {
            let a = store
                .apply(&result(9, Status::Failed), t, &Claim::mine(t))
                .await
                .expect("apply");
            assert_eq!(a.event.map(|e| e.kind), Some(EventKind::Raise));
            let why = format!("{:#}", a.unsaved.expect("unsaved"));
            assert!(why.contains(&blocker.display().to_string()), "{why}");
        }
    }

    /// A stored notice stays until it is delivered; a sweep takes it over only once its
    /// owner's lease ran out or its owner is a dead process on this host.
    #[tokio::test]
    async fn notices_wait_in_the_outbox_until_delivered_or_taken_over() {
        use super::super::outbox::LEASE_SECS;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.json");
        let store = FileStore::open(&path, Policy::default());
        let mine = Claim::mine(10);
        let a = store
            .apply(&result(9, Status::Failed), 10, &mine)
            .await
            .expect("apply");
        let id = a.parcel.expect("the raise is stored");
        let dead = Claim {
            pid: 1 << 30,
            ..mine.clone()
        };
        let none = HashSet::new();
        let swept = store.sweep(11, &dead, none.clone()).await.expect("sweep");
        assert!(swept.is_empty(), "our claim holds while we live");
        let later = 10 + LEASE_SECS + 1;
        let taken = store
            .sweep(later, &dead, none.clone())
            .await
            .expect("sweep");
        assert_eq!(taken.len(), 1, "an expired claim is taken over");
        assert_eq!(taken[0].0, id);
        assert_eq!(taken[0].1.kind, EventKind::Raise);
        let back = store
            .sweep(later, &mine, none.clone())
            .await
            .expect("sweep");
        assert_eq!(back.len(), 1, "a dead owner's parcel is taken over at once");
        store.delivered(&id).await.expect("delivered");
        let swept = store.sweep(later * 2, &mine, none).await.expect("sweep");
        assert!(swept.is_empty(), "delivered: gone");
        assert!(read(&path).expect("read").outbox.is_empty());
    }

    /// A state file written before the outbox existed (states only) is read as such.
    #[tokio::test]
    async fn a_file_of_the_earlier_layout_is_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.json");
        let r = result(9, Status::Failed);
        let mut st = CheckState::default();
        custodian_core::state::step(&mut st, &Policy::default(), &r, 5);
        let old: States = [(r.id.clone(), st)].into_iter().collect();
        std::fs::write(&path, serde_json::to_vec(&old).expect("json")).expect("write");
        let store = FileStore::open(&path, Policy::default());
        let e = kind(store.apply(&r, 6, &Claim::mine(6)).await);
        assert_eq!(e, None, "already raised in the old file");
    }
}
