//! What a beanstalkd client has put: for each check id, beanstalkd's id of the copy it put
//! last, so that `put` asks the broker about those jobs alone (see beanstalk.rs,
//! "Duplicates"). Kept in memory by a long-running client; `enqueue` keeps it in a file beside
//! the state file between runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Entries past which the first sweep comes; later ones whenever the count has doubled, so a
/// sweep's cost is spread over at least as many puts as it looks at.
const SWEEP_FROM: usize = 4096;
/// First line of the file, followed by the entry count after the last sweep.
const HEADER: &str = "custodian beanstalkd put ids v1";

#[derive(Debug, Default)]
pub(super) struct PutIds {
    /// Check id ([`custodian_core::queue::Pending::id`]) → beanstalkd job id.
    ids: HashMap<String, u64>,
    /// Entries left by the last sweep.
    swept: usize,
    file: Option<PathBuf>,
    loaded: bool,
    changed: bool,
}

impl PutIds {
    /// Kept in `file` ([`PutIds::load`] reads it, [`PutIds::save`] writes it).
    pub(super) fn in_file(file: PathBuf) -> Self {
        PutIds {
            file: Some(file),
            ..PutIds::default()
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<u64> {
        self.ids.get(id).copied()
    }

    pub(super) fn insert(&mut self, id: &str, job: u64) {
        // An id with a line break could not be read back from the file: memory only.
        self.ids.insert(id.to_string(), job);
        self.changed = true;
    }

    /// A sweep is due: the entries have doubled since the last one.
    pub(super) fn sweep_due(&self) -> bool {
        self.ids.len() > (self.swept * 2).max(SWEEP_FROM)
    }

    /// Every entry, for a sweep.
    pub(super) fn entries(&self) -> Vec<(String, u64)> {
        self.ids.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Keeps only the entries `keep` says are still pending.
    pub(super) fn swept(&mut self, keep: impl Fn(&str, u64) -> bool) {
        self.ids.retain(|k, v| keep(k, *v));
        self.swept = self.ids.len();
        self.changed = true;
    }

    /// Reads the file once, if there is one. A missing file is an empty memory; an unreadable
    /// one is reported and dropped (forgetting costs at most one duplicate per job, never a job).
    pub(super) fn load(&mut self) -> Result<(), String> {
        if self.loaded {
            return Ok(());
        }
        self.loaded = true;
        let Some(file) = &self.file else {
            return Ok(());
        };
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        let mut lines = text.lines();
        let swept = lines
            .next()
            .and_then(|h| h.strip_prefix(HEADER))
            .and_then(|n| n.trim().parse().ok());
        let Some(swept) = swept else {
            return Err(format!("{}: not a put-ids file", file.display()));
        };
        self.swept = swept;
        for line in lines {
            let entry = line
                .rsplit_once(' ')
                .and_then(|(id, job)| Some((id.to_string(), job.parse().ok()?)));
            match entry {
                Some((id, job)) => self.ids.insert(id, job),
                None => {
                    self.ids.clear();
                    return Err(format!("{}: bad line {line:?}", file.display()));
                }
            };
        }
        Ok(())
    }

    /// Writes the file if anything changed (a new file, renamed over the old one, so a crash
    /// leaves one or the other whole).
    pub(super) fn save(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_ref().filter(|_| self.changed) else {
            return Ok(());
        };
        let mut text = String::with_capacity(64 + self.ids.len() * 56);
        text.push_str(&format!("{HEADER} {}\n", self.swept));
        for (id, job) in &self.ids {
            if !id.contains(['\n', '\r']) {
                text.push_str(&format!("{id} {job}\n"));
            }
        }
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("ids.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, file)?;
        self.changed = false;
        Ok(())
    }
}

/// The file `enqueue` keeps for the tube `tube` at `addr`: beside the state file, named after
/// both (escaped, so that two tubes never share one).
pub(crate) fn file_for(state_file: &Path, addr: &str, tube: &str) -> PathBuf {
    let escape = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let name = format!("enqueued-beanstalk-{}-{}.ids", escape(addr), escape(tube));
    state_file.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file_for(&dir.path().join("state.json"), "127.0.0.1:11300", "a/b");
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some("enqueued-beanstalk-127.0.0.1%3A11300-a%2Fb.ids")
        );
        let mut ids = PutIds::in_file(path.clone());
        ids.load().expect("no file yet");
        ids.insert("abc", 7);
        ids.insert("with space", 8);
        ids.insert("line\nbreak", 9);
        ids.save().expect("save");
        let mut back = PutIds::in_file(path.clone());
        back.load().expect("load");
        assert_eq!(back.get("abc"), Some(7));
        assert_eq!(back.get("with space"), Some(8));
        assert_eq!(back.get("line\nbreak"), None);
        std::fs::write(&path, "something else\n").expect("write");
        let mut bad = PutIds::in_file(path);
        assert!(bad.load().is_err());
        assert_eq!(bad.get("abc"), None);
    }

    #[test]
    fn sweeps_come_when_the_entries_have_doubled() {
        let mut ids = PutIds::default();
        for i in 0..=SWEEP_FROM as u64 {
            ids.insert(&i.to_string(), i);
        }
        assert!(ids.sweep_due());
        ids.swept(|_, job| job % 2 == 0);
        assert_eq!(ids.swept, SWEEP_FROM / 2 + 1);
        assert!(!ids.sweep_due());
    }
}
