//! Static description of a probe type: its name, target kind, default port, option phrases
//! and the kind of value each phrase slot takes.
//!
//! The planner checks every test line against these; the probes crate pairs each with its
//! async check function. Nothing here does I/O.

/// What a type's target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A host name or IP literal; the worker resolves it and tests every address.
    Host,
    /// A URL whose scheme must be one of these; its host is resolved like `Host`.
    Url(&'static [&'static str]),
    /// A host name or IP literal like `Host`, or (when it contains `://`) a URL like `Url`
    /// (`ftp`, `ssl`).
    HostOrUrl(&'static [&'static str]),
    /// A host name or IP literal that the worker must not resolve (e.g. a DNS zone or mail domain).
    Name,
}

use crate::param::{Invalid, Kind, Params};

/// One option phrase a type accepts.
///
/// `phrase` is words matched case-insensitively, with value slots: `{name}` takes one value
/// (a quoted string or a bare word), `{name:int}` a whole number. The slot's value is stored in
/// the job's options under `name`. A phrase without slots is a flag, stored as
/// `options[words joined by '_'] = true` (so `not following redirects` → `not_following_redirects`).
/// `kinds` gives each slot's [`Kind`] in order; a slot past the list is free text (or, for
/// `{name:int}`, any whole number).
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub phrase: &'static str,
    pub help: &'static str,
    pub kinds: &'static [Kind],
    /// The line must give this phrase.
    pub required: bool,
}

impl ParamSpec {
    /// A phrase whose slots take free text (and whole numbers for `{name:int}`).
    pub const fn new(phrase: &'static str, help: &'static str) -> Self {
        ParamSpec {
            phrase,
            help,
            kinds: &[],
            required: false,
        }
    }

    /// The same phrase with these slot kinds.
    pub const fn kinds(self, kinds: &'static [Kind]) -> Self {
        ParamSpec { kinds, ..self }
    }

    /// The same phrase, required.
    pub const fn required(self) -> Self {
        ParamSpec {
            required: true,
            ..self
        }
    }

    /// The slots of the phrase: name and kind, in order.
    pub fn slots(&self) -> impl Iterator<Item = (&'static str, Kind)> + '_ {
        let mut n = 0;
        self.phrase.split_whitespace().filter_map(move |w| {
            let slot = w.strip_prefix('{')?.strip_suffix('}')?;
            let (name, default) = match slot.strip_suffix(":int") {
                Some(name) => (name, Kind::ANY_INT),
                None => (slot, Kind::Text),
            };
            let kind = self.kinds.get(n).copied().unwrap_or(default);
            n += 1;
            Some((name, kind))
        })
    }

    /// For a phrase without slots, its option key: the words joined by `_`, lower-case.
    pub fn flag_key(&self) -> Option<String> {
        if self.phrase.contains('{') {
            return None;
        }
        let words: Vec<String> = self
            .phrase
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        Some(words.join("_"))
    }

    /// The option keys this phrase sets.
    pub fn keys(&self) -> Vec<String> {
        match self.flag_key() {
            Some(k) => vec![k],
            None => self.slots().map(|(n, _)| n.to_string()).collect(),
        }
    }
}

/// Where and how `custodian scan` runs a type (abuse checks only).
#[derive(Debug, Clone, Copy)]
pub struct ScanSpec {
    /// Ports probed when `--port` names none.
    pub ports: &'static [u16],
    /// Connections one probe of a target opens (for the open-file budget and the rate).
    pub conns: u32,
    /// The `custodian scan` flags this type takes, as (`--FLAG`, option key): the flag's
    /// value is parsed by that option's [`Kind`], exactly as the option in a test file; a
    /// flag whose option has no slot (a phrase without `{...}`) is a switch.
    pub flags: &'static [(&'static str, &'static str)],
}

/// A check over a whole line's parsed options (values that depend on each other).
pub type CheckFn = fn(&Params) -> Result<(), Invalid>;

/// Everything the planner and the docs need to know about a type.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSpec {
    /// Canonical type name as written in test files (`ssh`).
    pub name: &'static str,
    /// Other accepted names (`psql` for `postgresql`).
    pub aliases: &'static [&'static str],
    pub target: TargetKind,
    /// Port used when the line names none; `None` for types without a port (ping).
    pub default_port: Option<u16>,
    /// The line must name a port (tcp).
    pub port_required: bool,
    /// Whether `on N` and friends are accepted at all.
    pub takes_port: bool,
    /// Type-specific option phrases (the planner adds the common ones itself).
    pub params: &'static [ParamSpec],
    /// One line: what "passed" means.
    pub summary: &'static str,
    /// A working example line for `custodian examples`.
    pub example: &'static str,
    /// Checks across options, run by the planner and again when a worker takes the job.
    pub check: Option<CheckFn>,
    /// Set for the abuse checks `custodian scan` runs.
    pub scan: Option<ScanSpec>,
}

impl TargetKind {
    /// Whether `target` is to be read as a URL under this kind.
    pub fn is_url(&self, target: &str) -> bool {
        match self {
            TargetKind::Url(_) => true,
            TargetKind::HostOrUrl(_) => target.contains("://"),
            TargetKind::Host | TargetKind::Name => false,
        }
    }
}

impl ProbeSpec {
    /// The kind of value option `key` takes: `Some(None)` for a flag, `None` if the type does
    /// not take `key` at all.
    pub fn kind_of(&self, key: &str) -> Option<Option<Kind>> {
        self.params.iter().find_map(|p| match p.flag_key() {
            Some(flag) => (flag == key).then_some(None),
            None => p.slots().find(|(n, _)| *n == key).map(|(_, k)| Some(k)),
        })
    }

    /// Whether `word` names this type (case-insensitive, aliases included).
    pub fn is_named(&self, word: &str) -> bool {
        self.name.eq_ignore_ascii_case(word)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(word))
    }
}
