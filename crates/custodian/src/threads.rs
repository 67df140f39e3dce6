//! The extra single-threaded runtimes `run` spreads its checks over, one per further core.
//!
//! A check waits on the network, so one thread runs thousands at once; but a run of tens of
//! thousands is bound by the CPU its checks cost together (issue 13: 50,000 checks took 4 s of
//! one core before the slowest deadline could even start). A work-stealing runtime would use
//! every core but pays for it in cross-thread wake-ups and locks on every task; here each
//! check runs start to finish on the one thread it was handed to (its sockets registered with
//! that thread's own driver), and only its result crosses back.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Most threads used: past this the run is bound by the network, not by our CPU.
const MAX_THREADS: usize = 8;

/// Runtimes to hand tasks to: the caller's own and the extra ones this owns.
pub(crate) struct Threads {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Each extra runtime's thread and what tells it to stop.
    extra: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Threads {
    /// `wanted` threads in all, the caller's included (0: one per core, at most
    /// [`MAX_THREADS`]); must be called inside a runtime. A thread that cannot be started
    /// only means fewer threads.
    pub(crate) fn new(wanted: usize) -> Threads {
        let n = match wanted {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS)),
            n => n,
        };
        let mut threads = Threads {
            handles: vec![Handle::current()],
            next: AtomicUsize::new(0),
            extra: Vec::new(),
        };
        for i in 1..n {
            match start(i) {
                Ok((handle, stop, join)) => {
                    threads.handles.push(handle);
                    threads.extra.push((stop, join));
                }
                Err(e) => {
                    tracing::warn!("running on {i} thread(s): cannot start another: {e}");
                    break;
                }
            }
        }
        threads
    }

    /// Runs `task` on the next thread in turn, so consecutive jobs (and a cluster of slow
    /// ones) spread evenly.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        drop(self.handles[i].spawn(task));
    }
}

impl Drop for Threads {
    /// Stops the extra runtimes; their tasks still running are dropped with them.
    fn drop(&mut self) {
        for (stop, join) in self.extra.drain(..) {
            let _ = stop.send(());
            let _ = join.join();
        }
    }
}

/// Starts runtime number `i` on its own thread, running until told to stop.
fn start(i: usize) -> std::io::Result<(Handle, oneshot::Sender<()>, JoinHandle<()>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let join = std::thread::Builder::new()
        .name(format!("custodian-run-{i}"))
        .spawn(move || {
            rt.block_on(async {
                let _ = stopped.await;
            });
        })?;
    Ok((handle, stop, join))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn tasks_go_round_every_thread_and_report_back() {
        let threads = Threads::new(3);
        assert_eq!(threads.handles.len(), 3);
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..30 {
            let (seen, tx) = (Arc::clone(&seen), tx.clone());
            threads.spawn(async move {
                // A timer and a socket work on whichever runtime runs the task.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await;
                seen.lock()
                    .expect("lock")
                    .insert(std::thread::current().id());
                let _ = tx.send(sock.is_ok());
            });
        }
        drop(tx);
        let mut ok = 0;
        while let Some(bound) = rx.recv().await {
            assert!(bound);
            ok += 1;
        }
        assert_eq!(ok, 30);
        assert_eq!(seen.lock().expect("lock").len(), 3);
    }
}
