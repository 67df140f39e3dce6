//! SMTP tests: rendering, dot-stuffing, config checks, and a dialogue with an in-test relay.

use super::*;
use crate::testutil::{event, SECRET};
use custodian_core::state::EventKind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn config(relay: &str) -> SmtpConfig {
    let mut c = SmtpConfig::from_target("ops@example.com, dev@example.com").expect("cfg");
    c.relay = relay.to_string();
    c
}

#[test]
fn message_carries_subject_reason_and_otherwise_but_no_secret() {
    let msg = render(&event(EventKind::Raise, 'F'), &config("127.0.0.1"));
    assert!(msg.contains("\r\nSubject: RAISE: http://bob:********@127.0.0.1:8080/ (http) - HTTP 500 for ********\r\n"), "{msg}");
    assert!(msg.contains("To: ops@example.com, dev@example.com\r\n"));
    assert!(msg.contains("Otherwise: web down\r\n") && msg.contains("Type:      http\r\n"));
    assert!(!msg.contains(SECRET));
    let mut e = event(EventKind::Raise, 'F');
    e.result.subject = Some("evil\r\nBcc: x@y".into());
    let msg = render(&e, &config("127.0.0.1"));
    assert!(!msg.contains("\r\nBcc:"), "{msg}");
}

#[test]
fn data_is_dot_stuffed_and_terminated() {
    assert_eq!(data_block("a\r\n.b\r\n"), "a\r\n..b\r\n.\r\n");
}

#[test]
fn configs_are_checked() {
    assert!(config("127.0.0.1:2525").validate().is_ok());
    assert!(config("mail.example.com").validate().is_err());
    assert!(SmtpConfig::from_target("").expect("cfg").validate().is_err());
    let mut c = config("127.0.0.1");
    c.username = Some("u".into());
    c.password = Some("p".into());
    let err = c.validate().expect_err("auth in clear").to_string();
    assert!(err.contains("starttls"), "{err}");
}

/// A relay that answers every command in `script` order and records what it was sent.
async fn relay(fail_rcpt: bool) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        let (s, _) = l.accept().await.expect("accept");
        let mut io = BufReader::new(s);
        io.get_mut().write_all(b"220 fake ESMTP\r\n").await.expect("greet");
        let mut seen = Vec::new();
        let mut in_data = false;
        loop {
            let mut line = String::new();
            if io.read_line(&mut line).await.expect("read") == 0 {
                return seen;
            }
            seen.push(line.trim_end().to_string());
            let answer: &[u8] = match line.trim_end() {
                "." if in_data => {
                    in_data = false;
                    b"250 queued\r\n"
                }
                _ if in_data => continue,
                l if l.starts_with("EHLO") => b"250-fake\r\n250 8BITMIME\r\n",
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

#[tokio::test]
async fn delivers_through_a_relay() {
    let (addr, task) = relay(false).await;
    let a = SmtpAlerter::new(config(&addr), &Common { source: "s".into() }).expect("alerter");
    a.deliver(&event(EventKind::Raise, 'F')).await.expect("deliver");
    let seen = task.await.expect("join");
    assert_eq!(seen[0], "EHLO localhost");
    assert_eq!(seen[1], "MAIL FROM:<custodian@localhost>");
    assert_eq!(seen[2..4], ["RCPT TO:<ops@example.com>", "RCPT TO:<dev@example.com>"]);
    assert!(seen.iter().any(|l| l.starts_with("Subject: RAISE: ")));
    assert_eq!(seen.last().map(String::as_str), Some("QUIT"));
}

#[tokio::test]
async fn refusals_are_errors_and_starttls_is_required_when_set() {
    let (addr, _task) = relay(true).await;
    let a = SmtpAlerter::new(config(&addr), &Common { source: "s".into() }).expect("alerter");
    let err = a.deliver(&event(EventKind::Raise, 'F')).await.expect_err("550");
    assert!(err.to_string().contains("550 no such user"), "{err}");
    let (addr, _task) = relay(false).await;
    let mut c = config(&addr);
    c.starttls = true;
    let a = SmtpAlerter::new(c, &Common { source: "s".into() }).expect("alerter");
    let err = a.deliver(&event(EventKind::Raise, 'F')).await.expect_err("no STARTTLS");
    assert!(err.to_string().contains("does not offer STARTTLS"), "{err}");
}
