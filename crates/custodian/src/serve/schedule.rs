//! When each check runs next: every check keeps its own period and a phase taken from its id,
//! so thousands of checks are spread over the interval instead of starting together, and a
//! reload keeps the rhythm of every check whose line did not change.

use custodian_core::Job;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::time::{Duration, Instant};

struct Entry {
    job: Arc<Job>,
    every: Duration,
    next: Instant,
    running: bool,
}

pub(crate) struct Schedule {
    /// Default period, seconds.
    interval: u64,
    entries: HashMap<String, Entry>,
    /// Runs skipped since the last `take_overruns` because the previous one was still going.
    overruns: u64,
}

impl Schedule {
    pub(crate) fn new(interval: u64) -> Self {
        Schedule {
            interval,
            entries: HashMap::new(),
            overruns: 0,
        }
    }

    /// Installs a new set of jobs, returning how many checks it holds (identical lines count
    /// once). A check already known keeps its next run, and whether it is running, unless
    /// its period changed.
    pub(crate) fn replace(&mut self, jobs: Vec<Job>) -> usize {
        let now = Instant::now();
        let mut old = std::mem::take(&mut self.entries);
        for job in jobs {
            let id = job.id();
            if self.entries.contains_key(&id) {
                continue;
            }
            let every = Duration::from_secs(job.every.unwrap_or(self.interval).max(1));
            let entry = match old.remove(&id) {
                Some(prev) if prev.every == every => Entry {
                    job: Arc::new(job),
                    ..prev
                },
                Some(prev) => Entry {
                    next: now + phase(&id, every),
                    job: Arc::new(job),
                    every,
                    running: prev.running,
                },
                None => Entry {
                    next: now + phase(&id, every),
                    job: Arc::new(job),
                    every,
                    running: false,
                },
            };
            self.entries.insert(id, entry);
        }
        self.entries.len()
    }

    /// The jobs due at `now`, now marked running. A check still running when due skips that
    /// run (counted as an overrun) instead of piling up.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Arc<Job>> {
        let mut out = Vec::new();
        for e in self.entries.values_mut() {
            if e.next > now {
                continue;
            }
            // The next slot after now on this check's own grid, so that a pause (a slow
            // reload, a suspended machine) does not cause a burst of catch-up runs.
            let behind = now.duration_since(e.next);
            let periods = behind.as_nanos() / e.every.as_nanos().max(1) + 1;
            e.next += e.every * u32::try_from(periods).unwrap_or(u32::MAX);
            if e.running {
                self.overruns += 1;
                continue;
            }
            e.running = true;
            out.push(Arc::clone(&e.job));
        }
        out
    }

    /// The run of `id` finished.
    pub(crate) fn done(&mut self, id: &str) {
        if let Some(e) = self.entries.get_mut(id) {
            e.running = false;
        }
    }

    /// Checks running now.
    pub(crate) fn running(&self) -> usize {
        self.entries.values().filter(|e| e.running).count()
    }

    pub(crate) fn take_overruns(&mut self) -> u64 {
        std::mem::take(&mut self.overruns)
    }
}

/// Where in its period a check runs: a fixed fraction from its id, so that checks spread
/// evenly and the same check keeps its slot across restarts.
fn phase(id: &str, every: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(h.finish() % ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(port: u16, every: Option<u64>) -> Job {
        Job {
            every,
            ..Job::new("tcp", "127.0.0.1", Some(port))
        }
    }

    #[test]
    fn checks_are_spread_over_the_interval_and_run_once_per_period() {
        let mut s = Schedule::new(60);
        s.replace((1..=600).map(|p| job(p, None)).collect());
        let start = Instant::now();
        let mut per_slice = Vec::new();
        for slice in 1..=6 {
            let got = s.due(start + Duration::from_secs(slice * 10));
            for j in &got {
                s.done(&j.id());
            }
            per_slice.push(got.len());
        }
        assert_eq!(
            per_slice.iter().sum::<usize>(),
            600,
            "each once in the first minute"
        );
        assert!(
            per_slice.iter().all(|n| (50..=150).contains(n)),
            "spread, not bunched: {per_slice:?}"
        );
        let again = s.due(start + Duration::from_secs(61));
        assert!(again.len() < 60, "the next round follows the same spread");
    }

    #[test]
    fn a_running_check_is_not_started_twice_and_a_reload_keeps_its_slot() {
        let mut s = Schedule::new(10);
        s.replace(vec![job(1, None), job(2, Some(5))]);
        let t0 = Instant::now();
        let first = s.due(t0 + Duration::from_secs(10));
        assert_eq!(first.len(), 2);
        assert!(s.due(t0 + Duration::from_secs(20)).is_empty());
        assert_eq!(s.take_overruns(), 2);
        // Reloaded with the same lines: still running, still the same slots.
        s.replace(vec![job(1, None), job(2, Some(5)), job(3, None)]);
        assert_eq!(s.running(), 2);
        s.done(&job(1, None).id());
        let next = s.due(t0 + Duration::from_secs(31));
        let ports: Vec<_> = next.iter().map(|j| j.port).collect();
        assert!(ports.contains(&Some(1)), "{ports:?}");
        assert!(!ports.contains(&Some(2)), "still running");
    }
}
