//! `custodian scan`: the abuse checks (openrelay, openresolver, openproxy, opensocks) over
//! address blocks, rate-limited, with a report table, `--json` or `--csv`.
//!
//! Targets are IP addresses, CIDR blocks (`192.0.2.0/24`), ranges (`192.0.2.10-192.0.2.20`
//! or `192.0.2.10-20`) and `@FILE` (one target per line, `#` comments); names are refused, so
//! nothing is ever resolved. A probe's outcome text is `VERDICT: WHY [from SOURCE: TRANSCRIPT]`
//! (see the probes' `abuse.rs`); this file splits it into the report's fields.

use crate::cli::ScanArgs;
use anyhow::{bail, Context, Result};
use custodian_core::dsl::blocks::{parse_block, Block, LARGE};
use custodian_core::{Job, Outcome};
use custodian_probes::Ctx;
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The checks a scan runs, with their default ports and connections per probe.
const CHECKS: &[(&str, &[u16], u32)] = &[
    ("openrelay", &[25], 1),
    ("openresolver", &[53], 1),
    ("openproxy", &[3128, 8080], 2),
    ("opensocks", &[1080], 2),
];

/// Parses one target (IP, CIDR block or range); names are refused, never resolved.
fn parse_target(text: &str) -> Result<Block> {
    parse_block(text).map_err(anyhow::Error::msg)
}

/// Every target argument expanded into blocks (`@FILE` read line by line).
fn blocks(targets: &[String]) -> Result<Vec<Block>> {
    let mut out = Vec::new();
    for t in targets {
        match t.strip_prefix('@') {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
                for line in text
                    .lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                {
                    if !line.is_empty() {
                        out.push(parse_target(line)?);
                    }
                }
            }
            None => out.push(parse_target(t)?),
        }
    }
    Ok(out)
}

/// The addresses of `blocks` not inside any of `exclude`.
pub(crate) fn addresses<'a>(
    blocks: &'a [Block],
    exclude: &'a [Block],
) -> impl Iterator<Item = IpAddr> + 'a {
    blocks
        .iter()
        .flat_map(|b| b.addresses())
        .filter(move |ip| !exclude.iter().any(|b| b.contains(*ip)))
}

/// One probe to run: address, check and port.
#[derive(Debug, Clone)]
struct Task {
    ip: IpAddr,
    check: &'static str,
    port: u16,
    conns: u32,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) target: String,
    pub(crate) port: u16,
    pub(crate) check: String,
    pub(crate) verdict: String,
    pub(crate) reason: String,
    pub(crate) evidence: String,
    pub(crate) source: String,
}

/// Splits a probe outcome (`VERDICT: WHY [from SOURCE: TRANSCRIPT]`) into report fields.
pub(crate) fn split_outcome(o: &Outcome) -> (String, String, String, String) {
    let text = match o {
        Outcome::Up { detail } => detail.clone().unwrap_or_default(),
        Outcome::Down { reason } => reason.clone(),
        Outcome::Unknown { error } => format!("inconclusive: {error}"),
    };
    let (verdict, rest) = text.split_once(": ").unwrap_or(("inconclusive", &text));
    // The transcript itself may hold " [", so look for how it starts, not for any bracket.
    let start = [" [from ", " [C: ", " [S: "]
        .iter()
        .find_map(|m| rest.find(m));
    let (why, evidence) = match start {
        Some(i) if rest.ends_with(']') => (&rest[..i], &rest[i + 2..rest.len() - 1]),
        _ => (rest, ""),
    };
    let (source, evidence) = match evidence
        .strip_prefix("from ")
        .and_then(|e| e.split_once(": "))
    {
        Some((s, e)) => (s, e),
        None => ("", evidence),
    };
    (verdict.into(), why.into(), evidence.into(), source.into())
}

/// The checks and ports to run, from `--checks` and `--port CHECK=P,P`.
fn plan(args: &ScanArgs) -> Result<Vec<(&'static str, Vec<u16>, u32)>> {
    let mut ports: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for p in &args.port {
        let (check, list) = p
            .split_once('=')
            .with_context(|| format!("--port {p:?}: want CHECK=PORT[,PORT]"))?;
        let list: Result<Vec<u16>, _> = list.split(',').map(str::parse).collect();
        ports.insert(
            check.to_string(),
            list.with_context(|| format!("--port {p:?}: bad port"))?,
        );
    }
    let wanted: Vec<&str> = args.checks.split(',').map(str::trim).collect();
    for w in &wanted {
        if !CHECKS.iter().any(|(c, _, _)| c == w) {
            bail!("unknown check {w:?} (known: openrelay, openresolver, openproxy, opensocks)");
        }
    }
    Ok(CHECKS
        .iter()
        .filter(|(c, _, _)| wanted.contains(c))
        .map(|(c, p, n)| (*c, ports.get(*c).cloned().unwrap_or_else(|| p.to_vec()), *n))
        .collect())
}

/// The options every probe of `check` gets from the scan's flags.
fn options(args: &ScanArgs, check: &str) -> BTreeMap<String, serde_json::Value> {
    let mut o = BTreeMap::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            o.insert(k.to_string(), serde_json::Value::from(v.as_str()));
        }
    };
    match check {
        "openrelay" => {
            put("sender", &args.sender);
            put("recipient", &args.recipient);
            if args.data_confirmation {
                o.insert("with_data_confirmation".into(), true.into());
            }
        }
        "openresolver" => {
            put("zone", &args.zone);
            put("expect", &args.expect);
        }
        _ => {
            put("canary", &args.canary);
            put("token", &args.token);
        }
    }
    o
}

async fn probe(args: Arc<ScanArgs>, t: Task) -> Row {
    let mut job = Job::new(t.check, &t.ip.to_string(), Some(t.port));
    job.options = options(&args, t.check);
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.timeout);
    let cx = Ctx::new(Arc::new(job), Some(t.ip), deadline);
    let outcome = match custodian_probes::find(t.check) {
        Some(p) => (p.check)(&cx).await,
        None => Outcome::unknown(format!("no probe {}", t.check)),
    };
    let (verdict, reason, evidence, source) = split_outcome(&outcome);
    Row {
        target: t.ip.to_string(),
        port: t.port,
        check: t.check.into(),
        verdict,
        reason,
        evidence,
        source,
    }
}

pub(crate) async fn scan(args: ScanArgs) -> Result<ExitCode> {
    let blocks = blocks(&args.targets)?;
    let exclude = blocks_of_list(args.exclude.as_deref())?;
    let total: u64 = blocks.iter().map(Block::len).sum();
    if total > LARGE && !args.allow_large {
        bail!("{total} addresses is more than a /16: pass --allow-large to scan them");
    }
    if args.rate <= 0.0 || args.timeout <= 0.0 {
        bail!("--rate and --timeout must be positive");
    }
    let checks = plan(&args)?;
    let per_address: usize = checks.iter().map(|(_, ports, _)| ports.len()).sum();
    let count = addresses(&blocks, &exclude).count() * per_address;
    let tasks = addresses(&blocks, &exclude).flat_map(|ip| {
        checks.iter().flat_map(move |(check, ports, conns)| {
            ports.iter().map(move |&port| Task {
                ip,
                check,
                port,
                conns: *conns,
            })
        })
    });
    let report = run(Arc::new(args), tasks, count).await;
    Ok(if report.open {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn blocks_of_list(list: Option<&str>) -> Result<Vec<Block>> {
    list.map(|l| {
        l.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(parse_target)
            .collect()
    })
    .unwrap_or(Ok(Vec::new()))
}

/// What the table needs: counts per verdict and the findings; rows themselves are streamed.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) counts: BTreeMap<String, usize>,
    pub(crate) findings: Vec<Row>,
    pub(crate) open: bool,
}

impl Report {
    fn add(&mut self, row: Row) {
        *self.counts.entry(row.verdict.clone()).or_default() += 1;
        self.open |= row.verdict.ends_with("open");
        if rank(&row.verdict) < 3 {
            self.findings.push(row);
        }
    }
}

/// `--concurrency`, lowered so that two sockets per probe fit the open-file limit (raised first).
fn concurrency(wanted: usize) -> usize {
    match crate::raise_fd_limit() {
        Some(limit) => wanted.min((limit.saturating_sub(crate::RESERVED_FDS) / 2).max(1) as usize),
        None => wanted,
    }
    .max(1)
}

/// Runs every task at `--rate` new connections per second, `--concurrency` at once; JSON and
/// CSV rows are printed as they come, the table at the end.
async fn run(args: Arc<ScanArgs>, tasks: impl Iterator<Item = Task>, count: usize) -> Report {
    let bar = crate::report::progress(count, args.quiet);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tick = Arc::new(tokio::sync::Mutex::new(tick));
    let a = args.clone();
    if args.csv {
        println!("target,port,check,verdict,source,reason,evidence");
    }
    let mut report = Report::default();
    let rows = futures::stream::iter(tasks)
        .then(|t| {
            let tick = tick.clone();
            async move {
                let mut tick = tick.lock().await;
                for _ in 0..t.conns {
                    tick.tick().await;
                }
                t
            }
        })
        .map(|t| probe(a.clone(), t))
        .buffer_unordered(concurrency(args.concurrency));
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.next().await {
        bar.inc(1);
        print_row(&args, &row);
        report.add(row);
    }
    bar.finish_and_clear();
    report.findings.sort_by(|x, y| {
        (rank(&x.verdict), &x.target, x.port).cmp(&(rank(&y.verdict), &y.target, y.port))
    });
    if !args.json && !args.csv {
        print!("{}", table(&report));
    }
    report
}

fn rank(verdict: &str) -> u8 {
    [
        "open",
        "probably-open",
        "inconclusive",
        "no-answer",
        "closed",
    ]
    .iter()
    .position(|v| *v == verdict)
    .map_or(5, |p| p as u8)
}

fn print_row(args: &ScanArgs, r: &Row) {
    if args.json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    } else if args.csv {
        let port = r.port.to_string();
        let cells = [
            &r.target,
            &port,
            &r.check,
            &r.verdict,
            &r.source,
            &r.reason,
            &r.evidence,
        ];
        let quoted: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        println!("{}", quoted.join(","));
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The report: counts per verdict, then every finding that is not closed or silent.
pub(crate) fn table(report: &Report) -> String {
    let count = |v: &str| report.counts.get(v).copied().unwrap_or(0);
    let mut out = format!(
        "{} probes: {} open, {} probably open, {} inconclusive, {} closed, {} no answer\n",
        report.counts.values().sum::<usize>(),
        count("open"),
        count("probably-open"),
        count("inconclusive"),
        count("closed"),
        count("no-answer")
    );
    for r in &report.findings {
        out.push_str(&format!(
            "{:<14} {}:{}  {}: {}\n    evidence (from {}): {}\n",
            r.verdict.to_uppercase(),
            r.target,
            r.port,
            r.check,
            r.reason,
            r.source,
            r.evidence
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: &str, b: &str) -> Block {
        Block::V4(
            a.parse::<std::net::Ipv4Addr>().expect("ip").into(),
            b.parse::<std::net::Ipv4Addr>().expect("ip").into(),
        )
    }

    #[test]
    fn targets_are_blocks_and_names_are_refused() {
        assert_eq!(parse_target("127.0.70.0/30").expect("cidr").len(), 4);
        let err = parse_target("localhost").expect_err("a name").to_string();
        assert!(err.contains("names are not resolved"), "{err}");
    }

    #[test]
    fn exclusions_drop_addresses() {
        let ips: Vec<IpAddr> = addresses(
            &[v4("127.0.0.1", "127.0.0.4")],
            &[v4("127.0.0.2", "127.0.0.3")],
        )
        .collect();
        assert_eq!(
            ips,
            vec![
                "127.0.0.1".parse::<IpAddr>().expect("ip"),
                "127.0.0.4".parse().expect("ip")
            ]
        );
    }

    #[test]
    fn outcomes_split_into_fields() {
        let o = Outcome::Up {
            detail: Some("open: accepted <a@b> [from 127.0.0.1: C: EHLO x | S: 250 ok]".into()),
        };
        let (v, why, ev, src) = split_outcome(&o);
        assert_eq!(
            (v.as_str(), why.as_str(), ev.as_str(), src.as_str()),
            (
                "open",
                "accepted <a@b>",
                "C: EHLO x | S: 250 ok",
                "127.0.0.1"
            )
        );
        let (v, why, ev, _) = split_outcome(&Outcome::down(
            "closed: connect to port 25: connection refused",
        ));
        assert_eq!(
            (v.as_str(), why.as_str(), ev.as_str()),
            ("closed", "connect to port 25: connection refused", "")
        );
    }

    #[test]
    fn csv_quotes_when_needed() {
        assert_eq!(csv_cell("a,b \"c\""), "\"a,b \"\"c\"\"\"");
        assert_eq!(csv_cell("plain"), "plain");
    }

    #[test]
    fn table_counts_and_lists_findings() {
        let row = |v: &str| Row {
            target: "127.0.0.1".into(),
            port: 25,
            check: "openrelay".into(),
            verdict: v.into(),
            reason: "why".into(),
            evidence: "C: x".into(),
            source: "127.0.0.1".into(),
        };
        let mut report = Report::default();
        for v in ["open", "closed", "no-answer"] {
            report.add(row(v));
        }
        assert!(report.open);
        let t = table(&report);
        assert!(
            t.starts_with(
                "3 probes: 1 open, 0 probably open, 0 inconclusive, 1 closed, 1 no answer\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("OPEN           127.0.0.1:25  openrelay: why"),
            "{t}"
        );
        assert_eq!(t.lines().count(), 3, "{t}");
    }
}
