//! `postgresql` (alias `psql`): the server answers a startup message; with `with username` we
//! log in for real (through `tokio-postgres`: md5 or SCRAM) and run `SELECT 1`.
//!
//! Syntax: `HOST must run postgresql [on PORT] [with username 'U' [with password 'P']
//! [with database 'DB']].` Default port 5432. Without a user we send a protocol 3.0 startup
//! for user `custodian` and accept an authentication request or an ErrorResponse as an answer
//! (a server that is there but will not have us still works), except errors of SQLSTATE class
//! 53 (too many connections) and 57 (starting up, shutting down): those mean it cannot serve.
//! The login runs over our own connection, capped at 1 MiB read.
//! Down reasons: connection refused / timed out connecting; `server cannot serve: "…" (…)`;
//! `not a PostgreSQL server: …`; timed out or closed while waiting for the startup answer;
//! `login refused: "…" (28P01)` (wrong password, no pg_hba entry, unknown database);
//! `SELECT 1 failed: …`; `server sent more than 1048576 bytes`.
//! Example: `db1 must run postgresql with username 'monitor' with password 'secret'.`

use crate::net;
use crate::Ctx;
use custodian_core::{Invalid, Kind, Outcome, ParamSpec, ProbeSpec, TargetKind, Value};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "postgresql",
    aliases: &["psql"],
    target: TargetKind::Host,
    default_port: Some(5432),
    port_required: false,
    takes_port: true,
    params: &[
        ParamSpec::new(
            "with username {username}",
            "log in as this user and run SELECT 1",
        ),
        ParamSpec::new(
            "with password {password}",
            "the password for the login (masked in all output)",
        ),
        ParamSpec::new(
            "with database {database}",
            "the database to connect to (default: the user's name)",
        )
        .kinds(&[Kind::Parse(database)]),
    ],
    summary: "the server answers a startup message (and accepts a login and SELECT 1 when a user \
              is given)",
    example: "127.0.0.1 must run postgresql on 5432 with username 'monitor' with password \
              'secret' otherwise 'database down'.",
    check: None,
    scan: None,
};

/// `with database`: a name the startup message can carry (not empty, no NUL or line break).
fn database(name: &str) -> Result<Value, Invalid> {
    if name.is_empty() {
        return Err(Invalid::new("the database name is empty")
            .hint("leave out `with database` to use the user's name"));
    }
    if name.chars().any(char::is_control) {
        return Err(Invalid::new(
            "the database name contains a control character",
        ));
    }
    Ok(Value::Text(name.to_string()))
}

/// The most we read from a server in one check; SELECT 1 needs a few hundred bytes.
const MAX_READ: usize = 1024 * 1024;

/// The largest startup answer we read; real ones are under 200 bytes.
pub(crate) const MAX_ANSWER: usize = 8 * 1024;

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    let result = match cx.params.text("username") {
        Some(user) => login(cx, user).await,
        None => startup(cx).await,
    };
    match result {
        Ok(detail) => Outcome::Up {
            detail: Some(detail),
        },
        Err(reason) => Outcome::down(cx.job.scrub(&reason)),
    }
}

/// Sends a startup message and judges the first answer.
async fn startup(cx: &Ctx) -> Result<String, String> {
    let mut stream = net::connect(cx).await?;
    let msg = startup_message("custodian", "postgres");
    let (kind, body) = net::within(cx, "waiting for the startup answer", async {
        stream.write_all(&msg).await.map_err(|e| closed(&e))?;
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await.map_err(|e| closed(&e))?;
        let len = answer_len(head)?;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.map_err(|e| closed(&e))?;
        Ok((head[0], body))
    })
    .await?;
    if kind == b'R' {
        // Terminate, so the server logs a clean goodbye rather than an aborted startup.
        let _ = stream.write_all(b"X\x00\x00\x00\x04").await;
    }
    judge_answer(kind, &body)
}

fn closed(e: &std::io::Error) -> String {
    format!("{} while waiting for the startup answer", net::io_reason(e))
}

/// A protocol 3.0 StartupMessage for `user` and `database`.
fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in [
        ("user", user),
        ("database", database),
        ("application_name", "custodian"),
    ] {
        for s in [k, v] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    let len = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// The body length of a backend message (its length field counts itself).
pub(crate) fn answer_len(head: [u8; 5]) -> Result<usize, String> {
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=MAX_ANSWER + 4).contains(&len) || !matches!(head[0], b'R' | b'E') {
        return Err(format!(
            "not a PostgreSQL server: answer {:?} of {len} bytes",
            char::from(head[0])
        ));
    }
    Ok(len - 4)
}

/// An authentication request or an error counts as an answer, unless the error says the
/// server cannot take connections now.
pub(crate) fn judge_answer(kind: u8, body: &[u8]) -> Result<String, String> {
    if kind == b'R' {
        return Ok("server asks for authentication".into());
    }
    let (code, message) = error_fields(body);
    if code.starts_with("53") || code.starts_with("57") {
        return Err(format!(
            "server cannot serve: {:?} ({code})",
            net::clip(&message)
        ));
    }
    Ok(format!("server answers: {} ({code})", net::clip(&message)))
}

/// The SQLSTATE (`C`) and message (`M`) fields of an ErrorResponse body.
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let value = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    (code, message)
}

/// Logs in over our own, read-capped connection and runs `SELECT 1`.
async fn login(cx: &Ctx, user: &str) -> Result<String, String> {
    let stream = Capped::new(net::connect(cx).await?, MAX_READ);
    let mut config = tokio_postgres::Config::new();
    config.user(user).application_name("custodian");
    if let Some(p) = cx.params.text("password") {
        config.password(p);
    }
    if let Some(db) = cx.params.text("database") {
        config.dbname(db);
    }
    let (client, conn) = net::within(cx, "logging in", async {
        config
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .map_err(|e| pg_reason("login refused", "login failed", &e))
    })
    .await?;
    // The connection future does the I/O; driving it here (not spawned) ends it with the check.
    let query = async move {
        let rows = client.simple_query("SELECT 1").await;
        drop(client);
        rows
    };
    let (rows, _) = net::within(cx, "running SELECT 1", async {
        Ok(tokio::join!(query, conn))
    })
    .await?;
    let rows = rows.map_err(|e| pg_reason("SELECT 1 failed", "SELECT 1 failed", &e))?;
    let one = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    match one.as_deref() {
        Some("1") => Ok(format!("logged in as {user}")),
        other => Err(format!("SELECT 1 returned {other:?}")),
    }
}

/// The server's own message and SQLSTATE where it sent one (`refused`), else the client's
/// error (`failed`).
fn pg_reason(refused: &str, failed: &str, e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{refused}: {:?} ({})",
            net::clip(db.message()),
            db.code().code()
        ),
        None => {
            // The client's own text is generic ("error communicating with the server"); the
            // cause says what happened.
            let cause = std::error::Error::source(e).map(|c| format!(": {c}"));
            format!(
                "{failed}: {}",
                net::clip(&format!("{e}{}", cause.unwrap_or_default()))
            )
        }
    }
}

/// A stream that fails reads once `left` bytes have been read, so a flooding server costs at
/// most that much memory however the client library buffers.
struct Capped<S> {
    inner: S,
    max: usize,
    left: usize,
}

impl<S> Capped<S> {
    fn new(inner: S, max: usize) -> Self {
        Capped {
            inner,
            max,
            left: max,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            let msg = format!("server sent more than {} bytes", self.max);
            return Poll::Ready(Err(std::io::Error::other(msg)));
        }
        let room = buf.remaining().min(self.left);
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(room));
        let polled = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        buf.advance(n);
        self.left -= n;
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::time::{Duration, Instant};

    /// AuthenticationSASL offering SCRAM-SHA-256, as PostgreSQL 15 sends it.
    const SASL: &[u8] = b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00";

    const NO_ROLE: &[u8] = b"E\x00\x00\x00\x3bSFATAL\x00C28000\x00Mrole \"custodian\" does \
        not exist\x00Rauth.c\x00\x00";

    const STARTING: &[u8] = b"E\x00\x00\x00\x36SFATAL\x00C57P03\x00Mthe database system is \
        starting up\x00\x00";

    fn job(port: u16) -> Job {
        Job::new("postgresql", "127.0.0.1", Some(port))
    }

    fn login_job(port: u16) -> Job {
        let mut j = job(port);
        j.options.insert("username".into(), "probe".into());
        j.options.insert("password".into(), "hunter2".into());
        j
    }

    #[test]
    fn database_names_are_checked() {
        assert!(database("app").is_ok());
        assert!(database("").is_err());
        assert!(database("a\u{0}b").is_err());
        let mut j = login_job(5432);
        j.options.insert("database".into(), "".into());
        let e = crate::prepare(&j).expect_err("empty database");
        assert_eq!(e.msg, "option `database`: the database name is empty");
    }

    #[test]
    fn startup_message_layout() {
        let m = startup_message("u", "d");
        assert_eq!(&m[..4], &(m.len() as u32).to_be_bytes());
        assert_eq!(&m[4..8], &[0, 3, 0, 0]);
        assert!(m.ends_with(b"application_name\0custodian\0\0"));
    }

    #[test]
    fn error_fields_and_judgement() {
        let body = &NO_ROLE[5..];
        assert_eq!(
            judge_answer(b'E', body),
            Ok("server answers: role \"custodian\" does not exist (28000)".into())
        );
        assert_eq!(
            judge_answer(b'E', &STARTING[5..]),
            Err("server cannot serve: \"the database system is starting up\" (57P03)".into())
        );
    }

    #[tokio::test]
    async fn auth_request_is_an_answer() {
        let a = says(SASL).await;
        let out = check(&cx(job(a.port()), 2.0)).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("server asks for authentication".into())
            }
        );
    }

    #[tokio::test]
    async fn error_response_is_an_answer_unless_starting_up() {
        let a = says(NO_ROLE).await;
        assert!(check(&cx(job(a.port()), 2.0)).await.is_up());
        let a = says(STARTING).await;
        let out = check(&cx(job(a.port()), 2.0)).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if reason.contains("starting up")),
            "{out:?}"
        );
    }

    /// A server hung before its first answer is a row of tests/hostile.rs; this one hangs later.
    #[tokio::test]
    async fn hung_login_fails_at_the_deadline() {
        let a = silent().await;
        let t = Instant::now();
        let out = check(&cx(login_job(a.port()), 0.5)).await;
        assert_eq!(out, Outcome::down("timed out logging in"));
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn garbage_is_not_postgresql() {
        let a = says(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let out = check(&cx(job(a.port()), 2.0)).await;
        assert_eq!(
            out,
            Outcome::down("not a PostgreSQL server: answer 'H' of 1414811695 bytes")
        );
    }

    #[tokio::test]
    async fn oversized_answer_is_refused_unread() {
        let a = says(b"E\x7f\xff\xff\xff").await;
        let out = check(&cx(job(a.port()), 2.0)).await;
        assert_eq!(
            out,
            Outcome::down("not a PostgreSQL server: answer 'E' of 2147483647 bytes")
        );
    }

    #[tokio::test]
    async fn flood_during_login_is_capped() {
        // A huge DataRow-like message: the client library would buffer it all.
        let a = flood(b"D").await;
        let out = check(&cx(login_job(a.port()), 5.0)).await;
        let Outcome::Down { reason } = out else {
            panic!("{out:?}")
        };
        assert!(reason.starts_with("login failed: "), "{reason}");
        assert!(
            reason.contains("server sent more than 1048576 bytes"),
            "{reason}"
        );
        assert!(!reason.contains("hunter2"));
    }

    #[tokio::test]
    async fn half_closed_server() {
        let a = serve(|mut s| async move {
            let _ = s.write_all(b"R\x00\x00").await;
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let out = check(&cx(job(a.port()), 2.0)).await;
        assert_eq!(
            out,
            Outcome::down("connection closed by peer while waiting for the startup answer")
        );
    }

    #[tokio::test]
    async fn capped_stream_stops_reading() {
        let a = flood(b"x").await;
        let s = tokio::net::TcpStream::connect(a).await.expect("connect");
        let mut c = Capped::new(s, 10_000);
        let mut sink = Vec::new();
        let err = c.read_to_end(&mut sink).await.expect_err("capped");
        assert_eq!(err.to_string(), "server sent more than 10000 bytes");
        assert_eq!(sink.len(), 10_000);
    }

    /// Random and mutated answers, framed as the probe frames them: never a panic, a length
    /// within the cap, and a judgement no longer than the clipped message and the body.
    #[test]
    fn fuzzed_answers_never_panic() {
        let mut judged = 0;
        custodian_testpeers::fuzz::inputs(0x5432, &[SASL, NO_ROLE, STARTING], |p| {
            let Some(head) = p.get(..5).and_then(|h| <[u8; 5]>::try_from(h).ok()) else {
                return;
            };
            let Ok(len) = answer_len(head) else { return };
            assert!(len <= MAX_ANSWER);
            let body = &p[5..p.len().min(5 + len)];
            judged += 1;
            let said = judge_answer(head[0], body).unwrap_or_else(|e| e);
            assert!(said.chars().count() <= 200 + body.len(), "{said}");
        });
        assert!(judged > 0);
    }
}
