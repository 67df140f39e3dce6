//! Macro expansion: macros are defined in file order across all files, and the first word of a
//! test expands to one test per member. `fetched from` bodies come through the caller's fetcher.
//! A target (or member) that is a CIDR block or range expands to one test per address.
//! [`expand_at_most`] stops at a total number of tests, so a list of large blocks is an error
//! naming the line that crossed it, not a memory exhaustion; [`expand_each`] hands over one
//! statement's tests at a time. Macro names in a `from` clause are replaced by their members
//! too (see [`Location`]).

use crate::ast::{
    FromClause, MacroBody, MacroDef, SourceFile, Span, Spanned, Statement, StatementKind, TestStmt,
};
use crate::blocks::{self, LARGE};
use crate::diagnostic::{Diagnostic, Severity};
use crate::parser::is_macro_name;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// One test line applied to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded<'a> {
    pub file: &'a SourceFile,
    pub stmt: &'a Statement,
    pub test: &'a TestStmt,
    /// The macro member, or the target as written: borrowed from the file where it is written
    /// there (a block's addresses and fetched members are owned).
    pub target: Cow<'a, str>,
    /// The names of a `from lon1 and EUROPE` clause, macros replaced by their members, in
    /// order; `None` without such a clause. Shared by every target of the statement.
    pub locations: Option<Arc<[Location]>>,
}

/// One location a `from` clause names, after macro expansion. The planner checks the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub name: String,
    /// The word of the clause it comes from (the macro's name for a member).
    pub span: Span,
    /// The macro it is a member of.
    pub via: Option<String>,
}

/// Fetches a URL's body as lines; Err is a message for the user.
pub type Fetch<'f> = dyn FnMut(&str) -> Result<Vec<String>, String> + 'f;

/// Expands every test of `files`; diagnostics are macro errors (redefinition, failed fetch).
pub fn expand<'a>(
    files: &'a [SourceFile],
    fetch: &mut Fetch<'_>,
) -> (Vec<Expanded<'a>>, Vec<Diagnostic>) {
    expand_at_most(files, fetch, usize::MAX)
}

/// As [`expand`], but a test that would take the total past `max` is an error at its line,
/// and expansion stops there: no memory is spent on the tests beyond the cap.
pub fn expand_at_most<'a>(
    files: &'a [SourceFile],
    fetch: &mut Fetch<'_>,
    max: usize,
) -> (Vec<Expanded<'a>>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let diags = expand_each(files, fetch, max, |group| out.extend_from_slice(group));
    // It lives beside the jobs planned from it: without the slack of its last doubling.
    out.shrink_to_fit();
    (out, diags)
}

/// As [`expand_at_most`], but hands each statement's tests to `each` as soon as they are
/// expanded (never an empty group) instead of keeping them all: a caller that plans one
/// statement at a time holds one statement's tests at once.
pub fn expand_each<'a>(
    files: &'a [SourceFile],
    fetch: &mut Fetch<'_>,
    max: usize,
    mut each: impl FnMut(&[Expanded<'a>]),
) -> Vec<Diagnostic> {
    let mut macros: HashMap<&'a str, Vec<Cow<'a, str>>> = HashMap::new();
    let mut group = Vec::new();
    let mut total: u64 = 0;
    let mut diags = Vec::new();
    for file in files {
        for stmt in &file.statements {
            match &stmt.kind {
                StatementKind::Macro(m) => define(file, m, &mut macros, fetch, &mut diags),
                StatementKind::Test(test) => {
                    let locations = match locations(file, test, &macros) {
                        Ok(l) => l,
                        Err(d) => {
                            diags.push(d);
                            continue;
                        }
                    };
                    let make = |target: Cow<'a, str>| Expanded {
                        file,
                        stmt,
                        test,
                        target,
                        locations: locations.clone(),
                    };
                    let literal = [Cow::Borrowed(test.target.value.as_str())];
                    let targets = macros
                        .get(test.target.value.as_str())
                        .map_or(&literal[..], Vec::as_slice);
                    group.clear();
                    for target in targets {
                        let block = blocks::target_block(target);
                        let n = block.as_ref().map_or(1, |b| b.len());
                        if n <= LARGE && total + n > max as u64 {
                            diags.push(too_many(file, test, max));
                            // The targets before the cap are kept, as they always were.
                            if !group.is_empty() {
                                each(&group);
                            }
                            return diags;
                        }
                        match block {
                            Some(b) if b.len() > LARGE => {
                                diags.push(too_large(file, test, target, b.len()))
                            }
                            Some(b) => {
                                total += n;
                                group.extend(
                                    b.addresses().map(|ip| make(Cow::Owned(ip.to_string()))),
                                )
                            }
                            None => {
                                total += 1;
                                group.push(make(target.clone()))
                            }
                        }
                    }
                    if !group.is_empty() {
                        each(&group);
                    }
                }
            }
        }
    }
    diags
}

/// The locations of a `from` name list. A word shaped like a macro name (upper case) must be a
/// macro defined above: location names are lower case, so it cannot be meant literally.
fn locations(
    file: &SourceFile,
    test: &TestStmt,
    macros: &HashMap<&str, Vec<Cow<'_, str>>>,
) -> Result<Option<Arc<[Location]>>, Diagnostic> {
    let Some(FromClause::Names(words)) = test.from.as_ref().map(|f| &f.value) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for w in words {
        let is_macro = is_macro_name(&w.value) && w.value.bytes().any(|b| b.is_ascii_uppercase());
        match macros.get(w.value.as_str()) {
            Some(members) => out.extend(members.iter().map(|m| Location {
                name: m.to_string(),
                span: w.span,
                via: Some(w.value.clone()),
            })),
            None if is_macro => {
                let msg = format!("unknown macro `{}` in `from`", w.value);
                let d = Diagnostic::error(&file.name, &file.source, w.span, msg);
                return Err(d.with_hint(format!(
                    "define it above this line (`{} are lon1 and ams1.`); location names are lower case",
                    w.value
                )));
            }
            None => out.push(Location {
                name: w.value.clone(),
                span: w.span,
                via: None,
            }),
        }
    }
    Ok(Some(out.into()))
}

fn too_many(file: &SourceFile, test: &TestStmt, max: usize) -> Diagnostic {
    let msg = format!("this test takes the files past {max} jobs in all (the `max_jobs` setting)");
    let d = Diagnostic::error(&file.name, &file.source, test.target.span, msg);
    d.with_hint("test fewer addresses, or raise `max_jobs` in the settings")
}

fn too_large(file: &SourceFile, test: &TestStmt, target: &str, n: u64) -> Diagnostic {
    let msg = format!("{target} expands to {n} addresses, more than {LARGE} (a /16)");
    let d = Diagnostic::error(&file.name, &file.source, test.target.span, msg);
    d.with_hint("split it into /16 blocks, or scan it with `custodian scan --allow-large`")
}

fn define<'a>(
    file: &'a SourceFile,
    m: &'a MacroDef,
    macros: &mut HashMap<&'a str, Vec<Cow<'a, str>>>,
    fetch: &mut Fetch<'_>,
    diags: &mut Vec<Diagnostic>,
) {
    let name = m.name.value.as_str();
    if macros.contains_key(name) {
        let msg = format!("The macro {name} is already defined");
        let d = Diagnostic::error(&file.name, &file.source, m.name.span, msg);
        diags.push(d.with_hint("macros are shared by all files; pick another name"));
        return;
    }
    let members = match &m.body {
        MacroBody::Members(ms) => ms.iter().map(|s| Cow::Borrowed(s.value.as_str())).collect(),
        MacroBody::Fetched(url) => fetched(file, name, url, fetch, diags)
            .into_iter()
            .map(Cow::Owned)
            .collect(),
    };
    macros.insert(name, members);
}

fn fetched(
    file: &SourceFile,
    name: &str,
    url: &Spanned<String>,
    fetch: &mut Fetch<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let full = if url.value.contains("://") {
        url.value.clone()
    } else {
        format!("http://{}", url.value)
    };
    let diag = |msg: String| Diagnostic::error(&file.name, &file.source, url.span, msg);
    match fetch(&full) {
        Ok(lines) => {
            let members: Vec<String> = lines
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            if members.is_empty() {
                let mut d = diag(format!(
                    "the macro {name} fetched from {full} has no members"
                ));
                d.severity = Severity::Warning;
                diags.push(d);
            }
            members
        }
        Err(e) => {
            diags.push(diag(format!(
                "cannot fetch the macro {name} from {full}: {e}"
            )));
            Vec::new()
        }
    }
}
