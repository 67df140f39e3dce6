//! Fuzz target: a PostgreSQL server's answer to our startup message, framed and judged as
//! the probe does: never a panic, a length within the cap, a bounded judgement.
//! The property lives in `custodian_probes::fuzzing::postgresql_answer`, which CI also runs (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    custodian_probes::fuzzing::postgresql_answer(data);
});
