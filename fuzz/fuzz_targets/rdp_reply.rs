//! Fuzz target: an RDP server's reply, read as a TPKT within its capped length and judged
//! as an X.224 connection confirm: never a panic, bounded reasons.
//! The property lives in `custodian_probes::fuzzing::rdp_reply`, which CI also runs (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    custodian_probes::fuzzing::rdp_reply(data);
});
