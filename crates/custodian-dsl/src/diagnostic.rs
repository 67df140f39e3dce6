//! Diagnostics with positions (`file:line:col`), the source line, a caret and a hint.

use crate::ast::Span;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem found in a test file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
    /// Width of the caret underline, in characters (at least 1).
    pub width: u32,
    pub message: String,
    /// The whole physical line the span starts on.
    pub source_line: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// Locates `span` in `source` and builds a diagnostic for it.
    pub fn new(
        severity: Severity,
        file: &str,
        source: &str,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind(['\n', '\r']).map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find(['\n', '\r'])
            .map_or(source.len(), |i| start + i);
        let source_line = source[line_start..line_end].to_string();
        let line = line_breaks(&source[..line_start]) + 1;
        let col = source[line_start..start].chars().count() as u32 + 1;
        let end = span.end.clamp(start, line_end);
        let width = source[start..end].chars().count().max(1) as u32;
        Diagnostic {
            severity,
            file: file.to_string(),
            line,
            col,
            width,
            message: message.into(),
            source_line,
            hint: None,
        }
    }

    pub fn error(file: &str, source: &str, span: Span, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, file, source, span, message)
    }

    pub fn warning(file: &str, source: &str, span: Span, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, file, source, span, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col: error: message`, the source line, a caret line and an optional hint.
    pub fn render(&self) -> String {
        self.to_string()
    }
}

/// Line breaks in `text`: LF, CR LF and a lone CR each count once.
fn line_breaks(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let lone_cr = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
        .count();
    (bytes.iter().filter(|&&b| b == b'\n').count() + lone_cr) as u32
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(
            f,
            "{}:{}:{}: {kind}: {}",
            self.file, self.line, self.col, self.message
        )?;
        writeln!(f, "    {}", self.source_line)?;
        let pad: String = self
            .source_line
            .chars()
            .take(self.col as usize - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "    {pad}{}", "^".repeat(self.width as usize))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}
