//! Settings: the TOML file, the original's `custodian.cfg`, and the flags that override both.

mod numbers;

use anyhow::{bail, Context, Result};
use numbers::{bound, cfg_bool, cfg_int, cfg_secs, seconds, top_level_key, BOUNDS};
pub(crate) use numbers::{flag_int, flag_secs};
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
    /// Most attempts in flight against one host name or address at once; 0 means no limit
    /// (default 0). Every check of a host is its own connection, and the global
    /// `concurrency` already bounds sockets; a per-host cap only makes one slow host's checks
    /// wait for each other, so set it only for a target that must not see many connections.
    pub(crate) per_host: usize,
    /// Most jobs the test files may expand to in all, macros and address blocks counted
    /// (default 1000000); the test that crosses it is an error and nothing runs.
    pub(crate) max_jobs: usize,
    /// Times a queued job may be delivered without finishing (its worker died or its lease ran
    /// out) before the next delivery buries it with the reason (default 3).
    pub(crate) max_deliveries: u32,
    /// Deadline for resolving a target's addresses, in seconds, within the attempt (default 5).
    pub(crate) resolve_timeout: f64,
    /// Deadline for fetching a `fetched from URL` macro, in seconds (default 10).
    pub(crate) fetch_timeout: f64,
    /// Extra PEM bundle of trusted CA certificates for TLS checks, on top of `tls_roots`
    /// (default: none). A file that cannot be read or holds no CA certificate stops start-up.
    pub(crate) ca_file: Option<PathBuf>,
    /// The roots TLS checks trust besides `ca_file` (default `system`): `system`, the host's
    /// trust store as OpenSSL and curl see it (`SSL_CERT_FILE`/`SSL_CERT_DIR`, else
    /// /etc/ssl/certs), falling back to the bundled roots with a warning when it cannot be
    /// read or is empty; or `bundled`, only the Mozilla roots built into custodian.
    pub(crate) tls_roots: TlsRoots,
    /// DNS servers (`IP` or `IP:PORT`, port 53 by default) that `mx` and `dnsbl` checks ask,
    /// in order (default: none, meaning those of /etc/resolv.conf).
    pub(crate) nameservers: Vec<String>,
    /// Alerters (`[alerters.<name>]` sections; `alerter` + `<name>_target` in custodian.cfg).
    pub(crate) alerters: custodian_alerters::Config,
    /// Who sends the alerts (default `custodian`).
    pub(crate) alert_source: String,
    /// Where `run` keeps check states between invocations (default: see [`default_state_file`]).
    pub(crate) state_file: Option<PathBuf>,
    /// Where workers keep shared check states: `redis://IP:PORT[/DB][?prefix=NAME]` (default:
    /// the queue's Redis with a `redis://` queue, else `state_file`).
    pub(crate) state_redis: Option<String>,
    /// Consecutive failures before a check raises (default 1).
    pub(crate) fail_threshold: u32,
    /// Consecutive passes before a failing check clears (default 1).
    pub(crate) pass_threshold: u32,
    /// Seconds between "still failing" notices; 0 for none (default 3600).
    pub(crate) renotify: u64,
    /// Flips within `flap_window` that make a check flapping; 0 turns it off (default 5).
    pub(crate) flap_flips: u32,
    /// Seconds over which flips count, and of calm that ends flapping (default 3600).
    pub(crate) flap_window: u64,
    /// Unknown results in a row ("could not check": our own error) before one "cannot
    /// check" notice; they never raise or clear a service alert; 0 for no notice (default 3).
    pub(crate) unknown_threshold: u32,
    /// `serve --queue`: a check run from several locations whose failures fall short of its
    /// quorum is "partial"; with this on, that raises an alert of its own ("partial: ...")
    /// besides being shown (default false).
    pub(crate) partial_alerts: bool,
    /// `serve --queue`: intervals without a heartbeat from any worker of a location before
    /// "location NAME silent" is alerted, once (default 3).
    pub(crate) location_silent_after: u32,
    /// The original's queue kind, `beanstalk` (or `beanstalkd`) or `redis`: with `queue_host`
    /// it names the queue `enqueue`, `worker` and `queue` use when `--queue` is not given.
    pub(crate) queue_type: Option<QueueType>,
    /// The original's queue server, `HOST` or `HOST:PORT` (default port 11300 for beanstalk,
    /// 6379 for redis); a name is resolved when the queue is opened, not here.
    pub(crate) queue_host: Option<String>,
    /// The original's log file. Accepted so an existing custodian.cfg loads, but logs go to
    /// stderr (the journal under systemd); a warning says so when it is set.
    pub(crate) log_file: Option<PathBuf>,
    /// A scan `serve` runs on a schedule (`[scan]`; TOML only), its report stored like one
    /// posted by `custodian scan --report-to` (default: none).
    pub(crate) scan: Option<ScanSettings>,
}

/// `[scan]`: `custodian scan`'s flags as keys, plus how often.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ScanSettings {
    /// How often: `30m`, `6h`, `1d`, `1w` (at least 1 s). The first scan runs one interval
    /// after `serve` starts.
    pub(crate) every: String,
    /// IPs, CIDR blocks and ranges to scan; names are refused.
    pub(crate) targets: Vec<String>,
    /// A file of targets, one per line, `#` comments (as `custodian scan @FILE`).
    pub(crate) targets_file: Option<PathBuf>,
    /// `--checks` (default: all four abuse checks).
    pub(crate) checks: Option<String>,
    /// `--port CHECK=PORTS`, each.
    pub(crate) ports: Vec<String>,
    pub(crate) exclude: Option<String>,
    pub(crate) rate: Option<f64>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) timeout: Option<f64>,
    pub(crate) sender: Option<String>,
    pub(crate) recipient: Option<String>,
    pub(crate) data_confirmation: bool,
    pub(crate) zone: Option<String>,
    pub(crate) expect: Option<String>,
    pub(crate) canary: Option<String>,
    pub(crate) token: Option<String>,
}

impl ScanSettings {
    /// `every` in seconds.
    pub(crate) fn interval(&self) -> Result<Duration> {
        let text = self.every.trim();
        let bad = || anyhow::anyhow!("every = {text:?}: want e.g. 30m, 6h, 1d or 1w");
        let at = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(at);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let scale = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        match n.checked_mul(scale) {
            Some(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(bad()),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: 30.0,
            retries: 5,
            retry_delay: 0.0,
            concurrency: 5000,
            per_host: 0,
            max_jobs: 1_000_000,
            max_deliveries: 3,
            resolve_timeout: 5.0,
            fetch_timeout: 10.0,
            ca_file: None,
            tls_roots: TlsRoots::System,
            nameservers: Vec::new(),
            alerters: custodian_alerters::Config::default(),
            alert_source: "custodian".into(),
            state_file: None,
            state_redis: None,
            fail_threshold: 1,
            pass_threshold: 1,
            renotify: 3600,
            flap_flips: 5,
            flap_window: 3600,
            unknown_threshold: 3,
            partial_alerts: false,
            location_silent_after: 3,
            queue_type: None,
            queue_host: None,
            log_file: None,
            scan: None,
        }
    }
}

impl Settings {
    /// Reads `path` (or the default file when present), then validates.
    pub(crate) fn load(path: Option<&Path>) -> Result<Settings> {
        let path = path.or_else(|| Some(Path::new(DEFAULT_PATH)).filter(|p| p.exists()));
        let Some(path) = path else {
            return Ok(Settings::default());
        };
        let settings = Self::read(path)?;
        settings
            .validate()
            .with_context(|| format!("in settings file {}", path.display()))?;
        if let Some(log) = &settings.log_file {
            tracing::warn!(
                "log_file = {}: ignored, logs go to stderr (the journal under systemd); \
                 redirect stderr to keep a file",
                log.display()
            );
        }
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
        toml::from_str(text).map_err(|e| {
            // serde says only "expected u32": name the key's range as well.
            let range = e
                .span()
                .and_then(|span| top_level_key(text, span.start))
                .and_then(|key| BOUNDS.iter().find(|b| b.key == key));
            match range {
                Some(b) => anyhow::anyhow!("{e}`{}` must be {}", b.key, b.text()),
                None => e.into(),
            }
        })
    }

    /// The original's format: `key = value` lines, `#` comments, its key names.
    pub(crate) fn from_cfg(text: &str) -> Result<Settings> {
        let mut s = Settings::default();
        let mut alerting = CfgAlerting::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                bail!("line {}: expected `key = value`, found {line:?}", n + 1);
            };
            let (key, value) = (key.trim(), value.trim());
            if !alerting.take(key, value) {
                s.set_cfg(key, value)
                    .with_context(|| format!("line {}", n + 1))?;
            }
        }
        alerting.apply(&mut s)?;
        Ok(s)
    }

    fn set_cfg(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "timeout" => self.timeout = cfg_secs(key, value)?,
            "retries" => self.retries = cfg_int(key, value)?,
            "retry_delay" => self.retry_delay = cfg_secs(key, value)?,
            "concurrency" => self.concurrency = cfg_int(key, value)?,
            "per_host" => self.per_host = cfg_int(key, value)?,
            "max_jobs" => self.max_jobs = cfg_int(key, value)?,
            "max_deliveries" => self.max_deliveries = cfg_int(key, value)?,
            "resolve_timeout" => self.resolve_timeout = cfg_secs(key, value)?,
            "fetch_timeout" => self.fetch_timeout = cfg_secs(key, value)?,
            "ca_file" => self.ca_file = Some(PathBuf::from(value)),
            "tls_roots" => self.tls_roots = TlsRoots::parse(value)?,
            "nameservers" => {
                self.nameservers = value
                    .split([',', ' ', '\t'])
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "alert_source" => self.alert_source = value.to_string(),
            "state_file" => self.state_file = Some(PathBuf::from(value)),
            "state_redis" => self.state_redis = Some(value.to_string()),
            "fail_threshold" => self.fail_threshold = cfg_int(key, value)?,
            "pass_threshold" => self.pass_threshold = cfg_int(key, value)?,
            "renotify" => self.renotify = cfg_int(key, value)?,
            "flap_flips" => self.flap_flips = cfg_int(key, value)?,
            "flap_window" => self.flap_window = cfg_int(key, value)?,
            "unknown_threshold" => self.unknown_threshold = cfg_int(key, value)?,
            "partial_alerts" => self.partial_alerts = cfg_bool(key, value)?,
            "location_silent_after" => self.location_silent_after = cfg_int(key, value)?,
            "queue_type" => self.queue_type = Some(QueueType::parse(value)?),
            "queue_host" => self.queue_host = Some(value.to_string()),
            "log_file" => self.log_file = Some(PathBuf::from(value)),
            _ => bail!("unknown settings key `{key}` (known: timeout, retries, retry_delay, concurrency, per_host, max_jobs, max_deliveries, resolve_timeout, fetch_timeout, ca_file, tls_roots, nameservers, alert_source, state_file, state_redis, fail_threshold, pass_threshold, renotify, flap_flips, flap_window, unknown_threshold, partial_alerts, location_silent_after, queue_type, queue_host, log_file, alerter, <alerter>_target, {})", MAUVE_KEYS.join(", ")),
        }
        Ok(())
    }

    /// Rejects values no run could use: every number must lie in its key's range ([`BOUNDS`]).
    pub(crate) fn validate(&self) -> Result<()> {
        let secs = [
            ("timeout", self.timeout),
            ("retry_delay", self.retry_delay),
            ("resolve_timeout", self.resolve_timeout),
            ("fetch_timeout", self.fetch_timeout),
        ];
        for (key, v) in secs {
            bound(key).check(v, format_args!("{v:?}"))?;
        }
        let ints = [
            ("retries", u64::from(self.retries)),
            ("concurrency", self.concurrency as u64),
            ("per_host", self.per_host as u64),
            ("max_jobs", self.max_jobs as u64),
            ("max_deliveries", u64::from(self.max_deliveries)),
            ("fail_threshold", u64::from(self.fail_threshold)),
            ("pass_threshold", u64::from(self.pass_threshold)),
            ("renotify", self.renotify),
            ("flap_flips", u64::from(self.flap_flips)),
            ("flap_window", self.flap_window),
            ("unknown_threshold", u64::from(self.unknown_threshold)),
            (
                "location_silent_after",
                u64::from(self.location_silent_after),
            ),
        ];
        for (key, n) in ints {
            bound(key).check(n as f64, n)?;
        }
        for n in &self.nameservers {
            parse_nameserver(n)?;
        }
        self.policy().validate().map_err(anyhow::Error::msg)?;
        self.alerters.validate()?;
        if let Some(scan) = &self.scan {
            scan.interval().context("[scan]")?;
            crate::scan::scheduled(scan).context("[scan]")?;
        }
        if let Some(host) = &self.queue_host {
            queue_host(host)?;
        }
        Ok(())
    }

    /// The queue URL: `--queue` when given, else `queue_type` + `queue_host` (the original's
    /// keys; `queue_host` alone means beanstalk, the original's default).
    pub(crate) fn queue_url(&self, flag: Option<&str>) -> Result<String> {
        if let Some(url) = flag {
            return Ok(url.to_string());
        }
        let Some(host) = &self.queue_host else {
            bail!(
                "no queue: give --queue URL, or set queue_type and queue_host in the settings \
                 (e.g. queue_type = beanstalk, queue_host = 127.0.0.1:11300)"
            );
        };
        let scheme = match self.queue_type.unwrap_or(QueueType::Beanstalk) {
            QueueType::Beanstalk => "beanstalk",
            QueueType::Redis => "redis",
        };
        Ok(format!("{scheme}://{}", queue_host(host)?))
    }

    /// What the probes' shared environment is built from.
    pub(crate) fn env_options(&self) -> custodian_probes::EnvOptions {
        custodian_probes::EnvOptions {
            roots: match self.tls_roots {
                TlsRoots::System => custodian_probes::Roots::System,
                TlsRoots::Bundled => custodian_probes::Roots::Bundled,
            },
            ca_file: self.ca_file.clone(),
            nameservers: self.nameservers(),
        }
    }

    /// The `nameservers` as socket addresses (already validated).
    pub(crate) fn nameservers(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter_map(|n| parse_nameserver(n).ok())
            .collect()
    }

    pub(crate) fn timeout(&self) -> Duration {
        seconds("timeout", self.timeout)
    }

    pub(crate) fn retry_delay(&self) -> Duration {
        seconds("retry_delay", self.retry_delay)
    }

    pub(crate) fn fetch_timeout(&self) -> Duration {
        seconds("fetch_timeout", self.fetch_timeout)
    }

    /// What the engine reads: slots, deadlines and retries.
    pub(crate) fn engine_config(&self) -> crate::worker::EngineConfig {
        crate::worker::EngineConfig {
            concurrency: self.concurrency,
            per_host: self.per_host,
            timeout: self.timeout(),
            retries: self.retries,
            retry_delay: self.retry_delay(),
            resolve_timeout: self.resolve_timeout(),
        }
    }

    /// The state machine's thresholds.
    pub(crate) fn policy(&self) -> custodian_core::state::Policy {
        custodian_core::state::Policy {
            fail_threshold: self.fail_threshold,
            pass_threshold: self.pass_threshold,
            renotify: self.renotify,
            flap_flips: self.flap_flips,
            flap_window: self.flap_window,
            unknown_threshold: self.unknown_threshold,
        }
    }

    /// `state_file`, or `$STATE_DIRECTORY/state.json` (set by systemd's `StateDirectory=`),
    /// or `/var/lib/custodian/state.json` for root, else
    /// `$XDG_STATE_HOME/custodian/state.json` (`~/.local/state/custodian/state.json`).
    pub(crate) fn state_file(&self) -> PathBuf {
        if let Some(p) = &self.state_file {
            return p.clone();
        }
        // systemd gives a colon-separated list when a unit names several directories.
        if let Some(dir) = std::env::var("STATE_DIRECTORY")
            .ok()
            .and_then(|v| v.split(':').next().map(str::to_string))
            .filter(|d| !d.is_empty())
        {
            return PathBuf::from(dir).join("state.json");
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/var/lib/custodian/state.json");
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("custodian/state.json")
    }

    pub(crate) fn resolve_timeout(&self) -> Duration {
        seconds("resolve_timeout", self.resolve_timeout)
    }
}

/// `tls_roots`: which root certificates TLS checks trust besides `ca_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TlsRoots {
    /// The system's trust store (the bundled roots if it cannot be read).
    System,
    /// Only the Mozilla roots built into custodian.
    Bundled,
}

impl TlsRoots {
    fn parse(value: &str) -> Result<TlsRoots> {
        match value {
            "system" => Ok(TlsRoots::System),
            "bundled" => Ok(TlsRoots::Bundled),
            _ => bail!("tls_roots must be `system` or `bundled`, not {value:?}"),
        }
    }
}

/// `queue_type`: the original's queue kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum QueueType {
    #[serde(alias = "beanstalkd")]
    Beanstalk,
    Redis,
}

impl QueueType {
    fn parse(value: &str) -> Result<QueueType> {
        match value {
            "beanstalk" | "beanstalkd" => Ok(QueueType::Beanstalk),
            "redis" => Ok(QueueType::Redis),
            _ => bail!("queue_type must be `beanstalk` or `redis`, not {value:?}"),
        }
    }
}

/// `queue_host` checked as `HOST` or `HOST:PORT` (IPv6 in brackets), without resolving it.
fn queue_host(text: &str) -> Result<&str> {
    let url = url::Url::parse(&format!("x://{text}"))
        .ok()
        .filter(|u| u.host_str().is_some() && u.path().is_empty() && u.username().is_empty());
    match url {
        Some(_) if !text.contains(['/', '?', '#', '@']) => Ok(text),
        _ => bail!("queue_host must be HOST or HOST:PORT, not {text:?}"),
    }
}

/// A nameserver as written in the settings: `IP`, `IP:PORT` or `[IPv6]:PORT`.
fn parse_nameserver(text: &str) -> Result<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        anyhow::anyhow!(
            "nameservers: {text:?} is not an IP address or IP:PORT (names cannot be used here)"
        )
    })
}

/// The original's mauve keys, which apply to `[alerters.mauve]`.
const MAUVE_KEYS: &[&str] = &[
    "day_start",
    "day_end",
    "working_suppress",
    "oncall_suppress",
];

/// The original's alerting keys, gathered while reading custodian.cfg and applied at the end
/// (the `alerter` line may come before or after the targets).
#[derive(Default)]
struct CfgAlerting {
    names: Vec<String>,
    targets: Vec<(String, String)>,
    mauve: Vec<(String, String)>,
}

impl CfgAlerting {
    /// Keeps `key` if it is an alerting key; false for every other key.
    fn take(&mut self, key: &str, value: &str) -> bool {
        if key == "alerter" {
            self.names = value
                .split([',', ' ', '\t'])
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect();
        } else if let Some(name) = key.strip_suffix("_target") {
            self.targets.push((name.to_string(), value.to_string()));
        } else if MAUVE_KEYS.contains(&key) {
            self.mauve.push((key.to_string(), value.to_string()));
        } else {
            return false;
        }
        true
    }

    /// Enables each listed alerter from its `<name>_target`; the mauve keys tune mauve.
    fn apply(self, s: &mut Settings) -> Result<()> {
        for name in &self.names {
            let Some((_, target)) = self.targets.iter().rev().find(|(n, _)| n == name) else {
                bail!("alerter `{name}` is listed but `{name}_target` is not set");
            };
            s.alerters.set_target(name, target)?;
        }
        let Some(mauve) = s.alerters.mauve.as_mut() else {
            return Ok(());
        };
        for (key, value) in &self.mauve {
            match key.as_str() {
                "day_start" => mauve.day_start = cfg_int(key, value)?,
                "day_end" => mauve.day_end = cfg_int(key, value)?,
                "working_suppress" => mauve.working_suppress = cfg_int(key, value)?,
                _ => mauve.oncall_suppress = cfg_int(key, value)?,
            }
        }
        Ok(())
    }
}

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
    fn scan_section_is_checked_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("targets.txt");
        std::fs::write(&file, "127.0.0.1\n127.0.1.0/30 # lab\n").expect("write");
        let text = |every: &str, file: &Path| {
            format!(
                "[scan]\nevery = \"{every}\"\ntargets_file = \"{}\"\nchecks = \"opensocks\"\n",
                file.display()
            )
        };
        let ok = Settings::from_toml(&text("1d", &file)).expect("parses");
        ok.validate().expect("valid");
        let scan = ok.scan.as_ref().expect("scan");
        assert_eq!(scan.interval().expect("1d"), Duration::from_secs(86_400));
        let err = Settings::from_toml(&text("soon", &file))
            .expect("parses")
            .validate()
            .expect_err("bad interval");
        assert!(format!("{err:#}").contains("every = \"soon\""), "{err:#}");
        let gone = dir.path().join("missing.txt");
        let err = Settings::from_toml(&text("1h", &gone))
            .expect("parses")
            .validate()
            .expect_err("missing file");
        let err = format!("{err:#}");
        assert!(err.starts_with("[scan]: targets_file "), "{err}");
        assert!(err.contains("missing.txt"), "{err}");
        std::fs::write(&file, "not-an-address\n").expect("write");
        let err = Settings::from_toml(&text("1h", &file))
            .expect("parses")
            .validate()
            .expect_err("bad target");
        assert!(format!("{err:#}").starts_with("[scan]: "), "{err:#}");
        let err = Settings::from_toml("[scan]\nevery = \"1h\"\nchecks = \"opensocks\"\n")
            .expect("parses")
            .validate()
            .expect_err("no targets");
        assert!(
            format!("{err:#}").contains("give targets or targets_file"),
            "{err:#}"
        );
        assert!(Settings::from_toml("[scan]\nevery = \"1h\"\nbogus = 1\n").is_err());
    }

    #[test]
    fn the_example_scan_section_loads_when_uncommented() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/custodian.toml");
        let text = std::fs::read_to_string(example).expect("example");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("scan-targets.txt");
        std::fs::write(&file, "127.0.0.1\n").expect("write");
        let block: String = text
            .lines()
            .skip_while(|l| *l != "# [scan]")
            .map_while(|l| l.strip_prefix("# "))
            .map(|l| {
                l.replace(
                    "/etc/custodian/scan-targets.txt",
                    &file.display().to_string(),
                )
            })
            .map(|l| l + "\n")
            .collect();
        assert!(block.starts_with("[scan]\nevery"), "{block}");
        let s = Settings::from_toml(&block).expect("parses");
        s.validate().expect("valid");
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
    fn tls_roots_is_system_or_bundled() {
        assert_eq!(Settings::default().tls_roots, TlsRoots::System);
        let s = Settings::from_toml("tls_roots = \"bundled\"\n").expect("valid");
        assert_eq!(s.env_options().roots, custodian_probes::Roots::Bundled);
        let s = Settings::from_cfg("tls_roots = system\nca_file = /x.pem\n").expect("valid");
        let o = s.env_options();
        assert_eq!(o.roots, custodian_probes::Roots::System);
        assert_eq!(o.ca_file, Some(PathBuf::from("/x.pem")));
        let err = Settings::from_toml("tls_roots = \"mozilla\"\n").expect_err("bad");
        assert!(
            err.to_string().contains("unknown variant `mozilla`"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Settings::from_cfg("tls_roots = os\n").expect_err("bad")
        );
        assert!(
            err.contains("tls_roots must be `system` or `bundled`"),
            "{err}"
        );
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
        assert!(
            err.contains("\"ns1.example.com\" is not an IP address"),
            "{err}"
        );
    }

    #[test]
    fn original_alerting_keys_enable_alerters() {
        let s = Settings::from_cfg(
            "mauve_target = 127.0.0.9\nalerter = file, mauve\nfile_target = /tmp/a.log\n\
             smtp_target = x@y\nday_start = 9\nalert_source = box1\nrenotify = 600\n",
        )
        .expect("valid");
        s.validate().expect("valid settings");
        assert!(s.alerters.smtp.is_none(), "not listed in `alerter`");
        let file = s.alerters.file.as_ref().expect("file");
        assert_eq!(file.path, PathBuf::from("/tmp/a.log"));
        let mauve = s.alerters.mauve.as_ref().expect("mauve");
        assert_eq!((mauve.day_start, mauve.day_end), (9, 18));
        assert_eq!(
            (s.alert_source.as_str(), s.policy().renotify),
            ("box1", 600)
        );
        let err = format!(
            "{:#}",
            Settings::from_cfg("alerter = redis\n").expect_err("no target")
        );
        assert!(err.contains("`redis_target` is not set"), "{err}");
        let err = format!(
            "{:#}",
            Settings::from_cfg("alerter = pager\npager_target = 1\n").expect_err("unknown")
        );
        assert!(err.contains("unknown alerter `pager`"), "{err}");
    }

    /// The original's shipped custodian.cfg, with its values set: it must load unchanged.
    const ORIGINAL_CFG: &str = "\
#
# custodian.cfg: the settings of the custodian tools.
#

# How long a test may take, and how often it is tried.
timeout = 30
retries = 5
retry_delay = 0

# The queue the enqueuer fills and the workers drain.
queue_type = beanstalk
queue_host = localhost

log_file = /var/log/custodian/custodian.log

# Where alerts go.
alerter = mauve
alert_source = custodian.example.com
mauve_target = alert.example.com
smtp_target = ops@example.com

# Suppression of mauve alerts, in and out of working hours.
day_start = 10
day_end = 18
working_suppress = 4
oncall_suppress = 10
";

    #[test]
    fn the_original_custodian_cfg_loads_unchanged() {
        let s = Settings::from_cfg(ORIGINAL_CFG).expect("loads");
        s.validate().expect("valid");
        assert_eq!((s.timeout, s.retries, s.retry_delay), (30.0, 5, 0.0));
        assert_eq!(
            (s.queue_type, s.queue_host.as_deref()),
            (Some(QueueType::Beanstalk), Some("localhost"))
        );
        assert_eq!(
            s.log_file.as_deref(),
            Some(Path::new("/var/log/custodian/custodian.log"))
        );
        let mauve = s.alerters.mauve.as_ref().expect("mauve");
        assert_eq!(
            mauve.address, "alert.example.com",
            "a name, kept unresolved"
        );
        assert_eq!((mauve.day_start, mauve.day_end), (10, 18));
        assert_eq!((mauve.working_suppress, mauve.oncall_suppress), (4, 10));
        assert_eq!(s.alert_source, "custodian.example.com");
        assert_eq!(s.queue_url(None).expect("url"), "beanstalk://localhost");
        assert_eq!(
            s.queue_url(Some("redis://127.0.0.1:6379"))
                .expect("flag wins"),
            "redis://127.0.0.1:6379"
        );
        // The file as written on disk, through the same path `--settings` takes.
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("custodian.cfg");
        std::fs::write(&path, ORIGINAL_CFG).expect("write");
        assert_eq!(Settings::load(Some(&path)).expect("load"), s);
    }

    #[test]
    fn queue_keys_make_the_queue_url() {
        let s = Settings::from_cfg("queue_type = redis\nqueue_host = 127.0.0.1:16380\n")
            .expect("valid");
        assert_eq!(s.queue_url(None).expect("url"), "redis://127.0.0.1:16380");
        let s = Settings::from_cfg("queue_type = beanstalkd\nqueue_host = [::1]:11300\n")
            .expect("valid");
        assert_eq!(s.queue_url(None).expect("url"), "beanstalk://[::1]:11300");
        let s = Settings::from_toml("queue_type = \"redis\"\nqueue_host = \"q1\"\n").expect("toml");
        assert_eq!(s.queue_url(None).expect("url"), "redis://q1");
        let err = Settings::default()
            .queue_url(None)
            .expect_err("none")
            .to_string();
        assert!(
            err.contains("give --queue URL, or set queue_type and queue_host"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Settings::from_cfg("queue_type = kafka\n").expect_err("bad")
        );
        assert!(
            err.contains("queue_type must be `beanstalk` or `redis`"),
            "{err}"
        );
        for bad in ["a/b", "h:port", "u@h", ""] {
            let s = Settings {
                queue_host: Some(bad.into()),
                ..Settings::default()
            };
            assert!(s.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toml_alerter_sections_are_checked() {
        let s = Settings::from_toml(
            "fail_threshold = 2\nstate_file = \"/tmp/s.json\"\n[alerters.webhook]\nurl = \"http://127.0.0.1:9/h\"\n[alerters.retry]\nattempts = 2\n",
        )
        .expect("valid");
        s.validate().expect("valid settings");
        assert_eq!(s.alerters.retry.attempts, 2);
        assert_eq!(s.state_file(), PathBuf::from("/tmp/s.json"));
        let err = Settings::from_toml(
            "[alerters.webhook]\nurl = \"http://127.0.0.1/\"\nsecert = \"x\"\n",
        )
        .expect_err("typo")
        .to_string();
        assert!(err.contains("unknown field `secert`"), "{err}");
        let bad = Settings::from_toml("[alerters.graphite]\naddress = \"graphite.example\"\n")
            .expect("parses");
        assert!(bad.validate().is_err());
        let bad = Settings {
            pass_threshold: 0,
            ..Settings::default()
        };
        assert!(bad.validate().is_err());
    }
}
