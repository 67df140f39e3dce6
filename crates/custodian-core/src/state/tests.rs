//! Table tests of the state machine: each row is a policy, a timed series of results and the
//! notices it must produce.

use super::*;
use crate::{Job, JobResult, Status};

/// `F` failed, `P` passed, `S` skipped.
fn result(c: char) -> JobResult {
    let status = match c {
        'F' => Status::Failed,
        'P' => Status::Passed,
        _ => Status::Skipped,
    };
    let error = (status == Status::Failed).then(|| "connection refused".to_string());
    JobResult::new(&Job::new("tcp", "127.0.0.1", Some(9)), status, error, 3, 1)
}

/// Feeds `series` (one result every `every` seconds, from t=0) and returns `(time, kind)`.
fn run(policy: Policy, every: u64, series: &str) -> Vec<(u64, EventKind)> {
    let mut state = CheckState::default();
    series
        .chars()
        .filter(|c| !c.is_whitespace())
        .enumerate()
        .filter_map(|(i, c)| {
            let now = i as u64 * every;
            step(&mut state, &policy, &result(c), now).map(|e| (now, e.kind))
        })
        .collect()
}

fn policy(fail: u32, pass: u32, renotify: u64, flips: u32, window: u64) -> Policy {
    Policy {
        fail_threshold: fail,
        pass_threshold: pass,
        renotify,
        flap_flips: flips,
        flap_window: window,
        unknown_threshold: 3,
    }
}

use EventKind::{Clear, Flapping, Raise, StillFailing};

/// Name, policy, seconds between results, results, expected notices.
type Row = (
    &'static str,
    Policy,
    u64,
    &'static str,
    &'static [(u64, EventKind)],
);

#[test]
fn transitions_thresholds_and_renotification() {
    #[rustfmt::skip]
    let table: &[Row] = &[
        ("passing is silent", policy(1, 1, 0, 0, 60), 60, "PPPP", &[]),
        ("one raise, one clear", policy(1, 1, 0, 0, 60), 60, "PFFFP", &[(60, Raise), (240, Clear)]),
        ("first result failing raises", policy(1, 1, 0, 0, 60), 60, "F", &[(0, Raise)]),
        ("fail threshold 3", policy(3, 1, 0, 0, 60), 60, "PFFPFFFP", &[(360, Raise), (420, Clear)]),
        ("pass threshold 2", policy(1, 2, 0, 0, 60), 60, "FPFPPP", &[(0, Raise), (240, Clear)]),
        ("skips change nothing", policy(2, 1, 0, 0, 60), 60, "FSF SP", &[(120, Raise), (240, Clear)]),
        ("renotify every 5 min", policy(1, 1, 300, 0, 60), 60, "FFFFFFFFFFFP",
            &[(0, Raise), (300, StillFailing), (600, StillFailing), (660, Clear)]),
        ("renotify off", policy(1, 1, 0, 0, 60), 60, "FFFFFFFFFFFP", &[(0, Raise), (660, Clear)]),
        ("flapping once, quiet, settles", policy(1, 1, 0, 4, 600), 60, "PFPFP FPFP PPPPPPPPPPP",
            &[(60, Raise), (120, Clear), (180, Raise), (240, Flapping), (1080, Clear)]),
        ("flapping settles failing", policy(1, 1, 0, 3, 300), 60, "FPFP FFFFFF",
            &[(0, Raise), (60, Clear), (120, Raise), (180, Flapping), (540, Raise)]),
        ("slow flips are no flapping", policy(1, 1, 0, 3, 300), 200, "FPFPFP",
            &[(0, Raise), (200, Clear), (400, Raise), (600, Clear), (800, Raise), (1000, Clear)]),
    ];
    for (name, policy, every, series, want) in table {
        assert_eq!(run(*policy, *every, series), *want, "{name}");
    }
}

#[test]
fn events_carry_the_raise_time_and_duration() {
    let p = Policy::default();
    let mut state = CheckState::default();
    let raise = step(&mut state, &p, &result('F'), 100).expect("raise");
    assert_eq!((raise.kind, raise.raised_at), (Raise, Some(100)));
    assert_eq!(raise.result.error.as_deref(), Some("connection refused"));
    assert!(step(&mut state, &p, &result('F'), 200).is_none());
    let clear = step(&mut state, &p, &result('P'), 400).expect("clear");
    assert_eq!((clear.kind, clear.failing_for()), (Clear, Some(300)));
    assert_eq!(state.raised_at, None);
    assert_eq!(state.shown(), Health::Passing);
}

#[test]
fn state_survives_a_restart_between_runs() {
    // `custodian run` from cron: the state is saved as JSON between invocations.
    let p = policy(2, 1, 0, 0, 60);
    let mut events = Vec::new();
    let mut saved = serde_json::to_string(&CheckState::default()).expect("json");
    for (i, c) in "FFFFP".chars().enumerate() {
        let mut state: CheckState = serde_json::from_str(&saved).expect("state");
        events.extend(step(&mut state, &p, &result(c), i as u64 * 60).map(|e| e.kind));
        saved = serde_json::to_string(&state).expect("json");
    }
    assert_eq!(events, [Raise, Clear]);
}

#[test]
fn flapping_is_shown_and_policies_are_validated() {
    let p = policy(1, 1, 0, 2, 600);
    let mut state = CheckState::default();
    for (t, c) in [(0, 'P'), (1, 'F'), (2, 'P')] {
        step(&mut state, &p, &result(c), t);
    }
    assert_eq!(state.shown(), Health::Flapping);
    assert!(policy(0, 1, 0, 0, 0).validate().is_err());
    assert!(policy(1, 1, 0, 3, 0).validate().is_err());
    assert!(Policy::default().validate().is_ok());
}

/// Unknown results neither raise nor clear nor break a run of failures; the third in a row
/// gets one "cannot check" notice.
#[test]
fn unknown_results_only_notice_cannot_check() {
    let p = policy(2, 1, 0, 0, 60);
    let mut st = CheckState::default();
    let mut kinds = Vec::new();
    for (i, c) in "FUFUUUUPU".chars().enumerate() {
        let status = match c {
            'F' => Status::Failed,
            'P' => Status::Passed,
            _ => Status::Unknown,
        };
        let r = crate::JobResult::new(&crate::Job::new("ssh", "h", Some(22)), status, None, 1, 1);
        if let Some(e) = step(&mut st, &p, &r, i as u64 * 60) {
            kinds.push((i, e.kind));
        }
    }
    // F U F: two failures (the unknown between them neither counts nor resets) raise at 2;
    // U U U from 3: one notice at the third; P clears; a lone U after it is quiet.
    assert_eq!(
        kinds,
        vec![(2, Raise), (5, EventKind::CannotCheck), (7, Clear)]
    );
}
