//! Fuzz target: the redis alerter's RESP reader reads a receiver's replies back to back without a
//! panic or a stack overflow, each reply bounded by the bytes it came from.
//! The property lives in `custodian_alerters::fuzzing::resp_replies`, which CI also runs (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    custodian_alerters::fuzzing::resp_replies(data);
});
