//! Fuzz target: the mauve protobuf decoder never panics, and a decoded update holds no more
//! alerts and text than the bytes it came from.
//! The property lives in `custodian_alerters::fuzzing::mauve_update`, which CI also runs (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    custodian_alerters::fuzzing::mauve_update(data);
});
