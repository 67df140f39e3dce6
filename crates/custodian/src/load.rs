//! Reading test files into jobs: parse every file, fetch `fetched from` macros, expand, plan.
//! All of it happens before anything runs, and any error means nothing runs.

use anyhow::Context;
use custodian_core::dsl::{self, ast::MacroBody, ast::StatementKind, Diagnostic, SourceFile};
use custodian_core::spec::{secret_ranges, MASK};
use custodian_core::{mask_url, plan, Job};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Largest macro list body we accept from a `fetched from` URL.
const MAX_FETCH_BYTES: usize = 16 * 1024 * 1024;

/// The jobs of all files, and every diagnostic (errors and warnings) in file order.
pub(crate) struct Loaded {
    pub(crate) jobs: Vec<Job>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub(crate) fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
}

/// Parses, expands and plans `paths`. An unreadable file is an error before anything else;
/// more than `max_jobs` jobs in all is an error at the test that crosses it.
pub(crate) async fn load(
    paths: &[PathBuf],
    strict: bool,
    fetch_timeout: Duration,
    max_jobs: usize,
) -> anyhow::Result<Loaded> {
    let mut jobs = Vec::new();
    let diagnostics = load_each(paths, strict, fetch_timeout, max_jobs, &mut |job| {
        jobs.push(job)
    })
    .await?;
    Ok(Loaded { jobs, diagnostics })
}

/// As [`load`], but gives each job to `sink` as its statement is planned, never holding them
/// all; returns the diagnostics (a job of a file with errors may already have been given).
pub(crate) async fn load_each(
    paths: &[PathBuf],
    strict: bool,
    fetch_timeout: Duration,
    max_jobs: usize,
    sink: &mut dyn FnMut(Job),
) -> anyhow::Result<Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read test file {name}"))?;
        let (file, diags) = dsl::parse(&name, &text);
        diagnostics.extend(diags);
        files.push(file);
    }
    let fetched = prefetch(&files, fetch_timeout).await;
    let mut fetch = |url: &str| {
        fetched
            .get(url)
            .or_else(|| fetched.get(&with_scheme(url)))
            .cloned()
            .unwrap_or_else(|| Err(format!("{} was not fetched", mask_url(url))))
    };
    let specs = custodian_probes::specs();
    let mut planner = plan::Planner::new(&specs, strict);
    let diags = dsl::expand_each(&files, &mut fetch, max_jobs, |group| {
        planner.statement(group, sink)
    });
    // Expansion diagnostics before planning ones, as when the passes ran one after the other
    // (the sort below is stable, and both may point at one place).
    diagnostics.extend(diags);
    diagnostics.extend(planner.into_diagnostics());
    // A diagnostic quotes its source line, which may hold a password, a credential header or
    // a URL's `user:password@`: none of them reaches the terminal.
    for d in &mut diagnostics {
        d.mask_secrets(MASK, secret_ranges);
    }
    // Parse and plan diagnostics arrive in separate passes; readers want them in file order.
    let order: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    diagnostics.sort_by_key(|d| (order.iter().position(|f| *f == d.file), d.line, d.col));
    Ok(diagnostics)
}

/// Fetches every `fetched from` URL in the files, concurrently, before expansion.
async fn prefetch(
    files: &[SourceFile],
    limit: Duration,
) -> HashMap<String, Result<Vec<String>, String>> {
    let urls: Vec<String> = files
        .iter()
        .flat_map(|f| &f.statements)
        .filter_map(|s| match &s.kind {
            StatementKind::Macro(m) => match &m.body {
                MacroBody::Fetched(url) => Some(with_scheme(&url.value)),
                MacroBody::Members(_) => None,
            },
            StatementKind::Test(_) => None,
        })
        .collect();
    let results = futures::future::join_all(urls.iter().map(|u| fetch_list(u, limit))).await;
    urls.into_iter().zip(results).collect()
}

/// `http://` is assumed when the URL names no scheme, as in the original.
fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// GETs `url` and returns its non-empty lines; a non-200 status or network error is an error.
/// A password written `${env:NAME}` (or `${file:%2Fpath}`) is read right before the request.
/// Errors show the URL as written with its password masked (reqwest's own text would repeat
/// it whole), and never the value read.
async fn fetch_list(url: &str, limit: Duration) -> Result<Vec<String>, String> {
    let shown = mask_url(url);
    let (resolved, read) =
        custodian_probes::resolve_url(url).map_err(|e| format!("cannot fetch {shown}: {e}"))?;
    let scrub = |text: String| match &read {
        Some(pw) if !pw.is_empty() => text.replace(pw.as_str(), MASK),
        _ => text,
    };
    fetch_resolved(&resolved, &shown, limit)
        .await
        .map_err(scrub)
}

/// [`fetch_list`] of the URL with its password read; `shown` is how errors name it.
async fn fetch_resolved(url: &str, shown: &str, limit: Duration) -> Result<Vec<String>, String> {
    let client = reqwest::Client::builder()
        .timeout(limit)
        .build()
        .map_err(|e| format!("cannot fetch {shown}: {}", e.without_url()))?;
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch {shown}: {}", e.without_url()))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("fetching {shown} gave HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading {shown}: {}", e.without_url()))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_FETCH_BYTES {
            return Err(format!("{shown} is larger than {MAX_FETCH_BYTES} bytes"));
        }
    }
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}
