//! custodian's protocol probes. Each type is one file exposing `SPEC` (its static description)
//! and `async fn check(&Ctx) -> Outcome`; the list below is the only registry. Probes never
//! retry, sleep or time themselves: the worker owns the deadline, handed in through [`Ctx`].

use custodian_core::{Invalid, Job, Outcome, Params, ProbeSpec};
use futures::future::BoxFuture;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use tokio::time::Instant;

mod abuse;
mod dialog;
mod env;
mod http1;
mod limits;
mod net;
mod resolver;
mod secret;
mod tls;

// Bounded BER decoding of LDAP replies; public only for the fuzz target in fuzz/.
#[cfg(feature = "ldap")]
#[doc(hidden)]
pub mod ber;

// The decoders of peer bytes behind one door, only for the fuzz targets in fuzz/.
#[doc(hidden)]
pub mod fuzzing;

pub use abuse::assess;
pub use env::{Env, EnvOptions};
pub use limits::Limits;
pub use secret::resolve_url;
pub use tls::Roots;

/// What a probe gets: the shared environment, the job, its options parsed once per job, the
/// one address to test, and the deadline of this attempt.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Nameservers and TLS trust, built once by the binary (or a test) and shared.
    pub env: Arc<Env>,
    pub job: Arc<Job>,
    /// The job's options, parsed by the kinds the probe declares.
    pub params: Arc<Params>,
    /// The resolved address under test; `None` for types whose target is not resolved.
    pub addr: Option<IpAddr>,
    /// When this attempt must be over; every wait inside a probe ends by then.
    pub deadline: Instant,
    /// Set when our own side failed (see [`Ctx::fault`]); shared by clones of one attempt.
    fault: Arc<OnceLock<String>>,
    /// The notAfter (unix seconds) of the first certificate a TLS handshake of this attempt
    /// saw; shared by clones like `fault`.
    certificate: Arc<OnceLock<i64>>,
    /// The worker's slots, for connections beyond the target's own (see [`Limits`]).
    limits: Option<Arc<dyn Limits>>,
}

impl Ctx {
    /// A context in `env` for a job whose options were parsed with [`prepare`].
    pub fn prepared(
        env: Arc<Env>,
        job: Arc<Job>,
        params: Arc<Params>,
        addr: Option<IpAddr>,
        deadline: Instant,
    ) -> Self {
        Ctx {
            env,
            job,
            params,
            addr,
            deadline,
            fault: Arc::default(),
            certificate: Arc::default(),
            limits: None,
        }
    }

    /// The same context under the worker's slots: a check that opens connections to other
    /// hosts takes them for those (see [`Limits`]).
    pub fn with_limits(self, limits: Arc<dyn Limits>) -> Self {
        Ctx {
            limits: Some(limits),
            ..self
        }
    }

    /// The worker's slots, if it installed any.
    pub(crate) fn limits(&self) -> Option<&dyn Limits> {
        self.limits.as_deref()
    }

    /// A context in the default [`Env`] (the system's trust store and nameservers) that
    /// parses the job's options itself (tests and tools); see [`Ctx::new_in`].
    pub fn new(job: Arc<Job>, addr: Option<IpAddr>, deadline: Instant) -> Self {
        Ctx::new_in(Arc::new(Env::default()), job, addr, deadline)
    }

    /// A context in `env` that parses the job's options itself; options the type does not
    /// accept make every check of it "unknown".
    pub fn new_in(env: Arc<Env>, job: Arc<Job>, addr: Option<IpAddr>, deadline: Instant) -> Self {
        let (params, fault) = match prepare(&job) {
            Ok(p) => (p, None),
            Err(e) => (Params::default(), Some(e.to_string())),
        };
        let cx = Ctx::prepared(env, job, Arc::new(params), addr, deadline);
        if let Some(f) = fault {
            cx.fault(format!("bad option: {f}"));
        }
        cx
    }

    /// The same attempt against another address (shares the deadline and the fault).
    pub fn at(&self, addr: Option<IpAddr>) -> Self {
        Ctx {
            addr,
            ..self.clone()
        }
    }

    /// Records that we, not the target, failed (no socket, no permission, our resolver
    /// down): a failed verdict of this attempt becomes "unknown" with this reason.
    pub fn fault(&self, why: impl Into<String>) {
        let _ = self.fault.set(why.into());
    }

    /// Our own failure in this attempt, if any.
    pub fn faulted(&self) -> Option<&str> {
        self.fault.get().map(String::as_str)
    }

    /// Records the peer certificate's notAfter (unix seconds); the first one counts.
    pub(crate) fn saw_certificate_expiry(&self, not_after: i64) {
        let _ = self.certificate.set(not_after);
    }

    /// When the certificate this attempt's TLS handshake saw expires (unix seconds), if any
    /// (`/metrics` of `serve`).
    pub fn certificate_expiry(&self) -> Option<i64> {
        self.certificate.get().copied()
    }

    /// A probe's outcome, corrected for our own faults: a failure after a fault of ours is
    /// unknown, since the target was never fairly judged.
    pub fn settle(&self, outcome: Outcome) -> Outcome {
        match (self.faulted(), outcome) {
            (Some(f), Outcome::Down { reason }) if !reason.contains(f) => {
                Outcome::unknown(format!("{f} ({reason})"))
            }
            (Some(_), Outcome::Down { reason }) => Outcome::unknown(reason),
            (_, o) => o,
        }
    }
}

/// Parses a job's options by the kinds its type declares: once per job, before any attempt.
/// Secret references (`${env:..}`, `${file:..}`) are read here, on the worker.
pub fn prepare(job: &Job) -> Result<Params, Invalid> {
    let probe = find(&job.probe)
        .ok_or_else(|| Invalid::new(format!("unknown check type `{}`", job.probe)))?;
    secret::resolve(job)?.build(probe.spec, job)
}

/// A registered probe: its static spec and its check function.
pub struct Probe {
    pub spec: &'static ProbeSpec,
    pub check: for<'a> fn(&'a Ctx) -> BoxFuture<'a, Outcome>,
}

macro_rules! probes {
    ($($name:ident),* ; $($feature:literal: $gated:ident),* $(,)?) => {
        $(mod $name;)*
        $(#[cfg(feature = $feature)] mod $gated;)*
        /// Every probe type, in the order `custodian examples` lists them.
        pub static PROBES: &[Probe] = &[
            $(probe_entry!($name),)*
            $(#[cfg(feature = $feature)] probe_entry!($gated),)*
        ];
        /// Probe files left out of this build because their feature is off.
        #[cfg(test)]
        const DISABLED: &[&str] = &[$(#[cfg(not(feature = $feature))] stringify!($gated),)*];
    };
}

/// One registry entry: the module's spec and its check, boxed to one signature; a fault of
/// ours (before or during the check) turns a failure into "unknown".
macro_rules! probe_entry {
    ($name:ident) => {
        Probe {
            spec: &$name::SPEC,
            check: {
                fn check(cx: &Ctx) -> BoxFuture<'_, Outcome> {
                    Box::pin(async move {
                        if let Some(f) = cx.faulted() {
                            return Outcome::unknown(f);
                        }
                        cx.settle($name::check(cx).await)
                    })
                }
                check
            },
        }
    };
}

probes!(
    tcp, http, https, dns, ping, ssh, smtp, imap, pop3, ftp, nntp, telnet, named, vnc, rdp, rsync,
    finger, jabber, smtps, imaps, pop3s, tftp, mx, dnsbl, redis, ssl, openrelay, openresolver, openproxy,
    opensocks;
    // Types whose client crates are heavy sit behind features (all on by default).
    "mysql": mysql, "postgresql": postgresql, "ldap": ldap, "ldap": ldaps,
);

/// The probe for a type name (aliases included), if any.
pub fn find(name: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.spec.is_named(name))
}

/// The static specs of every probe, for the planner.
pub fn specs() -> Vec<&'static ProbeSpec> {
    PROBES.iter().map(|p| p.spec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every `src/*.rs` that declares a `SPEC` is registered, and no two types share a name.
    #[test]
    fn registry_is_complete_and_unique() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).expect("src dir") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if path.ends_with("lib.rs") {
                continue;
            }
            if text.contains("pub(crate) static SPEC: ProbeSpec") {
                files.push(
                    path.file_stem()
                        .expect("stem")
                        .to_string_lossy()
                        .to_string(),
                );
            }
        }
        for f in files.iter().filter(|f| !DISABLED.contains(&f.as_str())) {
            assert!(
                PROBES.iter().any(|p| p.spec.name == f),
                "probe file {f}.rs is not in probes!()"
            );
        }
        let mut seen = HashSet::new();
        for p in PROBES {
            for n in std::iter::once(&p.spec.name).chain(p.spec.aliases) {
                assert!(
                    seen.insert(n.to_ascii_lowercase()),
                    "type name {n} registered twice"
                );
            }
        }
    }
}
