//! Check states in a local JSON file, for `custodian run`: read once at start, kept in memory,
//! written back atomically (temporary file, fsync, rename) by [`StateStore::save`].

use super::{Applied, StateStore};
use anyhow::{Context, Result};
use custodian_core::state::{CheckState, Policy};
use custodian_core::JobResult;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's content: states by check id.
type States = BTreeMap<String, CheckState>;

pub(crate) struct FileStore {
    path: PathBuf,
    policy: Policy,
    states: Mutex<States>,
    /// Write after every update (a long-running worker), not only on save (a `run`).
    autosave: bool,
}

impl FileStore {
    /// Reads `path`; a missing file is an empty one, an unreadable one is started afresh
    /// (with a warning) so that one bad write never stops alerting for good.
    pub(crate) fn open(path: &Path, policy: Policy) -> Self {
        let states = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "state file {} is unreadable ({e}); starting afresh",
                    path.display()
                );
                States::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => States::new(),
            Err(e) => {
                tracing::warn!(
                    "cannot read state file {}: {e}; starting afresh",
                    path.display()
                );
                States::new()
            }
        };
        FileStore {
            path: path.to_path_buf(),
            policy,
            states: Mutex::new(states),
            autosave: false,
        }
    }

    /// The same store, written after every update.
    pub(crate) fn autosaving(self) -> Self {
        FileStore {
            autosave: true,
            ..self
        }
    }

    fn write(&self) -> Result<()> {
        let text = {
            let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
            serde_json::to_vec_pretty(&*states)?
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), self.path.display()))?;
        Ok(())
    }
}

impl StateStore for FileStore {
    fn apply<'a>(&'a self, result: &'a JobResult, now: u64) -> BoxFuture<'a, Result<Applied>> {
        let event = {
            let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
            let st = states.entry(result.id.clone()).or_default();
            Applied::step(st, &self.policy, result, now)
        };
        let saved = if self.autosave { self.write() } else { Ok(()) };
        Box::pin(std::future::ready(saved.map(|()| event)))
    }

    fn save(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(std::future::ready(self.write()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_core::state::EventKind;
    use custodian_core::{Job, Status};

    fn result(status: Status) -> JobResult {
        JobResult::new(&Job::new("tcp", "127.0.0.1", Some(9)), status, None, 1, 1)
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
            kinds.extend(
                store
                    .apply(&result(status), t)
                    .await
                    .expect("apply")
                    .event
                    .map(|e| e.kind),
            );
            store.save().await.expect("save");
        }
        assert_eq!(kinds, [EventKind::Raise, EventKind::Clear]);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["state.json"], "no temporary file left behind");
    }

    #[tokio::test]
    async fn an_autosaving_store_writes_every_update() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.json");
        let store = FileStore::open(&path, Policy::default()).autosaving();
        let first = store
            .apply(&result(Status::Failed), 1)
            .await
            .expect("apply");
        assert_eq!(first.raised_at, Some(1));
        let again = FileStore::open(&path, Policy::default());
        let e = again
            .apply(&result(Status::Failed), 2)
            .await
            .expect("apply")
            .event;
        assert!(e.is_none(), "already raised, as the file says");
    }

    #[tokio::test]
    async fn a_corrupt_file_starts_afresh() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").expect("write");
        let store = FileStore::open(&path, Policy::default());
        let e = store
            .apply(&result(Status::Failed), 5)
            .await
            .expect("apply")
            .event;
        assert_eq!(e.map(|e| e.kind), Some(EventKind::Raise));
    }
}
