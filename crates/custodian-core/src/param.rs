//! Typed option values: what kind of value each phrase slot takes ([`Kind`]), the one parser
//! per kind that both the planner (to reject a bad line with a span) and the worker (to hand
//! probes parsed values, once per job) use, and the [`Params`] a probe reads.

use crate::probe::ProbeSpec;
use regex::{Regex, RegexBuilder};
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// Largest compiled regex we accept (the regex crate's own unit); a pattern past it is a
/// config error, not a worker's memory spike.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a value was refused: a message naming the value, and a hint on what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub msg: String,
    pub hint: Option<String>,
    /// The option key the problem is about, for checks spanning several options.
    pub key: Option<&'static str>,
    /// The original custodian accepted this (its own tests use it): a warning, an error only
    /// under `--strict`, and a worker still runs the job as the original would.
    pub lenient: bool,
}

impl Invalid {
    pub fn new(msg: impl Into<String>) -> Self {
        Invalid {
            msg: msg.into(),
            hint: None,
            key: None,
            lenient: false,
        }
    }

    /// Marks a mistake the original accepted (see [`Invalid::lenient`]).
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Points the problem at one option (for a whole-line check).
    pub fn at(mut self, key: &'static str) -> Self {
        self.key = Some(key);
        self
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// A parsed option value.
#[derive(Clone)]
pub enum Value {
    Text(String),
    Int(u64),
    Flag,
    Regex(Pattern),
    /// A probe-specific parsed value (a status list, an LDAP filter, a mail address...).
    Parsed(Arc<dyn Any + Send + Sync>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => write!(f, "Text({s:?})"),
            Value::Int(n) => write!(f, "Int({n})"),
            Value::Flag => f.write_str("Flag"),
            Value::Regex(r) => write!(f, "Regex({:?})", r.as_str()),
            Value::Parsed(_) => f.write_str("Parsed(..)"),
        }
    }
}

/// Longest plain literal left to compile on first use ([`Pattern`]): far too short to reach
/// [`REGEX_SIZE_LIMIT`], even case-insensitive.
const LAZY_LITERAL: usize = 256;

/// A regex option. A short plain literal (no metacharacter) always compiles, so it is built
/// only when a probe first reads it: the planner checks 100,000 distinct banners without
/// building 100,000 automata (the cost of `enqueue` of such a file). Any other pattern is
/// compiled, and so checked, at once.
#[derive(Clone)]
pub struct Pattern {
    text: Arc<str>,
    ignore_case: bool,
    compiled: Arc<OnceLock<Option<Arc<Regex>>>>,
}

impl Pattern {
    fn new(text: &str, ignore_case: bool) -> Result<Pattern, Invalid> {
        let compiled = OnceLock::new();
        let literal = text.len() <= LAZY_LITERAL
            && !text.contains([
                '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
            ]);
        if !literal {
            let _ = compiled.set(Some(regex(text, ignore_case)?));
        }
        Ok(Pattern {
            text: text.into(),
            ignore_case,
            compiled: Arc::new(compiled),
        })
    }

    /// The compiled regex, built now if this is its first use (`None` only if a literal
    /// failed to compile, which cannot happen).
    pub fn get(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| regex(&self.text, self.ignore_case).ok())
            .as_deref()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Value {
    /// Wraps a probe's own parsed type.
    pub fn parsed<T: Any + Send + Sync>(v: T) -> Self {
        Value::Parsed(Arc::new(v))
    }
}

/// A probe-specific parser for one slot: the text as written to a value, or why not.
pub type ParseFn = fn(&str) -> Result<Value, Invalid>;

/// What one slot of a phrase takes.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Any text, taken as written.
    Text,
    /// Text that must not be empty.
    NonEmpty,
    /// A whole number in `min..=max` (for `{name:int}` slots).
    Int { min: u64, max: u64 },
    /// A regular expression, checked when parsed (see [`Pattern`]).
    Regex { ignore_case: bool },
    /// The probe's own parser.
    Parse(ParseFn),
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Text => f.write_str("Text"),
            Kind::NonEmpty => f.write_str("NonEmpty"),
            Kind::Int { min, max } => write!(f, "Int({min}..={max})"),
            Kind::Regex { ignore_case } => write!(f, "Regex(ignore_case: {ignore_case})"),
            Kind::Parse(_) => f.write_str("Parse(..)"),
        }
    }
}

impl Kind {
    /// Any whole number that fits the wire (the default of `{name:int}` slots).
    pub const ANY_INT: Kind = Kind::Int {
        min: 0,
        max: u64::MAX,
    };

    /// Parses a slot's JSON value (a string, or a number for int slots).
    pub fn parse(&self, raw: &serde_json::Value) -> Result<Value, Invalid> {
        match (self, raw) {
            (Kind::Int { min, max }, serde_json::Value::Number(n)) => {
                let n = n
                    .as_u64()
                    .ok_or_else(|| Invalid::new(format!("`{n}` is not a whole number")))?;
                if (*min..=*max).contains(&n) {
                    Ok(Value::Int(n))
                } else {
                    Err(Invalid::new(format!("{n} is out of range ({min}-{max})")))
                }
            }
            (Kind::Int { .. }, other) => Err(Invalid::new(format!(
                "`{}` is not a whole number",
                text_of(other)
            ))),
            (_, serde_json::Value::String(s)) => self.parse_text(s),
            (_, other) => self.parse_text(&text_of(other)),
        }
    }

    fn parse_text(&self, s: &str) -> Result<Value, Invalid> {
        match self {
            Kind::Text => Ok(Value::Text(s.to_string())),
            Kind::NonEmpty if s.trim().is_empty() => {
                Err(Invalid::new("the value is empty").hint("write the value between quotes"))
            }
            Kind::NonEmpty => Ok(Value::Text(s.to_string())),
            Kind::Int { .. } => Err(Invalid::new(format!("`{s}` is not a whole number"))),
            Kind::Regex { ignore_case } => Pattern::new(s, *ignore_case).map(Value::Regex),
            Kind::Parse(f) => f(s),
        }
    }
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Most distinct patterns kept compiled; past it the cache starts afresh.
const REGEX_CACHE: usize = 4096;

/// Compiles a user's regex with our size limit; the error quotes the pattern.
///
/// Compiled patterns are shared: a worker prepares every job it runs, and thousands of checks
/// use the same few patterns, so each is built once. Shared by `Arc`, not cloned: a clone of
/// a `Regex` starts its own pool of match caches (several KiB each, issue 13), while one
/// shared `Regex` keeps one cache per thread for every check using it.
pub fn regex(pattern: &str, ignore_case: bool) -> Result<Arc<Regex>, Invalid> {
    type Compiled = std::collections::HashMap<(String, bool), Arc<Regex>>;
    static CACHE: OnceLock<std::sync::Mutex<Compiled>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (pattern.to_string(), ignore_case);
    if let Some(re) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(re.clone());
    }
    let re = Arc::new(compile(pattern, ignore_case)?);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= REGEX_CACHE {
        cache.clear();
    }
    cache.insert(key, re.clone());
    Ok(re)
}

fn compile(pattern: &str, ignore_case: bool) -> Result<Regex, Invalid> {
    RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let why = match e {
                regex::Error::Syntax(s) => {
                    let last = s.lines().last().unwrap_or("syntax error");
                    last.trim_start_matches("error: ").to_string()
                }
                regex::Error::CompiledTooBig(_) => "it compiles too big".to_string(),
                _ => e.to_string(),
            };
            Invalid::new(format!(
                "`{pattern}` is not a valid regular expression: {why}"
            ))
            .hint("escape special characters such as ( [ . * + ? with a backslash")
        })
}

/// A job's options, parsed by the kinds its probe declares: what probes read.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: BTreeMap<String, Value>,
    /// Secrets read for this job's `${env:..}` / `${file:..}` references: the job itself only
    /// holds the references, so its own scrubbing cannot know them.
    secrets: Vec<String>,
}

impl Params {
    /// Parses `options` by the kinds `spec` declares for each slot. Keys the spec does not
    /// know are refused: a job from a newer planner must not run half-understood.
    pub fn build(
        spec: &ProbeSpec,
        options: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Params, Invalid> {
        let mut values = BTreeMap::new();
        for (key, raw) in options {
            let kind = spec.kind_of(key).ok_or_else(|| {
                Invalid::new(format!("`{}` does not take option `{key}`", spec.name))
            })?;
            let value = match kind {
                None => Value::Flag,
                Some(kind) => kind.parse(raw).map_err(|e| Invalid {
                    msg: format!("option `{key}`: {}", e.msg),
                    ..e
                })?,
            };
            values.insert(key.clone(), value);
        }
        let params = Params {
            values,
            secrets: Vec::new(),
        };
        match spec.check.map(|check| check(&params)) {
            Some(Err(e)) if !e.lenient => Err(e),
            _ => Ok(params),
        }
    }

    /// Params from already parsed values (tests and tools).
    pub fn from_values(values: impl IntoIterator<Item = (String, Value)>) -> Self {
        Params {
            values: values.into_iter().collect(),
            secrets: Vec::new(),
        }
    }

    /// The same params, knowing the secrets read for the job's references.
    pub fn with_secrets(mut self, secrets: Vec<String>) -> Self {
        self.secrets = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        self
    }

    /// The same params with `key` set (the worker adds values read for secret references).
    pub fn with_value(mut self, key: &str, value: Value) -> Self {
        self.values.insert(key.to_string(), value);
        self
    }

    /// Replaces every secret read for this job in `text` with the mask.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), crate::spec::MASK);
        }
        out
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// A text option, if given.
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.values.get(key)? {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// A number option, if given.
    pub fn int(&self, key: &str) -> Option<u64> {
        match self.values.get(key)? {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether a flag was given.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.values.get(key), Some(Value::Flag))
    }

    /// A compiled regex option, if given.
    pub fn regex(&self, key: &str) -> Option<&Regex> {
        match self.values.get(key)? {
            Value::Regex(r) => r.get(),
            _ => None,
        }
    }

    /// A probe-specific parsed option, if given and of type `T`.
    pub fn parsed<T: Any + Send + Sync>(&self, key: &str) -> Option<&T> {
        match self.values.get(key)? {
            Value::Parsed(v) => v.downcast_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {

    /// Shared compiled patterns never mix up the case-sensitive and insensitive forms.
    #[test]
    fn cached_regexes_keep_their_case_rule() {
        for _ in 0..2 {
            assert!(regex("cached-abc", true)
                .expect("re")
                .is_match("CACHED-ABC"));
            assert!(!regex("cached-abc", false)
                .expect("re")
                .is_match("CACHED-ABC"));
        }
        assert!(
            regex("cached-(", false).is_err(),
            "errors are not cached as patterns"
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_parse_or_refuse() {
        assert!(matches!(
            Kind::Int { min: 1, max: 5 }.parse(&json!(3)),
            Ok(Value::Int(3))
        ));
        let e = Kind::Int { min: 1, max: 5 }
            .parse(&json!(0))
            .expect_err("0");
        assert_eq!(e.msg, "0 is out of range (1-5)");
        let e = Kind::Regex { ignore_case: false }
            .parse(&json!("("))
            .expect_err("(");
        assert!(
            e.msg.starts_with("`(` is not a valid regular expression"),
            "{e}"
        );
        let Ok(Value::Regex(r)) = Kind::Regex { ignore_case: true }.parse(&json!("ssh")) else {
            panic!("no regex")
        };
        assert!(r.get().expect("compiled").is_match("SSH-2.0"));
        // The longest literal left for later compiles, case-insensitive, in the size limit.
        let long = "\u{212a}k".repeat(LAZY_LITERAL / 4);
        let Ok(Value::Regex(r)) = Kind::Regex { ignore_case: true }.parse(&json!(long)) else {
            panic!("no regex")
        };
        assert!(r
            .get()
            .expect("compiled")
            .is_match(&"KK".repeat(LAZY_LITERAL / 4)));
        assert!(Kind::NonEmpty.parse(&json!(" ")).is_err());
        assert!(matches!(Kind::Text.parse(&json!("")), Ok(Value::Text(_))));
    }
}
