//! custodian-bench: the measuring instruments of bench/perf (issue 13).
//!
//! `serve` is the target server (behaviour chosen by destination address, see `kinds`), `floor`
//! the floor client (only the wire work), `load` a connection-rate client for the server, and
//! `gen-*` the generators of the test files. Everything runs on one thread.

mod floor;
mod gen;
mod kinds;
mod load;
mod serve;

use std::process::ExitCode;

const USAGE: &str = "usage:
  custodian-bench serve [--netns] [--ready FILE] [PORT...]   target server (default ports 21 22 25 80 110 143 7000)
  custodian-bench floor [--concurrency N] [--timeout S] TSV  floor client over a target list
  custodian-bench load [--seconds S] [--concurrency N] [--kind close|banner] [--addrs N] [--port P]
  custodian-bench gen-checks N HUNG_PERCENT CFG TSV         mixed checks (ssh, smtp, tcp banner, http)
  custodian-bench gen-parse LINES FILE                       a file for `custodian check` (2.5 jobs a line)
  custodian-bench gen-jobs N FILE                            N distinct one-job lines for enqueue";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    raise_nofile();
    let result = match cmd.as_str() {
        "serve" => serve::main(rest),
        "floor" => floor::main(rest),
        "load" => load::main(rest),
        "gen-checks" => gen::checks(rest),
        "gen-parse" => gen::parse_file(rest),
        "gen-jobs" => gen::jobs(rest),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custodian-bench {cmd}: {e}");
            ExitCode::from(2)
        }
    }
}

/// Thousands of sockets at once: take the open-file limit up to the hard limit.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Value of `--name VALUE` in `args`, parsed; the remaining positional arguments are returned.
pub(crate) fn flags(
    args: &[String],
    names: &[&str],
) -> Result<(Vec<Option<String>>, Vec<String>), String> {
    let mut values = vec![None; names.len()];
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(i) = names.iter().position(|n| n == a) {
            let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
            values[i] = Some(v.clone());
        } else {
            rest.push(a.clone());
        }
    }
    Ok((values, rest))
}

pub(crate) fn parse_or<T: std::str::FromStr>(
    v: &Option<String>,
    default: T,
    what: &str,
) -> Result<T, String> {
    match v {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| format!("bad {what}: {s}")),
    }
}
