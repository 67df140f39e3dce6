//! The `custodian` command: CLI, settings, worker pool and output.
fn main() {}
