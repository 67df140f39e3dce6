//! `tftp`: a file downloads over TFTP (RFC 1350): read request in octet mode, every block
//! acknowledged, passes when a non-empty file arrived.
//!
//! Syntax: `tftp://HOST[:PORT]/FILE must run tftp.` Default port 69. The server answers from a
//! new port (its transfer ID); packets from anywhere else are ignored. A request or ACK
//! without reply is sent again every second until the deadline. At most [`MAX_FILE`] bytes are
//! read: a longer file passes once that much arrived, and the transfer is cancelled.
//! Down reasons: no file in the URL; `server error N: MESSAGE` (e.g. file not found);
//! `the file is empty`; `timed out waiting for block N` (no server answers: `…for block 1`);
//! malformed or unexpected packets from the server.
//! Example: `tftp://127.0.0.1/pxelinux.0 must run tftp otherwise 'boot server down'.`

use crate::{net, Ctx};
use custodian_core::{Outcome, ProbeSpec, TargetKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "tftp",
    aliases: &[],
    target: TargetKind::Url(&["tftp"]),
    default_port: Some(69),
    port_required: false,
    takes_port: true,
    params: &[],
    summary: "the file in the URL downloads over TFTP and is not empty",
    example: "tftp://127.0.0.1/pxelinux.0 must run tftp otherwise 'boot server down'.",
    check: None,
    scan: None,
};

/// Most bytes read before the transfer is cancelled (and passes).
pub(crate) const MAX_FILE: usize = 1024 * 1024;

/// Data bytes per block (no blksize option is negotiated).
pub(crate) const BLOCK: usize = 512;

/// How long to wait for a packet before sending our last one again.
const RESEND: Duration = Duration::from_secs(1);

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;

/// A packet from the server, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    Data(u16, &'a [u8]),
    Error(u16, String),
}

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let file = file_name(&cx.job.target)?;
    let server = net::sockaddr(cx)?;
    let local: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((local, 0))
        .await
        .map_err(|e| net::failed(cx, "UDP socket", &e))?;
    let mut t = Transfer {
        sock,
        server,
        peer: None,
        last: rrq(&file),
        size: 0,
    };
    t.download(cx).await?;
    match t.size {
        0 => Err(format!("{file} is empty")),
        n if n >= MAX_FILE => Ok(format!("{file}: first {n} bytes arrived; transfer stopped")),
        n => Ok(format!("{file}: {n} bytes")),
    }
}

/// The file to read: the URL's path without its leading `/`, percent-decoded.
fn file_name(target: &str) -> Result<String, String> {
    let url = url::Url::parse(target).map_err(|e| format!("bad tftp URL: {e}"))?;
    let path = url.path().trim_start_matches('/');
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| "the file name is not UTF-8")?;
    if decoded.is_empty() || decoded.contains('\0') {
        return Err("the URL names no file (write tftp://host/FILE)".into());
    }
    Ok(decoded.into_owned())
}

/// A read request for `file` in octet mode.
fn rrq(file: &str) -> Vec<u8> {
    let mut p = RRQ.to_be_bytes().to_vec();
    p.extend_from_slice(file.as_bytes());
    p.push(0);
    p.extend_from_slice(b"octet\0");
    p
}

fn ack(block: u16) -> Vec<u8> {
    [ACK.to_be_bytes(), block.to_be_bytes()].concat()
}

/// An ERROR packet we send to end a transfer early (code 0: "not defined").
fn cancel() -> Vec<u8> {
    let mut p = [ERROR.to_be_bytes(), 0u16.to_be_bytes()].concat();
    p.extend_from_slice(b"transfer stopped by client\0");
    p
}

/// Parses a packet from the server; anything but DATA or ERROR is a protocol error.
pub(crate) fn parse(p: &[u8]) -> Result<Packet<'_>, String> {
    if p.len() < 4 {
        return Err(format!("malformed TFTP packet ({} bytes)", p.len()));
    }
    let word = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    match word(0) {
        DATA if p.len() <= 4 + BLOCK => Ok(Packet::Data(word(2), &p[4..])),
        DATA => Err(format!("DATA packet longer than {BLOCK} bytes")),
        ERROR => {
            let msg = p[4..].split(|b| *b == 0).next().unwrap_or_default();
            // The server's words go into the reason: control characters escaped.
            let text = net::clip(&String::from_utf8_lossy(msg));
            Ok(Packet::Error(
                word(2),
                custodian_core::outcome::escape_controls(&text),
            ))
        }
        op => Err(format!("unexpected TFTP packet (opcode {op})")),
    }
}

/// One download: the socket, where the server answers from, and what we sent last.
struct Transfer {
    sock: UdpSocket,
    server: SocketAddr,
    /// The server's transfer ID (address and port), fixed by its first packet.
    peer: Option<SocketAddr>,
    last: Vec<u8>,
    size: usize,
}

impl Transfer {
    async fn download(&mut self, cx: &Ctx) -> Result<(), String> {
        let mut block: u16 = 1;
        self.send_last(cx).await?;
        loop {
            let data = self.next_data(cx, block).await?;
            let len = data.len();
            self.size += len;
            if self.size >= MAX_FILE {
                self.last = cancel();
                return self.send_last(cx).await;
            }
            self.last = ack(block);
            self.send_last(cx).await?;
            if len < BLOCK {
                return Ok(());
            }
            block = block.wrapping_add(1);
        }
    }

    async fn send_last(&self, cx: &Ctx) -> Result<(), String> {
        let to = self.peer.unwrap_or(self.server);
        self.sock
            .send_to(&self.last, to)
            .await
            .map(|_| ())
            .map_err(|e| net::failed(cx, &format!("UDP to port {}", to.port()), &e))
    }

    /// Waits for DATA block `block`, resending our last packet every [`RESEND`]; duplicates of
    /// the previous block are acknowledged again (the server missed our ACK).
    async fn next_data(&mut self, cx: &Ctx, block: u16) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; 4 + BLOCK + 1];
        loop {
            let until = cx.deadline.min(Instant::now() + RESEND);
            let Ok(got) = tokio::time::timeout_at(until, self.sock.recv_from(&mut buf)).await
            else {
                if Instant::now() >= cx.deadline {
                    return Err(format!("timed out waiting for block {block}"));
                }
                self.send_last(cx).await?;
                continue;
            };
            let (n, from) = got.map_err(|e| format!("UDP: {}", net::io_reason(&e)))?;
            if !self.is_server(from) {
                continue;
            }
            match parse(&buf[..n])? {
                Packet::Error(code, msg) => return Err(format!("server error {code}: {msg}")),
                Packet::Data(b, data) if b == block => return Ok(data.to_vec()),
                Packet::Data(b, _) if b == block.wrapping_sub(1) => self.send_last(cx).await?,
                Packet::Data(b, _) => return Err(format!("got block {b}, expected {block}")),
            }
        }
    }

    /// Whether a datagram comes from the server: its first reply fixes the transfer ID.
    fn is_server(&mut self, from: SocketAddr) -> bool {
        match self.peer {
            Some(p) => p == from,
            None if from.ip() == self.server.ip() => {
                self.peer = Some(from);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::{cx, LOCAL};
    use custodian_core::Job;
    use std::sync::{Arc, Mutex};

    /// What a fake server does with a read request: the packets it sends, given the
    /// requested file name and the client's ACKs so far.
    type Script = fn(&str, &[u16]) -> Vec<Vec<u8>>;

    fn data(block: u16, bytes: &[u8]) -> Vec<u8> {
        let mut p = [DATA.to_be_bytes(), block.to_be_bytes()].concat();
        p.extend_from_slice(bytes);
        p
    }

    fn error(code: u16, msg: &str) -> Vec<u8> {
        let mut p = [ERROR.to_be_bytes(), code.to_be_bytes()].concat();
        p.extend_from_slice(msg.as_bytes());
        p.push(0);
        p
    }

    /// Packets the client sent the fake server's transfer port, for assertions.
    type Log = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A fake TFTP server: answers each RRQ from a fresh port, as real servers do, and
    /// consults `script` after the request and after every ACK.
    async fn fake(script: Script) -> (u16, Log) {
        let listen = UdpSocket::bind((LOCAL, 0)).await.expect("bind");
        let port = listen.local_addr().expect("addr").port();
        let log = Log::default();
        let out = log.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            while let Ok((n, client)) = listen.recv_from(&mut buf).await {
                let file = String::from_utf8_lossy(&buf[2..n])
                    .split('\0')
                    .next()
                    .unwrap_or("")
                    .to_string();
                tokio::spawn(serve(file, client, script, out.clone()));
            }
        });
        (port, log)
    }

    async fn serve(file: String, client: SocketAddr, script: Script, log: Log) {
        let sock = UdpSocket::bind((LOCAL, 0)).await.expect("bind");
        let mut acks = Vec::new();
        let mut buf = vec![0u8; 1024];
        loop {
            for p in script(&file, &acks) {
                let _ = sock.send_to(&p, client).await;
            }
            let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await
            else {
                return;
            };
            log.lock().expect("lock").push(buf[..n].to_vec());
            match parse_ack(&buf[..n]) {
                Some(b) => acks.push(b),
                None => return,
            }
        }
    }

    fn parse_ack(p: &[u8]) -> Option<u16> {
        (p.len() == 4 && p[..2] == ACK.to_be_bytes()).then(|| u16::from_be_bytes([p[2], p[3]]))
    }

    /// Files: `small` (5 bytes), `exact` (512 bytes, then an empty block), `empty`,
    /// `endless` (full blocks forever), `dup` (block 1 sent twice), `hang` (silent after
    /// block 1), `garbage`; anything else: error 1 "File not found".
    fn files(file: &str, acks: &[u16]) -> Vec<Vec<u8>> {
        let next = acks.last().map_or(1, |b| b + 1);
        match (file, next) {
            ("small", 1) => vec![data(1, b"hello")],
            ("exact", 1) => vec![data(1, &[7; BLOCK])],
            ("exact", 2) => vec![data(2, b"")],
            ("empty", 1) => vec![data(1, b"")],
            ("endless", b) => vec![data(b, &[1; BLOCK])],
            ("dup", 1) => vec![data(1, &[1; BLOCK]), data(1, &[1; BLOCK])],
            ("dup", 2) => vec![data(2, b"end")],
            ("hang", 1) => vec![data(1, &[1; BLOCK])],
            ("garbage", _) => vec![b"\x00\x09zz".to_vec()],
            ("small" | "exact" | "empty" | "dup" | "hang", _) => vec![],
            _ => vec![error(1, "File not found")],
        }
    }

    async fn probe(file: &str, secs: f64) -> (Outcome, Log) {
        let (port, log) = fake(files).await;
        let j = Job::new(
            "tftp",
            &format!("tftp://127.0.0.1:{port}/{file}"),
            Some(port),
        );
        (check(&cx(j, secs)).await, log)
    }

    /// What the server heard, once our last datagram has had time to arrive.
    async fn logged(log: &Log) -> Vec<Vec<u8>> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.lock().expect("lock").clone()
    }

    fn up(detail: &str) -> Outcome {
        Outcome::Up {
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn packets_are_built_and_parsed() {
        assert_eq!(rrq("a/b"), b"\x00\x01a/b\x00octet\x00");
        assert_eq!(ack(258), [0, 4, 1, 2]);
        assert_eq!(parse(&data(3, b"xy")), Ok(Packet::Data(3, &b"xy"[..])));
        assert_eq!(
            parse(&error(2, "Access violation")),
            Ok(Packet::Error(2, "Access violation".into()))
        );
        assert_eq!(
            parse(b"\x00\x05\x00\x01"),
            Ok(Packet::Error(1, String::new()))
        );
        assert_eq!(
            parse(b"\x00\x03"),
            Err("malformed TFTP packet (2 bytes)".into())
        );
        assert_eq!(
            parse(&data(1, &[0; BLOCK + 1])),
            Err(format!("DATA packet longer than {BLOCK} bytes"))
        );
        assert_eq!(
            parse(&ack(1)),
            Err("unexpected TFTP packet (opcode 4)".into())
        );
    }

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(file_name("tftp://h/pxelinux.0"), Ok("pxelinux.0".into()));
        assert_eq!(
            file_name("tftp://h:69/boot/my%20file"),
            Ok("boot/my file".into())
        );
        assert!(file_name("tftp://h/").is_err());
        assert!(file_name("tftp://h/a%00b").is_err());
    }

    #[tokio::test]
    async fn small_and_block_sized_files_pass() {
        let (out, log) = probe("small", 2.0).await;
        assert_eq!(out, up("small: 5 bytes"));
        assert_eq!(logged(&log).await, [ack(1)]);
        let (out, log) = probe("exact", 2.0).await;
        assert_eq!(out, up("exact: 512 bytes"));
        assert_eq!(logged(&log).await, [ack(1), ack(2)]);
    }

    #[tokio::test]
    async fn duplicate_blocks_are_acknowledged_again() {
        let (out, _) = probe("dup", 2.0).await;
        assert_eq!(out, up("dup: 515 bytes"));
    }

    #[tokio::test]
    async fn errors_and_empty_files_are_down() {
        let (out, _) = probe("missing", 2.0).await;
        assert_eq!(out, Outcome::down("server error 1: File not found"));
        let (out, _) = probe("empty", 2.0).await;
        assert_eq!(out, Outcome::down("empty is empty"));
        let (out, _) = probe("garbage", 2.0).await;
        assert_eq!(out, Outcome::down("unexpected TFTP packet (opcode 9)"));
    }

    #[tokio::test]
    async fn endless_files_are_cut_off_and_cancelled() {
        let t = std::time::Instant::now();
        let (out, log) = probe("endless", 20.0).await;
        assert_eq!(
            out,
            up(&format!(
                "endless: first {MAX_FILE} bytes arrived; transfer stopped"
            ))
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        let log = logged(&log).await;
        assert_eq!(log.last(), Some(&cancel()));
        assert_eq!(
            log.len(),
            MAX_FILE / BLOCK,
            "one ACK per block but the last"
        );
    }

    #[tokio::test]
    async fn silence_times_out_at_the_deadline() {
        let (out, log) = probe("hang", 1.5).await;
        assert_eq!(out, Outcome::down("timed out waiting for block 2"));
        let resent = log
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| **p == ack(1))
            .count();
        assert!(
            resent >= 2,
            "the ACK is sent again after a second ({resent})"
        );
        let quiet = UdpSocket::bind((LOCAL, 0)).await.expect("bind");
        let port = quiet.local_addr().expect("addr").port();
        let j = Job::new("tftp", &format!("tftp://127.0.0.1:{port}/x"), Some(port));
        let t = std::time::Instant::now();
        assert_eq!(
            check(&cx(j, 0.5)).await,
            Outcome::down("timed out waiting for block 1")
        );
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn packets_from_strangers_are_ignored() {
        let quiet = UdpSocket::bind((LOCAL, 0)).await.expect("bind");
        let port = quiet.local_addr().expect("addr").port();
        let j = Job::new("tftp", &format!("tftp://127.0.0.1:{port}/x"), Some(port));
        let c = cx(j, 1.0);
        let task = tokio::spawn(async move { check(&c).await });
        let mut buf = [0u8; 64];
        let (_, client) = quiet.recv_from(&mut buf).await.expect("rrq");
        // One server port answers first; a second source port is then a stranger.
        let a = UdpSocket::bind((LOCAL, 0)).await.expect("bind");
        let b = UdpSocket::bind((LOCAL, 0)).await.expect("bind");
        a.send_to(&data(1, &[1; BLOCK]), client)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.send_to(&data(2, b"intruder"), client)
            .await
            .expect("send");
        let out = task.await.expect("join");
        assert_eq!(out, Outcome::down("timed out waiting for block 2"));
    }

    /// Random and mutated packets: never a panic; data stays within a block and the server's
    /// error text is bounded.
    #[test]
    fn fuzzed_packets_never_panic() {
        let (d, e) = (data(7, &[b'x'; BLOCK]), error(1, "File not found"));
        let mut parsed = 0;
        custodian_testpeers::fuzz::inputs(0x7f7, &[&d, &e, &data(1, b"hi")], |p| match parse(p) {
            Ok(Packet::Data(_, bytes)) => {
                parsed += 1;
                assert!(bytes.len() <= BLOCK);
            }
            Ok(Packet::Error(_, text)) => {
                parsed += 1;
                assert!(text.chars().count() < 1300, "{text}");
            }
            Err(_) => {}
        });
        assert!(parsed > 0);
    }
}
