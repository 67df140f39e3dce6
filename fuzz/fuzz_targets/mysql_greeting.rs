//! Fuzz target: a MySQL server's first packet, framed and parsed as the probe does: never
//! a panic, a length within what a greeting needs, a version shorter than the packet.
//! The property lives in `custodian_probes::fuzzing::mysql_greeting`, which CI also runs (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    custodian_probes::fuzzing::mysql_greeting(data);
});
