//! A bounded BER decoder for what LDAP servers send us: one element, definite lengths,
//! nesting at most [`MAX_DEPTH`] deep, every length inside its enclosing element.
//!
//! Why not `lber::parse_tag` (what `ldap3::asn1` re-exports): it recurses once per nesting
//! level with no limit, so a hostile reply of SEQUENCEs nested some 16,000 deep (one 64 KiB
//! message) overflows a tokio worker's stack and aborts the whole process. This decoder walks
//! the bytes with an explicit stack instead and refuses a reply deeper than [`MAX_DEPTH`]
//! before building anything that deep, so the tree it returns (a `StructureTag`, as the
//! `ldap3` encoder uses) is also shallow enough to drop without recursion trouble. It is
//! public only so that the fuzz target in `fuzz/` can reach it.

use ldap3::asn1::{StructureTag, TagClass, PL};
use std::fmt;

/// The deepest nesting of constructed elements we accept. Real LDAP replies stay under 8
/// (message, op, attribute list, attribute, value set, plus controls).
pub const MAX_DEPTH: usize = 32;

/// Why some bytes are not one well-formed, bounded BER element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Constructed elements nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The bytes end inside a tag or a length field.
    Truncated,
    /// An element's length runs past the end of its enclosing element (or of the message).
    Overrun { len: usize, room: usize },
    /// The indefinite-length form (`0x80`), which LDAP forbids.
    Indefinite,
    /// A length field of more than 4 bytes (or the reserved `0xff`).
    LongLength(u8),
    /// A tag number in the multi-byte form (31 and up), which LDAP never uses.
    LongTag,
    /// Bytes left after the one element.
    Trailing(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooDeep => write!(f, "nested deeper than {MAX_DEPTH} levels"),
            Error::Truncated => f.write_str("truncated element header"),
            Error::Overrun { len, room } => write!(
                f,
                "an element of {len} bytes where only {room} remain in its enclosing element"
            ),
            Error::Indefinite => f.write_str("indefinite length"),
            Error::LongLength(b) => write!(f, "bad length byte 0x{b:02x}"),
            Error::LongTag => f.write_str("multi-byte tag number"),
            Error::Trailing(n) => write!(f, "{n} bytes after the element"),
        }
    }
}

/// One element's identifier and length, and where its contents start.
struct Header {
    class: TagClass,
    constructed: bool,
    id: u64,
    len: usize,
    body: usize,
}

/// Reads the header at the start of `bytes` (the room left in the enclosing element).
fn header(bytes: &[u8]) -> Result<Header, Error> {
    let (&ident, rest) = bytes.split_first().ok_or(Error::Truncated)?;
    let class = match ident >> 6 {
        0 => TagClass::Universal,
        1 => TagClass::Application,
        2 => TagClass::Context,
        _ => TagClass::Private,
    };
    let id = u64::from(ident & 0x1f);
    if id == 0x1f {
        return Err(Error::LongTag);
    }
    let (&first, rest) = rest.split_first().ok_or(Error::Truncated)?;
    let (len, body) = match first {
        n @ 0..=0x7f => (usize::from(n), 2),
        0x80 => return Err(Error::Indefinite),
        n @ 0x81..=0x84 => {
            let count = usize::from(n & 0x7f);
            let digits = rest.get(..count).ok_or(Error::Truncated)?;
            // At most 4 bytes: the value fits a u32, hence a usize on every target we build.
            let len = digits.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b));
            (len as usize, 2 + count)
        }
        n => return Err(Error::LongLength(n)),
    };
    let room = bytes.len() - body;
    if len > room {
        return Err(Error::Overrun { len, room });
    }
    Ok(Header {
        class,
        constructed: ident & 0x20 != 0,
        id,
        len,
        body,
    })
}

/// A constructed element whose contents are still being read.
struct Open {
    class: TagClass,
    id: u64,
    end: usize,
    children: Vec<StructureTag>,
}

/// A finished constructed element.
fn close(open: Open) -> StructureTag {
    StructureTag {
        class: open.class,
        id: open.id,
        payload: PL::C(open.children),
    }
}

/// Decodes `bytes` as exactly one BER element, iteratively and within the bounds above.
pub fn decode(bytes: &[u8]) -> Result<StructureTag, Error> {
    let mut stack: Vec<Open> = Vec::new();
    let mut pos = 0;
    loop {
        // The enclosing element's end bounds this element; the message's end bounds the first.
        let end = stack.last().map_or(bytes.len(), |o| o.end);
        let mut done = if pos == end {
            // An empty constructed element just opened, or no bytes at all.
            close(stack.pop().ok_or(Error::Truncated)?)
        } else {
            let h = header(&bytes[pos..end])?;
            let body = pos + h.body;
            if h.constructed {
                if stack.len() == MAX_DEPTH {
                    return Err(Error::TooDeep);
                }
                stack.push(Open {
                    class: h.class,
                    id: h.id,
                    end: body + h.len,
                    children: Vec::new(),
                });
                pos = body;
                continue;
            }
            pos = body + h.len;
            StructureTag {
                class: h.class,
                id: h.id,
                payload: PL::P(bytes[body..pos].to_vec()),
            }
        };
        // A finished element joins its parent (closing it too when it was the last child), or
        // is the answer when it has none.
        loop {
            let Some(mut parent) = stack.pop() else {
                return match bytes.len() - pos {
                    0 => Ok(done),
                    n => Err(Error::Trailing(n)),
                };
            };
            parent.children.push(done);
            if pos != parent.end {
                stack.push(parent);
                break;
            }
            done = close(parent);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ldap3::asn1::{parse_tag, write, ASNTag, Integer, OctetString, Sequence, Tag};

    /// SEQUENCEs nested `depth` deep around nothing, with correct definite lengths.
    pub(crate) fn nested(depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..depth {
            let len = out.len();
            let mut head = vec![0x30];
            match len {
                0..=0x7f => head.push(len as u8),
                0x80..=0xff => head.extend([0x81, len as u8]),
                0x100..=0xffff => head.extend([0x82, (len >> 8) as u8, len as u8]),
                _ => head.extend([0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
            }
            head.extend(out);
            out = head;
        }
        out
    }

    fn encode(tag: Tag) -> Vec<u8> {
        let mut buf = bytes::BytesMut::new();
        write::encode_into(&mut buf, tag.into_structure()).expect("encode");
        buf.to_vec()
    }

    #[test]
    fn decodes_what_lber_encodes_and_agrees_with_it() {
        let bytes = encode(Tag::Sequence(Sequence {
            inner: vec![
                Tag::Integer(Integer {
                    inner: 300,
                    ..Default::default()
                }),
                Tag::Sequence(Sequence {
                    id: 1,
                    class: TagClass::Application,
                    inner: vec![Tag::OctetString(OctetString {
                        inner: vec![b'x'; 200],
                        ..Default::default()
                    })],
                }),
                Tag::Sequence(Sequence::default()),
            ],
            ..Default::default()
        }));
        let ours = decode(&bytes).expect("decode");
        let (rest, theirs) = parse_tag(&bytes).expect("lber");
        assert!(rest.is_empty());
        assert_eq!(ours, theirs);
        let PL::C(parts) = &ours.payload else {
            panic!("not constructed: {ours:?}")
        };
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].payload, PL::C(Vec::new()));
    }

    #[test]
    fn every_byte_change_is_an_error_or_what_lber_reads() {
        // The fuzz target's property, on every one-byte change of a real bind response.
        let good = b"\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00\x04\x00";
        assert!(decode(good).is_ok());
        let (mut accepted, mut refused) = (0, 0);
        for at in 0..good.len() {
            for b in 0..=u8::MAX {
                let mut bytes = good.to_vec();
                bytes[at] = b;
                match decode(&bytes) {
                    Ok(ours) => {
                        accepted += 1;
                        let (rest, theirs) = parse_tag(&bytes).expect("lber");
                        assert!(rest.is_empty(), "{bytes:02x?}");
                        assert_eq!(ours, theirs, "{bytes:02x?}");
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        assert!(accepted > 0 && refused > 0, "{accepted} {refused}");
    }

    #[test]
    fn depth_is_limited() {
        assert!(decode(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(decode(&nested(MAX_DEPTH + 1)), Err(Error::TooDeep));
        // 30,000 levels (about 120 KB): refused on this ordinary test thread, no overflow.
        let deep = nested(30_000);
        assert_eq!(decode(&deep), Err(Error::TooDeep));
        assert_eq!(
            Error::TooDeep.to_string(),
            format!("nested deeper than {MAX_DEPTH} levels")
        );
    }

    #[test]
    fn absurd_shapes_are_errors() {
        let cases: &[(&[u8], Error)] = &[
            (b"", Error::Truncated),
            (b"\x30", Error::Truncated),
            (b"\x30\x82\x01", Error::Truncated),
            // Lengths larger than the frame, at the top and inside.
            (b"\x30\x05\x02\x01", Error::Overrun { len: 5, room: 2 }),
            (
                b"\x30\x84\xff\xff\xff\xff",
                Error::Overrun {
                    len: u32::MAX as usize,
                    room: 0,
                },
            ),
            (
                b"\x30\x03\x04\x7f\x00",
                Error::Overrun { len: 127, room: 1 },
            ),
            (b"\x30\x02\x30\x05\x00", Error::Overrun { len: 5, room: 0 }),
            // A child header cut off by its parent's end, though the bytes go on.
            (b"\x30\x01\x04\x00", Error::Truncated),
            (b"\x30\x80\x02\x01\x01\x00\x00", Error::Indefinite),
            (b"\x30\x03\x30\x80\x00", Error::Indefinite),
            (b"\x30\x85\x00\x00\x00\x00\x00", Error::LongLength(0x85)),
            (b"\x30\xff", Error::LongLength(0xff)),
            (b"\x1f\x81\x00\x00", Error::LongTag),
            (b"\x02\x01\x05\x00", Error::Trailing(1)),
            (b"\x30\x00\x30\x00", Error::Trailing(2)),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes).as_ref(), Err(want), "{bytes:02x?}");
        }
        // 30,000 levels that all claim more than the frame: refused at the first one.
        let lying: Vec<u8> = [0x30, 0x84, 0x7f, 0xff, 0xff, 0xff].repeat(30_000);
        assert_eq!(
            decode(&lying),
            Err(Error::Overrun {
                len: 0x7fff_ffff,
                room: lying.len() - 6
            })
        );
        // 30,000 indefinite-length levels: refused at the first one.
        assert_eq!(decode(&[0x30, 0x80].repeat(30_000)), Err(Error::Indefinite));
        // Every truncation of a good message is an error, never a panic.
        let good = nested(5);
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// The fuzz target's property under `cargo test`: seeded random and mutated replies (several
    /// changes at once, truncations, duplicated runs, absurd lengths) are errors or what lber reads.
    #[test]
    fn fuzzed_replies_are_errors_or_what_lber_reads() {
        let bind = b"\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00\x04\x00";
        let entry = b"\x30\x25\x02\x01\x02\x64\x20\x04\x09dc=x,dc=y\x30\x13\x30\x11\x04\x02cn\
                      \x31\x0b\x04\x09custodian";
        assert!(decode(entry).is_ok());
        let mut accepted = 0;
        custodian_testpeers::fuzz::inputs(0x389, &[bind, entry, &nested(8)], |bytes| {
            if let Ok(ours) = decode(bytes) {
                accepted += 1;
                let (rest, theirs) = parse_tag(bytes).expect("lber");
                assert!(rest.is_empty(), "{bytes:02x?}");
                assert_eq!(ours, theirs, "{bytes:02x?}");
            }
        });
        assert!(accepted > 0);
    }
}
