//! The embedded queue: jobs in this process's memory, for `custodian run` and tests.

use custodian_core::queue::{
    DeadLetter, JobQueue, Lease, Pending, PutReport, QueueFuture, QueueStats,
};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

struct Entry {
    id: String,
    body: Vec<u8>,
    lease: Duration,
    since: Instant,
    /// Reservations so far.
    deliveries: u32,
}

#[derive(Default)]
struct State {
    next: u64,
    ready: VecDeque<(u64, Entry)>,
    /// Pending ids, for de-duplication.
    ids: HashSet<String>,
    /// Leased entries with their expiry (`None`: a lease too long to ever end).
    leased: HashMap<u64, (Entry, Option<Instant>)>,
    expiries: BTreeSet<(Instant, u64)>,
    /// Dead letters by handle, with their reason.
    buried: Vec<(u64, Entry, String)>,
}

/// A queue living in this process. `dedup: false` keeps every job, as `run` has always done.
pub(crate) struct MemoryQueue {
    dedup: bool,
    state: Mutex<State>,
    wake: Notify,
}

impl MemoryQueue {
    pub(crate) fn new(dedup: bool) -> Self {
        MemoryQueue {
            dedup,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put_now(&self, jobs: &[Pending]) -> PutReport {
        let mut st = self.lock();
        let mut report = PutReport::default();
        // Sized once: a run puts every job at once, and doubling would leave a third idle.
        st.ready.reserve(jobs.len());
        for p in jobs {
            if self.dedup && !st.ids.insert(p.id.clone()) {
                report.duplicates += 1;
                continue;
            }
            st.next += 1;
            let entry = Entry {
                id: p.id.clone(),
                body: p.body.clone(),
                lease: p.lease,
                since: Instant::now(),
                deliveries: 0,
            };
            let n = st.next;
            st.ready.push_back((n, entry));
            report.added += 1;
        }
        drop(st);
        self.wake.notify_waiters();
        report
    }

    /// Leases the next job, first returning expired leases to the front of the line.
    fn take(&self) -> Option<Lease> {
        let mut st = self.lock();
        let now = Instant::now();
        while let Some(&(until, h)) = st.expiries.first() {
            if until > now {
                break;
            }
            st.expiries.pop_first();
            if let Some((entry, _)) = st.leased.remove(&h) {
                st.ids.insert(entry.id.clone());
                st.ready.push_front((h, entry));
            }
        }
        let (h, mut entry) = st.ready.pop_front()?;
        st.ids.remove(&entry.id);
        entry.deliveries = entry.deliveries.saturating_add(1);
        let lease = Lease {
            handle: h.to_string(),
            body: entry.body.clone(),
            deliveries: entry.deliveries,
        };
        let until = now.checked_add(entry.lease);
        if let Some(t) = until {
            st.expiries.insert((t, h));
        }
        st.leased.insert(h, (entry, until));
        Some(lease)
    }

    fn unlease(&self, lease: &Lease) -> Option<(u64, Entry)> {
        let h: u64 = lease.handle.parse().ok()?;
        let mut st = self.lock();
        let (entry, until) = st.leased.remove(&h)?;
        if let Some(t) = until {
            st.expiries.remove(&(t, h));
        }
        Some((h, entry))
    }

    fn stats_now(&self) -> QueueStats {
        let st = self.lock();
        QueueStats {
            pending: st.ready.len() as u64,
            reserved: st.leased.len() as u64,
            buried: st.buried.len() as u64,
            oldest: st.ready.iter().map(|(_, e)| e.since.elapsed()).max(),
        }
    }
}

impl JobQueue for MemoryQueue {
    fn put<'a>(&'a self, jobs: &'a [Pending]) -> QueueFuture<'a, PutReport> {
        Box::pin(async move { Ok(self.put_now(jobs)) })
    }

    fn reserve(&self, max: usize, wait: Duration) -> QueueFuture<'_, Vec<Lease>> {
        Box::pin(async move {
            let until = tokio::time::Instant::now() + wait;
            let mut changed = false;
            loop {
                let woken = self.wake.notified();
                let got: Vec<Lease> = std::iter::from_fn(|| self.take()).take(max).collect();
                // After a put, ack, release or bury even an empty answer is given at once:
                // `run`'s drain then sees its last ack now, not after `wait`.
                if !got.is_empty() || changed {
                    return Ok(got);
                }
                // Leases expire silently: look again at least every 100 ms.
                let nap = (until - tokio::time::Instant::now()).min(Duration::from_millis(100));
                if nap.is_zero() {
                    return Ok(got);
                }
                changed = tokio::time::timeout(nap, woken).await.is_ok();
            }
        })
    }

    fn ack<'a>(&'a self, leases: &'a [Lease]) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            for lease in leases {
                self.unlease(lease);
            }
            self.wake.notify_waiters();
            Ok(())
        })
    }

    fn touch<'a>(&'a self, leases: &'a [Lease]) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let mut st = self.lock();
            let now = Instant::now();
            for lease in leases {
                let Ok(h) = lease.handle.parse::<u64>() else {
                    continue;
                };
                let Some((entry, until)) = st.leased.get_mut(&h) else {
                    continue;
                };
                let old = *until;
                *until = now.checked_add(entry.lease);
                let new = *until;
                if let Some(t) = old {
                    st.expiries.remove(&(t, h));
                }
                if let Some(t) = new {
                    st.expiries.insert((t, h));
                }
            }
            Ok(())
        })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            if let Some((h, entry)) = self.unlease(lease) {
                let mut st = self.lock();
                if !self.dedup || st.ids.insert(entry.id.clone()) {
                    st.ready.push_front((h, entry));
                }
            }
            self.wake.notify_waiters();
            Ok(())
        })
    }

    fn bury<'a>(&'a self, lease: &'a Lease, reason: &'a str) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            if let Some((h, entry)) = self.unlease(lease) {
                self.lock().buried.push((h, entry, reason.to_string()));
            }
            self.wake.notify_waiters();
            Ok(())
        })
    }

    fn dead(&self) -> QueueFuture<'_, Vec<DeadLetter>> {
        Box::pin(async move {
            let st = self.lock();
            Ok(st
                .buried
                .iter()
                .map(|(h, entry, reason)| DeadLetter {
                    handle: h.to_string(),
                    body: entry.body.clone(),
                    reason: reason.clone(),
                })
                .collect())
        })
    }

    fn drop_dead<'a>(&'a self, letters: &'a [DeadLetter]) -> QueueFuture<'a, u64> {
        Box::pin(async move {
            let mut st = self.lock();
            let before = st.buried.len();
            st.buried
                .retain(|(h, ..)| !letters.iter().any(|l| l.handle == h.to_string()));
            Ok((before - st.buried.len()) as u64)
        })
    }

    fn stats(&self) -> QueueFuture<'_, QueueStats> {
        Box::pin(async move { Ok(self.stats_now()) })
    }

    fn flush(&self) -> QueueFuture<'_, u64> {
        Box::pin(async move {
            let mut st = self.lock();
            let gone = st.ready.len() + st.buried.len();
            st.ready.clear();
            st.ids.clear();
            st.buried.clear();
            Ok(gone as u64)
        })
    }
}
