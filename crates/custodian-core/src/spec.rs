//! The job: one expanded, validated test line, serialisable so queues can carry it.

use custodian_dsl::ast::Window;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut, Range};
use std::sync::Arc;

/// Version of the job wire format; bumped on any incompatible change.
pub const WIRE_VERSION: u32 = 1;

/// Option keys whose values are secret and masked in every output.
pub const SECRET_KEYS: &[&str] = &["password"];

/// Words that make a header or form field name a credential (matched case-insensitively inside
/// the name, so `X-Api-Key`, `Cookie` and `passwd` all count): masking too much is harmless,
/// too little leaks.
const CREDENTIAL_WORDS: &[&str] = &[
    "auth", "token", "key", "secret", "session", "cookie", "pass", "pwd",
];

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

/// Where a check runs under `serve --queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locations {
    /// `from N locations`: any N locations that have live workers.
    Any(u32),
    /// `from lon1 and ams1`: these locations, sorted and without repeats.
    Named(Vec<String>),
}

impl Locations {
    /// How many locations run the check.
    pub fn count(&self) -> u32 {
        match self {
            Locations::Any(n) => *n,
            Locations::Named(names) => u32::try_from(names.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Whether `s` can name a location: 1-32 characters, lower-case ASCII letters, digits, `-` and
/// `_`, starting with a letter or digit. Names become beanstalkd tube and Redis key suffixes.
pub fn valid_location_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=32).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
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
    /// How often `serve` runs this line, in seconds (`every 30s`); its interval otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Where `serve --queue` runs this check (`from 3 locations`, `from lon1 and ams1`); `None`: the default location only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Locations>,
    /// `with quorum N`: how many locations must see the check fail for it to be down; `None`: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// Scheduled by `serve`: the worker sends the result back on the broker's results queue
    /// and leaves alerting to serve.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report: bool,
    /// Probe-specific options, validated by the planner against the probe's parameters.
    /// Shared by the jobs of one statement (a macro line yields many) until one is changed.
    pub options: Options,
    /// The source line with secrets masked; shared by the jobs of one statement.
    pub line: Arc<str>,
    /// Shared by the jobs of one file.
    pub file: Arc<str>,
    pub lineno: u32,
}

/// A job's options: a map that reads like a `BTreeMap` and is copied only when written to, so
/// the many jobs a macro line expands to hold one map between them. On the wire it is the map.
/// Most lines have no options: an empty map allocates nothing.
#[derive(Clone, Default)]
pub struct Options(Option<Arc<BTreeMap<String, serde_json::Value>>>);

/// What an option-less job's map reads as.
static NO_OPTIONS: BTreeMap<String, serde_json::Value> = BTreeMap::new();

impl Deref for Options {
    type Target = BTreeMap<String, serde_json::Value>;

    fn deref(&self) -> &Self::Target {
        self.0.as_deref().unwrap_or(&NO_OPTIONS)
    }
}

impl DerefMut for Options {
    fn deref_mut(&mut self) -> &mut Self::Target {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl From<BTreeMap<String, serde_json::Value>> for Options {
    fn from(map: BTreeMap<String, serde_json::Value>) -> Self {
        Options(Some(Arc::new(map)))
    }
}

impl<'a> IntoIterator for &'a Options {
    type Item = (&'a String, &'a serde_json::Value);
    type IntoIter = std::collections::btree_map::Iter<'a, String, serde_json::Value>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for Options {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Options {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(d).map(Options::from)
    }
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
            every: None,
            from: None,
            quorum: None,
            report: false,
            options: Options::default(),
            line: format!("{target} must run {probe}.").into(),
            file: "-".into(),
            lineno: 0,
        }
    }

    /// Stable identity: a hash of what the check does, not of how the line is spelled, with
    /// every secret masked first. Ids travel in alert payloads and state keys, so they must not
    /// let a password be guessed offline; and a rotated password keeps the check's id (its
    /// state and open alerts).
    pub fn id(&self) -> String {
        hex::encode(Sha1::digest(self.id_input().as_bytes()))
    }

    /// What [`Job::id`] hashes: type, target, port, inversion, family and options, secrets masked;
    /// then the locations and a quorum other than all of them, only when given, so the ids of
    /// checks without them stay as they were.
    fn id_input(&self) -> String {
        let mut parts = vec![
            serde_json::json!(self.probe),
            serde_json::json!(self.display_target()),
            serde_json::json!(self.port),
            serde_json::json!(self.inverted),
            serde_json::json!(self.family),
            serde_json::json!(self.masked_options()),
        ];
        if let Some(from) = &self.from {
            parts.push(serde_json::json!({ "from": from }));
        }
        // `with quorum 2` of two locations is what the line means without it.
        let default = self.from.as_ref().map(Locations::count);
        if let Some(q) = self.quorum.filter(|q| Some(*q) != default) {
            parts.push(serde_json::json!({ "quorum": q }));
        }
        serde_json::Value::Array(parts).to_string()
    }

    /// How many locations must see the check fail for it to be down: the quorum, else all of
    /// them; 1 for a check without `from`. Kept within 1..=count for hand-made jobs.
    pub fn quorum_needed(&self) -> u32 {
        match &self.from {
            None => 1,
            Some(from) => {
                let all = from.count().max(1);
                self.quorum.unwrap_or(all).clamp(1, all)
            }
        }
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
                    let masked = mask_ranges(s, &secret_ranges(k, s));
                    (k.clone(), serde_json::Value::String(mask_url(&masked)))
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    }

    /// Every secret this job carries, so free text (errors, banners) can be scrubbed.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, value) in &self.options {
            let Some(value) = value.as_str() else {
                continue;
            };
            for r in secret_ranges(key, value) {
                let secret = &value[r];
                out.push(secret.to_string());
                // A server may echo only the credential of `Bearer X` or one cookie of `a=X; b=Y`;
                // the scheme word itself (`Bearer`) is no secret.
                let body = match secret.split_once(' ') {
                    Some((scheme, rest)) if !scheme.contains('=') => rest,
                    _ => secret,
                };
                out.extend(
                    body.split([' ', ';', ','])
                        .map(|p| p.split_once('=').map_or(p, |(_, v)| v).trim())
                        .filter(|p| p.len() >= 4 && *p != secret)
                        .map(str::to_string),
                );
            }
        }
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

/// Byte ranges of the secret parts of option `key`'s `value`: all of a [`SECRET_KEYS`] value;
/// the value of a `header` whose name is a credential (Authorization, Cookie, X-Api-Key…); in
/// `data`, the values of credential fields (`password=…`), or all of it when it is not a form
/// but mentions one. The ranges are in order and do not overlap.
pub fn secret_ranges(key: &str, value: &str) -> Vec<Range<usize>> {
    let nonempty = |r: Range<usize>| (r.start < r.end).then_some(r);
    let whole = || nonempty(0..value.len()).into_iter().collect();
    if SECRET_KEYS.contains(&key) {
        return whole();
    }
    match key {
        "header" => {
            let Some((name, rest)) = value.split_once(':') else {
                return Vec::new();
            };
            let start = name.len() + 1 + (rest.len() - rest.trim_start().len());
            let end = value.trim_end().len().max(start);
            let secret = credential_name(name).then(|| nonempty(start..end));
            secret.flatten().into_iter().collect()
        }
        "data" if !is_form(value) => {
            if credential_name(value) {
                whole()
            } else {
                Vec::new()
            }
        }
        "data" => {
            let mut out = Vec::new();
            let mut at = 0;
            for field in value.split('&') {
                let (name, skip) = field
                    .split_once('=')
                    .map_or((field, 0), |(n, _)| (n, n.len() + 1));
                if credential_name(name) {
                    out.extend(nonempty(at + skip..at + field.len()));
                }
                at += field.len() + 1;
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Whether a header or field name looks like it carries a credential.
fn credential_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    CREDENTIAL_WORDS.iter().any(|w| name.contains(w))
}

/// Whether `data` reads as `name=value&…` with plain field names (JSON or free text does not).
fn is_form(data: &str) -> bool {
    data.split('&').all(|field| {
        let name = field.split_once('=').map_or(field, |(n, _)| n);
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.[]%+*~".contains(&b))
    })
}

/// `text` with each of `ranges` (in order, not overlapping) replaced by the mask.
fn mask_ranges(text: &str, ranges: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        out.push_str(&text[at..r.start]);
        out.push_str(MASK);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
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
    fn id_excludes_secrets_and_survives_a_password_rotation() {
        let mut a = Job::new("mysql", "db1", Some(3306));
        a.options.insert("password".into(), "hunter2".into());
        let mut b = a.clone();
        b.options.insert("password".into(), "correct horse".into());
        assert_eq!(a.id(), b.id(), "option password");
        assert!(!a.id_input().contains("hunter2"), "{}", a.id_input());
        let c = Job::new("http", "http://bob:hunter2@web1/x", None);
        let d = Job::new("http", "http://bob:rotated@web1/x", None);
        assert_eq!(c.id(), d.id(), "URL password");
        assert!(!c.id_input().contains("hunter2"), "{}", c.id_input());
        // What the check does still tells checks apart.
        let other = Job::new("http", "http://eve:hunter2@web1/x", None);
        assert_ne!(c.id(), other.id(), "the user name is not a secret");
        let mut e = a.clone();
        e.options.insert("username".into(), "root".into());
        assert_ne!(a.id(), e.id());
    }

    /// Ids of checks without `from` are what they were before locations existed (the hash of
    /// the old six-part input), so upgrading keeps every check's state and open alerts.
    #[test]
    fn ids_without_locations_are_unchanged() {
        let a = Job::new("ssh", "db1", Some(22));
        assert_eq!(a.id(), "0c1816026a01237e7799f85268d71e7b9d2b1466");
        let mut b = Job::new("http", "http://bob:pw@web1/x", None);
        b.options.insert("password".into(), "pw".into());
        assert_eq!(b.id(), "bb2d2b8af70fbb728bd54591032c51ce649a26f0");
        let mut c = a.clone();
        c.from = Some(Locations::Any(3));
        assert_ne!(c.id(), a.id());
        let mut d = c.clone();
        d.from = Some(Locations::Any(2));
        assert_ne!(
            d.id(),
            c.id(),
            "the number of locations is part of the check"
        );
        let mut e = c.clone();
        e.quorum = Some(2);
        assert_ne!(e.id(), c.id(), "a quorum below all changes the verdict");
        e.quorum = Some(3);
        assert_eq!(e.id(), c.id(), "a quorum of all is the default spelled out");
    }

    #[test]
    fn quorum_needed_defaults_to_all_chosen_locations() {
        let mut j = Job::new("ssh", "db1", Some(22));
        assert_eq!(j.quorum_needed(), 1);
        j.quorum = Some(2);
        assert_eq!(j.quorum_needed(), 1, "no `from`: the default location only");
        j.from = Some(Locations::Named(vec![
            "ams1".into(),
            "lon1".into(),
            "nyc1".into(),
        ]));
        assert_eq!(j.quorum_needed(), 2);
        j.quorum = None;
        assert_eq!(j.quorum_needed(), 3);
        j.quorum = Some(7);
        assert_eq!(j.quorum_needed(), 3, "never more than there are locations");
        j.from = Some(Locations::Any(5));
        assert_eq!(j.from.as_ref().map(Locations::count), Some(5));
        assert_eq!(j.quorum_needed(), 5);
    }

    #[test]
    fn location_names_are_lower_case_tube_safe_words() {
        for good in ["lon1", "1dc", "eu-west_2", "a", &"x".repeat(32)] {
            assert!(valid_location_name(good), "{good}");
        }
        for bad in [
            "",
            "Lon1",
            "-a",
            "_a",
            "a.b",
            "a b",
            "a/b",
            "é",
            &"x".repeat(33),
        ] {
            assert!(!valid_location_name(bad), "{bad}");
        }
    }

    /// A job without `from` serialises exactly as before; with it, it survives the round trip.
    #[test]
    fn locations_round_trip_and_stay_out_of_old_jobs() {
        let plain = Job::new("ssh", "db1", Some(22));
        let text = serde_json::to_string(&plain).expect("json");
        assert!(!text.contains("from") && !text.contains("quorum"), "{text}");
        let back: Job = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, plain);
        let mut j = plain.clone();
        j.from = Some(Locations::Named(vec!["ams1".into(), "lon1".into()]));
        j.quorum = Some(1);
        let text = serde_json::to_string(&j).expect("json");
        assert!(
            text.contains(r#""from":{"named":["ams1","lon1"]},"quorum":1"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Job>(&text).expect("parse"), j);
        j.from = Some(Locations::Any(3));
        let text = serde_json::to_string(&j).expect("json");
        assert!(text.contains(r#""from":{"any":3}"#), "{text}");
        assert_eq!(serde_json::from_str::<Job>(&text).expect("parse"), j);
    }

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

    fn job_with(opts: &[(&str, &str)]) -> Job {
        let mut j = Job::new("http", "http://h.example/", None);
        for (k, v) in opts {
            j.options.insert(k.to_string(), serde_json::json!(v));
        }
        j
    }

    fn masked(key: &str, value: &str) -> String {
        let m = job_with(&[(key, value)]).masked_options();
        m[key].as_str().unwrap_or_default().to_string()
    }

    #[test]
    fn credential_headers_mask_their_value_only() {
        assert_eq!(
            masked("header", "Authorization: Bearer s3cr3t"),
            "Authorization: ********"
        );
        for name in [
            "Proxy-Authorization",
            "cookie",
            "Set-Cookie",
            "X-API-KEY",
            "X-Auth-Token",
        ] {
            assert_eq!(
                masked("header", &format!("{name}:  v1 ")),
                format!("{name}:  ******** ")
            );
        }
        for name in ["X-Client-Secret", "X-Session-Id"] {
            assert_eq!(
                masked("header", &format!("{name}: v")),
                format!("{name}: ********")
            );
        }
        assert_eq!(masked("header", "X-Probe: yes"), "X-Probe: yes");
        assert_eq!(masked("header", "X-Token:"), "X-Token:");
        assert_eq!(masked("host_header", "token.example"), "token.example");
    }

    #[test]
    fn data_masks_credential_fields_or_all_of_a_non_form() {
        assert_eq!(
            masked("data", "user=bob&password=hunter2&x=1&api_key=k9"),
            "user=bob&password=********&x=1&api_key=********"
        );
        assert_eq!(masked("data", "a=1&PASS=&b"), "a=1&PASS=&b");
        assert_eq!(masked("data", "q=cats&page=2"), "q=cats&page=2");
        assert_eq!(masked("data", r#"{"user":"bob","token":"x=y"}"#), MASK);
        assert_eq!(masked("data", "hello world"), "hello world");
    }

    #[test]
    fn secrets_cover_headers_data_and_their_parts() {
        let j = job_with(&[
            ("header", "Authorization: Bearer s3cr3t-token"),
            ("data", "user=bob&pwd=hunter2"),
            ("password", "pw1"),
            ("content", "welcome"),
        ]);
        let s = j.secrets();
        for want in ["Bearer s3cr3t-token", "s3cr3t-token", "hunter2", "pw1"] {
            assert!(s.iter().any(|x| x == want), "{want} missing from {s:?}");
        }
        assert!(
            !s.iter()
                .any(|x| x == "Bearer" || x == "welcome" || x == "bob"),
            "{s:?}"
        );
        assert_eq!(
            j.scrub("401 for s3cr3t-token and hunter2"),
            "401 for ******** and ********"
        );
        let cookies = job_with(&[("header", "Cookie: a=1; sid=abcdef")]).secrets();
        assert!(cookies.iter().any(|x| x == "abcdef"), "{cookies:?}");
    }
}
