//! One integration binary for the `custodian` command (uv/ripgrep style).

mod alerting;
mod browser;
mod check;
mod cli;
mod common;
mod examples;
mod locations;
mod mistakes;
mod peers;
mod plugin;
mod queue;
mod queue_broker;
mod run;
mod scan;
mod secret_refs;
mod serve;
mod tls;
