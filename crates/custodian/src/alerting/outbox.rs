//! The outbox: notices stored with the state change that called for them, so that a job is
//! acknowledged only once its notice is durable, and a process killed before delivering it
//! leaves it for the next one.
//!
//! Each stored notice (a parcel) carries a claim: who is delivering it and until when. The
//! owner renews its claims while it works; another process takes a parcel over once the claim
//! has run out, or at once when the owner is a dead process on the same host (a restarted
//! worker or the next `run` need not wait out the lease).

use custodian_core::state::AlertEvent;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// How long a claim holds without renewal.
pub(crate) const LEASE_SECS: u64 = 120;
/// How often claims are renewed and abandoned parcels looked for; well under [`LEASE_SECS`].
pub(crate) const SWEEP_SECS: u64 = 30;

/// Who is delivering a parcel, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claim {
    /// Unix seconds after which anyone may take the parcel over.
    pub(crate) until: u64,
    pub(crate) host: String,
    pub(crate) pid: u32,
}

impl Claim {
    /// This process's claim, running out [`LEASE_SECS`] after `now`.
    pub(crate) fn mine(now: u64) -> Self {
        Claim {
            until: now + LEASE_SECS,
            host: host().to_string(),
            pid: std::process::id(),
        }
    }

    /// Whether a parcel under this claim may be taken over at `now` by `me`: its lease ran
    /// out, or its owner was another process on this host that no longer exists.
    pub(crate) fn abandoned(&self, now: u64, me: &Claim) -> bool {
        if self.until < now {
            return true;
        }
        self.host == me.host && self.pid != me.pid && !alive(self.pid)
    }
}

/// A stored notice and its claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Parcel {
    pub(crate) event: AlertEvent,
    pub(crate) claim: Claim,
}

/// A new parcel id, unique across hosts, processes and time.
pub(crate) fn parcel_id(now: u64) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{now}-{}-{}-{}",
        host(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// This host's name, read once (`localhost` when the kernel has none).
pub(crate) fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        match name.trim() {
            "" => "localhost".to_string(),
            n => n.to_string(),
        }
    })
}

/// Whether a process with this pid exists (EPERM: it does, owned by someone else).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence; no signal is sent.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_abandoned_when_it_ran_out_or_its_owner_died() {
        let me = Claim::mine(1000);
        let live_other = Claim {
            pid: 1,
            ..Claim::mine(1000)
        };
        assert!(!live_other.abandoned(1000, &me), "pid 1 is alive");
        assert!(live_other.abandoned(1000 + LEASE_SECS + 1, &me), "ran out");
        // A pid above the kernel's limit belongs to no process.
        let dead = Claim {
            pid: 1 << 30,
            ..Claim::mine(1000)
        };
        assert!(dead.abandoned(1000, &me));
        let elsewhere = Claim {
            host: "elsewhere".into(),
            ..dead
        };
        assert!(
            !elsewhere.abandoned(1000, &me),
            "another host's pid says nothing"
        );
        assert!(!me.abandoned(1000, &me), "never our own");
    }

    #[test]
    fn parcel_ids_are_unique() {
        let ids: std::collections::HashSet<_> = (0..100).map(|_| parcel_id(5)).collect();
        assert_eq!(ids.len(), 100);
    }
}
