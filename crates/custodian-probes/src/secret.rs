//! Reads secret references (`${env:NAME}`, `${file:/path}`) on the worker, once per job: the
//! planner only checked their syntax, since the worker may run elsewhere. References stand for
//! a whole `password`, for parts of an http `header`'s value, and for an http(s) URL's password.

use custodian_core::secret::{self, SecretRef, URL_PASSWORD, URL_REFERENCE_TYPES};
use custodian_core::spec::SECRET_KEYS;
use custodian_core::{Invalid, Job, Params, ProbeSpec, Value};
use std::collections::BTreeMap;
use std::io::Read;

/// Largest secret file read; anything longer is surely not a password file.
const MAX_FILE: u64 = 4096;

/// What a job's references were read as.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Resolved {
    /// The options with references replaced (`None` when there were none, the common case).
    options: Option<BTreeMap<String, serde_json::Value>>,
    /// The password read for the URL target's reference.
    url_password: Option<String>,
    /// Every value read, so the worker can scrub them from its results.
    read: Vec<String>,
}

impl Resolved {
    /// Parses the job's options (resolved where references were) by `spec`, and hands the
    /// params the URL password and the values to scrub. Refusals quote the value, so a read
    /// value the kind refuses (a token with a line break) is reported without it.
    pub(crate) fn build(self, spec: &ProbeSpec, job: &Job) -> Result<Params, Invalid> {
        let params = match &self.options {
            None => Params::build(spec, &job.options)?,
            Some(options) => Params::build(spec, options).map_err(|e| {
                // Refused as written too: that error quotes only the references.
                let written = Params::build(spec, &job.options).err();
                written.unwrap_or_else(|| Invalid {
                    msg: "a value read for a secret reference is refused".to_string(),
                    hint: e.hint,
                    key: e.key,
                    lenient: false,
                })
            })?,
        };
        let params = match self.url_password {
            Some(pw) => params.with_value(URL_PASSWORD, Value::Text(pw)),
            None => params,
        };
        Ok(params.with_secrets(self.read))
    }
}

/// Reads every reference of `job`: in its [`SECRET_KEYS`] options, in its `header` value, and
/// in its URL's password for the types that take one ([`URL_REFERENCE_TYPES`]).
pub(crate) fn resolve(job: &Job) -> Result<Resolved, Invalid> {
    let mut out = Resolved::default();
    for (key, value) in &job.options {
        let Some(text) = value.as_str() else {
            continue;
        };
        let replaced = if SECRET_KEYS.contains(&key.as_str()) {
            match secret::reference(text).map_err(|e| named(key, e))? {
                Some(r) => Some(read(&r).map_err(|e| named(key, e))?),
                None => None,
            }
        } else if key == "header" {
            substitute(text, &mut out.read).map_err(|e| named(key, e))?
        } else {
            None
        };
        if let Some(v) = replaced {
            out.read.push(v.clone());
            out.options
                .get_or_insert_with(|| (*job.options).clone())
                .insert(key.clone(), v.into());
        }
    }
    if URL_REFERENCE_TYPES.contains(&job.probe.as_str()) {
        if let Some(r) = secret::url_reference(&job.target).map_err(|e| named(URL_KEY, e))? {
            let pw = read(&r).map_err(|e| named(URL_KEY, e))?;
            out.read.push(pw.clone());
            out.url_password = Some(pw);
        }
    }
    Ok(out)
}

/// How errors name a URL password's reference.
const URL_KEY: &str = "URL password";

/// `text` with each reference replaced by its value (`None` when it has none); the values
/// read are pushed to `values` (the whole text is added by the caller).
fn substitute(text: &str, values: &mut Vec<String>) -> Result<Option<String>, Invalid> {
    let refs = secret::references(text)?;
    if refs.is_empty() {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, r) in refs {
        let value = read(&r)?;
        out.push_str(&text[at..range.start]);
        out.push_str(&value);
        values.push(value);
        at = range.end;
    }
    out.push_str(&text[at..]);
    Ok(Some(out))
}

/// `url` with its password read when it is written as a reference (for `fetched from` URLs,
/// fetched before anything is planned), and the value read to scrub from errors. Output must
/// keep showing the URL as written (masked), never the returned one.
pub fn resolve_url(url: &str) -> Result<(String, Option<String>), Invalid> {
    let Some(r) = secret::url_reference(url).map_err(|e| named(URL_KEY, e))? else {
        return Ok((url.to_string(), None));
    };
    let pw = read(&r).map_err(|e| named(URL_KEY, e))?;
    let mut parsed = url::Url::parse(url).map_err(|e| Invalid::new(format!("bad URL: {e}")))?;
    parsed
        .set_password(Some(&pw))
        .map_err(|()| Invalid::new("this URL cannot carry a password"))?;
    Ok((parsed.to_string(), Some(pw)))
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
            // The reference was checked when planned; the value lives where the worker runs.
            Err(std::env::VarError::NotPresent) => Err(Invalid::new(format!(
                "environment variable {name} is not set"
            ))
            .hint("set it in the worker's environment, e.g. the unit's EnvironmentFile=")),
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

    fn opts(pw: &str) -> Job {
        let mut job = Job::new("redis", "127.0.0.1", None);
        job.options = BTreeMap::from([
            ("password".to_string(), pw.into()),
            ("username".to_string(), "mon".into()),
        ])
        .into();
        job
    }

    fn resolved(job: &Job) -> BTreeMap<String, serde_json::Value> {
        resolve(job).expect("resolves").options.expect("replaced")
    }

    #[test]
    fn literals_are_left_alone() {
        assert_eq!(resolve(&opts("hunter2")), Ok(Resolved::default()));
    }

    #[test]
    fn env_references_resolve_or_name_the_variable() {
        // PATH is set in any test process; setting a variable here would race other tests.
        let path = std::env::var("PATH").expect("PATH is set");
        let got = resolved(&opts("${env:PATH}"));
        assert_eq!(got["password"], path.as_str());
        assert_eq!(got["username"], "mon");
        // The job holds only the reference; the params the worker prepares know the value.
        let params = crate::prepare(&opts("${env:PATH}")).expect("prepares");
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
        let got = resolved(&opts(&reference));
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

    fn web(url: &str, header: &str) -> Job {
        let mut job = Job::new("http", url, None);
        job.options
            .insert("header".to_string(), header.to_string().into());
        job
    }

    #[test]
    fn header_values_and_url_passwords_resolve_on_the_worker() {
        let path = std::env::var("PATH").expect("PATH is set");
        let job = web(
            "http://mon:${env:PATH}@127.0.0.1/",
            "Authorization: Bearer ${env:PATH}",
        );
        let r = resolve(&job).expect("resolves");
        let header = format!("Authorization: Bearer {path}");
        assert_eq!(r.options.as_ref().expect("replaced")["header"], header);
        assert_eq!(r.url_password.as_deref(), Some(path.as_str()));
        assert!(r.read.contains(&path) && r.read.contains(&header));
        let params = crate::prepare(&job).expect("prepares");
        assert_eq!(params.text(URL_PASSWORD), Some(path.as_str()));
        assert_eq!(params.scrub(&format!("got {path}")), "got ********");
        // Other types would send the reference itself, so it is not read for them.
        let mut ftp = job.clone();
        ftp.probe = "ftp".into();
        ftp.options.clear();
        assert_eq!(resolve(&ftp), Ok(Resolved::default()));
        let e = resolve(&web(
            "http://mon:${env:CUSTODIAN_TEST_URL_UNSET}@127.0.0.1/",
            "X-A: b",
        ))
        .expect_err("unset");
        assert_eq!(
            e.msg,
            "URL password: environment variable CUSTODIAN_TEST_URL_UNSET is not set"
        );
        let e = resolve(&web(
            "http://127.0.0.1/",
            "X-Token: ${env:CUSTODIAN_TEST_HEADER_UNSET}",
        ))
        .expect_err("unset");
        assert_eq!(
            e.msg,
            "header: environment variable CUSTODIAN_TEST_HEADER_UNSET is not set"
        );
        let literal = web("http://127.0.0.1/", "X-Tpl: ${not a ref}");
        assert_eq!(resolve(&literal), Ok(Resolved::default()));
    }

    #[test]
    fn a_refused_resolved_value_is_named_masked() {
        let dir = std::env::temp_dir().join(format!("custodian-hdr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let tok = dir.join("tok");
        // A line break inside the token makes it no header value; the error must not show it.
        std::fs::write(&tok, "abc\ndef-secret\n").expect("write");
        let job = web(
            "http://127.0.0.1/",
            &format!("Authorization: Bearer ${{file:{}}}", tok.display()),
        );
        let e = crate::prepare(&job).expect_err("bad value");
        assert!(!e.to_string().contains("def-secret"), "{e}");
        assert_eq!(e.msg, "a value read for a secret reference is refused");
        assert!(e.to_string().contains("no line breaks"), "{e}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn fetched_urls_get_their_password_read() {
        let path = std::env::var("PATH").expect("PATH is set");
        let (url, pw) = resolve_url("http://u:${env:PATH}@127.0.0.1:1/list").expect("reads");
        assert_eq!(pw.as_deref(), Some(path.as_str()));
        let parsed = url::Url::parse(&url).expect("url");
        assert_eq!(secret::percent_decode(parsed.password().expect("pw")), path);
        assert_eq!(
            resolve_url("http://u:plain@h/").expect("literal"),
            ("http://u:plain@h/".to_string(), None)
        );
        assert!(resolve_url("http://u:${env:CUSTODIAN_TEST_FETCH_UNSET}@h/").is_err());
    }
}
