//! `custodian serve` seen in headless Chromium (the `chromium` test peer), with and without
//! JavaScript: failing checks first with their reason, a check's history, the filter form, and a
//! screenshot kept as a test artifact.
//!
//! Chromium only ever talks to 127.0.0.1: every name resolves to nothing, and the background
//! services (updates, metrics, sync, translation) are switched off.

use crate::common::*;
use anyhow::{bail, ensure, Context};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// How long anything (serve judging, chromedriver starting, a page loading) may take on a busy
/// shared machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// A child process killed when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback server that accepts and never says a word (the connections are held open).
fn hung() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().flatten().collect();
        drop(held);
    });
    port
}

/// An HTTP client for serve's API that never goes through a proxy from the environment.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let body = http.get(url).send().await.ok()?.text().await.ok()?;
    serde_json::from_str(&body).ok()
}

/// Polls `ok` every 250 ms until it holds or [`PATIENCE`] runs out.
async fn wait_until<F, Fut>(what: &str, mut ok: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + PATIENCE;
    while Instant::now() < until {
        if ok().await {
            return Ok(());
        }
        sleep(Duration::from_millis(250)).await;
    }
    bail!("never got to: {what}")
}

/// The four checks: two passing (lines 1 and 2), the closed port (line 3) and the hung one
/// (line 4), so "failing first" reorders the file.
struct Targets {
    closed: u16,
    hung: u16,
}

fn test_file(dir: &Path) -> Targets {
    let (ssh, _) = greeter("SSH-2.0-OpenSSH_9.2\r\n");
    let (smtp, _) = greeter("220 mail ESMTP\r\n");
    let t = Targets {
        closed: closed_port(),
        hung: hung(),
    };
    let text = format!(
        "127.0.0.1 must run ssh on {} otherwise 'ssh one is down'.\n\
         127.0.0.1 must run tcp on {} with banner '^220' otherwise 'mail is down'.\n\
         127.0.0.1 must run ssh on {} otherwise 'closed door'.\n\
         127.0.0.1 must run ssh on {} otherwise 'silent host'.\n",
        ssh.port(),
        smtp.port(),
        t.closed,
        t.hung,
    );
    std::fs::write(dir.join("t.cfg"), text).expect("test file");
    let cfg = format!(
        "alerter = file\nfile_target = {}\nstate_file = {}\nretries = 1\ntimeout = 2\n",
        dir.join("alerts.log").display(),
        dir.join("state.json").display()
    );
    std::fs::write(dir.join("custodian.cfg"), cfg).expect("settings");
    t
}

/// Starts `custodian serve` on a free loopback port; returns it and its base URL once ready.
async fn serve(dir: &Path) -> (Reaped, String) {
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["serve", "--listen", &listen, "--interval", "5s"])
        .args(["--settings", "custodian.cfg", "t.cfg"])
        .current_dir(dir)
        .env_remove("CUSTODIAN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let base = format!("http://{listen}");
    let http = http();
    let ready = format!("{base}/readyz");
    wait_until("serve ready", || async {
        http.get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
    .expect("serve starts");
    (Reaped(child), base)
}

/// Starts chromedriver on a free loopback port, logging into `dir`; returns it and its URL.
async fn chromedriver(dir: &Path) -> (Reaped, String) {
    let exe = custodian_testpeers::peers().get("chromedriver").to_string();
    let port = closed_port();
    let log = dir.join("chromedriver.log");
    let child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
    let url = format!("http://127.0.0.1:{port}");
    let http = http();
    let status = format!("{url}/status");
    wait_until("chromedriver answers", || async {
        get_json(&http, &status)
            .await
            .is_some_and(|v| v["value"]["ready"] == true)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", read(&log)));
    (Reaped(child), url)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Chromium's capabilities: headless, loopback only, its profile in `profile`, scripts allowed
/// or not.
fn capabilities(profile: &Path, javascript: bool) -> serde_json::Map<String, Value> {
    let binary = custodian_testpeers::peers().get("chromium");
    let args = [
        "--headless=new".to_string(),
        // Root in a container: no user namespaces for the sandbox.
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--window-size=1280,900".into(),
        format!("--user-data-dir={}", profile.display()),
        // Nothing but 127.0.0.1: no name resolves, no proxy, no background services.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".into(),
        "--no-proxy-server".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-default-apps".into(),
        "--disable-extensions".into(),
        "--disable-domain-reliability".into(),
        "--disable-client-side-phishing-detection".into(),
        "--disable-breakpad".into(),
        "--no-pings".into(),
        "--metrics-recording-only".into(),
        "--disable-features=Translate,OptimizationHints,MediaRouter".into(),
    ];
    // 2 = blocked, as an administrator's policy would set it.
    let prefs = if javascript {
        json!({})
    } else {
        json!({ "profile.managed_default_content_settings.javascript": 2 })
    };
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": binary, "args": args, "prefs": prefs },
    });
    match caps {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Where screenshots go: cargo's per-target scratch dir, kept after the run.
fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir.join(name)
}

/// The rows of the status page's table: (class, text), header left out.
async fn rows(c: &Client) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for tr in c.find_all(Locator::Css("table tr")).await? {
        if tr.find_all(Locator::Css("td")).await?.is_empty() {
            continue;
        }
        let class = tr.attr("class").await?.unwrap_or_default();
        out.push((class, tr.text().await?));
    }
    Ok(out)
}

fn is_failing(class: &str) -> bool {
    matches!(class, "failed" | "unknown")
}

/// Everything the browser is asked, with errors instead of panics so the session is always
/// closed (which stops Chromium) before the test reports.
async fn drive(c: &Client, base: &str, t: &Targets, javascript: bool) -> anyhow::Result<()> {
    // The preference took: the script turns "off" into "on" only where scripts run.
    c.goto("data:text/html,<p id=x>off</p><script>document.getElementById('x').textContent='on'</script>")
        .await?;
    let probe = c.find(Locator::Css("#x")).await?.text().await?;
    let want = if javascript { "on" } else { "off" };
    ensure!(
        probe == want,
        "JavaScript switched wrongly: the page says {probe:?}"
    );

    // The status page: the two failing checks first, the closed port with its reason.
    c.goto(&format!("{base}/")).await?;
    let rows = rows(c).await?;
    ensure!(rows.len() == 4, "four checks listed: {rows:?}");
    ensure!(
        is_failing(&rows[0].0) && is_failing(&rows[1].0),
        "failing first: {rows:?}"
    );
    ensure!(
        rows[2..].iter().all(|(class, _)| class == "passed"),
        "then the passing ones: {rows:?}"
    );
    let (class, text) = &rows[0];
    ensure!(
        class == "failed"
            && text.contains("closed door")
            && text.contains("connection refused")
            && text.contains("t.cfg:3"),
        "the closed port leads, with its reason: {text:?}"
    );
    ensure!(rows[1].1.contains("silent host"), "{rows:?}");
    let title = c.title().await?;
    ensure!(title.starts_with("checks"), "title {title:?}");

    let shot = c.screenshot().await?;
    let name = if javascript {
        "status-page.png"
    } else {
        "status-page-nojs.png"
    };
    let path = artifact(name);
    std::fs::write(&path, &shot).context("write the screenshot")?;
    ensure!(
        shot.len() > 1000 && shot.starts_with(b"\x89PNG\r\n\x1a\n"),
        "a PNG screenshot, got {} bytes",
        shot.len()
    );
    ensure!(std::fs::metadata(&path)?.len() == shot.len() as u64);

    // The filter form, as a user fills it: choose "failing", press Filter.
    let form = c.find(Locator::Css("form[action='/']")).await?;
    form.find(Locator::Css("select[name=state]"))
        .await?
        .select_by_label("failing")
        .await?;
    form.find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    let deadline = Instant::now() + PATIENCE;
    while !c.current_url().await?.as_str().contains("state=failing") {
        ensure!(Instant::now() < deadline, "the form never submitted");
        sleep(Duration::from_millis(100)).await;
    }
    let filtered = self::rows(c).await?;
    ensure!(
        filtered.len() == 2 && filtered.iter().all(|(class, _)| is_failing(class)),
        "only the failing ones: {filtered:?}"
    );
    let chosen = c
        .find(Locator::Css("select[name=state] option[selected]"))
        .await?
        .text()
        .await?;
    ensure!(chosen == "failing", "the form keeps the filter: {chosen:?}");

    // The closed port's own page, through its link: its line, history and last failures.
    c.find(Locator::XPath(
        "//tr[contains(., 'closed door')]//a[starts-with(@href, '/check/')]",
    ))
    .await?
    .click()
    .await?;
    let url = c.current_url().await?;
    ensure!(url.path().starts_with("/check/"), "on {url}");
    let h1 = c.find(Locator::Css("h1")).await?.text().await?;
    ensure!(h1 == "ssh 127.0.0.1", "heading {h1:?}");
    let line = c.find(Locator::Css("pre")).await?.text().await?;
    ensure!(
        line.contains(&format!("on {}", t.closed)),
        "its line: {line:?}"
    );
    ensure!(!line.contains(&t.hung.to_string()));
    let body = c.find(Locator::Css("body")).await?.text().await?;
    for heading in ["Last 7 days, hourly", "Last failures", "Recent results"] {
        ensure!(body.contains(heading), "no {heading:?} on {url}");
    }
    // Two runs happened before the browser came (see `browser_test`): both are listed.
    let results = body.matches("connection refused").count();
    ensure!(results >= 3, "history of at least two failures: {body}");
    c.find(Locator::Css(
        "svg[aria-label='hourly results over 7 days'] rect[fill='#c33']",
    ))
    .await
    .context("a red hour in the history chart")?;
    Ok(())
}

/// One run of the whole scenario in a fresh serve, chromedriver and Chromium.
async fn browser_test(javascript: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = test_file(dir.path());
    let (_serve, base) = serve(dir.path()).await;

    // Wait for every check's verdict and for two runs of the closed port, so its page has a
    // history to show.
    let http = http();
    let checks_url = format!("{base}/api/checks");
    let closed = t.closed;
    wait_until("the checks judged, the closed port twice", || async {
        let Some(v) = get_json(&http, &checks_url).await else {
            return false;
        };
        let list = match &v {
            Value::Array(a) => a.clone(),
            _ => v["checks"].as_array().cloned().unwrap_or_default(),
        };
        let judged = list.len() == 4 && list.iter().all(|c| !c["status"].is_null());
        let id = list
            .iter()
            .find(|c| {
                c["line"]
                    .as_str()
                    .is_some_and(|l| l.contains(&format!("on {closed}")))
            })
            .and_then(|c| c["id"].as_str().map(str::to_string));
        let Some(id) = id else { return false };
        let history = get_json(&http, &format!("{base}/api/checks/{id}/history")).await;
        let runs = history.as_ref().map_or(0, |h| match h {
            Value::Array(a) => a.len(),
            _ => h["results"].as_array().map_or(0, Vec::len),
        });
        judged && runs >= 2
    })
    .await
    .expect("serve judges the checks");

    let (_driver, driver_url) = chromedriver(dir.path()).await;
    let profile = dir.path().join("profile");
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities(&profile, javascript))
        .connect(&driver_url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no Chromium session: {e}; log:\n{}",
                read(&dir.path().join("chromedriver.log"))
            )
        });
    let outcome = tokio::time::timeout(PATIENCE * 2, drive(&client, &base, &t, javascript)).await;
    let closed = client.close().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:#}"),
        Err(_) => panic!("the browser took longer than {:?}", PATIENCE * 2),
    }
    closed.expect("the session closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium() {
    browser_test(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium_without_javascript() {
    browser_test(false).await;
}
