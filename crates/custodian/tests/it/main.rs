//! One integration binary for the `custodian` command (uv/ripgrep style).

mod check;
mod cli;
mod common;
mod peers;
mod run;
