//! Conformance: every probe of the registry against the same hostile server shapes.
//!
//! One row per probe (found by name in `PROBES`, so a new probe without a row fails the test)
//! says how to aim a job at a port and what the protocol's first reply looks like; the shapes
//! are the same for all. Every (probe, shape) runs concurrently under a 1 s deadline and must
//! end by the deadline plus a margin, never panic, never pass (also for `must not run` types,
//! whose raw outcome is judged), and give a non-empty reason free of control characters.
//! Where a pass is by design (connect-only probes, finger's "any text", a valid greeting
//! with escapes inside) the row says so and the pass must still be in time and print clean.
//! Shapes that cannot apply to a probe are skipped with their reason, printed in the matrix
//! (`cargo test -p custodian-probes --test hostile -- --nocapture` shows it whole).
//!
//! Adding a probe: add its row to [`rows`]. The fakes live beside this file, not in
//! custodian-testpeers, which has no async runtime.

#[path = "hostile/servers.rs"]
mod servers;

use custodian_core::outcome::escape_controls;
use custodian_core::{Job, JobResult, Outcome, TargetKind};
use custodian_probes::{find, Ctx, Env, EnvOptions, Roots, PROBES};
use servers::LOCAL;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Every probe's attempt deadline here.
const DEADLINE: Duration = Duration::from_millis(1000);
/// How late past the deadline a probe may return (scheduling on a busy 2-core machine).
const MARGIN: Duration = Duration::from_millis(600);
/// A drip-fed byte every this often: a greeting of more than 4 bytes cannot arrive in time.
const DRIP: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Refused,
    Hung,
    Drip,
    Flood,
    FloodLines,
    Garbage,
    /// A text line carrying terminal escape sequences (title, clear screen, colour).
    Escapes,
    /// A valid greeting with those escape sequences inside: it may pass, but cleanly.
    EscapedGreeting,
    Absurd,
    HalfClose,
    Reset,
    UdpRefused,
    Silence,
    UdpGarbage,
    UdpFlood,
    UdpAbsurd,
}

use Shape::*;

const SHAPES: &[Shape] = &[
    Refused,
    Hung,
    Drip,
    Flood,
    FloodLines,
    Garbage,
    Escapes,
    EscapedGreeting,
    Absurd,
    HalfClose,
    Reset,
    UdpRefused,
    Silence,
    UdpGarbage,
    UdpFlood,
    UdpAbsurd,
];

impl Shape {
    fn is_udp(self) -> bool {
        matches!(
            self,
            UdpRefused | Silence | UdpGarbage | UdpFlood | UdpAbsurd
        )
    }
}

/// Bytes a shape sends, or why the shape does not apply to the row.
type Cell = Result<&'static [u8], &'static str>;

/// What a row's probe speaks on the hostile port.
enum Wire {
    /// A TCP protocol; `greeting` is the start of a valid first reply (dripped, or cut by a
    /// reset), `lead` then endless `line`s are the line flood, `absurd` a reply with an
    /// impossible length field.
    Tcp {
        greeting: &'static [u8],
        lead: &'static [u8],
        line: &'static [u8],
        absurd: Cell,
        /// What the reason for random binary must say (empty: anything clean).
        garbage: &'static str,
        /// Shapes this probe may pass by design, and why (a connect-only probe reads nothing;
        /// finger takes any text as an answer): there a pass is allowed, still in time and
        /// with a clean detail.
        lenient: (&'static [Shape], &'static str),
    },
    /// DNS-like UDP; `absurd` is the reply with impossible counts, where it applies.
    Udp { absurd: Cell },
    /// No fake server can stand in for the target (says why).
    None(&'static str),
}

/// Where the hostile port goes: into the job, or in the environment as the only nameserver.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Aim {
    Target,
    Nameserver,
}

struct Row {
    probe: &'static str,
    job: fn(u16) -> Job,
    aim: Aim,
    wire: Wire,
}

const TLS_HELLO: &[u8] = b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03\x11\x22\x33\x44";
const TLS_ABSURD: Cell = Ok(b"\x16\x03\x03\xff\xff\x02\xff\xff\xff\x03\x03");
const HTTP_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const HTTP_ABSURD: Cell =
    Ok(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999999\r\n\r\nok");
const TEXT: &str = "text protocol: no length fields";
/// Mostly printable, so text checks let it through; reasons quoting it must not pass it on.
const ESCAPES: &[u8] =
    b"\x1b]0;owned\x07\x1b[2J\x1b[31mhello from a hostile server, nothing to see here\x1b[0m\r\n";

fn host(probe: &str, port: u16) -> Job {
    Job::new(probe, "127.0.0.1", Some(port))
}

fn opts(mut j: Job, kv: &[(&str, &str)]) -> Job {
    for (k, v) in kv {
        j.options.insert(k.to_string(), (*v).into());
    }
    j
}

/// A TCP row with a text greeting, no length fields, and "x" lines for the line flood.
fn text(probe: &'static str, job: fn(u16) -> Job, greeting: &'static [u8]) -> Row {
    tcp(probe, job, greeting, b"", b"flood\r\n", Err(TEXT)).garbage("binary garbage")
}

fn tcp(
    probe: &'static str,
    job: fn(u16) -> Job,
    greeting: &'static [u8],
    lead: &'static [u8],
    line: &'static [u8],
    absurd: Cell,
) -> Row {
    Row {
        probe,
        job,
        aim: Aim::Target,
        wire: Wire::Tcp {
            greeting,
            lead,
            line,
            absurd,
            garbage: "",
            lenient: (&[], ""),
        },
    }
}

/// A TLS-first row: the hostile bytes meet the handshake.
fn tls(probe: &'static str, job: fn(u16) -> Job) -> Row {
    tcp(
        probe,
        job,
        TLS_HELLO,
        b"",
        b"\x15\x03\x03\x00\x02",
        TLS_ABSURD,
    )
    .garbage("TLS handshake")
}

impl Row {
    /// The reason random binary must give for this row.
    fn garbage(mut self, needle: &'static str) -> Row {
        if let Wire::Tcp { garbage, .. } = &mut self.wire {
            *garbage = needle;
        }
        self
    }
}

/// `row` passing `shapes` by design, for the reason `why`.
fn lenient(mut row: Row, shapes: &'static [Shape], why: &'static str) -> Row {
    if let Wire::Tcp { lenient, .. } = &mut row.wire {
        *lenient = (shapes, why);
    }
    row
}

/// Every shape past the accept: what a probe that only connects never sees.
const ACCEPTED: &[Shape] = &[
    Hung,
    Drip,
    Flood,
    FloodLines,
    Garbage,
    Escapes,
    EscapedGreeting,
    Absurd,
    HalfClose,
    Reset,
];

fn connect_only(probe: &'static str, job: fn(u16) -> Job) -> Row {
    let why = "connect-only: an accepted connection is the whole check";
    lenient(text(probe, job, b"login: "), ACCEPTED, why)
}

fn udp(probe: &'static str, job: fn(u16) -> Job, aim: Aim, absurd: Cell) -> Row {
    Row {
        probe,
        job,
        aim,
        wire: Wire::Udp { absurd },
    }
}

fn canary(j: Job) -> Job {
    opts(
        j,
        &[("canary", "http://127.0.0.1:9/c/"), ("token", "tok-5f2a")],
    )
}

/// The table: one row per probe (two where a probe speaks over two wires).
fn rows() -> Vec<Row> {
    vec![
        // tcp without `with banner` only connects; with one it reads the first line.
        text(
            "tcp",
            |p| opts(host("tcp", p), &[("banner", "^ok")]),
            b"ok ready\r\n",
        ),
        tcp(
            "http",
            |p| Job::new("http", &format!("http://127.0.0.1:{p}/"), None),
            HTTP_OK,
            b"HTTP/1.1 200 OK\r\n",
            b"X-Flood: 1\r\n",
            HTTP_ABSURD,
        )
        .garbage("bad HTTP reply"),
        tls("https", |p| {
            Job::new("https", &format!("https://127.0.0.1:{p}/"), Some(p))
        }),
        udp(
            "dns",
            |p| {
                let j = host("dns", p);
                opts(
                    j,
                    &[
                        ("query", "example.test"),
                        ("rtype", "A"),
                        ("expect", "192.0.2.1"),
                    ],
                )
            },
            Aim::Target,
            Ok(b""),
        ),
        Row {
            probe: "ping",
            job: |_| Job::new("ping", "127.0.0.1", None),
            aim: Aim::Target,
            wire: Wire::None("ICMP echo: the kernel answers loopback, no fake can stand in"),
        },
        text("ssh", |p| host("ssh", p), b"SSH-2.0-OpenSSH_9.2\r\n"),
        tcp(
            "smtp",
            |p| host("smtp", p),
            b"220 mail.test ESMTP\r\n",
            b"",
            b"220-flood\r\n",
            Err(TEXT),
        )
        .garbage("binary garbage"),
        tcp(
            "imap",
            |p| host("imap", p),
            b"* OK IMAP4rev1 ready\r\n",
            b"",
            b"* flood\r\n",
            Err(TEXT),
        )
        .garbage("binary garbage"),
        text("pop3", |p| host("pop3", p), b"+OK ready\r\n"),
        tcp(
            "ftp",
            |p| host("ftp", p),
            b"220 ftp ready\r\n",
            b"",
            b"220-flood\r\n",
            Err(TEXT),
        )
        .garbage("binary garbage"),
        text("nntp", |p| host("nntp", p), b"200 news ready\r\n"),
        connect_only("telnet", |p| host("telnet", p)),
        connect_only("named", |p| host("named", p)),
        tcp(
            "vnc",
            |p| host("vnc", p),
            b"RFB 003.008\n",
            b"",
            b"RFB 9",
            Err("fixed 12-byte version line"),
        )
        .garbage("binary garbage"),
        tcp(
            "rdp",
            |p| host("rdp", p),
            b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x00\x08\x00\x00\x00\x00\x00",
            b"",
            b"\x03\x00\x00\x04",
            Ok(b"\x03\x00\xff\xff\x0e\xd0\x00\x00\x12\x34\x00"),
        )
        .garbage("not a TPKT"),
        text("rsync", |p| host("rsync", p), b"@RSYNCD: 31.0\n"),
        lenient(
            text("finger", |p| host("finger", p), b"Login: root\r\n"),
            &[Drip, Flood, FloodLines, Escapes, EscapedGreeting, Reset],
            "any text answer passes, even cut short",
        ),
        tcp(
            "jabber",
            |p| host("jabber", p),
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
              xmlns:stream='http://etherx.jabber.org/streams' id='1' version='1.0'>",
            b"<?xml version='1.0'?>",
            b"<x>\n",
            Err("XML stream: no length fields"),
        )
        .garbage("binary garbage"),
        tls("smtps", |p| host("smtps", p)),
        tls("imaps", |p| host("imaps", p)),
        tls("pop3s", |p| host("pop3s", p)),
        udp(
            "tftp",
            |p| Job::new("tftp", &format!("tftp://127.0.0.1:{p}/x"), Some(p)),
            Aim::Target,
            Err("fixed 512-byte blocks: no length fields"),
        ),
        // mx over TCP: a good nameserver points at the hostile exchange.
        tcp(
            "mx",
            |p| Job::new("mx", "mail.test", Some(p)),
            b"220 mx.test ESMTP\r\n",
            b"",
            b"220-flood\r\n",
            Err(TEXT),
        )
        .garbage("binary garbage"),
        udp(
            "mx",
            |_| Job::new("mx", "mail.test", Some(25)),
            Aim::Nameserver,
            Ok(b""),
        ),
        udp(
            "dnsbl",
            |_| {
                opts(
                    Job::new("dnsbl", "127.0.0.2", None),
                    &[("zones", "bl.test")],
                )
            },
            Aim::Nameserver,
            Ok(b""),
        ),
        tcp(
            "redis",
            |p| host("redis", p),
            b"+PONG\r\n",
            b"",
            b"+flood\r\n",
            Ok(b"$4294967295\r\n"),
        )
        .garbage("binary garbage"),
        tls("ssl", |p| host("ssl", p)),
        tcp(
            "openrelay",
            |p| host("openrelay", p),
            b"220 mail.test ESMTP\r\n",
            b"",
            b"220-flood\r\n",
            Err(TEXT),
        )
        .garbage("binary garbage"),
        udp(
            "openresolver",
            |p| opts(host("openresolver", p), &RESOLVER_OPTS),
            Aim::Target,
            Ok(b""),
        ),
        tcp(
            "openresolver",
            |p| {
                let mut j = opts(host("openresolver", p), &RESOLVER_OPTS);
                j.options.insert("with_tcp".into(), true.into());
                j
            },
            b"\x00\x30\x12\x34\x81\x80\x00\x01\x00\x01",
            b"",
            b"\x00\x0c\x00\x00\x81\x80\x00\x00\x00\x00\x00\x00\x00\x00",
            Ok(b"\xff\xff\x12\x34\x81\x80\xff\xff\xff\xff\xff\xff\xff\xff"),
        ),
        tcp(
            "openproxy",
            |p| canary(host("openproxy", p)),
            HTTP_OK,
            b"HTTP/1.1 200 OK\r\n",
            b"X-Flood: 1\r\n",
            HTTP_ABSURD,
        )
        .garbage("not HTTP"),
        tcp(
            "opensocks",
            |p| canary(host("opensocks", p)),
            b"\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50",
            b"",
            b"\x05",
            Err("SOCKS5: fixed-size fields (a name length is one byte)"),
        )
        .garbage("not a SOCKS"),
        tcp(
            "mysql",
            |p| host("mysql", p),
            b"\x4a\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00",
            b"",
            b"\x01\x00\x00\x00\xff",
            Ok(b"\xff\xff\xff\x00\x0a8.0.36\x00"),
        )
        .garbage("not a MySQL server"),
        tcp(
            "postgresql",
            |p| host("postgresql", p),
            b"R\x00\x00\x00\x08\x00\x00\x00\x00",
            b"",
            b"N\x00\x00\x00\x05\x00",
            Ok(b"R\xff\xff\xff\xff\x00\x00\x00\x00"),
        )
        .garbage("not a PostgreSQL server"),
        tcp(
            "ldap",
            |p| host("ldap", p),
            b"\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00\x04\x00",
            b"",
            b"\x30\x03\x02\x01\x01",
            Ok(b"\x30\x84\xff\xff\xff\xff\x02\x01\x01\x61"),
        )
        .garbage("not an LDAP server"),
        tls("ldaps", |p| host("ldaps", p)),
    ]
}

const RESOLVER_OPTS: [(&str, &str); 2] = [("zone", "probe.test"), ("expect", "192.0.2.7")];

/// Why `shape` does not apply to `row`, if it does not.
fn skip(row: &Row, shape: Shape) -> Option<&'static str> {
    match (&row.wire, shape) {
        (Wire::None(why), _) => Some(why),
        (Wire::Tcp { .. }, s) if s.is_udp() => Some("TCP only"),
        (Wire::Udp { .. }, s) if !s.is_udp() => {
            Some("datagrams: no connection to hang, drip, flood, cut or close")
        }
        (
            Wire::Tcp {
                absurd: Err(why), ..
            },
            Absurd,
        ) => Some(why),
        (Wire::Udp { absurd: Err(why) }, UdpAbsurd) => Some(why),
        _ => None,
    }
}

/// Whatever must stay alive while a case runs (a reserved port's socket).
type Keep = Option<Box<dyn std::any::Any + Send>>;

/// `greeting` with [`ESCAPES`] inside its first line, line ending kept.
fn escaped(greeting: &[u8]) -> Vec<u8> {
    let end = greeting
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(greeting.len());
    let mut out = greeting[..end].to_vec();
    out.extend_from_slice(b" ");
    out.extend_from_slice(ESCAPES);
    out.extend_from_slice(&greeting[end..]);
    out
}

fn keep<S: Send + 'static>((port, socket): (u16, S)) -> (u16, Keep) {
    (port, Some(Box::new(socket)))
}

/// Starts the fake for `shape` as `row` needs it; returns its port.
async fn start(row: &Row, shape: Shape, seed: u64) -> (u16, Keep) {
    let (greeting, lead, line, absurd) = match &row.wire {
        Wire::Tcp {
            greeting,
            lead,
            line,
            absurd,
            ..
        } => (*greeting, *lead, *line, *absurd),
        Wire::Udp { .. } | Wire::None(_) => (&b""[..], &b""[..], &b""[..], Ok(&b""[..])),
    };
    let port = match shape {
        Refused => return keep(servers::refused()),
        UdpRefused => return keep(servers::udp_refused().await),
        Hung => servers::hung().await,
        Drip => servers::drip(greeting, DRIP).await,
        Flood => servers::flood(b"", b"A").await,
        FloodLines => servers::flood(lead, line).await,
        Garbage => servers::says(servers::garbage(4096, seed).into()).await,
        Escapes => servers::says(ESCAPES.into()).await,
        EscapedGreeting => servers::says(escaped(greeting).into()).await,
        Absurd => servers::says(absurd.unwrap_or_default().into()).await,
        HalfClose => servers::half_close().await,
        Reset => servers::reset_after(&greeting[..greeting.len().div_ceil(2)]).await,
        Silence => servers::udp(servers::silence).await,
        UdpGarbage => servers::udp(servers::udp_garbage).await,
        UdpFlood => servers::udp_flood().await,
        UdpAbsurd => servers::udp(servers::absurd_counts).await,
    };
    (port, None)
}

fn env(nameserver: SocketAddr) -> Arc<Env> {
    let options = EnvOptions {
        roots: Roots::Bundled,
        ca_file: None,
        nameservers: vec![nameserver],
    };
    Arc::new(Env::build(&options).unwrap_or_else(|e| panic!("{e}")))
}

/// Runs one (row, shape); `Ok` carries the verdict for the matrix, `Err` what went wrong.
async fn case(row: &Row, shape: Shape, seed: u64, good: Arc<Env>) -> Result<String, String> {
    let probe = find(row.probe).ok_or("not in the registry")?;
    let (port, _keep) = start(row, shape, seed).await;
    let env = match row.aim {
        Aim::Target => good,
        Aim::Nameserver => env(SocketAddr::from((LOCAL, port))),
    };
    let mut job = (row.job)(port);
    // `must not run` types: the raw outcome is judged, and must never be "up" (open).
    job.inverted = probe.spec.scan.is_some();
    let addr = match probe.spec.target {
        TargetKind::Name => None,
        _ => Some(IpAddr::V4(LOCAL)),
    };
    let begun = Instant::now();
    let job = Arc::new(job);
    let cx = Ctx::new_in(env, job.clone(), addr, begun + DEADLINE);
    let limit = DEADLINE + Duration::from_secs(3);
    let out = tokio::time::timeout(limit, (probe.check)(&cx)).await;
    let took = begun.elapsed();
    let out = out.map_err(|_| format!("still running {limit:?} after its start"))?;
    if took > DEADLINE + MARGIN {
        return Err(format!(
            "returned after {took:?} (deadline {DEADLINE:?}): {out:?}"
        ));
    }
    judge(row, shape, port, &job, out)
}

/// The verdict's rules: never up (unless the row allows it for this shape), and a clean reason.
fn judge(row: &Row, shape: Shape, port: u16, job: &Job, out: Outcome) -> Result<String, String> {
    let allowed = match row.wire {
        Wire::Tcp {
            lenient: (shapes, why),
            ..
        } if shapes.contains(&shape) => Some(why),
        _ if shape == EscapedGreeting => Some("a valid greeting; its text must come out escaped"),
        _ => None,
    };
    let (kind, reason) = match (&out, allowed) {
        (Outcome::Up { detail }, Some(why)) => {
            // A pass's detail reaches output only through the result (`must not run`: "running
            // but must not be (…)"), which escapes peer text once for all outputs: check that.
            let (status, error) = custodian_core::judge(&out, true);
            let shown = JobResult::new(job, status, error, 0, 1)
                .error
                .unwrap_or_default();
            if shown.chars().any(char::is_control) {
                return Err(format!("control characters in the result: {shown:?}"));
            }
            let detail = escape_controls(detail.as_deref().unwrap_or_default());
            return Ok(format!("up, by design ({why}): {detail}"));
        }
        (Outcome::Up { detail }, None) => return Err(format!("passed: {detail:?}")),
        (Outcome::Down { reason }, _) => ("down", reason),
        (Outcome::Unknown { error }, _) => ("unknown", error),
    };
    if reason.trim().is_empty() {
        return Err(format!("empty reason: {out:?}"));
    }
    if reason.chars().any(char::is_control) {
        return Err(format!("control characters in the reason: {reason:?}"));
    }
    // What every probe says alike for these shapes (the per-probe copies of these tests
    // asserted the same), so reasons stay consistent across types.
    let needle = match (shape, &row.wire) {
        (Refused, _) => format!("connect to port {port}: connection refused"),
        (Hung | Silence, _) => "timed out".into(),
        (Garbage, Wire::Tcp { garbage, .. }) => garbage.to_string(),
        _ => String::new(),
    };
    if !reason.contains(&needle) {
        return Err(format!("reason without {needle:?}: {reason:?}"));
    }
    Ok(format!("{kind}: {reason}"))
}

fn label(row: &Row) -> String {
    let wire = match row.wire {
        Wire::Tcp { .. } => "tcp",
        Wire::Udp { .. } => "udp",
        Wire::None(_) => "-",
    };
    format!("{}/{wire}", row.probe)
}

/// Probes whose feature may be off in this build: a row for them is not stale.
const GATED: &[&str] = &["mysql", "postgresql", "ldap", "ldaps"];

#[test]
fn every_registered_probe_has_a_row() {
    let rows = rows();
    for p in PROBES {
        assert!(
            rows.iter().any(|r| r.probe == p.spec.name),
            "probe `{}` has no row in the hostile table: add one to rows()",
            p.spec.name
        );
    }
    for r in &rows {
        assert!(
            find(r.probe).is_some() || GATED.contains(&r.probe),
            "row for `{}`, which is not a registered probe",
            r.probe
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_survives_every_hostile_shape() {
    use futures::FutureExt;
    let rows: Arc<Vec<Row>> = Arc::new(rows());
    let good = env(servers::good_dns().await);
    let mut tasks = tokio::task::JoinSet::new();
    let mut matrix = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if find(row.probe).is_none() {
            continue;
        }
        for (j, &shape) in SHAPES.iter().enumerate() {
            if let Some(why) = skip(row, shape) {
                matrix.push((i, j, Ok(format!("skip: {why}"))));
                continue;
            }
            let (rows, good) = (rows.clone(), good.clone());
            tasks.spawn(async move {
                let seed = (i * 100 + j) as u64;
                let run = std::panic::AssertUnwindSafe(case(&rows[i], shape, seed, good));
                let res = run
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err("panicked".into()));
                (i, j, res)
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        matrix.push(done.expect("case task"));
    }
    matrix.sort_by_key(|(i, j, _)| (*i, *j));
    let mut failures = Vec::new();
    for (i, j, res) in &matrix {
        let name = format!(
            "{:<18} {:<11}",
            label(&rows[*i]),
            format!("{:?}", SHAPES[*j])
        );
        match res {
            Ok(v) => println!("{name} ok   {v}"),
            Err(e) => {
                println!("{name} FAIL {e}");
                failures.push(format!("{name} {e}"));
            }
        }
    }
    // Every flood ran for the whole second: a probe that kept what it read would show here.
    let peak = peak_memory_kib();
    assert!(
        peak < 256 * 1024,
        "peak memory {peak} KiB: a probe buffered a flood"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        matrix.len(),
        failures.join("\n")
    );
}

/// The process's peak resident memory (VmHWM) in KiB; 0 where /proc is not there to ask.
fn peak_memory_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
