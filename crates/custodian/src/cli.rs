//! Command-line interface: every subcommand, its flags and its help text.

use crate::settings::{flag_int, flag_secs};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// A fast, distributed network and service monitor.
///
/// Checks are written one per line in custodian's English-like language, for example
/// `web1 must run http otherwise 'Web down'.` — see `custodian examples` and README.md.
///
/// Exit status: 0 all checks passed, 1 some check failed, 2 bad configuration or usage.
#[derive(Debug, Parser)]
#[command(name = "custodian", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Log format on stderr: `text` (colour only on a terminal, never with NO_COLOR) or `json`
    /// (one object per line, for log collectors).
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        env = "CUSTODIAN_LOG_FORMAT",
        default_value = "text"
    )]
    pub(crate) log_format: crate::LogFormat,
    /// More log lines on stderr: `-v` info, `-vv` custodian's debug lines, `-vvv` everything
    /// at debug. `CUSTODIAN_LOG`, when set, wins. (`worker --verbose` is about results: one
    /// line per job.)
    #[arg(
        short = 'v',
        long = "log-verbose",
        global = true,
        action = clap::ArgAction::Count,
        conflicts_with = "log_quiet"
    )]
    pub(crate) log_verbose: u8,
    /// Fewer log lines on stderr: errors only. `CUSTODIAN_LOG`, when set, wins. (`run --quiet`
    /// and `scan --quiet` hide the progress bar.)
    #[arg(short = 'q', long = "log-quiet", global = true)]
    pub(crate) log_quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Parse and validate test files without probing anything.
    ///
    /// Reports every error at once as `file:line:col: message` with the source line, a caret
    /// and a hint. Exit 0 when valid, 2 when not.
    Check(CheckArgs),
    /// Run every check once on the embedded in-process queue and print the results.
    ///
    /// Everything is parsed first; any error means nothing runs (exit 2). Exit 0 when every
    /// check passed (or was skipped by its time window), 1 when any failed, 3 when none
    /// failed but some could not be judged ("unknown": our own error, such as no socket or our
    /// resolver down; never a verdict on the service).
    Run(RunArgs),
    /// Print a working example line for every check type (or those matching PATTERN).
    Examples(ExamplesArgs),
    /// Parse test files and put every job on a queue for workers (all or nothing).
    ///
    /// Everything is parsed first; any error means nothing is enqueued (exit 2). Jobs already
    /// pending on the queue are not added twice.
    Enqueue(EnqueueArgs),
    /// Run jobs from a queue until stopped (SIGTERM/SIGINT: finish what is in flight, exit 0).
    ///
    /// Logs a summary every 60 s (jobs, failed, unknown); `--verbose` prints one line per
    /// finished job, `--json` one object. A job is acknowledged only after its result was
    /// handed on, so a worker that dies loses nothing: its jobs are delivered again.
    Worker(WorkerArgs),
    /// Show a queue's counts (pending, reserved, buried, oldest age) or flush it.
    Queue(QueueArgs),
    /// Scan address blocks for open SMTP relays, open resolvers, open proxies and open SOCKS.
    ///
    /// TARGET is an IP, a CIDR block, a range (`A-B` or `A-LAST`) or `@FILE`; names are not
    /// resolved. Configure the canary (`--recipient`, `--zone`/`--expect`, `--canary`/`--token`)
    /// to servers you control; flag values are checked like the same options in test files.
    /// Exit 0 when nothing is open, 1 when anything is (or probably is), 2 on bad usage (nothing
    /// is scanned), 3 when nothing is open but some probes could not be run (our own error,
    /// such as no socket: "unknown", never "closed").
    Scan(ScanArgs),
    /// Run every check on a schedule and serve a status page, a JSON API and metrics.
    ///
    /// Each check runs every `--interval` (or its line's `every 30s`), spread over the interval
    /// so that thousands do not start in the same second. Test files and settings are reloaded
    /// when they change and on SIGHUP; an edit with errors keeps the previous set running and
    /// shows the errors on the page. Results are kept in a SQLite history. Alerting works as in
    /// `run`. SIGTERM or SIGINT stops it gracefully.
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(crate::docs::CompletionsArgs),
    /// Write man pages for custodian and every subcommand into DIR (used to build packages).
    #[command(hide = true)]
    Manpages(crate::docs::ManpagesArgs),
    /// Run one check once, as a monitoring plugin (Nagios, Icinga, Sensu): one line
    /// `TYPE STATE - text | perfdata`.
    ///
    /// The words after TYPE and TARGET are a test-file line's options, e.g.
    /// `custodian probe ssh 127.0.0.1 on port 2222`. Exit 0 OK, 2 CRITICAL, 3 UNKNOWN (our own
    /// error, or bad options: nothing is probed then).
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address of the status page, JSON API and /metrics.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// Default time between two runs of a check: seconds, or with a unit (`30s`, `5m`, `1h`),
    /// from 5 s to 1 d.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = flag_every)]
    pub(crate) interval: u64,
    /// Schedule by enqueueing on this queue (`beanstalk://` or `redis://`) for workers,
    /// instead of running checks here; the workers' results come back to serve.
    #[arg(long, value_name = "URL")]
    pub(crate) queue: Option<String>,
    /// History database [default: history.sqlite beside the state file].
    #[arg(long, value_name = "FILE")]
    pub(crate) db: Option<PathBuf>,
    /// Require this bearer token for pages and API (also read from $CUSTODIAN_TOKEN);
    /// /healthz and /readyz stay open.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CUSTODIAN_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// Treat unrecognised words as errors rather than warnings.
    #[arg(long)]
    pub(crate) strict: bool,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Test files to run.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

/// `--interval`: as a line's `every`.
fn flag_every(s: &str) -> Result<u64, String> {
    custodian_core::plan::parse_every(s)
        .ok_or_else(|| format!("`{s}` is not an interval from 5s to 1d (e.g. 30s, 5m, 1h)"))
}

/// `--threads`: a whole number from 1 to 64.
fn flag_threads(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| format!("`threads` must be a whole number from 1 to 64, not {s:?}"))
}

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Checks to run, comma-separated.
    #[arg(long, default_value = "openrelay,openresolver,openproxy,opensocks")]
    pub(crate) checks: String,
    /// Ports for a check, as CHECK=PORT[,PORT] (repeatable) [default: openrelay=25,
    /// openresolver=53, openproxy=3128,8080, opensocks=1080].
    #[arg(long, value_name = "CHECK=PORTS")]
    pub(crate) port: Vec<String>,
    /// New connections per second, at most (0.001 to 1000000).
    #[arg(long, value_name = "N", default_value_t = 200.0)]
    pub(crate) rate: f64,
    /// Probes in flight at once, at most (at least 1).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub(crate) concurrency: usize,
    /// Seconds each probe may take (above 0, at most 3600).
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    pub(crate) timeout: f64,
    /// Addresses not to scan: IPs, CIDR blocks or ranges, comma-separated.
    #[arg(long, value_name = "CIDR,...")]
    pub(crate) exclude: Option<String>,
    /// Print one JSON object per target, port and check.
    #[arg(long, conflicts_with = "csv")]
    pub(crate) json: bool,
    /// Print CSV (target,port,check,verdict,source,reason,evidence).
    #[arg(long)]
    pub(crate) csv: bool,
    /// Allow more addresses than a /16.
    #[arg(long)]
    pub(crate) allow_large: bool,
    /// Hide the progress bar even on a terminal.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Also POST the report (counts and findings as JSON) to a running `custodian serve`,
    /// e.g. http://127.0.0.1:8080/api/scans, with `Authorization: Bearer $CUSTODIAN_TOKEN`
    /// when that is set.
    #[arg(long, value_name = "URL")]
    pub(crate) report_to: Option<String>,
    /// openrelay: the outside sender address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) sender: Option<String>,
    /// openrelay: the outside recipient, in a domain you control.
    #[arg(long, value_name = "ADDR")]
    pub(crate) recipient: Option<String>,
    /// openrelay: confirm an accepted recipient with the DATA verb alone (no body is sent).
    #[arg(long)]
    pub(crate) data_confirmation: bool,
    /// openresolver: a zone you serve with a wildcard A record.
    #[arg(long, value_name = "ZONE")]
    pub(crate) zone: Option<String>,
    /// openresolver: the address that wildcard answers.
    #[arg(long, value_name = "IP")]
    pub(crate) expect: Option<String>,
    /// openproxy, opensocks: http://IP:PORT/ of your canary server.
    #[arg(long, value_name = "URL")]
    pub(crate) canary: Option<String>,
    /// openproxy, opensocks: text the canary's pages contain.
    #[arg(long, value_name = "TEXT")]
    pub(crate) token: Option<String>,
    /// What to scan.
    #[arg(required = true, value_name = "TARGET")]
    pub(crate) targets: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Print one JSON object per expanded job instead of a summary (passwords masked).
    #[arg(long)]
    pub(crate) json: bool,
    /// Treat unrecognised words as errors rather than warnings.
    #[arg(long)]
    pub(crate) strict: bool,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Test files to read.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Print one JSON object per result (one per line) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Treat unrecognised words as errors rather than warnings.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Most checks in flight at once, 1 to 1000000 [settings: concurrency; default 5000,
    /// capped by the open-file limit].
    #[arg(long, value_name = "N", value_parser = |s: &str| flag_int::<usize>("concurrency", s))]
    pub(crate) concurrency: Option<usize>,
    /// Deadline of one attempt, in seconds, above 0 and at most 86400 [settings: timeout; default 30].
    #[arg(long, value_name = "S", value_parser = |s: &str| flag_secs("timeout", s))]
    pub(crate) timeout: Option<f64>,
    /// Total attempts per check before it counts as failed, 1 to 100 [settings: retries; default 5].
    #[arg(long, value_name = "N", value_parser = |s: &str| flag_int::<u32>("retries", s))]
    pub(crate) retries: Option<u32>,
    /// Seconds to wait between attempts, 0 to 86400 [settings: retry_delay; default 0].
    #[arg(long, value_name = "S", value_parser = |s: &str| flag_secs("retry_delay", s))]
    pub(crate) retry_delay: Option<f64>,
    /// Threads the checks run on, 1 to 64 [default: one per core, at most 8]. Each check
    /// stays on one thread; only large runs are spread.
    #[arg(long, value_name = "N", value_parser = |s: &str| flag_threads(s))]
    pub(crate) threads: Option<usize>,
    /// Hide the progress bar even on a terminal.
    #[arg(long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Test files to run.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

/// Flags shared by every command that reads test files.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// Settings file: TOML (`*.toml`) or the original's `key = value` custodian.cfg
    /// [default: /etc/custodian/custodian.toml if present].
    #[arg(long, value_name = "FILE")]
    pub(crate) settings: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ExamplesArgs {
    /// Only types whose name or example contains this text.
    pub(crate) pattern: Option<String>,
}

/// `--queue URL`, shared by the queue commands.
const QUEUE_HELP: &str = "Queue: beanstalk://HOST:PORT[/TUBE] (default tube custodian) or \
                          redis://HOST:PORT[/DB][?prefix=NAME] (default prefix custodian) \
                          [settings: queue_type + queue_host]";

#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    #[arg(long, value_name = "URL", help = QUEUE_HELP)]
    pub(crate) queue: Option<String>,
    /// Treat unrecognised words as errors rather than warnings.
    #[arg(long)]
    pub(crate) strict: bool,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Test files to enqueue.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    #[arg(long, value_name = "URL", help = QUEUE_HELP)]
    pub(crate) queue: Option<String>,
    /// Jobs held and run at once, 1 to 1000000 [settings: concurrency; default 5000, capped
    /// by the open-file limit].
    #[arg(long, value_name = "N", value_parser = |s: &str| flag_int::<usize>("concurrency", s))]
    pub(crate) concurrency: Option<usize>,
    /// Exit once the queue is empty and no job is in flight on any worker (exit 1 if any
    /// failed, else 3 if any could not be judged).
    #[arg(long)]
    pub(crate) drain: bool,
    /// Print one JSON object per finished job: the `run --json` fields plus `worker`.
    #[arg(long)]
    pub(crate) json: bool,
    /// Print one text line per finished job (`FAIL tcp 192.0.2.1 — reason — t.cfg:3`);
    /// without it (or --json) a worker logs only a summary every 60 s. (`-v` is the global
    /// flag for more log lines.)
    #[arg(long)]
    pub(crate) verbose: bool,
    /// This worker's name in results [default: HOSTNAME-PID].
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// The location this worker checks from (`lon1`, `ams1`): it takes the jobs `serve`
    /// sends there (`from lon1 and ams1`, `from 3 locations`) from the queue `<tube>.at.NAME`
    /// (Redis: `<prefix>.at.NAME`) [default: the default location, the queue itself].
    #[arg(long, value_name = "NAME", value_parser = location_name)]
    pub(crate) location: Option<String>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    #[arg(long, value_name = "URL", help = QUEUE_HELP)]
    pub(crate) queue: Option<String>,
    #[command(subcommand)]
    pub(crate) action: QueueAction,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub(crate) enum QueueAction {
    /// Print pending, reserved and buried counts and the oldest pending job's age.
    Status {
        /// One JSON object: `pending`, `reserved`, `buried`, `oldest_seconds` (null when
        /// nothing is pending), for monitoring scripts.
        #[arg(long)]
        json: bool,
    },
    /// Drop every pending and buried job (reserved ones still finish).
    Flush,
    /// List buried jobs (dead letters) with the reason, or requeue or drop them all.
    Dead {
        /// Put them back on the queue, their delivery count starting again.
        #[arg(long, conflicts_with = "drop")]
        requeue: bool,
        /// Delete them.
        #[arg(long)]
        drop: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// Check `must not run`: OK when the service does not answer.
    #[arg(long)]
    pub(crate) not: bool,
    /// Deadline of one attempt, in seconds [settings: timeout]. Taken as text: a bad value is
    /// an UNKNOWN (exit 3), as plugins report bad arguments.
    #[arg(long, value_name = "S")]
    pub(crate) timeout: Option<String>,
    /// Total attempts before the check counts as failed [settings: retries].
    #[arg(long, value_name = "N")]
    pub(crate) retries: Option<String>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Check type (see `custodian examples`).
    #[arg(value_name = "TYPE")]
    pub(crate) probe: String,
    /// Host, address or URL, as in a test file.
    #[arg(value_name = "TARGET")]
    pub(crate) target: String,
    /// Options as in a test-file line (`on port 2222`, `with content 'ok'`).
    #[arg(
        value_name = "WORDS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) words: Vec<String>,
}

/// A `--location` name, by the language's rules for location names.
fn location_name(s: &str) -> Result<String, String> {
    if custodian_core::valid_location_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a location name: 1 to 32 lowercase letters, digits, `-` or `_`, \
             starting with a letter or digit"
        ))
    }
}
