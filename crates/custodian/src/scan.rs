//! `custodian scan`: the abuse checks over address blocks, rate-limited, with a report table,
//! `--json` or `--csv`.
//!
//! The checks are the probe types that declare a [`ScanSpec`] (their default ports,
//! connections per probe and flags). Each flag's value is parsed by the kind of the option
//! it sets, with the same parser as a test file's `with ...` option, and every check's
//! options are prepared once before anything is sent: a bad flag is exit 2, nothing scanned.
//! Rows are built from each probe's typed [`Finding`]; a probe's own error (no socket, a
//! local firewall) is "unknown", never "closed".
//!
//! Targets are IP addresses, CIDR blocks (`192.0.2.0/24`), ranges (`192.0.2.10-192.0.2.20`
//! or `192.0.2.10-20`) and `@FILE` (one target per line, `#` comments); names are refused, so
//! nothing is ever resolved.

use crate::cli::ScanArgs;
use anyhow::{bail, Context, Result};
use custodian_core::dsl::blocks::{parse_block, Block, LARGE};
use custodian_core::outcome::escape_controls;
use custodian_core::{Finding, Job, Params, ScanSpec, Verdict};
use custodian_probes::{Ctx, Env, Probe};
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Longest `--timeout`: a probe may hold its sockets for an hour at most; more is a typo
/// (and a deadline that far off would overflow the clock).
const MAX_TIMEOUT: f64 = 3600.0;

/// `--rate` bounds: one new connection per 1000 s at the slowest; a million per second at
/// the fastest, where the pause between two is still a whole microsecond.
const MIN_RATE: f64 = 0.001;
const MAX_RATE: f64 = 1_000_000.0;

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

/// One check of the scan, validated: its probe, ports, and the options every probe of it
/// gets, parsed once.
struct Check {
    probe: &'static Probe,
    ports: Vec<u16>,
    conns: u32,
    options: BTreeMap<String, serde_json::Value>,
    params: Arc<Params>,
}

/// The scan's flags, validated before anything is sent.
struct Plan {
    checks: Vec<Check>,
    timeout: Duration,
    /// Pause between two new connections (`1 / --rate`).
    pause: Duration,
    concurrency: usize,
}

/// One probe to run: address, index into [`Plan::checks`], port.
#[derive(Debug, Clone, Copy)]
struct Task {
    ip: IpAddr,
    check: usize,
    port: u16,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) target: String,
    pub(crate) port: u16,
    pub(crate) check: String,
    pub(crate) verdict: Verdict,
    pub(crate) reason: String,
    pub(crate) evidence: String,
    pub(crate) source: String,
}

impl Row {
    /// The row of a finding; what the peer said is escaped ([`escape_controls`]) here, so the
    /// table, the CSV and the JSON never carry its control characters.
    fn new(t: &Task, check: &str, f: Finding) -> Row {
        Row {
            target: t.ip.to_string(),
            port: t.port,
            check: check.to_string(),
            verdict: f.verdict,
            reason: escape_controls(&f.why),
            evidence: escape_controls(&f.transcript.join(" | ")),
            source: escape_controls(&f.source.unwrap_or_default()),
        }
    }
}

/// The probe types `custodian scan` runs, in registry order.
fn scan_probes() -> impl Iterator<Item = (&'static Probe, &'static ScanSpec)> {
    custodian_probes::PROBES
        .iter()
        .filter_map(|p| Some((p, p.spec.scan.as_ref()?)))
}

fn known_checks() -> String {
    let names: Vec<&str> = scan_probes().map(|(p, _)| p.spec.name).collect();
    names.join(", ")
}

/// A number of seconds in `(0, max]`; anything else (NaN, infinite, negative) is refused
/// before it can reach a clock.
fn seconds(flag: &str, value: f64, max: f64) -> Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= max) {
        bail!("{flag} {value:?}: want a number of seconds above 0 and at most {max}");
    }
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag} {value:?}"))
}

/// `--rate` as the pause between two new connections.
fn pause(rate: f64) -> Result<Duration> {
    if !(rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate)) {
        bail!("--rate {rate:?}: want new connections per second from {MIN_RATE} to {MAX_RATE}");
    }
    Duration::try_from_secs_f64(1.0 / rate).with_context(|| format!("--rate {rate:?}"))
}

/// The scan flags given, as (flag, option value); switches are `true`.
fn given_flags(args: &ScanArgs) -> Vec<(&'static str, serde_json::Value)> {
    let text = [
        ("sender", &args.sender),
        ("recipient", &args.recipient),
        ("zone", &args.zone),
        ("expect", &args.expect),
        ("canary", &args.canary),
        ("token", &args.token),
    ];
    let mut given: Vec<(&'static str, serde_json::Value)> = text
        .into_iter()
        .filter_map(|(flag, v)| Some((flag, v.as_deref()?.into())))
        .collect();
    if args.data_confirmation {
        given.push(("data-confirmation", true.into()));
    }
    given
}

/// `--port CHECK=P[,P]` entries: each names a known check and ports 1-65535.
fn port_overrides(args: &ScanArgs) -> Result<BTreeMap<&'static str, Vec<u16>>> {
    let mut ports = BTreeMap::new();
    for p in &args.port {
        let (check, list) = p
            .split_once('=')
            .with_context(|| format!("--port {p}: want CHECK=PORT[,PORT]"))?;
        let Some((probe, _)) = scan_probes().find(|(pr, _)| pr.spec.is_named(check.trim())) else {
            bail!(
                "--port {p}: unknown check `{check}` (known: {})",
                known_checks()
            );
        };
        let list = list
            .split(',')
            .map(|n| match n.trim().parse::<u64>() {
                Ok(n @ 1..=65535) => Ok(n as u16),
                Ok(n) => bail!("--port {p}: port {n} is out of range (1-65535)"),
                Err(_) => bail!("--port {p}: `{n}` is not a port number"),
            })
            .collect::<Result<Vec<u16>>>()?;
        ports.insert(probe.spec.name, list);
    }
    Ok(ports)
}

/// Validates every flag and prepares each check's options; errors name the flag.
fn plan(args: &ScanArgs) -> Result<Plan> {
    let timeout = seconds("--timeout", args.timeout, MAX_TIMEOUT)?;
    let pause = pause(args.rate)?;
    if args.concurrency == 0 {
        bail!("--concurrency 0: want at least 1 probe in flight");
    }
    let mut wanted = Vec::new();
    for w in args.checks.split(',').map(str::trim) {
        match scan_probes().find(|(p, _)| p.spec.is_named(w)) {
            Some(found) => wanted.push(found),
            None => bail!("--checks: unknown check `{w}` (known: {})", known_checks()),
        }
    }
    let mut ports = port_overrides(args)?;
    if let Some(check) = ports
        .keys()
        .find(|c| !wanted.iter().any(|(p, _)| p.spec.name == **c))
    {
        bail!(
            "--port {check}=...: {check} is not among --checks {}",
            args.checks
        );
    }
    let given = given_flags(args);
    for (flag, _) in &given {
        if !wanted
            .iter()
            .any(|(_, s)| s.flags.iter().any(|(f, _)| f == flag))
        {
            bail!("--{flag} is not used by any of --checks {}", args.checks);
        }
    }
    let mut checks: Vec<Check> = Vec::new();
    for (probe, spec) in
        scan_probes().filter(|(p, _)| wanted.iter().any(|(w, _)| w.spec.name == p.spec.name))
    {
        let options = check_options(probe, spec, &given)?;
        let mut template = Job::new(probe.spec.name, "0.0.0.0", None);
        template.options = options.clone().into();
        let params = custodian_probes::prepare(&template)
            .map_err(|e| anyhow::anyhow!("{}: {}", probe.spec.name, flag_error(&e)))?;
        checks.push(Check {
            probe,
            ports: ports
                .remove(probe.spec.name)
                .unwrap_or_else(|| spec.ports.to_vec()),
            conns: spec.conns.max(1),
            options,
            params: Arc::new(params),
        });
    }
    Ok(Plan {
        checks,
        timeout,
        pause,
        concurrency: args.concurrency,
    })
}

/// The options of one check from the flags it declares, each value parsed by its option's
/// kind (the same parser as in test files), so the error can name the flag.
fn check_options(
    probe: &Probe,
    spec: &ScanSpec,
    given: &[(&'static str, serde_json::Value)],
) -> Result<BTreeMap<String, serde_json::Value>> {
    let mut options = BTreeMap::new();
    for (flag, key) in spec.flags {
        let Some((_, value)) = given.iter().find(|(f, _)| f == flag) else {
            continue;
        };
        match probe.spec.kind_of(key) {
            Some(Some(kind)) => {
                if let Err(e) = kind.parse(value) {
                    let shown = value.as_str().map_or_else(
                        || value.to_string(),
                        |s| format!("'{}'", escape_controls(s)),
                    );
                    bail!("--{flag} {shown}: {}", flag_error(&e));
                }
            }
            Some(None) => {}
            None => bail!(
                "{} declares --{flag} for an option it does not take",
                probe.spec.name
            ),
        }
        options.insert((*key).to_string(), value.clone());
    }
    Ok(options)
}

/// A refusal with its hint on a line of its own.
fn flag_error(e: &custodian_core::Invalid) -> String {
    match &e.hint {
        Some(h) => format!("{}\n  hint: {h}", e.msg),
        None => e.msg.clone(),
    }
}

async fn probe(plan: Arc<Plan>, env: Arc<Env>, t: Task) -> Row {
    let check = &plan.checks[t.check];
    let name = check.probe.spec.name;
    let mut job = Job::new(name, &t.ip.to_string(), Some(t.port));
    job.options = check.options.clone().into();
    let deadline = tokio::time::Instant::now() + plan.timeout;
    let cx = Ctx::prepared(
        env,
        Arc::new(job),
        Arc::clone(&check.params),
        Some(t.ip),
        deadline,
    );
    let finding = custodian_probes::assess(&cx)
        .await
        .unwrap_or_else(|| Finding::new(Verdict::Unknown, format!("{name} is not an abuse check")));
    Row::new(&t, name, finding)
}

pub(crate) async fn scan(args: ScanArgs) -> Result<ExitCode> {
    let report_to = args.report_to.as_deref().map(report_url).transpose()?;
    let (report, body) = execute(&args, true).await?;
    if let Some(url) = &report_to {
        send_report(url, &body, std::env::var("CUSTODIAN_TOKEN").ok()).await?;
    }
    Ok(if report.open {
        ExitCode::FAILURE
    } else if report.unknown {
        ExitCode::from(crate::EXIT_UNKNOWN)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs the scan `args` describe (validated first: nothing is sent on a bad flag); `print`
/// shows rows and the table as `custodian scan` does. Returns the report and its JSON as
/// `--report-to` sends it.
async fn execute(args: &ScanArgs, print: bool) -> Result<(Report, serde_json::Value)> {
    let plan = plan(args)?;
    let blocks = blocks(&args.targets)?;
    let exclude = blocks_of_list(args.exclude.as_deref())?;
    let total: u64 = blocks.iter().map(Block::len).sum();
    if total > LARGE && !args.allow_large {
        bail!("{total} addresses is more than a /16: pass --allow-large to scan them");
    }
    let per_address: usize = plan.checks.iter().map(|c| c.ports.len()).sum();
    let count = addresses(&blocks, &exclude).count() * per_address;
    let plan = Arc::new(plan);
    let p = Arc::clone(&plan);
    let tasks = addresses(&blocks, &exclude).flat_map(move |ip| {
        let p = Arc::clone(&p);
        (0..p.checks.len()).flat_map(move |check| {
            let ports = p.checks[check].ports.clone();
            ports.into_iter().map(move |port| Task { ip, check, port })
        })
    });
    let started = crate::alerting::unix_now();
    let names: Vec<&'static str> = plan.checks.iter().map(|c| c.probe.spec.name).collect();
    let report = run(args, Arc::clone(&plan), tasks, count, print).await;
    let body = report_json(args, &names, &report, started);
    Ok((report, body))
}

/// A scan from the settings' `[scan]` section as `custodian scan` arguments, parsed and
/// validated by the same code (the targets file is read): an error names the key's flag.
pub(crate) fn scheduled(s: &crate::settings::ScanSettings) -> Result<ScanArgs> {
    let mut argv: Vec<String> = vec!["custodian".into(), "scan".into(), "--quiet".into()];
    let mut flag = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            argv.push(format!("--{name}"));
            argv.push(v);
        }
    };
    flag("checks", s.checks.clone());
    flag("exclude", s.exclude.clone());
    flag("rate", s.rate.map(|v| v.to_string()));
    flag("concurrency", s.concurrency.map(|v| v.to_string()));
    flag("timeout", s.timeout.map(|v| v.to_string()));
    for (name, v) in [
        ("sender", &s.sender),
        ("recipient", &s.recipient),
        ("zone", &s.zone),
        ("expect", &s.expect),
        ("canary", &s.canary),
        ("token", &s.token),
    ] {
        flag(name, v.clone());
    }
    for p in &s.ports {
        flag("port", Some(p.clone()));
    }
    if s.data_confirmation {
        argv.push("--data-confirmation".into());
    }
    argv.push("--".into());
    argv.extend(s.targets.iter().cloned());
    if let Some(file) = &s.targets_file {
        std::fs::metadata(file).with_context(|| format!("targets_file {}", file.display()))?;
        argv.push(format!("@{}", file.display()));
    }
    if s.targets.is_empty() && s.targets_file.is_none() {
        bail!("give targets or targets_file");
    }
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(&argv)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
    let crate::cli::Command::Scan(args) = cli.command else {
        bail!("not a scan");
    };
    plan(&args)?;
    blocks(&args.targets)?;
    Ok(args)
}

/// Runs a scheduled scan quietly; its report as `--report-to` would send it.
pub(crate) async fn scheduled_report(args: &ScanArgs) -> Result<serde_json::Value> {
    Ok(execute(args, false).await?.1)
}

/// Largest report `--report-to` sends (serve takes up to 8 MiB): findings past it are
/// left out, the least important ones (they are sorted best first), and counted.
const MAX_REPORT: usize = 7 << 20;
/// How long sending the report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// `--report-to`, checked before anything is scanned: an http(s) URL.
pub(crate) fn report_url(text: &str) -> Result<url::Url> {
    let url = url::Url::parse(text)
        .with_context(|| format!("--report-to {}: not a URL", custodian_core::mask_url(text)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        bail!(
            "--report-to {}: want an http:// or https:// URL such as http://127.0.0.1:8080/api/scans",
            custodian_core::mask_url(text)
        );
    }
    Ok(url)
}

/// The report `--report-to` sends: what the table shows (counts of every verdict and every
/// finding, the rows `--json` prints except no-answer and closed ones), with the scan's
/// targets, checks and times.
fn report_json(
    args: &ScanArgs,
    checks: &[&str],
    report: &Report,
    started: u64,
) -> serde_json::Value {
    let counts: BTreeMap<&str, usize> = report.counts.iter().map(|(v, n)| (v.word(), *n)).collect();
    let mut size = 0;
    let findings: Vec<&Row> = report
        .findings
        .iter()
        .take_while(|r| {
            size += serde_json::to_string(r).map_or(0, |s| s.len() + 1);
            size <= MAX_REPORT
        })
        .collect();
    serde_json::json!({
        "version": 1,
        "started_at": started,
        "finished_at": crate::alerting::unix_now(),
        "targets": args.targets,
        "exclude": args.exclude,
        "checks": checks,
        "probes": report.counts.values().sum::<usize>(),
        "counts": counts,
        "findings_omitted": report.findings.len() - findings.len(),
        "findings": findings,
    })
}

/// POSTs the report to `url` (a running `custodian serve`); anything but a 2xx is an error.
pub(crate) async fn send_report(
    url: &url::Url,
    body: &serde_json::Value,
    token: Option<String>,
) -> Result<()> {
    let shown = custodian_core::mask_url(url.as_str());
    let client = reqwest::Client::builder()
        .timeout(REPORT_TIMEOUT)
        .build()
        .with_context(|| format!("sending the report to {shown}"))?;
    let mut req = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body)?);
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("sending the report to {shown}: {}", e.without_url()))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.trim().chars().take(200).collect();
        bail!(
            "{shown} refused the report: HTTP {status}: {}",
            escape_controls(&text)
        );
    }
    Ok(())
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
    pub(crate) counts: BTreeMap<Verdict, usize>,
    pub(crate) findings: Vec<Row>,
    /// Something is (probably) open.
    pub(crate) open: bool,
    /// Some probe could not be run (our own error).
    pub(crate) unknown: bool,
}

impl Report {
    fn add(&mut self, row: Row) {
        *self.counts.entry(row.verdict).or_default() += 1;
        self.open |= row.verdict.is_open();
        self.unknown |= row.verdict == Verdict::Unknown;
        // Silence and refusals are counted only; everything else is listed.
        if row.verdict < Verdict::NoAnswer {
            self.findings.push(row);
        }
    }
}

/// Runs every task at `--rate` new connections per second, `--concurrency` at once; JSON and
/// CSV rows are printed as they come, the table at the end.
async fn run(
    args: &ScanArgs,
    plan: Arc<Plan>,
    tasks: impl Iterator<Item = Task>,
    count: usize,
    print: bool,
) -> Report {
    let bar = crate::report::progress(count, args.quiet);
    let mut tick = tokio::time::interval(plan.pause);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tick = Arc::new(tokio::sync::Mutex::new(tick));
    // Built once for the whole scan: every probe shares its trust roots and nameservers.
    let env = Arc::new(Env::default());
    if args.csv {
        println!("target,port,check,verdict,source,reason,evidence");
    }
    let most_conns = plan.checks.iter().map(|c| c.conns).max().unwrap_or(1);
    // `--concurrency`, lowered so that `most_conns` sockets per probe fit the open-file limit.
    let width = crate::commands::startup::fit_fd_limit(plan.concurrency, most_conns);
    let mut report = Report::default();
    let p = Arc::clone(&plan);
    let rows = futures::stream::iter(tasks)
        .then(|t| {
            let tick = tick.clone();
            let conns = p.checks[t.check].conns;
            async move {
                let mut tick = tick.lock().await;
                for _ in 0..conns {
                    tick.tick().await;
                }
                t
            }
        })
        .map(|t| probe(Arc::clone(&plan), Arc::clone(&env), t))
        .buffer_unordered(width);
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.next().await {
        bar.inc(1);
        if print {
            print_row(args, &row);
        }
        report.add(row);
    }
    bar.finish_and_clear();
    report
        .findings
        .sort_by(|x, y| (x.verdict, &x.target, x.port).cmp(&(y.verdict, &y.target, y.port)));
    if print && !args.json && !args.csv {
        print!("{}", table(&report));
    }
    report
}

fn print_row(args: &ScanArgs, r: &Row) {
    if args.json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    } else if args.csv {
        let port = r.port.to_string();
        let verdict = r.verdict.word().to_string();
        let cells = [
            &r.target,
            &port,
            &r.check,
            &verdict,
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
    let count = |v: Verdict| report.counts.get(&v).copied().unwrap_or(0);
    let mut out = format!(
        "{} probes: {} open, {} probably open, {} inconclusive, {} closed, {} no answer, \
         {} unknown\n",
        report.counts.values().sum::<usize>(),
        count(Verdict::Open),
        count(Verdict::ProbablyOpen),
        count(Verdict::Inconclusive),
        count(Verdict::Closed),
        count(Verdict::NoAnswer),
        count(Verdict::Unknown),
    );
    for r in &report.findings {
        out.push_str(&format!(
            "{:<14} {}:{}  {}: {}\n",
            r.verdict.word().to_uppercase(),
            r.target,
            r.port,
            r.check,
            r.reason,
        ));
        if !r.evidence.is_empty() {
            let from = if r.source.is_empty() {
                String::new()
            } else {
                format!(" (from {})", r.source)
            };
            out.push_str(&format!("    evidence{from}: {}\n", r.evidence));
        }
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
    fn rows_escape_what_the_peer_said() {
        let task = Task {
            ip: [127, 0, 0, 1].into(),
            check: 0,
            port: 25,
        };
        let mut f = Finding::new(Verdict::Closed, "greeting \u{1b}[2J");
        f.transcript = vec!["S: 220 \u{1b}]0;pwned\u{7}".into(), "S: a\r\nb".into()];
        let row = Row::new(&task, "openrelay", f);
        assert_eq!(row.reason, "greeting \\u{1b}[2J");
        assert_eq!(row.evidence, "S: 220 \\u{1b}]0;pwned\\u{7} | S: a\\r\\nb");
        let json = serde_json::to_string(&row).expect("json");
        assert!(
            !json.contains("\\u001b") && json.contains("\\\\u{1b}"),
            "{json}"
        );
    }

    #[test]
    fn csv_quotes_when_needed() {
        assert_eq!(csv_cell("a,b \"c\""), "\"a,b \"\"c\"\"\"");
        assert_eq!(csv_cell("plain"), "plain");
    }

    #[test]
    fn table_counts_and_lists_findings() {
        let row = |verdict| Row {
            target: "127.0.0.1".into(),
            port: 25,
            check: "openrelay".into(),
            verdict,
            reason: "why".into(),
            evidence: "C: x".into(),
            source: "127.0.0.1".into(),
        };
        let mut report = Report::default();
        for v in [Verdict::Open, Verdict::Closed, Verdict::NoAnswer] {
            report.add(row(v));
        }
        assert!(report.open && !report.unknown);
        let t = table(&report);
        assert!(
            t.starts_with(
                "3 probes: 1 open, 0 probably open, 0 inconclusive, 1 closed, 1 no answer, \
                 0 unknown\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("OPEN           127.0.0.1:25  openrelay: why\n    evidence (from 127.0.0.1): C: x\n"),
            "{t}"
        );
        assert_eq!(t.lines().count(), 3, "{t}");
        report.add(row(Verdict::Unknown));
        assert!(report.unknown);
        assert!(table(&report).contains("UNKNOWN        127.0.0.1:25"));
    }
}
