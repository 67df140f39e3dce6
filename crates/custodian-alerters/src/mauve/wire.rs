//! Protobuf encoding of [`AlertUpdate`] and [`Alert`] by hand: varints and length-delimited
//! fields, the only two wire types mauve.proto uses, numbered as mauve's published schema
//! (`proto/mauve.proto`). The decoder skips unknown fields.

use super::{Alert, AlertUpdate};
use crate::Error;

const VARINT: u8 = 0;
const LEN: u8 = 2;

/// The packet bytes of `update`, numbered as mauve's published schema (proto/mauve.proto).
pub fn encode(update: &AlertUpdate) -> Vec<u8> {
    let mut out = Vec::new();
    varint_field(&mut out, 1, update.transmission_id);
    bytes_field(&mut out, 2, update.source.as_bytes());
    varint_field(&mut out, 3, u64::from(update.replace));
    for a in &update.alert {
        bytes_field(&mut out, 4, &encode_alert(a));
    }
    if let Some(sig) = &update.signature {
        bytes_field(&mut out, 5, sig);
    }
    if let Some(t) = update.transmission_time {
        varint_field(&mut out, 8, t);
    }
    out
}

/// Fields in number order, as protobuf encoders write them.
fn encode_alert(a: &Alert) -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(&mut out, 1, a.id.as_bytes());
    for (n, v) in [(2, a.raise_time), (3, a.clear_time)] {
        if let Some(v) = v {
            varint_field(&mut out, n, v);
        }
    }
    for (n, s) in [(4, &a.subject), (5, &a.summary), (6, &a.detail)] {
        if let Some(s) = s {
            bytes_field(&mut out, n, s.as_bytes());
        }
    }
    if let Some(i) = a.importance {
        varint_field(&mut out, 7, u64::from(i));
    }
    if let Some(v) = a.suppress_until {
        varint_field(&mut out, 8, v);
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3 | u64::from(VARINT));
    put_varint(out, v);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_varint(out, field << 3 | u64::from(LEN));
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// One decoded field: its number and value.
enum Value<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

fn bad(what: &str) -> Error {
    Error::Rejected(format!("bad protobuf: {what}"))
}

fn get_varint(buf: &mut &[u8]) -> Result<u64, Error> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or_else(|| bad("truncated varint"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(bad("varint too long"))
}

/// Reads every field of one message.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Value<'_>)>, Error> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = get_varint(&mut buf)?;
        let value = match (key & 7) as u8 {
            VARINT => Value::Int(get_varint(&mut buf)?),
            LEN => {
                let n = usize::try_from(get_varint(&mut buf)?).map_err(|_| bad("length"))?;
                if n > buf.len() {
                    return Err(bad("truncated field"));
                }
                let (b, rest) = buf.split_at(n);
                buf = rest;
                Value::Bytes(b)
            }
            _ => return Err(bad("unsupported wire type")),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, Error> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8"))
}

/// Parses a packet back into an update (tests, and anyone listening like mauve does).
pub fn decode(buf: &[u8]) -> Result<AlertUpdate, Error> {
    let mut u = AlertUpdate::default();
    for (n, v) in fields(buf)? {
        match (n, v) {
            (1, Value::Int(i)) => u.transmission_id = i,
            (2, Value::Bytes(b)) => u.source = text(b)?,
            (3, Value::Int(i)) => u.replace = i != 0,
            (4, Value::Bytes(b)) => u.alert.push(decode_alert(b)?),
            (5, Value::Bytes(b)) => u.signature = Some(b.to_vec()),
            (8, Value::Int(i)) => u.transmission_time = Some(i),
            _ => {}
        }
    }
    Ok(u)
}

fn decode_alert(buf: &[u8]) -> Result<Alert, Error> {
    let mut a = Alert::default();
    for (n, v) in fields(buf)? {
        match (n, v) {
            (1, Value::Bytes(b)) => a.id = text(b)?,
            (2, Value::Int(i)) => a.raise_time = Some(i),
            (3, Value::Int(i)) => a.clear_time = Some(i),
            (4, Value::Bytes(b)) => a.subject = Some(text(b)?),
            (5, Value::Bytes(b)) => a.summary = Some(text(b)?),
            (6, Value::Bytes(b)) => a.detail = Some(text(b)?),
            (7, Value::Int(i)) => a.importance = u32::try_from(i).ok(),
            (8, Value::Int(i)) => a.suppress_until = Some(i),
            _ => {}
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngExt, SeedableRng};

    fn text(rng: &mut impl Rng) -> String {
        let n = rng.random_range(0..40);
        (0..n)
            .map(|_| rng.random_range('\u{20}'..'\u{3000}'))
            .collect()
    }

    /// Fuzz-style, seeded: every update survives a round trip and no byte string panics.
    #[test]
    fn round_trips_and_garbage_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(32741);
        for _ in 0..500 {
            let alert = Alert {
                id: text(&mut rng),
                subject: rng.random::<bool>().then(|| text(&mut rng)),
                summary: rng.random::<bool>().then(|| text(&mut rng)),
                detail: rng.random::<bool>().then(|| text(&mut rng)),
                raise_time: rng.random::<bool>().then(|| rng.random()),
                clear_time: rng.random::<bool>().then(|| rng.random()),
                suppress_until: rng.random::<bool>().then(|| rng.random()),
                importance: rng.random::<bool>().then(|| rng.random()),
            };
            let u = AlertUpdate {
                transmission_id: rng.random(),
                source: text(&mut rng),
                replace: rng.random(),
                alert: vec![alert; rng.random_range(0..3)],
                signature: rng.random::<bool>().then(|| text(&mut rng).into_bytes()),
                transmission_time: rng.random::<bool>().then(|| rng.random()),
            };
            let bytes = encode(&u);
            assert_eq!(decode(&bytes).expect("round trip"), u);
            let mut junk = bytes;
            for _ in 0..4 {
                let i = rng.random_range(0..=junk.len());
                junk.insert(i, rng.random());
            }
            let _ = decode(&junk);
        }
    }

    #[test]
    fn known_bytes_and_garbage() {
        let u = AlertUpdate {
            transmission_id: 300,
            source: "a".into(),
            ..AlertUpdate::default()
        };
        // field 1 varint 300 = ac 02; field 2 "a"; field 3 false.
        assert_eq!(encode(&u), [0x08, 0xac, 0x02, 0x12, 0x01, b'a', 0x18, 0x00]);
        assert!(decode(&[0x08]).is_err());
        assert!(decode(&[0x12, 0x05, b'a']).is_err());
        assert!(decode(&[0x0d, 0, 0, 0, 0]).is_err());
    }

    /// Random and mutated updates from the shared seeded fuzzer: never a panic, and a decoded
    /// update holds no more alerts than the bytes it came from.
    #[test]
    fn fuzzed_updates_never_panic() {
        let u = AlertUpdate {
            transmission_id: 300,
            source: "custodian".into(),
            replace: true,
            alert: vec![Alert {
                id: "web1 http".into(),
                subject: Some("web1".into()),
                summary: Some("down".into()),
                raise_time: Some(1_700_000_000_000),
                importance: Some(2),
                ..Alert::default()
            }],
            signature: None,
            transmission_time: Some(1_700_000_000_000),
        };
        let bytes = encode(&u);
        let mut decoded = 0;
        // The fuzz target's entry point, so CI checks its property.
        custodian_testpeers::fuzz::inputs(0x3a7, &[&bytes], |input| {
            decoded += usize::from(crate::fuzzing::mauve_update(input));
        });
        assert!(decoded > 0);
    }
}
