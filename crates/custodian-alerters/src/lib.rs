//! custodian's alerters: they carry [`AlertEvent`]s from the state machine to people and
//! systems. Each channel is one file with a `Config` (serde, `deny_unknown_fields`,
//! `validate()`), pure render functions and an async deliver; the `alerters!` list below is the
//! only registry. [`Dispatcher`] retries each alerter with backoff and never lets one failing
//! channel hold up or break the others. Depends on custodian-core only; knows nothing of queues.

use custodian_core::state::{AlertEvent, EventKind};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

mod dispatch;
mod http_json;

// The decoders of receivers' bytes behind one door, only for the fuzz targets in fuzz/.
#[doc(hidden)]
pub mod fuzzing;

pub use dispatch::{Delivery, Dispatcher, Retry};

/// Why an alerter could not be configured or could not deliver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work (bad address, missing recipient).
    #[error("{0}")]
    Config(String),
    /// The receiver could not be reached or the connection broke.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The receiver answered, but refused the alert.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The receiver did not finish within the attempt's deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// A configured, running channel.
pub trait Alerter: Send + Sync {
    /// The registry name (`smtp`, `file`, ...).
    fn name(&self) -> &'static str;

    /// Whether this channel takes events of `kind`; by default every notice but `Result`.
    fn wants(&self, kind: EventKind) -> bool {
        kind != EventKind::Result
    }

    /// Sends one event, once: retries belong to the [`Dispatcher`].
    fn deliver<'a>(&'a self, event: &'a AlertEvent) -> BoxFuture<'a, Result<(), Error>>;
}

/// What every alerter may use besides its own section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Who sends the alerts (`alert_source`; mauve's source, the webhook's `source`).
    pub source: String,
}

macro_rules! alerters {
    ($($name:ident: $config:ident => $alerter:ident),* $(,)?) => {
        $(pub mod $name;)*

        /// Every registered alerter, by settings name.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];

        /// The `[alerters.<name>]` sections of the settings; a present section enables it.
        #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Config {
            $(pub $name: Option<$name::$config>,)*
            /// How hard each alerter is tried.
            #[serde(default)]
            pub retry: Retry,
        }

        impl Config {
            /// Applies the original's `<name>_target = VALUE` key.
            pub fn set_target(&mut self, name: &str, target: &str) -> Result<(), Error> {
                match name {
                    $(stringify!($name) => self.$name = Some($name::$config::from_target(target)?),)*
                    _ => return Err(unknown(name)),
                }
                Ok(())
            }

            /// Whether no alerter is configured.
            pub fn is_empty(&self) -> bool {
                true $(&& self.$name.is_none())*
            }

            /// Checks every configured section; the error names the alerter.
            pub fn validate(&self) -> Result<(), Error> {
                self.retry.validate()?;
                $(if let Some(c) = &self.$name {
                    c.validate().map_err(|e| Error::Config(format!("alerter {}: {e}", stringify!($name))))?;
                })*
                Ok(())
            }

            /// The configured alerters, ready to deliver.
            pub fn build(&self, common: &Common) -> Result<Vec<Arc<dyn Alerter>>, Error> {
                let mut out: Vec<Arc<dyn Alerter>> = Vec::new();
                $(if let Some(c) = &self.$name {
                    out.push(Arc::new($name::$alerter::new(c.clone(), common)?));
                })*
                Ok(out)
            }
        }
    };
}

alerters!(
    smtp: SmtpConfig => SmtpAlerter,
    file: FileConfig => FileAlerter,
    redis: RedisConfig => RedisAlerter,
    mauve: MauveConfig => MauveAlerter,
    graphite: GraphiteConfig => GraphiteAlerter,
    webhook: WebhookConfig => WebhookAlerter,
    alertmanager: AlertmanagerConfig => AlertmanagerAlerter,
);

fn unknown(name: &str) -> Error {
    Error::Config(format!(
        "unknown alerter `{name}` (known: {})",
        NAMES.join(", ")
    ))
}

/// The JSON form of an event shared by the file (JSON lines) and webhook alerters.
///
/// Schema: `event` (raise, still_failing, clear, flapping), `at` and `raised_at` (unix
/// seconds), `failing_for` (seconds), `source`, and the result's `id`, `type`, `target`,
/// `subject`, `line`, `file`, `lineno`, `status`, `reason`, `otherwise`, `duration_ms`,
/// `attempts`. Secrets are masked in every field.
pub fn event_json(event: &AlertEvent, source: &str) -> serde_json::Value {
    let r = &event.result;
    serde_json::json!({
        "event": event.kind,
        "at": event.at,
        "raised_at": event.raised_at,
        "failing_for": event.failing_for(),
        "source": source,
        "id": r.id,
        "type": r.probe,
        "target": r.target,
        "subject": r.subject,
        "line": r.line,
        "file": r.file,
        "lineno": r.lineno,
        "status": r.status,
        "reason": r.error,
        "otherwise": r.otherwise,
        "duration_ms": r.duration_ms,
        "attempts": r.attempts,
    })
}

/// The one-line headline of an event: `RAISE: <subject or target> (<type>) - <reason>`.
pub fn headline(event: &AlertEvent) -> String {
    let r = &event.result;
    let what = r.subject.as_deref().unwrap_or(&r.target);
    let mut s = format!("{}: {what} ({})", event.kind.word(), r.probe);
    if event.kind.is_firing() {
        if let Some(reason) = &r.error {
            s.push_str(&format!(" - {reason}"));
        }
    }
    s
}

/// `1h 2m 3s`, for how long a check failed.
pub fn human_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

/// Parses `IP` or `IP:PORT` (IPv6 in brackets with a port); names are refused so that no
/// alert ever waits on a resolver.
pub(crate) fn socket_addr(text: &str, default_port: u16) -> Result<std::net::SocketAddr, Error> {
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, default_port));
    }
    text.parse().map_err(|_| {
        Error::Config(format!(
            "{text:?} is not an IP address or IP:PORT (names cannot be used here)"
        ))
    })
}

#[cfg(test)]
pub(crate) mod testutil;
#[cfg(test)]
pub(crate) mod testutil_http;

#[cfg(test)]
mod tests {
    use super::*;

    /// Files in src/ that are plumbing, not alerters.
    const PLUMBING: &[&str] = &[
        "fuzzing",
        "lib",
        "dispatch",
        "http_json",
        "testutil",
        "testutil_http",
    ];

    #[test]
    fn every_alerter_file_is_registered_once() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut files: Vec<String> = std::fs::read_dir(src)
            .expect("src")
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".rs")
                    .map(str::to_string)
            })
            .filter(|n| !PLUMBING.contains(&n.as_str()))
            .collect();
        files.sort();
        let mut names = NAMES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), NAMES.len(), "a name is listed twice");
        assert_eq!(files, names);
    }

    #[test]
    fn targets_configure_alerters_by_name() {
        let mut c = Config::default();
        assert!(c.is_empty());
        c.set_target("graphite", "127.0.0.1").expect("graphite");
        assert!(!c.is_empty() && c.validate().is_ok());
        let err = c.set_target("pager", "x").expect_err("unknown").to_string();
        assert!(err.contains("unknown alerter `pager`"), "{err}");
        assert_eq!(human_duration(3725), "1h 2m 5s");
    }
}
