//! Static description of a probe type: its name, target kind, default port and option phrases.
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

/// One option phrase a type accepts.
///
/// `phrase` is words matched case-insensitively, with value slots: `{name}` takes one value
/// (a quoted string or a bare word), `{name:int}` a whole number. The slot's value is stored in
/// the job's options under `name`. A phrase without slots is a flag, stored as
/// `options[words joined by '_'] = true` (so `not following redirects` → `not_following_redirects`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    pub phrase: &'static str,
    pub help: &'static str,
}

/// Everything the planner and the docs need to know about a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Whether `word` names this type (case-insensitive, aliases included).
    pub fn is_named(&self, word: &str) -> bool {
        self.name.eq_ignore_ascii_case(word)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(word))
    }
}
