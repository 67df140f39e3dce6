//! What every check shares and the binary builds once, from its settings: the nameservers that
//! `mx` and `dnsbl` ask, and the TLS trust (the system store or the bundled roots, plus a CA
//! file) as ready rustls configs. It travels in each [`Ctx`](crate::Ctx), so tests and a
//! long-running service build their own; nothing here is process-wide.

use crate::resolver;
use crate::tls::{self, Roots, Trust};
use rustls::{ClientConfig, RootCertStore};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What an [`Env`] is built from (the defaults: the system trust store, no CA file, the
/// nameservers of /etc/resolv.conf).
#[derive(Debug, Clone, Default)]
pub struct EnvOptions {
    /// Which roots TLS checks trust besides `ca_file`.
    pub roots: Roots,
    /// A PEM bundle of extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// The servers `mx` and `dnsbl` ask, in order; empty means those of /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
}

/// The probes' shared environment.
pub struct Env {
    /// The servers to ask, or why there are none (read once, when the Env is built).
    nameservers: Result<Vec<SocketAddr>, String>,
    trust: Trust,
    warnings: Vec<String>,
}

impl Env {
    /// Builds the environment: reads the trust store and the CA file, and the system's
    /// nameservers when none are given. A CA file that cannot be used is an error; a system
    /// trust store that cannot be read falls back to the bundled roots with a warning (see
    /// [`Env::warnings`]).
    pub fn build(options: &EnvOptions) -> Result<Env, String> {
        let (mut roots, warnings) = tls::root_store(options.roots);
        if let Some(path) = &options.ca_file {
            tls::add_ca_file(&mut roots, path)?;
        }
        let nameservers = if options.nameservers.is_empty() {
            resolver::system_nameservers()
        } else {
            Ok(options.nameservers.clone())
        };
        Ok(Env::from_parts(roots, nameservers, warnings))
    }

    pub(crate) fn from_parts(
        roots: RootCertStore,
        nameservers: Result<Vec<SocketAddr>, String>,
        warnings: Vec<String>,
    ) -> Env {
        Env {
            nameservers,
            trust: Trust::new(roots),
            warnings,
        }
    }

    /// The servers `mx` and `dnsbl` ask, or why there are none (an "unknown" for them).
    pub fn nameservers(&self) -> Result<Vec<SocketAddr>, String> {
        self.nameservers.clone()
    }

    /// Problems met while building that did not stop it (e.g. an unreadable system trust
    /// store, replaced by the bundled roots); the binary logs them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The shared TLS client config: verifying against the trusted roots, or (`insecure`)
    /// accepting any chain and name.
    pub(crate) fn tls_config(&self, insecure: bool) -> Arc<ClientConfig> {
        self.trust.config(insecure)
    }
}

/// The defaults of [`EnvOptions`], which cannot fail (there is no CA file to read).
impl Default for Env {
    fn default() -> Self {
        let (roots, warnings) = tls::root_store(Roots::System);
        Env::from_parts(roots, resolver::system_nameservers(), warnings)
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("nameservers", &self.nameservers)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("custodian-env-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn explicit_nameservers_are_kept_in_order() {
        let servers: Vec<SocketAddr> = vec![
            "127.0.0.2:5353".parse().expect("a"),
            "[::1]:53".parse().expect("a"),
        ];
        let env = Env::build(&EnvOptions {
            roots: Roots::Bundled,
            nameservers: servers.clone(),
            ..EnvOptions::default()
        })
        .expect("env");
        assert_eq!(env.nameservers(), Ok(servers));
        assert!(env.warnings().is_empty(), "{:?}", env.warnings());
    }

    #[test]
    fn unit_tests_never_get_the_system_nameservers() {
        let env = Env::build(&EnvOptions {
            roots: Roots::Bundled,
            ..EnvOptions::default()
        })
        .expect("env");
        assert!(env.nameservers().is_err());
    }

    #[test]
    fn a_bad_ca_file_is_an_error() {
        let empty = temp("empty.pem", "no pem here\n");
        let options = |ca_file: PathBuf| EnvOptions {
            roots: Roots::Bundled,
            ca_file: Some(ca_file),
            ..EnvOptions::default()
        };
        let err = Env::build(&options(empty.clone())).expect_err("empty");
        assert!(err.ends_with("holds no certificate"), "{err}");
        let missing = std::env::temp_dir().join("custodian-env-missing.pem");
        let err = Env::build(&options(missing)).expect_err("missing");
        assert!(err.starts_with("cannot read CA file"), "{err}");
        let _ = std::fs::remove_file(empty);
    }
}
