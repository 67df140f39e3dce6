//! Secret references: a `with password` written as `${env:NAME}` or `${file:/path}` names where
//! the worker reads the secret, so test files and queue bodies carry only the reference. The
//! same references may stand inside an http header's value (`Authorization: Bearer
//! ${env:TOKEN}`) and as a URL's password (`http://user:${env:PW}@host/`). This module parses
//! references (the planner checks their syntax); the worker reads them into the job's
//! [`crate::Params`], which scrubs the values from the job's result.

use crate::param::Invalid;
use std::ops::Range;
use std::path::PathBuf;

/// Types whose URL target may name its password by reference (`http://u:${env:PW}@h/`); the
/// worker resolves it for them only, so another type would send the reference itself.
pub const URL_REFERENCE_TYPES: &[&str] = &["http", "https"];

/// The [`crate::Params`] key under which the worker hands a probe the password read for its
/// URL's reference; the space keeps it apart from every option key.
pub const URL_PASSWORD: &str = "url password";

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the worker.
    Env(String),
    /// A file on the worker (read once per job, trailing newline trimmed).
    File(PathBuf),
}

/// What to write instead of a bad reference.
const HINT: &str = "write `${env:NAME}` or `${file:/absolute/path}`";

/// Parses `value` as a secret reference: `Ok(None)` for a literal secret. Only `${scheme:...}`
/// is a reference (the original never interpreted `${`), so other text stays a literal password.
pub fn reference(value: &str) -> Result<Option<SecretRef>, Invalid> {
    let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
        return Ok(None);
    };
    let Some((scheme, rest)) = inner.split_once(':') else {
        return Ok(None);
    };
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphabetic()) {
        return Ok(None);
    }
    match scheme {
        "env" => {
            let mut chars = rest.chars();
            let name_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if name_ok {
                Ok(Some(SecretRef::Env(rest.to_string())))
            } else {
                Err(
                    Invalid::new(format!("`{rest}` is not an environment variable name"))
                        .hint("use letters, digits and _, e.g. `${env:DB_PASSWORD}`"),
                )
            }
        }
        "file" if rest.starts_with('/') && rest.len() > 1 => {
            Ok(Some(SecretRef::File(PathBuf::from(rest))))
        }
        "file" => Err(Invalid::new(format!("`{rest}` is not an absolute path"))
            .hint("e.g. `${file:/etc/custodian/db.pw}`")),
        other => Err(Invalid::new(format!("unknown secret source `{other}`")).hint(HINT)),
    }
}

/// Every reference inside `text` (an http header's value), with its byte range, in order.
/// `${` that does not open a `${scheme:...}` stays literal text, as in [`reference`].
pub fn references(text: &str) -> Result<Vec<(Range<usize>, SecretRef)>, Invalid> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(open) = text[at..].find("${").map(|i| at + i) {
        let Some(close) = text[open..].find('}').map(|i| open + i + 1) else {
            break;
        };
        match reference(&text[open..close])? {
            Some(r) => {
                out.push((open..close, r));
                at = close;
            }
            None => at = open + 2,
        }
    }
    Ok(out)
}

/// The reference a URL's password is written as (`http://user:${env:PW}@host/`), if any. The
/// password is read percent-decoded, so a file path's slashes may be written `%2F` (a raw `/`
/// would end the URL's host part).
pub fn url_reference(url: &str) -> Result<Option<SecretRef>, Invalid> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(None);
    };
    match parsed.password() {
        Some(pw) => reference(&percent_decode(pw)),
        None => Ok(None),
    }
}

/// Decodes `%XX` escapes (invalid escapes stay as written).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) if b[i] == b'%' => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_literals_stay_literal() {
        assert_eq!(
            reference("${env:DB_PW}"),
            Ok(Some(SecretRef::Env("DB_PW".into())))
        );
        assert_eq!(
            reference("${file:/etc/custodian/db.pw}"),
            Ok(Some(SecretRef::File("/etc/custodian/db.pw".into())))
        );
        for literal in [
            "hunter2", "${nope", "${}", "${a b:c}", "$env:X", "{env:X}", "",
        ] {
            assert_eq!(reference(literal), Ok(None), "{literal}");
        }
        let e = reference("${vault:db}").expect_err("scheme");
        assert_eq!(e.msg, "unknown secret source `vault`");
        assert!(reference("${env:}").is_err());
        assert!(reference("${env:1X}").is_err());
        assert!(reference("${env:A-B}").is_err());
        assert!(reference("${file:}").is_err());
        assert!(reference("${file:rel/pw}").is_err());
    }

    #[test]
    fn references_inside_text_are_found_in_order() {
        let text = "Bearer ${env:TOKEN} and ${file:/run/k} ${x} ${";
        let refs = references(text).expect("valid");
        assert_eq!(refs.len(), 2);
        assert_eq!(&text[refs[0].0.clone()], "${env:TOKEN}");
        assert_eq!(refs[0].1, SecretRef::Env("TOKEN".into()));
        assert_eq!(refs[1].1, SecretRef::File("/run/k".into()));
        assert_eq!(references("no refs, ${a b:c}, $env:X"), Ok(Vec::new()));
        let e = references("Bearer ${env:BAD-NAME}").expect_err("bad name");
        assert_eq!(e.msg, "`BAD-NAME` is not an environment variable name");
        assert!(references("x ${vault:k}").is_err());
    }

    #[test]
    fn url_passwords_are_references_when_written_as_one() {
        assert_eq!(
            url_reference("http://mon:${env:WEB_PW}@127.0.0.1/x"),
            Ok(Some(SecretRef::Env("WEB_PW".into())))
        );
        assert_eq!(
            url_reference("http://mon:${file:%2Fetc%2Fweb.pw}@host/"),
            Ok(Some(SecretRef::File("/etc/web.pw".into())))
        );
        assert_eq!(url_reference("http://mon:hunter2@host/"), Ok(None));
        assert_eq!(url_reference("http://host/${env:X}"), Ok(None));
        assert_eq!(url_reference("not a url"), Ok(None));
        assert!(url_reference("http://mon:${env:1X}@host/").is_err());
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
    }
}
