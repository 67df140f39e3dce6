//! The scheduled scan of the settings' `[scan]` section: `custodian scan`'s own code run every
//! interval inside `serve`, its report stored exactly like one posted to `/api/scans`.
//!
//! A reload that changes the section starts its schedule afresh; removing it stops the scans.

use super::board::Board;
use super::gauges::ScanSummary;
use super::history::History;
use crate::settings::ScanSettings;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// Hands `now` (the loaded settings' section) to the scan task when it differs.
pub(crate) fn follow(tx: &watch::Sender<Option<ScanSettings>>, now: &Option<ScanSettings>) {
    tx.send_if_modified(|had| {
        let changed = had != now;
        if changed {
            had.clone_from(now);
        }
        changed
    });
}

/// Scans every `every` of the section `config` holds (the first one interval after it was
/// loaded) until `stop` resolves.
pub(crate) async fn every(
    mut config: watch::Receiver<Option<ScanSettings>>,
    history: Arc<History>,
    board: Arc<Board>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let Some(scan) = config.borrow_and_update().clone() else {
            tokio::select! {
                changed = config.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return,
                },
                _ = &mut stop => return,
            }
        };
        tokio::select! {
            _ = rounds(&scan, &history, &board) => return,
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
                tracing::info!("[scan] changed: its schedule starts afresh");
            }
            _ = &mut stop => return,
        }
    }
}

/// Runs `scan` every interval, forever (returns only when its interval is unusable).
async fn rounds(scan: &ScanSettings, history: &History, board: &Board) {
    // Validated with the settings; an error here means the targets file went away since.
    let interval = match scan.interval() {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("[scan]: {e:#}; no scheduled scans");
            return std::future::pending().await;
        }
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A scan longer than the interval delays the next one instead of starting two.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The scanner's futures are not Send (address iterators): it runs on a thread of its
        // own with a one-thread runtime, as under `custodian scan`; dropping `cancel` stops it.
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let scan = scan.clone();
        let job = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Value>> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let args = crate::scan::scheduled(&scan)?;
                tokio::select! {
                    r = crate::scan::scheduled_report(&args) => r.map(Some),
                    _ = cancelled => Ok(None),
                }
            })
        });
        // Dropped (serve stopping, the section changed): `cancel` goes and the scan stops.
        let _cancel = cancel;
        match job.await {
            Ok(Ok(Some(report))) => {
                let at = crate::alerting::unix_now();
                tracing::info!("scheduled scan done: {}", report["counts"]);
                board.gauges.scan(ScanSummary::of(&report, at));
                history.scan(report, at);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!("scheduled scan: {e:#}"),
            Err(e) => tracing::error!("scheduled scan task: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::history::Retention;

    /// A scan of a closed loopback port every second: reports land in the history.
    #[tokio::test]
    async fn scheduled_scans_store_their_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = Arc::new(
            History::open(&dir.path().join("h.sqlite"), Retention::default()).expect("db"),
        );
        let board = Arc::new(Board::new(Vec::new(), 0));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let targets = dir.path().join("targets.txt");
        std::fs::write(&targets, "# loopback only\n127.0.0.1\n").expect("write");
        let scan = ScanSettings {
            every: "1s".into(),
            targets_file: Some(targets),
            checks: Some("opensocks".into()),
            ports: vec![format!("opensocks={port}")],
            timeout: Some(2.0),
            ..ScanSettings::default()
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (config, rx) = watch::channel(Some(scan));
        let task = tokio::spawn(every(rx, Arc::clone(&history), Arc::clone(&board), async {
            let _ = stop_rx.await;
        }));
        let mut stored = Vec::new();
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            history.flush().await;
            stored = history.scans(10).await.expect("scans");
            if stored.len() >= 2 {
                break;
            }
        }
        assert!(stored.len() >= 2, "two scans in 10 s: {stored:?}");
        // A reload without the section: no more scans.
        follow(&config, &None);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        history.flush().await;
        let before = history.scans(50).await.expect("scans").len();
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        history.flush().await;
        assert_eq!(history.scans(50).await.expect("scans").len(), before);
        let _ = stop_tx.send(());
        task.await.expect("task");
        let rep = &stored[0].report;
        assert_eq!(rep["checks"][0], "opensocks", "{rep}");
        assert_eq!(rep["probes"], 1, "{rep}");
        assert_eq!(rep["counts"]["closed"], 1, "{rep}");
        assert!(board.gauges.has_scan());
    }
}
