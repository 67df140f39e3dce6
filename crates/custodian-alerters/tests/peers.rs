//! End to end against real receivers: a check that fails, keeps failing and recovers goes
//! through the state machine and the dispatcher to every alerter at once: Postfix (mail read
//! back from its Maildir), Redis, Alertmanager (read back through its API), mauve packets
//! (decoded by `protoc --decode` and by our own decoder), Graphite and webhook listeners and a
//! file. Each must see exactly one raise, the re-notifications and one clear.

use custodian_alerters::{mauve, Common, Config, Dispatcher};
use custodian_core::state::{self, AlertEvent, CheckState, EventKind, Policy};
use custodian_core::{Job, JobResult, Status};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

/// What the in-test listeners received: one entry per connection or datagram.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A name no other test run shares.
fn token() -> String {
    format!("e2e{}x{}", std::process::id(), unix_now() % 100_000)
}

/// Collects whatever each TCP connection sends until it closes (Graphite).
async fn tcp_sink() -> (String, Received) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let got: Received = Arc::default();
    let log = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            log.lock().expect("lock").push(buf);
        }
    });
    (addr, got)
}

/// Answers every HTTP request 200 and keeps its body (webhook).
async fn http_sink() -> (String, Received) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", l.local_addr().expect("addr"));
    let got: Received = Arc::default();
    let log = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let mut io = BufReader::new(s);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if io.read_line(&mut line).await.unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; len];
            let _ = io.read_exact(&mut body).await;
            log.lock().expect("lock").push(body);
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            let _ = io.get_mut().write_all(reply).await;
        }
    });
    (url, got)
}

/// Keeps every datagram (mauve).
async fn udp_sink() -> (String, Received) {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = s.local_addr().expect("addr").to_string();
    let got: Received = Arc::default();
    let log = Arc::clone(&got);
    tokio::spawn(async move {
        let mut buf = vec![0; 65536];
        while let Ok(n) = s.recv(&mut buf).await {
            log.lock().expect("lock").push(buf[..n].to_vec());
        }
    });
    (addr, got)
}

fn settings(tok: &str, file: &Path, graphite: &str, webhook: &str, mauve: &str) -> Config {
    let peers = custodian_testpeers::peers();
    let toml = format!(
        r#"
[smtp]
relay = "{mail}"
to = ["{tok}@custodian.test"]
from = "custodian@custodian.test"
[file]
path = "{file}"
[redis]
address = "{redis}"
db = 9
prefix = "{tok}:"
history = 3
[mauve]
address = "{mauve}"
[graphite]
address = "{graphite}"
[webhook]
url = "{webhook}"
secret = "s3"
[alertmanager]
url = "http://{am}"
[retry]
attempts = 3
backoff = 0.05
timeout = 10
"#,
        mail = peers.get("mailsink"),
        file = file.display(),
        redis = peers.get("redis_queue"),
        am = peers.get("alertmanager"),
    );
    let config: Config = toml::from_str(&toml).expect("config");
    config.validate().expect("valid");
    config
}

/// The check: fails from the second result, recovers at the last.
fn results(tok: &str) -> Vec<JobResult> {
    let mut job = Job::new("tcp", "127.0.0.1", Some(9));
    job.subject = Some(tok.to_string());
    job.options.insert("banner".into(), tok.into());
    "PFFFFFFP"
        .chars()
        .map(|c| {
            let (status, error) = match c {
                'F' => (Status::Failed, Some("connection refused".to_string())),
                _ => (Status::Passed, None),
            };
            JobResult::new(&job, status, error, 12, 1)
        })
        .collect()
}

fn redis(args: &[&str]) -> String {
    let addr = custodian_testpeers::peers().addr("redis_queue");
    let out = Command::new("redis-cli")
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-n",
            "9",
        ])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Active (unresolved) alerts in Alertmanager with our subject.
async fn active_alerts(tok: &str) -> Vec<serde_json::Value> {
    let am = custodian_testpeers::peers().get("alertmanager");
    let url = format!("http://{am}/api/v2/alerts?filter=subject%3D%22{tok}%22");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = client.get(url).send().await.expect("GET alerts");
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).expect("json")
}

/// Mail files in the Maildir that mention `tok`, oldest first.
fn mails(maildir: &Path, tok: &str) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter(|m| m.contains(&format!("To: {tok}@custodian.test")))
        .collect()
}

/// Decodes one mauve packet with protoc and mauve's published schema (a test-only copy),
/// independently of our decoder and of proto/mauve.proto.
fn protoc_decode(packet: &[u8]) -> String {
    let protoc = custodian_testpeers::peers().get("protoc");
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let mut child = Command::new(protoc)
        .args([
            "--decode=mauve.proto.AlertUpdate",
            "-I",
            proto_dir,
            "mauve-published.proto",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protoc");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(packet)
        .expect("write");
    let out = child.wait_with_output().expect("protoc output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `f` holds (receivers deliver asynchronously: Postfix, UDP).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn one_raise_renotifications_and_one_clear_on_every_alerter() {
    let tok = token();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("alerts.log");
    let (graphite, graphite_got) = tcp_sink().await;
    let (webhook, webhook_got) = http_sink().await;
    let (mauve_addr, mauve_got) = udp_sink().await;
    let config = settings(&tok, &file, &graphite, &webhook, &mauve_addr);
    let common = Common {
        source: "e2e".into(),
    };
    let dispatcher = Dispatcher::new(config.build(&common).expect("build"), config.retry);
    let policy = Policy {
        fail_threshold: 2,
        pass_threshold: 1,
        renotify: 120,
        flap_flips: 0,
        flap_window: 60,
        unknown_threshold: 3,
    };
    let mut st = CheckState::default();
    let mut kinds = Vec::new();
    // One result a minute, in the recent past, so Alertmanager sees sensible times.
    let start = unix_now() - 8 * 60;
    for (i, r) in results(&tok).into_iter().enumerate() {
        let now = start + i as u64 * 60;
        let event = state::step(&mut st, &policy, &r, now);
        // As the binary does: the raise time marks results of a raised check.
        let metric = AlertEvent {
            raised_at: st.raised_at,
            ..AlertEvent::result(r, now)
        };
        for d in dispatcher.send(&metric).await {
            d.result.expect("metric delivered");
        }
        let Some(event) = event else { continue };
        kinds.push(event.kind);
        for d in dispatcher.send(&event).await {
            assert!(d.result.is_ok(), "{} failed: {:?}", d.alerter, d.result);
        }
        if event.kind == EventKind::Raise {
            let active = active_alerts(&tok).await;
            assert_eq!(active.len(), 1, "{active:?}");
            assert_eq!(active[0]["labels"]["type"], "tcp");
        }
    }
    use EventKind::{Clear, Raise, StillFailing};
    let want = [Raise, StillFailing, StillFailing, Clear];
    assert_eq!(kinds, want);
    assert!(
        active_alerts(&tok).await.is_empty(),
        "resolved by the clear"
    );

    check_file(&file);
    check_webhook(&webhook_got);
    check_graphite(&graphite_got);
    check_redis(&tok);
    check_mauve(&tok, &mauve_got, start).await;
    check_mail(&tok).await;
}

fn check_file(file: &Path) {
    let text = std::fs::read_to_string(file).expect("alert file");
    let words: Vec<&str> = text
        .lines()
        .map(|l| l.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(words, ["RAISE", "STILL FAILING", "STILL FAILING", "CLEAR"]);
}

fn check_webhook(got: &Received) {
    let bodies = got.lock().expect("lock").clone();
    let events: Vec<String> = bodies
        .iter()
        .map(|b| serde_json::from_slice::<serde_json::Value>(b).expect("json")["event"].to_string())
        .collect();
    let want = ["raise", "still_failing", "still_failing", "clear"].map(|e| format!("\"{e}\""));
    assert_eq!(events, want);
}

fn check_graphite(got: &Received) {
    let lines = String::from_utf8(got.lock().expect("lock").concat()).expect("utf8");
    assert_eq!(lines.lines().count(), 8, "one duration per result: {lines}");
    assert!(lines
        .lines()
        .all(|l| l.starts_with("custodian.tcp.127_0_0_1.test_duration_ms 12 ")));
}

fn check_redis(tok: &str) {
    let line = &results(tok)[0].line;
    let key = format!("{tok}:{}", custodian_alerters::redis::stem(line));
    assert_eq!(redis(&["GET", &format!("{key}.current")]), "OK");
    assert_eq!(redis(&["GET", &format!("{key}.count")]), "4");
    assert_eq!(redis(&["LLEN", &format!("{key}.history")]), "3", "capped");
    let newest = redis(&["LINDEX", &format!("{key}.history"), "0"]);
    assert!(
        newest.contains("\"result\":\"OK\"") && newest.contains("\"event\":\"clear\""),
        "{newest}"
    );
    let known = redis(&["SISMEMBER", &format!("{tok}:known_tests"), line]);
    assert_eq!(known, "1");
}

async fn check_mauve(tok: &str, got: &Received, start: u64) {
    eventually("4 mauve packets", || got.lock().expect("lock").len() == 4).await;
    let packets = got.lock().expect("lock").clone();
    let ours: Vec<_> = packets
        .iter()
        .map(|p| mauve::wire::decode(p).expect("decode"))
        .collect();
    assert!(ours
        .iter()
        .all(|u| u.source == "e2e" && !u.replace && u.alert.len() == 1));
    assert!(ours[0].alert[0].raise_time.is_some() && ours[0].alert[0].suppress_until.is_some());
    assert_eq!(ours[3].alert[0].clear_time, Some(start + 7 * 60));
    let first = protoc_decode(&packets[0]);
    assert!(
        first.contains("source: \"e2e\"") && first.contains(&format!("subject: \"{tok}\"")),
        "{first}"
    );
    assert!(
        first.contains(&format!("raise_time: {}", start + 2 * 60)),
        "{first}"
    );
    let last = protoc_decode(&packets[3]);
    assert!(
        last.contains(&format!("clear_time: {}", start + 7 * 60)),
        "{last}"
    );
    assert!(!last.contains("raise_time"), "{last}");
}

async fn check_mail(tok: &str) {
    let maildir = PathBuf::from(custodian_testpeers::peers().get("mailsink_maildir"));
    eventually("4 mails", || mails(&maildir, tok).len() == 4).await;
    let mut subjects: Vec<String> = mails(&maildir, tok)
        .iter()
        .filter_map(|m| {
            m.lines()
                .find(|l| l.starts_with("Subject: "))
                .map(str::to_string)
        })
        .collect();
    subjects.sort();
    let still = format!("Subject: STILL FAILING: {tok} (tcp) - connection refused");
    let want = [
        format!("Subject: CLEAR: {tok} (tcp)"),
        format!("Subject: RAISE: {tok} (tcp) - connection refused"),
        still.clone(),
        still,
    ];
    assert_eq!(subjects, want);
}

#[tokio::test]
async fn an_unreachable_receiver_fails_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("alerts.log");
    let toml = format!(
        "[file]\npath = \"{}\"\n[webhook]\nurl = \"http://127.0.60.9:1/\"\n[retry]\nattempts = 2\nbackoff = 0.01\ntimeout = 2\n",
        file.display()
    );
    let config: Config = toml::from_str(&toml).expect("config");
    let d = Dispatcher::new(
        config.build(&Common { source: "s".into() }).expect("build"),
        config.retry,
    );
    let r = &results("x")[1];
    let event = AlertEvent {
        kind: EventKind::Raise,
        result: r.clone(),
        at: 1,
        raised_at: Some(1),
    };
    let out = d.send(&event).await;
    let by_name = |n: &str| out.iter().find(|x| x.alerter == n).expect(n);
    assert!(by_name("file").result.is_ok());
    assert!(by_name("webhook").result.is_err() && by_name("webhook").attempts == 2);
    assert!(std::fs::read_to_string(&file)
        .expect("file")
        .starts_with("RAISE: "));
}

/// The submission Postfix of the probe tests (STARTTLS required, then AUTH through Dovecot);
/// it discards what it accepts, so only the dialogue is checked here.
fn submission(relay: &str, password: &str) -> custodian_alerters::smtp::SmtpAlerter {
    use custodian_alerters::smtp::StartTls;
    let peers = custodian_testpeers::peers();
    let implicit = relay.starts_with("smtps://");
    let config = custodian_alerters::smtp::SmtpConfig {
        relay: relay.to_string(),
        starttls: (!implicit).then_some(StartTls::Required),
        tls_name: None,
        ca_file: Some(PathBuf::from(peers.get("ca"))),
        username: Some(peers.get("mail_user").to_string()),
        password: Some(password.to_string()),
        from: "custodian@custodian.test".into(),
        to: vec!["ops@custodian.test".into()],
        helo: "localhost".into(),
    };
    config.validate().expect("valid");
    let common = Common { source: "s".into() };
    custodian_alerters::smtp::SmtpAlerter::new(config, &common).expect("alerter")
}

#[tokio::test]
async fn smtp_upgrades_with_starttls_and_authenticates() {
    use custodian_alerters::Alerter;
    let event = AlertEvent {
        kind: EventKind::Raise,
        result: results("tls")[1].clone(),
        at: 1,
        raised_at: Some(1),
    };
    let peers = custodian_testpeers::peers();
    let good = peers.get("mail_password");
    let starttls = peers.get("submission").to_string();
    let implicit = format!("smtps://{}", peers.get("smtps"));
    for relay in [starttls, implicit] {
        submission(&relay, good)
            .deliver(&event)
            .await
            .unwrap_or_else(|e| panic!("{relay}: accepted after TLS and AUTH: {e}"));
        let err = submission(&relay, "wrong-pw-123")
            .deliver(&event)
            .await
            .expect_err("bad password");
        let text = err.to_string();
        assert!(
            text.starts_with("rejected: ") && text.contains("535"),
            "{text}"
        );
        assert!(!text.contains("wrong-pw-123"), "{text}");
    }
}

/// A non-ASCII subject reaches Postfix's Maildir RFC 2047-encoded, with Date and Message-ID.
#[tokio::test]
async fn a_non_ascii_subject_arrives_encoded_with_date_and_message_id() {
    use custodian_alerters::Alerter;
    let peers = custodian_testpeers::peers();
    let tok = token();
    let mut config =
        custodian_alerters::smtp::SmtpConfig::from_target(&format!("{tok}@custodian.test"))
            .expect("cfg");
    config.relay = peers.get("mailsink").to_string();
    config.from = "custodian@custodian.test".into();
    let a = custodian_alerters::smtp::SmtpAlerter::new(config, &Common { source: "s".into() })
        .expect("alerter");
    let mut result = results(&tok)[1].clone();
    result.subject = Some(format!("{tok} Zürich ☃"));
    let event = AlertEvent {
        kind: EventKind::Raise,
        result,
        at: 1,
        raised_at: Some(1),
    };
    a.deliver(&event).await.expect("delivered");
    let maildir = PathBuf::from(peers.get("mailsink_maildir"));
    eventually("the mail", || mails(&maildir, &tok).len() == 1).await;
    let mail = mails(&maildir, &tok).remove(0);
    let head = mail
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace("\n ", " ");
    let subject = head
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .expect("Subject");
    assert!(
        subject.is_ascii() && subject.contains("=?utf-8?b?"),
        "{subject}"
    );
    assert!(!mail.contains("Zürich"), "raw 8-bit subject: {mail}");
    assert!(head.lines().any(|l| l.starts_with("Date: ")), "{head}");
    assert!(
        head.lines()
            .any(|l| l.starts_with("Message-ID: <") && l.contains("@custodian.test>")),
        "{head}"
    );
}
