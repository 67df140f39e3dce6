//! `ftp`: the server greets with `220` (possibly multi-line, possibly after a `120` "ready
//! soon"); with credentials it also accepts `USER`/`PASS` with `230` (RFC 959); with a file
//! path it downloads that file in passive mode and can require text in it.
//!
//! Syntax: `HOST must run ftp [on PORT] [with banner 'REGEX'] [with username 'U' with password
//! 'P'] [with content 'TEXT'].` or `ftp://[USER:PASSWORD@]HOST[:PORT]/[PATH] must run ftp …`.
//! Default port 21. Credentials come from the URL (percent-decoded) or the options; a path
//! without credentials logs in as `anonymous`. We send USER, then PASS when the server asks
//! with `331`. For a path we send `TYPE I`, `EPSV` (or `PASV` when EPSV is refused), connect
//! to the data port on the address under test (never to the address a PASV reply names, so
//! a server cannot point us elsewhere), `RETR PATH`, read at most 1 MiB, and await `226`.
//! `with content` is a substring of the file (of its first 1 MiB when larger). We always end
//! with `QUIT` once a greeting came; that part never fails the check.
//! Down reasons: connection refused / timed out connecting; `greeting is not 220: "…"`; banner
//! does not match; `login refused: "…"` (the server's reply, quoted; our command never is);
//! `server wants an account (ACCT) too: "…"`; `TYPE I refused`, `passive mode refused`,
//! `malformed passive reply`, `RETR refused: "…"` (e.g. 550, no such file), `transfer failed:
//! "…"`; connect to or timed out on the data port; `file PATH (N bytes) does not contain
//! "TEXT"`; timed out or connection closed while waiting; malformed reply line; binary
//! garbage; line or reply longer than the bounds in `dialog.rs`.
//! Example: `ftp://files1/pub/README must run ftp with content 'mirror'.`

use crate::dialog::{Dialog, Reply};
use crate::tls::Stream;
use crate::{net, tcp, Ctx};
use custodian_core::{Job, Outcome, ParamSpec, Params, ProbeSpec, TargetKind};
use std::net::SocketAddr;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "ftp",
    aliases: &[],
    target: TargetKind::HostOrUrl(&["ftp"]),
    default_port: Some(21),
    port_required: false,
    takes_port: true,
    params: &[
        ParamSpec::new(
            "with banner {banner}",
            "the 220 greeting must match this case-insensitive regex",
        )
        .kinds(tcp::BANNER),
        ParamSpec::new(
            "with username {username}",
            "log in with USER/PASS as this user (or give it in the ftp:// URL)",
        ),
        ParamSpec::new(
            "with password {password}",
            "the password for PASS (masked in all output)",
        ),
        ParamSpec::new(
            "with content {content}",
            "the file named by the ftp:// URL must contain this text",
        ),
    ],
    summary:
        "the server greets with 220 (logs in with 230; downloads the URL's file, `with content`)",
    example: "ftp://127.0.0.1/welcome.txt must run ftp with content 'custodian' \
              otherwise 'ftp down'.",
    check: None,
    scan: None,
};

/// Most file bytes we read; a larger file is judged by its start.
const MAX_FILE: usize = 1024 * 1024;

/// The password sent for `anonymous` when the line names none (RFC 1635 asks for an address).
const ANONYMOUS_PASSWORD: &str = "custodian@";

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    let plan = match Plan::from_job(&cx.job, &cx.params) {
        Ok(plan) => plan,
        Err(e) => return Outcome::unknown(e),
    };
    Outcome::from_result(run(cx, &plan).await)
}

/// What to do after the greeting, from the target and the options.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// User and password to log in with.
    login: Option<(String, String)>,
    /// The file to download, as sent with RETR.
    path: Option<String>,
    content: Option<String>,
}

impl Plan {
    fn from_job(job: &Job, params: &Params) -> Result<Plan, String> {
        let url = match job.target.contains("://") {
            true => from_url(&job.target)?,
            false => UrlParts::default(),
        };
        let path = url.path;
        let user = url
            .user
            .or_else(|| params.text("username").map(str::to_string));
        let pass = url
            .pass
            .or_else(|| params.text("password").map(str::to_string));
        let content = params.text("content").map(str::to_string);
        if content.is_some() && path.is_none() {
            return Err("`with content` needs a file: write the target as ftp://HOST/PATH".into());
        }
        let login = match (user, &path) {
            (Some(u), _) => Some((u, pass.unwrap_or_default())),
            (None, Some(_)) => Some(("anonymous".into(), ANONYMOUS_PASSWORD.into())),
            (None, None) => None,
        };
        let plan = Plan {
            login,
            path,
            content,
        };
        plan.refuse_line_breaks()?;
        Ok(plan)
    }

    /// A CR or LF would end our command early and start another one.
    fn refuse_line_breaks(&self) -> Result<(), String> {
        let (u, p) = self.login.as_ref().map_or(("", ""), |(u, p)| (u, p));
        if [u, p].iter().any(|s| s.contains(['\r', '\n'])) {
            return Err("username or password contains a line break".into());
        }
        if self.path.as_ref().is_some_and(|p| p.contains(['\r', '\n'])) {
            return Err("the file path contains a line break".into());
        }
        Ok(())
    }
}

/// What an `ftp://` URL says, percent-decoded.
#[derive(Debug, Default)]
struct UrlParts {
    user: Option<String>,
    pass: Option<String>,
    /// Without its leading `/`.
    path: Option<String>,
}

fn from_url(target: &str) -> Result<UrlParts, String> {
    let url = url::Url::parse(target).map_err(|e| format!("the target is not a URL: {e}"))?;
    Ok(UrlParts {
        user: Some(decode(url.username())).filter(|u| !u.is_empty()),
        pass: url.password().map(decode),
        path: Some(decode(url.path().trim_start_matches('/'))).filter(|p| !p.is_empty()),
    })
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

async fn run(cx: &Ctx, plan: &Plan) -> Result<String, String> {
    let mut d = Dialog::open(cx, false).await?;
    let greeting = greeting(&mut d, cx).await?;
    let verdict = converse(&mut d, cx, &greeting, plan).await;
    if d.send(cx, "QUIT").await.is_ok() {
        d.close(cx).await;
    }
    verdict
}

/// The greeting, skipping one `120` ("service ready in nnn minutes") that may precede it.
async fn greeting(d: &mut Dialog<Stream>, cx: &Ctx) -> Result<Reply, String> {
    let first = d.reply(cx, "the greeting").await?;
    if first.code != 120 {
        return Ok(first);
    }
    d.reply(cx, "the greeting after 120").await
}

async fn converse(
    d: &mut Dialog<Stream>,
    cx: &Ctx,
    greeting: &Reply,
    plan: &Plan,
) -> Result<String, String> {
    greeting.expect(220, "greeting")?;
    tcp::banner_matches(cx, &greeting.text())?;
    let mut detail = net::clip(greeting.lines.first().map_or("", String::as_str));
    if let Some((user, pass)) = &plan.login {
        login(d, cx, user, pass).await?;
        detail.push_str(&format!("; logged in as {user}"));
    }
    if let Some(path) = &plan.path {
        let (body, truncated) = fetch(d, cx, path).await?;
        judge_content(path, &body, truncated, plan.content.as_deref())?;
        detail.push_str(&format!("; fetched {path} ({} bytes)", body.len()));
    }
    Ok(detail)
}

async fn login(d: &mut Dialog<Stream>, cx: &Ctx, user: &str, pass: &str) -> Result<(), String> {
    d.send(cx, &format!("USER {user}")).await?;
    let reply = d.reply(cx, "the reply to USER").await?;
    if judge_login(&reply)? == Step::NeedPassword {
        d.send(cx, &format!("PASS {pass}")).await?;
        let reply = d.reply(cx, "the reply to PASS").await?;
        if judge_login(&reply)? == Step::NeedPassword {
            return Err(format!("login refused: {}", reply.quoted()));
        }
    }
    Ok(())
}

/// Where a login stands after a reply to USER or PASS.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    LoggedIn,
    NeedPassword,
}

fn judge_login(r: &Reply) -> Result<Step, String> {
    match r.code {
        230 | 202 => Ok(Step::LoggedIn),
        331 => Ok(Step::NeedPassword),
        332 => Err(format!(
            "server wants an account (ACCT) too: {}",
            r.quoted()
        )),
        _ => Err(format!("login refused: {}", r.quoted())),
    }
}

/// Sends `line` and requires a reply with one of `codes`; else `"{refused}: reply"`.
async fn command(
    d: &mut Dialog<Stream>,
    cx: &Ctx,
    line: &str,
    codes: &[u16],
    refused: &str,
) -> Result<Reply, String> {
    d.send(cx, line).await?;
    let verb = line.split(' ').next().unwrap_or(line);
    let r = d.reply(cx, &format!("the reply to {verb}")).await?;
    if codes.contains(&r.code) {
        Ok(r)
    } else {
        Err(format!("{refused}: {}", r.quoted()))
    }
}

/// Downloads `path` in passive binary mode: at most [`MAX_FILE`] bytes, and whether the file
/// went on past that.
async fn fetch(d: &mut Dialog<Stream>, cx: &Ctx, path: &str) -> Result<(Vec<u8>, bool), String> {
    command(d, cx, "TYPE I", &[200], "TYPE I refused").await?;
    let port = passive(d, cx).await?;
    let mut data = connect_data(cx, port).await?;
    command(d, cx, &format!("RETR {path}"), &[125, 150], "RETR refused").await?;
    let (body, truncated) = net::within(cx, &format!("downloading {path}"), async {
        read_capped(&mut data, MAX_FILE).await
    })
    .await?;
    drop(data);
    if !truncated {
        let end = d.reply(cx, "the end of the transfer").await?;
        if !matches!(end.code, 226 | 250) {
            return Err(format!("transfer failed: {}", end.quoted()));
        }
    }
    Ok((body, truncated))
}

/// The data port: EPSV (RFC 2428), or PASV when the server refuses EPSV.
async fn passive(d: &mut Dialog<Stream>, cx: &Ctx) -> Result<u16, String> {
    d.send(cx, "EPSV").await?;
    let r = d.reply(cx, "the reply to EPSV").await?;
    if r.code == 229 {
        return epsv_port(&r);
    }
    let r = command(d, cx, "PASV", &[227], "passive mode refused").await?;
    pasv_port(&r)
}

/// The port of `229 Entering Extended Passive Mode (|||6446|)`.
fn epsv_port(r: &Reply) -> Result<u16, String> {
    let text = r.text();
    let inner = text
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inner, _)| inner);
    let port = inner.and_then(|i| {
        let delim = i.chars().next()?;
        i.split(delim).nth(3)?.parse::<u16>().ok()
    });
    port.filter(|p| *p != 0)
        .ok_or_else(|| format!("malformed passive reply: {}", r.quoted()))
}

/// The port of `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`; the address is ignored.
fn pasv_port(r: &Reply) -> Result<u16, String> {
    let text = r.text();
    let start = text.get(4..).unwrap_or("");
    let numbers: Vec<u16> = start
        .split(|c: char| !c.is_ascii_digit() && c != ',')
        .find(|run| run.matches(',').count() == 5)
        .map(|run| run.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    match numbers[..] {
        [_, _, _, _, hi, lo] if hi < 256 && lo < 256 && hi + lo > 0 => Ok(hi * 256 + lo),
        _ => Err(format!("malformed passive reply: {}", r.quoted())),
    }
}

/// Opens the data connection to `port` on the address under test.
async fn connect_data(cx: &Ctx, port: u16) -> Result<TcpStream, String> {
    let ip = cx.addr.ok_or("no address to connect to")?;
    net::within(cx, &format!("connecting to data port {port}"), async {
        TcpStream::connect(SocketAddr::new(ip, port))
            .await
            .map_err(|e| net::failed(cx, &format!("connect to data port {port}"), &e))
    })
    .await
}

/// Reads until EOF or `cap` bytes; the flag says whether more was coming.
async fn read_capped(r: &mut TcpStream, cap: usize) -> Result<(Vec<u8>, bool), String> {
    let mut body = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = r
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the file: {}", net::io_reason(&e)))?;
        if n == 0 {
            return Ok((body, false));
        }
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..n.min(room)]);
        if n > room {
            return Ok((body, true));
        }
    }
}

/// `with content`: a substring of the file (of its first [`MAX_FILE`] bytes when larger).
fn judge_content(
    path: &str,
    body: &[u8],
    truncated: bool,
    content: Option<&str>,
) -> Result<(), String> {
    let Some(want) = content else { return Ok(()) };
    if String::from_utf8_lossy(body).contains(want) {
        return Ok(());
    }
    let scope = match truncated {
        true => format!(" (only the first {MAX_FILE} bytes read)"),
        false => String::new(),
    };
    Err(format!(
        "file {path} ({} bytes) does not contain {:?}{scope}",
        body.len(),
        net::clip(want)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::{ReplyParser, MAX_REPLY_LINES};
    use crate::net::testutil::*;
    use crate::net::MAX_LINE;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    const GREETING: &str = "220-Welcome\r\n220 (vsFTPd 3.0.3)\r\n";

    fn job(port: u16, creds: Option<(&str, &str)>) -> Job {
        let mut j = Job::new("ftp", "127.0.0.1", Some(port));
        if let Some((u, p)) = creds {
            j.options.insert("username".into(), u.into());
            j.options.insert("password".into(), p.into());
        }
        j
    }

    async fn run_against(a: SocketAddr, creds: Option<(&str, &str)>, secs: f64) -> Outcome {
        check(&cx(job(a.port(), creds), secs)).await
    }

    fn accepting(line: &str) -> Option<&'static str> {
        match line.split(' ').next() {
            Some("USER") => Some("331 Please specify the password.\r\n"),
            Some("PASS") => Some("230 Login successful.\r\n"),
            Some("QUIT") => Some("221 Goodbye.\r\n"),
            _ => Some("500 Unknown command.\r\n"),
        }
    }

    fn refusing(line: &str) -> Option<&'static str> {
        match line.split(' ').next() {
            Some("PASS") => Some("530 Login incorrect.\r\n"),
            _ => accepting(line),
        }
    }

    fn reply(lines: &[&str]) -> Reply {
        let mut p = ReplyParser::default();
        let mut out = None;
        for l in lines {
            out = p.push(l.to_string()).expect("valid line");
        }
        out.expect("complete reply")
    }

    #[test]
    fn judges_login_replies() {
        assert_eq!(judge_login(&reply(&["230 ok"])), Ok(Step::LoggedIn));
        assert_eq!(judge_login(&reply(&["331 pw?"])), Ok(Step::NeedPassword));
        assert_eq!(
            judge_login(&reply(&["332 acct?"])),
            Err("server wants an account (ACCT) too: \"332 acct?\"".into())
        );
        assert_eq!(
            judge_login(&reply(&["530 no"])),
            Err("login refused: \"530 no\"".into())
        );
    }

    #[tokio::test]
    async fn multi_line_greeting_passes_and_we_quit() {
        let (a, h) = scripted(GREETING, accepting).await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("220-Welcome".into())
            }
        );
        assert_eq!(heard(&h), ["QUIT"]);
    }

    #[tokio::test]
    async fn greeting_after_120_passes() {
        let (a, _) = scripted("120 Ready in 1 minute\r\n220 Ready\r\n", accepting).await;
        assert!(run_against(a, None, 2.0).await.is_up());
    }

    #[tokio::test]
    async fn login_accepted() {
        let (a, h) = scripted(GREETING, accepting).await;
        let out = run_against(a, Some(("probe", "s3cret")), 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("220-Welcome; logged in as probe".into())
            }
        );
        assert_eq!(heard(&h), ["USER probe", "PASS s3cret", "QUIT"]);
    }

    #[tokio::test]
    async fn login_without_password_step() {
        let (a, h) = scripted("220 hi\r\n", |l| match l.split(' ').next() {
            Some("USER") => Some("230 Already in.\r\n"),
            _ => Some("221 bye\r\n"),
        })
        .await;
        assert!(run_against(a, Some(("anonymous", "x")), 2.0).await.is_up());
        assert_eq!(heard(&h), ["USER anonymous", "QUIT"]);
    }

    #[tokio::test]
    async fn login_refused_without_echoing_the_password() {
        let (a, h) = scripted(GREETING, refusing).await;
        let out = run_against(a, Some(("probe", "hunter2")), 2.0).await;
        assert_eq!(
            out,
            Outcome::down("login refused: \"530 Login incorrect.\"")
        );
        assert_eq!(heard(&h), ["USER probe", "PASS hunter2", "QUIT"]);
    }

    #[tokio::test]
    async fn wrong_greeting_fails() {
        let (a, _) = scripted("421 Too many users\r\n", accepting).await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("greeting is not 220: \"421 Too many users\"")
        );
        let a = says(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        let out = run_against(a, None, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("malformed reply line \"SSH-2.0-OpenSSH_9.2\"")
        );
    }

    /// A server hung before its greeting is a row of tests/hostile.rs; this one hangs later.
    #[tokio::test]
    async fn hung_login_fails_at_the_deadline() {
        let a = says(b"220 hi\r\n").await;
        let out = run_against(a, Some(("u", "p")), 0.5).await;
        assert_eq!(
            out,
            Outcome::down("timed out waiting for the reply to USER")
        );
    }

    #[tokio::test]
    async fn floods_are_bounded() {
        let t = Instant::now();
        let a = flood(b"220-").await;
        let out = run_against(a, None, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("line longer than {MAX_LINE} bytes"))
        );
        let a = flood(b"220-spam\r\n").await;
        let out = run_against(a, None, 10.0).await;
        assert_eq!(
            out,
            Outcome::down(format!("reply longer than {MAX_REPLY_LINES} lines"))
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    mod fetch {
        //! URL targets, passive downloads and `with content` against an in-process FTP server.

        use super::super::*;
        use crate::net::testutil::*;
        use custodian_core::Job;
        use serde_json::json;
        use std::time::Duration;
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        use tokio::net::TcpListener;

        /// How the fake server serves RETR.
        #[derive(Clone, Copy)]
        enum Data {
            /// This file, then 226.
            File(&'static [u8]),
            /// Endless bytes until we hang up.
            Endless,
            /// Accept the data connection, say nothing.
            Hung,
            /// A file, then close the control connection instead of saying 226.
            CloseControl,
        }

        /// A fake FTP server: EPSV answered unless `pasv_only`, files per [`Data`].
        async fn server(data: Data, pasv_only: bool) -> (SocketAddr, Heard) {
            let heard = Heard::default();
            let log = heard.clone();
            let addr = serve(move |s| {
                let log = log.clone();
                async move { session(s, data, pasv_only, log).await }
            })
            .await;
            (addr, heard)
        }

        async fn session(s: TcpStream, data: Data, pasv_only: bool, log: Heard) {
            let (r, mut w) = s.into_split();
            let _ = w.write_all(b"220 (vsFTPd 3.0.3)\r\n").await;
            let mut lines = BufReader::new(r).lines();
            let mut listener: Option<TcpListener> = None;
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().expect("lock").push(line.clone());
                let verb = line.split(' ').next().unwrap_or("");
                let reply = match verb {
                    "USER" => "331 Please specify the password.\r\n".to_string(),
                    "PASS" if line == "PASS s3cret" || line == "PASS custodian@" => {
                        "230 Login successful.\r\n".into()
                    }
                    "PASS" => "530 Login incorrect.\r\n".into(),
                    "TYPE" => "200 Switching to Binary mode.\r\n".into(),
                    "EPSV" if pasv_only => "500 Unknown command.\r\n".into(),
                    "EPSV" | "PASV" => {
                        let (l, reply) = passive_listener(verb).await;
                        listener = Some(l);
                        reply
                    }
                    "RETR" if line == "RETR missing.txt" => "550 Failed to open file.\r\n".into(),
                    "RETR" => {
                        let Some(l) = listener.take() else { return };
                        let _ = w
                            .write_all(b"150 Opening BINARY mode data connection.\r\n")
                            .await;
                        if !transfer(l, data).await {
                            return;
                        }
                        "226 Transfer complete.\r\n".into()
                    }
                    "QUIT" => "221 Goodbye.\r\n".into(),
                    _ => "500 Unknown command.\r\n".into(),
                };
                let _ = w.write_all(reply.as_bytes()).await;
            }
        }

        /// A data listener and the EPSV or PASV reply naming it (PASV names a foreign address,
        /// which the probe must ignore).
        async fn passive_listener(verb: &str) -> (TcpListener, String) {
            let l = TcpListener::bind((LOCAL, 0)).await.expect("bind");
            let port = l.local_addr().expect("addr").port();
            let reply = match verb {
                "EPSV" => format!("229 Entering Extended Passive Mode (|||{port}|)\r\n"),
                _ => format!(
                    "227 Entering Passive Mode (10,9,8,7,{},{}).\r\n",
                    port / 256,
                    port % 256
                ),
            };
            (l, reply)
        }

        /// Serves one download as `data` says; false when the control connection must close.
        async fn transfer(l: TcpListener, data: Data) -> bool {
            let Ok((mut conn, _)) = l.accept().await else {
                return false;
            };
            match data {
                Data::File(bytes) => {
                    let _ = conn.write_all(bytes).await;
                }
                Data::Endless => while conn.write_all(&[b'x'; 65536]).await.is_ok() {},
                Data::Hung => tokio::time::sleep(Duration::from_secs(5)).await,
                Data::CloseControl => {
                    let _ = conn.write_all(b"partial").await;
                    return false;
                }
            }
            true
        }

        async fn probe(target: String, opts: &[(&str, serde_json::Value)], secs: f64) -> Outcome {
            let port = url::Url::parse(&target)
                .ok()
                .and_then(|u| u.port())
                .unwrap_or(21);
            let mut j = Job::new("ftp", &target, Some(port));
            for (k, v) in opts {
                j.options.insert(k.to_string(), v.clone());
            }
            check(&cx(j, secs)).await
        }

        fn plan_of(j: &Job) -> Result<Plan, String> {
            Plan::from_job(j, &crate::prepare(j).expect("options"))
        }

        #[test]
        fn plans_from_urls_and_options() {
            let j = Job::new(
                "ftp",
                "ftp://bob:p%40ss@127.0.0.1:2121/pub/a%20b.txt",
                Some(2121),
            );
            let p = plan_of(&j).expect("plan");
            assert_eq!(p.login, Some(("bob".into(), "p@ss".into())));
            assert_eq!(p.path.as_deref(), Some("pub/a b.txt"));
            let j = Job::new("ftp", "ftp://127.0.0.1/f", Some(21));
            let p = plan_of(&j).expect("plan");
            assert_eq!(p.login, Some(("anonymous".into(), "custodian@".into())));
            let j = Job::new("ftp", "127.0.0.1", Some(21));
            assert_eq!(plan_of(&j).expect("plan").login, None);
            let j = Job::new("ftp", "ftp://127.0.0.1/a%0d%0aDELE%20b", Some(21));
            assert_eq!(
                plan_of(&j),
                Err("the file path contains a line break".into())
            );
            let mut j = Job::new("ftp", "ftp://127.0.0.1/", Some(21));
            j.options.insert("content".into(), json!("x"));
            assert!(plan_of(&j).is_err_and(|e| e.starts_with("`with content` needs a file")));
        }

        #[test]
        fn passive_replies_parse() {
            let r = |l: &str| super::reply(&[l]);
            assert_eq!(
                epsv_port(&r("229 Entering Extended Passive Mode (|||6446|)")),
                Ok(6446)
            );
            assert_eq!(
                pasv_port(&r("227 Entering Passive Mode (127,0,0,1,25,46).")),
                Ok(6446)
            );
            assert_eq!(pasv_port(&r("227 =127,0,0,1,25,46")), Ok(6446));
            assert!(epsv_port(&r("229 no port here")).is_err());
            assert!(pasv_port(&r("227 (1,2,3,4,300,1)")).is_err());
            assert!(
                pasv_port(&r("227 what")).is_err_and(|e| e.starts_with("malformed passive reply"))
            );
        }

        #[tokio::test]
        async fn url_login_fetch_and_content_pass() {
            let (a, h) = server(Data::File(b"hello from custodian\n"), false).await;
            let url = format!("ftp://probe:s3cret@127.0.0.1:{}/pub/hello.txt", a.port());
            let out = probe(url, &[("content", json!("custodian"))], 3.0).await;
            let d = "220 (vsFTPd 3.0.3); logged in as probe; fetched pub/hello.txt (21 bytes)";
            assert_eq!(
                out,
                Outcome::Up {
                    detail: Some(d.into())
                }
            );
            let said = [
                "USER probe",
                "PASS s3cret",
                "TYPE I",
                "EPSV",
                "RETR pub/hello.txt",
                "QUIT",
            ];
            assert_eq!(heard(&h), said);
        }

        #[tokio::test]
        async fn anonymous_pasv_fallback_ignores_the_named_address() {
            let (a, h) = server(Data::File(b"data"), true).await;
            let out = probe(format!("ftp://127.0.0.1:{}/f", a.port()), &[], 3.0).await;
            assert!(out.is_up(), "{out:?}");
            assert_eq!(heard(&h)[..2], ["USER anonymous", "PASS custodian@"]);
            assert!(heard(&h).contains(&"PASV".to_string()));
        }

        #[tokio::test]
        async fn wrong_content_missing_file_and_wrong_password_fail() {
            let (a, _) = server(Data::File(b"hello"), false).await;
            let out = probe(
                format!("ftp://127.0.0.1:{}/f.txt", a.port()),
                &[("content", json!("bye"))],
                3.0,
            )
            .await;
            assert_eq!(
                out,
                Outcome::down("file f.txt (5 bytes) does not contain \"bye\"")
            );
            let out = probe(
                format!("ftp://127.0.0.1:{}/missing.txt", a.port()),
                &[],
                3.0,
            )
            .await;
            assert_eq!(
                out,
                Outcome::down("RETR refused: \"550 Failed to open file.\"")
            );
            let out = probe(
                format!("ftp://probe:bad@127.0.0.1:{}/f.txt", a.port()),
                &[],
                3.0,
            )
            .await;
            assert_eq!(
                out,
                Outcome::down("login refused: \"530 Login incorrect.\"")
            );
        }

        #[tokio::test]
        async fn oversized_files_are_cut_at_the_cap() {
            let (a, _) = server(Data::Endless, false).await;
            let url = format!("ftp://127.0.0.1:{}/big", a.port());
            let out = probe(url.clone(), &[("content", json!("xxx"))], 5.0).await;
            assert!(
                matches!(&out, Outcome::Up { detail: Some(d) } if d.ends_with("(1048576 bytes)")),
                "{out:?}"
            );
            let out = probe(url, &[("content", json!("y"))], 5.0).await;
            assert!(
                down_with(&out, "(only the first 1048576 bytes read)"),
                "{out:?}"
            );
        }

        #[tokio::test]
        async fn hung_and_closed_transfers_fail() {
            let (a, _) = server(Data::Hung, false).await;
            let out = probe(format!("ftp://127.0.0.1:{}/f", a.port()), &[], 1.0).await;
            assert_eq!(out, Outcome::down("timed out downloading f"));
            let (a, _) = server(Data::CloseControl, false).await;
            let out = probe(format!("ftp://127.0.0.1:{}/f", a.port()), &[], 2.0).await;
            assert!(
                down_with(&out, "timed out downloading f") || down_with(&out, "connection"),
                "{out:?}"
            );
        }

        #[tokio::test]
        async fn refused_data_port_fails() {
            let closed = refused().await.port();
            let reply: &'static str =
                Box::leak(format!("229 ok (|||{closed}|)\r\n").into_boxed_str());
            static REPLY: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
            REPLY.get_or_init(|| reply);
            let (a, _) = scripted("220 hi\r\n", |l| {
                Some(match l.split(' ').next() {
                    Some("USER") => "230 ok\r\n",
                    Some("TYPE") => "200 ok\r\n",
                    Some("EPSV") => REPLY.get().copied().unwrap_or("500 no\r\n"),
                    _ => "221 bye\r\n",
                })
            })
            .await;
            let out = probe(format!("ftp://127.0.0.1:{}/f", a.port()), &[], 2.0).await;
            assert!(down_with(&out, "connect to data port"), "{out:?}");
        }
    }
}
