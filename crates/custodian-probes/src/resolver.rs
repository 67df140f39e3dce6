//! DNS on the wire, shared by probes: one question to one server over UDP (repeated over TCP
//! when truncated), and the system's nameservers (`/etc/resolv.conf`), which an
//! [`Env`](crate::Env) uses when it is given none.

use crate::net;
use crate::Ctx;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

/// UDP payload size we advertise (EDNS) and the receive buffer for one datagram.
const UDP_PAYLOAD: u16 = 1232;
const UDP_BUF: usize = 4096;

/// The `nameserver` lines of `/etc/resolv.conf`.
#[cfg(not(test))]
pub(crate) fn system_nameservers() -> Result<Vec<SocketAddr>, String> {
    const PATH: &str = "/etc/resolv.conf";
    let text = std::fs::read_to_string(PATH).map_err(|e| format!("reading {PATH}: {e}"))?;
    let servers = parse_resolv_conf(&text);
    if servers.is_empty() {
        return Err(format!("no nameserver in {PATH}"));
    }
    Ok(servers)
}

/// Unit tests pass their fake servers explicitly; none may ever reach the system's resolver.
#[cfg(test)]
pub(crate) fn system_nameservers() -> Result<Vec<SocketAddr>, String> {
    Err("no nameservers set (tests never use /etc/resolv.conf)".into())
}

/// The `nameserver` lines of a resolv.conf, on port 53 (zone indexes of link-local IPv6
/// addresses are not supported and skipped).
pub(crate) fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then(|| words.next())?
        })
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Asks `servers` in turn, each with an equal share of the time left, until one gives a
/// final answer (NOERROR or NXDOMAIN); otherwise the last server's error.
pub(crate) async fn lookup(
    cx: &Ctx,
    servers: &[SocketAddr],
    name: &Name,
    rtype: RecordType,
) -> Result<Message, String> {
    let mut last = String::from("no nameservers to ask");
    for (i, server) in servers.iter().enumerate() {
        let left = cx.deadline.saturating_duration_since(Instant::now());
        let share = left / u32::try_from(servers.len() - i).unwrap_or(u32::MAX);
        let mut part = cx.clone();
        part.deadline = Instant::now() + share;
        let shown = display_name(name);
        match exchange(&part, *server, name, rtype).await {
            Ok(m) if final_code(m.response_code) => return Ok(m),
            Ok(m) => last = format!("{server} answered {} for {shown}", m.response_code),
            Err(e) => last = format!("{server}: {e} ({shown} {rtype})"),
        }
    }
    Err(last)
}

fn final_code(rc: ResponseCode) -> bool {
    matches!(rc, ResponseCode::NoError | ResponseCode::NXDomain)
}

/// One question to one server: UDP first, TCP when the UDP answer is truncated.
pub(crate) async fn exchange(
    cx: &Ctx,
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
) -> Result<Message, String> {
    let q = Query::query(name.clone(), rtype);
    let id = rand::random::<u16>();
    let bytes = encode(&q, id)?;
    let reply = udp_exchange(cx, server, &bytes, id, &q).await?;
    if !reply.truncation {
        return Ok(reply);
    }
    net::within(
        cx,
        "waiting for the DNS answer over TCP",
        tcp_exchange(cx, server, &bytes, id, &q),
    )
    .await
}

/// One question to one server over TCP only (for checks that ask for TCP explicitly).
pub(crate) async fn exchange_tcp(
    cx: &Ctx,
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
) -> Result<Message, String> {
    let q = Query::query(name.clone(), rtype);
    let id = rand::random::<u16>();
    let bytes = encode(&q, id)?;
    net::within(
        cx,
        "waiting for the DNS answer over TCP",
        tcp_exchange(cx, server, &bytes, id, &q),
    )
    .await
}

/// The query message: recursion desired, EDNS with our UDP payload size.
fn encode(q: &Query, id: u16) -> Result<Vec<u8>, String> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(q.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD);
    m.set_edns(edns);
    m.to_vec()
        .map_err(|e| format!("cannot encode the query: {e}"))
}

/// Parses a reply and checks it answers our query (same ID and question).
pub(crate) fn parse_reply(bytes: &[u8], id: u16, q: &Query) -> Result<Message, String> {
    let m = Message::from_vec(bytes).map_err(|e| format!("malformed reply: {e}"))?;
    if m.message_type != MessageType::Response || m.id != id {
        return Err("reply to another query".into());
    }
    match m.queries.as_slice() {
        // Name equality is case-insensitive, as DNS is.
        [one] if one.query_type() == q.query_type() && one.name() == q.name() => Ok(m),
        // Some servers echo no question on errors; the ID already matched.
        [] if m.response_code != ResponseCode::NoError => Ok(m),
        _ => Err("reply for another question".into()),
    }
}

/// Sends the query over UDP and waits until the deadline for a matching reply, ignoring others.
async fn udp_exchange(
    cx: &Ctx,
    server: SocketAddr,
    query: &[u8],
    id: u16,
    q: &Query,
) -> Result<Message, String> {
    let local: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let udp = |e: std::io::Error| net::failed(cx, &format!("UDP to port {}", server.port()), &e);
    let sock = UdpSocket::bind((local, 0)).await.map_err(udp)?;
    // Connected: the kernel drops datagrams from anyone but the server.
    sock.connect(server).await.map_err(udp)?;
    sock.send(query).await.map_err(udp)?;
    let mut buf = vec![0u8; UDP_BUF];
    // A flood of junk must not grow memory: ignored datagrams are counted, and only the last
    // reason is kept.
    let mut ignored = Ignored::default();
    loop {
        let n = match tokio::time::timeout_at(cx.deadline, sock.recv(&mut buf)).await {
            Err(_) => return Err(ignored.timeout_reason()),
            Ok(r) => r.map_err(udp)?,
        };
        match parse_reply(&buf[..n], id, q) {
            Ok(m) => return Ok(m),
            Err(why) => ignored.note(why),
        }
    }
}

/// The datagrams a UDP exchange ignored: how many, and why the last one was.
#[derive(Default)]
struct Ignored {
    count: u64,
    last: Option<String>,
}

impl Ignored {
    fn note(&mut self, why: String) {
        self.count += 1;
        self.last = Some(why);
    }

    fn timeout_reason(&self) -> String {
        match &self.last {
            None => "timed out waiting for the DNS answer".into(),
            Some(last) => format!(
                "timed out waiting for the DNS answer (ignored {} bad replies; last: {last})",
                self.count
            ),
        }
    }
}

/// Repeats the query over TCP (2-byte length prefix) for a truncated UDP answer.
async fn tcp_exchange(
    cx: &Ctx,
    server: SocketAddr,
    query: &[u8],
    id: u16,
    q: &Query,
) -> Result<Message, String> {
    let port = server.port();
    let mut s = net::within(cx, &format!("connecting to port {port}"), async {
        TcpStream::connect(server)
            .await
            .map_err(|e| net::failed(cx, &format!("connect to port {port}"), &e))
    })
    .await?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long")?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(query);
    let io = |e: std::io::Error| format!("DNS over TCP: {}", net::io_reason(&e));
    s.write_all(&out).await.map_err(io)?;
    let n = s.read_u16().await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await.map_err(io)?;
    parse_reply(&buf, id, q).map_err(|e| format!("DNS over TCP: {e}"))
}

/// The addresses in a reply's answer section (of any owner, so CNAME chains count).
pub(crate) fn answer_addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// A name as people write it: lower case, without the final dot.
pub(crate) fn display_name(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// Parses a fully qualified name from user text.
pub(crate) fn fqdn(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text).map_err(|e| format!("bad name {text:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! An in-process DNS server on 127.0.0.1 (UDP and TCP on one port) for probe tests.

    use crate::net::testutil::LOCAL;
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::{Name, RData, Record};
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, UdpSocket};

    /// What the fake server sends back for a query (`tcp`: asked over TCP).
    pub(crate) type Behave = fn(&Message, bool) -> Vec<Vec<u8>>;

    /// A DNS server fake on one port for UDP and TCP.
    pub(crate) async fn fake(behave: Behave) -> SocketAddr {
        loop {
            let udp = UdpSocket::bind((LOCAL, 0)).await.expect("bind udp");
            let addr = udp.local_addr().expect("addr");
            let Ok(tcp) = TcpListener::bind(addr).await else {
                continue;
            };
            tokio::spawn(serve_udp(udp, behave));
            tokio::spawn(serve_tcp(tcp, behave));
            return addr;
        }
    }

    async fn serve_udp(udp: UdpSocket, behave: Behave) {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            for d in behave(&q, false) {
                let _ = udp.send_to(&d, peer).await;
            }
        }
    }

    async fn serve_tcp(tcp: TcpListener, behave: Behave) {
        while let Ok((mut s, _)) = tcp.accept().await {
            let Ok(n) = s.read_u16().await else { continue };
            let mut buf = vec![0u8; usize::from(n)];
            if s.read_exact(&mut buf).await.is_err() {
                continue;
            }
            let Ok(q) = Message::from_vec(&buf) else {
                continue;
            };
            for d in behave(&q, true) {
                let mut out = (d.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&d);
                let _ = s.write_all(&out).await;
            }
        }
    }

    pub(crate) fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    /// The reply to `q` with this code and these answers, owned by the question's name.
    pub(crate) fn reply(q: &Message, rc: ResponseCode, answers: Vec<RData>) -> Message {
        let owner = q
            .queries
            .first()
            .map(|x| x.name().clone())
            .unwrap_or_default();
        let mut r = Message::error_msg(q.id, OpCode::Query, rc);
        r.add_queries(q.queries.to_vec()).add_answers(
            answers
                .into_iter()
                .map(|d| Record::from_rdata(owner.clone(), 60, d)),
        );
        r
    }

    /// One encoded reply, as a `Behave` returns it.
    pub(crate) fn one(m: Message) -> Vec<Vec<u8>> {
        vec![m.to_vec().expect("encode")]
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use crate::net::testutil::cx;
    use custodian_core::Job;
    use hickory_proto::rr::rdata::A;

    fn a(s: &str) -> RData {
        RData::A(A(s.parse().expect("ip")))
    }

    #[test]
    fn resolv_conf_nameserver_lines() {
        let text =
            "# generated\nsearch example.com\nnameserver 192.0.2.53\nnameserver  2001:db8::53 \
                    \nnameserver fe80::1%eth0\noptions ndots:2\nnameserver\n";
        let want: Vec<SocketAddr> = vec![
            "192.0.2.53:53".parse().expect("a"),
            "[2001:db8::53]:53".parse().expect("a"),
        ];
        assert_eq!(parse_resolv_conf(text), want);
    }

    #[test]
    fn unit_tests_never_reach_the_system_resolver() {
        assert!(system_nameservers().is_err());
    }

    #[test]
    fn query_round_trips_and_matches_its_reply() {
        let q = Query::query(name("a.test."), RecordType::A);
        let bytes = encode(&q, 4242).expect("encode");
        let sent = Message::from_vec(&bytes).expect("parse");
        assert!(sent.recursion_desired);
        let back = reply(&sent, ResponseCode::NoError, vec![a("192.0.2.1")]);
        let back = back.to_vec().expect("enc");
        assert!(parse_reply(&back, 4242, &q).is_ok());
        assert_eq!(
            parse_reply(&back, 4243, &q).map(|_| ()),
            Err("reply to another query".into())
        );
        assert!(
            parse_reply(&bytes, 4242, &q).is_err(),
            "a query is not a reply"
        );
    }

    fn zone(q: &Message, _tcp: bool) -> Vec<Vec<u8>> {
        let asked = q.queries.first().map(|x| display_name(x.name()));
        match asked.as_deref() {
            Some("a.test") => one(reply(q, ResponseCode::NoError, vec![a("192.0.2.1")])),
            Some("nx.test") => one(reply(q, ResponseCode::NXDomain, vec![])),
            Some("fail.test") => one(reply(q, ResponseCode::ServFail, vec![])),
            _ => vec![],
        }
    }

    fn job_cx(secs: f64) -> Ctx {
        cx(Job::new("mx", "a.test", Some(25)), secs)
    }

    #[tokio::test]
    async fn lookup_takes_the_first_final_answer() {
        let silent = fake(|_, _| vec![]).await;
        let good = fake(zone).await;
        let m = lookup(
            &job_cx(2.0),
            &[silent, good],
            &name("a.test."),
            RecordType::A,
        )
        .await
        .expect("answer from the second server");
        assert_eq!(
            answer_addrs(&m),
            ["192.0.2.1".parse::<IpAddr>().expect("ip")]
        );
        let m = lookup(&job_cx(2.0), &[good], &name("nx.test."), RecordType::A)
            .await
            .expect("NXDOMAIN is final");
        assert_eq!(m.response_code, ResponseCode::NXDomain);
    }

    /// A flooder: thousands of junk datagrams and replies to another query, never the answer.
    fn flood(q: &Message, _tcp: bool) -> Vec<Vec<u8>> {
        let mut wrong = reply(q, ResponseCode::NoError, vec![a("192.0.2.9")]);
        wrong.metadata.id = q.id.wrapping_add(1);
        let wrong = wrong.to_vec().expect("encode");
        (0..4000)
            .map(|i| {
                if i % 2 == 0 {
                    wrong.clone()
                } else {
                    vec![0xff; 40]
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn a_flood_of_ignored_datagrams_is_counted_not_stored() {
        let flooder = fake(flood).await;
        let out = lookup(&job_cx(1.0), &[flooder], &name("a.test."), RecordType::A).await;
        let Err(reason) = out.map(|_| ()) else {
            panic!("no valid answer was sent");
        };
        assert!(reason.len() < 300, "reason grew with the flood: {reason}");
        let count: u64 = reason
            .split("(ignored ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {reason}"));
        assert!(count > 100, "{reason}");
        assert!(
            reason.contains("timed out waiting for the DNS answer"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn lookup_reports_the_last_error() {
        let good = fake(zone).await;
        let out = lookup(&job_cx(2.0), &[good], &name("fail.test."), RecordType::A).await;
        assert_eq!(
            out.map(|_| ()),
            Err(format!("{good} answered Server Failure for fail.test"))
        );
        let out = lookup(&job_cx(0.3), &[good], &name("silent.test."), RecordType::A).await;
        let want = format!("{good}: timed out waiting for the DNS answer (silent.test A)");
        assert_eq!(out.map(|_| ()), Err(want));
        let out = lookup(&job_cx(0.3), &[], &name("a.test."), RecordType::A).await;
        assert_eq!(out.map(|_| ()), Err("no nameservers to ask".into()));
    }

    /// Random and mutated replies to our query: never a panic, and what is accepted answers our
    /// ID and question (or is an error without one).
    #[test]
    fn fuzzed_replies_never_panic() {
        let q = Query::query(name("a.test."), RecordType::A);
        let sent = Message::from_vec(&encode(&q, 77).expect("encode")).expect("parse");
        let good = reply(
            &sent,
            ResponseCode::NoError,
            vec![a("192.0.2.1"), a("192.0.2.2")],
        );
        let good = good.to_vec().expect("enc");
        let nx = reply(&sent, ResponseCode::NXDomain, vec![])
            .to_vec()
            .expect("enc");
        let mut accepted = 0;
        custodian_testpeers::fuzz::inputs(0xd45, &[&good, &nx], |p| {
            if let Ok(m) = parse_reply(p, 77, &q) {
                accepted += 1;
                assert_eq!(m.id, 77);
                assert!(m.queries.len() == 1 || m.response_code != ResponseCode::NoError);
                assert!(answer_addrs(&m).len() * 4 < p.len());
            }
        });
        assert!(accepted > 0);
    }
}
