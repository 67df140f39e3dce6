//! Hostile fake servers on 127.0.0.1:0 for the conformance table in `hostile.rs`: each shape is
//! one function that starts a server and returns the port to aim a probe at.

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::rdata::{A, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

pub(crate) const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How long a UDP flood keeps sending after the first query: past any probe's deadline here.
const UDP_FLOOD_FOR: Duration = Duration::from_millis(2500);

/// Runs `handler` for every accepted connection; returns the port.
pub(crate) async fn serve<F, Fut>(handler: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((LOCAL, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(handler(s));
        }
    });
    port
}

/// A TCP port nothing listens on: bound but not listening, so the kernel answers RST and no
/// other fake of the table can take the port while the returned socket lives.
pub(crate) fn refused() -> (u16, TcpSocket) {
    let s = TcpSocket::new_v4().expect("socket");
    s.bind((LOCAL, 0).into()).expect("bind");
    (s.local_addr().expect("addr").port(), s)
}

/// Accepts and says nothing, ever (the connection is held open).
pub(crate) async fn hung() -> u16 {
    serve(|s| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(s);
    })
    .await
}

/// Sends `bytes` (cycled) one byte per `every`.
pub(crate) async fn drip(bytes: &'static [u8], every: Duration) -> u16 {
    serve(move |mut s| async move {
        for b in bytes.iter().cycle() {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(every).await;
        }
    })
    .await
}

/// Sends `lead` once, then `unit` over and over until the client leaves.
pub(crate) async fn flood(lead: &'static [u8], unit: &'static [u8]) -> u16 {
    serve(move |mut s| async move {
        let block = unit.repeat(64 * 1024 / unit.len().max(1));
        if s.write_all(lead).await.is_err() {
            return;
        }
        while s.write_all(&block).await.is_ok() {}
    })
    .await
}

/// Sends `bytes`, then reads (and drops) whatever the client says until it leaves.
pub(crate) async fn says(bytes: Arc<[u8]>) -> u16 {
    serve(move |mut s| {
        let bytes = bytes.clone();
        async move {
            let _ = s.write_all(&bytes).await;
            let mut sink = [0u8; 1024];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    })
    .await
}

/// Shuts its write side at once (the client reads EOF) but keeps the socket open.
pub(crate) async fn half_close() -> u16 {
    serve(|mut s| async move {
        let _ = s.shutdown().await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    })
    .await
}

/// Sends `bytes` (the start of a valid-looking reply), then resets the connection (SO_LINGER 0).
pub(crate) async fn reset_after(bytes: &'static [u8]) -> u16 {
    serve(move |mut s| async move {
        let _ = s.write_all(bytes).await;
        let _ = s.flush().await;
        // Give the bytes a moment to leave, so the client sees a reply cut short.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Linger 0: close sends RST at once (and does not block, unlike a non-zero linger).
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    })
    .await
}

/// `len` bytes of seeded random binary (xorshift: deterministic, no dependency).
pub(crate) fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A UDP port that answers port unreachable: its socket is connected elsewhere, so the kernel
/// matches no socket to a probe's datagram, yet the port stays reserved while the socket lives.
pub(crate) async fn udp_refused() -> (u16, UdpSocket) {
    let s = UdpSocket::bind((LOCAL, 0)).await.expect("bind udp");
    s.connect((LOCAL, 9)).await.expect("connect udp");
    (s.local_addr().expect("addr").port(), s)
}

/// What a UDP fake answers to one datagram.
pub(crate) type Answer = fn(&[u8]) -> Vec<Vec<u8>>;

/// A UDP server that sends `answer(datagram)` back to every sender.
pub(crate) async fn udp(answer: Answer) -> u16 {
    let s = UdpSocket::bind((LOCAL, 0)).await.expect("bind udp");
    let port = s.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            for d in answer(&buf[..n]) {
                let _ = s.send_to(&d, peer).await;
            }
        }
    });
    port
}

/// Never answers.
pub(crate) fn silence(_: &[u8]) -> Vec<Vec<u8>> {
    vec![]
}

/// Random binary back for every datagram.
pub(crate) fn udp_garbage(q: &[u8]) -> Vec<Vec<u8>> {
    vec![garbage(512, q.len() as u64 + 7)]
}

/// A DNS reply header to the query's id claiming 65535 entries in every section, and no body.
pub(crate) fn absurd_counts(q: &[u8]) -> Vec<Vec<u8>> {
    let id = q.get(..2).unwrap_or(&[0, 0]);
    let mut d = id.to_vec();
    d.extend_from_slice(&[0x81, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    vec![d]
}

/// After the first datagram from a sender, sends it small datagrams it must ignore (a reply
/// header to another id) for a while: the probe has to drop them, not keep them.
pub(crate) async fn udp_flood() -> u16 {
    let s = Arc::new(UdpSocket::bind((LOCAL, 0)).await.expect("bind udp"));
    let port = s.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut seen: Vec<SocketAddr> = Vec::new();
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            if seen.contains(&peer) {
                continue;
            }
            seen.push(peer);
            let id = match buf.get(..n.min(2)) {
                Some([a, b]) => u16::from_be_bytes([*a, *b]),
                _ => 0,
            };
            tokio::spawn(flood_peer(s.clone(), peer, id.wrapping_add(1)));
        }
    });
    port
}

async fn flood_peer(s: Arc<UdpSocket>, peer: SocketAddr, id: u16) {
    let mut d = id.to_be_bytes().to_vec();
    d.extend_from_slice(&[0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]);
    let end = tokio::time::Instant::now() + UDP_FLOOD_FOR;
    let mut sent = 0u32;
    while tokio::time::Instant::now() < end {
        if s.send_to(&d, peer).await.is_err() {
            break;
        }
        sent += 1;
        if sent.is_multiple_of(8) {
            // Yield often: the runtime is shared with every other row of the table.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// A well-behaved DNS server (UDP) for `mx`: every MX question is answered with `mx.test.`,
/// every A question with 127.0.0.1, anything else with an empty answer.
pub(crate) async fn good_dns() -> SocketAddr {
    let port = udp(|q| {
        let Ok(q) = Message::from_vec(q) else {
            return vec![];
        };
        let Some(first) = q.queries.first() else {
            return vec![];
        };
        let owner = first.name().clone();
        let data = match first.query_type() {
            RecordType::MX => vec![RData::MX(MX::new(
                10,
                Name::from_ascii("mx.test.").expect("name"),
            ))],
            RecordType::A => vec![RData::A(A(LOCAL))],
            _ => vec![],
        };
        let mut r = Message::response(q.id, OpCode::Query);
        r.add_queries(q.queries.to_vec()).add_answers(
            data.into_iter()
                .map(|d| Record::from_rdata(owner.clone(), 60, d)),
        );
        r.to_vec().map(|v| vec![v]).unwrap_or_default()
    })
    .await;
    SocketAddr::from((LOCAL, port))
}
