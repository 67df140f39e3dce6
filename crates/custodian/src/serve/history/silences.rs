//! Silences: a pattern that keeps the notices of the checks it matches from every alerter
//! until a time; stored in the history database, cached in memory for alerting and the pages.
//!
//! A pattern is either a check id (40 hex digits, exactly) or `FIELD:GLOB`, FIELD one of
//! `type`, `target`, `file` (the path or its last component) or `line` (the masked source
//! line), GLOB matching the whole field with `*` (any run) and `?` (one character), ASCII case
//! ignored: `target:web*`, `type:ssh`, `file:dc1.cfg`, `line:*port 22*`.

use anyhow::Result;
use custodian_core::JobResult;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::sync::RwLock;

/// Longest pattern or comment taken.
pub(crate) const MAX_TEXT: usize = 512;
/// Longest silence: a year (an ended one may be replaced any time).
pub(crate) const MAX_SECS: u64 = 366 * 86_400;
/// Ended silences are kept this long (for the record), then deleted.
const KEEP_ENDED: u64 = 30 * 86_400;

/// One silence as stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Silence {
    pub(crate) id: i64,
    pub(crate) pattern: String,
    /// Unix seconds.
    pub(crate) created_at: u64,
    /// When it stops applying (unix seconds).
    pub(crate) until: u64,
    /// Who set it: `token` with a token, else the loopback peer's address.
    pub(crate) author: String,
    pub(crate) comment: String,
}

/// What a pattern is matched against: a check's id and line fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) id: &'a str,
    pub(crate) probe: &'a str,
    pub(crate) target: &'a str,
    pub(crate) file: &'a str,
    pub(crate) line: &'a str,
}

impl<'a> From<&'a JobResult> for Subject<'a> {
    fn from(r: &'a JobResult) -> Self {
        Subject {
            id: &r.id,
            probe: &r.probe,
            target: &r.target,
            file: &r.file,
            line: &r.line,
        }
    }
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    Id(String),
    Type(String),
    Target(String),
    File(String),
    Line(String),
}

impl Pattern {
    /// Parses `text` (see the module docs); the error says what is wanted.
    pub(crate) fn parse(text: &str) -> Result<Pattern, String> {
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_TEXT {
            return Err(format!("a pattern is 1 to {MAX_TEXT} bytes"));
        }
        let glob = |g: &str| {
            if g.is_empty() {
                Err("the glob after the field is empty (use * for all)".to_string())
            } else {
                Ok(g.to_string())
            }
        };
        match text.split_once(':') {
            Some(("type", g)) => Ok(Pattern::Type(glob(g)?)),
            Some(("target", g)) => Ok(Pattern::Target(glob(g)?)),
            Some(("file", g)) => Ok(Pattern::File(glob(g)?)),
            Some(("line", g)) => Ok(Pattern::Line(glob(g)?)),
            Some(("id", g)) if is_id(g) => Ok(Pattern::Id(g.to_ascii_lowercase())),
            None if is_id(text) => Ok(Pattern::Id(text.to_ascii_lowercase())),
            _ => Err(
                "want a check id (40 hex digits) or type:GLOB, target:GLOB, file:GLOB or line:GLOB"
                    .into(),
            ),
        }
    }

    pub(crate) fn matches(&self, s: &Subject<'_>) -> bool {
        match self {
            Pattern::Id(id) => s.id.eq_ignore_ascii_case(id),
            Pattern::Type(g) => glob(g, s.probe),
            Pattern::Target(g) => glob(g, s.target),
            Pattern::File(g) => {
                let base = s.file.rsplit('/').next().unwrap_or(s.file);
                glob(g, s.file) || glob(g, base)
            }
            Pattern::Line(g) => glob(g, s.line),
        }
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `glob` matches all of `text`: `*` any run, `?` one character, ASCII case ignored.
fn glob(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0, 0);
    // Where the last `*` was and the text position it has swallowed up to: backtrack there.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ti));
                gi += 1;
            }
            Some(c) if *c == '?' || c.eq_ignore_ascii_case(&t[ti]) => {
                gi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    gi = sg + 1;
                    ti = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    g[gi.min(g.len())..].iter().all(|c| *c == '*')
}

/// A duration: seconds as a number or digits, or units like `90m`, `2h`, `1d`, `1h30m`;
/// 1 s to [`MAX_SECS`].
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad = || format!("duration {text:?}: want seconds or e.g. 30m, 2h, 1d, 1h30m");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = total.checked_add(n).ok_or_else(bad)?;
    }
    if text.is_empty() || total == 0 || total > MAX_SECS {
        return Err(format!(
            "duration {text:?}: want 1 s to {} days",
            MAX_SECS / 86_400
        ));
    }
    Ok(total)
}

/// The active silences in memory, with their parsed patterns; replaced from the database
/// when one is added or ended and every 30 s. An expired one stops applying at its `until`
/// even before the next refresh.
#[derive(Debug, Default)]
pub(crate) struct Silences {
    active: RwLock<Vec<(Silence, Pattern)>>,
}

impl Silences {
    /// Replaces the cache; rows whose pattern no longer parses are skipped (logged).
    pub(crate) fn replace(&self, rows: Vec<Silence>) {
        let parsed = rows
            .into_iter()
            .filter_map(|s| match Pattern::parse(&s.pattern) {
                Ok(p) => Some((s, p)),
                Err(e) => {
                    tracing::warn!("silence {}: {e}; ignored", s.id);
                    None
                }
            })
            .collect();
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = parsed;
    }

    /// The silence covering `s` at `now` that lasts longest, if any.
    pub(crate) fn matching(&self, s: &Subject<'_>, now: u64) -> Option<Silence> {
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        active
            .iter()
            .filter(|(silence, p)| silence.until > now && p.matches(s))
            .max_by_key(|(silence, _)| silence.until)
            .map(|(silence, _)| silence.clone())
    }

    /// Every silence active at `now`, ending soonest first.
    pub(crate) fn list(&self, now: u64) -> Vec<Silence> {
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Silence> = active
            .iter()
            .filter(|(s, _)| s.until > now)
            .map(|(s, _)| s.clone())
            .collect();
        out.sort_by_key(|s| (s.until, s.id));
        out
    }
}

/// The silences active at `now`.
pub(super) fn active(c: &Connection, now: u64) -> Result<Vec<Silence>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, pattern, created_at, until, author, comment FROM silences
         WHERE until > ?1 ORDER BY until, id",
    )?;
    let rows = stmt.query_map([now], |row| {
        Ok(Silence {
            id: row.get(0)?,
            pattern: row.get(1)?,
            created_at: row.get(2)?,
            until: row.get(3)?,
            author: row.get(4)?,
            comment: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Stores a new silence (deleting long-ended ones); its id.
pub(super) fn insert(
    c: &Connection,
    pattern: &str,
    now: u64,
    until: u64,
    author: &str,
    comment: &str,
) -> Result<i64> {
    c.execute(
        "DELETE FROM silences WHERE until < ?1",
        [now.saturating_sub(KEEP_ENDED)],
    )?;
    c.execute(
        "INSERT INTO silences (pattern, created_at, until, author, comment)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![pattern, now, until, author, comment],
    )?;
    Ok(c.last_insert_rowid())
}

/// Ends silence `id` at `now`; whether it was active.
pub(super) fn end(c: &Connection, id: i64, now: u64) -> Result<bool> {
    let n = c.execute(
        "UPDATE silences SET until = ?2 WHERE id = ?1 AND until > ?2",
        params![id, now],
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(target: &'a str, file: &'a str) -> Subject<'a> {
        Subject {
            id: "0123456789abcdef0123456789abcdef01234567",
            probe: "ssh",
            target,
            file,
            line: "web1.example must run ssh on port 22",
        }
    }

    #[test]
    fn patterns_match_their_field_only() {
        let s = subject("web1.example", "/etc/custodian/dc1.cfg");
        let yes = [
            "0123456789ABCDEF0123456789abcdef01234567",
            "id:0123456789abcdef0123456789abcdef01234567",
            "type:ssh",
            "type:SSH",
            "target:web*",
            "target:web?.example",
            "file:dc1.cfg",
            "file:/etc/*/dc1.cfg",
            "line:*port 22*",
            "target:*",
        ];
        for p in yes {
            assert!(Pattern::parse(p).expect(p).matches(&s), "{p}");
        }
        let no = [
            "type:ss",
            "target:web",
            "target:db*",
            "file:dc2.cfg",
            "line:port 22",
            "target:web1.example?",
            "0123456789abcdef0123456789abcdef01234568",
        ];
        for p in no {
            assert!(!Pattern::parse(p).expect(p).matches(&s), "{p}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in [
            "",
            "web1",
            "target:",
            "host:web1",
            "abc123",
            &"x".repeat(600),
        ] {
            assert!(Pattern::parse(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert_eq!(parse_duration("90"), Ok(90));
        for bad in ["", "0", "2x", "h", "400d", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cache_stops_applying_at_until() {
        let c = Silences::default();
        c.replace(vec![Silence {
            id: 1,
            pattern: "type:ssh".into(),
            created_at: 100,
            until: 200,
            author: "token".into(),
            comment: String::new(),
        }]);
        let s = subject("a", "b");
        assert_eq!(c.matching(&s, 199).map(|s| s.id), Some(1));
        assert!(c.matching(&s, 200).is_none());
        assert_eq!(c.list(150).len(), 1);
        assert!(c.list(200).is_empty());
    }
}
