//! The worker pool: runs jobs under one deadline per attempt, with retries, inversion, time
//! windows, a global concurrency limit and an optional per-host limit. The only place that
//! spawns tasks.
//!
//! Slots: an attempt first waits for its host's slot (only when `per_host` is set), then for a
//! global one, so a job queued behind a slow host never holds a slot another host could use.
//! The reported duration counts the attempts themselves, never the wait for a slot.
//! Checks see the same slots (custodian_probes::Limits), so one that fans out to other hosts
//! (`mx`) takes them for its extra connections too. A host's slots exist only while some
//! attempt or check holds them, so a process that runs for months keeps no map of every name
//! it ever checked.
//!
//! The engine reads only its [`EngineConfig`] and tells wall time (time windows) by a
//! [`Clock`], so tests and a scheduler can drive it.

use crate::resolve::{self, Resolver};
#[cfg(test)]
use crate::settings::Settings;
use custodian_core::{judge, Job, JobResult, Outcome, Params, Status, TargetKind};
use custodian_probes::{Ctx, Env, Limits, Probe};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Slack after the attempt's deadline before the worker cuts a probe off itself; probes end at
/// the deadline on their own with a precise reason, this only catches a probe that does not.
const GRACE: Duration = Duration::from_millis(250);

/// What the engine takes from the settings ([`crate::settings::Settings::engine_config`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EngineConfig {
    /// Attempts in flight at once (global slots).
    pub(crate) concurrency: usize,
    /// Attempts in flight against one host; 0 for no limit.
    pub(crate) per_host: usize,
    /// Deadline of one attempt, unless the job sets its own.
    pub(crate) timeout: Duration,
    /// Total attempts per job, unless the job sets its own.
    pub(crate) retries: u32,
    /// Pause between attempts.
    pub(crate) retry_delay: Duration,
    /// Deadline of resolving a target's name.
    pub(crate) resolve_timeout: Duration,
}

/// Wall time as the engine sees it.
pub(crate) trait Clock: Send + Sync {
    /// The local date and time now (a job's `between` window compares its hour).
    fn now(&self) -> chrono::NaiveDateTime;
}

/// The system's local time, the engine's clock outside tests.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::NaiveDateTime {
        chrono::Local::now().naive_local()
    }
}

pub(crate) struct Engine {
    config: EngineConfig,
    /// Tells the hour for time windows.
    clock: Arc<dyn Clock>,
    /// Nameservers and TLS trust, shared by every attempt's context.
    env: Arc<Env>,
    /// The global and per-host slots, shared with every attempt's context.
    slots: Arc<Slots>,
    /// Built once per run or worker, so its cache serves every check of the run.
    resolver: Resolver,
}

impl Engine {
    /// An engine with `settings`' config in the default probe environment (tests; the binary
    /// passes its own environment).
    #[cfg(test)]
    pub(crate) fn new(settings: Settings) -> Arc<Engine> {
        Engine::with_env(settings.engine_config(), Arc::default())
    }

    /// An engine whose probes share `env` (the binary's, built once from its settings), on the
    /// system clock.
    pub(crate) fn with_env(config: EngineConfig, env: Arc<Env>) -> Arc<Engine> {
        let resolver = Resolver::system(config.resolve_timeout);
        Engine::assemble(config, resolver, env, Arc::new(SystemClock))
    }

    /// An engine resolving targets through `resolver` (tests point one at their own server).
    #[cfg(test)]
    pub(crate) fn with_resolver(settings: Settings, resolver: Resolver) -> Arc<Engine> {
        let clock = Arc::new(SystemClock);
        Engine::assemble(settings.engine_config(), resolver, Arc::default(), clock)
    }

    /// An engine telling wall time by `clock`.
    #[cfg(test)]
    pub(crate) fn with_clock(config: EngineConfig, clock: Arc<dyn Clock>) -> Arc<Engine> {
        let resolver = Resolver::system(config.resolve_timeout);
        Engine::assemble(config, resolver, Arc::default(), clock)
    }

    fn assemble(
        config: EngineConfig,
        resolver: Resolver,
        env: Arc<Env>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            env,
            slots: Arc::new(Slots {
                global: Arc::new(Semaphore::new(config.concurrency)),
                concurrency: config.concurrency,
                per_host: config.per_host,
                hosts: Mutex::new(Hosts::default()),
            }),
            resolver,
            clock,
            config,
        })
    }

    /// Runs every job once, concurrently, calling `on_result` as each one finishes (and
    /// waiting for what it returns before taking the next), spread over `threads` threads
    /// (0: one per core; see [`crate::threads`]). Goes through the embedded queue, the same
    /// path as `custodian worker`.
    pub(crate) async fn run_all(
        self: &Arc<Self>,
        threads: usize,
        jobs: Vec<Job>,
        room: Option<Arc<tokio::sync::Semaphore>>,
        on_result: impl FnMut(JobResult) -> Option<crate::alerting::Accepted>,
    ) {
        // The embedded queue has no other consumer, so it may hold every job: the engine's
        // own slots bound what runs. Capped at `concurrency`, jobs waiting for a busy host's
        // slot (per_host) would fill it and keep every other host's jobs from being taken.
        let held = match self.config.per_host {
            0 => self.config.concurrency,
            _ => jobs.len().max(1),
        };
        crate::queue::embedded(Arc::clone(self), held, threads, jobs, room, on_result).await;
    }

    /// Runs one job: time window, then up to `retries` attempts until one passes.
    pub(crate) async fn run_job(&self, job: &Arc<Job>) -> JobResult {
        if let Some(w) = job.window {
            let hour = chrono::Timelike::hour(&self.clock.now()) as u8;
            if !w.active(hour) {
                let why = format!(
                    "outside its time window ({}between {}-{})",
                    if w.except { "except " } else { "" },
                    w.from,
                    w.to
                );
                return JobResult::new(job, Status::Skipped, Some(why), 0, 0);
            }
        }
        let Some(probe) = custodian_probes::find(&job.probe) else {
            let why = format!("could not check: unknown check type `{}`", job.probe);
            return JobResult::new(job, Status::Unknown, Some(why), 0, 0);
        };
        // Parsed once per job (regexes compiled here, never per attempt). A job this worker
        // cannot parse (from a newer planner) is ours to fix, not the target's failure.
        let params = match custodian_probes::prepare(job) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let why = format!("could not check: bad option: {e}");
                return JobResult::new(job, Status::Unknown, Some(why), 0, 0);
            }
        };
        let max = job.retries.unwrap_or(self.config.retries).max(1);
        let timeout = job
            .timeout
            .map(Duration::from_secs)
            .unwrap_or(self.config.timeout);
        let mut attempt = 0;
        let mut spent = Duration::ZERO;
        loop {
            attempt += 1;
            let (status, error, took, cert) = self.attempt(probe, job, &params, timeout).await;
            spent += took;
            if status == Status::Passed || attempt >= max {
                let ms = spent.as_millis() as u64;
                // Secrets read for `${env:..}` references are known to the params, not the job.
                let error = error.map(|e| params.scrub(&e));
                let mut r = JobResult::new(job, status, error, ms, attempt);
                r.certificate_expiry = cert;
                return r;
            }
            let delay = self.config.retry_delay;
            tokio::time::sleep(delay).await;
            spent += delay;
        }
    }

    /// One attempt against every address of the target, under one deadline; also returns
    /// how long it took once it had its slots, and the earliest certificate expiry a TLS
    /// handshake saw.
    async fn attempt(
        &self,
        probe: &Probe,
        job: &Arc<Job>,
        params: &Arc<Params>,
        timeout: Duration,
    ) -> (Status, Option<String>, Duration, Option<i64>) {
        let host = resolve::host_of(job, probe.spec.target);
        // Host slot first: waiting for it must not hold a global slot.
        let _host = match self.slots.host(&host) {
            Some(limit) => Some(HostSlot::new(
                limit.acquire_owned().await.ok(),
                &host,
                &self.slots,
            )),
            None => None,
        };
        // Declared after the host slot, so dropped before it: the host's entry is let go
        // with no global slot of this attempt still held.
        let _global = self.slots.global.acquire().await;
        let began = Instant::now();
        let deadline = began + timeout;
        let run = async {
            let addrs = match probe.spec.target {
                TargetKind::Name => vec![None],
                TargetKind::Host | TargetKind::Url(_) | TargetKind::HostOrUrl(_) => {
                    let limit = self.config.resolve_timeout.min(timeout);
                    match self.resolver.addresses(&host, job.family, limit).await {
                        Ok(ips) => ips.into_iter().map(Some).collect(),
                        Err(outcome) => return (vec![(None, outcome)], None),
                    }
                }
            };
            let checks = addrs.iter().map(|addr| async move {
                let env = Arc::clone(&self.env);
                let cx = Ctx::prepared(env, Arc::clone(job), Arc::clone(params), *addr, deadline)
                    .with_limits(self.slots.clone());
                let outcome = (probe.check)(&cx).await;
                ((*addr, outcome), cx.certificate_expiry())
            });
            let (outcomes, certs): (Vec<_>, Vec<_>) =
                futures::future::join_all(checks).await.into_iter().unzip();
            (outcomes, certs.into_iter().flatten().min())
        };
        let (status, error, cert) = match tokio::time::timeout_at(deadline + GRACE, run).await {
            Ok((outcomes, cert)) => {
                let (status, error) = verdict(&host, job.inverted, &outcomes);
                (status, error, cert)
            }
            Err(_) => (
                Status::Failed,
                Some(format!("timed out after {:.1}s", timeout.as_secs_f64())),
                None,
            ),
        };
        (status, error, began.elapsed(), cert)
    }
}

/// The engine's slots: `concurrency` global ones, and `per_host` for each host when set.
#[derive(Debug)]
struct Slots {
    global: Arc<Semaphore>,
    concurrency: usize,
    per_host: usize,
    hosts: Mutex<Hosts>,
}

/// Each host's semaphore, while someone holds (a clone of) it.
#[derive(Debug, Default)]
struct Hosts {
    map: HashMap<String, Arc<Semaphore>>,
    /// The size at which idle entries are swept next: twice what was left by the last sweep,
    /// so sweeping costs O(1) per lookup and the map stays within twice the hosts in use.
    sweep_at: usize,
}

impl Hosts {
    /// Drops the entries only the map holds: no attempt or check waits for or holds them.
    fn sweep(&mut self) {
        self.map.retain(|_, s| Arc::strong_count(s) > 1);
        self.sweep_at = (self.map.len() * 2).max(64);
    }
}

impl Slots {
    fn hosts(&self) -> MutexGuard<'_, Hosts> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `key`'s slot was given back: forget the host if nobody else holds it, and every idle
    /// host (such as the exchanges an `mx` check took slots of) once nothing is in flight.
    fn release(&self, key: &str) {
        let mut hosts = self.hosts();
        if self.global.available_permits() == self.concurrency {
            hosts.sweep();
        } else if hosts
            .map
            .get(key)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            hosts.map.remove(key);
        }
    }
}

/// A name as the slots key it: names are case-insensitive and may end in a dot, so
/// `Mail.Example.COM.` written as a target and `mail.example.com` found as an MX exchange
/// share one slot.
fn host_key(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// An attempt's slot of its host; given back (and the host forgotten when idle) on drop.
struct HostSlot {
    permit: Option<OwnedSemaphorePermit>,
    key: String,
    slots: Arc<Slots>,
}

impl HostSlot {
    fn new(permit: Option<OwnedSemaphorePermit>, host: &str, slots: &Arc<Slots>) -> Self {
        HostSlot {
            permit,
            key: host_key(host),
            slots: Arc::clone(slots),
        }
    }
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        // The permit holds a clone of the semaphore: let it go before counting holders.
        drop(self.permit.take());
        self.slots.release(&self.key);
    }
}

impl Limits for Slots {
    fn try_global(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.global).try_acquire_owned().ok()
    }

    /// The host's own limit, when `per_host` is set (0: none).
    fn host(&self, host: &str) -> Option<Arc<Semaphore>> {
        let limit = self.per_host;
        if limit == 0 {
            return None;
        }
        let mut hosts = self.hosts();
        // Idle hosts are forgotten so the map cannot grow with every name ever checked.
        if hosts.map.len() >= hosts.sweep_at {
            hosts.sweep();
        }
        Some(Arc::clone(
            hosts
                .map
                .entry(host_key(host))
                .or_insert_with(|| Arc::new(Semaphore::new(limit))),
        ))
    }
}

/// Combines per-address outcomes: the check fails if it fails on any address, else it is
/// unknown if any address could not be judged; the error names that address unless the
/// target was the address itself.
fn verdict(
    host: &str,
    inverted: bool,
    outcomes: &[(Option<IpAddr>, Outcome)],
) -> (Status, Option<String>) {
    let judged: Vec<_> = outcomes
        .iter()
        .map(|(addr, o)| (addr, judge(o, inverted)))
        .collect();
    for want in [Status::Failed, Status::Unknown] {
        if let Some((addr, (status, error))) = judged.iter().find(|(_, (s, _))| *s == want) {
            let error = match (addr, error) {
                (Some(ip), Some(e)) if ip.to_string() != host => Some(format!("{ip}: {e}")),
                (_, e) => e.clone(),
            };
            return (*status, error);
        }
    }
    (Status::Passed, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::fake_dns::FakeDns;
    use crate::resolve::tests::test_resolver;
    use std::net::Ipv4Addr;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)))
    }

    #[test]
    fn any_failing_address_fails_and_is_named() {
        let outs = [
            (ip(1), Outcome::up()),
            (ip(2), Outcome::down("connection refused")),
        ];
        assert_eq!(
            verdict("web1", false, &outs),
            (Status::Failed, Some("192.0.2.2: connection refused".into()))
        );
        assert_eq!(verdict("web1", false, &outs[..1]), (Status::Passed, None));
        let outs = [(ip(1), Outcome::down("refused"))];
        assert_eq!(
            verdict("192.0.2.1", false, &outs),
            (Status::Failed, Some("refused".into()))
        );
    }

    #[test]
    fn inverted_passes_only_when_every_address_is_down() {
        let outs = [(ip(1), Outcome::down("refused")), (ip(2), Outcome::up())];
        let (status, err) = verdict("web1", true, &outs);
        assert_eq!(status, Status::Failed);
        assert!(err
            .unwrap_or_default()
            .starts_with("192.0.2.2: service is running"));
        assert_eq!(verdict("web1", true, &outs[..1]), (Status::Passed, None));
    }

    fn settings(retries: u32, timeout: f64) -> Settings {
        Settings {
            retries,
            timeout,
            ..Settings::default()
        }
    }

    #[tokio::test]
    async fn retries_count_total_attempts() {
        let gone = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = gone.local_addr().expect("addr").port();
        drop(gone);
        let engine = Engine::new(settings(3, 2.0));
        let r = engine
            .run_job(&Arc::new(Job::new("tcp", "127.0.0.1", Some(port))))
            .await;
        assert_eq!((r.status, r.attempts), (Status::Failed, 3));
        assert_eq!(
            r.error,
            Some(format!("connect to port {port}: connection refused"))
        );
    }

    #[tokio::test]
    async fn a_hung_target_does_not_delay_others() {
        // One target accepts and never speaks; the other answers at once.
        let hung = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hung_port = hung.local_addr().expect("addr").port();
        let fine = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fine_port = fine.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = hung.accept().await {
                held.push(s);
            }
        });
        tokio::spawn(async move {
            while let Ok((mut s, _)) = fine.accept().await {
                let _ = s.write_all(b"SSH-2.0-x\r\n").await;
            }
        });
        let mut slow = Job::new("tcp", "127.0.0.1", Some(hung_port));
        slow.options.insert("banner".into(), "SSH".into());
        let mut quick = Job::new("tcp", "127.0.0.1", Some(fine_port));
        quick.options.insert("banner".into(), "SSH".into());
        let engine = Engine::new(Settings {
            concurrency: 1000,
            per_host: 1000,
            ..settings(1, 1.0)
        });
        let mut order = Vec::new();
        let t = Instant::now();
        engine
            .run_all(1, vec![slow, quick], None, |r| {
                order.push((r.status, t.elapsed()));
                None
            })
            .await;
        assert_eq!(order[0].0, Status::Passed);
        assert!(
            order[0].1 < Duration::from_millis(500),
            "quick job waited {:?}",
            order[0].1
        );
        assert_eq!(order[1].0, Status::Failed);
    }

    /// A listener on `ip` that greets with an SSH banner, or with `hung` accepts and never
    /// speaks (connections held open); returns its port.
    async fn serve(ip: &str, hung: bool) -> u16 {
        let l = TcpListener::bind((ip, 0)).await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = l.accept().await {
                if !hung {
                    let _ = s.write_all(b"SSH-2.0-x\r\n").await;
                }
                held.push(s);
            }
        });
        port
    }

    fn banner_job(target: &str, port: u16) -> Job {
        let mut job = Job::new("tcp", target, Some(port));
        job.options.insert("banner".into(), "SSH".into());
        job
    }

    #[tokio::test]
    async fn a_host_limit_never_makes_another_host_wait() {
        // Eight checks of a hung host, one at a time (per_host 1), then one of a fine host.
        let hung = serve("127.0.0.1", true).await;
        let fine = serve("127.0.0.2", false).await;
        let mut jobs: Vec<Job> = (0..8).map(|_| banner_job("127.0.0.1", hung)).collect();
        jobs.push(banner_job("127.0.0.2", fine));
        let engine = Engine::new(Settings {
            per_host: 1,
            concurrency: 4,
            ..settings(1, 0.4)
        });
        let t = Instant::now();
        let mut done = Vec::new();
        engine
            .run_all(1, jobs, None, |r| {
                done.push((r, t.elapsed()));
                None
            })
            .await;
        let (quick, at) = done
            .iter()
            .find(|(r, _)| r.target == "127.0.0.2")
            .expect("quick result");
        assert_eq!(quick.status, Status::Passed);
        assert!(
            *at < Duration::from_secs(1),
            "the quick check waited {at:?}"
        );
        let hung: Vec<_> = done
            .iter()
            .filter(|(r, _)| r.target == "127.0.0.1")
            .collect();
        assert_eq!(hung.len(), 8);
        // They did queue behind each other...
        let last = hung.iter().map(|(_, at)| *at).max().unwrap_or_default();
        assert!(
            last >= Duration::from_millis(7 * 400),
            "no queueing: {last:?}"
        );
        // ...yet each reports only its own attempt, not its time in the queue.
        for (r, _) in &hung {
            assert_eq!(r.status, Status::Failed, "{:?}", r.error);
            assert!(r.duration_ms < 1000, "{} ms reported", r.duration_ms);
        }
    }

    #[tokio::test]
    async fn a_stalled_nameserver_costs_only_its_checks_and_they_recover() {
        let dns = FakeDns::start(
            "127.0.0.1",
            &[("up.test", "127.0.0.1".parse().expect("ip"))],
        )
        .await;
        let port = serve("127.0.0.1", false).await;
        let limit = Duration::from_secs(1);
        let engine = Engine::with_resolver(
            Settings {
                resolve_timeout: limit.as_secs_f64(),
                ..settings(1, 3.0)
            },
            test_resolver(dns.addr, "", limit),
        );
        let jobs = || {
            let mut jobs: Vec<Job> = (0..4).map(|_| banner_job("up.test", port)).collect();
            let mut must_not = banner_job("up.test", port);
            must_not.inverted = true;
            must_not.otherwise = Some("must not run".into());
            jobs.push(must_not);
            jobs.push(banner_job("127.0.0.1", port));
            jobs
        };
        dns.stall(true);
        let mut done = Vec::new();
        engine
            .run_all(1, jobs(), None, |r| {
                done.push(r);
                None
            })
            .await;
        // The literal needs no lookup and finishes first; the named ones, inverted or not,
        // are unknown (our resolver), each after its own resolve deadline.
        assert_eq!(done[0].target, "127.0.0.1");
        assert_eq!(done[0].status, Status::Passed);
        assert_eq!(done.len(), 6);
        for r in &done[1..] {
            assert_eq!(r.status, Status::Unknown);
            let want = "could not check: resolving up.test timed out after 1.0s";
            assert_eq!(r.error.as_deref(), Some(want));
            assert!(r.duration_ms < 2000, "{} ms", r.duration_ms);
        }
        // Once it answers again, the same engine (and its cache) resolves at once.
        dns.stall(false);
        let t = Instant::now();
        let mut after = Vec::new();
        engine
            .run_all(1, jobs(), None, |r| {
                after.push(r);
                None
            })
            .await;
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(after.len(), 6);
        for r in &after {
            let want = match r.otherwise.as_deref() {
                Some("must not run") => Status::Failed,
                _ => Status::Passed,
            };
            assert_eq!(r.status, want, "{:?}", r.error);
        }
    }

    /// What a check sees of the engine's slots: only global slots free now, and the same
    /// per-host semaphore an attempt against that host waits for.
    #[tokio::test]
    async fn checks_see_the_engines_own_slots() {
        let engine = Engine::new(Settings {
            concurrency: 2,
            per_host: 1,
            ..settings(1, 1.0)
        });
        let held = engine.slots.global.acquire().await.expect("slot");
        let extra = engine.slots.try_global().expect("one free");
        assert!(engine.slots.try_global().is_none(), "over the global limit");
        drop((held, extra));
        assert!(engine.slots.try_global().is_some());
        let a = engine.slots.host("mx1.test").expect("per_host set");
        let b = engine.slots.host("mx1.test").expect("per_host set");
        assert!(Arc::ptr_eq(&a, &b) && a.available_permits() == 1);
        let c = engine.slots.host("MX1.Test.").expect("per_host set");
        assert!(Arc::ptr_eq(&a, &c), "one slot per name, whatever its case");
        let free = Engine::new(settings(1, 1.0));
        assert!(free.slots.host("mx1.test").is_none());
    }

    /// A clock stopped at `hour` o'clock on a Monday.
    struct Stopped(u32);

    impl Clock for Stopped {
        fn now(&self) -> chrono::NaiveDateTime {
            chrono::NaiveDate::from_ymd_opt(2026, 1, 5)
                .and_then(|d| d.and_hms_opt(self.0, 30, 0))
                .expect("a valid time")
        }
    }

    #[tokio::test]
    async fn a_between_window_follows_the_engines_clock() {
        // Nothing listens on the port: a job that runs fails at once (retries 1). The window
        // holds its last hour: 18:30 is inside `between 8-18`.
        let gone = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = gone.local_addr().expect("addr").port();
        drop(gone);
        let job = |except| {
            let mut job = Job::new("tcp", "127.0.0.1", Some(port));
            job.window = Some(custodian_core::dsl::Window {
                from: 8,
                to: 18,
                except,
            });
            Arc::new(job)
        };
        let config = settings(1, 1.0).engine_config();
        for (hour, inside) in [(7, false), (8, true), (12, true), (18, true), (19, false)] {
            let engine = Engine::with_clock(config, Arc::new(Stopped(hour)));
            let during = engine.run_job(&job(false)).await;
            let outside = engine.run_job(&job(true)).await;
            let (ran, skipped) = match inside {
                true => (&during, &outside),
                false => (&outside, &during),
            };
            assert_eq!(ran.status, Status::Failed, "{hour}h: {:?}", ran.error);
            assert_eq!((skipped.status, skipped.attempts), (Status::Skipped, 0));
        }
        let r = Engine::with_clock(config, Arc::new(Stopped(20)))
            .run_job(&job(false))
            .await;
        assert_eq!(
            r.error.as_deref(),
            Some("outside its time window (between 8-18)")
        );
    }

    #[tokio::test]
    async fn per_host_slots_are_forgotten_once_the_checks_finish() {
        let port = serve("127.0.0.1", false).await;
        let hung = serve("127.0.0.2", true).await;
        let mut jobs: Vec<Job> = (0..5).map(|_| banner_job("127.0.0.1", port)).collect();
        jobs.extend((0..3).map(|_| banner_job("127.0.0.2", hung)));
        let engine = Engine::new(Settings {
            per_host: 1,
            concurrency: 4,
            ..settings(1, 0.3)
        });
        let mut seen = Vec::new();
        engine
            .run_all(1, jobs, None, |_| {
                // Mid-run only hosts in use are kept.
                seen.push(engine.slots.hosts().map.len());
                None
            })
            .await;
        assert_eq!(seen.len(), 8);
        assert!(seen.iter().all(|&n| n <= 2), "{seen:?}");
        assert!(
            engine.slots.hosts().map.is_empty(),
            "a host outlived its checks"
        );
        // A slot a check took for itself (an MX exchange) goes at the next sweep.
        drop(engine.slots.host("mx1.test"));
        assert_eq!(engine.slots.hosts().map.len(), 1);
        engine.slots.hosts().sweep();
        assert!(engine.slots.hosts().map.is_empty());
    }

    #[tokio::test]
    async fn window_outside_now_is_skipped() {
        let hour = chrono::Timelike::hour(&chrono::Local::now()) as u8;
        let mut job = Job::new("tcp", "127.0.0.1", Some(9));
        job.window = Some(custodian_core::dsl::Window {
            from: hour,
            to: hour,
            except: true,
        });
        let r = Engine::new(settings(1, 1.0)).run_job(&Arc::new(job)).await;
        assert_eq!((r.status, r.attempts), (Status::Skipped, 0));
    }
}
