//! Entry points for the cargo-fuzz targets in `fuzz/`: each feeds peer bytes to one of our own
//! decoders the way its probe does, and panics when what comes out breaks the decoder's bounds.
//! Not an API: public only because the fuzz crate is another crate.
//!
//! Every function returns whether the decoder accepted the input, so a test can tell that its
//! seeds reach past the first checks.

use crate::dns::{judge, Question};
use crate::opensocks::Attempt;
use crate::resolver::{answer_addrs, parse_reply};
use crate::tftp::{Packet, BLOCK};
use crate::{opensocks, rdp, tftp};
use custodian_core::Verdict;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use std::collections::BTreeSet;
use std::str::FromStr;

/// The longest reason quoting a peer's text: clipped to 121 characters, each escaped by
/// `{:?}` to at most 10 (`\u{10ffff}`), plus our own words.
const QUOTED: usize = 121 * 10 + 200;

/// A reason or verdict a decoder hands on stays within `max` characters.
fn bounded(said: &str, max: usize) {
    let n = said.chars().count();
    assert!(n <= max, "{n} chars, over {max}: {said:?}");
}

fn name(s: &str) -> Name {
    // Both names are constants that parse.
    Name::from_str(s).unwrap_or_else(|_| Name::root())
}

/// A DNS reply, as `dns`, `mx`/`dnsbl` (through the resolver) and `openresolver` read it. The
/// first two bytes are the ID, so the fuzzer need not guess ours; the question is `a.test. A`.
pub fn dns_reply(p: &[u8]) -> bool {
    let id = p.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let a = name("a.test.");
    let q = Query::query(a.clone(), RecordType::A);
    let mut accepted = false;
    if let Ok(m) = parse_reply(p, id, &q) {
        accepted = true;
        assert_eq!(m.id, id);
        assert!(m.queries.len() == 1 || m.response_code != ResponseCode::NoError);
        // An address takes at least its 4 bytes of record data.
        assert!(answer_addrs(&m).len() * 4 < p.len());
    }
    let Ok(m) = Message::from_vec(p) else {
        return accepted;
    };
    let mx = name("mx.test.");
    let (a_set, mx_set): (BTreeSet<String>, BTreeSet<String>) = (
        ["192.0.2.1", "192.0.2.2"].map(String::from).into(),
        ["192.0.2.25".to_string()].into(),
    );
    for q in [
        Question {
            name: &a,
            rtype: RecordType::A,
            expected: &a_set,
        },
        Question {
            name: &mx,
            rtype: RecordType::MX,
            expected: &mx_set,
        },
    ] {
        let said = judge(&q, &m).unwrap_or_else(|e| e);
        // Names in the reply are at most 255 bytes each, printed at most 4 times longer.
        bounded(&said, 200 + 8 * p.len());
    }
    // The exchanges `mx` takes from the same reply, and what `openresolver` makes of it.
    if let Ok(names) = crate::mx::mx_names(&m, "mx.test") {
        assert!(!names.is_empty() && names.len() <= crate::mx::MAX_EXCHANGES);
    }
    let f = crate::openresolver::judge(&m, "192.0.2.1".parse().expect("address"));
    bounded(&f.why, 200 + 8 * p.len());
    true
}

/// A server's SOCKS handshake bytes (version from the first byte: 0 reads as a SOCKS4 reply)
/// with no tunnel: never judged open, since only the canary's token through a tunnel is.
pub fn socks_handshake(h: &[u8]) -> bool {
    let a = Attempt {
        version: if h.first() == Some(&0) { 4 } else { 5 },
        handshake: h.to_vec(),
        tunnel: None,
        error: None,
    };
    let f = opensocks::judge(&[a]);
    assert_ne!(f.verdict, Verdict::Open);
    assert!(f.why.starts_with("SOCKS"), "{}", f.why);
    bounded(&f.why, 200);
    f.verdict != Verdict::NoAnswer
}

/// An RDP reply: a TPKT read as the probe reads it (within its capped, announced length),
/// then judged as an X.224 connection confirm.
pub fn rdp_reply(p: &[u8]) -> bool {
    // Reading from a slice never waits, so polling once to completion is enough.
    let read = futures::executor::block_on(rdp::read_tpkt(&mut &p[..], "fuzzing"));
    let Ok(tpdu) = read else { return false };
    assert!(tpdu.len() + 4 <= rdp::MAX_TPKT && tpdu.len() + 4 <= p.len());
    match rdp::judge_confirm(&tpdu) {
        Ok(said) => {
            bounded(&said, 100);
            true
        }
        Err(why) => {
            bounded(&why, 100);
            false
        }
    }
}

/// Bytes handed out at most `step` at a time, as a slow or hostile server sends them: heads,
/// chunk lines and gzip members arrive split at every place the fuzzer picks.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl tokio::io::AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        std::task::Poll::Ready(Ok(()))
    }
}

/// The most body an `http_reply` run keeps (the probe keeps 4 MiB; less is faster to fuzz).
const HTTP_BODY: usize = 64 * 1024;

/// An HTTP/1.1 reply as `http` and `https` read it: the head (1xx skipped), then the body by
/// the framing it declares, gzip decoded. The first byte picks how many bytes each read
/// returns (1 to 16), the rest is the server's reply; the stream ends with the input, so
/// every read finishes. Never a panic; the body stays within its cap; reasons are our words.
pub fn http_reply(p: &[u8]) -> bool {
    let Some((&step, reply)) = p.split_first() else {
        return false;
    };
    let stream = tokio::io::join(
        Pieces {
            data: reply,
            step: usize::from(step % 16) + 1,
        },
        tokio::io::sink(),
    );
    // Neither half ever waits, so polling to completion needs no runtime.
    futures::executor::block_on(async {
        match crate::http1::exchange(stream, b"GET / HTTP/1.1\r\n\r\n", step >= 0xf0).await {
            Ok(resp) => {
                assert!((100..=999).contains(&resp.head.status));
                if let Some(to) = &resp.head.location {
                    assert!(to.len() < reply.len());
                }
                match resp.body(HTTP_BODY).await {
                    Ok((body, _more)) => assert!(body.len() <= HTTP_BODY),
                    Err(why) => bounded(&why, 100),
                }
                true
            }
            Err(why) => {
                bounded(&why, 100);
                false
            }
        }
    })
}

/// A TFTP packet from the server: data stays within a block, error text is clipped.
pub fn tftp_packet(p: &[u8]) -> bool {
    match tftp::parse(p) {
        Ok(Packet::Data(_, bytes)) => {
            assert!(bytes.len() <= BLOCK);
            true
        }
        Ok(Packet::Error(_, text)) => {
            // Clipped, then control characters escaped (at most 4 chars each).
            bounded(&text, 1300);
            true
        }
        Err(why) => {
            bounded(&why, 100);
            false
        }
    }
}

/// A MySQL server's first packet, framed as the probe frames it (4-byte header, then the
/// announced payload; a short payload is judged as far as it goes).
#[cfg(feature = "mysql")]
pub fn mysql_greeting(p: &[u8]) -> bool {
    use crate::mysql::{packet_len, parse_greeting, MAX_GREETING};
    let Some(head) = p.get(..4).and_then(|h| <[u8; 4]>::try_from(h).ok()) else {
        return false;
    };
    let Ok(len) = packet_len(head) else {
        return false;
    };
    assert!((1..=MAX_GREETING).contains(&len));
    let body = &p[4..p.len().min(4 + len)];
    match parse_greeting(body) {
        Ok(version) => {
            assert!(version.chars().count() < body.len());
            true
        }
        Err(why) => {
            bounded(&why, QUOTED);
            false
        }
    }
}

/// A PostgreSQL server's answer to our startup message, framed as the probe frames it.
#[cfg(feature = "postgresql")]
pub fn postgresql_answer(p: &[u8]) -> bool {
    use crate::postgresql::{answer_len, judge_answer, MAX_ANSWER};
    let Some(head) = p.get(..5).and_then(|h| <[u8; 5]>::try_from(h).ok()) else {
        return false;
    };
    let Ok(len) = answer_len(head) else {
        return false;
    };
    assert!(len <= MAX_ANSWER);
    let body = &p[5..p.len().min(5 + len)];
    let said = judge_answer(head[0], body).unwrap_or_else(|e| e);
    bounded(&said, QUOTED);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::testutil::reply;
    use custodian_testpeers::fuzz::inputs;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::RData;

    /// Each entry point over the shared seeded fuzzer, from real replies: exactly what the
    /// fuzz targets run, so a target's property holds in CI too.
    #[test]
    fn entry_points_accept_real_replies_and_survive_mutations() {
        let q = Query::query(name("a.test."), RecordType::A);
        let mut sent = Message::new(0x4d4d, MessageType::Query, OpCode::Query);
        sent.add_query(q);
        let a = |ip: &str| RData::A(A(ip.parse().expect("ip")));
        let good = reply(
            &sent,
            ResponseCode::NoError,
            vec![a("192.0.2.1"), a("192.0.2.2")],
        );
        let good = good.to_vec().expect("encode");
        let nx = reply(&sent, ResponseCode::NXDomain, vec![])
            .to_vec()
            .expect("encode");
        let socks: [&[u8]; 3] = [
            b"\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01\x1f\x90",
            b"\x05\xff",
            b"\x00\x5b\0\0\0\0\0\0",
        ];
        let rdp_confirm =
            b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x00\x08\x00\x01\x00\x00\x00";
        let tftp: [&[u8]; 2] = [
            b"\x00\x03\x00\x01hello",
            b"\x00\x05\x00\x01File not found\0",
        ];
        // The first byte of each is the read size less one: whole, one byte, three bytes.
        let http: [&[u8]; 4] = [
            b"\x0fHTTP/1.1 200 OK\r\nContent-Length: 5\r\nLocation: /x\r\n\r\nhello",
            b"\x00HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;x=1\r\nhello\r\n0\r\nT: t\r\n\r\n",
            b"\x02HTTP/1.0 404 Not Found\nServer: old\n\nto the end",
            // "hi" gzipped.
            b"\x07HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 22\r\n\r\n\
              \x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\xc8\x04\x00\xac\x2a\x93\xd8\x02\x00\x00\x00",
        ];
        type Case<'a> = (&'a str, fn(&[u8]) -> bool, Vec<&'a [u8]>);
        let cases: [Case<'_>; 5] = [
            ("http", http_reply, http.to_vec()),
            ("dns", dns_reply, vec![&good, &nx]),
            ("socks", socks_handshake, socks.to_vec()),
            ("rdp", rdp_reply, vec![rdp_confirm]),
            ("tftp", tftp_packet, tftp.to_vec()),
        ];
        for (seed, (what, entry, seeds)) in (0x0f00..).zip(cases) {
            assert!(seeds.iter().all(|s| entry(s)), "{what} refuses its seeds");
            let mut accepted = 0;
            inputs(seed, &seeds, |p| accepted += usize::from(entry(p)));
            assert!(accepted > 100, "{what}: {accepted} accepted");
        }
    }

    #[cfg(all(feature = "mysql", feature = "postgresql"))]
    #[test]
    fn database_greetings_survive_mutations() {
        let mysql: &[u8] = b"\x4a\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00abcdefgh\x00\xff\xf7\
                             \x08\x02\x00\xff\xdf\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00ijklmnopqrst\
                             \x00caching_sha2_password\x00";
        let refused: &[u8] =
            b"\x44\x00\x00\x00\xff\x6a\x04Host '127.0.0.1' is not allowed to connect";
        let sasl: &[u8] = b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00";
        let no_role: &[u8] =
            b"E\x00\x00\x00\x33SFATAL\x00C28000\x00Mrole \"x\" does not exist\x00\x00";
        for (seed, entry, seeds) in [
            (
                0x3306,
                mysql_greeting as fn(&[u8]) -> bool,
                [mysql, refused],
            ),
            (0x5432, postgresql_answer, [sasl, no_role]),
        ] {
            assert!(entry(seeds[0]));
            let mut accepted = 0;
            inputs(seed, &seeds, |p| accepted += usize::from(entry(p)));
            assert!(accepted > 100, "{accepted} accepted");
        }
        // Quotes in a refusal double when quoted: over 200 characters, still bounded.
        let quotes = [&b"\xc8\x00\x00\x00\xff\x01\x00"[..], &[b'"'; 200]].concat();
        assert!(!mysql_greeting(&quotes));
    }
}
