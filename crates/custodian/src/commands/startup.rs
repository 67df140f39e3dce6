//! The one start-up path of the commands that run checks (run, worker, serve, probe; scan for
//! its open-file limit): settings, flag overrides, validation, the probes' environment (trust
//! roots, nameservers), the open-file limit, concurrency, the engine and alerting.

use crate::alerting::{Alerting, FileStore, StateStore};
use crate::cli::CommonArgs;
use crate::settings::Settings;
use crate::worker::Engine;
use anyhow::{Context, Result};
use custodian_core::Job;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Flags that override settings keys; `None` keeps the file's (or the default) value.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Overrides {
    pub(crate) concurrency: Option<usize>,
    pub(crate) timeout: Option<f64>,
    pub(crate) retries: Option<u32>,
    pub(crate) retry_delay: Option<f64>,
}

impl Overrides {
    fn apply(self, s: &mut Settings) {
        if let Some(n) = self.concurrency {
            s.concurrency = n;
        }
        if let Some(t) = self.timeout {
            s.timeout = t;
        }
        if let Some(r) = self.retries {
            s.retries = r;
        }
        if let Some(d) = self.retry_delay {
            s.retry_delay = d;
        }
    }
}

/// Validated settings and the probes' environment built from them.
pub(crate) struct Startup {
    pub(crate) settings: Settings,
    pub(crate) env: Arc<custodian_probes::Env>,
}

impl Startup {
    /// Settings from `--settings` (or the default file), overridden by flags, validated, and
    /// the probes' environment.
    pub(crate) fn new(common: &CommonArgs, flags: Overrides) -> Result<Startup> {
        Startup::from_settings(Settings::load(common.settings.as_deref())?, flags)
    }

    /// As [`Startup::new`] for settings already loaded (a command that reads a key first).
    pub(crate) fn from_settings(mut settings: Settings, flags: Overrides) -> Result<Startup> {
        flags.apply(&mut settings);
        settings.validate()?;
        let env = probe_env(&settings)?;
        Ok(Startup { settings, env })
    }

    /// Raises the open-file limit and keeps concurrency below it (long runs of many checks;
    /// a plugin running one check skips this).
    pub(crate) fn with_fd_limit(mut self) -> Startup {
        self.settings = cap_concurrency(self.settings, raise_fd_limit());
        self
    }

    /// The engine running this command's checks.
    pub(crate) fn engine(&self) -> Arc<Engine> {
        Engine::with_env(self.settings.engine_config(), Arc::clone(&self.env))
    }

    /// Alerting when alerters are configured, its state in `store`.
    pub(crate) async fn alerting(
        &self,
        store: impl FnOnce() -> Result<Box<dyn StateStore>>,
    ) -> Result<Option<Arc<Alerting>>> {
        Alerting::new(&self.settings, store).await
    }

    /// Alerting with its state in the local state file (run, serve).
    pub(crate) async fn local_alerting(&self) -> Result<Option<Arc<Alerting>>> {
        let s = &self.settings;
        self.alerting(|| Ok(Box::new(FileStore::open(&s.state_file(), s.policy()))))
            .await
    }
}

/// Loads files and prints their diagnostics; `None` when there were errors.
pub(crate) async fn load_jobs(
    files: &[PathBuf],
    strict: bool,
    settings: &Settings,
) -> Result<Option<Vec<Job>>> {
    let mut jobs = Vec::new();
    let valid = load_each(files, strict, settings, &mut |job| jobs.push(job)).await?;
    Ok(valid.then_some(jobs))
}

/// As [`load_jobs`], but gives each job to `sink` as it is planned (a caller that only counts
/// holds none of them); false when there were errors, and then the jobs given mean nothing.
pub(crate) async fn load_each(
    files: &[PathBuf],
    strict: bool,
    settings: &Settings,
    sink: &mut dyn FnMut(Job),
) -> Result<bool> {
    let diagnostics = crate::load::load_each(
        files,
        strict,
        settings.fetch_timeout(),
        settings.max_jobs,
        sink,
    )
    .await?;
    let mut err = std::io::stderr().lock();
    for d in &diagnostics {
        writeln!(err, "{d}\n")?;
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    if errors > 0 {
        writeln!(
            err,
            "{errors} error(s), {warnings} warning(s): nothing was run or enqueued"
        )?;
        return Ok(false);
    }
    if warnings > 0 {
        writeln!(err, "{warnings} warning(s)")?;
    }
    Ok(true)
}

/// Says once that checks naming locations (`from ...`) are run by `how` here, not fanned out:
/// only `serve --queue` sends them to their locations and decides by quorum.
pub(crate) fn warn_locations(jobs: &[Job], how: &str) {
    let n = jobs.iter().filter(|j| j.from.is_some()).count();
    if n > 0 {
        tracing::warn!(
            "{n} check(s) name locations (`from ...`): {how}; only `serve --queue` runs them \
             from their locations and decides by quorum"
        );
    }
}

/// The probes' shared environment (TLS trust, nameservers), built once from the settings;
/// a CA file that cannot be used stops start-up, a fallback to the bundled roots is logged.
fn probe_env(settings: &Settings) -> Result<Arc<custodian_probes::Env>> {
    let env = custodian_probes::Env::build(&settings.env_options())
        .map_err(anyhow::Error::msg)
        .context("loading ca_file")?;
    for w in env.warnings() {
        tracing::warn!("{w}");
    }
    Ok(Arc::new(env))
}

/// Thousands of concurrent checks need thousands of sockets: lift the soft limit to the hard
/// one. Returns the limit now in force, if it could be read.
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Some(raised.rlim_cur);
            }
        }
    }
    Some(lim.rlim_cur)
}

/// Files kept for everything but checks (runtime, stdio, resolver).
const RESERVED_FDS: u64 = 64;

/// How many of something holding `each` files fit the open-file limit `fd_limit` (at least 1).
fn fit(fd_limit: u64, each: u64) -> u64 {
    (fd_limit.saturating_sub(RESERVED_FDS) / each.max(1)).max(1)
}

/// Raises the open-file limit and lowers `wanted` so that as many probes of `conns` sockets
/// each fit it (scan, which has no settings).
pub(crate) fn fit_fd_limit(wanted: usize, conns: u32) -> usize {
    match raise_fd_limit() {
        Some(limit) => {
            let most = fit(limit, u64::from(conns));
            wanted.min(usize::try_from(most).unwrap_or(usize::MAX))
        }
        None => wanted,
    }
    .max(1)
}

/// Keeps concurrency below the open-file limit: each check in flight holds at least one socket.
fn cap_concurrency(mut settings: Settings, fd_limit: Option<u64>) -> Settings {
    if let Some(limit) = fd_limit {
        let most = usize::try_from(fit(limit, 1)).unwrap_or(usize::MAX);
        if settings.concurrency > most {
            tracing::warn!(
                "concurrency {} exceeds the open-file limit {limit}; using {most}",
                settings.concurrency
            );
            settings.concurrency = most;
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_stays_under_the_open_file_limit() {
        let s = Settings {
            concurrency: 5000,
            ..Settings::default()
        };
        assert_eq!(cap_concurrency(s.clone(), Some(1024)).concurrency, 960);
        assert_eq!(cap_concurrency(s.clone(), Some(65536)).concurrency, 5000);
        assert_eq!(cap_concurrency(s, None).concurrency, 5000);
        // A limit below the reserve still leaves one check.
        assert_eq!(fit(10, 1), 1);
        assert_eq!(fit(1024, 2), 480);
    }

    #[test]
    fn flags_override_the_file_and_are_validated() {
        let flags = Overrides {
            concurrency: Some(7),
            timeout: Some(2.5),
            retries: Some(2),
            retry_delay: Some(0.5),
        };
        let start = Startup::from_settings(Settings::default(), flags).expect("valid");
        let s = &start.settings;
        assert_eq!(
            (s.concurrency, s.timeout, s.retries, s.retry_delay),
            (7, 2.5, 2, 0.5)
        );
        let zero = Overrides {
            retries: Some(0),
            ..Overrides::default()
        };
        assert!(Startup::from_settings(Settings::default(), zero).is_err());
    }
}
