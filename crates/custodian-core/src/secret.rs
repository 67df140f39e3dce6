//! Secret references: a `with password` written as `${env:NAME}` or `${file:/path}` names where
//! the worker reads the secret, so test files and queue bodies carry only the reference. This
//! module parses references (the planner checks their syntax); the worker reads them into the
//! job's [`crate::Params`], which scrubs the values from the job's result.

use crate::param::Invalid;
use std::path::PathBuf;

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
}
