//! The range of every numeric setting and flag, and the checked parsing of numbers in
//! custodian.cfg and on the command line (TOML types them; ranges are checked here for both).

use anyhow::{bail, Result};
use std::time::Duration;

/// Ten years in seconds: the longest `renotify` or `flap_window` that means anything.
const TEN_YEARS: f64 = 315_360_000.0;

/// The values one numeric key may take: from `low` (excluded when `open`) to `high`.
pub(super) struct Bound {
    pub(super) key: &'static str,
    low: f64,
    open: bool,
    high: f64,
    /// A count (whole numbers) rather than seconds.
    whole: bool,
}

const fn secs(key: &'static str, open: bool, high: f64) -> Bound {
    Bound {
        key,
        low: 0.0,
        open,
        high,
        whole: false,
    }
}

const fn whole(key: &'static str, low: f64, high: f64) -> Bound {
    Bound {
        key,
        low,
        open: false,
        high,
        whole: true,
    }
}

/// Every numeric setting (both formats, and the flags that override them) with its range.
pub(super) static BOUNDS: &[Bound] = &[
    secs("timeout", true, 86_400.0),
    secs("retry_delay", false, 86_400.0),
    secs("resolve_timeout", true, 3600.0),
    secs("fetch_timeout", true, 3600.0),
    whole("retries", 1.0, 100.0),
    whole("concurrency", 1.0, 1_000_000.0),
    whole("per_host", 0.0, 1_000_000.0),
    whole("max_jobs", 1.0, 100_000_000.0),
    whole("max_deliveries", 1.0, 1000.0),
    whole("fail_threshold", 1.0, 1000.0),
    whole("pass_threshold", 1.0, 1000.0),
    whole("renotify", 0.0, TEN_YEARS),
    whole("flap_flips", 0.0, 1000.0),
    whole("flap_window", 0.0, TEN_YEARS),
    whole("unknown_threshold", 0.0, 1000.0),
    whole("location_silent_after", 1.0, 1000.0),
    whole("day_start", 0.0, 23.0),
    whole("day_end", 1.0, 24.0),
    // Minutes, as the original counted them.
    whole("working_suppress", 0.0, TEN_YEARS / 60.0),
    whole("oncall_suppress", 0.0, TEN_YEARS / 60.0),
];

pub(super) fn bound(key: &str) -> &'static Bound {
    // Callers pass keys of the table; a missing one would be reported under `timeout`'s
    // name, which the range tests (one row per key) would catch.
    BOUNDS.iter().find(|b| b.key == key).unwrap_or(&BOUNDS[0])
}

impl Bound {
    /// "a whole number from 1 to 100", "seconds in (0, 86400]".
    pub(super) fn text(&self) -> String {
        if self.whole {
            format!("a whole number from {} to {}", self.low, self.high)
        } else {
            let open = if self.open { '(' } else { '[' };
            format!("seconds in {open}{}, {}]", self.low, self.high)
        }
    }

    /// Ok when `v` is in range (NaN never is); the error shows the value as `shown`.
    pub(super) fn check(&self, v: f64, shown: impl std::fmt::Display) -> Result<()> {
        let above_low = if self.open {
            v > self.low
        } else {
            v >= self.low
        };
        if above_low && v <= self.high {
            return Ok(());
        }
        bail!("`{}` must be {}, not {shown}", self.key, self.text())
    }
}

/// A validated number of seconds as a duration; out-of-range values (never validated)
/// become the key's upper bound instead of panicking.
pub(super) fn seconds(key: &str, v: f64) -> Duration {
    let high = Duration::from_secs(bound(key).high as u64);
    Duration::try_from_secs_f64(v).map_or(high, |d| d.min(high))
}

/// A command-line value in seconds for `key`, in the same range as the settings.
pub(crate) fn flag_secs(key: &str, text: &str) -> std::result::Result<f64, String> {
    cfg_secs(key, text).map_err(|e| e.to_string())
}

/// A command-line whole number for `key`, in the same range as the settings.
pub(crate) fn flag_int<T: TryFrom<i64>>(key: &str, text: &str) -> std::result::Result<T, String> {
    cfg_int(key, text).map_err(|e| e.to_string())
}

/// A custodian.cfg value in seconds, range-checked.
pub(super) fn cfg_secs(key: &str, value: &str) -> Result<f64> {
    let b = bound(key);
    let Ok(v) = value.parse::<f64>() else {
        bail!("`{key}` must be {}, not {value:?}", b.text());
    };
    b.check(v, value)?;
    Ok(v)
}

/// A custodian.cfg whole number, range-checked: `2.7`, `-5` and `1e300` are errors, not 2,
/// 0 and a saturated cast.
pub(super) fn cfg_int<T: TryFrom<i64>>(key: &str, value: &str) -> Result<T> {
    let b = bound(key);
    let n = value
        .parse::<i64>()
        .ok()
        .filter(|n| b.check(*n as f64, n).is_ok());
    match n.and_then(|n| T::try_from(n).ok()) {
        Some(n) => Ok(n),
        None => bail!("`{key}` must be {}, not {value:?}", b.text()),
    }
}

/// A custodian.cfg yes/no: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`.
pub(super) fn cfg_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => bail!("`{key}` must be true or false, not {value:?}"),
    }
}

/// The key of the `key = value` line holding byte `at`, when it is outside any `[table]`.
pub(super) fn top_level_key(text: &str, at: usize) -> Option<&str> {
    let before = text.get(..at)?;
    if before.lines().any(|l| l.trim_start().starts_with('[')) {
        return None;
    }
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = text[line_start..].split_once('=')?;
    Some(key.trim())
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::*;

    /// The error of loading `text` in a format, parse or validation alike.
    fn load_err(text: &str, toml: bool) -> String {
        let parsed = if toml {
            Settings::from_toml(text)
        } else {
            Settings::from_cfg(text)
        };
        match parsed {
            Ok(s) => format!("{:#}", s.validate().expect_err(text)),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn numbers_out_of_range_name_the_key_and_its_range_in_both_formats() {
        let ten_years = "a whole number from 0 to 315360000";
        // (line, in custodian.cfg, in TOML)
        let table = [
            (
                "timeout = 1e300",
                "`timeout` must be seconds in (0, 86400], not 1e300",
                None,
            ),
            (
                "timeout = 0",
                "`timeout` must be seconds in (0, 86400], not 0",
                None,
            ),
            (
                "timeout = nan",
                "`timeout` must be seconds in (0, 86400], not nan",
                Some("not NaN"),
            ),
            (
                "retry_delay = inf",
                "`retry_delay` must be seconds in [0, 86400], not inf",
                None,
            ),
            (
                "retry_delay = -1",
                "`retry_delay` must be seconds in [0, 86400], not -1",
                Some("not -1.0"),
            ),
            (
                "resolve_timeout = 3601",
                "`resolve_timeout` must be seconds in (0, 3600], not 3601",
                Some("not 3601.0"),
            ),
            (
                "fetch_timeout = 1e300",
                "`fetch_timeout` must be seconds in (0, 3600], not 1e300",
                None,
            ),
            (
                "retries = 2.7",
                "`retries` must be a whole number from 1 to 100, not \"2.7\"",
                Some("expected u32"),
            ),
            (
                "retries = 1e300",
                "`retries` must be a whole number from 1 to 100, not \"1e300\"",
                Some("expected u32"),
            ),
            (
                "retries = 0",
                "`retries` must be a whole number from 1 to 100, not \"0\"",
                Some("not 0"),
            ),
            (
                "renotify = -5",
                &format!("`renotify` must be {ten_years}, not \"-5\""),
                Some("expected u64"),
            ),
            (
                "flap_window = 315360001",
                &format!("`flap_window` must be {ten_years}, not \"315360001\""),
                Some("not 315360001"),
            ),
            (
                "per_host = 4611686018427387904",
                "`per_host` must be a whole number from 0 to 1000000",
                None,
            ),
            (
                "max_jobs = 0",
                "`max_jobs` must be a whole number from 1 to 100000000",
                None,
            ),
            (
                "max_deliveries = 0",
                "`max_deliveries` must be a whole number from 1 to 1000",
                None,
            ),
            (
                "concurrency = 0",
                "`concurrency` must be a whole number from 1 to 1000000",
                None,
            ),
            (
                "fail_threshold = 1001",
                "`fail_threshold` must be a whole number from 1 to 1000",
                None,
            ),
            (
                "pass_threshold = 0",
                "`pass_threshold` must be a whole number from 1 to 1000",
                None,
            ),
            (
                "flap_flips = 1001",
                "`flap_flips` must be a whole number from 0 to 1000",
                None,
            ),
            (
                "unknown_threshold = 2.5",
                "`unknown_threshold` must be a whole number from 0 to 1000",
                Some("expected u32"),
            ),
        ];
        for (line, cfg, toml) in table {
            let err = load_err(&format!("{line}\n"), false);
            assert!(err.contains(cfg), "cfg {line}: {err}");
            let err = load_err(&format!("{line}\n"), true);
            // Every TOML error names the key's range, whatever serde said first.
            let range = cfg.split(", not").next().unwrap_or(cfg);
            assert!(err.contains(range), "toml {line}: {err}");
            assert!(
                err.contains(toml.unwrap_or(cfg.rsplit(", ").next().unwrap_or(""))),
                "toml {line}: {err}"
            );
        }
        let mauve = "alerter = mauve\nmauve_target = 127.0.0.1\n";
        let err = load_err(&format!("{mauve}day_end = 25\n"), false);
        assert!(
            err.contains("`day_end` must be a whole number from 1 to 24"),
            "{err}"
        );
        let err = load_err(&format!("{mauve}oncall_suppress = -1\n"), false);
        assert!(
            err.contains("`oncall_suppress` must be a whole number from 0 to 5256000"),
            "{err}"
        );
        let err = load_err(&format!("{mauve}day_start = -1\n"), false);
        assert!(
            err.contains("`day_start` must be a whole number from 0 to 23"),
            "{err}"
        );
        let err = load_err(
            "[alerters.mauve]\naddress = \"127.0.0.1\"\nworking_suppress = 99999999999\n",
            true,
        );
        assert!(
            err.contains("`working_suppress` must be a whole number of minutes from 0 to 5256000"),
            "{err}"
        );
        let err = load_err("[alerters.retry]\ntimeout = 1e300\n", true);
        assert!(
            err.contains("`timeout` must be seconds in (0, 3600], not 1e300"),
            "{err}"
        );
    }

    #[test]
    fn numbers_at_the_edges_of_their_ranges_load() {
        let text = "timeout = 86400\nretries = 100\nretry_delay = 0\nper_host = 1000000\n\
                    concurrency = 1000000\nrenotify = 315360000\nresolve_timeout = 3600\n";
        for s in [Settings::from_cfg(text), Settings::from_toml(text)] {
            let s = s.expect("in range");
            s.validate().expect("in range");
            assert_eq!(
                (s.retries, s.per_host, s.timeout()),
                (100, 1_000_000, Duration::from_secs(86_400))
            );
        }
        // Unvalidated values still turn into durations without a panic.
        let wild = Settings {
            timeout: 1e300,
            retry_delay: f64::NAN,
            ..Settings::default()
        };
        assert_eq!(wild.timeout(), Duration::from_secs(86_400));
        assert_eq!(wild.retry_delay(), Duration::from_secs(86_400));
        for b in BOUNDS {
            assert!(std::ptr::eq(bound(b.key), b), "{} is found", b.key);
        }
    }
}
