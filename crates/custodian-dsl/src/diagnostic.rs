//! Diagnostics with positions (`file:line:col`), the source line, a caret and a hint.

use crate::ast::Span;
use std::fmt;
use std::ops::Range;

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

    /// Hides secrets written in the source line, and wherever the message or hint repeats
    /// them, behind `mask`; the caret keeps pointing at the same words. `secret(key, value)`
    /// gives the secret byte ranges of a word or quoted string written after the word `key`
    /// (`password 'x'`: all of `x`); a URL's `user:password@` password is always hidden.
    /// The line is read as the lexer reads it, so a diagnostic about any part of a line
    /// (even one that failed to parse) never shows its secrets.
    pub fn mask_secrets(&mut self, mask: &str, secret: impl Fn(&str, &str) -> Vec<Range<usize>>) {
        let mut hidden: Vec<Range<usize>> = Vec::new();
        let mut key = String::new();
        for (start, word) in words(&self.source_line) {
            let at = |r: Range<usize>| start + r.start..start + r.end;
            hidden.extend(secret(&key, word).into_iter().map(at));
            hidden.extend(url_password(word).map(at));
            key = word.to_ascii_lowercase();
        }
        hidden.retain(|r| r.start < r.end && r.end <= self.source_line.len());
        hidden.sort_by_key(|r| r.start);
        let hidden = merged(hidden);
        if hidden.is_empty() {
            return;
        }
        let line = &self.source_line;
        let byte_at = |chars: u32| {
            line.char_indices()
                .nth(chars as usize)
                .map_or(line.len(), |(i, _)| i)
        };
        let caret = (byte_at(self.col - 1), byte_at(self.col - 1 + self.width));
        let mut secrets: Vec<String> = hidden.iter().map(|r| line[r.clone()].to_string()).collect();
        let mut masked = String::with_capacity(line.len());
        let mut at = 0;
        for r in &hidden {
            masked.push_str(&line[at..r.start]);
            masked.push_str(mask);
            at = r.end;
        }
        masked.push_str(&line[at..]);
        let start = shifted(caret.0, &hidden, mask.len(), false);
        let end = shifted(caret.1, &hidden, mask.len(), true).max(start);
        self.col = masked[..start].chars().count() as u32 + 1;
        self.width = masked[start..end].chars().count().max(1) as u32;
        self.source_line = masked;
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in &secrets {
            self.message = self.message.replace(s.as_str(), mask);
            if let Some(h) = &mut self.hint {
                *h = h.replace(s.as_str(), mask);
            }
        }
    }

    /// `file:line:col: error: message`, the source line, a caret line and an optional hint.
    pub fn render(&self) -> String {
        self.to_string()
    }
}

/// The words and quoted strings of a line as the lexer splits them, each with its byte offset:
/// quotes excluded (an unterminated one runs to the end), a bare word's final `.` dropped when
/// it ends the line.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(skip) = line[i..].find(|c| c != ' ' && c != '\t') {
        i += skip;
        let rest = &line[i..];
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"');
        if let Some(q) = quote {
            let len = rest[1..].find(q).unwrap_or(rest.len() - 1);
            out.push((i + 1, &rest[1..1 + len]));
            i = (i + 2 + len).min(line.len());
        } else {
            let len = rest.find([' ', '\t']).unwrap_or(rest.len());
            let word = &rest[..len];
            let last = line[i + len..].trim().is_empty();
            out.push((
                i,
                if last {
                    word.strip_suffix('.').unwrap_or(word)
                } else {
                    word
                },
            ));
            i += len;
        }
    }
    out
}

/// The byte range of the password in a `scheme://user:password@host…` word.
fn url_password(word: &str) -> Option<Range<usize>> {
    let scheme_end = word.find("://")? + 3;
    let rest = &word[scheme_end..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some(scheme_end + colon + 1..scheme_end + at)
}

/// Sorted ranges with overlapping or touching ones joined.
fn merged(ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Where byte `at` of a line lands once each of `hidden` is replaced by a mask of `mask_len`
/// bytes; inside a hidden range it moves to the mask's start (or its end, for an `end`).
fn shifted(at: usize, hidden: &[Range<usize>], mask_len: usize, end: bool) -> usize {
    let mut out = at;
    for r in hidden {
        if at >= r.end {
            out = out + mask_len - r.len();
        } else if at > r.start {
            return out - (at - r.start) + if end { mask_len } else { 0 };
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn password(key: &str, value: &str) -> Vec<Range<usize>> {
        if key == "password" {
            std::iter::once(0..value.len()).collect()
        } else {
            Vec::new()
        }
    }

    /// The diagnostic for the first `at` in `source`, with secrets masked.
    fn masked(source: &str, at: &str, message: &str) -> String {
        let start = source.find(at).expect("in source");
        let span = Span::new(start, start + at.len());
        let mut d = Diagnostic::error("t.cfg", source, span, message);
        d.mask_secrets("***", password);
        d.to_string()
    }

    #[test]
    fn secrets_in_the_source_line_are_masked_and_the_caret_still_fits() {
        let src = "db must run mysql with passwrd x with password 'hunter2' on 33o6.";
        let line = "db must run mysql with passwrd x with password '***' on 33o6.";
        let want = format!(
            "t.cfg:1:57: error: `33o6` is not a whole number\n    {line}\n    {}^^^^",
            " ".repeat(56)
        );
        assert_eq!(masked(src, "33o6", "`33o6` is not a whole number"), want);
        let out = masked(src, "'hunter2'", "`hunter2` is odd");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("error: `***` is odd"), "{out}");
        assert!(
            out.ends_with("                                   ^^^^^"),
            "{out:?}"
        );
        let out = masked("web must run http with password hunter2.", "http", "m");
        assert!(
            out.contains("password ***.") && !out.contains("hunter2"),
            "{out}"
        );
        let out = masked("web must run ftp with password 'hunter2", "ftp", "m");
        assert!(!out.contains("hunter2"), "an unterminated quote: {out}");
    }

    #[test]
    fn url_passwords_are_masked_wherever_they_are() {
        let src = "LIST are fetched from http://u:pw9@127.0.0.1:1/list";
        let out = masked(src, "http", "cannot fetch http://u:pw9@127.0.0.1:1/list");
        assert!(!out.contains("pw9"), "{out}");
        assert!(out.contains("http://u:***@127.0.0.1:1/list"), "{out}");
        let out = masked(
            "ftp://a:b@h/x must run ftp with banner 'x@y:z'",
            "banner",
            "m",
        );
        assert!(
            out.contains("ftp://a:***@h/x") && out.contains("'x@y:z'"),
            "{out}"
        );
        assert_eq!(url_password("http://host/a@b:c"), None);
    }
}
