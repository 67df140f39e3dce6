//! `smtp`: one email per notice through a relay, sent with lettre. Subject: the headline
//! (`RAISE: <subject or target> (<type>) - <reason>`, RFC 2047-encoded when not ASCII); body:
//! type, target, reason, `otherwise` text, line and timing; `Date` (the event's time) and a
//! unique `Message-ID`. TLS is rustls, verified against the system's roots plus `ca_file`:
//! implicit TLS for `smtps://` or port 465, else STARTTLS `required`, `opportunistic` (when
//! offered) or `none`. AUTH PLAIN or LOGIN, only inside TLS; the password may be
//! `${env:NAME}` or `${file:/path}`, read at each send.
//! Settings: `smtp_target = ADDR[,ADDR...]` (relay 127.0.0.1:25), or `[alerters.smtp]` with
//! `relay` (`[smtp://|smtps://]IP[:PORT]`), `starttls`, `tls_name`, `ca_file`, `username`,
//! `password`, `from`, `to`, `helo`.

use crate::{headline, human_duration, socket_addr, Alerter, Common, Error};
use custodian_core::secret::{self, SecretRef};
use custodian_core::state::AlertEvent;
use futures::future::BoxFuture;
use lettre::message::{header::ContentType, Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::PathBuf;

pub const DEFAULT_PORT: u16 = 25;
/// Submission over implicit TLS (RFC 8314).
pub const SMTPS_PORT: u16 = 465;

/// Whether to upgrade a plain connection with STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    /// Refuse to send unless the relay offers STARTTLS and the upgrade succeeds.
    Required,
    /// Upgrade when the relay offers it (a failed upgrade is an error), else send in clear.
    Opportunistic,
    /// Never upgrade.
    None,
}

/// `starttls = true|false` (the earlier form) or `"required"|"opportunistic"|"none"`.
fn starttls_setting<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StartTls>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Bool(bool),
        Mode(StartTls),
    }
    Ok(Some(match Either::deserialize(d)? {
        Either::Bool(true) => StartTls::Required,
        Either::Bool(false) => StartTls::None,
        Either::Mode(m) => m,
    }))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `IP`, `IP:PORT`, `smtp://IP[:PORT]` or `smtps://IP[:PORT]` (implicit TLS, port 465).
    #[serde(default = "default_relay")]
    pub relay: String,
    /// STARTTLS on a plain connection (default: `opportunistic`, but `none` for a loopback
    /// relay, whose certificate could not match its address and whose mail stays on the host).
    #[serde(default, deserialize_with = "starttls_setting")]
    pub starttls: Option<StartTls>,
    /// Name the relay's certificate must carry (default: its IP address).
    pub tls_name: Option<String>,
    /// Extra PEM CA bundle trusted for the relay, besides the system's roots.
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    /// The password, or `${env:NAME}` / `${file:/path}` naming where it is read at each send.
    pub password: Option<String>,
    #[serde(default = "default_from")]
    pub from: String,
    pub to: Vec<String>,
    #[serde(default = "default_helo")]
    pub helo: String,
}

fn default_relay() -> String {
    "127.0.0.1".into()
}
fn default_from() -> String {
    "custodian@localhost".into()
}
fn default_helo() -> String {
    "localhost".into()
}

/// How the connection is secured, resolved from `relay` and `starttls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Implicit,
    StartTls(StartTls),
}

impl SmtpConfig {
    pub fn from_target(target: &str) -> Result<Self, Error> {
        Ok(SmtpConfig {
            relay: default_relay(),
            starttls: None,
            tls_name: None,
            ca_file: None,
            username: None,
            password: None,
            from: default_from(),
            to: target
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            helo: default_helo(),
        })
    }

    /// The relay's address and whether it speaks TLS from the first byte.
    pub fn relay_addr(&self) -> Result<(SocketAddr, bool), Error> {
        let (rest, smtps) = match (
            self.relay.strip_prefix("smtps://"),
            self.relay.strip_prefix("smtp://"),
        ) {
            (Some(r), _) => (r, true),
            (_, Some(r)) => (r, false),
            _ => (self.relay.as_str(), false),
        };
        let addr = socket_addr(rest, if smtps { SMTPS_PORT } else { DEFAULT_PORT })?;
        Ok((addr, smtps || addr.port() == SMTPS_PORT))
    }

    /// Implicit TLS, or the STARTTLS mode in force.
    pub fn security(&self) -> Result<Security, Error> {
        let (addr, implicit) = self.relay_addr()?;
        match (implicit, self.starttls) {
            (true, None) => Ok(Security::Implicit),
            (true, Some(_)) => Err(Error::Config(
                "`starttls` does not apply to implicit TLS (smtps:// or port 465)".into(),
            )),
            (false, Some(mode)) => Ok(Security::StartTls(mode)),
            (false, None) if addr.ip().is_loopback() => Ok(Security::StartTls(StartTls::None)),
            (false, None) => Ok(Security::StartTls(StartTls::Opportunistic)),
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        let security = self.security()?;
        if self.to.is_empty() {
            return Err(Error::Config("no recipient (`to`)".into()));
        }
        for a in self.to.iter().chain([&self.from]) {
            mailbox(a)?;
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(Error::Config("username and password go together".into()));
        }
        if let Some(pw) = &self.password {
            secret::reference(pw).map_err(|e| Error::Config(format!("password: {e}")))?;
        }
        let tls_certain = matches!(
            security,
            Security::Implicit | Security::StartTls(StartTls::Required)
        );
        if self.username.is_some() && !tls_certain {
            return Err(Error::Config(
                "AUTH needs TLS: starttls = \"required\" or smtps:// (no passwords in clear)"
                    .into(),
            ));
        }
        if let Some(name) = &self.tls_name {
            rustls::pki_types::ServerName::try_from(name.as_str())
                .map_err(|e| Error::Config(format!("tls_name {name:?}: {e}")))?;
        }
        Ok(())
    }
}

/// A mail address (`ops@example.com` or `Ops <ops@example.com>`), as lettre parses it.
fn mailbox(text: &str) -> Result<Mailbox, Error> {
    text.parse::<Mailbox>()
        .map_err(|e| Error::Config(format!("{text:?} is not a mail address: {e}")))
}

pub struct SmtpAlerter {
    config: SmtpConfig,
    addr: SocketAddr,
    tls: Tls,
    password: Option<SecretRef>,
}

impl SmtpAlerter {
    pub fn new(config: SmtpConfig, _: &Common) -> Result<Self, Error> {
        config.validate()?;
        let (addr, _) = config.relay_addr()?;
        let tls = match config.security()? {
            Security::StartTls(StartTls::None) => Tls::None,
            Security::StartTls(StartTls::Required) => Tls::Required(tls_params(&config, addr)?),
            Security::StartTls(StartTls::Opportunistic) => {
                Tls::Opportunistic(tls_params(&config, addr)?)
            }
            Security::Implicit => Tls::Wrapper(tls_params(&config, addr)?),
        };
        let password = match &config.password {
            Some(p) => secret::reference(p).map_err(|e| Error::Config(format!("password: {e}")))?,
            None => None,
        };
        Ok(SmtpAlerter {
            addr,
            tls,
            password,
            config,
        })
    }

    /// The password as configured, or read now from its reference.
    fn password(&self) -> Result<Option<String>, Error> {
        let Some(pw) = &self.config.password else {
            return Ok(None);
        };
        let value = match &self.password {
            None => pw.clone(),
            Some(SecretRef::Env(name)) => std::env::var(name)
                .map_err(|_| Error::Config(format!("password: ${{env:{name}}} is not set")))?,
            Some(SecretRef::File(path)) => std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("password: {}: {e}", path.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        };
        Ok(Some(value))
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, Error> {
        let c = &self.config;
        let mut b =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.addr.ip().to_string())
                .port(self.addr.port())
                .tls(self.tls.clone())
                .hello_name(ClientId::Domain(c.helo.clone()));
        if let (Some(user), Some(pw)) = (&c.username, self.password()?) {
            b = b
                .credentials(Credentials::new(user.clone(), pw))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(b.build())
    }
}

fn tls_params(config: &SmtpConfig, addr: SocketAddr) -> Result<TlsParameters, Error> {
    let name = config
        .tls_name
        .clone()
        .unwrap_or_else(|| addr.ip().to_string());
    let mut b = TlsParameters::builder(name);
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls()
        .map_err(|e| Error::Config(format!("TLS: {e}")))
}

/// Header values on one line: CR and LF would start new headers.
fn header_safe(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The message for `event`: headers (Subject encoded by lettre when needed, Date, Message-ID)
/// and a plain-text body.
pub fn render(event: &AlertEvent, config: &SmtpConfig) -> Result<Message, Error> {
    let r = &event.result;
    let mut body = vec![
        format!("Event:     {}", event.kind.word()),
        format!("Type:      {}", r.probe),
        format!("Target:    {}", r.target),
    ];
    body.extend(r.subject.as_ref().map(|s| format!("Subject:   {s}")));
    body.extend(r.error.as_ref().map(|e| format!("Reason:    {e}")));
    body.extend(r.otherwise.as_ref().map(|o| format!("Otherwise: {o}")));
    body.extend(
        event
            .failing_for()
            .map(|d| format!("Failing:   {}", human_duration(d))),
    );
    body.push(format!("Test:      {} ({}:{})", r.line, r.file, r.lineno));
    let body: Vec<String> = body.iter().map(|l| l.replace(['\r', '\n'], " ")).collect();
    let from = mailbox(&config.from)?;
    // The right-hand side names the sender's domain, as RFC 5322 suggests.
    let id = format!(
        "<{}.{:016x}.custodian@{}>",
        event.at,
        rand::random::<u64>(),
        from.email.domain()
    );
    let mut m = Message::builder()
        .from(from)
        .subject(header_safe(&headline(event)))
        .date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(event.at))
        .message_id(Some(id))
        .header(ContentType::TEXT_PLAIN);
    for to in &config.to {
        m = m.to(mailbox(to)?);
    }
    m.body(body.join("\r\n") + "\r\n")
        .map_err(|e| Error::Config(format!("message: {e}")))
}

impl SmtpAlerter {
    async fn send(&self, event: &AlertEvent) -> Result<(), Error> {
        let message = render(event, &self.config)?;
        let transport = self.transport()?;
        transport.send(message).await.map_err(|e| {
            if e.is_permanent() || e.is_transient() {
                Error::Rejected(e.to_string())
            } else {
                Error::Io(std::io::Error::other(e.to_string()))
            }
        })?;
        Ok(())
    }
}

impl Alerter for SmtpAlerter {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn deliver<'a>(&'a self, event: &'a AlertEvent) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.send(event))
    }
}

#[cfg(test)]
mod tests;
