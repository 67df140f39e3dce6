//! Fuzz target: an HTTP/1.1 reply read the way `http` and `https` read it (head, 1xx skipped,
//! body framed by length, chunks or close, gzip decoded), in reads of a size the first byte
//! picks: never a panic, a body within its cap, bounded reasons.
//! The property lives in `custodian_probes::fuzzing::http_reply`, which CI also runs (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    custodian_probes::fuzzing::http_reply(data);
});
