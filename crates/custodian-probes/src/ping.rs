//! `ping`: ICMP echo requests (IPv4 or IPv6) are answered, without shelling out to ping(8).
//!
//! Syntax: `HOST must ping [with count N].` (same as `must run ping`). No port.
//! `with count N` (1–100, default 1) sends N requests 200 ms apart; the check passes when any
//! is answered, and the detail reports replies, loss and rtt min/avg/max. Once a reply is in,
//! requests unanswered 1 s after the last send count as lost; with no reply at all we wait
//! until the deadline.
//! We try a datagram ICMP socket first (needs `net.ipv4.ping_group_range` to include us) and
//! fall back to a raw socket (needs CAP_NET_RAW). Replies are matched by identifier (raw
//! sockets; the kernel owns it for datagram ones), sequence number and a random token in the
//! payload, so other processes' pings and our own looped-back requests are skipped.
//! Down reasons: `no reply to N echo request(s) before the deadline`; `connecting: …`,
//! `sending echo request: …` or `receiving echo reply: …` (e.g. network is unreachable).
//! Unknown when no ICMP socket can be opened at all (a local setup problem) or our side refuses
//! to send (EPERM from a local firewall, ENOBUFS). `with count` outside 1–100 is an error at
//! `custodian check`.
//! Example: `gateway must ping with count 3 otherwise 'gateway unreachable'.`

use crate::{net, Ctx};
use custodian_core::{Kind, Outcome, ParamSpec, ProbeSpec, TargetKind};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "ping",
    aliases: &[],
    target: TargetKind::Host,
    default_port: None,
    port_required: false,
    takes_port: false,
    params: &[ParamSpec::new(
        "with count {count:int}",
        "echo requests to send, 200 ms apart (1-100, default 1); any reply passes",
    )
    .kinds(&[Kind::Int {
        min: 1,
        max: MAX_COUNT,
    }])],
    summary: "the host answers ICMP echo requests",
    example: "127.0.0.1 must ping with count 3 otherwise 'loopback is down'.",
    check: None,
    scan: None,
};

const MAX_COUNT: u64 = 100;

/// Spacing of requests: the fastest rate ping(8) allows an ordinary user.
const INTERVAL: Duration = Duration::from_millis(200);

/// Once some reply came, how long after the last request the rest may still arrive.
const LATE: Duration = Duration::from_secs(1);

/// Payload after the token: fixed, so a reply must echo all of it.
const PAD: &[u8; 16] = b"custodian probe.";

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    let Some(ip) = cx.addr.map(|ip| ip.to_canonical()) else {
        return Outcome::unknown("no address to ping");
    };
    let (sock, wire) = match open(ip) {
        Ok(s) => s,
        Err(e) => {
            let why = net::io_reason(&e);
            return Outcome::unknown(format!("cannot open an ICMP socket: {why}"));
        }
    };
    Outcome::from_result(exchange(cx, sock, SocketAddr::new(ip, 0), wire, count(cx)).await)
}

/// Requests to send: the planner holds `with count` to 1..=[`MAX_COUNT`].
fn count(cx: &Ctx) -> u16 {
    let n = cx.params.int("count").unwrap_or(1).clamp(1, MAX_COUNT);
    u16::try_from(n).unwrap_or(1)
}

/// How one kind of socket frames ICMP, i.e. what the kernel adds or rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wire {
    v6: bool,
    /// Raw IPv4 sockets hand us the IP header in front of the ICMP message.
    ip_header: bool,
    /// Our identifier; `None` on datagram sockets, where the kernel sets and filters it.
    ident: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Datagram,
    Raw,
}

/// An unconnected ICMP socket for `ip`'s family: datagram if allowed, else raw.
fn open(ip: IpAddr) -> io::Result<(Socket, Wire)> {
    open_as(ip, Mode::Datagram).or_else(|_| open_as(ip, Mode::Raw))
}

fn open_as(ip: IpAddr, mode: Mode) -> io::Result<(Socket, Wire)> {
    let v6 = ip.is_ipv6();
    let (domain, proto) = match v6 {
        false => (Domain::IPV4, Protocol::ICMPV4),
        true => (Domain::IPV6, Protocol::ICMPV6),
    };
    let ty = match mode {
        Mode::Datagram => Type::DGRAM,
        Mode::Raw => Type::RAW,
    };
    let sock = Socket::new(domain, ty, Some(proto))?;
    let wire = Wire {
        v6,
        ip_header: mode == Mode::Raw && !v6,
        ident: (mode == Mode::Raw).then(rand::random),
    };
    Ok((sock, wire))
}

/// The RFC 1071 Internet checksum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn payload(token: &[u8; 16]) -> Vec<u8> {
    [&token[..], &PAD[..]].concat()
}

/// An echo request; IPv6 checksums are left to the kernel (they cover a pseudo-header).
fn echo_request(v6: bool, ident: u16, seq: u16, token: &[u8; 16]) -> Vec<u8> {
    let kind = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    let mut p = vec![kind, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&payload(token));
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// The sequence number if `packet` is a reply to one of our requests; `None` for anything
/// else the socket hands us (other processes' replies, our own requests, errors, truncation).
fn match_reply(wire: Wire, packet: &[u8], token: &[u8; 16]) -> Option<u16> {
    let icmp = if wire.ip_header {
        strip_ipv4_header(packet)?
    } else {
        packet
    };
    let reply = if wire.v6 {
        ECHO_REPLY_V6
    } else {
        ECHO_REPLY_V4
    };
    let head = icmp.get(..8)?;
    if head[0] != reply || head[1] != 0 {
        return None;
    }
    let ident = u16::from_be_bytes([head[4], head[5]]);
    if wire.ident.is_some_and(|ours| ours != ident) || icmp[8..] != payload(token)[..] {
        return None;
    }
    Some(u16::from_be_bytes([head[6], head[7]]))
}

fn strip_ipv4_header(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    let len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || len < 20 {
        return None;
    }
    packet.get(len..)
}

/// What to do next in an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Send,
    /// Wait for replies until then.
    Wait(Instant),
    Done,
}

/// Requests sent and replies received so far; pure, so the timing rules are testable.
#[derive(Debug)]
struct Tally {
    count: u16,
    sent: Vec<Instant>,
    rtt: Vec<Option<Duration>>,
}

impl Tally {
    fn new(count: u16) -> Self {
        Tally {
            count,
            sent: Vec::new(),
            rtt: Vec::new(),
        }
    }

    fn answered(&self) -> usize {
        self.rtt.iter().flatten().count()
    }

    fn step(&self, now: Instant, deadline: Instant) -> Step {
        if now >= deadline {
            return Step::Done;
        }
        let Some(&last) = self.sent.last() else {
            return Step::Send;
        };
        if self.sent.len() < usize::from(self.count) {
            let due = last + INTERVAL;
            return if due <= now {
                Step::Send
            } else {
                Step::Wait(due.min(deadline))
            };
        }
        match self.answered() {
            n if n == self.sent.len() => Step::Done,
            0 => Step::Wait(deadline),
            _ if now >= last + LATE => Step::Done,
            _ => Step::Wait((last + LATE).min(deadline)),
        }
    }

    /// Records a request sent now; returns its sequence number (1-based).
    fn on_send(&mut self, now: Instant) -> u16 {
        self.sent.push(now);
        self.rtt.push(None);
        self.sent.len() as u16
    }

    /// Records a reply; duplicates and unknown sequence numbers are ignored.
    fn on_reply(&mut self, seq: u16, now: Instant) {
        let i = usize::from(seq).wrapping_sub(1);
        if let (Some(slot @ None), Some(&sent)) = (self.rtt.get_mut(i), self.sent.get(i)) {
            *slot = Some(now - sent);
        }
    }

    fn verdict(&self) -> Result<String, String> {
        let rtts: Vec<Duration> = self.rtt.iter().flatten().copied().collect();
        let sent = self.sent.len();
        let (Some(min), Some(max)) = (rtts.iter().min(), rtts.iter().max()) else {
            let s = if sent == 1 { "" } else { "s" };
            return Err(format!(
                "no reply to {sent} echo request{s} before the deadline"
            ));
        };
        let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
        let loss = 100 * (sent - rtts.len()) / sent;
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        Ok(format!(
            "{}/{sent} replies ({loss}% loss), rtt min/avg/max {:.3}/{:.3}/{:.3} ms",
            rtts.len(),
            ms(min),
            ms(&avg),
            ms(max)
        ))
    }
}

/// Pings `peer` through `sock` until the tally is done or the deadline passes.
async fn exchange(
    cx: &Ctx,
    sock: Socket,
    peer: SocketAddr,
    wire: Wire,
    count: u16,
) -> Result<String, String> {
    let deadline = cx.deadline;
    let fd = connected(sock, peer).map_err(|e| net::failed(cx, "connecting", &e))?;
    let token: [u8; 16] = rand::random();
    let mut tally = Tally::new(count);
    let mut buf = [0u8; 2048];
    loop {
        match tally.step(Instant::now(), deadline) {
            Step::Done => return tally.verdict(),
            Step::Send => {
                let seq = tally.on_send(Instant::now());
                let packet = echo_request(wire.v6, wire.ident.unwrap_or(0), seq, &token);
                send(cx, &fd, &packet).await?;
            }
            Step::Wait(until) => tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                got = recv(&fd, &mut buf) => {
                    if let Some(seq) = match_reply(wire, &buf[..got?], &token) {
                        tally.on_reply(seq, Instant::now());
                    }
                }
            },
        }
    }
}

/// Connecting makes the kernel drop packets from anyone but `peer` before we see them.
fn connected(sock: Socket, peer: SocketAddr) -> io::Result<AsyncFd<Socket>> {
    sock.set_nonblocking(true)?;
    sock.connect(&peer.into())?;
    // SAFETY: `Socket` owns its descriptor and always returns that same one from
    // `as_raw_fd`; it is closed only when the `AsyncFd` drops the socket.
    unsafe { AsyncFd::register(sock) }.map_err(io::Error::from)
}

async fn send(cx: &Ctx, fd: &AsyncFd<Socket>, packet: &[u8]) -> Result<(), String> {
    let sending = async {
        loop {
            let mut ready = fd.writable().await?;
            if let Ok(sent) = ready.try_io(|s| s.get_ref().send(packet)) {
                return sent.map(drop);
            }
        }
    };
    match tokio::time::timeout_at(cx.deadline, sending).await {
        Ok(Err(e)) => Err(net::failed(cx, "sending echo request", &e)),
        _ => Ok(()),
    }
}

async fn recv(fd: &AsyncFd<Socket>, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        let mut ready = fd
            .readable()
            .await
            .map_err(|e| format!("receiving echo reply: {}", net::io_reason(&e)))?;
        if let Ok(got) = ready.try_io(|s| (&mut s.get_ref()).read(buf)) {
            return got.map_err(|e| format!("receiving echo reply: {}", net::io_reason(&e)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::cx;
    use custodian_core::Job;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use tokio::net::UdpSocket;

    const TOKEN: [u8; 16] = *b"0123456789abcdef";
    const RAW_V4: Wire = Wire {
        v6: false,
        ip_header: true,
        ident: Some(0x1234),
    };

    fn ping_cx(ip: IpAddr, count: Option<u64>, secs: f64) -> Ctx {
        let mut job = Job::new("ping", &ip.to_string(), None);
        if let Some(n) = count {
            job.options.insert("count".into(), n.into());
        }
        let mut c = cx(job, secs);
        c.addr = Some(ip);
        c
    }

    /// The reply a well-behaved host sends to `request`.
    fn reply_to(request: &[u8]) -> Vec<u8> {
        let mut r = request.to_vec();
        r[0] = if r[0] == ECHO_REQUEST_V6 {
            ECHO_REPLY_V6
        } else {
            ECHO_REPLY_V4
        };
        r[2..4].fill(0);
        let sum = checksum(&r);
        r[2..4].copy_from_slice(&sum.to_be_bytes());
        r
    }

    fn with_ipv4_header(icmp: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        p.extend_from_slice(icmp);
        p
    }

    #[test]
    fn checksum_follows_rfc_1071() {
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        assert_eq!(checksum(&[0xff]), 0x00ff);
        let p = echo_request(false, 0xbeef, 7, &TOKEN);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
    }

    #[test]
    fn echo_requests_are_laid_out_as_rfc_792_and_4443() {
        let p = echo_request(false, 0xbeef, 0x0102, &TOKEN);
        assert_eq!(&p[..2], &[8, 0]);
        assert_eq!(&p[4..8], &[0xbe, 0xef, 0x01, 0x02]);
        assert_eq!(&p[8..24], &TOKEN);
        assert_eq!(p.len(), 40);
        let p6 = echo_request(true, 0xbeef, 1, &TOKEN);
        assert_eq!(
            &p6[..4],
            &[128, 0, 0, 0],
            "the kernel fills the v6 checksum"
        );
    }

    #[test]
    fn matches_only_our_replies() {
        let request = echo_request(false, 0x1234, 3, &TOKEN);
        let reply = with_ipv4_header(&reply_to(&request));
        assert_eq!(match_reply(RAW_V4, &reply, &TOKEN), Some(3));
        let foreign = with_ipv4_header(&reply_to(&echo_request(false, 0x9999, 3, &TOKEN)));
        assert_eq!(
            match_reply(RAW_V4, &foreign, &TOKEN),
            None,
            "other identifier"
        );
        let other_token = *b"fedcba9876543210";
        assert_eq!(
            match_reply(RAW_V4, &reply, &other_token),
            None,
            "other token"
        );
        let own_request = with_ipv4_header(&request);
        assert_eq!(
            match_reply(RAW_V4, &own_request, &TOKEN),
            None,
            "our looped request"
        );
        assert_eq!(match_reply(RAW_V4, &reply[..30], &TOKEN), None, "truncated");
        assert_eq!(match_reply(RAW_V4, &[0x45], &TOKEN), None, "header only");
        let unreachable = with_ipv4_header(&[3, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            match_reply(RAW_V4, &unreachable, &TOKEN),
            None,
            "ICMP error"
        );
    }

    #[test]
    fn datagram_and_v6_replies_carry_no_ip_header() {
        let dgram = Wire {
            v6: true,
            ip_header: false,
            ident: None,
        };
        let reply = reply_to(&echo_request(true, 0x4321, 9, &TOKEN));
        assert_eq!(
            match_reply(dgram, &reply, &TOKEN),
            Some(9),
            "kernel-owned identifier"
        );
        let v4_reply = reply_to(&echo_request(false, 1, 9, &TOKEN));
        assert_eq!(
            match_reply(dgram, &v4_reply, &TOKEN),
            None,
            "v4 type on a v6 socket"
        );
    }

    #[test]
    fn tally_sends_spaced_requests_then_waits_for_replies() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(10);
        let mut t = Tally::new(2);
        assert_eq!(t.step(t0, deadline), Step::Send);
        assert_eq!(t.on_send(t0), 1);
        assert_eq!(t.step(t0, deadline), Step::Wait(t0 + INTERVAL));
        assert_eq!(t.step(t0 + INTERVAL, deadline), Step::Send);
        let t1 = t0 + INTERVAL;
        assert_eq!(t.on_send(t1), 2);
        assert_eq!(
            t.step(t1, deadline),
            Step::Wait(deadline),
            "no reply yet: wait it out"
        );
        t.on_reply(1, t1 + Duration::from_millis(5));
        t.on_reply(1, t1 + Duration::from_millis(9));
        t.on_reply(7, t1);
        assert_eq!(t.step(t1, deadline), Step::Wait(t1 + LATE));
        assert_eq!(t.step(t1 + LATE, deadline), Step::Done);
        assert_eq!(
            t.verdict(),
            Ok("1/2 replies (50% loss), rtt min/avg/max 205.000/205.000/205.000 ms".into())
        );
    }

    #[test]
    fn tally_without_replies_fails_at_the_deadline() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(2);
        let mut t = Tally::new(1);
        t.on_send(t0);
        assert_eq!(
            t.step(t0 + Duration::from_secs(1), deadline),
            Step::Wait(deadline)
        );
        assert_eq!(t.step(deadline, deadline), Step::Done);
        assert_eq!(
            t.verdict(),
            Err("no reply to 1 echo request before the deadline".into())
        );
        let mut t = Tally::new(3);
        t.on_send(t0);
        t.on_send(t0);
        assert_eq!(
            t.step(deadline, deadline),
            Step::Done,
            "the deadline cuts sending short"
        );
        assert_eq!(
            t.verdict(),
            Err("no reply to 2 echo requests before the deadline".into())
        );
    }

    #[test]
    fn count_is_checked_when_the_job_is_prepared() {
        let job = |n: u64| {
            let mut j = Job::new("ping", "127.0.0.1", None);
            j.options.insert("count".into(), n.into());
            j
        };
        let e = crate::prepare(&job(0)).expect_err("count 0");
        assert_eq!(e.msg, "option `count`: 0 is out of range (1-100)");
        assert!(crate::prepare(&job(101)).is_err());
        assert!(crate::prepare(&job(1)).is_ok());
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(count(&ping_cx(ip, None, 1.0)), 1);
        assert_eq!(count(&ping_cx(ip, Some(100), 1.0)), 100);
    }

    /// A fake peer over UDP: answers each request with what `answers` makes of it.
    async fn udp_peer(answers: fn(&[u8]) -> Vec<Vec<u8>>) -> SocketAddr {
        let peer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = peer.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = peer.recv_from(&mut buf).await {
                for a in answers(&buf[..n]) {
                    let _ = peer.send_to(&a, from).await;
                }
            }
        });
        addr
    }

    fn udp_socket() -> Socket {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("udp socket");
        let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        s.bind(&local.into()).expect("bind");
        s
    }

    fn noise(request: &[u8]) -> Vec<Vec<u8>> {
        let mut foreign = reply_to(request);
        foreign[4] ^= 0xff;
        let mut wrong_token = reply_to(request);
        wrong_token[8] ^= 0xff;
        vec![foreign, wrong_token, request.to_vec()]
    }

    #[tokio::test]
    async fn exchange_skips_foreign_packets_and_finds_the_reply() {
        let peer = udp_peer(|req| {
            let mut out = noise(req);
            out.push(reply_to(req));
            out.into_iter().map(|p| with_ipv4_header(&p)).collect()
        })
        .await;
        let c = ping_cx(IpAddr::V4(Ipv4Addr::LOCALHOST), None, 2.0);
        let out = exchange(&c, udp_socket(), peer, RAW_V4, 2).await;
        let detail = out.expect("answered");
        assert!(detail.starts_with("2/2 replies (0% loss), rtt"), "{detail}");
    }

    #[tokio::test]
    async fn exchange_without_a_reply_ends_at_the_deadline() {
        let peer = udp_peer(noise).await;
        let wire = Wire {
            ip_header: false,
            ..RAW_V4
        };
        let start = Instant::now();
        let c = ping_cx(IpAddr::V4(Ipv4Addr::LOCALHOST), None, 0.5);
        let deadline = c.deadline;
        let out = exchange(&c, udp_socket(), peer, wire, 1).await;
        assert_eq!(
            out,
            Err("no reply to 1 echo request before the deadline".into())
        );
        assert!(Instant::now() >= deadline);
        assert!(start.elapsed() < Duration::from_millis(1500));
    }

    fn lo_has_ipv6_loopback() -> bool {
        let table = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
        table
            .lines()
            .any(|l| l.starts_with("00000000000000000000000000000001") && l.ends_with(" lo"))
    }

    #[tokio::test]
    async fn loopback_v4_answers() {
        let out = check(&ping_cx(IpAddr::V4(Ipv4Addr::LOCALHOST), Some(3), 3.0)).await;
        let Outcome::Up { detail: Some(d) } = &out else {
            panic!("127.0.0.1 did not answer: {out:?}");
        };
        assert!(d.starts_with("3/3 replies (0% loss)"), "{d}");
    }

    #[tokio::test]
    async fn loopback_v6_answers() {
        assert!(
            lo_has_ipv6_loopback(),
            "::1 is not configured on lo; this test needs it"
        );
        let out = check(&ping_cx(IpAddr::V6(Ipv6Addr::LOCALHOST), None, 3.0)).await;
        let Outcome::Up { detail: Some(d) } = &out else {
            panic!("::1 did not answer: {out:?}");
        };
        assert!(d.starts_with("1/1 replies (0% loss)"), "{d}");
    }

    /// Raw sockets must work on their own: where datagram ICMP is refused they are all we have.
    #[tokio::test]
    async fn raw_sockets_work_for_both_families() {
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let (sock, wire) = open_as(ip, Mode::Raw).expect("raw ICMP socket (run as root)");
            let c = ping_cx(ip, None, 2.0);
            let out = exchange(&c, sock, SocketAddr::new(ip, 0), wire, 1).await;
            assert!(out.is_ok(), "{ip}: {out:?}");
        }
    }

    #[test]
    fn open_falls_back_to_raw_where_datagram_icmp_is_refused() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
            .expect("ping_group_range");
        let mut bounds = range
            .split_whitespace()
            .filter_map(|s| s.parse::<u32>().ok());
        let (lo, hi) = (bounds.next().expect("low"), bounds.next().expect("high"));
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let allowed = status
            .lines()
            .filter(|l| l.starts_with("Gid:") || l.starts_with("Groups:"))
            .flat_map(|l| l.split_whitespace().skip(1))
            .filter_map(|g| g.parse::<u32>().ok())
            .any(|g| lo <= g && g <= hi);
        let (_, wire) = open(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("some ICMP socket");
        assert_eq!(
            wire.ip_header, !allowed,
            "raw exactly when datagram is refused"
        );
    }
}
