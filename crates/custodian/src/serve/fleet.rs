//! Checks from many locations (`from 3 locations`, `from lon1 and ams1`, `with quorum 2`):
//! which locations have live workers (their heartbeats), where each round of a check goes, and
//! the verdict the locations' answers reach.

use crate::queue::{Beat, BEAT_EVERY};
use custodian_core::{Job, JobResult, Locations, Status};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A location is live while one of its workers beat within this many seconds.
const LIVE_FOR: u64 = 3 * BEAT_EVERY.as_secs();
/// A worker not heard from for this long is forgotten (it stopped or was renamed).
const FORGET_WORKER: u64 = 3600;
/// A location no test names and no worker serves is forgotten after this long.
const FORGET_LOCATION: u64 = 86_400;

/// What one location answered in the current round of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Answer {
    pub(crate) location: String,
    pub(crate) status: Status,
    pub(crate) reason: Option<String>,
    pub(crate) duration_ms: u64,
    pub(crate) worker: String,
    /// Unix seconds when it arrived.
    pub(crate) at: u64,
}

/// A location as the overview shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PlaceView {
    pub(crate) name: String,
    /// Workers heard from in the last hour.
    pub(crate) workers: Vec<String>,
    /// Unix seconds of the last heartbeat; `None` if none was ever heard.
    pub(crate) last_beat: Option<u64>,
    /// Time its last answer spent waiting on the broker (arrival − enqueue − run time).
    pub(crate) lag_ms: Option<u64>,
    pub(crate) live: bool,
    /// Silent for longer than the settings allow: alerted.
    pub(crate) silent: bool,
}

#[derive(Debug, Default)]
struct Place {
    workers: BTreeMap<String, u64>,
    last_beat: Option<u64>,
    lag_ms: Option<u64>,
    /// A loaded test names it (`from lon1`): it is expected, heard from or not.
    named: bool,
    silent: bool,
}

/// The locations serve knows: named by the tests or announced by a worker.
#[derive(Debug)]
pub(crate) struct Fleet {
    places: BTreeMap<String, Place>,
    /// When serve started (unix seconds): a named location never heard from is silent only
    /// once it had the time to beat.
    started: u64,
}

impl Fleet {
    pub(crate) fn new(started: u64) -> Self {
        Fleet {
            places: BTreeMap::new(),
            started,
        }
    }

    pub(crate) fn beat(&mut self, b: &Beat) {
        let place = self.places.entry(b.location.clone()).or_default();
        let at = place.workers.entry(b.worker.clone()).or_insert(b.at);
        *at = (*at).max(b.at);
        place.last_beat = place.last_beat.max(Some(b.at));
    }

    /// The locations the loaded tests name; others lose their `named` mark.
    pub(crate) fn name(&mut self, jobs: &[Arc<Job>]) {
        let named: BTreeSet<&str> = jobs
            .iter()
            .filter_map(|j| match &j.from {
                Some(Locations::Named(n)) => Some(n.iter().map(String::as_str)),
                _ => None,
            })
            .flatten()
            .collect();
        for p in self.places.values_mut() {
            p.named = false;
        }
        for n in named {
            self.places.entry(n.to_string()).or_default().named = true;
        }
    }

    /// The time an answer from `location` waited on the broker.
    pub(crate) fn lag(&mut self, location: &str, lag_ms: u64) {
        if let Some(p) = self.places.get_mut(location) {
            p.lag_ms = Some(lag_ms);
        }
    }

    fn live(&self, name: &str, now: u64) -> bool {
        self.places
            .get(name)
            .and_then(|p| p.last_beat)
            .is_some_and(|t| t + LIVE_FOR >= now)
    }

    /// Where this round of `job` goes: the named locations, or `N` live ones chosen by
    /// rendezvous hashing on the check's id, so a check keeps its locations while they live
    /// and the checks spread evenly over them. Fewer than `N` when fewer are live: the round
    /// then ends unknown unless the answers decide it anyway.
    pub(crate) fn choose(&self, job: &Job, id: &str, now: u64) -> Vec<String> {
        match &job.from {
            Some(Locations::Named(names)) => names.clone(),
            Some(Locations::Any(n)) => {
                let mut live: Vec<(u64, &String)> = self
                    .places
                    .keys()
                    .filter(|name| self.live(name, now))
                    .map(|name| (rendezvous(id, name), name))
                    .collect();
                live.sort();
                live.into_iter()
                    .take(*n as usize)
                    .map(|(_, name)| name.clone())
                    .collect()
            }
            None => vec![crate::queue::DEFAULT_LOCATION.to_string()],
        }
    }

    /// Locations that fell silent (`true`) or were heard again (`false`) since the last call:
    /// silent once no worker of theirs beat for `silent_after` seconds. Each change is
    /// reported once. Also forgets workers and locations long gone.
    pub(crate) fn changes(&mut self, now: u64, silent_after: u64) -> Vec<(String, bool)> {
        let mut changed = Vec::new();
        for (name, p) in &mut self.places {
            p.workers.retain(|_, at| *at + FORGET_WORKER >= now);
            let heard = p.last_beat.unwrap_or(self.started);
            let silent = heard + silent_after < now;
            if silent != p.silent {
                p.silent = silent;
                changed.push((name.clone(), silent));
            }
        }
        // A location no test names and no worker served for a day is no longer expected:
        // forgotten, and its silence alert cleared.
        self.places.retain(|name, p| {
            let keep = p.named || p.last_beat.unwrap_or(0) + FORGET_LOCATION >= now;
            if !keep && p.silent {
                changed.push((name.clone(), false));
            }
            keep
        });
        changed
    }

    pub(crate) fn overview(&self, now: u64) -> Vec<PlaceView> {
        self.places
            .iter()
            .map(|(name, p)| PlaceView {
                name: name.clone(),
                workers: p.workers.keys().cloned().collect(),
                last_beat: p.last_beat,
                lag_ms: p.lag_ms,
                live: self.live(name, now),
                silent: p.silent,
            })
            .collect()
    }
}

/// A stable pseudo-random rank of `location` for check `id` (FNV-1a: cheap, and the same in
/// every serve process, unlike the std hasher).
fn rendezvous(id: &str, location: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain([0]).chain(location.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One check's current round: where it went, until when answers count, what came back.
#[derive(Debug)]
struct Round {
    job: Arc<Job>,
    /// Unix milliseconds when it was enqueued (for each location's lag).
    sent_ms: u64,
    /// Unix seconds after which missing answers count as missing.
    deadline: u64,
    chosen: Vec<String>,
    answers: BTreeMap<String, Answer>,
}

/// The open rounds of multi-location checks, one per check at most.
#[derive(Debug, Default)]
pub(crate) struct Rounds {
    open: HashMap<String, Round>,
}

/// What an answer did.
pub(crate) struct Counted {
    /// The time the answer waited on the broker, for [`Fleet::lag`].
    pub(crate) lag_ms: u64,
    /// The round's verdict, when this was its last missing answer.
    pub(crate) verdict: Option<JobResult>,
}

impl Rounds {
    /// Opens a round of `job`; a round of it still open is decided first (with what it has).
    pub(crate) fn start(
        &mut self,
        id: String,
        job: Arc<Job>,
        chosen: Vec<String>,
        sent_ms: u64,
        deadline: u64,
    ) -> Option<JobResult> {
        let round = Round {
            job,
            sent_ms,
            deadline,
            chosen,
            answers: BTreeMap::new(),
        };
        self.open.insert(id, round).map(|r| decide(&r))
    }

    /// Whether `id` is a multi-location check with a round open.
    pub(crate) fn tracks(&self, id: &str) -> bool {
        self.open.contains_key(id)
    }

    /// Counts `answer` in its check's round, once per location and only from a location the
    /// round went to; `None` when it does not count (late, twice, or from elsewhere).
    pub(crate) fn answer(&mut self, id: &str, answer: Answer, now_ms: u64) -> Option<Counted> {
        let round = self.open.get_mut(id)?;
        if !round.chosen.contains(&answer.location) || round.answers.contains_key(&answer.location)
        {
            return None;
        }
        let lag_ms = now_ms
            .saturating_sub(round.sent_ms)
            .saturating_sub(answer.duration_ms);
        round.answers.insert(answer.location.clone(), answer);
        let verdict = (round.answers.len() == round.chosen.len())
            .then(|| self.open.remove(id).map(|r| decide(&r)))
            .flatten();
        Some(Counted { lag_ms, verdict })
    }

    /// Decides every round whose deadline passed, missing answers counted as missing.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<JobResult> {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        due.iter()
            .filter_map(|id| self.open.remove(id))
            .map(|r| decide(&r))
            .collect()
    }

    /// Forgets rounds of checks no longer loaded.
    pub(crate) fn retain(&mut self, loaded: &BTreeSet<String>) {
        self.open.retain(|id, _| loaded.contains(id));
    }
}

/// The verdict of a round, as one result of the check:
/// - down (failed) when at least the quorum of locations saw it fail;
/// - unknown when the missing answers (none, too late, or unknown) could still make it down;
/// - partial when some failed but the quorum cannot be reached;
/// - up otherwise (skipped when every answer was skipped).
///
/// The reason names each location's answer.
fn decide(round: &Round) -> JobResult {
    let job = &round.job;
    let wanted = job.from.as_ref().map_or(1, Locations::count);
    let quorum = job.quorum_needed();
    let count = |s: Status| round.answers.values().filter(|a| a.status == s).count() as u32;
    let (failed, passed, skipped) = (
        count(Status::Failed),
        count(Status::Passed),
        count(Status::Skipped),
    );
    let missing = wanted.saturating_sub(failed + passed + skipped);
    let status = if failed >= quorum {
        Status::Failed
    } else if failed + missing >= quorum {
        Status::Unknown
    } else if failed > 0 {
        Status::Partial
    } else if passed == 0 && skipped > 0 {
        Status::Skipped
    } else {
        Status::Passed
    };
    let mut parts = Vec::new();
    for name in &round.chosen {
        parts.push(match round.answers.get(name) {
            Some(a) => match (&a.status, &a.reason) {
                (Status::Passed, _) => format!("{name}: ok"),
                (s, Some(why)) => format!("{name}: {} ({why})", crate::report::label(*s)),
                (s, None) => format!("{name}: {}", crate::report::label(*s)),
            },
            None => format!("{name}: no answer"),
        });
    }
    if (round.chosen.len() as u32) < wanted {
        parts.push(format!("{} of {wanted} locations live", round.chosen.len()));
    }
    let head = match status {
        Status::Failed => format!("down from {failed} of {wanted} locations (quorum {quorum})"),
        Status::Unknown => format!(
            "not enough locations answered ({} of {wanted}; quorum {quorum})",
            failed + passed + skipped
        ),
        Status::Partial => {
            format!("failing from {failed} of {wanted} locations, short of the quorum {quorum}")
        }
        _ => format!("up from {passed} of {wanted} locations"),
    };
    let reason = format!("{head}: {}", parts.join("; "));
    let duration = round
        .answers
        .values()
        .map(|a| a.duration_ms)
        .max()
        .unwrap_or(0);
    let error = (status != Status::Passed).then_some(reason);
    JobResult::new(job, status, error, duration, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(from: Locations, quorum: Option<u32>) -> Arc<Job> {
        let mut j = Job::new("tcp", "127.0.0.1", Some(22));
        j.from = Some(from);
        j.quorum = quorum;
        Arc::new(j)
    }

    fn named(n: &[&str]) -> Locations {
        Locations::Named(n.iter().map(|s| s.to_string()).collect())
    }

    fn answer(loc: &str, status: Status) -> Answer {
        Answer {
            location: loc.into(),
            status,
            reason: (status != Status::Passed).then(|| "connection refused".into()),
            duration_ms: 5,
            worker: format!("w-{loc}"),
            at: 0,
        }
    }

    /// Runs one round of `job` to its end with `answers` (others missing).
    fn verdict(job: Arc<Job>, answers: &[(&str, Status)]) -> JobResult {
        let mut rounds = Rounds::default();
        let chosen = match &job.from {
            Some(Locations::Named(n)) => n.clone(),
            _ => answers.iter().map(|(l, _)| l.to_string()).collect(),
        };
        let id = job.id();
        assert!(rounds.start(id.clone(), job, chosen, 0, 100).is_none());
        for (loc, s) in answers {
            let counted = rounds.answer(&id, answer(loc, *s), 10).expect("counted");
            if let Some(v) = counted.verdict {
                return v;
            }
        }
        rounds.expire(100).pop().expect("expired")
    }

    const THREE: &[&str] = &["ams1", "lon1", "nyc1"];
    use Status::{Failed as F, Passed as P, Unknown as U};

    #[test]
    fn quorum_two_of_three() {
        let j = || job(named(THREE), Some(2));
        let v = verdict(j(), &[("ams1", F), ("lon1", P), ("nyc1", P)]);
        assert_eq!(v.status, Status::Partial);
        let reason = v.error.expect("reason");
        assert!(
            reason.contains("ams1: FAIL (connection refused)"),
            "{reason}"
        );
        assert!(reason.contains("lon1: ok"), "{reason}");
        assert_eq!(
            verdict(j(), &[("ams1", F), ("lon1", F), ("nyc1", P)]).status,
            Status::Failed
        );
        let up = verdict(j(), &[("ams1", P), ("lon1", P), ("nyc1", P)]);
        assert_eq!((up.status, up.error), (Status::Passed, None));
        // One failed, one missing: the missing one could make it down.
        let v = verdict(j(), &[("ams1", F), ("lon1", P)]);
        assert_eq!(v.status, Status::Unknown);
        assert!(v.error.expect("reason").contains("nyc1: no answer"));
        // Two passed, one missing: down is out of reach.
        assert_eq!(verdict(j(), &[("ams1", P), ("lon1", P)]).status, P);
        // An unknown answer (the worker's own error) is no answer.
        assert_eq!(
            verdict(j(), &[("ams1", F), ("lon1", U), ("nyc1", P)]).status,
            U
        );
    }

    #[test]
    fn by_default_every_location_must_fail() {
        let j = || job(named(THREE), None);
        assert_eq!(
            verdict(j(), &[("ams1", F), ("lon1", F), ("nyc1", P)]).status,
            Status::Partial
        );
        assert_eq!(
            verdict(j(), &[("ams1", F), ("lon1", F), ("nyc1", F)]).status,
            F
        );
        assert_eq!(verdict(j(), &[]).status, U);
    }

    #[test]
    fn an_answer_counts_once_and_only_from_a_chosen_location() {
        let j = job(named(&["ams1", "lon1"]), Some(1));
        let id = j.id();
        let mut rounds = Rounds::default();
        rounds.start(
            id.clone(),
            j,
            vec!["ams1".into(), "lon1".into()],
            1_000,
            100,
        );
        assert!(rounds.answer(&id, answer("sto1", F), 2_000).is_none());
        let first = rounds
            .answer(&id, answer("ams1", P), 2_000)
            .expect("counted");
        assert_eq!((first.lag_ms, first.verdict.is_none()), (995, true));
        assert!(rounds.answer(&id, answer("ams1", F), 2_000).is_none());
        let last = rounds
            .answer(&id, answer("lon1", F), 2_000)
            .expect("counted");
        assert_eq!(last.verdict.map(|v| v.status), Some(F));
        // The round is closed: a late twin counts for nothing.
        assert!(rounds.answer(&id, answer("lon1", F), 3_000).is_none());
        assert!(!rounds.tracks(&id));
    }

    #[test]
    fn any_n_picks_live_locations_stably() {
        let mut fleet = Fleet::new(0);
        for (w, loc) in [("a", "ams1"), ("b", "lon1"), ("c", "nyc1"), ("d", "sto1")] {
            fleet.beat(&Beat {
                worker: w.into(),
                location: loc.into(),
                at: 100,
            });
        }
        let j = job(Locations::Any(2), None);
        let first = fleet.choose(&j, "check-1", 101);
        assert_eq!(first.len(), 2);
        assert_eq!(fleet.choose(&j, "check-1", 102), first);
        // Different checks spread over the locations.
        let all: BTreeSet<String> = (0..40)
            .flat_map(|i| fleet.choose(&j, &format!("check-{i}"), 101))
            .collect();
        assert_eq!(all.len(), 4);
        // Only live ones: long after the beats, none.
        assert!(fleet.choose(&j, "check-1", 100 + LIVE_FOR + 1).is_empty());
    }

    #[test]
    fn a_location_falls_silent_once_and_recovers_once() {
        let mut fleet = Fleet::new(0);
        fleet.name(&[job(named(&["ams1", "lon1"]), None)]);
        let beat = |fleet: &mut Fleet, at| {
            fleet.beat(&Beat {
                worker: "w1".into(),
                location: "lon1".into(),
                at,
            })
        };
        beat(&mut fleet, 5);
        // ams1 was never heard from: silent once the grace from start-up is over.
        assert!(fleet.changes(10, 30).is_empty());
        assert_eq!(fleet.changes(31, 30), vec![("ams1".to_string(), true)]);
        assert!(fleet.changes(32, 30).is_empty());
        assert_eq!(fleet.changes(36, 30), vec![("lon1".to_string(), true)]);
        beat(&mut fleet, 40);
        assert_eq!(fleet.changes(41, 30), vec![("lon1".to_string(), false)]);
        let view = fleet.overview(41);
        assert_eq!(view.len(), 2);
        assert!(view[0].silent && !view[1].silent && view[1].live);
        assert_eq!(view[1].workers, ["w1"]);
    }

    #[test]
    fn gone_workers_and_unnamed_locations_are_forgotten() {
        let mut fleet = Fleet::new(0);
        fleet.beat(&Beat {
            worker: "old".into(),
            location: "tmp1".into(),
            at: 10,
        });
        assert!(fleet.changes(20, 30).is_empty());
        assert_eq!(fleet.changes(50, 30), vec![("tmp1".to_string(), true)]);
        assert_eq!(fleet.overview(50)[0].workers, ["old"]);
        // After an hour the worker is forgotten; after a day the location, its alert cleared.
        assert!(fleet.changes(10 + FORGET_WORKER + 1, 30).is_empty());
        assert!(fleet.overview(10 + FORGET_WORKER + 1)[0].workers.is_empty());
        let later = 10 + FORGET_LOCATION + 1;
        assert_eq!(fleet.changes(later, 30), vec![("tmp1".to_string(), false)]);
        assert!(fleet.overview(later).is_empty());
    }
}
