//! SMTP tests: the rendered message (encoded subject, Date, Message-ID), config checks, and a
//! dialogue with an in-test relay that records what it was sent.

use super::*;
use crate::testutil::{event, SECRET};
use base64::Engine;
use custodian_core::state::EventKind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn config(relay: &str) -> SmtpConfig {
    let mut c = SmtpConfig::from_target("ops@example.com, dev@example.com").expect("cfg");
    c.relay = relay.to_string();
    c
}

fn text(event: &AlertEvent) -> String {
    let m = render(event, &config("127.0.0.1")).expect("render");
    String::from_utf8(m.formatted()).expect("utf8")
}

/// The value of header `name`, unfolded.
fn header(msg: &str, name: &str) -> Option<String> {
    let head = msg.split("\r\n\r\n").next()?;
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded
        .split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
}

/// Decodes the RFC 2047 `=?utf-8?b?...?=` words lettre writes between plain words; the space
/// between two encoded words is not part of the text (RFC 2047 section 6.2).
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut last_encoded = false;
    for (i, w) in value.split(' ').enumerate() {
        let word = w
            .strip_prefix("=?utf-8?b?")
            .and_then(|w| w.strip_suffix("?="));
        if i > 0 && !(last_encoded && word.is_some()) {
            out.push(' ');
        }
        match word {
            Some(b64) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("base64");
                out.push_str(&String::from_utf8(raw).expect("utf8"));
            }
            None => out.push_str(w),
        }
        last_encoded = word.is_some();
    }
    out
}

#[test]
fn message_carries_subject_date_id_and_reason_but_no_secret() {
    let e = event(EventKind::Raise, 'F');
    let msg = text(&e);
    assert_eq!(
        header(&msg, "Subject").as_deref(),
        Some("RAISE: http://bob:********@127.0.0.1:8080/ (http) - HTTP 500 for ********"),
        "{msg}"
    );
    assert_eq!(
        header(&msg, "To").as_deref(),
        Some("ops@example.com, dev@example.com")
    );
    assert_eq!(
        header(&msg, "Date").as_deref(),
        Some("Tue, 14 Nov 2023 22:18:20 +0000"),
        "{msg}"
    );
    let id = header(&msg, "Message-ID").expect("Message-ID");
    assert!(
        id.starts_with("<1700000300.") && id.ends_with(".custodian@localhost>"),
        "{id}"
    );
    assert_ne!(
        header(&text(&e), "Message-ID"),
        Some(id),
        "each message has its own id"
    );
    assert!(msg.contains("Otherwise: web down\r\n") && msg.contains("Type:      http\r\n"));
    assert!(!msg.contains(SECRET));
    let mut e = event(EventKind::Raise, 'F');
    e.result.subject = Some("evil\r\nBcc: x@y".into());
    let msg = text(&e);
    assert!(!msg.contains("\r\nBcc:"), "{msg}");
}

#[test]
fn a_non_ascii_subject_is_rfc2047_encoded() {
    let mut e = event(EventKind::Raise, 'F');
    e.result.subject = Some("Zürich web ☃ – ünïcode".into());
    let msg = text(&e);
    let subject = header(&msg, "Subject").expect("subject");
    assert!(
        subject.is_ascii() && subject.contains("=?utf-8?b?"),
        "{subject}"
    );
    assert_eq!(
        decode_words(&subject),
        "RAISE: Zürich web ☃ – ünïcode (http) - HTTP 500 for ********"
    );
}

#[test]
fn configs_are_checked() {
    assert!(config("127.0.0.1:2525").validate().is_ok());
    assert!(config("mail.example.com").validate().is_err());
    assert!(SmtpConfig::from_target("")
        .expect("cfg")
        .validate()
        .is_err());
    for bad in ["ops@", "no-at-sign", "a b@example.com", "<x@y"] {
        let err = SmtpConfig::from_target(bad)
            .expect("cfg")
            .validate()
            .expect_err(bad);
        assert!(err.to_string().contains("is not a mail address"), "{err}");
    }
    let named = SmtpConfig::from_target("Ops Team <ops@example.com>").expect("cfg");
    assert!(named.validate().is_ok());
    let mut c = config("127.0.0.1");
    c.username = Some("u".into());
    c.password = Some("p".into());
    let err = c.validate().expect_err("auth in clear").to_string();
    assert!(err.contains("AUTH needs TLS"), "{err}");
    c.starttls = Some(StartTls::Required);
    assert!(c.validate().is_ok());
    c.password = Some("${env:1BAD}".into());
    assert!(c.validate().is_err());
    c.relay = "smtps://127.0.0.1".into();
    let err = c.validate().expect_err("both").to_string();
    assert!(err.contains("does not apply to implicit TLS"), "{err}");
}

#[test]
fn tls_mode_follows_relay_and_starttls() {
    let sec = |relay: &str, st: Option<StartTls>| {
        let mut c = config(relay);
        c.starttls = st;
        c.security().expect("security")
    };
    assert_eq!(sec("smtps://192.0.2.1", None), Security::Implicit);
    assert_eq!(sec("192.0.2.1:465", None), Security::Implicit);
    assert_eq!(
        config("smtps://192.0.2.1")
            .relay_addr()
            .expect("a")
            .0
            .port(),
        465
    );
    assert_eq!(
        sec("192.0.2.1", None),
        Security::StartTls(StartTls::Opportunistic)
    );
    assert_eq!(sec("127.0.0.1", None), Security::StartTls(StartTls::None));
    assert_eq!(
        sec("smtp://127.0.0.1:587", Some(StartTls::Required)),
        Security::StartTls(StartTls::Required)
    );
    let t: SmtpConfig = toml::from_str("to = [\"a@b.c\"]\nstarttls = true\n").expect("bool");
    assert_eq!(t.starttls, Some(StartTls::Required));
    let t: SmtpConfig = toml::from_str("to = [\"a@b.c\"]\nstarttls = \"none\"\n").expect("mode");
    assert_eq!(t.starttls, Some(StartTls::None));
    assert!(toml::from_str::<SmtpConfig>("to = [\"a@b.c\"]\nstarttls = \"maybe\"\n").is_err());
}

/// A relay that answers every command and records what it was sent, DATA included.
async fn relay(fail_rcpt: bool, starttls: bool) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        let (s, _) = l.accept().await.expect("accept");
        let mut io = BufReader::new(s);
        io.get_mut()
            .write_all(b"220 fake ESMTP\r\n")
            .await
            .expect("greet");
        let mut seen = Vec::new();
        let mut in_data = false;
        loop {
            let mut line = String::new();
            if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                return seen;
            }
            seen.push(line.trim_end().to_string());
            let answer: &[u8] = match line.trim_end() {
                "." if in_data => {
                    in_data = false;
                    b"250 queued\r\n"
                }
                _ if in_data => continue,
                l if l.starts_with("EHLO") && starttls => b"250-fake\r\n250 STARTTLS\r\n",
                l if l.starts_with("EHLO") => b"250-fake\r\n250 8BITMIME\r\n",
                "STARTTLS" => b"454 not now\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go\r\n"
                }
                l if l.starts_with("RCPT") && fail_rcpt => b"550 no such user\r\n",
                "QUIT" => b"221 bye\r\n",
                _ => b"250 ok\r\n",
            };
            io.get_mut().write_all(answer).await.expect("answer");
        }
    });
    (addr, task)
}

fn common() -> Common {
    Common { source: "s".into() }
}

#[tokio::test]
async fn delivers_through_a_relay_with_encoded_subject_date_and_id() {
    let (addr, task) = relay(false, false).await;
    let a = SmtpAlerter::new(config(&addr), &common()).expect("alerter");
    let mut e = event(EventKind::Raise, 'F');
    e.result.subject = Some("Café ☕".into());
    a.deliver(&e).await.expect("deliver");
    let seen = task.await.expect("join");
    assert_eq!(seen[0], "EHLO localhost");
    assert!(
        seen[1].starts_with("MAIL FROM:<custodian@localhost>"),
        "{seen:?}"
    );
    assert_eq!(
        seen[2..4],
        ["RCPT TO:<ops@example.com>", "RCPT TO:<dev@example.com>"]
    );
    let data = seen.join("\r\n");
    let subject = header(&data.replace("\r\n\r\n", "\r\n"), "Subject").expect("Subject");
    assert_eq!(
        decode_words(&subject),
        "RAISE: Café ☕ (http) - HTTP 500 for ********"
    );
    assert!(seen.iter().any(|l| l.starts_with("Date: ")), "{seen:?}");
    assert!(
        seen.iter().any(|l| l.starts_with("Message-ID: <")),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|l| l.is_ascii()),
        "8-bit header or body: {seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("QUIT"));
}

#[tokio::test]
async fn refusals_are_errors_and_starttls_is_required_when_set() {
    let (addr, _task) = relay(true, false).await;
    let a = SmtpAlerter::new(config(&addr), &common()).expect("alerter");
    let err = a
        .deliver(&event(EventKind::Raise, 'F'))
        .await
        .expect_err("550");
    assert!(err.to_string().contains("no such user"), "{err}");
    let (addr, task) = relay(false, false).await;
    let mut c = config(&addr);
    c.starttls = Some(StartTls::Required);
    let a = SmtpAlerter::new(c, &common()).expect("alerter");
    a.deliver(&event(EventKind::Raise, 'F'))
        .await
        .expect_err("no STARTTLS offered");
    let seen = task.await.expect("join");
    assert!(
        !seen.iter().any(|l| l.starts_with("MAIL")),
        "sent in clear: {seen:?}"
    );
    // Opportunistic: offered but refused is an error, never a silent fall back to clear.
    let (addr, task) = relay(false, true).await;
    let mut c = config(&addr);
    c.starttls = Some(StartTls::Opportunistic);
    let a = SmtpAlerter::new(c, &common()).expect("alerter");
    a.deliver(&event(EventKind::Raise, 'F'))
        .await
        .expect_err("454");
    let seen = task.await.expect("join");
    assert!(
        !seen.iter().any(|l| l.starts_with("MAIL")),
        "sent in clear: {seen:?}"
    );
}

#[tokio::test]
async fn a_password_reference_is_read_at_send_time() {
    let mut c = config("127.0.0.1:9");
    c.starttls = Some(StartTls::Required);
    c.username = Some("u".into());
    c.password = Some("${env:CUSTODIAN_TEST_SMTP_PW_UNSET}".into());
    let a = SmtpAlerter::new(c, &common()).expect("alerter");
    let err = a.password().expect_err("unset").to_string();
    assert!(err.contains("CUSTODIAN_TEST_SMTP_PW_UNSET"), "{err}");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\n").expect("write");
    let mut c = config("127.0.0.1:9");
    c.starttls = Some(StartTls::Required);
    c.username = Some("u".into());
    c.password = Some(format!("${{file:{}}}", file.display()));
    let a = SmtpAlerter::new(c, &common()).expect("alerter");
    assert_eq!(a.password().expect("read").as_deref(), Some("s3cret"));
}
