//! Fuzz target: the queue's RESP reader (crates/custodian/src/queue/resp.rs, included here as
//! the binary crate has no library) reads a Redis broker's replies back to back without a
//! panic or a stack overflow, each reply bounded by the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/custodian/src/queue/resp.rs"]
mod resp;

use resp::Value;

/// Bytes of payload in a reply.
fn size(v: &Value) -> usize {
    match v {
        Value::Nil | Value::Int(_) => 0,
        Value::Bytes(b) => b.len(),
        Value::Error(e) => e.len(),
        Value::Array(items) => items.len() + items.iter().map(size).sum::<usize>(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut io = data;
    // Reading from a slice never waits, so polling once to completion is enough.
    while let Ok(v) = futures::executor::block_on(resp::read(&mut io, 0)) {
        // Invalid UTF-8 in a status line grows by at most 3 bytes a byte.
        assert!(size(&v) <= 3 * data.len(), "{v:?} from {data:?}");
    }
});
