//! Fixture snapshots (ruff style): every `fixtures/ok/*.cfg` parses and expands cleanly and its
//! AST dump, canonical print and expansion are snapshotted; every `fixtures/err/*.cfg` yields at
//! least one error and its rendered diagnostics are snapshotted.

use custodian_dsl::ast::{FromClause, MacroBody, Statement, StatementKind, Token};
use custodian_dsl::{expand, parse, print, SourceFile, Span};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A stand-in for HTTP: `http://lists/*` answers with two hosts, anything else fails.
fn fetch(url: &str) -> Result<Vec<String>, String> {
    match url.strip_prefix("http://lists/") {
        Some(_) => Ok(vec!["web1".into(), "".into(), "  web2  ".into()]),
        None => Err("connection refused".into()),
    }
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
        .collect();
    files.sort();
    assert!(files.len() > 5, "fixtures missing in {kind}");
    files
}

fn load(path: &Path) -> (String, String) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    (name, std::fs::read_to_string(path).unwrap())
}

fn at(file: &SourceFile, span: Span) -> String {
    format!("{:?}", &file.source[span.start..span.end])
}

fn token(file: &SourceFile, t: &Token) -> String {
    let q = if t.quoted { " quoted" } else { "" };
    format!("{:?}{q} @{}", t.text, at(file, t.span))
}

fn dump(file: &SourceFile, s: &Statement, out: &mut String) {
    writeln!(out, "line {}: {:?}", s.lineno, s.text).unwrap();
    match &s.kind {
        StatementKind::Macro(m) => {
            writeln!(out, "  macro {:?} @{}", m.name.value, at(file, m.name.span)).unwrap();
            match &m.body {
                MacroBody::Members(ms) => {
                    for m in ms {
                        writeln!(out, "  member {:?} @{}", m.value, at(file, m.span)).unwrap();
                    }
                }
                MacroBody::Fetched(u) => {
                    writeln!(out, "  fetched from {:?} @{}", u.value, at(file, u.span)).unwrap()
                }
            }
        }
        StatementKind::Test(t) => {
            writeln!(
                out,
                "  target {:?} @{}",
                t.target.value,
                at(file, t.target.span)
            )
            .unwrap();
            writeln!(
                out,
                "  probe {:?} @{} inverted={}",
                t.probe.value,
                at(file, t.probe.span),
                t.inverted
            )
            .unwrap();
            for a in &t.args {
                writeln!(out, "  arg {}", token(file, a)).unwrap();
            }
            if let Some(o) = &t.otherwise {
                writeln!(out, "  otherwise {:?} @{}", o.value, at(file, o.span)).unwrap();
            }
            if let Some(s) = &t.subject {
                writeln!(out, "  subject {:?} @{}", s.value, at(file, s.span)).unwrap();
            }
            if let Some(w) = &t.window {
                writeln!(out, "  window {:?} @{}", w.value, at(file, w.span)).unwrap();
            }
            match t.from.as_ref().map(|f| (&f.value, f.span)) {
                Some((FromClause::Count(n), span)) => {
                    writeln!(out, "  from {:?} locations @{}", n.value, at(file, span)).unwrap()
                }
                Some((FromClause::Names(ns), span)) => {
                    writeln!(out, "  from @{}", at(file, span)).unwrap();
                    for n in ns {
                        writeln!(out, "    location {:?} @{}", n.value, at(file, n.span)).unwrap();
                    }
                }
                None => {}
            }
        }
    }
}

fn shapes(file: &SourceFile) -> Vec<StatementKind> {
    file.statements
        .iter()
        .map(|s| s.kind.without_spans())
        .collect()
}

#[test]
fn ok_fixtures() {
    for path in fixtures("ok") {
        let (name, src) = load(&path);
        let (file, diags) = parse(&name, &src);
        assert!(diags.is_empty(), "{name}: {diags:?}");
        assert!(!file.statements.is_empty(), "{name}: no statements");
        let files = [file];
        let (jobs, diags) = expand(&files, &mut fetch);
        assert!(diags.iter().all(|d| !d.is_error()), "{name}: {diags:?}");
        let file = &files[0];
        let mut out = String::new();
        for s in &file.statements {
            dump(file, s, &mut out);
        }
        let printed = print(file);
        let (again, diags) = parse("printed", &printed);
        assert!(
            diags.is_empty(),
            "{name}: printed form does not parse: {diags:?}"
        );
        assert_eq!(shapes(file), shapes(&again), "{name}: round trip");
        assert_eq!(print(&again), printed, "{name}: print is not idempotent");
        writeln!(out, "--- print\n{printed}--- expand").unwrap();
        for j in &jobs {
            write!(out, "{} ← line {}", j.target, j.stmt.lineno).unwrap();
            if let Some(ls) = &j.locations {
                let names: Vec<String> = ls
                    .iter()
                    .map(|l| match &l.via {
                        Some(m) => format!("{} (via {m})", l.name),
                        None => l.name.clone(),
                    })
                    .collect();
                write!(out, " from {}", names.join(", ")).unwrap();
            }
            writeln!(out).unwrap();
        }
        insta::assert_snapshot!(format!("ok__{}", name.trim_end_matches(".cfg")), out);
    }
}

#[test]
fn err_fixtures() {
    for path in fixtures("err") {
        let (name, src) = load(&path);
        let (file, mut diags) = parse(&name, &src);
        let files = [file];
        diags.extend(expand(&files, &mut fetch).1);
        assert!(diags.iter().any(|d| d.is_error()), "{name}: no error");
        let out: Vec<String> = diags.iter().map(|d| d.render()).collect();
        insta::assert_snapshot!(
            format!("err__{}", name.trim_end_matches(".cfg")),
            out.join("\n\n")
        );
    }
}

/// Like ruff's guard: a snapshot without a fixture is stale.
#[test]
fn no_stale_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix("fixtures__")
            .and_then(|n| n.strip_suffix(".snap"))
        else {
            continue;
        };
        let (kind, stem) = rest.split_once("__").unwrap();
        let cfg = dir
            .join("../fixtures")
            .join(kind)
            .join(format!("{stem}.cfg"));
        assert!(cfg.exists(), "stale snapshot {name}");
    }
}
