//! Fuzz target: a DNS reply, as the resolver of `mx`/`dnsbl` and the `dns` probe read it:
//! never a panic, what is accepted answers our ID and question, reasons are bounded.
//! The property lives in `custodian_probes::fuzzing::dns_reply`, which CI also runs (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    custodian_probes::fuzzing::dns_reply(data);
});
