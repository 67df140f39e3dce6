//! Fuzz target: the bounded BER decoder that reads every LDAP reply never panics and never
//! recurses; what it accepts is no deeper than its limit, is exactly what `ldap3`'s own
//! (recursive) parser reads from the same bytes, and comes back unchanged after re-encoding.
#![no_main]

use custodian_probes::ber::{decode, MAX_DEPTH};
use ldap3::asn1::{parse_tag, write, StructureTag, PL};
use libfuzzer_sys::fuzz_target;

/// Levels of constructed elements, counted with recursion: fine on a tree `decode` bounded.
fn depth(tag: &StructureTag) -> usize {
    match &tag.payload {
        PL::P(_) => 0,
        PL::C(parts) => 1 + parts.iter().map(depth).max().unwrap_or(0),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(tag) = decode(data) else {
        return;
    };
    assert!(depth(&tag) <= MAX_DEPTH, "{data:02x?}");
    // Shallow and well-formed, so the recursive parser is safe on these bytes and must agree.
    let (rest, theirs) = parse_tag(data).expect("lber refuses what we accept");
    assert!(rest.is_empty(), "{data:02x?}");
    assert_eq!(theirs, tag);
    let mut again = bytes::BytesMut::new();
    write::encode_into(&mut again, tag.clone()).expect("encode");
    assert_eq!(decode(&again), Ok(tag));
});
