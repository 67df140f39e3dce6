//! Our packets read against mauve's published schema with a reader that shares nothing with
//! [`super::wire`]: field numbers and wire types come from the table below, written from the
//! schema itself, so renumbering the encoder (and proto/mauve.proto with it) fails here.

use super::{render, wire, Alert, AlertUpdate, MauveConfig};
use crate::testutil::event;
use custodian_core::state::EventKind;
use std::collections::BTreeMap;

const VARINT: u64 = 0;
const LEN: u64 = 2;

/// mauve's published `Alert`: field name, number, wire type.
const ALERT: &[(&str, u64, u64)] = &[
    ("id", 1, LEN),
    ("raise_time", 2, VARINT),
    ("clear_time", 3, VARINT),
    ("subject", 4, LEN),
    ("summary", 5, LEN),
    ("detail", 6, LEN),
    ("importance", 7, VARINT),
    ("suppress_until", 8, VARINT),
];

/// mauve's published `AlertUpdate`.
const UPDATE: &[(&str, u64, u64)] = &[
    ("transmission_id", 1, VARINT),
    ("source", 2, LEN),
    ("replace", 3, VARINT),
    ("alert", 4, LEN),
    ("signature", 5, LEN),
    ("transmission_time", 8, VARINT),
];

#[derive(Debug, Clone, PartialEq)]
enum V {
    Int(u64),
    Bytes(Vec<u8>),
}

/// A generic protobuf reader: every (number, value) of one message, in order.
fn read(mut b: &[u8]) -> Vec<(u64, u64, V)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0;
        for i in 0.. {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let (num, ty) = (key >> 3, key & 7);
        let v = match ty {
            VARINT => V::Int(varint(&mut b)),
            LEN => {
                let n = varint(&mut b) as usize;
                let (x, rest) = b.split_at(n);
                b = rest;
                V::Bytes(x.to_vec())
            }
            other => panic!("wire type {other} is not in mauve's schema"),
        };
        out.push((num, ty, v));
    }
    out
}

/// The message's fields by schema name; panics on a number or wire type the schema lacks.
fn by_name(schema: &[(&'static str, u64, u64)], b: &[u8]) -> BTreeMap<&'static str, Vec<V>> {
    let mut out: BTreeMap<&str, Vec<V>> = BTreeMap::new();
    for (num, ty, v) in read(b) {
        let Some((name, _, want)) = schema.iter().find(|(_, n, _)| *n == num) else {
            panic!("field {num} is not in mauve's schema");
        };
        assert_eq!(ty, *want, "field {name} ({num}) has the wrong wire type");
        out.entry(name).or_default().push(v);
    }
    out
}

fn int(v: &[V]) -> u64 {
    match v {
        [V::Int(i)] => *i,
        other => panic!("not one integer: {other:?}"),
    }
}

fn text(v: &[V]) -> String {
    match v {
        [V::Bytes(b)] => String::from_utf8(b.clone()).expect("utf8"),
        other => panic!("not one string: {other:?}"),
    }
}

fn full() -> AlertUpdate {
    AlertUpdate {
        transmission_id: 77,
        source: "src".into(),
        replace: true,
        alert: vec![Alert {
            id: "the-id".into(),
            raise_time: Some(1111),
            clear_time: Some(2222),
            subject: Some("subj".into()),
            summary: Some("summ".into()),
            detail: Some("det".into()),
            importance: Some(3),
            suppress_until: Some(4444),
        }],
        signature: Some(b"sig".to_vec()),
        transmission_time: Some(8888),
    }
}

#[test]
fn every_field_has_the_published_number_and_wire_type() {
    let u = by_name(UPDATE, &wire::encode(&full()));
    assert_eq!(int(&u["transmission_id"]), 77);
    assert_eq!(text(&u["source"]), "src");
    assert_eq!(int(&u["replace"]), 1);
    assert_eq!(text(&u["signature"]), "sig");
    assert_eq!(int(&u["transmission_time"]), 8888);
    let [V::Bytes(alert)] = u["alert"].as_slice() else {
        panic!("one alert: {u:?}");
    };
    let a = by_name(ALERT, alert);
    assert_eq!(text(&a["id"]), "the-id");
    assert_eq!((int(&a["raise_time"]), int(&a["clear_time"])), (1111, 2222));
    assert_eq!(text(&a["subject"]), "subj");
    assert_eq!(text(&a["summary"]), "summ");
    assert_eq!(text(&a["detail"]), "det");
    assert_eq!(int(&a["importance"]), 3);
    assert_eq!(int(&a["suppress_until"]), 4444);
}

/// `protoc --encode=mauve.proto.AlertUpdate` with tests/data/mauve-published.proto (protoc
/// 3.21) of the text form of [`full`]: a reference encoder's bytes, to match byte for byte.
const PROTOC_FULL: &[u8] = &[
    0x08, 0x4d, 0x12, 0x03, 0x73, 0x72, 0x63, 0x18, 0x01, 0x22, 0x24, 0x0a, 0x06, 0x74, 0x68, 0x65,
    0x2d, 0x69, 0x64, 0x10, 0xd7, 0x08, 0x18, 0xae, 0x11, 0x22, 0x04, 0x73, 0x75, 0x62, 0x6a, 0x2a,
    0x04, 0x73, 0x75, 0x6d, 0x6d, 0x32, 0x03, 0x64, 0x65, 0x74, 0x38, 0x03, 0x40, 0xdc, 0x22, 0x2a,
    0x03, 0x73, 0x69, 0x67, 0x40, 0xb8, 0x45,
];

#[test]
fn matches_a_reference_encoder_byte_for_byte() {
    assert_eq!(wire::encode(&full()), PROTOC_FULL);
    assert_eq!(wire::decode(PROTOC_FULL).expect("decode"), full());
}

#[test]
fn a_rendered_raise_reads_back_by_the_published_schema() {
    let c = MauveConfig::from_target("127.0.0.1").expect("cfg");
    let raise = render(&event(EventKind::Raise, 'F'), &c, "src", 7, (0, 12));
    let u = by_name(UPDATE, &wire::encode(&raise));
    assert_eq!(int(&u["replace"]), 0, "replace is required, so always sent");
    assert_eq!(int(&u["transmission_time"]), 1_700_000_300);
    let [V::Bytes(alert)] = u["alert"].as_slice() else {
        panic!("one alert: {u:?}");
    };
    let a = by_name(ALERT, alert);
    assert_eq!(int(&a["raise_time"]), 1_700_000_000);
    assert_eq!(int(&a["suppress_until"]), 1_700_000_300 + 240);
    assert!(!a.contains_key("clear_time"));
    assert_eq!(text(&a["summary"]), "web down");
}
