//! The canonical printer: one statement per line, lower-case keywords, single spaces, one final
//! `.`. Words and clauses keep their order, so the output parses to the same statements.

use crate::ast::{
    FromClause, MacroBody, MacroDef, SourceFile, Statement, StatementKind, TestStmt, Token,
};

/// Prints a parsed file in canonical form (what `custodian fmt` writes).
pub fn print(file: &SourceFile) -> String {
    let mut out = String::new();
    for s in &file.statements {
        out.push_str(&statement(s));
        out.push('\n');
    }
    out
}

/// One statement as a canonical line, final `.` included.
fn statement(s: &Statement) -> String {
    let mut line = match &s.kind {
        StatementKind::Macro(m) => macro_def(m),
        StatementKind::Test(t) => test(t),
    };
    line.push('.');
    line
}

/// Text in quotes; double quotes when it holds a single quote (the language has no escapes).
fn quote(text: &str) -> String {
    if text.contains('\'') {
        format!("\"{text}\"")
    } else {
        format!("'{text}'")
    }
}

/// A macro member or URL: bare when it reads back as the same single word, else quoted.
fn member(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.contains([' ', '\t', ','])
        && !text.starts_with(['\'', '"'])
        && !text.eq_ignore_ascii_case("and");
    if plain {
        text.to_string()
    } else {
        quote(text)
    }
}

fn macro_def(m: &MacroDef) -> String {
    let name = &m.name.value;
    match &m.body {
        MacroBody::Fetched(url) => format!("{name} is fetched from {}", member(&url.value)),
        MacroBody::Members(ms) => {
            let verb = if ms.len() == 1 { "is" } else { "are" };
            let list: Vec<String> = ms.iter().map(|m| member(&m.value)).collect();
            format!("{name} {verb} {}", list.join(" and "))
        }
    }
}

fn token(t: &Token) -> String {
    if t.quoted {
        quote(&t.text)
    } else {
        t.text.clone()
    }
}

fn from_clause(clause: &FromClause) -> String {
    match clause {
        FromClause::Count(n) if n.value == "1" => "from 1 location".to_string(),
        FromClause::Count(n) => format!("from {} locations", n.value),
        FromClause::Names(ns) => {
            let list: Vec<String> = ns.iter().map(|n| member(&n.value)).collect();
            format!("from {}", list.join(" and "))
        }
    }
}

/// `from 3` followed by a `locations` word would read back as a count: quote the name.
fn quote_lone_number(items: &mut [(usize, String)], from_at: Option<usize>) {
    let Some(i) = items.iter().position(|(at, _)| Some(*at) == from_at) else {
        return;
    };
    let next_is_location = items.get(i + 1).is_some_and(|(_, text)| {
        let word = text.split(' ').next().unwrap_or_default();
        word.eq_ignore_ascii_case("location") || word.eq_ignore_ascii_case("locations")
    });
    let text = &mut items[i].1;
    if let Some(name) = text.strip_prefix("from ") {
        if next_is_location && !name.contains(' ') && !name.starts_with(['\'', '"']) {
            let quoted = format!("from {}", quote(name));
            *text = quoted;
        }
    }
}

/// A test line; arguments and clauses in source order so no new clause forms across a seam.
fn test(t: &TestStmt) -> String {
    let mut items: Vec<(usize, String)> = t.args.iter().map(|a| (a.span.start, token(a))).collect();
    if let Some(o) = &t.otherwise {
        items.push((o.span.start, format!("otherwise {}", quote(&o.value))));
    }
    if let Some(s) = &t.subject {
        items.push((s.span.start, format!("with subject {}", quote(&s.value))));
    }
    if let Some(w) = &t.window {
        let except = if w.value.except { "except " } else { "" };
        items.push((
            w.span.start,
            format!("{except}between {}-{}", w.value.from, w.value.to),
        ));
    }
    if let Some(f) = &t.from {
        items.push((f.span.start, from_clause(&f.value)));
    }
    items.sort_by_key(|(at, _)| *at);
    quote_lone_number(&mut items, t.from.as_ref().map(|f| f.span.start));
    let not = if t.inverted { "not " } else { "" };
    let mut line = format!("{} must {not}run {}", t.target.value, t.probe.value);
    for (_, text) in items {
        line.push(' ');
        line.push_str(&text);
    }
    line
}
