//! Presenting results: the table (failures first), JSON lines, the summary and the progress bar.

use custodian_core::{JobResult, Status};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub(crate) fn progress(total: usize, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} checks, {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// The result table: failures first (with reason and alert text), then unknown (could not
/// check), then skipped, then passed; a detail's control characters are escaped (results
/// may come from elsewhere than [`JobResult::new`], which escapes them already).
pub(crate) fn table(results: &[JobResult]) -> String {
    let mut rows: Vec<&JobResult> = results.iter().collect();
    rows.sort_by_key(|r| (rank(r.status), r.file.clone(), r.lineno, r.target.clone()));
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                label(r.status).to_string(),
                r.probe.clone(),
                r.target.clone(),
                custodian_core::outcome::escape_controls(&detail(r)),
            ]
        })
        .collect();
    let header = [
        "STATUS".to_string(),
        "TYPE".into(),
        "TARGET".into(),
        "DETAIL".into(),
    ];
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn rank(status: Status) -> u8 {
    match status {
        Status::Failed => 0,
        Status::Unknown => 1,
        Status::Partial => 2,
        Status::Skipped => 3,
        Status::Passed => 4,
    }
}

/// The status word of table and text lines.
pub(crate) fn label(status: Status) -> &'static str {
    match status {
        Status::Failed => "FAIL",
        Status::Unknown => "UNKNOWN",
        Status::Skipped => "SKIP",
        Status::Partial => "PARTIAL",
        Status::Passed => "ok",
    }
}

fn detail(r: &JobResult) -> String {
    let mut parts = Vec::new();
    if let Some(e) = &r.error {
        parts.push(e.clone());
    }
    if r.status == Status::Failed {
        if let Some(o) = &r.otherwise {
            parts.push(format!("otherwise '{o}'"));
        }
    }
    if r.status == Status::Passed && r.attempts > 1 {
        parts.push(format!("passed on attempt {}", r.attempts));
    }
    parts.push(format!("{}:{}", r.file, r.lineno));
    parts.join(" — ")
}

/// How many results ended in each status: all a summary and an exit status need, so a run
/// that streams its results need not keep them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    pub(crate) unknown: usize,
    pub(crate) skipped: usize,
}

impl Tally {
    pub(crate) fn add(&mut self, status: Status) {
        match status {
            Status::Passed => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::Unknown => self.unknown += 1,
            Status::Skipped => self.skipped += 1,
            // Only `serve` decides by quorum across locations; a run never sees it.
            Status::Partial => {}
        }
    }

    /// `N passed, M failed, U unknown, K skipped in X.Ys`.
    pub(crate) fn summary(&self, elapsed: Duration) -> String {
        format!(
            "{} passed, {} failed, {} unknown, {} skipped in {:.1}s",
            self.passed,
            self.failed,
            self.unknown,
            self.skipped,
            elapsed.as_secs_f64()
        )
    }
}

/// Writes a result as one `run --json` line, serialised straight into `out`.
pub(crate) fn write_json_line(out: &mut impl std::io::Write, r: &JobResult) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, r)?;
    out.write_all(b"\n")
}

/// The `check --json` object of a job, secrets masked.
pub(crate) fn job_json(job: &custodian_core::Job) -> serde_json::Value {
    serde_json::json!({
        "id": job.id(),
        "type": job.probe,
        "target": job.display_target(),
        "port": job.port,
        "inverted": job.inverted,
        "otherwise": job.otherwise,
        "subject": job.subject,
        "window": job.window,
        "family": job.family,
        "timeout": job.timeout,
        "retries": job.retries,
        "from": job.from,
        "quorum": job.quorum,
        "options": job.masked_options(),
        "line": job.line,
        "file": job.file,
        "lineno": job.lineno,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_core::Job;

    fn result(target: &str, status: Status, error: Option<&str>) -> JobResult {
        let mut job = Job::new("ssh", target, Some(22));
        job.otherwise = Some("SSH down".into());
        job.file = "t.cfg".into();
        job.lineno = 3;
        JobResult::new(&job, status, error.map(str::to_string), 12, 1)
    }

    #[test]
    fn table_puts_failures_first_with_reason_and_alert_text() {
        let rs = [
            result("a.example", Status::Passed, None),
            result("b.example", Status::Failed, Some("connection refused")),
        ];
        let t = table(&rs);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("STATUS"));
        assert!(
            lines[1].starts_with("FAIL")
                && lines[1].contains("connection refused — otherwise 'SSH down' — t.cfg:3"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("ok") && !lines[2].contains("otherwise"),
            "{t}"
        );
        let mut raw = result("c.example", Status::Failed, None);
        raw.error = Some("220 \u{1b}]0;pwned\u{7}\nhi".into());
        let t = table(&[raw]);
        assert!(t.contains("220 \\u{1b}]0;pwned\\u{7}\\nhi — "), "{t}");
        assert_eq!(t.lines().count(), 2, "{t}");
    }

    #[test]
    fn summary_counts_each_status() {
        let rs = [
            result("a", Status::Passed, None),
            result("b", Status::Failed, Some("x")),
            result("c", Status::Skipped, Some("w")),
            result("d", Status::Unknown, Some("could not check: no socket")),
        ];
        let mut tally = Tally::default();
        for r in &rs {
            tally.add(r.status);
        }
        assert_eq!(
            tally.summary(Duration::from_millis(1300)),
            "1 passed, 1 failed, 1 unknown, 1 skipped in 1.3s"
        );
    }
}
