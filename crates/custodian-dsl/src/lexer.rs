//! Lines and words: splits a file into logical lines (CR/LF, trimming, `#` comments, `\`
//! continuations) and a logical line into words and quoted strings with byte spans.

use crate::ast::{Span, Token};

/// A word or quoted string of a line, borrowed from it: most are keywords the parser reads
/// and drops, so only the ones a statement keeps are copied (see [`Word::owned`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Word<'a> {
    /// The text without quotes.
    pub(crate) text: &'a str,
    /// True when the word was written in quotes (so it is a value, never a keyword).
    pub(crate) quoted: bool,
    pub(crate) span: Span,
}

impl Word<'_> {
    /// The word as the syntax tree keeps it.
    pub(crate) fn owned(&self) -> Token {
        Token {
            text: self.text.to_string(),
            quoted: self.quoted,
            span: self.span,
        }
    }
}

/// One logical line: its text and where each joined piece of it sits in the source.
#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) text: String,
    pub(crate) lineno: u32,
    /// The source offset of the first byte of `text`.
    start: usize,
    /// (offset in `text`, offset in the source) of each physical line joined to the first one
    /// (empty, so nothing allocated, for the usual single-line statement).
    joins: Vec<(usize, usize)>,
}

impl Line {
    /// The source offset of byte `off` of the text.
    fn at(&self, off: usize) -> usize {
        let i = self.joins.partition_point(|&(t, _)| t <= off);
        let (t, s) = i.checked_sub(1).map_or((0, self.start), |i| self.joins[i]);
        s + (off - t)
    }

    /// The source span of text bytes `a..b`.
    pub(crate) fn span(&self, a: usize, b: usize) -> Span {
        Span::new(self.at(a), self.at(b))
    }

    /// The source span of the whole line.
    pub(crate) fn whole(&self) -> Span {
        self.span(0, self.text.len())
    }
}

/// Each physical line as (start offset, text without terminator, 1-based line number).
fn physical(src: &str, mut each: impl FnMut(usize, &str, u32)) {
    let bytes = src.as_bytes();
    let (mut start, mut i, mut lineno) = (0, 0, 1u32);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' | b'\r' => {
                each(start, &src[start..i], lineno);
                let crlf = bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n');
                lineno += 1;
                i += 1 + usize::from(crlf);
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        each(start, &src[start..], lineno);
    }
}

/// Each logical line of a file, in order: blank and comment lines skipped, continuations
/// joined. Handed over one at a time, so no table of every line is held beside the statements.
pub(crate) fn each_line(src: &str, mut each: impl FnMut(Line)) {
    let mut open: Option<Line> = None;
    physical(src, |start, raw, lineno| {
        let piece = raw.trim();
        let offset = start + (raw.len() - raw.trim_start().len());
        let mut line = match open.take() {
            Some(mut line) => {
                line.text.push(' ');
                line.joins.push((line.text.len(), offset));
                line
            }
            None if piece.is_empty() || piece.starts_with('#') => return,
            None => Line {
                text: String::new(),
                lineno,
                start: offset,
                joins: Vec::new(),
            },
        };
        match piece.strip_suffix('\\') {
            Some(head) => {
                line.text.push_str(head);
                open = Some(line);
            }
            None => {
                line.text.push_str(piece);
                each(finish(line));
            }
        }
    });
    if let Some(line) = open {
        each(finish(line));
    }
}

fn finish(mut line: Line) -> Line {
    line.text.truncate(line.text.trim_end().len());
    line
}

/// The words and quoted strings of a line, without the optional final `.`.
/// Err is the span of an unterminated quote.
pub(crate) fn tokens(line: &Line) -> Result<Vec<Word<'_>>, Span> {
    let text = line.text.as_str();
    let bytes = text.as_bytes();
    // At most one word per space (quoted text only makes fewer): one allocation, not a regrowth.
    let mut out = Vec::with_capacity(bytes.iter().filter(|&&b| b == b' ').count() + 1);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' => i += 1,
            q @ (b'\'' | b'"') => {
                let Some(len) = text[i + 1..].find(char::from(q)) else {
                    return Err(line.span(i, text.len()));
                };
                let end = i + 1 + len;
                out.push(token(line, &text[i + 1..end], true, i, end + 1));
                i = end + 1;
            }
            _ => {
                // A byte scan: both separators are ASCII, so no character needs decoding.
                let end = bytes[i..]
                    .iter()
                    .position(|&b| b == b' ' || b == b'\t')
                    .map_or(text.len(), |n| i + n);
                out.push(token(line, &text[i..end], false, i, end));
                i = end;
            }
        }
    }
    strip_final_dot(&mut out);
    Ok(out)
}

fn token<'a>(line: &Line, text: &'a str, quoted: bool, a: usize, b: usize) -> Word<'a> {
    Word {
        text,
        quoted,
        span: line.span(a, b),
    }
}

/// Removes one `.` ending the statement (it belongs to no word, number or URL).
fn strip_final_dot(tokens: &mut Vec<Word<'_>>) {
    let Some(last) = tokens.last_mut() else {
        return;
    };
    if last.quoted || !last.text.ends_with('.') {
        return;
    }
    last.text = &last.text[..last.text.len() - 1];
    last.span.end -= 1;
    if last.text.is_empty() {
        tokens.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(src: &str) -> Vec<Line> {
        let mut out = Vec::new();
        each_line(src, |l| out.push(l));
        out
    }

    fn words(src: &str) -> Vec<(String, bool)> {
        let lines = lines(src);
        tokens(&lines[0])
            .unwrap()
            .into_iter()
            .map(|t| (t.text.to_string(), t.quoted))
            .collect()
    }

    #[test]
    fn splits_at_cr_lf_and_crlf_and_skips_comments() {
        let l = lines("a\r\n# c\rb\n\n  c  \n");
        let texts: Vec<_> = l.iter().map(|l| (l.text.as_str(), l.lineno)).collect();
        assert_eq!(texts, [("a", 1), ("b", 3), ("c", 5)]);
    }

    #[test]
    fn continuation_joins_and_maps_spans_back() {
        let src = "a b \\\n  c d\n";
        let l = lines(src);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].text, "a b  c d");
        let t = tokens(&l[0]).unwrap();
        let s = t[2].span;
        assert_eq!(&src[s.start..s.end], "c");
    }

    #[test]
    fn quotes_and_final_dot() {
        assert_eq!(
            words("x 'a b'. "),
            [("x".to_string(), false), ("a b".to_string(), true)]
        );
        assert_eq!(words("x y..")[1], ("y.".to_string(), false));
        assert_eq!(words("x \"it's\"")[1], ("it's".to_string(), true));
        assert_eq!(words("x don't")[1], ("don't".to_string(), false));
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let src = "x 'abc";
        let err = tokens(&lines(src)[0]).unwrap_err();
        assert_eq!(&src[err.start..err.end], "'abc");
    }
}
