//! In-process tests of the web side: a board with a few checks, a real history in a tempdir,
//! the server on 127.0.0.1:0 and reqwest as the client.

use super::{loopback_post, run, Web};
use crate::serve::board::{Board, CheckView};
use crate::serve::history::{History, Retention};
use custodian_core::state::{AlertEvent, EventKind};
use custodian_core::{Job, JobResult, Status};
use reqwest::header;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const HOSTILE: &str = "<script>alert(1)</script>";

struct Served {
    base: String,
    web: Arc<Web>,
    ok: String,
    bad: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn job(probe: &str, target: &str, file: &str, lineno: u32) -> Job {
    let mut j = Job::new(probe, target, None);
    j.file = file.into();
    j.lineno = lineno;
    j.line = format!("{target} must run {probe}").into();
    j
}

/// Four checks: `ok` passing (with history), `bad` failing with a hostile reason, one
/// unknown and one never run; served with `token`.
async fn start(token: Option<&str>) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let history =
        Arc::new(History::open(&dir.path().join("h.sqlite"), Retention::default()).expect("db"));
    let now = crate::alerting::unix_now();
    let board = Arc::new(Board::new(vec!["a.cus".into(), "b.cus".into()], now));
    let mut ok = job("tcp", "127.0.0.1", "a.cus", 1);
    ok.port = Some(22);
    let mut bad = job("http", "http://127.0.0.1:1/", "b.cus", 2);
    bad.otherwise = Some("web down & <b>out</b>".into());
    let unk = job("dns", "127.0.0.3", "b.cus", 3);
    let never = job("smtp", "127.0.0.2", "a.cus", 4);
    let jobs = [&ok, &bad, &unk, &never];
    board.load(jobs.iter().map(|j| CheckView::new(j, 60)).collect(), now);
    for (i, ms) in [120, 80, 100].into_iter().enumerate() {
        let r = JobResult::new(&ok, Status::Passed, None, ms, 1);
        history.record(&r, now - 7200 + i as u64 * 3600, "local");
        board.record(&r, "local", now);
    }
    let failed = JobResult::new(&bad, Status::Failed, Some(HOSTILE.into()), 5, 1);
    history.record(&failed, now - 10, "w1");
    board.record(&failed, "w1", now);
    history.notice(&AlertEvent {
        kind: EventKind::Raise,
        result: failed,
        at: now - 10,
        raised_at: Some(now - 10),
    });
    let r = JobResult::new(&unk, Status::Unknown, Some("no socket".into()), 1, 1);
    history.record(&r, now - 5, "local");
    board.record(&r, "local", now);
    history.flush().await;

    let web = Arc::new(Web {
        board,
        history,
        token: token.map(str::to_string),
        ready: Arc::new(AtomicBool::new(true)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run(listener, Arc::clone(&web), async {
        let _ = stop_rx.await;
    }));
    Served {
        base,
        web,
        ok: ok.id(),
        bad: bad.id(),
        _dir: dir,
        _stop: stop_tx,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn get(s: &Served, path: &str) -> (u16, String) {
    let r = client()
        .get(format!("{}{path}", s.base))
        .send()
        .await
        .expect("get");
    (r.status().as_u16(), r.text().await.expect("body"))
}

async fn json(s: &Served, path: &str) -> serde_json::Value {
    let (code, body) = get(s, path).await;
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

#[tokio::test]
async fn page_lists_failing_first_and_escapes_peer_text() {
    let s = start(None).await;
    let r = client().get(&s.base).send().await.expect("get");
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(
        h[header::CONTENT_SECURITY_POLICY],
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    );
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let body = r.text().await.expect("body");
    assert!(body.contains("<meta http-equiv=refresh content=30>"));
    assert!(!body.contains("<script"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(body.contains("web down &amp; &lt;b&gt;out&lt;/b&gt;"));
    let pos = |t: &str| body.find(t).unwrap_or_else(|| panic!("{t} missing"));
    // Failing (failed, unknown) before passing before never run.
    assert!(pos("http://127.0.0.1:1/") < pos("tcp 127.0.0.1"));
    assert!(pos("dns 127.0.0.3") < pos("tcp 127.0.0.1"));
    assert!(pos("tcp 127.0.0.1") < pos("smtp 127.0.0.2"));
    // The passing check has results in two hours: uptime 100 % and a sparkline.
    assert!(body.contains("100.00%"), "{body}");
    assert!(body.contains("<polyline"), "{body}");
    assert!(body.contains(&format!("href=\"/check/{}\"", s.ok)));
}

#[tokio::test]
async fn filters_narrow_page_and_api() {
    let s = start(None).await;
    let (_, body) = get(&s, "/?state=failed").await;
    assert!(body.contains("http://127.0.0.1:1/") && !body.contains("tcp 127.0.0.1"));
    let (_, body) = get(&s, "/?state=failing&type=&target=&file=").await;
    assert!(body.contains("dns 127.0.0.3") && body.contains("http://127.0.0.1:1/"));
    assert!(!body.contains("smtp 127.0.0.2"));
    let (_, body) = get(&s, "/?type=TCP").await;
    assert!(body.contains("tcp 127.0.0.1") && !body.contains("dns 127.0.0.3"));
    let (_, body) = get(&s, "/?file=a.cus&state=pending").await;
    assert!(body.contains("smtp 127.0.0.2"));
    assert!(!body.contains(&format!("/check/{}", s.ok)), "{body}");
    let v = json(&s, "/api/checks?target=127.0.0.3").await;
    let checks = v["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 1, "{v}");
    assert_eq!(checks[0]["state"], "unknown");
    assert_eq!(json(&s, "/api/checks").await["matched"], 4);
    assert_eq!(get(&s, "/?state=bogus").await.0, 400);
    let long = "x".repeat(300);
    assert_eq!(get(&s, &format!("/?target={long}")).await.0, 400);
    assert_eq!(
        get(&s, &format!("/?target={}", "y".repeat(5000))).await.0,
        414
    );
}

#[tokio::test]
async fn reload_errors_are_shown_first_and_escaped() {
    let s = start(None).await;
    s.web
        .board
        .load_failed(vec!["b.cus:3:1: unknown word `<i>`".into()]);
    let (_, body) = get(&s, "/").await;
    let err = body
        .find("b.cus:3:1: unknown word `&lt;i&gt;`")
        .expect("error");
    assert!(err < body.find("<table>").expect("table"));
}

#[tokio::test]
async fn check_page_and_api_show_history() {
    let s = start(None).await;
    let (code, body) = get(&s, &format!("/check/{}", s.bad)).await;
    assert_eq!(code, 200);
    assert!(body.contains("http://127.0.0.1:1/ must run http"));
    assert!(body.contains("b.cus:2"));
    assert!(body.contains("<svg") && body.contains("<rect x="), "{body}");
    assert!(body.contains("&lt;script&gt;") && !body.contains("<script"));
    assert!(body.contains("<td>raise</td>"), "{body}");
    assert_eq!(get(&s, "/check/nosuch").await.0, 404);

    let one = json(&s, &format!("/api/checks/{}", s.ok)).await;
    assert_eq!(one["state"], "passed");
    assert_eq!(one["uptime"]["24h"], 1.0);
    assert_eq!(one["type"], "tcp");
    let h = json(&s, &format!("/api/checks/{}/history?limit=2", s.ok)).await;
    let rows = h["results"].as_array().expect("results");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["duration_ms"], 100, "newest first: {h}");
    let h = json(&s, &format!("/api/checks/{}/history?resolution=hour", s.ok)).await;
    assert_eq!(h["buckets"].as_array().expect("buckets").len(), 3, "{h}");
    let path = format!("/api/checks/{}/history?resolution=week", s.ok);
    assert_eq!(get(&s, &path).await.0, 400);
    let n = json(&s, &format!("/api/notices?check={}", s.bad)).await;
    assert_eq!(n["notices"][0]["kind"], "raise", "{n}");
    let n = json(&s, &format!("/api/notices?check={}", s.ok)).await;
    assert_eq!(n["notices"].as_array().expect("notices").len(), 0);
}

#[tokio::test]
async fn token_guards_pages_api_and_metrics() {
    let s = start(Some("s3cret")).await;
    for path in ["/", "/api/checks", "/metrics", "/scans", "/check/x"] {
        assert_eq!(get(&s, path).await.0, 401, "{path}");
    }
    assert_eq!(get(&s, "/healthz").await.0, 200);
    assert_eq!(get(&s, "/readyz").await.0, 200);
    let c = client();
    let with = |auth: &str| {
        c.get(format!("{}/api/checks", s.base))
            .header(header::AUTHORIZATION, auth)
            .send()
    };
    assert_eq!(with("Bearer s3cret").await.expect("get").status(), 200);
    assert_eq!(with("Bearer s3cre").await.expect("get").status(), 401);
    assert_eq!(with("Bearer s3cretx").await.expect("get").status(), 401);

    let login = |t: &str| {
        c.post(format!("{}/login", s.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("token={t}"))
            .send()
    };
    assert_eq!(login("nope").await.expect("post").status(), 401);
    let r = login("s3cret").await.expect("post");
    assert_eq!(r.status(), 303);
    let cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains("s3cret"),
        "the cookie must not hold the token"
    );
    let pair = cookie.split(';').next().expect("pair").to_string();
    let r = c
        .get(&s.base)
        .header(header::COOKIE, &pair)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let flipped = if pair.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &pair[..pair.len() - 1]);
    let r = c
        .get(&s.base)
        .header(header::COOKIE, forged)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn metrics_have_one_series_per_check() {
    let s = start(None).await;
    let r = client()
        .get(format!("{}/metrics", s.base))
        .header(
            header::ACCEPT,
            "application/openmetrics-text; version=1.0.0",
        )
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let ctype = r.headers()[header::CONTENT_TYPE].to_str().expect("type");
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let open = r.text().await.expect("body");
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(open.contains("# TYPE custodian_results counter\n"));
    // Without asking for OpenMetrics: the classic text format, which promtool checks.
    let r = client()
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("get");
    assert!(r.headers()[header::CONTENT_TYPE]
        .to_str()
        .expect("type")
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.expect("body");
    assert!(!text.contains("# EOF"));
    assert!(
        text.contains("# TYPE custodian_results_total counter\n"),
        "{text}"
    );
    let series = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .collect::<Vec<_>>()
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name_labels, value) = line.rsplit_once(' ').expect("sample");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(name_labels.starts_with("custodian_"), "{line}");
    }
    let state = series("custodian_check_state");
    assert_eq!(state.len(), 4, "{text}");
    let bad = state
        .iter()
        .find(|l| l.contains(&s.bad))
        .expect("bad series");
    assert!(bad.contains("type=\"http\"") && bad.contains("file=\"b.cus\""));
    assert!(bad.contains("line=\"2\"") && bad.ends_with(" 1"), "{bad}");
    assert!(state
        .iter()
        .any(|l| l.contains("smtp") && l.ends_with(" -1")));
    // Up only for the passed and the failed one.
    let up = series("custodian_check_up");
    assert_eq!(up.len(), 2, "{text}");
    assert!(up.iter().any(|l| l.contains(&s.ok) && l.ends_with(" 1")));
    assert_eq!(series("custodian_check_duration_seconds").len(), 3);
    assert!(text.contains("\ncustodian_results_total 5\n"), "{text}");
    assert!(text.contains("\ncustodian_config_errors 0\n"));
    assert!(
        text.contains("\ncustodian_history_dropped_total 0\n"),
        "{text}"
    );
    let out = promtool(&text);
    assert!(out.status.success(), "promtool: {out:?}");
}

/// `promtool check metrics` on `text` (the test peers install Prometheus' promtool).
fn promtool(text: &str) -> std::process::Output {
    use std::io::Write;
    let promtool = custodian_testpeers::peers().get("promtool").to_string();
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    child.wait_with_output().expect("promtool")
}

#[tokio::test]
async fn readyz_turns_ready() {
    let s = start(None).await;
    s.web.ready.store(false, Ordering::Relaxed);
    assert_eq!(get(&s, "/readyz").await.0, 503);
    assert_eq!(get(&s, "/healthz").await.0, 200);
    s.web.ready.store(true, Ordering::Relaxed);
    assert_eq!(get(&s, "/readyz").await.0, 200);
}

fn report() -> serde_json::Value {
    serde_json::json!({
        "version": 1,
        "targets": ["127.0.0.0/30"],
        "checks": ["openrelay"],
        "probes": 4,
        "counts": {"open": 1, "closed": 3},
        "findings": [{
            "target": "127.0.0.1", "port": 25, "check": "openrelay", "verdict": "open",
            "reason": "relayed", "evidence": "S: 250 <img src=x>", "source": "127.0.0.1"
        }]
    })
}

#[tokio::test]
async fn posted_scan_shows_on_scans_page() {
    let s = start(None).await;
    let c = client();
    let post = |body: Vec<u8>, ctype: &'static str| {
        c.post(format!("{}/api/scans", s.base))
            .header(header::CONTENT_TYPE, ctype)
            .body(body)
            .send()
    };
    let body = serde_json::to_vec(&report()).expect("json");
    let r = post(body.clone(), "text/plain").await.expect("post");
    assert_eq!(r.status(), 415, "a cross-site form cannot post one");
    assert_eq!(
        post(b"[1]".to_vec(), "application/json")
            .await
            .expect("post")
            .status(),
        400
    );
    let big = vec![b' '; (8 << 20) + 1];
    let r = post(big, "application/json").await.expect("post");
    assert_eq!(r.status(), 413);
    let r = post(body, "application/json").await.expect("post");
    assert_eq!(r.status(), 201);
    let (code, page) = get(&s, "/scans").await;
    assert_eq!(code, 200);
    assert!(page.contains("S: 250 &lt;img src=x&gt;"), "{page}");
    assert!(page.contains("127.0.0.1:25") && page.contains("openrelay"));
    assert!(!page.contains("<img"));
    let v = json(&s, "/api/scans").await;
    assert_eq!(v["scans"][0]["report"]["counts"]["open"], 1, "{v}");
}

#[tokio::test]
async fn scan_post_needs_the_token_when_set() {
    let s = start(Some("tok")).await;
    let url = url::Url::parse(&format!("{}/api/scans", s.base)).expect("url");
    let err = crate::scan::send_report(&url, &report(), None)
        .await
        .expect_err("no token");
    assert!(err.to_string().contains("401"), "{err}");
    crate::scan::send_report(&url, &report(), Some("tok".into()))
        .await
        .expect("with the token");
    let v = json_with(&s, "/api/scans", "tok").await;
    assert_eq!(v["scans"].as_array().expect("scans").len(), 1);
}

async fn json_with(s: &Served, path: &str, token: &str) -> serde_json::Value {
    let r = client()
        .get(format!("{}{path}", s.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    serde_json::from_str(&r.text().await.expect("body")).expect("json")
}

#[tokio::test]
async fn scan_command_reports_to_serve() {
    use clap::Parser;
    let s = start(None).await;
    // A port nothing listens on: the scan finds it closed and reports its counts.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let cli = crate::cli::Cli::try_parse_from([
        "custodian",
        "scan",
        "--quiet",
        "--json",
        "--checks",
        "opensocks",
        "--port",
        &format!("opensocks={port}"),
        "--report-to",
        &format!("{}/api/scans", s.base),
        "127.0.0.1",
    ])
    .expect("args");
    let crate::cli::Command::Scan(args) = cli.command else {
        panic!("not scan");
    };
    crate::scan::scan(args).await.expect("scan");
    let v = json(&s, "/api/scans").await;
    let rep = &v["scans"][0]["report"];
    assert_eq!(rep["probes"], 1, "{v}");
    assert_eq!(rep["checks"][0], "opensocks");
    assert_eq!(rep["targets"][0], "127.0.0.1");
    assert_eq!(rep["counts"]["closed"], 1, "{v}");
}

#[test]
fn unauthenticated_posts_come_from_loopback_names_only() {
    let mut h = axum::http::HeaderMap::new();
    let lo: std::net::SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let far: std::net::SocketAddr = "192.0.2.1:5000".parse().expect("addr");
    for (host, peer, ok) in [
        ("127.0.0.1:8080", lo, true),
        ("localhost:8080", lo, true),
        ("[::1]:8080", lo, true),
        ("evil.example:8080", lo, false),
        ("127.0.0.1:8080", far, false),
    ] {
        h.insert(header::HOST, host.parse().expect("host"));
        assert_eq!(loopback_post(peer, &h), ok, "{host} from {peer}");
    }
}

#[test]
fn report_urls_are_checked_before_scanning() {
    assert!(crate::scan::report_url("http://127.0.0.1:8080/api/scans").is_ok());
    let err = crate::scan::report_url("ftp://u:pw@127.0.0.1/x").expect_err("ftp");
    assert!(!err.to_string().contains("pw"), "{err}");
    assert!(crate::scan::report_url("not a url").is_err());
}

#[test]
fn metrics_text_of_a_fixed_board() {
    use crate::serve::board::{Engine, Snapshot};
    let view = |probe: &str, target: &str, line: u32, status: Option<Status>| {
        let mut v = CheckView::new(&job(probe, target, "t.cus", line), 60);
        v.status = status;
        v.duration_ms = status.map(|_| 1500);
        v.last_at = status.map(|_| 1_700_000_000);
        v
    };
    let snap = Snapshot {
        checks: vec![
            view("http", "http://127.0.0.1/a\"b\\c", 1, Some(Status::Failed)),
            view("tcp", "127.0.0.1", 2, Some(Status::Passed)),
            view("dns", "127.0.0.3", 3, Some(Status::Unknown)),
            view("smtp", "127.0.0.2", 4, None),
            from_two(view("ssh", "127.0.0.4", 5, Some(Status::Partial))),
        ],
        errors: vec!["t.cus:9:1: nope".into()],
        engine: Engine {
            results: 7,
            in_flight: 2,
            overruns: 1,
            reloads: 3,
            loaded_at: 1_700_000_100,
            started_at: 1_699_999_000,
            verdicts: 4,
            verdict_delay_ms_sum: 50,
            verdict_delay_ms_max: 20,
        },
        files: vec!["t.cus".into()],
        places: two_places(),
    };
    // Ids are hashes of the job's fields: named by type here, so the snapshot does not
    // change with the id scheme.
    let mut open = super::metrics::render(&snap, 0, &readings(&snap)).expect("render");
    for c in &snap.checks {
        open = open.replace(&c.id, &format!("ID-{}", c.probe));
    }
    insta::assert_snapshot!("metrics_openmetrics", samples_sorted(&open));
    let text = super::metrics::prometheus_text(&open);
    insta::assert_snapshot!("metrics_prometheus_text", samples_sorted(&text));
    let out = promtool(&text);
    assert!(out.status.success(), "promtool: {out:?}");
}

/// Two locations: ams1 live with two workers, lon1 never heard from and silent.
fn two_places() -> Vec<crate::serve::fleet::PlaceView> {
    vec![
        crate::serve::fleet::PlaceView {
            name: "ams1".into(),
            workers: vec!["w1".into(), "w2".into()],
            last_beat: Some(1_700_000_000),
            lag_ms: Some(12),
            live: true,
            silent: false,
        },
        crate::serve::fleet::PlaceView {
            name: "lon1".into(),
            workers: Vec::new(),
            last_beat: None,
            lag_ms: None,
            live: false,
            silent: true,
        },
    ]
}

/// `v` as a check run from ams1 and lon1, failing from ams1 only.
fn from_two(mut v: CheckView) -> CheckView {
    let answer = |location: &str, status: Status| crate::serve::fleet::Answer {
        location: location.into(),
        status,
        reason: (status == Status::Failed).then(|| "connection refused".into()),
        duration_ms: 40,
        worker: format!("w-{location}"),
        at: 1_700_000_000,
    };
    v.from = Some("ams1, lon1 (quorum 2)".into());
    v.locations = vec![
        answer("ams1", Status::Failed),
        answer("lon1", Status::Passed),
    ];
    v
}

/// The exposition with each family's samples sorted: a family keeps its series in a hash
/// map, so their order changes from run to run.
fn samples_sorted(text: &str) -> String {
    let mut out = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            run.sort_unstable();
            out.append(&mut run);
            out.push(line);
        } else {
            run.push(line);
        }
    }
    run.sort_unstable();
    out.append(&mut run);
    out.join("\n")
}

/// `POST /api/silences` with `body`, the token when given, and extra headers.
async fn post_silence(
    s: &Served,
    token: Option<&str>,
    body: &serde_json::Value,
    extra: &[(header::HeaderName, &str)],
) -> (u16, String) {
    let mut req = client()
        .post(format!("{}/api/silences", s.base))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in extra {
        req = req.header(k.clone(), *v);
    }
    let r = req.send().await.expect("post");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// With a token, silences need it; a silence marks the checks it matches in the API and on
/// the page, and ends on DELETE (once).
#[tokio::test]
async fn silences_api_needs_the_token_and_marks_checks() {
    let s = start(Some("s3cret")).await;
    let body =
        serde_json::json!({"pattern": "file:b.cus", "duration": "2h", "comment": "<b>x</b>"});
    assert_eq!(post_silence(&s, None, &body, &[]).await.0, 401);
    assert_eq!(post_silence(&s, Some("nope"), &body, &[]).await.0, 401);
    assert_eq!(get(&s, "/api/silences").await.0, 401);
    let bad = serde_json::json!({"pattern": "web1", "duration": "2h"});
    assert_eq!(post_silence(&s, Some("s3cret"), &bad, &[]).await.0, 400);
    let bad = serde_json::json!({"pattern": "type:tcp", "duration": "2x"});
    assert_eq!(post_silence(&s, Some("s3cret"), &bad, &[]).await.0, 400);
    let (code, text) = post_silence(&s, Some("s3cret"), &body, &[]).await;
    assert_eq!(code, 201, "{text}");
    let made: serde_json::Value = serde_json::from_str(&text).expect("json");
    let id = made["id"].as_i64().expect("id");
    let until = made["until"].as_u64().expect("until");
    assert!(until >= crate::alerting::unix_now() + 7000);
    assert_eq!(made["author"], "token");

    let v = json_with(&s, "/api/silences", "s3cret").await;
    assert_eq!(v["silences"][0]["pattern"], "file:b.cus");
    let v = json_with(&s, "/api/checks", "s3cret").await;
    let checks = v["checks"].as_array().expect("checks");
    let of = |id: &str| {
        checks
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["silenced_until"].clone())
    };
    assert_eq!(
        of(&s.bad),
        Some(serde_json::json!(until)),
        "b.cus is silenced"
    );
    assert_eq!(of(&s.ok), Some(serde_json::Value::Null), "a.cus is not");
    let page = client()
        .get(&s.base)
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert_eq!(page.matches("(silenced)").count(), 2, "{page}");

    let del = |token: Option<&'static str>| {
        let mut r = client().delete(format!("{}/api/silences/{id}", s.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(del(None).await.expect("delete").status(), 401);
    assert_eq!(del(Some("s3cret")).await.expect("delete").status(), 200);
    assert_eq!(del(Some("s3cret")).await.expect("delete").status(), 404);
    let v = json_with(&s, "/api/silences", "s3cret").await;
    assert_eq!(v["silences"], serde_json::json!([]));
    assert!(s.web.history.silences().list(0).is_empty());
}

/// Without a token, silences are set from loopback names only, and as JSON only.
#[tokio::test]
async fn silences_without_a_token_come_from_loopback_only() {
    let s = start(None).await;
    let body = serde_json::json!({"pattern": "type:tcp", "duration": 3600});
    let (code, _) = post_silence(&s, None, &body, &[(header::HOST, "evil.example")]).await;
    assert_eq!(code, 403);
    let r = client()
        .post(format!("{}/api/silences", s.base))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 415, "a cross-site form cannot send JSON");
    assert!(get(&s, "/api/silences").await.1.contains("[]"));
    let (code, text) = post_silence(&s, None, &body, &[]).await;
    assert_eq!(code, 201, "{text}");
    assert!(text.contains("\"author\":\"loopback 127.0.0.1\""), "{text}");
}

/// The check page's buttons silence it (same-origin posts only) and show it; `/silences`
/// lists it and ends it.
#[tokio::test]
async fn silence_forms_need_their_own_origin() {
    let s = start(None).await;
    let form = |origin: Option<&str>| {
        let mut r = client()
            .post(format!("{}/silence", s.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!(
                "pattern={id}&check={id}&comment=deploy&duration=4h",
                id = s.bad
            ));
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        r.send()
    };
    let (_, page) = get(&s, &format!("/check/{}", s.bad)).await;
    assert!(page.contains("silence for 1h") && page.contains("action=\"/silence\""));
    assert!(!page.contains("Silenced until"));
    assert_eq!(form(None).await.expect("post").status(), 403);
    let evil = form(Some("http://evil.example")).await.expect("post");
    assert_eq!(evil.status(), 403);
    assert!(s.web.history.silences().list(0).is_empty());
    let r = form(Some(&s.base)).await.expect("post");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], format!("/check/{}", s.bad));
    let (_, page) = get(&s, &format!("/check/{}", s.bad)).await;
    assert!(page.contains("Silenced until"), "{page}");
    let (_, other) = get(&s, &format!("/check/{}", s.ok)).await;
    assert!(!other.contains("Silenced until"));

    let (code, list) = get(&s, "/silences").await;
    assert_eq!(code, 200);
    assert!(list.contains(&s.bad) && list.contains("end now") && list.contains("deploy"));
    let id = s.web.history.silences().list(0)[0].id;
    let end = |origin: &str| {
        client()
            .post(format!("{}/silences/{id}/end", s.base))
            .header(header::REFERER, origin)
            .send()
    };
    assert_eq!(
        end("http://evil.example/").await.expect("post").status(),
        403
    );
    let r = end(&format!("{}/silences", s.base)).await.expect("post");
    assert_eq!(r.status(), 303);
    assert!(get(&s, "/silences").await.1.contains("None active."));
}

/// With a token, the login cookie (SameSite=Strict) carries the form; a foreign Origin is
/// still refused.
#[tokio::test]
async fn silence_form_with_the_login_cookie() {
    let s = start(Some("tok")).await;
    let cookie = format!("{}={}", super::COOKIE, super::cookie_value("tok"));
    let post = |origin: Option<&str>, cookie: Option<&str>| {
        let mut r = client()
            .post(format!("{}/silence", s.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("pattern=type%3Adns&duration=1h");
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        r.send()
    };
    assert_eq!(post(None, None).await.expect("post").status(), 401);
    let foreign = post(Some("http://evil.example"), Some(&cookie)).await;
    assert_eq!(foreign.expect("post").status(), 403);
    let r = post(None, Some(&cookie)).await.expect("post");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/silences");
    assert_eq!(s.web.history.silences().list(0)[0].pattern, "type:dns");
}

/// Fixed readings for the metrics snapshot: the http check's certificate, two workers (long
/// silent, so none counts as seen), a queue, two alerters and a scan.
fn readings(snap: &crate::serve::board::Snapshot) -> crate::serve::gauges::Readings {
    use crate::serve::gauges::{Readings, ScanSummary};
    let mut r = Readings::default();
    r.jobs.insert("passed", 5);
    r.jobs.insert("failed", 2);
    r.workers.insert("local".into(), 1_700_000_000);
    r.workers.insert("w1".into(), 1_699_999_900);
    r.queue = Some(custodian_core::queue::QueueStats {
        pending: 3,
        reserved: 1,
        buried: 0,
        oldest: Some(std::time::Duration::from_millis(2500)),
    });
    if let Some(http) = snap.checks.iter().find(|c| c.probe == "http") {
        r.certificates.insert(http.id.clone(), 1_800_000_000);
    }
    r.deliveries.insert("file", (4, 0));
    r.deliveries.insert("webhook", (3, 1));
    let report = serde_json::json!({"findings": [
        {"check": "opensocks", "verdict": "open"},
        {"check": "openrelay", "verdict": "unknown"},
    ]});
    r.scan = Some(ScanSummary::of(&report, 1_700_000_200));
    r
}

#[test]
fn locations_show_per_check_and_in_the_overview() {
    let mut v = from_two(CheckView::new(&job("ssh", "127.0.0.4", "t.cus", 5), 60));
    v.locations[0].reason = Some("<refused>".into());
    let mut body = String::new();
    super::page::answers(&mut body, &v, 1_700_000_030);
    assert!(
        body.contains("<h2>From ams1, lon1 (quorum 2)</h2>"),
        "{body}"
    );
    assert!(
        body.contains("<tr class=failed><td>ams1</td><td>failed</td><td>&lt;refused&gt;</td>"),
        "{body}"
    );
    assert!(body.contains("<td>lon1</td><td>passed</td>"), "{body}");
    assert!(body.contains("30s ago") || body.contains("ago"), "{body}");
    let mut plain = String::new();
    super::page::answers(
        &mut plain,
        &CheckView::new(&job("tcp", "127.0.0.1", "t.cus", 1), 60),
        0,
    );
    assert!(
        plain.is_empty(),
        "a check of the default location only: {plain}"
    );
    let mut body = String::new();
    let places = two_places();
    super::page::places(&mut body, &places, 1_700_000_010);
    assert!(
        body.contains("<tr class=passed><td>ams1</td><td>live</td><td>w1, w2</td>"),
        "{body}"
    );
    assert!(body.contains("<td>12 ms</td>"), "{body}");
    assert!(
        body.contains("<tr class=failed><td>lon1</td><td>silent</td><td></td><td>never</td>"),
        "{body}"
    );
    let mut none = String::new();
    super::page::places(&mut none, &[], 0);
    assert!(none.is_empty());
}
