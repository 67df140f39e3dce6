//! Fuzz target: a TFTP server's packet: never a panic, data within a block, the server's
//! error text clipped and escaped.
//! The property lives in `custodian_probes::fuzzing::tftp_packet`, which CI also runs (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    custodian_probes::fuzzing::tftp_packet(data);
});
