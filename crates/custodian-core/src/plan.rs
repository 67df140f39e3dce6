//! The planner: resolves each expanded test line against the probe specs, matches its option
//! words to phrases, fills defaults and checks targets, and yields [`Job`]s or spanned
//! diagnostics. Any error means the caller runs nothing.

mod locations;
mod phrase;
#[cfg(test)]
mod tests;

use crate::param::{Invalid, Kind, Params, Value};
use crate::probe::{ParamSpec, ProbeSpec, TargetKind};
use crate::secret;
use crate::spec::{mask_url, secret_ranges, Family, Job, Options, MASK, SECRET_KEYS, WIRE_VERSION};
use custodian_dsl::ast::{Span, Statement, TestStmt, Token};
use custodian_dsl::{Diagnostic, Expanded, Location, Severity, SourceFile};
use phrase::{Fit, Phrase, SlotValue};
use std::collections::btree_map::Entry;
use std::sync::Arc;

/// What a matched phrase sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Port,
    /// `with IPv4` (false) or `ipv4_only` (true).
    Family(Family, bool),
    Timeout,
    Retries,
    /// `every 30s`: how often `serve` runs the line.
    Every,
    /// `with quorum N`: how many locations must see a failure.
    Quorum,
    /// A type-specific phrase: its index in the spec's params.
    Param(usize),
}

const COMMON: &[(&str, Role)] = &[
    ("ipv4_only", Role::Family(Family::V4, true)),
    ("ipv6_only", Role::Family(Family::V6, true)),
    ("with ipv4", Role::Family(Family::V4, false)),
    ("with ipv6", Role::Family(Family::V6, false)),
    ("with timeout {timeout:int}", Role::Timeout),
    ("with retries {retries:int}", Role::Retries),
    ("every {every}", Role::Every),
    ("with quorum {quorum:int}", Role::Quorum),
];

const PORT: &[&str] = &[
    "on {port:int}",
    "on port {port:int}",
    "with port {port:int}",
];

/// The phrases one type accepts, common ones first.
fn phrases(spec: &ProbeSpec) -> Vec<(Phrase, Role)> {
    let ports = PORT
        .iter()
        .filter(|_| spec.takes_port)
        .map(|p| (*p, Role::Port));
    let params = spec
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| (p.phrase, Role::Param(i)));
    ports
        .chain(COMMON.iter().copied())
        .chain(params)
        .map(|(text, role)| (Phrase::new(text), role))
        .collect()
}

/// `30s`, `5m`, `1h`, `1d` or a bare number of seconds, from 5 s to a day.
pub fn parse_every(text: &str) -> Option<u64> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let secs = n.checked_mul(scale)?;
    (5..=86_400).contains(&secs).then_some(secs)
}

/// Turns expanded tests into jobs. `strict` makes unrecognised words errors.
pub fn plan(
    tests: &[Expanded<'_>],
    specs: &[&ProbeSpec],
    strict: bool,
) -> (Vec<Job>, Vec<Diagnostic>) {
    let mut planner = Planner::new(specs, strict);
    // One job per expanded test unless a line has errors: reserved once, not regrown.
    let mut jobs = Vec::with_capacity(tests.len());
    for group in tests.chunk_by(|a, b| std::ptr::eq(a.stmt, b.stmt)) {
        planner.statement(group, &mut |job| jobs.push(job));
    }
    (jobs, planner.into_diagnostics())
}

/// Plans one statement at a time (the expanded tests of one line, as
/// [`custodian_dsl::expand_each`] hands them over) and gives each job to a sink, so a caller
/// that only counts or streams jobs never holds them all.
pub struct Planner<'s> {
    specs: &'s [&'s ProbeSpec],
    phrases: Vec<Vec<(Phrase, Role)>>,
    strict: bool,
    diags: Vec<Diagnostic>,
    /// How many of `diags` are errors (checked once per job).
    error_count: usize,
    /// Where each option of the statement being planned was written.
    spans: Vec<(String, Span)>,
    /// The statement's option values as parsed while matching, for its line-wide check.
    parsed: Vec<(String, Value)>,
    /// Where the statement's `with quorum N` was written.
    quorum_at: Option<Span>,
    /// The name of the file being planned, shared by all of its jobs.
    file: Option<Arc<str>>,
}

/// The statement being planned.
#[derive(Clone, Copy)]
struct Cx<'a> {
    file: &'a SourceFile,
    stmt: &'a Statement,
    test: &'a TestStmt,
    /// The `from` clause's names, macros expanded.
    locations: Option<&'a [Location]>,
}

impl<'s> Planner<'s> {
    pub fn new(specs: &'s [&'s ProbeSpec], strict: bool) -> Self {
        Planner {
            specs,
            phrases: specs.iter().map(|s| phrases(s)).collect(),
            strict,
            diags: Vec::new(),
            error_count: 0,
            spans: Vec::new(),
            parsed: Vec::new(),
            quorum_at: None,
            file: None,
        }
    }

    /// Every diagnostic so far, in the order the statements were planned.
    pub fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diags
    }

    /// Plans one statement for each of its expanded targets (all of one statement, in order)
    /// and gives `sink` each job, unless the statement has errors.
    pub fn statement(&mut self, group: &[Expanded<'_>], sink: &mut dyn FnMut(Job)) {
        let Some(e) = group.first() else {
            return;
        };
        let cx = Cx {
            file: e.file,
            stmt: e.stmt,
            test: e.test,
            locations: e.locations.as_deref(),
        };
        let Some(index) = self.resolve(cx) else {
            return;
        };
        let before = self.errors();
        let base = self.options(cx, index);
        // Clones share the line, file and options; the last target takes the base itself.
        let Some((last, rest)) = group.split_last() else {
            return;
        };
        for e in rest {
            self.push(cx, index, base.clone(), e, before, sink);
        }
        self.push(cx, index, base, last, before, sink);
    }

    fn report(
        &mut self,
        cx: Cx<'_>,
        severity: Severity,
        span: Span,
        msg: String,
        hint: Option<String>,
    ) {
        let d = Diagnostic::new(severity, &cx.file.name, &cx.file.source, span, msg);
        self.error_count += usize::from(d.is_error());
        self.diags.push(match hint {
            Some(h) => d.with_hint(h),
            None => d,
        });
    }

    fn error(&mut self, cx: Cx<'_>, span: Span, msg: impl Into<String>, hint: Option<String>) {
        self.report(cx, Severity::Error, span, msg.into(), hint);
    }

    fn errors(&self) -> usize {
        self.error_count
    }

    /// Completes `job` for one expanded target and gives it to `sink` if the statement has no
    /// errors.
    fn push(
        &mut self,
        cx: Cx<'_>,
        index: usize,
        mut job: Job,
        e: &Expanded<'_>,
        before: usize,
        sink: &mut dyn FnMut(Job),
    ) {
        job.target = e.target.to_string();
        self.target(cx, self.specs[index], &mut job);
        if self.errors() == before {
            sink(job);
        }
    }

    /// The spec the type names, or an error with a suggestion.
    fn resolve(&mut self, cx: Cx<'_>) -> Option<usize> {
        let word = &cx.test.probe.value;
        if let Some(i) = self.specs.iter().position(|s| s.is_named(word)) {
            return Some(i);
        }
        let hint = match closest(word, self.specs) {
            Some(name) => format!("did you mean `{name}`?"),
            None => {
                let names: Vec<&str> = self.specs.iter().map(|s| s.name).collect();
                format!("known types: {}", names.join(", "))
            }
        };
        self.error(
            cx,
            cx.test.probe.span,
            format!("unknown test type `{word}`"),
            Some(hint),
        );
        None
    }

    /// The job every target of this statement shares, options matched and checked.
    fn options(&mut self, cx: Cx<'_>, index: usize) -> Job {
        let spec = self.specs[index];
        let file = self.file_name(cx);
        // Built field by field: `Job::new` would allocate a line and a file name thrown away.
        let mut job = Job {
            v: WIRE_VERSION,
            probe: spec.name.to_string(),
            target: String::new(),
            port: None,
            inverted: cx.test.inverted,
            otherwise: cx.test.otherwise.as_ref().map(|o| o.value.clone()),
            subject: cx.test.subject.as_ref().map(|s| s.value.clone()),
            window: cx.test.window.as_ref().map(|w| w.value),
            family: Family::Any,
            timeout: None,
            retries: None,
            every: None,
            from: None,
            quorum: None,
            report: false,
            options: Options::default(),
            // Replaced by the masked line below, once the secrets are known.
            line: Arc::clone(&file),
            file,
            lineno: cx.stmt.lineno,
        };
        let before = self.errors();
        self.spans.clear();
        self.parsed.clear();
        self.quorum_at = None;
        let secrets = self.match_args(cx, index, &mut job);
        self.locations(cx, &mut job);
        // A bad `on N` was reported already; "needs a port" would repeat it.
        if spec.port_required && job.port.is_none() && self.errors() == before {
            let msg = format!("`{}` needs a port", spec.name);
            self.error(cx, cx.test.probe.span, msg, Some("add `on PORT`".into()));
        }
        self.required(cx, spec, &job);
        // A line-wide check only makes sense once each value is well-formed.
        // The values were parsed once while matching; they are not parsed again for it.
        if let (Some(check), true) = (spec.check, self.errors() == before) {
            let params = Params::from_values(self.parsed.drain(..));
            if let Err(e) = check(&params) {
                self.line_problem(cx, e);
            }
        }
        job.line = masked_line(cx, &secrets).into();
        job
    }

    /// The file's name, allocated once per file rather than once per job.
    fn file_name(&mut self, cx: Cx<'_>) -> Arc<str> {
        match &self.file {
            Some(name) if **name == *cx.file.name => Arc::clone(name),
            _ => Arc::clone(self.file.insert(cx.file.name.as_str().into())),
        }
    }

    /// Reports a whole-line problem at the option it names (else at the type); one the
    /// original accepted is a warning unless `--strict`.
    fn line_problem(&mut self, cx: Cx<'_>, e: Invalid) {
        let span = e
            .key
            .and_then(|k| self.spans.iter().find(|(n, _)| n == k))
            .map_or(cx.test.probe.span, |(_, s)| *s);
        if e.lenient && !self.strict {
            let msg = format!(
                "{} (accepted for compatibility; `--strict` rejects it)",
                e.msg
            );
            self.report(cx, Severity::Warning, span, msg, e.hint);
        } else {
            self.error(cx, span, e.msg, e.hint);
        }
    }

    /// Reports each required phrase the line does not give.
    fn required(&mut self, cx: Cx<'_>, spec: &ProbeSpec, job: &Job) {
        for p in spec.params.iter().filter(|p| p.required) {
            if !p.keys().iter().any(|k| job.options.contains_key(k)) {
                let usage = Phrase::new(p.phrase).usage();
                let msg = format!("`{}` needs `{usage}`", spec.name);
                let hint = format!("{usage}: {}", p.help);
                self.error(cx, cx.test.probe.span, msg, Some(hint));
            }
        }
    }

    /// Walks the argument words, applying each phrase and reporting runs of unmatched words.
    fn match_args(&mut self, cx: Cx<'_>, index: usize, job: &mut Job) -> Vec<Token> {
        let args = &cx.test.args;
        let mut secrets = Vec::new();
        let mut unmatched: Option<usize> = None;
        let mut i = 0;
        while i < args.len() {
            let fit = best_fit(&self.phrases[index], &args[i..]);
            if !matches!(fit, Best::No) {
                if let Some(start) = unmatched.take() {
                    self.unrecognised(cx, index, &args[start..i]);
                }
            }
            match fit {
                Best::Full(m) => {
                    let words = &args[i..i + m.len];
                    i += m.len;
                    self.apply(cx, index, job, m, words, &mut secrets);
                }
                Best::BadInt(at) => {
                    let t = &args[i + at];
                    self.error(
                        cx,
                        t.span,
                        format!("`{}` is not a whole number", t.text),
                        None,
                    );
                    i += at + 1;
                }
                Best::No => {
                    unmatched.get_or_insert(i);
                    i += 1;
                }
            }
        }
        if let Some(start) = unmatched {
            self.unrecognised(cx, index, &args[start..]);
        }
        secrets
    }

    fn unrecognised(&mut self, cx: Cx<'_>, index: usize, run: &[Token]) {
        let usages: Vec<String> = self.phrases[index].iter().map(|(p, _)| p.usage()).collect();
        let hint = format!("`{}` takes: {}", self.specs[index].name, usages.join(", "));
        let (severity, tail) = match self.strict {
            true => (Severity::Error, ""),
            false => (Severity::Warning, " (ignored)"),
        };
        let msg = format!("unrecognised words `{}`{tail}", phrase::words(run));
        self.report(cx, severity, phrase::span_of(run), msg, Some(hint));
    }

    fn apply(
        &mut self,
        cx: Cx<'_>,
        index: usize,
        job: &mut Job,
        m: Matched,
        words: &[Token],
        secrets: &mut Vec<Token>,
    ) {
        let span = phrase::span_of(words);
        let number = m
            .values
            .first()
            .and_then(|v| v.value.as_u64().map(|n| (n, v.token.span)));
        match (m.role, number) {
            (Role::Port, Some((n, at))) => job.port = self.ranged(cx, at, n, 1, 65535, "port"),
            (Role::Timeout, Some((n, at))) => {
                job.timeout = self.ranged(cx, at, n, 1, 86_400, "timeout")
            }
            (Role::Retries, Some((n, at))) => {
                job.retries = self.ranged(cx, at, n, 1, 100, "retries")
            }
            (Role::Every, _) => {
                if let Some(v) = m.values.first() {
                    let text = v.value.as_str().unwrap_or_default();
                    match parse_every(text) {
                        Some(secs) => job.every = Some(secs),
                        None => self.error(
                            cx,
                            v.token.span,
                            format!("`{text}` is not an interval from 5s to 1d"),
                            Some("write e.g. `every 30s`, `every 5m`, `every 1h` (seconds when no unit)".into()),
                        ),
                    }
                }
            }
            (Role::Quorum, Some((n, _))) => self.quorum(cx, job, n, span),
            (Role::Family(family, only), _) => self.family(cx, index, job, family, only, span),
            (Role::Param(p), _) => {
                let param = self.specs[index].params[p];
                self.params(cx, param, job, m, span, secrets)
            }
            _ => {}
        }
    }

    /// `n` if it lies in `lo..=hi`, else an error.
    fn ranged<T: TryFrom<u64>>(
        &mut self,
        cx: Cx<'_>,
        at: Span,
        n: u64,
        lo: u64,
        hi: u64,
        what: &str,
    ) -> Option<T> {
        if (lo..=hi).contains(&n) {
            return T::try_from(n).ok();
        }
        self.error(
            cx,
            at,
            format!("{what} {n} is out of range ({lo}-{hi})"),
            None,
        );
        None
    }

    fn family(
        &mut self,
        cx: Cx<'_>,
        index: usize,
        job: &mut Job,
        family: Family,
        only: bool,
        span: Span,
    ) {
        if only && matches!(self.specs[index].target, TargetKind::Url(_)) {
            let hint = Some("use `with IPv4` or `with IPv6`".to_string());
            self.error(
                cx,
                span,
                "We cannot limit HTTP/HTTPS tests to IPv4/IPv6-only",
                hint,
            );
        } else if job.family != Family::Any && job.family != family {
            self.error(
                cx,
                span,
                "this line already limits the test to the other address family",
                None,
            );
        } else {
            job.family = family;
        }
    }

    /// Stores a type-specific phrase's values, each checked against its slot's kind.
    fn params(
        &mut self,
        cx: Cx<'_>,
        param: ParamSpec,
        job: &mut Job,
        m: Matched,
        span: Span,
        secrets: &mut Vec<Token>,
    ) {
        let entries = match m.flag {
            Some(key) => vec![(key, serde_json::Value::Bool(true), None)],
            None => m
                .values
                .into_iter()
                .map(|v| (v.name.to_string(), v.value, Some(v.token)))
                .collect(),
        };
        for (i, (key, value, token)) in entries.into_iter().enumerate() {
            if let Some(t) = &token {
                secrets.extend(secret_tokens(&key, t));
            }
            // A secret reference is resolved (and its value parsed) by the worker, which may
            // see an environment this machine does not: only its syntax is checked here.
            let reference = match (SECRET_KEYS.contains(&key.as_str()), value.as_str(), &token) {
                (true, Some(v), Some(t)) => match secret::reference(v) {
                    Ok(r) => r.is_some(),
                    Err(e) => {
                        self.error(cx, t.span, format!("{key}: {}", e.msg), e.hint);
                        continue;
                    }
                },
                _ => false,
            };
            let kind = param.slots().nth(i).map(|(_, k)| k);
            let parsed = match (reference, kind.as_ref(), &token) {
                (false, Some(kind), Some(t)) => match kind.parse(&value) {
                    Ok(v) => v,
                    Err(e) => {
                        let msg = match kind {
                            Kind::Int { .. } => format!("{key} {}", e.msg),
                            _ => e.msg,
                        };
                        self.error(cx, t.span, msg, e.hint);
                        continue;
                    }
                },
                (_, _, None) => Value::Flag,
                // A secret reference stands for its value, which only the worker can read.
                _ => Value::Text(value.as_str().unwrap_or_default().to_string()),
            };
            self.spans
                .push((key.clone(), token.as_ref().map_or(span, |t| t.span)));
            match job.options.entry(key) {
                Entry::Vacant(e) => {
                    self.parsed.push((e.key().clone(), parsed));
                    e.insert(value);
                }
                Entry::Occupied(e) => {
                    let msg = format!("`{}` is given twice; the first counts", e.key());
                    self.report(cx, Severity::Warning, span, msg, None);
                }
            }
        }
    }

    /// Per-target checks: URL targets (scheme, port) and the default port.
    fn target(&mut self, cx: Cx<'_>, spec: &ProbeSpec, job: &mut Job) {
        match spec.target {
            TargetKind::Url(schemes) => self.url_target(cx, spec, schemes, job),
            TargetKind::HostOrUrl(schemes) if spec.target.is_url(&job.target) => {
                self.url_target(cx, spec, schemes, job)
            }
            _ => {}
        }
        job.port = job.port.or(spec.default_port);
    }

    fn url_target(&mut self, cx: Cx<'_>, spec: &ProbeSpec, schemes: &[&str], job: &mut Job) {
        let span = cx.test.target.span;
        // Messages are built only on error: this runs for every URL target.
        let shown = || mask_url(&job.target);
        let example = || {
            format!(
                "write a URL such as `{}://example.com/`",
                schemes.first().unwrap_or(&"http")
            )
        };
        let url = match url::Url::parse(&job.target) {
            Ok(u) if u.has_host() => u,
            Ok(_) => {
                let msg = format!("The target wasn't a URL: '{}' has no host", shown());
                return self.error(cx, span, msg, Some(example()));
            }
            Err(e) => {
                let msg = format!("The target wasn't a URL: '{}' ({e})", shown());
                return self.error(cx, span, msg, Some(example()));
            }
        };
        if !schemes.contains(&url.scheme()) {
            let msg = format!(
                "The test case has a different protocol in the URI than that which we're testing: \"{} != {}\"",
                spec.name,
                url.scheme()
            );
            let hint = format!("`{}` tests take {} URLs", spec.name, schemes.join("/"));
            return self.error(cx, span, msg, Some(hint));
        }
        // A `${env:..}` password is read by the worker, for the types that know to.
        match secret::url_reference(&job.target) {
            Err(e) => return self.error(cx, span, format!("URL password: {}", e.msg), e.hint),
            Ok(Some(_)) if !secret::URL_REFERENCE_TYPES.contains(&spec.name) => {
                let msg = format!(
                    "`{}` tests cannot read the URL's password from a reference",
                    spec.name
                );
                let hint =
                    Some("write the host alone and use `with password '${env:NAME}'`".into());
                return self.error(cx, span, msg, hint);
            }
            Ok(_) => {}
        }
        job.port = job.port.or(url.port_or_known_default());
    }
}

/// A phrase that fits: what it sets, its flag key, how many words it used, its slot values.
struct Matched {
    role: Role,
    flag: Option<String>,
    len: usize,
    values: Vec<SlotValue>,
}

enum Best {
    Full(Matched),
    BadInt(usize),
    No,
}

/// The longest phrase that fits; a phrase whose number slot does not parse counts only if none
/// fits fully (so `on port 80` is not read as `on {port}` with a bad number).
fn best_fit(phrases: &[(Phrase, Role)], toks: &[Token]) -> Best {
    let mut best = Best::No;
    let mut best_len = 0;
    for (phrase, role) in phrases {
        match phrase.fit(toks) {
            Fit::Full(len, values) if len > best_len => {
                best_len = len;
                best = Best::Full(Matched {
                    role: *role,
                    flag: phrase.flag_key(),
                    len,
                    values,
                });
            }
            Fit::BadInt(at) if best_len == 0 && matches!(best, Best::No) => best = Best::BadInt(at),
            _ => {}
        }
    }
    best
}

/// The nearest type name (aliases included) within a small edit distance.
fn closest(word: &str, specs: &[&ProbeSpec]) -> Option<&'static str> {
    let word = word.to_ascii_lowercase();
    let names = specs
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()));
    names
        .map(|n| (edit_distance(&word, n), n))
        .filter(|&(d, _)| d <= 2 && d < word.chars().count())
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The secret parts of option `key`'s token `t` (see [`secret_ranges`]) as tokens of their own,
/// so the line masks only them: `with header 'Authorization: ********'` keeps the name.
fn secret_tokens(key: &str, t: &Token) -> Vec<Token> {
    let start = t.span.start + usize::from(t.quoted);
    secret_ranges(key, &t.text)
        .into_iter()
        .map(|r| Token {
            text: t.text[r.clone()].to_string(),
            quoted: false,
            span: Span {
                start: start + r.start,
                end: start + r.end,
            },
        })
        .collect()
}

/// The statement text with secret values and URL passwords replaced by the mask.
fn masked_line(cx: Cx<'_>, secrets: &[Token]) -> String {
    let stmt = cx.stmt;
    let mut text = stmt.text.clone();
    let contiguous = cx.file.source.get(stmt.span.start..stmt.span.end) == Some(text.as_str());
    let mut spans: Vec<&Token> = secrets.iter().collect();
    spans.sort_by_key(|t| std::cmp::Reverse(t.span.start));
    for t in spans {
        let inner = usize::from(t.quoted);
        let range = (
            (t.span.start + inner).checked_sub(stmt.span.start),
            t.span
                .end
                .saturating_sub(inner)
                .checked_sub(stmt.span.start),
        );
        match range {
            (Some(a), Some(b))
                if contiguous && a <= b && text.get(a..b) == Some(t.text.as_str()) =>
            {
                text.replace_range(a..b, MASK)
            }
            _ if !t.text.is_empty() => text = text.replace(&t.text, MASK),
            _ => {}
        }
    }
    // Only a word with a scheme can hold a URL password; most lines have none.
    if !text.contains("://") {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match word.contains("://") {
            true => out.push_str(&mask_url(word)),
            false => out.push_str(word),
        }
    }
    out
}
