//! Option phrases (`with timeout {timeout:int}`): parsed into words and value slots, and matched
//! against the argument words of a test line.

use custodian_dsl::ast::{Span, Token};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Word(&'static str),
    Slot { name: &'static str, int: bool },
}

/// One phrase a type accepts.
#[derive(Debug, Clone)]
pub(super) struct Phrase {
    parts: Vec<Part>,
}

/// A slot's value and where it was written.
#[derive(Debug, Clone)]
pub(super) struct SlotValue {
    pub(super) name: &'static str,
    pub(super) value: Value,
    pub(super) token: Token,
}

/// How a phrase fits the words at one position.
#[derive(Debug)]
pub(super) enum Fit {
    /// All of it: the number of words used and the slot values.
    Full(usize, Vec<SlotValue>),
    /// The words fit but this word (an index from the start) should be a whole number.
    BadInt(usize),
    No,
}

impl Phrase {
    pub(super) fn new(text: &'static str) -> Self {
        let parts = text
            .split_whitespace()
            .map(
                |w| match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                    Some(slot) => match slot.strip_suffix(":int") {
                        Some(name) => Part::Slot { name, int: true },
                        None => Part::Slot {
                            name: slot,
                            int: false,
                        },
                    },
                    None => Part::Word(w),
                },
            )
            .collect();
        Phrase { parts }
    }

    /// For a phrase without slots, its option key: the words joined by `_`, lower-case.
    pub(super) fn flag_key(&self) -> Option<String> {
        // Asked of every phrase that fits: a phrase with a slot answers without allocating.
        if self.parts.iter().any(|p| matches!(p, Part::Slot { .. })) {
            return None;
        }
        let mut words = Vec::new();
        for p in &self.parts {
            match p {
                Part::Word(w) => words.push(w.to_ascii_lowercase()),
                Part::Slot { .. } => return None,
            }
        }
        Some(words.join("_"))
    }

    /// The phrase as users write it: `with timeout N`, `with banner BANNER`.
    pub(super) fn usage(&self) -> String {
        let words: Vec<String> = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Word(w) => w.to_string(),
                Part::Slot { int: true, .. } => "N".to_string(),
                Part::Slot { name, .. } => name.to_ascii_uppercase(),
            })
            .collect();
        words.join(" ")
    }

    /// Whether the phrase fits the start of `toks`.
    pub(super) fn fit(&self, toks: &[Token]) -> Fit {
        if toks.len() < self.parts.len() {
            return Fit::No;
        }
        let mut values = Vec::new();
        for (i, (part, tok)) in self.parts.iter().zip(toks).enumerate() {
            match *part {
                Part::Word(w) if tok.quoted || !tok.text.eq_ignore_ascii_case(w) => return Fit::No,
                Part::Word(_) => {}
                Part::Slot { name, int } => match slot_value(tok, int) {
                    Some(value) => values.push(SlotValue {
                        name,
                        value,
                        token: tok.clone(),
                    }),
                    None => return Fit::BadInt(i),
                },
            }
        }
        Fit::Full(self.parts.len(), values)
    }
}

fn slot_value(tok: &Token, int: bool) -> Option<Value> {
    if !int {
        return Some(Value::String(tok.text.clone()));
    }
    if tok.text.is_empty() || !tok.text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tok.text.parse::<u64>().ok().map(Value::from)
}

/// The span covering a run of words.
pub(super) fn span_of(toks: &[Token]) -> Span {
    match (toks.first(), toks.last()) {
        (Some(a), Some(b)) => Span::new(a.span.start, b.span.end),
        _ => Span::default(),
    }
}

/// Words as written, quoted ones in quotes, for messages.
pub(super) fn words(toks: &[Token]) -> String {
    let words: Vec<String> = toks
        .iter()
        .map(|t| match t.quoted {
            true => format!("'{}'", t.text),
            false => t.text.clone(),
        })
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(words: &[&str]) -> Vec<Token> {
        words
            .iter()
            .map(|w| Token {
                text: w.trim_matches('\'').to_string(),
                quoted: w.starts_with('\''),
                span: Span::default(),
            })
            .collect()
    }

    #[test]
    fn words_match_case_insensitively_and_never_quoted() {
        let p = Phrase::new("with timeout {timeout:int}");
        assert!(matches!(
            p.fit(&toks(&["WITH", "Timeout", "5"])),
            Fit::Full(3, _)
        ));
        assert!(matches!(p.fit(&toks(&["'with'", "timeout", "5"])), Fit::No));
        assert!(matches!(
            p.fit(&toks(&["with", "timeout", "x"])),
            Fit::BadInt(2)
        ));
        assert!(matches!(p.fit(&toks(&["with", "timeout"])), Fit::No));
    }

    #[test]
    fn flags_usage_and_slot_values() {
        let p = Phrase::new("not following redirects");
        assert_eq!(p.flag_key().as_deref(), Some("not_following_redirects"));
        let q = Phrase::new("with banner {banner}");
        assert_eq!(q.flag_key(), None);
        assert_eq!(q.usage(), "with banner BANNER");
        let Fit::Full(_, v) = q.fit(&toks(&["with", "banner", "'SSH-2'"])) else {
            panic!("no fit")
        };
        assert_eq!(v[0].value, Value::String("SSH-2".into()));
    }
}
