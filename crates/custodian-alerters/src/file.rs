//! `file`: appends one line per notice to a file, in the original's text format or as JSON
//! lines. Settings: `file_target = PATH`, or `[alerters.file]` with `path` and
//! `format = "text" | "json"`.
//!
//! Text lines: `RAISE: <line> - <reason>`, `STILL FAILING: <line> - <reason> (for 5m 0s)`,
//! `FLAPPING: <line> - <reason>`, `CLEAR: <line> (failed for 5m 0s)`; `<line>` is the test
//! line with secrets masked. JSON lines follow [`crate::event_json`].

use crate::{event_json, human_duration, Alerter, Common, Error};
use custodian_core::state::{AlertEvent, EventKind};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file appended to (created if missing).
    pub path: PathBuf,
    #[serde(default)]
    pub format: Format,
}

impl FileConfig {
    pub fn from_target(target: &str) -> Result<Self, Error> {
        Ok(FileConfig {
            path: PathBuf::from(target),
            format: Format::Text,
        })
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.path.as_os_str().is_empty() {
            return Err(Error::Config("path is empty".into()));
        }
        Ok(())
    }
}

pub struct FileAlerter {
    config: FileConfig,
    source: String,
}

impl FileAlerter {
    pub fn new(config: FileConfig, common: &Common) -> Result<Self, Error> {
        Ok(FileAlerter {
            config,
            source: common.source.clone(),
        })
    }
}

/// The line written for `event`, without its newline.
pub fn render(event: &AlertEvent, format: Format, source: &str) -> String {
    if format == Format::Json {
        return event_json(event, source).to_string();
    }
    let r = &event.result;
    let reason = r.error.as_deref().unwrap_or("failed");
    let took = human_duration(event.failing_for().unwrap_or(0));
    let text = match event.kind {
        EventKind::Raise | EventKind::Flapping | EventKind::CannotCheck => format!("{}: {} - {reason}", event.kind.word(), r.line),
        EventKind::StillFailing => format!("STILL FAILING: {} - {reason} (for {took})", r.line),
        EventKind::Clear => format!("CLEAR: {} (failed for {took})", r.line),
        EventKind::Result => format!("RESULT: {} ({} ms)", r.line, r.duration_ms),
    };
    // One event, one line, whatever the reason text holds.
    text.replace(['\r', '\n'], " ")
}

impl Alerter for FileAlerter {
    fn name(&self) -> &'static str {
        "file"
    }

    fn deliver<'a>(&'a self, event: &'a AlertEvent) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut line = render(event, self.config.format, &self.source);
            line.push('\n');
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.config.path)
                .await?;
            // One write of the whole line: O_APPEND keeps concurrent writers' lines whole.
            f.write_all(line.as_bytes()).await?;
            f.flush().await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{event, SECRET};

    #[test]
    fn text_lines_follow_the_original() {
        let line = "http://bob:********@127.0.0.1:8080/ must run http otherwise 'web down'.";
        let raise = render(&event(EventKind::Raise, 'F'), Format::Text, "s");
        assert_eq!(raise, format!("RAISE: {line} - HTTP 500 for ********"));
        let clear = render(&event(EventKind::Clear, 'P'), Format::Text, "s");
        assert_eq!(clear, format!("CLEAR: {line} (failed for 5m 0s)"));
        let still = render(&event(EventKind::StillFailing, 'F'), Format::Text, "s");
        assert!(still.starts_with("STILL FAILING: ") && still.ends_with("(for 5m 0s)"), "{still}");
    }

    #[test]
    fn json_lines_carry_the_schema_and_no_secret() {
        let text = render(&event(EventKind::Raise, 'F'), Format::Json, "box1");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!((v["event"].as_str(), v["source"].as_str()), (Some("raise"), Some("box1")));
        assert_eq!((v["failing_for"].as_u64(), v["lineno"].as_u64()), (Some(300), Some(7)));
        assert!(!text.contains(SECRET));
    }

    #[tokio::test]
    async fn deliver_appends_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("alerts.log");
        let a = FileAlerter::new(FileConfig::from_target(path.to_str().expect("utf8")).expect("cfg"), &Common { source: "s".into() }).expect("alerter");
        a.deliver(&event(EventKind::Raise, 'F')).await.expect("raise");
        a.deliver(&event(EventKind::Clear, 'P')).await.expect("clear");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("RAISE: ") && lines[1].starts_with("CLEAR: "));
    }
}
