//! Statements: turns the words of each logical line into a macro definition or a test, pulling
//! out the clauses every type shares (otherwise, with subject, between). A bad line is reported
//! and dropped; parsing goes on with the next one.

use crate::ast::{
    FromClause, MacroBody, MacroDef, SourceFile, Span, Spanned, Statement, StatementKind, TestStmt,
    Window,
};
use crate::diagnostic::Diagnostic;
use crate::lexer::{self, Line, Word};

/// A problem with one line, before it is placed in its file.
struct Error {
    span: Span,
    message: String,
    hint: Option<String>,
}

impl Error {
    fn new(span: Span, message: impl Into<String>) -> Self {
        Error {
            span,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.to_string());
        self
    }
}

type Result<T> = std::result::Result<T, Error>;

/// Parses a whole file; returns every statement that parsed and a diagnostic for every line that
/// did not.
pub fn parse(name: &str, source: &str) -> (SourceFile, Vec<Diagnostic>) {
    let mut statements = Vec::new();
    let mut diags = Vec::new();
    lexer::each_line(source, |line| match statement(&line) {
        Ok(kind) => statements.push(Statement {
            kind,
            lineno: line.lineno,
            span: line.whole(),
            text: line.text,
        }),
        Err(e) => {
            let d = Diagnostic::error(name, source, e.span, e.message);
            diags.push(match e.hint {
                Some(h) => d.with_hint(h),
                None => d,
            });
        }
    });
    // The tree lives until planning ends: without the slack of its last doubling.
    statements.shrink_to_fit();
    let file = SourceFile {
        name: name.to_string(),
        source: source.to_string(),
        statements,
    };
    (file, diags)
}

fn statement(line: &Line) -> Result<StatementKind> {
    let toks = lexer::tokens(line).map_err(|span| {
        Error::new(span, "unterminated quote")
            .hint("close the text with the same quote it opened with")
    })?;
    match toks.get(1) {
        Some(t) if is_word(t, "is") || is_word(t, "are") => {
            macro_def(&toks).map(StatementKind::Macro)
        }
        Some(t) if is_word(t, "must") => test(&toks).map(StatementKind::Test),
        _ => Err(
            Error::new(line.whole(), "expected a test or a macro definition")
                .hint("write `TARGET must run TYPE ...` or `NAME is MEMBER and MEMBER`"),
        ),
    }
}

/// An unquoted word equal to `word`, ignoring case.
fn is_word(t: &Word<'_>, word: &str) -> bool {
    !t.quoted && t.text.eq_ignore_ascii_case(word)
}

fn spanned(t: &Word<'_>) -> Spanned<String> {
    Spanned {
        value: t.text.to_string(),
        span: t.span,
    }
}

pub(crate) fn is_macro_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn macro_def(toks: &[Word<'_>]) -> Result<MacroDef> {
    let name = &toks[0];
    if name.quoted || !is_macro_name(name.text) {
        return Err(
            Error::new(name.span, format!("`{}` is not a macro name", name.text))
                .hint("macro names are upper-case letters, digits and `_`, e.g. `WEBSERVERS`"),
        );
    }
    let body = &toks[2..];
    let body = match body {
        [f, from, rest @ ..] if is_word(f, "fetched") && is_word(from, "from") => {
            MacroBody::Fetched(fetched_url(from, rest)?)
        }
        _ => MacroBody::Members(members(&toks[1], body)?),
    };
    Ok(MacroDef {
        name: spanned(name),
        body,
    })
}

fn fetched_url(from: &Word<'_>, rest: &[Word<'_>]) -> Result<Spanned<String>> {
    match rest {
        [url] => Ok(spanned(url)),
        [] => Err(Error::new(
            from.span,
            "missing the URL after `fetched from`",
        )),
        [_, extra @ ..] => Err(Error::new(
            Span::new(extra[0].span.start, extra[extra.len() - 1].span.end),
            "unexpected words after the URL",
        )),
    }
}

/// Members split on the word `and` and on commas (overseer's form).
fn members(is: &Word<'_>, body: &[Word<'_>]) -> Result<Vec<Spanned<String>>> {
    let mut out = Vec::new();
    for t in body {
        if t.quoted {
            out.push(spanned(t));
        } else if !is_word(t, "and") {
            comma_members(t, &mut out)?;
        }
    }
    if out.is_empty() {
        return Err(Error::new(is.span, "the macro has no members")
            .hint("write `NAME is MEMBER and MEMBER`"));
    }
    out.shrink_to_fit();
    Ok(out)
}

fn comma_members(t: &Word<'_>, out: &mut Vec<Spanned<String>>) -> Result<()> {
    let mut offset = 0;
    for piece in t.text.split(',') {
        let span = Span::new(t.span.start + offset, t.span.start + offset + piece.len());
        offset += piece.len() + 1;
        if piece.starts_with(['\'', '"']) {
            return Err(Error::new(span, "a quote must start a word"));
        }
        if !piece.is_empty() {
            out.push(Spanned {
                value: piece.to_string(),
                span,
            });
        }
    }
    Ok(())
}

fn test(toks: &[Word<'_>]) -> Result<TestStmt> {
    let target = &toks[0];
    if target.quoted {
        return Err(Error::new(target.span, "the target must not be quoted"));
    }
    let inverted = toks.get(2).is_some_and(|t| is_word(t, "not"));
    let at = 2 + usize::from(inverted);
    let (probe, rest) = probe(&toks[at - 1], &toks[at..])?;
    let mut stmt = TestStmt {
        target: spanned(target),
        inverted,
        probe,
        args: Vec::new(),
        otherwise: None,
        subject: None,
        window: None,
        from: None,
    };
    // Arguments are marked while the clauses are taken and copied once at the end.
    let first = toks.len() - rest.len();
    let mut is_arg = vec![false; toks.len()];
    let mut i = 0;
    while i < rest.len() {
        match clause(&rest[i..], &mut stmt)? {
            0 => {
                is_arg[first + i] = true;
                i += 1;
            }
            n => i += n,
        }
    }
    // Sized exactly: statements live until planning ends, and collecting in place would keep
    // the capacity of every word of the line.
    let mut args = Vec::with_capacity(is_arg.iter().filter(|a| **a).count());
    args.extend(
        toks.iter()
            .zip(is_arg)
            .filter(|(_, a)| *a)
            .map(|(t, _)| t.owned()),
    );
    stmt.args = args;
    Ok(stmt)
}

/// The type after `must [not]`: `run TYPE` or `ping`. Returns it and the words after it.
fn probe<'t, 's>(
    before: &Word<'_>,
    toks: &'t [Word<'s>],
) -> Result<(Spanned<String>, &'t [Word<'s>])> {
    let usage = "write `TARGET must run TYPE` or `TARGET must not run TYPE`";
    match toks {
        [p, rest @ ..] if is_word(p, "ping") => Ok((
            Spanned {
                value: "ping".into(),
                span: p.span,
            },
            rest,
        )),
        [run, ty, rest @ ..] if is_word(run, "run") && !ty.quoted => Ok((spanned(ty), rest)),
        [run, ty, ..] if is_word(run, "run") => {
            Err(Error::new(ty.span, "the test type must not be quoted"))
        }
        [run] if is_word(run, "run") => {
            Err(Error::new(run.span, "missing the test type after `run`").hint(usage))
        }
        [other, ..] => {
            Err(Error::new(other.span, "expected `run` or `ping` after `must`").hint(usage))
        }
        [] => Err(Error::new(before.span, "missing `run TYPE` after `must`").hint(usage)),
    }
}

/// Takes a universal clause at the start of `toks` into `stmt`; returns how many words it used
/// (0: not a clause, or a repeat of one already taken, which stays an unrecognised argument).
fn clause(toks: &[Word<'_>], stmt: &mut TestStmt) -> Result<usize> {
    match toks {
        [o, text, ..] if is_word(o, "otherwise") && text.quoted && stmt.otherwise.is_none() => {
            stmt.otherwise = Some(spanned(text));
            Ok(2)
        }
        [w, s, text, ..]
            if is_word(w, "with")
                && is_word(s, "subject")
                && text.quoted
                && stmt.subject.is_none() =>
        {
            stmt.subject = Some(spanned(text));
            Ok(3)
        }
        [e, b, rest @ ..] if is_word(e, "except") && is_word(b, "between") => {
            window(e, b, rest, true, stmt).map(|n| n + usize::from(n > 0))
        }
        [b, rest @ ..] if is_word(b, "between") => window(b, b, rest, false, stmt),
        [f, rest @ ..] if is_word(f, "from") => from_clause(f, rest, stmt),
        _ => Ok(0),
    }
}

const FROM_USAGE: &str = "write `from 3 locations` or `from lon1 and ams1`";

/// `from N location(s)` or `from NAME[, NAME ...] [and NAME]`; returns the words used.
/// Unlike the original's clauses a repeat is an error: two lists cannot both be meant.
fn from_clause(f: &Word<'_>, rest: &[Word<'_>], stmt: &mut TestStmt) -> Result<usize> {
    if stmt.from.is_some() {
        return Err(Error::new(f.span, "a second `from` on one line")
            .hint("name every location in one clause: `from lon1 and ams1`"));
    }
    let (clause, used) = match rest {
        [n, loc, ..] if !n.quoted && (is_word(loc, "location") || is_word(loc, "locations")) => {
            if !n.text.bytes().all(|b| b.is_ascii_digit()) {
                let msg = format!("`{}` is not a number of locations", n.text);
                return Err(Error::new(n.span, msg).hint(FROM_USAGE));
            }
            (FromClause::Count(spanned(n)), 2)
        }
        _ => {
            let (names, used) = location_list(f, rest)?;
            (FromClause::Names(names), used)
        }
    };
    let end = rest.get(used - 1).map_or(f.span.end, |t| t.span.end);
    stmt.from = Some(Spanned {
        value: clause,
        span: Span::new(f.span.start, end),
    });
    Ok(used + 1)
}

/// Names after `from`, split on commas and `and` as macro members are; the list ends at the
/// first name followed by neither. Returns the names and the words used.
fn location_list(f: &Word<'_>, rest: &[Word<'_>]) -> Result<(Vec<Spanned<String>>, usize)> {
    let mut names = Vec::new();
    let mut after = f;
    let mut i = 0;
    loop {
        let t = match rest.get(i) {
            Some(t) if !is_word(t, "and") => t,
            _ => {
                let msg = format!("missing a location after `{}`", after.text);
                return Err(Error::new(after.span, msg).hint(FROM_USAGE));
            }
        };
        i += 1;
        let more = if t.quoted {
            names.push(spanned(t));
            false
        } else {
            comma_members(t, &mut names)?;
            t.text.ends_with(',')
        };
        match rest.get(i) {
            _ if more => after = t,
            // `lon1 , ams1` or `lon1 ,ams1`: the comma carries the list on.
            Some(c) if !c.quoted && c.text.starts_with(',') => after = t,
            Some(a) if is_word(a, "and") => {
                after = a;
                i += 1;
            }
            _ => return Ok((names, i)),
        }
    }
}

/// `between H-H` after `first` (`between` or `except`); returns the words used after `except`.
fn window(
    first: &Word<'_>,
    between: &Word<'_>,
    rest: &[Word<'_>],
    except: bool,
    stmt: &mut TestStmt,
) -> Result<usize> {
    let Some(range) = rest.first() else {
        return Err(
            Error::new(between.span, "missing the hours after `between`")
                .hint("write `between 9-17` (hours 0-23, both included)"),
        );
    };
    let (from, to) = hours(range)?;
    if stmt.window.is_some() {
        return Ok(0);
    }
    stmt.window = Some(Spanned {
        value: Window { from, to, except },
        span: Span::new(first.span.start, range.span.end),
    });
    Ok(2)
}

fn hours(t: &Word<'_>) -> Result<(u8, u8)> {
    let bad = || {
        Error::new(t.span, format!("`{}` is not a range of hours", t.text))
            .hint("write `between 9-17` (hours 0-23, both included)")
    };
    let (a, b) = t
        .text
        .split_once('-')
        .filter(|_| !t.quoted)
        .ok_or_else(bad)?;
    let mut out = [0u8; 2];
    for (slot, h) in out.iter_mut().zip([a, b]) {
        if h.is_empty() || !h.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        *slot = match h.parse::<u8>() {
            Ok(n) if n < 24 => n,
            _ => {
                return Err(Error::new(t.span, format!("hour {h} is out of range"))
                    .hint("hours are 0-23; `between 22-3` wraps past midnight"))
            }
        };
    }
    Ok((out[0], out[1]))
}
