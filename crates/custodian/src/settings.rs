//! Settings: the TOML file, the original's `custodian.cfg`, and the flags that override both.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where settings are read from when `--settings` is not given.
const DEFAULT_PATH: &str = "/etc/custodian/custodian.toml";

/// Every settings key, with its default. Unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Settings {
    /// Deadline of one attempt, in seconds (default 30).
    pub(crate) timeout: f64,
    /// Total attempts per check, the first included (default 5).
    pub(crate) retries: u32,
    /// Seconds between attempts (default 0).
    pub(crate) retry_delay: f64,
    /// Most checks in flight at once (default 5000; capped by the open-file limit).
    pub(crate) concurrency: usize,
    /// Most attempts in flight against one target at once (default 8).
    pub(crate) per_host: usize,
    /// Deadline for resolving a target's addresses, in seconds, within the attempt (default 5).
    pub(crate) resolve_timeout: f64,
    /// Deadline for fetching a `fetched from URL` macro, in seconds (default 10).
    pub(crate) fetch_timeout: f64,
    /// Extra PEM bundle of trusted CA certificates for TLS checks (default: none).
    pub(crate) ca_file: Option<PathBuf>,
    /// DNS servers (`IP` or `IP:PORT`, port 53 by default) that `mx` and `dnsbl` checks ask,
    /// in order (default: none, meaning those of /etc/resolv.conf).
    pub(crate) nameservers: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: 30.0,
            retries: 5,
            retry_delay: 0.0,
            concurrency: 5000,
            per_host: 8,
            resolve_timeout: 5.0,
            fetch_timeout: 10.0,
            ca_file: None,
            nameservers: Vec::new(),
        }
    }
}

impl Settings {
    /// Reads `path` (or the default file when present), then validates.
    pub(crate) fn load(path: Option<&Path>) -> Result<Settings> {
        let settings = match path {
            Some(p) => Self::read(p)?,
            None if Path::new(DEFAULT_PATH).exists() => Self::read(Path::new(DEFAULT_PATH))?,
            None => Settings::default(),
        };
        settings.validate()?;
        Ok(settings)
    }

    fn read(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading settings {}", path.display()))?;
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        let parsed = if is_toml {
            Self::from_toml(&text)
        } else {
            Self::from_cfg(&text)
        };
        parsed.with_context(|| format!("in settings file {}", path.display()))
    }

    pub(crate) fn from_toml(text: &str) -> Result<Settings> {
        Ok(toml::from_str(text)?)
    }

    /// The original's format: `key = value` lines, `#` comments, its key names.
    pub(crate) fn from_cfg(text: &str) -> Result<Settings> {
        let mut s = Settings::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                bail!("line {}: expected `key = value`, found {line:?}", n + 1);
            };
            s.set_cfg(key.trim(), value.trim())
                .with_context(|| format!("line {}", n + 1))?;
        }
        Ok(s)
    }

    fn set_cfg(&mut self, key: &str, value: &str) -> Result<()> {
        let num = || {
            value
                .parse::<f64>()
                .with_context(|| format!("`{key}` needs a number, found {value:?}"))
        };
        match key {
            "timeout" => self.timeout = num()?,
            "retries" => self.retries = num()? as u32,
            "retry_delay" => self.retry_delay = num()?,
            "concurrency" => self.concurrency = num()? as usize,
            "per_host" => self.per_host = num()? as usize,
            "ca_file" => self.ca_file = Some(PathBuf::from(value)),
            "nameservers" => {
                self.nameservers = value
                    .split([',', ' ', '\t'])
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            k if ORIGINAL_ALERT_KEYS.contains(&k) || k.ends_with("_target") => {
                tracing::warn!("settings key `{k}` is for alerting, which this version does not do yet; ignored");
            }
            _ => bail!("unknown settings key `{key}` (known: timeout, retries, retry_delay, concurrency, per_host, ca_file, nameservers, {})", ORIGINAL_ALERT_KEYS.join(", ")),
        }
        Ok(())
    }

    /// Rejects values no run could use.
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.timeout > 0.0 && self.timeout.is_finite()) {
            bail!(
                "timeout must be a positive number of seconds, not {}",
                self.timeout
            );
        }
        if self.retries == 0 {
            bail!("retries is the total number of attempts and must be at least 1");
        }
        if !(self.retry_delay >= 0.0 && self.retry_delay.is_finite()) {
            bail!(
                "retry_delay must be zero or more seconds, not {}",
                self.retry_delay
            );
        }
        if self.concurrency == 0 || self.per_host == 0 {
            bail!("concurrency and per_host must be at least 1");
        }
        if !(self.resolve_timeout > 0.0 && self.fetch_timeout > 0.0) {
            bail!("resolve_timeout and fetch_timeout must be positive");
        }
        for n in &self.nameservers {
            parse_nameserver(n)?;
        }
        Ok(())
    }

    /// The `nameservers` as socket addresses (already validated).
    pub(crate) fn nameservers(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter_map(|n| parse_nameserver(n).ok())
            .collect()
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    pub(crate) fn retry_delay(&self) -> Duration {
        Duration::from_secs_f64(self.retry_delay)
    }

    pub(crate) fn resolve_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.resolve_timeout)
    }
}

/// A nameserver as written in the settings: `IP`, `IP:PORT` or `[IPv6]:PORT`.
fn parse_nameserver(text: &str) -> Result<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        anyhow::anyhow!("nameservers: {text:?} is not an IP address or IP:PORT (names cannot be used here)")
    })
}

/// Keys of the original's custodian.cfg that belong to alerting.
const ORIGINAL_ALERT_KEYS: &[&str] = &[
    "alerter",
    "alert_source",
    "day_start",
    "day_end",
    "working_suppress",
    "oncall_suppress",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_reads_keys_and_rejects_unknown_ones() {
        let s = Settings::from_toml("timeout = 5\nretries = 2\nconcurrency = 10\n").expect("valid");
        assert_eq!(
            (s.timeout, s.retries, s.concurrency, s.retry_delay),
            (5.0, 2, 10, 0.0)
        );
        let err = Settings::from_toml("timout = 5\n")
            .expect_err("typo")
            .to_string();
        assert!(err.contains("unknown field `timout`"), "{err}");
    }

    #[test]
    fn original_cfg_format_is_read() {
        let s = Settings::from_cfg("# comment\ntimeout = 12\nretries=3\nretry_delay = 1\nalerter = file\nfile_target = /tmp/x\n")
            .expect("valid");
        assert_eq!((s.timeout, s.retries, s.retry_delay), (12.0, 3, 1.0));
        let err = format!(
            "{:#}",
            Settings::from_cfg("bogus = 1\n").expect_err("unknown")
        );
        assert!(
            err.contains("line 1") && err.contains("unknown settings key `bogus`"),
            "{err}"
        );
        let err = format!("{:#}", Settings::from_cfg("timeout\n").expect_err("no ="));
        assert!(err.contains("expected `key = value`"), "{err}");
    }

    #[test]
    fn validation_rejects_useless_values() {
        let bad = Settings {
            retries: 0,
            ..Settings::default()
        };
        assert!(bad.validate().is_err());
        let bad = Settings {
            timeout: -1.0,
            ..Settings::default()
        };
        assert!(bad.validate().is_err());
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn nameservers_are_addresses_with_optional_ports() {
        let s = Settings::from_toml("nameservers = [\"127.0.10.3:5353\", \"::1\", \"[::1]:54\"]\n")
            .expect("valid");
        s.validate().expect("valid addresses");
        let want: Vec<SocketAddr> = ["127.0.10.3:5353", "[::1]:53", "[::1]:54"]
            .iter()
            .map(|a| a.parse().expect("addr"))
            .collect();
        assert_eq!(s.nameservers(), want);
        let cfg = Settings::from_cfg("nameservers = 127.0.0.1, 127.0.0.2:5353\n").expect("valid");
        assert_eq!(cfg.nameservers, ["127.0.0.1", "127.0.0.2:5353"]);
        assert!(Settings::default().nameservers().is_empty());
        let bad = Settings {
            nameservers: vec!["ns1.example.com".into()],
            ..Settings::default()
        };
        let err = bad.validate().expect_err("a name").to_string();
        assert!(err.contains("\"ns1.example.com\" is not an IP address"), "{err}");
    }
}
