//! `smtp`: one email per notice through a relay. Subject: the headline (`RAISE: <subject or
//! target> (<type>) - <reason>`); body: type, target, reason, `otherwise` text, line and
//! timing. A small client: EHLO, optional STARTTLS (rustls, verified against the web roots
//! plus `ca_file`), AUTH PLAIN (only inside TLS), MAIL, RCPT per recipient, DATA, QUIT.
//! Settings: `smtp_target = ADDR[,ADDR...]` (relay 127.0.0.1:25), or `[alerters.smtp]` with
//! `relay` (IP[:PORT]), `starttls`, `tls_name`, `ca_file`, `username`, `password`, `from`,
//! `to`, `helo`.

use crate::{headline, human_duration, socket_addr, Alerter, Common, Error};
use base64::Engine;
use custodian_core::state::AlertEvent;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};

pub const DEFAULT_PORT: u16 = 25;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `IP` or `IP:PORT` of the relay.
    #[serde(default = "default_relay")]
    pub relay: String,
    /// Upgrade with STARTTLS before sending (required when set).
    #[serde(default)]
    pub starttls: bool,
    /// Name the relay's certificate must carry (default: its IP address).
    pub tls_name: Option<String>,
    /// Extra PEM CA bundle trusted for the relay.
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
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

impl SmtpConfig {
    pub fn from_target(target: &str) -> Result<Self, Error> {
        Ok(SmtpConfig {
            relay: default_relay(),
            starttls: false,
            tls_name: None,
            ca_file: None,
            username: None,
            password: None,
            from: default_from(),
            to: target.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            helo: default_helo(),
        })
    }

    pub fn validate(&self) -> Result<(), Error> {
        socket_addr(&self.relay, DEFAULT_PORT)?;
        if self.to.is_empty() {
            return Err(Error::Config("no recipient (`to`)".into()));
        }
        for a in self.to.iter().chain([&self.from]) {
            if !a.contains('@') || a.contains(['<', '>', '\r', '\n', ' ']) {
                return Err(Error::Config(format!("{a:?} is not a mail address")));
            }
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(Error::Config("username and password go together".into()));
        }
        if self.username.is_some() && !self.starttls {
            return Err(Error::Config("AUTH needs starttls = true (no passwords in clear)".into()));
        }
        Ok(())
    }
}

pub struct SmtpAlerter {
    config: SmtpConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl SmtpAlerter {
    pub fn new(config: SmtpConfig, _: &Common) -> Result<Self, Error> {
        let tls = if config.starttls {
            Some(tls_config(config.ca_file.as_deref())?)
        } else {
            None
        };
        Ok(SmtpAlerter { config, tls })
    }
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, Error> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Header values on one line: CR and LF would start new headers.
fn header_safe(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The message (headers and body, CRLF line ends, not yet dot-stuffed) for `event`.
pub fn render(event: &AlertEvent, config: &SmtpConfig) -> String {
    let r = &event.result;
    let date = chrono::DateTime::from_timestamp(event.at.min(i64::MAX as u64) as i64, 0)
        .unwrap_or_default()
        .to_rfc2822();
    let mut body = vec![
        format!("Event:     {}", event.kind.word()),
        format!("Type:      {}", r.probe),
        format!("Target:    {}", r.target),
    ];
    body.extend(r.subject.as_ref().map(|s| format!("Subject:   {s}")));
    body.extend(r.error.as_ref().map(|e| format!("Reason:    {e}")));
    body.extend(r.otherwise.as_ref().map(|o| format!("Otherwise: {o}")));
    body.extend(event.failing_for().map(|d| format!("Failing:   {}", human_duration(d))));
    body.push(format!("Test:      {} ({}:{})", r.line, r.file, r.lineno));
    let headers = [
        format!("From: {}", config.from),
        format!("To: {}", config.to.join(", ")),
        format!("Subject: {}", header_safe(&headline(event))),
        format!("Date: {date}"),
        "MIME-Version: 1.0".to_string(),
        "Content-Type: text/plain; charset=utf-8".to_string(),
        "Content-Transfer-Encoding: 8bit".to_string(),
    ];
    let body: Vec<String> = body.iter().map(|l| l.replace(['\r', '\n'], " ")).collect();
    format!("{}\r\n\r\n{}\r\n", headers.join("\r\n"), body.join("\r\n"))
}

/// Dot-stuffs `message` and ends it with the lone dot.
pub fn data_block(message: &str) -> String {
    let mut out = String::new();
    for line in message.split("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    // `split` leaves one empty piece after the final CRLF: drop its extra CRLF.
    out.truncate(out.len() - 2);
    out.push_str(".\r\n");
    out
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Conn = BufStream<Box<dyn Io>>;

/// Reads one (possibly multi-line) reply; returns its code and text.
async fn reply(io: &mut Conn) -> Result<(u16, String), Error> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if (&mut *io).take(4096).read_line(&mut line).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let code = line.get(..3).and_then(|c| c.parse().ok());
        let Some(code) = code else {
            return Err(Error::Rejected(format!("bad SMTP reply {:?}", line.trim_end())));
        };
        text.push_str(line.get(4..).unwrap_or("").trim_end());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push('\n');
    }
}

/// Sends `line` (CRLF added) and wants a reply of class `want` (2 or 3).
async fn command(io: &mut Conn, line: &str, want: u16) -> Result<String, Error> {
    io.write_all(format!("{line}\r\n").as_bytes()).await?;
    io.flush().await?;
    expect(io, want, line).await
}

async fn expect(io: &mut Conn, want: u16, after: &str) -> Result<String, Error> {
    let (code, text) = reply(io).await?;
    if code / 100 != want {
        // The AUTH line carries the password: never quote it.
        let what = if after.starts_with("AUTH") { "AUTH" } else { after };
        return Err(Error::Rejected(format!("{what}: {code} {text}")));
    }
    Ok(text)
}

impl SmtpAlerter {
    async fn connect(&self) -> Result<Conn, Error> {
        let addr = socket_addr(&self.config.relay, DEFAULT_PORT)?;
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut io: Conn = BufStream::new(Box::new(tcp));
        expect(&mut io, 2, "greeting").await?;
        let ehlo = format!("EHLO {}", self.config.helo);
        let features = command(&mut io, &ehlo, 2).await?;
        let Some(tls) = &self.tls else { return Ok(io) };
        if !features.lines().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
            return Err(Error::Rejected("relay does not offer STARTTLS".into()));
        }
        command(&mut io, "STARTTLS", 2).await?;
        let name = self.config.tls_name.clone().unwrap_or_else(|| addr.ip().to_string());
        let server = rustls::pki_types::ServerName::try_from(name)
            .map_err(|e| Error::Config(format!("tls_name: {e}")))?;
        let plain = io.into_inner();
        let secured = tokio_rustls::TlsConnector::from(Arc::clone(tls)).connect(server, plain).await?;
        let mut io: Conn = BufStream::new(Box::new(secured));
        command(&mut io, &ehlo, 2).await?;
        Ok(io)
    }

    async fn send(&self, event: &AlertEvent) -> Result<(), Error> {
        let c = &self.config;
        let mut io = self.connect().await?;
        if let (Some(user), Some(pw)) = (&c.username, &c.password) {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"));
            command(&mut io, &format!("AUTH PLAIN {token}"), 2).await?;
        }
        command(&mut io, &format!("MAIL FROM:<{}>", c.from), 2).await?;
        for to in &c.to {
            command(&mut io, &format!("RCPT TO:<{to}>"), 2).await?;
        }
        command(&mut io, "DATA", 3).await?;
        io.write_all(data_block(&render(event, c)).as_bytes()).await?;
        io.flush().await?;
        expect(&mut io, 2, "end of data").await?;
        // The mail is accepted; a failing QUIT changes nothing.
        let _ = command(&mut io, "QUIT", 2).await;
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
