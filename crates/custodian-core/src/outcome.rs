//! What a probe found and what the worker made of it.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Text a peer sent, made safe to print on a terminal, in a log line or in one CSV cell:
/// every control character (C0, DEL, C1) and every Unicode bidirectional control is written
/// the way Rust writes it in a quoted string: `\n`, `\r`, `\t`, `\0`, otherwise `\u{1b}`
/// (hex code point), as `{:?}` writes them. Everything else, backslashes included, is kept:
/// text already quoted with `{:?}` passes unchanged, and applying it again changes nothing,
/// so each boundary where peer text enters a verdict (transcripts, findings, results, scan
/// rows, text lines) applies it without double escaping.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// A character a terminal would act on rather than show: a control character, or a bidi
/// control that reorders what follows it on the line.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The result of one probe attempt against one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// The service answered as it should.
    Up { detail: Option<String> },
    /// The target answered wrongly or not at all; `reason` says how.
    Down { reason: String },
    /// We could not check (our own resolver, bad local setup); never counts as a pass.
    Unknown { error: String },
}

impl Outcome {
    pub fn up() -> Self {
        Outcome::Up { detail: None }
    }

    pub fn down(reason: impl Into<String>) -> Self {
        Outcome::Down {
            reason: reason.into(),
        }
    }

    pub fn unknown(error: impl Into<String>) -> Self {
        Outcome::Unknown {
            error: error.into(),
        }
    }

    /// A probe's verdict from its result: `Ok(detail)` is up, `Err(reason)` is down.
    pub fn from_result<D: Into<Option<String>>>(result: Result<D, String>) -> Self {
        match result {
            Ok(detail) => Outcome::Up {
                detail: detail.into(),
            },
            Err(reason) => Outcome::Down { reason },
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self, Outcome::Up { .. })
    }
}

/// What an abuse check (openrelay, openresolver, openproxy, opensocks) concluded, best
/// first: the scale `custodian scan` reports and sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The target did the abusable thing (relayed, recursed, fetched the canary).
    Open,
    /// Strong signs of it without the proof (e.g. SERVFAIL with recursion available).
    ProbablyOpen,
    /// The target answered, but not in a way that tells open from closed.
    Inconclusive,
    /// We could not check (our own socket, permission or setup): says nothing about the target.
    Unknown,
    /// The target was silent until the deadline.
    NoAnswer,
    /// The target refused, or is not the kind of server the check speaks to.
    Closed,
}

impl Verdict {
    /// The word used in reports, in `custodian scan --json` and in outcome texts.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Open => "open",
            Verdict::ProbablyOpen => "probably-open",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Unknown => "unknown",
            Verdict::NoAnswer => "no-answer",
            Verdict::Closed => "closed",
        }
    }

    /// Whether the target is (probably) open to abuse.
    pub fn is_open(self) -> bool {
        matches!(self, Verdict::Open | Verdict::ProbablyOpen)
    }
}

/// Most transcript entries quoted in an outcome text (the finding itself keeps them all).
const MAX_QUOTED: usize = 24;

/// An abuse check's typed result: the verdict, why in a few words, and the evidence (our
/// source address and the dialogue, `C: ...` for us and `S: ...` for the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub verdict: Verdict,
    pub why: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<String>,
}

impl Finding {
    /// A verdict without evidence yet.
    pub fn new(verdict: Verdict, why: impl Into<String>) -> Self {
        Finding {
            verdict,
            why: why.into(),
            source: None,
            transcript: Vec::new(),
        }
    }

    /// The finding as a probe outcome for `custodian run`: (probably) open is up, so `must not
    /// run` fails on it; unknown is unknown; the rest is down. The text, which `must not run`
    /// reports, starts with the verdict word and quotes the evidence.
    pub fn outcome(&self) -> Outcome {
        let text = self.to_string();
        match self.verdict {
            Verdict::Open | Verdict::ProbablyOpen => Outcome::Up { detail: Some(text) },
            Verdict::Unknown => Outcome::Unknown { error: text },
            Verdict::Inconclusive | Verdict::NoAnswer | Verdict::Closed => Outcome::down(text),
        }
    }
}

impl std::fmt::Display for Finding {
    /// `VERDICT: WHY [from SOURCE: C: ... | S: ...]`, the transcript cut to its last lines,
    /// control characters escaped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.verdict.word(), escape_controls(&self.why))?;
        if self.source.is_none() && self.transcript.is_empty() {
            return Ok(());
        }
        f.write_str(" [")?;
        if let Some(src) = &self.source {
            write!(f, "from {}: ", escape_controls(src))?;
        }
        let skip = self.transcript.len().saturating_sub(MAX_QUOTED);
        if skip > 0 {
            write!(f, "[{skip} earlier lines] ")?;
        }
        let quoted = self.transcript[skip..].join(" | ");
        write!(f, "{}]", escape_controls(&quoted))
    }
}

/// Final verdict for one job after retries, inversion and the time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    /// We could not judge the service (our own error: no socket, our resolver down, an option
    /// this worker cannot parse); never a pass, never a failure of the service.
    Unknown,
    Skipped,
    /// Checked from several locations (`from 3 locations`): some saw it fail, too few for
    /// the quorum that makes it down. Never raises the check's own alert.
    Partial,
}

/// Turns the last attempt's outcome into a verdict and its error text, honouring `must not run`;
/// an unknown outcome stays unknown either way (our error is never a pass).
pub fn judge(outcome: &Outcome, inverted: bool) -> (Status, Option<String>) {
    match (outcome, inverted) {
        (Outcome::Up { .. }, false) => (Status::Passed, None),
        (Outcome::Down { reason }, false) => (Status::Failed, Some(reason.clone())),
        (Outcome::Up { detail }, true) => (
            Status::Failed,
            Some(match detail {
                Some(d) => format!("service is running but must not be ({d})"),
                None => "service is running but must not be".to_string(),
            }),
        ),
        (Outcome::Down { .. }, true) => (Status::Passed, None),
        (Outcome::Unknown { error }, _) => {
            (Status::Unknown, Some(format!("could not check: {error}")))
        }
    }
}

/// What became of one job: the fields of `custodian run --json`, with secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job's stable identity ([`crate::Job::id`]).
    pub id: String,
    #[serde(rename = "type")]
    pub probe: String,
    pub target: String,
    pub line: String,
    pub file: String,
    pub lineno: u32,
    pub status: Status,
    /// Why it failed or was skipped (secrets scrubbed).
    pub error: Option<String>,
    pub otherwise: Option<String>,
    pub subject: Option<String>,
    /// Time the attempts took, retry delays included, time queued for a slot not.
    pub duration_ms: u64,
    pub attempts: u32,
    /// When the peer's TLS certificate expires (its notAfter, unix seconds), for the checks
    /// whose probe completed a TLS handshake; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiry: Option<i64>,
    /// The job asked for its result to be reported back to `serve` ([`crate::Job::report`]);
    /// not part of any output.
    #[serde(skip)]
    pub report: bool,
}

impl JobResult {
    /// A result for `job` with everything but the verdict filled in; secrets in `error`
    /// masked, then its control characters escaped ([`escape_controls`]).
    pub fn new(
        job: &crate::Job,
        status: Status,
        error: Option<String>,
        duration_ms: u64,
        attempts: u32,
    ) -> Self {
        JobResult {
            id: job.id(),
            probe: job.probe.clone(),
            target: job.display_target(),
            line: job.line.to_string(),
            file: job.file.to_string(),
            lineno: job.lineno,
            status,
            // Peer text reaches every output from here: escaped once, for all of them.
            error: error.map(|e| escape_controls(&job.scrub(&e))),
            otherwise: job.otherwise.clone(),
            subject: job.subject.clone(),
            duration_ms,
            attempts,
            certificate_expiry: None,
            report: job.report,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_expiry_is_left_out_when_unknown() {
        let job = crate::Job::new("ssl", "127.0.0.1", Some(443));
        let mut r = JobResult::new(&job, Status::Passed, None, 1, 1);
        let text = serde_json::to_string(&r).expect("json");
        assert!(!text.contains("certificate_expiry"), "{text}");
        r.certificate_expiry = Some(1_800_000_000);
        let text = serde_json::to_string(&r).expect("json");
        assert!(text.contains("\"certificate_expiry\":1800000000"), "{text}");
        let back: JobResult = serde_json::from_str(&text).expect("back");
        assert_eq!(back.certificate_expiry, Some(1_800_000_000));
    }

    #[test]
    fn results_become_outcomes() {
        assert_eq!(
            Outcome::from_result(Ok::<_, String>("v1".to_string())),
            Outcome::Up {
                detail: Some("v1".into())
            }
        );
        assert_eq!(
            Outcome::from_result(Ok::<Option<String>, _>(None)),
            Outcome::up()
        );
        assert_eq!(
            Outcome::from_result::<String>(Err("refused".into())),
            Outcome::down("refused")
        );
    }

    #[test]
    fn inversion_flips_up_and_down_but_not_unknown() {
        assert_eq!(judge(&Outcome::up(), false).0, Status::Passed);
        assert_eq!(
            judge(&Outcome::down("x"), false),
            (Status::Failed, Some("x".into()))
        );
        assert_eq!(judge(&Outcome::up(), true).0, Status::Failed);
        assert_eq!(judge(&Outcome::down("x"), true), (Status::Passed, None));
        assert_eq!(judge(&Outcome::unknown("dns"), true).0, Status::Unknown);
        assert_eq!(judge(&Outcome::unknown("dns"), false).0, Status::Unknown);
    }

    #[test]
    fn findings_become_outcomes_that_quote_the_evidence() {
        let mut f = Finding::new(Verdict::Open, "it said hi");
        f.source = Some("127.0.0.1".into());
        f.transcript = vec!["C: HELLO".into(), "S: HI".into()];
        assert_eq!(
            f.outcome(),
            Outcome::Up {
                detail: Some("open: it said hi [from 127.0.0.1: C: HELLO | S: HI]".into())
            }
        );
        f.verdict = Verdict::NoAnswer;
        assert!(!f.outcome().is_up());
        f.verdict = Verdict::Unknown;
        assert!(matches!(f.outcome(), Outcome::Unknown { .. }));
        f.transcript = (0..30).map(|i| format!("S: {i}")).collect();
        let text = f.to_string();
        assert!(
            text.contains("[from 127.0.0.1: [6 earlier lines] S: 6 |"),
            "{text}"
        );
        assert_eq!(
            Finding::new(Verdict::Closed, "refused").to_string(),
            "closed: refused"
        );
        let json = serde_json::to_string(&Verdict::ProbablyOpen).expect("json");
        assert_eq!(json, "\"probably-open\"");
    }

    #[test]
    fn control_characters_are_escaped_once() {
        let hostile = "220 \u{1b}]0;pwned\u{7}\u{1b}[2J hi\r\n\tx\0\u{7f}\u{9b}\u{202e}";
        let safe = escape_controls(hostile);
        assert_eq!(
            safe,
            "220 \\u{1b}]0;pwned\\u{7}\\u{1b}[2J hi\\r\\n\\tx\\0\\u{7f}\\u{9b}\\u{202e}"
        );
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        // Idempotent, and text quoted with `{:?}` is left as it is.
        assert_eq!(escape_controls(&safe), safe);
        let quoted = format!("{:?}", "a\u{1b}b\n");
        assert_eq!(escape_controls(&quoted), quoted);
        assert_eq!(escape_controls("plain \\ text é"), "plain \\ text é");
    }

    #[test]
    fn findings_and_results_carry_no_control_characters() {
        let mut f = Finding::new(Verdict::Closed, "bad \u{1b}[2J");
        f.source = Some("127.0.0.1".into());
        f.transcript = vec!["S: 220 \u{1b}]0;x\u{7}".into()];
        let text = f.to_string();
        assert_eq!(
            text,
            "closed: bad \\u{1b}[2J [from 127.0.0.1: S: 220 \\u{1b}]0;x\\u{7}]"
        );
        let job = crate::Job::new("smtp", "127.0.0.1", Some(25));
        let r = JobResult::new(&job, Status::Failed, Some("a\u{1b}b\nc".into()), 1, 1);
        assert_eq!(r.error.as_deref(), Some("a\\u{1b}b\\nc"));
    }

    #[test]
    fn result_scrubs_secrets_from_errors() {
        let mut job = crate::Job::new("http", "http://u:hunter2@127.0.0.1/", Some(80));
        job.options.insert("password".into(), "pw123".into());
        let r = JobResult::new(
            &job,
            Status::Failed,
            Some("bad login pw123 hunter2".into()),
            5,
            1,
        );
        assert_eq!(r.error.as_deref(), Some("bad login ******** ********"));
        assert_eq!(r.target, "http://u:********@127.0.0.1/");
    }
}
