//! Fuzz target: a SOCKS4/5 server's handshake bytes, judged by `opensocks`: never a panic,
//! never "open" without the canary's token, a bounded reason.
//! The property lives in `custodian_probes::fuzzing::socks_handshake`, which CI also runs (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    custodian_probes::fuzzing::socks_handshake(data);
});
