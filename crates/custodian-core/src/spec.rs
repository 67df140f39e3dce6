//! The job: one expanded, validated test line, serialisable so queues can carry it.

use custodian_dsl::ast::Window;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;

/// Version of the job wire format; bumped on any incompatible change.
pub const WIRE_VERSION: u32 = 1;

/// Option keys whose values are secret and masked in every output.
pub const SECRET_KEYS: &[&str] = &["password"];

/// What stands in for a secret in output.
pub const MASK: &str = "********";

/// Which address families of a target to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    #[default]
    Any,
    V4,
    V6,
}

/// One check to run: what the planner produces and what the worker consumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Wire format version ([`WIRE_VERSION`]).
    pub v: u32,
    /// The probe type (canonical name, aliases resolved).
    #[serde(rename = "type")]
    pub probe: String,
    /// Host, IP literal or URL, as written (after macro expansion). May hold a URL password:
    /// use [`Job::display_target`] for output.
    pub target: String,
    /// Port to test; `None` where the type has no port (ping) or takes it from the URL.
    pub port: Option<u16>,
    /// `must not run`: passes when the probe fails.
    pub inverted: bool,
    pub otherwise: Option<String>,
    pub subject: Option<String>,
    pub window: Option<Window>,
    pub family: Family,
    /// Per-line deadline override in seconds (`with timeout N`).
    pub timeout: Option<u64>,
    /// Per-line total attempts override (`with retries N`).
    pub retries: Option<u32>,
    /// Probe-specific options, validated by the planner against the probe's parameters.
    pub options: BTreeMap<String, serde_json::Value>,
    /// The source line with secrets masked.
    pub line: String,
    pub file: String,
    pub lineno: u32,
}

impl Job {
    /// A job with defaults for everything but the type and target (for tests and tools).
    pub fn new(probe: &str, target: &str, port: Option<u16>) -> Self {
        Job {
            v: WIRE_VERSION,
            probe: probe.to_string(),
            target: target.to_string(),
            port,
            inverted: false,
            otherwise: None,
            subject: None,
            window: None,
            family: Family::Any,
            timeout: None,
            retries: None,
            options: BTreeMap::new(),
            line: format!("{target} must run {probe}."),
            file: "-".to_string(),
            lineno: 0,
        }
    }

    /// Stable identity: a hash of what the check does, not of how the line is spelled.
    pub fn id(&self) -> String {
        let key = serde_json::json!([
            self.probe,
            self.target,
            self.port,
            self.inverted,
            self.family,
            self.options
        ]);
        hex::encode(Sha1::digest(key.to_string().as_bytes()))
    }

    /// The target with any URL password masked.
    pub fn display_target(&self) -> String {
        mask_url(&self.target)
    }

    /// A string option as written, if present (probes read parsed values from `Ctx::params`).
    pub fn opt_str(&self, key: &str) -> Option<&str> {
        self.options.get(key).and_then(|v| v.as_str())
    }

    /// The options with secrets masked, for output.
    pub fn masked_options(&self) -> BTreeMap<String, serde_json::Value> {
        self.options
            .iter()
            .map(|(k, v)| {
                if SECRET_KEYS.contains(&k.as_str()) {
                    (k.clone(), serde_json::Value::String(MASK.into()))
                } else if let Some(s) = v.as_str() {
                    (k.clone(), serde_json::Value::String(mask_url(s)))
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    }

    /// Every secret this job carries, so free text (errors, banners) can be scrubbed.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = SECRET_KEYS
            .iter()
            .filter_map(|k| self.opt_str(k))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(pw) = url_password(&self.target) {
            out.push(pw);
        }
        out
    }

    /// Replaces every secret of this job in `text` with the mask.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets() {
            out = out.replace(&s, MASK);
        }
        out
    }
}

/// Replaces the password in `scheme://user:password@host` with the mask; other text is unchanged.
pub fn mask_url(text: &str) -> String {
    match password_range(text) {
        Some((a, b)) => format!("{}{MASK}{}", &text[..a], &text[b..]),
        None => text.to_string(),
    }
}

fn url_password(text: &str) -> Option<String> {
    let (a, b) = password_range(text)?;
    let raw = &text[a..b];
    Some(raw.to_string())
}

/// Byte range of the password in a `scheme://user:pw@host` string.
fn password_range(text: &str) -> Option<(usize, usize)> {
    let scheme_end = text.find("://")? + 3;
    let rest = &text[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some((scheme_end + colon + 1, scheme_end + at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_passwords_only() {
        assert_eq!(
            mask_url("http://bob:s3cret@example.com/x"),
            "http://bob:********@example.com/x"
        );
        assert_eq!(mask_url("http://example.com/a@b"), "http://example.com/a@b");
        assert_eq!(mask_url("ftp://anon@host/"), "ftp://anon@host/");
        assert_eq!(mask_url("plain text"), "plain text");
    }
}
