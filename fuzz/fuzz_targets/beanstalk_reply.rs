//! Fuzz target: the beanstalkd reply reader (crates/custodian/src/queue/beanstalk.rs,
//! included here as the binary crate has no library) reads a broker's replies back to back
//! without a panic; a data block is never longer than the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;

// beanstalk.rs reaches `super::resp`, so both sit at the root as they sit in `queue`.
#[allow(dead_code)]
#[path = "../../crates/custodian/src/queue/beanstalk.rs"]
mod beanstalk;
#[allow(dead_code)]
#[path = "../../crates/custodian/src/queue/resp.rs"]
mod resp;

fuzz_target!(|data: &[u8]| {
    let mut io = data;
    // Reading from a slice never waits, so polling once to completion is enough.
    while let Ok(r) = futures::executor::block_on(beanstalk::read_reply(&mut io)) {
        assert!(!r.words.is_empty() || r.data.is_none());
        if let Some(d) = r.data {
            assert!(d.len() < data.len());
        }
    }
});
