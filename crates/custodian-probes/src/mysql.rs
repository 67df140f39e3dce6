//! `mysql`: the server sends its handshake; with `with username` we also log in (through the
//! `mysql_async` client) and run `SELECT 1`.
//!
//! Syntax: `HOST must run mysql [on PORT] [with username 'U' [with password 'P']
//! [with database 'DB']].` Default port 3306. The greeting is read by hand (one bounded packet)
//! so a server that refuses us up front (`Host … is not allowed to connect`) is reported with
//! its own words; the login is a second connection to the same address and port.
//! Down reasons: connection refused / timed out connecting; `server refused the connection:
//! "…" (error N)`; `not a MySQL server: …` (wrong protocol byte, over-long or garbage first
//! packet); timed out or closed while waiting for the handshake; `login refused: "…" (error
//! N)` (access denied, unknown database); `login failed: …` (I/O errors, a reply packet over
//! 64 KiB); `SELECT 1 failed: …` or returned something else.
//! A greeting-only check leaves before logging in, which the server counts as a handshake
//! error against our address (`max_connect_errors`, 100 by default, then "Host is blocked")
//! until some login from that address succeeds: give monitored servers a user to log in as,
//! or raise `max_connect_errors`.
//! Example: `db1 must run mysql with username 'monitor' with password 'secret'.`

use crate::net;
use crate::Ctx;
use custodian_core::{Invalid, Kind, Outcome, ParamSpec, ProbeSpec, TargetKind, Value};
use mysql_async::prelude::Queryable;
use tokio::io::AsyncReadExt;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "mysql",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(3306),
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
            "the database to select at login",
        )
        .kinds(&[Kind::Parse(database)]),
    ],
    summary:
        "the server sends its handshake (and accepts a login and SELECT 1 when a user is given)",
    example: "127.0.0.1 must run mysql on 3306 with username 'monitor' with password 'secret' \
              otherwise 'database down'.",
    check: None,
    scan: None,
};

/// The longest database name MySQL and MariaDB allow, in characters.
const MAX_DATABASE: usize = 64;

/// `with database`: a name the server can have (1-64 characters, no NUL or line break).
fn database(name: &str) -> Result<Value, Invalid> {
    if name.is_empty() {
        return Err(Invalid::new("the database name is empty")
            .hint("leave out `with database` to use none"));
    }
    if name.chars().any(char::is_control) {
        return Err(Invalid::new(
            "the database name contains a control character",
        ));
    }
    if name.chars().count() > MAX_DATABASE {
        return Err(Invalid::new(format!(
            "the database name is longer than {MAX_DATABASE} characters, the most MySQL allows"
        )));
    }
    Ok(Value::Text(name.to_string()))
}

/// The largest first packet we accept; a real handshake is about 100 bytes.
pub(crate) const MAX_GREETING: usize = 16 * 1024;

/// The largest packet the login client accepts.
const MAX_LOGIN_PACKET: usize = 64 * 1024;

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    match run(cx).await {
        Ok(detail) => Outcome::Up {
            detail: Some(detail),
        },
        Err(reason) => Outcome::down(cx.job.scrub(&reason)),
    }
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let version = greeting(cx).await?;
    let Some(user) = cx.params.text("username") else {
        return Ok(format!("server {version}"));
    };
    login(cx, user).await?;
    Ok(format!("server {version}; logged in as {user}"))
}

/// Reads the server's first packet and returns its version, or why it is not a greeting.
async fn greeting(cx: &Ctx) -> Result<String, String> {
    let mut stream = net::connect(cx).await?;
    let payload = net::within(cx, "waiting for the handshake", async {
        let mut head = [0u8; 4];
        stream.read_exact(&mut head).await.map_err(|e| closed(&e))?;
        let len = packet_len(head)?;
        let mut payload = vec![0u8; len];
        stream
            .read_exact(&mut payload)
            .await
            .map_err(|e| closed(&e))?;
        Ok(payload)
    })
    .await?;
    parse_greeting(&payload)
}

fn closed(e: &std::io::Error) -> String {
    format!("{} while waiting for the handshake", net::io_reason(e))
}

/// The payload length from a packet header, refusing what no greeting needs.
pub(crate) fn packet_len(head: [u8; 4]) -> Result<usize, String> {
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    if len == 0 || len > MAX_GREETING {
        return Err(format!(
            "not a MySQL server: first packet claims {len} bytes"
        ));
    }
    Ok(len)
}

/// Judges the first packet: a protocol-10 handshake gives the server version; an ERR packet
/// (`0xff`, code, optional `#SQLSTATE`, message) is the server refusing us.
pub(crate) fn parse_greeting(p: &[u8]) -> Result<String, String> {
    match p.first() {
        Some(10) => {
            let rest = &p[1..];
            let end = rest
                .iter()
                .position(|b| *b == 0)
                .ok_or("not a MySQL server: handshake without a version")?;
            net::text(&rest[..end]).map_err(|e| format!("not a MySQL server: {e}"))
        }
        Some(0xff) if p.len() >= 3 => {
            let code = u16::from_le_bytes([p[1], p[2]]);
            let mut msg = &p[3..];
            if msg.first() == Some(&b'#') && msg.len() >= 6 {
                msg = &msg[6..];
            }
            let msg = net::text(msg).unwrap_or_else(|e| e);
            Err(format!(
                "server refused the connection: {:?} (error {code})",
                net::clip(&msg)
            ))
        }
        Some(b) => Err(format!(
            "not a MySQL server: first packet starts with 0x{b:02x}"
        )),
        None => Err("not a MySQL server: empty first packet".into()),
    }
}

/// Logs in on a new connection to the same address and runs `SELECT 1`.
async fn login(cx: &Ctx, user: &str) -> Result<(), String> {
    let addr = net::sockaddr(cx)?;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        // Never switch to a local socket: the check is about this address and port.
        .prefer_socket(false)
        // Bounds every packet the client buffers (SELECT 1 needs a few hundred bytes).
        .max_allowed_packet(Some(MAX_LOGIN_PACKET))
        .user(Some(user))
        .pass(cx.params.text("password"))
        .db_name(cx.params.text("database"));
    let mut conn = net::within(cx, "logging in", async {
        mysql_async::Conn::new(opts)
            .await
            .map_err(|e| login_reason(cx, &e))
    })
    .await?;
    let one = net::within(cx, "running SELECT 1", async {
        conn.query_first::<i64, _>("SELECT 1")
            .await
            .map_err(|e| format!("SELECT 1 failed: {}", net::clip(&e.to_string())))
    })
    .await;
    let _ = net::within(cx, "logging out", async {
        conn.disconnect().await.map_err(|e| e.to_string())
    })
    .await;
    match one? {
        Some(1) => Ok(()),
        other => Err(format!("SELECT 1 returned {other:?}")),
    }
}

/// Why a login failed: the server's own message where it sent one. A socket we could not
/// open ourselves is our fault, not the server's.
fn login_reason(cx: &Ctx, e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => net::failed(cx, "login failed", io),
        mysql_async::Error::Server(s) => format!(
            "login refused: {:?} (error {})",
            net::clip(&s.message),
            s.code
        ),
        other => format!("login failed: {}", net::clip(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::time::{Duration, Instant};

    /// A MariaDB 10.11 handshake as captured on the wire (scramble bytes replaced).
    const HANDSHAKE: &[u8] = b"\x5a\x00\x00\x00\x0a5.5.5-10.11.19-MariaDB\x00\x05\x00\x00\x00\
        abcdefgh\x00\xfe\xf7\x2d\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00\
        ijklmnopqrst\x00mysql_native_password\x00";

    const NOT_ALLOWED: &[u8] = b"\x44\x00\x00\x00\xff\x6a\x04Host '127.0.0.1' is not allowed \
        to connect to this MariaDB server";

    fn job(port: u16) -> Job {
        Job::new("mysql", "127.0.0.1", Some(port))
    }

    #[test]
    fn database_names_are_checked() {
        assert!(database("app_db").is_ok());
        assert!(database(&"x".repeat(64)).is_ok());
        let long = database(&"x".repeat(65)).expect_err("65 characters");
        assert!(long.msg.contains("longer than 64"), "{}", long.msg);
        assert!(database("").is_err());
        assert!(database("a\u{0}b").is_err());
        let mut j = job(3306);
        j.options.insert("database".into(), "".into());
        assert!(crate::prepare(&j).is_err());
    }

    #[test]
    fn parses_a_handshake() {
        assert_eq!(
            parse_greeting(&HANDSHAKE[4..]),
            Ok("5.5.5-10.11.19-MariaDB".into())
        );
        assert_eq!(packet_len([0x5a, 0, 0, 0]), Ok(0x5a));
    }

    #[test]
    fn err_packet_with_and_without_sqlstate() {
        let plain = parse_greeting(&NOT_ALLOWED[4..]).expect_err("refused");
        assert_eq!(
            plain,
            "server refused the connection: \"Host '127.0.0.1' is not allowed to connect to \
             this MariaDB server\" (error 1130)"
        );
        let with_state = parse_greeting(b"\xff\x10\x04#08004Too many connections");
        assert_eq!(
            with_state,
            Err("server refused the connection: \"Too many connections\" (error 1040)".into())
        );
    }

    #[tokio::test]
    async fn handshake_passes() {
        let a = says(HANDSHAKE).await;
        let out = check(&cx(job(a.port()), 2.0)).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("server 5.5.5-10.11.19-MariaDB".into())
            }
        );
    }

    #[tokio::test]
    async fn host_not_allowed_is_down_with_its_message() {
        let a = says(NOT_ALLOWED).await;
        let out = check(&cx(job(a.port()), 2.0)).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if reason.contains("is not allowed")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn text_protocol_is_not_mysql() {
        let a = says(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        let out = check(&cx(job(a.port()), 2.0)).await;
        assert_eq!(
            out,
            Outcome::down("not a MySQL server: first packet claims 4739923 bytes")
        );
    }

    #[tokio::test]
    async fn garbage_handshake() {
        let a = says(b"\x08\x00\x00\x00\x0a\x01\x02\xff\xfe\x03\x04\x00").await;
        let out = check(&cx(job(a.port()), 2.0)).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if reason.contains("binary garbage")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn oversized_packet_is_refused_unread() {
        let a = flood(b"\xff").await;
        let out = check(&cx(job(a.port()), 2.0)).await;
        assert_eq!(
            out,
            Outcome::down("not a MySQL server: first packet claims 16777215 bytes")
        );
    }

    /// Greets properly, then answers the login with a packet far larger than any reply.
    async fn greets_then_floods() -> std::net::SocketAddr {
        serve(|mut s| async move {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(HANDSHAKE).await;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"\xff\xff\xff\x02").await;
            let block = vec![b'x'; 64 * 1024];
            while s.write_all(&block).await.is_ok() {}
        })
        .await
    }

    #[tokio::test]
    async fn oversized_login_reply_is_refused() {
        let a = greets_then_floods().await;
        let mut j = job(a.port());
        j.options.insert("username".into(), "probe".into());
        j.options.insert("password".into(), "hunter2".into());
        let t = Instant::now();
        let out = check(&cx(j, 5.0)).await;
        let Outcome::Down { reason } = out else {
            panic!("{out:?}")
        };
        assert!(reason.starts_with("login failed: "), "{reason}");
        assert!(!reason.contains("hunter2"));
        assert!(t.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn half_closed_mid_packet() {
        let short = serve(|mut s| async move {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"\x5a\x00\x00\x00\x0a5.5").await;
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let out = check(&cx(job(short.port()), 2.0)).await;
        assert_eq!(
            out,
            Outcome::down("connection closed by peer while waiting for the handshake")
        );
    }

    /// Random and mutated first packets, framed as the probe frames them: never a panic, a
    /// length within what a greeting needs, and a version no longer than the packet.
    #[test]
    fn fuzzed_greetings_never_panic() {
        let mut versions = 0;
        custodian_testpeers::fuzz::inputs(0x3306, &[HANDSHAKE, NOT_ALLOWED], |p| {
            let Some(head) = p.get(..4).and_then(|h| <[u8; 4]>::try_from(h).ok()) else {
                return;
            };
            let Ok(len) = packet_len(head) else { return };
            assert!((1..=MAX_GREETING).contains(&len));
            let body = &p[4..p.len().min(4 + len)];
            match parse_greeting(body) {
                Ok(version) => {
                    versions += 1;
                    assert!(version.chars().count() < body.len());
                }
                Err(why) => assert!(why.chars().count() < 200, "{why}"),
            }
        });
        assert!(versions > 0);
    }
}
