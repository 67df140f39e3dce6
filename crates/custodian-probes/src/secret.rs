//! Reads secret references (`${env:NAME}`, `${file:/path}`) on the worker, once per job: the
//! planner only checked their syntax, since the worker may run elsewhere.

use custodian_core::secret::{self, SecretRef};
use custodian_core::spec::SECRET_KEYS;
use custodian_core::Invalid;
use std::collections::BTreeMap;
use std::io::Read;

/// Largest secret file read; anything longer is surely not a password file.
const MAX_FILE: u64 = 4096;

/// `options` with every secret reference replaced by the secret it names (`None` when there
/// are none, the common case).
pub(crate) fn resolve(
    options: &BTreeMap<String, serde_json::Value>,
) -> Result<Option<BTreeMap<String, serde_json::Value>>, Invalid> {
    let mut resolved = None;
    for key in SECRET_KEYS {
        let Some(text) = options.get(*key).and_then(|v| v.as_str()) else {
            continue;
        };
        let Some(reference) = secret::reference(text).map_err(|e| named(key, e))? else {
            continue;
        };
        let value = read(&reference).map_err(|e| named(key, e))?;
        resolved
            .get_or_insert_with(|| options.clone())
            .insert(key.to_string(), value.into());
    }
    Ok(resolved)
}

fn named(key: &str, e: Invalid) -> Invalid {
    Invalid {
        msg: format!("{key}: {}", e.msg),
        ..e
    }
}

/// The secret a reference names.
fn read(reference: &SecretRef) -> Result<String, Invalid> {
    match reference {
        SecretRef::Env(name) => match std::env::var(name) {
            Ok(v) => Ok(v),
            Err(std::env::VarError::NotPresent) => Err(Invalid::new(format!(
                "environment variable {name} is not set"
            ))),
            Err(std::env::VarError::NotUnicode(_)) => Err(Invalid::new(format!(
                "environment variable {name} is not UTF-8"
            ))),
        },
        SecretRef::File(path) => {
            let shown = path.display();
            let file = std::fs::File::open(path)
                .map_err(|e| Invalid::new(format!("cannot read secret file {shown}: {e}")))?;
            let mut bytes = Vec::new();
            file.take(MAX_FILE + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Invalid::new(format!("cannot read secret file {shown}: {e}")))?;
            if bytes.len() as u64 > MAX_FILE {
                return Err(Invalid::new(format!(
                    "secret file {shown} is over {MAX_FILE} bytes"
                )));
            }
            let text = String::from_utf8(bytes)
                .map_err(|_| Invalid::new(format!("secret file {shown} is not UTF-8")))?;
            // Editors end files with a newline; it is never part of the password.
            let trimmed = text.strip_suffix('\n').unwrap_or(&text);
            Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pw: &str) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([
            ("password".to_string(), pw.into()),
            ("username".to_string(), "mon".into()),
        ])
    }

    #[test]
    fn literals_are_left_alone() {
        assert_eq!(resolve(&opts("hunter2")), Ok(None));
    }

    #[test]
    fn env_references_resolve_or_name_the_variable() {
        // PATH is set in any test process; setting a variable here would race other tests.
        let path = std::env::var("PATH").expect("PATH is set");
        let got = resolve(&opts("${env:PATH}"))
            .expect("resolves")
            .expect("replaced");
        assert_eq!(got["password"], path.as_str());
        assert_eq!(got["username"], "mon");
        // The job holds only the reference; the params the worker prepares know the value.
        let mut job = custodian_core::Job::new("redis", "127.0.0.1", None);
        job.options = opts("${env:PATH}");
        let params = crate::prepare(&job).expect("prepares");
        assert_eq!(
            params.scrub(&format!("AUTH {path} refused")),
            "AUTH ******** refused"
        );
        let e = resolve(&opts("${env:CUSTODIAN_TEST_SECRET_UNSET}")).expect_err("unset");
        assert_eq!(
            e.msg,
            "password: environment variable CUSTODIAN_TEST_SECRET_UNSET is not set"
        );
        assert!(resolve(&opts("${vault:x}")).is_err());
    }

    #[test]
    fn file_references_are_trimmed_and_capped() {
        let dir = std::env::temp_dir().join(format!("custodian-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let pw = dir.join("db.pw");
        std::fs::write(&pw, "from file \n\r\n").expect("write");
        let reference = format!("${{file:{}}}", pw.display());
        let got = resolve(&opts(&reference))
            .expect("resolves")
            .expect("replaced");
        assert_eq!(
            got["password"], "from file \n",
            "only the last line end is trimmed"
        );
        let big = dir.join("big.pw");
        std::fs::write(&big, vec![b'x'; 4097]).expect("write");
        let e = resolve(&opts(&format!("${{file:{}}}", big.display()))).expect_err("too big");
        assert!(e.msg.contains("is over 4096 bytes"), "{}", e.msg);
        let e = resolve(&opts(&format!("${{file:{}}}", dir.join("none").display())))
            .expect_err("missing");
        assert!(
            e.msg.starts_with("password: cannot read secret file"),
            "{}",
            e.msg
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
