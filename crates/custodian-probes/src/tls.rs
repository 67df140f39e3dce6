//! TLS plumbing shared by probes: the trusted roots and the rustls client configs built from
//! them (once, into the [`Env`](crate::Env) every check shares), the handshake for non-HTTP
//! protocols (implicit TLS and STARTTLS) with plain-worded failure reasons, and
//! certificate-expiry checks.

use crate::{net, Ctx};
use custodian_core::{Invalid, Job, Kind, ParamSpec, Params, Value};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use x509_parser::time::ASN1Time;

/// A byte stream a probe talks over: plain TCP, or TLS on top of it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A plain or TLS stream, boxed so one dialog type serves both sides of a STARTTLS.
pub(crate) type Stream = Box<dyn Io>;

/// Default of `and cannot expire within N days`, as for `https`.
pub(crate) const EXPIRE_DAYS: u64 = 14;

/// The longest expiry limit accepted, in days (a century): anything longer is a typo.
const MAX_EXPIRE_DAYS: u64 = 36_500;

/// `with tls`: upgrade with STARTTLS (smtp, imap, pop3).
pub(crate) const STARTTLS_PARAM: ParamSpec = ParamSpec::new(
    "with tls",
    "upgrade to TLS with STARTTLS and verify the certificate",
);

/// `with tls insecure`, worded as for `https`.
pub(crate) const INSECURE_PARAM: ParamSpec = ParamSpec::new(
    "with tls insecure",
    "use TLS but skip chain and name verification; the expiry limit still applies",
);

/// `and cannot expire within N days`, worded as for `https`.
pub(crate) const EXPIRE_PARAM: ParamSpec = ParamSpec::new(
    "and cannot expire within {expire_days:int} days",
    "the certificate must stay valid this many more days (default 14)",
)
.kinds(&[Kind::Int {
    min: 0,
    max: MAX_EXPIRE_DAYS,
}]);

/// `with expiration 30d`: the limit as days (`30`, `30d`) or weeks (`2w`), for `ssl` and `https`.
pub(crate) const EXPIRATION_PARAM: ParamSpec = ParamSpec::new(
    "with expiration {expiration}",
    "the certificate must stay valid this long: days (30, 30d) or weeks (2w)",
)
.kinds(&[Kind::Parse(|s| parse_expiration(s).map(Value::Int))]);

/// `30`, `30d` (days) or `2w` (weeks), case-insensitive, into days.
fn parse_expiration(text: &str) -> Result<u64, Invalid> {
    let t = text.trim().to_ascii_lowercase();
    let (digits, factor) = match t.strip_suffix('w') {
        Some(d) => (d, 7),
        None => (t.strip_suffix('d').unwrap_or(&t), 1),
    };
    let days = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| {
            Invalid::new(format!("`{}` is not a duration", net::clip(text)))
                .hint("write days (30, 30d) or weeks (2w)")
        })?;
    if days > MAX_EXPIRE_DAYS {
        return Err(
            Invalid::new(format!("{days} days is more than {MAX_EXPIRE_DAYS}"))
                .hint("write days (30, 30d) or weeks (2w)"),
        );
    }
    Ok(days)
}

/// Which root certificates TLS checks trust, besides a CA file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Roots {
    /// The system's trust store, as OpenSSL and curl see it (`SSL_CERT_FILE`, `SSL_CERT_DIR`,
    /// else the distribution's bundle such as `/etc/ssl/certs/ca-certificates.crt`); when it
    /// cannot be read or holds no usable certificate, the bundled roots, with a warning.
    #[default]
    System,
    /// Only the Mozilla roots built into custodian (webpki-roots).
    Bundled,
}

/// The two client configs every check shares: verifying against the trusted roots, and
/// insecure (accepting any chain and name); built once.
pub(crate) struct Trust {
    verified: Arc<ClientConfig>,
    insecure: Arc<ClientConfig>,
}

impl Trust {
    pub(crate) fn new(roots: RootCertStore) -> Self {
        Trust {
            verified: Arc::new(verified_config(roots)),
            insecure: Arc::new(insecure_config()),
        }
    }

    /// The verifying config, or (`insecure`) the one accepting any certificate.
    pub(crate) fn config(&self, insecure: bool) -> Arc<ClientConfig> {
        if insecure {
            self.insecure.clone()
        } else {
            self.verified.clone()
        }
    }
}

/// The roots `which` names; a note for each problem met on the way (the system store could
/// not be read, or only partly).
pub(crate) fn root_store(which: Roots) -> (RootCertStore, Vec<String>) {
    let mut notes = Vec::new();
    if which == Roots::System {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        let problems: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        if added > 0 {
            if !problems.is_empty() {
                notes.push(format!(
                    "parts of the system trust store could not be read: {}",
                    problems.join("; ")
                ));
            }
            return (roots, notes);
        }
        let why = if problems.is_empty() {
            "it holds no usable certificate".to_string()
        } else {
            problems.join("; ")
        };
        notes.push(format!(
            "cannot use the system trust store ({why}): trusting the bundled Mozilla roots instead"
        ));
    }
    (bundled_roots(), notes)
}

fn bundled_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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

/// Adds every certificate of the PEM bundle at `path` to `roots`; returns how many. A file
/// that cannot be read, or holds no usable CA certificate, is an error.
pub(crate) fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<usize, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file {shown}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("CA file {shown} holds no certificate"));
    }
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("CA file {shown}: no usable CA certificate"));
    }
    Ok(added)
}

/// When a certificate stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expiry {
    /// Whole days left from `now` (negative once expired).
    pub(crate) days: i64,
    /// The expiry date, `YYYY-MM-DD HH:MM UTC`.
    pub(crate) at: String,
    /// The start of validity, when that is still after `now`.
    pub(crate) not_before: Option<String>,
}

/// Reads the validity of a DER certificate, counted from `now` (unix seconds).
pub(crate) fn expiry(der: &[u8], now: i64) -> Result<Expiry, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("cannot parse the server certificate: {e}"))?;
    let validity = cert.validity();
    let not_after = validity.not_after;
    Ok(Expiry {
        days: (not_after.timestamp() - now).div_euclid(86_400),
        at: date(not_after),
        not_before: (validity.not_before.timestamp() > now).then(|| date(validity.not_before)),
    })
}

/// The notAfter of a DER certificate (unix seconds), if it parses.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// `YYYY-MM-DD HH:MM UTC`.
fn date(t: ASN1Time) -> String {
    let dt = t.to_datetime();
    format!(
        "{}-{:02}-{:02} {:02}:{:02} UTC",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute()
    )
}

/// `date` of a rustls time, or a plain "unknown date" if it is out of range.
fn unix_date(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| ASN1Time::from_timestamp(s).ok())
        .map_or_else(|| "an unknown date".to_string(), date)
}

/// How a probe checks the server's certificate: the chain and name (unless skipped), and the
/// expiry limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verify {
    /// The option that skips chain and name verification (`with tls insecure`,
    /// `no_ssl_check`), if given; it is named in an expiry failure.
    pub(crate) skip: Option<&'static str>,
    /// The certificate must stay valid this many more days; `None`: no expiry check.
    pub(crate) expire_days: Option<u64>,
}

impl Verify {
    /// Whether the line asks for STARTTLS: `with tls`, or `with tls insecure` alone.
    pub(crate) fn wanted(cx: &Ctx) -> bool {
        cx.params.flag("with_tls") || cx.params.flag("with_tls_insecure")
    }

    /// From the options shared with `https`. `with tls insecure` skips chain and name
    /// verification only: the expiry limit (`with expiration`, `and cannot expire within N
    /// days`, default 14) still applies. `no_ssl_check` (http's, from the original) turns
    /// every certificate check off, but an explicitly given limit still applies.
    pub(crate) fn of(cx: &Ctx) -> Self {
        Verify::from_params(&cx.params)
    }

    pub(crate) fn from_params(params: &Params) -> Self {
        let limit = params.int("expiration").or(params.int("expire_days"));
        let (skip, expire_days) = if params.flag("with_tls_insecure") {
            (
                Some("with tls insecure"),
                Some(limit.unwrap_or(EXPIRE_DAYS)),
            )
        } else if params.flag("no_ssl_check") {
            (Some("no_ssl_check"), limit)
        } else {
            (None, Some(limit.unwrap_or(EXPIRE_DAYS)))
        };
        Verify { skip, expire_days }
    }

    /// Judges the server's certificate (DER) against the expiry limit and, when chain and
    /// name verification was skipped, its validity period too; the reason then says so.
    pub(crate) fn judge(&self, der: &[u8], now: i64) -> Result<(), String> {
        let Some(days) = self.expire_days else {
            return Ok(());
        };
        check_expiry(der, days, now).map_err(|e| match self.skip {
            Some(option) => format!("{e} (verification skipped: {option})"),
            None => e,
        })
    }
}

/// The name the certificate must be valid for: the target's host as written (the URL host for
/// URL targets), or the address under test when the target is no valid name.
pub(crate) fn server_name(job: &Job, addr: Option<IpAddr>) -> Result<ServerName<'static>, String> {
    let host = match url::Url::parse(&job.target) {
        Ok(u) if job.target.contains("://") => u.host_str().unwrap_or_default().to_string(),
        _ => job.target.clone(),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(name) = ServerName::try_from(host.to_string()) {
        return Ok(name);
    }
    addr.map(ServerName::from)
        .ok_or_else(|| format!("{:?} is no host name for TLS", net::clip(host)))
}

/// The shared config without ALPN: mail and other non-HTTP servers may refuse `http/1.1`.
fn plain_config(cx: &Ctx, insecure: bool) -> Arc<ClientConfig> {
    let mut config = (*cx.env.tls_config(insecure)).clone();
    config.alpn_protocols.clear();
    Arc::new(config)
}

/// Runs a TLS client handshake over `stream` before the deadline, verifying the certificate
/// (chain and name) and its expiry as `verify` says.
pub(crate) async fn handshake<S: Io>(
    cx: &Ctx,
    stream: S,
    verify: Verify,
) -> Result<TlsStream<S>, String> {
    let name = server_name(&cx.job, cx.addr)?;
    let port = cx.job.port.unwrap_or(0);
    let config = plain_config(cx, verify.skip.is_some());
    let tls = net::within(
        cx,
        "in the TLS handshake",
        connect(config, name, port, stream),
    )
    .await?;
    let der = peer_leaf(&tls)?;
    if let Some(t) = not_after(der) {
        cx.saw_certificate_expiry(t);
    }
    verify.judge(der, unix_now())?;
    Ok(tls)
}

/// A TLS client handshake over `stream` with `config`, for `name`; a failure reads "TLS
/// handshake on port PORT failed: …". No deadline of its own: the caller's applies.
pub(crate) async fn connect<S: Io>(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    port: u16,
    stream: S,
) -> Result<TlsStream<S>, String> {
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| {
            format!(
                "TLS handshake on port {port} failed: {}",
                handshake_error(&e)
            )
        })
}

/// The server's own certificate (DER) from a finished handshake.
pub(crate) fn peer_leaf<S>(tls: &TlsStream<S>) -> Result<&[u8], String> {
    let (_, conn) = tls.get_ref();
    match conn.peer_certificates().and_then(|c| c.first()) {
        Some(der) => Ok(der.as_ref()),
        None => Err("the server sent no certificate".into()),
    }
}

/// A plain-worded reason for a failed handshake.
fn handshake_error(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(t) => tls_error(t),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "connection closed by peer".into(),
        None => net::io_reason(e),
    }
}

/// A rustls error in an operator's words (shared with `https`).
pub(crate) fn tls_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => certificate_error(c),
        rustls::Error::AlertReceived(a) => format!("the server sent alert {a:?}"),
        other => other.to_string(),
    }
}

/// Why a certificate was refused, in an operator's words.
fn certificate_error(e: &CertificateError) -> String {
    use CertificateError::*;
    match e {
        Expired => "certificate has expired".into(),
        ExpiredContext { not_after, .. } => {
            format!("certificate expired on {}", unix_date(*not_after))
        }
        NotValidYet => "certificate is not valid yet".into(),
        NotValidYetContext { not_before, .. } => {
            format!("certificate is not valid until {}", unix_date(*not_before))
        }
        NotValidForName => "certificate is not valid for this name".into(),
        NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "certificate is not valid for name {:?} (it names {})",
            expected.to_str(),
            net::clip(&presented.join(", "))
        ),
        UnknownIssuer => "certificate is not trusted (unknown issuer)".into(),
        BadSignature => "certificate has a bad signature".into(),
        Revoked => "certificate is revoked".into(),
        other => format!("certificate refused: {other:?}"),
    }
}

/// Fails when the certificate is not valid yet, has expired, or expires within `min_days`
/// days of `now`. (rustls refuses the first two itself, unless verification is skipped.)
pub(crate) fn check_expiry(der: &[u8], min_days: u64, now: i64) -> Result<(), String> {
    let e = expiry(der, now)?;
    if let Some(from) = &e.not_before {
        return Err(format!("certificate is not valid until {from}"));
    }
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

    use super::Stream;
    use crate::net::testutil::{serve, Heard};
    use crate::Env;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::ServerConfig;
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
        params_from(cn, names, -86_400, secs)
    }

    /// Subject `cn`, valid from `from` until `until` seconds from now.
    fn params_from(cn: &str, names: &[&str], from: i64, until: i64) -> CertificateParams {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        let now = ASN1Time::now().to_datetime();
        let at = |secs: i64| {
            let d = Duration::from_secs(secs.unsigned_abs());
            if secs >= 0 {
                now + d
            } else {
                now - d
            }
        };
        p.not_before = at(from);
        p.not_after = at(until);
        p
    }

    /// The test CA (one per test process); [`env`] trusts it.
    pub(crate) fn ca() -> &'static Ca {
        static CA: OnceLock<Ca> = OnceLock::new();
        CA.get_or_init(|| {
            let key = KeyPair::generate().expect("key");
            let mut p = params("custodian test CA", &[], 3650 * 86_400);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = p.self_signed(&key).expect("ca cert");
            Ca {
                pem: cert.pem(),
                cert,
                key,
            }
        })
    }

    /// The environment of probe unit tests: the bundled roots plus the test CA, and no
    /// nameservers (each DNS test passes its fake server itself).
    pub(crate) fn env() -> Arc<Env> {
        static ENV: OnceLock<Arc<Env>> = OnceLock::new();
        ENV.get_or_init(|| {
            let (mut roots, _) = super::root_store(super::Roots::Bundled);
            assert_eq!(
                roots.add_parsable_certificates([ca().cert.der().clone()]),
                (1, 0)
            );
            let none = Err("unit tests set no nameservers".to_string());
            Arc::new(Env::from_parts(roots, none, Vec::new()))
        })
        .clone()
    }

    /// A leaf for `names` valid for `secs` more seconds, signed by `ca` (or self-signed).
    pub(crate) fn leaf(ca: Option<&Ca>, names: &[&str], secs: i64) -> Leaf {
        leaf_from(ca, names, -86_400, secs)
    }

    /// A leaf for `names` valid from `from` until `until` seconds from now.
    pub(crate) fn leaf_from(ca: Option<&Ca>, names: &[&str], from: i64, until: i64) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let p = params_from(names.first().copied().unwrap_or("leaf"), names, from, until);
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

    /// When a [`scripted_tls`] server speaks TLS.
    #[derive(Clone, Copy)]
    pub(crate) enum Mode {
        /// From the first byte (smtps, imaps, pop3s).
        Implicit,
        /// After answering the line that starts with this word (STARTTLS, `a0 STARTTLS`, STLS).
        After(&'static str),
    }

    /// A line server like `testutil::scripted`, speaking TLS with `config` as `mode` says.
    pub(crate) async fn scripted_tls(
        config: Arc<ServerConfig>,
        mode: Mode,
        greeting: &'static str,
        answer: fn(&str) -> Option<&'static str>,
    ) -> (std::net::SocketAddr, Heard) {
        let heard = Heard::default();
        let log = heard.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let addr = serve(move |s| {
            let (log, acceptor) = (log.clone(), acceptor.clone());
            async move {
                let stream: Stream = match mode {
                    Mode::Implicit => match acceptor.accept(s).await {
                        Ok(t) => Box::new(t),
                        Err(_) => return,
                    },
                    Mode::After(_) => Box::new(s),
                };
                converse(stream, acceptor, mode, greeting, answer, log).await;
            }
        })
        .await;
        (addr, heard)
    }

    async fn converse(
        stream: Stream,
        acceptor: tokio_rustls::TlsAcceptor,
        mode: Mode,
        greeting: &'static str,
        answer: fn(&str) -> Option<&'static str>,
        log: Heard,
    ) {
        let mut r = BufReader::new(stream);
        let _ = r.get_mut().write_all(greeting.as_bytes()).await;
        let mut line = String::new();
        while matches!(r.read_line(&mut line).await, Ok(n) if n > 0) {
            let got = line.trim_end().to_string();
            line.clear();
            log.lock().expect("lock").push(got.clone());
            let Some(reply) = answer(&got) else { break };
            let _ = r.get_mut().write_all(reply.as_bytes()).await;
            let upgrade = matches!(mode, Mode::After(w) if got.starts_with(w));
            if upgrade && agrees(reply) {
                match acceptor.accept(r.into_inner()).await {
                    Ok(t) => r = BufReader::new(Box::new(t) as Stream),
                    Err(_) => return,
                }
            }
        }
    }

    /// Whether a reply agrees to start TLS: `220` (SMTP), `+OK` (POP3), `TAG OK` (IMAP).
    fn agrees(reply: &str) -> bool {
        let first = reply.lines().next().unwrap_or("");
        first.starts_with("220")
            || first.starts_with("+OK")
            || first.split(' ').nth(1) == Some("OK")
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

    #[test]
    fn expiration_formats() {
        assert_eq!(parse_expiration("30"), Ok(30));
        assert_eq!(parse_expiration("30d"), Ok(30));
        assert_eq!(parse_expiration(" 2W "), Ok(14));
        let e = parse_expiration("soon").expect_err("soon");
        assert_eq!(e.msg, "`soon` is not a duration");
        assert_eq!(
            e.hint.as_deref(),
            Some("write days (30, 30d) or weeks (2w)")
        );
        assert!(parse_expiration("3m").is_err());
        assert!(parse_expiration("-3d").is_err());
        assert!(parse_expiration("").is_err());
        assert!(parse_expiration("99999999999999999w").is_err());
        let e = parse_expiration("5300w").expect_err("too long");
        assert_eq!(e.msg, "37100 days is more than 36500");
    }

    /// The params of an ssl or smtp line with these options, parsed as the worker does.
    fn params(probe: &str, opts: &[(&str, serde_json::Value)]) -> Result<Params, Invalid> {
        let mut j = Job::new(probe, "h", Some(443));
        for (k, v) in opts {
            j.options.insert(k.to_string(), v.clone());
        }
        crate::prepare(&j)
    }

    fn verify(probe: &str, opts: &[(&str, serde_json::Value)]) -> Verify {
        Verify::from_params(&params(probe, opts).expect("valid options"))
    }

    #[test]
    fn expiry_limits_parse_and_refuse() {
        use serde_json::json;
        let limit = |o: &[(&str, serde_json::Value)]| verify("ssl", o).expire_days;
        assert_eq!(limit(&[]), Some(14));
        assert_eq!(limit(&[("expire_days", json!(5))]), Some(5));
        assert_eq!(limit(&[("expire_days", json!(0))]), Some(0));
        assert_eq!(limit(&[("expiration", json!("1w"))]), Some(7));
        let both = [("expiration", json!("1w")), ("expire_days", json!(30))];
        assert_eq!(limit(&both), Some(7), "with expiration wins");
        let e = params("ssl", &[("expiration", json!("soon"))]).expect_err("soon");
        assert_eq!(e.msg, "option `expiration`: `soon` is not a duration");
        let e = params("ssl", &[("expire_days", json!(36_501))]).expect_err("huge");
        assert_eq!(
            e.msg,
            "option `expire_days`: 36501 is out of range (0-36500)"
        );
        assert!(params("https", &[("expire_days", json!("ten"))]).is_err());
    }

    #[test]
    fn insecure_skips_verification_but_keeps_the_limit() {
        use serde_json::json;
        let insecure = ("with_tls_insecure", json!(true));
        let v = verify("smtp", std::slice::from_ref(&insecure));
        assert_eq!(
            v,
            Verify {
                skip: Some("with tls insecure"),
                expire_days: Some(14)
            }
        );
        let v = verify("imaps", &[insecure.clone(), ("expire_days", json!(30))]);
        assert_eq!(v.expire_days, Some(30));
        let v = verify("ssl", &[insecure, ("expiration", json!("2w"))]);
        assert_eq!(v.expire_days, Some(14));
        // The original's no_ssl_check turns the default limit off, not an explicit one.
        let v = verify("https", &[("no_ssl_check", json!(true))]);
        assert_eq!(
            v,
            Verify {
                skip: Some("no_ssl_check"),
                expire_days: None
            }
        );
        let v = verify(
            "https",
            &[("no_ssl_check", json!(true)), ("expire_days", json!(9))],
        );
        assert_eq!(v.expire_days, Some(9));
    }

    /// The handshake every TLS type shares (smtps, imaps, pop3s, ldaps, STARTTLS) against an
    /// in-process server whose self-signed, misnamed certificate expires in 3 days.
    #[tokio::test]
    async fn insecure_handshake_still_judges_the_expiry() {
        use crate::net::testutil::cx;
        use serde_json::json;
        let l = leaf(None, &["other.custodian.test"], 3 * DAY + 3600);
        let (a, _) = scripted_tls(server_config(&l), Mode::Implicit, "220 hi\r\n", |_| None).await;
        let shake = |opts: &[(&str, serde_json::Value)]| {
            let mut j = Job::new("smtps", "127.0.0.1", Some(a.port()));
            for (k, v) in opts {
                j.options.insert(k.to_string(), v.clone());
            }
            let cx = cx(j, 3.0);
            async move {
                let tcp = net::connect(&cx).await?;
                handshake(&cx, tcp, Verify::of(&cx)).await.map(|_| ())
            }
        };
        let err = shake(&[]).await.expect_err("untrusted");
        assert!(
            err.ends_with("certificate is not trusted (unknown issuer)"),
            "{err}"
        );
        let insecure = ("with_tls_insecure", json!(true));
        let err = shake(std::slice::from_ref(&insecure))
            .await
            .expect_err("too soon");
        assert!(
            err.starts_with("certificate expires in 3 days (at "),
            "{err}"
        );
        assert!(
            err.ends_with("less than 14 (verification skipped: with tls insecure)"),
            "{err}"
        );
        let err = shake(&[insecure.clone(), ("expire_days", json!(30))])
            .await
            .expect_err("30");
        assert!(err.contains("less than 30 (verification skipped"), "{err}");
        assert_eq!(shake(&[insecure, ("expire_days", json!(2))]).await, Ok(()));
        // The certificate's notAfter is kept for serve's /metrics, pass or fail.
        let mut j = Job::new("smtps", "127.0.0.1", Some(a.port()));
        j.options.insert("with_tls_insecure".into(), json!(true));
        let cx = cx(j, 3.0);
        let tcp = net::connect(&cx).await.expect("connect");
        let _ = handshake(&cx, tcp, Verify::of(&cx)).await;
        let want = unix_now() + 3 * DAY + 3600;
        let got = cx.certificate_expiry().expect("expiry seen");
        assert!((got - want).abs() < 300, "{got} vs {want}");
    }

    #[test]
    fn judge_names_the_skipped_verification() {
        let l = leaf(None, &["a.test"], 3 * DAY + 3600);
        let der = &l.chain[0];
        let v = Verify {
            skip: Some("with tls insecure"),
            expire_days: Some(14),
        };
        let err = v.judge(der, unix_now()).expect_err("too soon");
        assert!(
            err.starts_with("certificate expires in 3 days (at "),
            "{err}"
        );
        assert!(
            err.ends_with("), less than 14 (verification skipped: with tls insecure)"),
            "{err}"
        );
        let verified = Verify { skip: None, ..v };
        assert!(verified
            .judge(der, unix_now())
            .expect_err("soon")
            .ends_with("less than 14"));
        let none = Verify {
            skip: Some("no_ssl_check"),
            expire_days: None,
        };
        assert_eq!(none.judge(der, unix_now()), Ok(()));
        let later = leaf_from(None, &["a.test"], DAY, 365 * DAY);
        let err = v.judge(&later.chain[0], unix_now()).expect_err("not yet");
        assert!(err.starts_with("certificate is not valid until "), "{err}");
        assert!(
            err.ends_with("(verification skipped: with tls insecure)"),
            "{err}"
        );
    }

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
    fn server_names_come_from_the_target_as_written() {
        let name = |target: &str| {
            let job = Job::new("ssl", target, Some(443));
            let addr = Some(IpAddr::from([127, 0, 0, 9]));
            server_name(&job, addr).map(|n| n.to_str().into_owned())
        };
        assert_eq!(name("mail.example.com"), Ok("mail.example.com".into()));
        assert_eq!(name("https://[::1]:8443/x"), Ok("::1".into()));
        assert_eq!(name("192.0.2.7"), Ok("192.0.2.7".into()));
        assert_eq!(name("not a name!"), Ok("127.0.0.9".into()));
        let job = Job::new("ssl", "not a name!", Some(443));
        assert!(server_name(&job, None).is_err());
    }

    #[test]
    fn certificate_errors_read_plainly() {
        assert_eq!(
            certificate_error(&CertificateError::UnknownIssuer),
            "certificate is not trusted (unknown issuer)"
        );
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(86_400 * 2)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(86_400)),
        };
        assert_eq!(
            certificate_error(&expired),
            "certificate expired on 1970-01-02 00:00 UTC"
        );
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
        let mut roots = RootCertStore::empty();
        let two = dir.join(format!("custodian-two-{}.pem", std::process::id()));
        std::fs::write(&two, format!("{}{}", ca.pem, ca.pem)).expect("write");
        assert_eq!(add_ca_file(&mut roots, &two), Ok(2));
        let empty = dir.join(format!("custodian-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "no pem here\n").expect("write");
        let err = add_ca_file(&mut roots, &empty).expect_err("empty");
        assert!(err.ends_with("holds no certificate"), "{err}");
        let missing = dir.join("custodian-missing.pem");
        let err = add_ca_file(&mut roots, &missing).expect_err("missing");
        assert!(err.starts_with("cannot read CA file"), "{err}");
        let _ = std::fs::remove_file(two);
        let _ = std::fs::remove_file(empty);
    }

    #[test]
    fn bundled_roots_come_without_notes() {
        let (roots, notes) = root_store(Roots::Bundled);
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        assert!(notes.is_empty(), "{notes:?}");
    }
}
