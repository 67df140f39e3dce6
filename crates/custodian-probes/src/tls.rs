//! TLS plumbing shared by probes: the rustls client configs (webpki roots plus CA files added
//! with [`add_ca_file`], built once and shared by every check) and certificate-expiry checks.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

/// The two shared configs: verifying (current roots) and insecure (no verification).
struct Configs {
    roots: RootCertStore,
    verified: Arc<ClientConfig>,
    insecure: Arc<ClientConfig>,
}

static CONFIGS: OnceLock<RwLock<Configs>> = OnceLock::new();

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn configs() -> &'static RwLock<Configs> {
    CONFIGS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        RwLock::new(Configs {
            verified: Arc::new(verified_config(roots.clone())),
            insecure: Arc::new(insecure_config()),
            roots,
        })
    })
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    // The ring provider with its safe defaults cannot fail to build; fall back to TLS 1.3 only
    // rather than panic if that ever changes.
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| {
            ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        })
}

fn with_alpn(mut config: ClientConfig) -> ClientConfig {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

fn verified_config(roots: RootCertStore) -> ClientConfig {
    with_alpn(
        builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn insecure_config() -> ClientConfig {
    with_alpn(
        builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth(),
    )
}

/// The shared client config: verifying against the trusted roots, or (`insecure`) accepting
/// any certificate.
pub(crate) fn client_config(insecure: bool) -> Arc<ClientConfig> {
    let c = configs().read().unwrap_or_else(PoisonError::into_inner);
    if insecure {
        c.insecure.clone()
    } else {
        c.verified.clone()
    }
}

/// Trusts every certificate in the PEM bundle at `path` for all later TLS checks; returns how
/// many were added.
pub fn add_ca_file(path: &Path) -> Result<usize, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file {shown}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("CA file {shown} holds no certificate"));
    }
    let mut c = configs().write().unwrap_or_else(PoisonError::into_inner);
    let mut roots = c.roots.clone();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("CA file {shown}: no usable CA certificate"));
    }
    c.verified = Arc::new(verified_config(roots.clone()));
    c.roots = roots;
    Ok(added)
}

/// When a certificate stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expiry {
    /// Whole days left from `now` (negative once expired).
    days: i64,
    /// The expiry date, `YYYY-MM-DD HH:MM UTC`.
    at: String,
}

/// Reads the expiry of a DER certificate, counted from `now` (unix seconds).
fn expiry(der: &[u8], now: i64) -> Result<Expiry, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("cannot parse the server certificate: {e}"))?;
    let not_after = cert.validity().not_after;
    let dt = not_after.to_datetime();
    Ok(Expiry {
        days: (not_after.timestamp() - now).div_euclid(86_400),
        at: format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute()
        ),
    })
}

/// Fails when the certificate expires within `min_days` days of `now` (or has expired).
pub(crate) fn check_expiry(der: &[u8], min_days: u64, now: i64) -> Result<(), String> {
    let e = expiry(der, now)?;
    if e.days < 0 {
        return Err(format!("certificate expired on {}", e.at));
    }
    if e.days.unsigned_abs() < min_days {
        return Err(format!(
            "certificate expires in {} days (at {}), less than {min_days}",
            e.days, e.at
        ));
    }
    Ok(())
}

/// The current time in unix seconds.
pub(crate) fn unix_now() -> i64 {
    UnixTime::now().as_secs().try_into().unwrap_or(i64::MAX)
}

/// Accepts any certificate (`with tls insecure`, `no_ssl_check`); handshake signatures are
/// still checked so the peer must hold the key of the certificate it sent.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
pub(crate) mod testca {
    //! Test certificates made with rcgen (a CA and leaves with chosen names and lifetimes), and
    //! rustls server configs serving them.

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::ServerConfig;
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;
    use x509_parser::time::ASN1Time;

    pub(crate) struct Ca {
        pub(crate) pem: String,
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    /// A leaf certificate (with its issuer chain) and its key.
    pub(crate) struct Leaf {
        pub(crate) chain: Vec<CertificateDer<'static>>,
        key: Vec<u8>,
    }

    /// Subject `cn`, validity from a day ago until `secs` seconds from now (negative: expired).
    fn params(cn: &str, names: &[&str], secs: i64) -> CertificateParams {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        let now = ASN1Time::now().to_datetime();
        p.not_before = now - Duration::from_secs(86_400);
        p.not_after = if secs >= 0 {
            now + Duration::from_secs(secs.unsigned_abs())
        } else {
            now - Duration::from_secs(secs.unsigned_abs())
        };
        p
    }

    /// The test CA (one per test process), already trusted through [`super::add_ca_file`].
    pub(crate) fn ca() -> &'static Ca {
        static CA: OnceLock<Ca> = OnceLock::new();
        CA.get_or_init(|| {
            let key = KeyPair::generate().expect("key");
            let mut p = params("custodian test CA", &[], 3650 * 86_400);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = p.self_signed(&key).expect("ca cert");
            let ca = Ca {
                pem: cert.pem(),
                cert,
                key,
            };
            let path =
                std::env::temp_dir().join(format!("custodian-test-ca-{}.pem", std::process::id()));
            std::fs::write(&path, &ca.pem).expect("write ca");
            assert_eq!(super::add_ca_file(&path), Ok(1));
            let _ = std::fs::remove_file(&path);
            ca
        })
    }

    /// A leaf for `names` valid for `secs` more seconds, signed by `ca` (or self-signed).
    pub(crate) fn leaf(ca: Option<&Ca>, names: &[&str], secs: i64) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let p = params(names.first().copied().unwrap_or("leaf"), names, secs);
        let (cert, mut chain) = match ca {
            Some(ca) => (
                p.signed_by(&key, &ca.cert, &ca.key).expect("leaf"),
                vec![ca.cert.der().clone()],
            ),
            None => (p.self_signed(&key).expect("leaf"), Vec::new()),
        };
        chain.insert(0, cert.der().clone());
        Leaf {
            chain,
            key: key.serialize_der(),
        }
    }

    /// A rustls server config presenting `leaf`.
    pub(crate) fn server_config(leaf: &Leaf) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone()));
        let config = ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(leaf.chain.clone(), key)
            .expect("server config");
        Arc::new(config)
    }
}

#[cfg(test)]
mod tests {
    use super::testca::*;
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn expiry_counts_whole_days() {
        let l = leaf(None, &["a.test"], 3 * DAY + 3600);
        let e = expiry(&l.chain[0], unix_now()).expect("expiry");
        assert_eq!(e.days, 3);
        assert!(e.at.ends_with(" UTC") && e.at.len() == 20, "{}", e.at);
    }

    #[test]
    fn check_expiry_uses_the_minimum() {
        let l = leaf(None, &["a.test"], 3 * DAY + 3600);
        let der = &l.chain[0];
        let err = check_expiry(der, 14, unix_now()).expect_err("too soon");
        assert!(
            err.starts_with("certificate expires in 3 days (at "),
            "{err}"
        );
        assert!(err.ends_with("), less than 14"), "{err}");
        assert_eq!(check_expiry(der, 2, unix_now()), Ok(()));
    }

    #[test]
    fn expired_certificate_is_reported() {
        let l = leaf(None, &["a.test"], -DAY);
        let err = check_expiry(&l.chain[0], 0, unix_now()).expect_err("expired");
        assert!(err.starts_with("certificate expired on "), "{err}");
    }

    #[test]
    fn garbage_certificate_is_an_error() {
        let err = expiry(b"not a certificate", 0).expect_err("garbage");
        assert!(
            err.starts_with("cannot parse the server certificate"),
            "{err}"
        );
    }

    #[test]
    fn add_ca_file_counts_and_rejects() {
        let ca = ca();
        let dir = std::env::temp_dir();
        let two = dir.join(format!("custodian-two-{}.pem", std::process::id()));
        std::fs::write(&two, format!("{}{}", ca.pem, ca.pem)).expect("write");
        assert_eq!(add_ca_file(&two), Ok(2));
        let empty = dir.join(format!("custodian-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "no pem here\n").expect("write");
        let err = add_ca_file(&empty).expect_err("empty");
        assert!(err.ends_with("holds no certificate"), "{err}");
        let err = add_ca_file(&dir.join("custodian-missing.pem")).expect_err("missing");
        assert!(err.starts_with("cannot read CA file"), "{err}");
        let _ = std::fs::remove_file(two);
        let _ = std::fs::remove_file(empty);
    }
}
