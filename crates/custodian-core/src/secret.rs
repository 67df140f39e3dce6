//! Secret references: a `with password` written as `${env:NAME}` or `${file:/path}` names where
//! the worker reads the secret, so test files and queue bodies carry only the reference. This
//! module parses references (the planner checks their syntax) and remembers what workers
//! resolved them to, so [`crate::Job::scrub`] masks the resolved value like a literal one.

use crate::param::Invalid;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

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

/// Values remembered per reference; a rotated secret keeps its predecessors for a while, since
/// output of a job that resolved the old value may still be on its way.
const KEEP: usize = 4;

/// What workers of this process resolved each reference to (reference text → values).
static RESOLVED: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());

/// Records that `reference` resolved to `value`, so jobs carrying it scrub the value.
pub fn remember(reference: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    let mut map = RESOLVED.lock().unwrap_or_else(|p| p.into_inner());
    let seen = map.entry(reference.to_string()).or_default();
    if !seen.iter().any(|v| v == value) {
        seen.push(value.to_string());
        if seen.len() > KEEP {
            seen.remove(0);
        }
    }
}

/// The values `reference` resolved to in this process.
pub fn resolved(reference: &str) -> Vec<String> {
    let map = RESOLVED.lock().unwrap_or_else(|p| p.into_inner());
    map.get(reference).cloned().unwrap_or_default()
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
    fn resolved_values_are_remembered_per_reference() {
        let r = "${env:SECRET_TEST_REMEMBER}";
        assert!(resolved(r).is_empty());
        remember(r, "");
        assert!(resolved(r).is_empty(), "an empty value masks nothing");
        for v in ["v1", "v2", "v1", "v3", "v4", "v5"] {
            remember(r, v);
        }
        assert_eq!(resolved(r), ["v2", "v3", "v4", "v5"]);
        assert!(resolved("${env:OTHER}").is_empty());
    }
}
