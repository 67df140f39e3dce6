//! Syntax tree of a test file: statements with byte spans, no resolved probe types.

use serde::{Deserialize, Serialize};

/// A byte range into one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// One word or quoted string after the probe type, kept for the planner to match option phrases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The text without quotes.
    pub text: String,
    /// True when the token was written in quotes (so it is a value, never a keyword).
    pub quoted: bool,
    pub span: Span,
}

/// `between H-H` (active inside, both ends included, wrapping past midnight) or `except between H-H`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: u8,
    pub to: u8,
    pub except: bool,
}

impl Window {
    /// Whether a line with this window is active at `hour` (0–23, local time).
    pub fn active(&self, hour: u8) -> bool {
        let inside = if self.from <= self.to {
            (self.from..=self.to).contains(&hour)
        } else {
            hour >= self.from || hour <= self.to
        };
        inside != self.except
    }
}

/// Where a macro's members come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacroBody {
    /// `NAME are a and b` or `NAME are a, b`.
    Members(Vec<Spanned<String>>),
    /// `NAME is fetched from URL`: fetched at expansion time.
    Fetched(Spanned<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroDef {
    pub name: Spanned<String>,
    pub body: MacroBody,
}

/// Where a check runs: `from N locations` or `from lon1 and ams1`. The planner checks the
/// number and the names; macro names are replaced by their members in [`crate::Expanded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromClause {
    /// `from N location(s)`: the number as written (digits only).
    Count(Spanned<String>),
    /// Location names and macro names as written, in order.
    Names(Vec<Spanned<String>>),
}

/// `TARGET must [not] run TYPE ...` or `TARGET must ping ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestStmt {
    pub target: Spanned<String>,
    pub inverted: bool,
    /// The type word as written (`ping` for `must ping`); resolved by the planner.
    pub probe: Spanned<String>,
    /// Everything after the type that is not one of the universal clauses below.
    pub args: Vec<Token>,
    pub otherwise: Option<Spanned<String>>,
    pub subject: Option<Spanned<String>>,
    pub window: Option<Spanned<Window>>,
    /// `from ...`, spanning the whole clause.
    pub from: Option<Spanned<FromClause>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    Macro(MacroDef),
    Test(TestStmt),
}

/// One logical line (after joining `\` continuations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub kind: StatementKind,
    /// 1-based line number of the first physical line.
    pub lineno: u32,
    /// The logical line as written (trimmed), for messages and `line` fields.
    pub text: String,
    pub span: Span,
}

/// A parsed file: its name, its source (for rendering diagnostics) and its statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub source: String,
    pub statements: Vec<Statement>,
}

impl<T: Clone> Spanned<T> {
    fn unspanned(&self) -> Self {
        Spanned {
            value: self.value.clone(),
            span: Span::default(),
        }
    }
}

impl StatementKind {
    /// A copy with every span zeroed, to compare statements parsed from different text (the
    /// printer's round trip).
    pub fn without_spans(&self) -> StatementKind {
        match self {
            StatementKind::Macro(m) => StatementKind::Macro(MacroDef {
                name: m.name.unspanned(),
                body: match &m.body {
                    MacroBody::Members(ms) => {
                        MacroBody::Members(ms.iter().map(Spanned::unspanned).collect())
                    }
                    MacroBody::Fetched(url) => MacroBody::Fetched(url.unspanned()),
                },
            }),
            StatementKind::Test(t) => StatementKind::Test(TestStmt {
                target: t.target.unspanned(),
                inverted: t.inverted,
                probe: t.probe.unspanned(),
                args: t
                    .args
                    .iter()
                    .map(|a| Token {
                        span: Span::default(),
                        ..a.clone()
                    })
                    .collect(),
                otherwise: t.otherwise.as_ref().map(Spanned::unspanned),
                subject: t.subject.as_ref().map(Spanned::unspanned),
                window: t.window.as_ref().map(Spanned::unspanned),
                from: t.from.as_ref().map(|f| Spanned {
                    value: match &f.value {
                        FromClause::Count(n) => FromClause::Count(n.unspanned()),
                        FromClause::Names(ns) => {
                            FromClause::Names(ns.iter().map(Spanned::unspanned).collect())
                        }
                    },
                    span: Span::default(),
                }),
            }),
        }
    }
}
