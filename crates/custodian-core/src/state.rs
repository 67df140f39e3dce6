//! The per-check alert state machine: turns a stream of results into raise, still-failing,
//! clear and flapping events. Pure: time is passed in (unix seconds), storage is the caller's.
//!
//! Rules, in order, for each non-skipped result:
//! - consecutive failures (passes) are counted; `fail_threshold` failures flip a check that is
//!   not failing to failing, `pass_threshold` passes flip one that is not passing to passing
//!   (a new check starts `Unknown`; its first flip to passing is silent);
//! - a flip between passing and failing is remembered for `flap_window` seconds; `flap_flips`
//!   of them in the window make the check flapping: one `Flapping` event, then silence until a
//!   whole window passes without a flip, when it settles with a `Raise` or a `Clear`;
//! - otherwise a flip to failing raises, a flip back to passing clears, and a check still
//!   failing `renotify` seconds after its last notice gets a `StillFailing`.
//!
//! An unknown result (we could not judge the service) neither raises nor clears and leaves
//! the failure and pass counts as they were: it says nothing about the service. After
//! `unknown_threshold` unknowns in a row the check gets one `CannotCheck` notice (so a broken
//! worker or resolver is not silent); the next judged result ends the spell.

use crate::{JobResult, Status};
use serde::{Deserialize, Serialize};

/// What a check looks like from the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Unknown,
    Passing,
    Failing,
    Flapping,
}

/// Thresholds and intervals of the machine (settings keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Consecutive failures before a check counts as failing (at least 1).
    pub fail_threshold: u32,
    /// Consecutive passes before a failing check counts as recovered (at least 1).
    pub pass_threshold: u32,
    /// Seconds between "still failing" notices; 0 turns them off.
    pub renotify: u64,
    /// Flips within `flap_window` that make a check flapping; 0 turns detection off.
    pub flap_flips: u32,
    /// Seconds over which flips are counted, and of quiet needed to stop flapping.
    pub flap_window: u64,
    /// Unknown results in a row before one `CannotCheck` notice; 0 turns it off.
    #[serde(default = "default_unknown_threshold")]
    pub unknown_threshold: u32,
}

fn default_unknown_threshold() -> u32 {
    3
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            fail_threshold: 1,
            pass_threshold: 1,
            renotify: 3600,
            flap_flips: 5,
            flap_window: 3600,
            unknown_threshold: default_unknown_threshold(),
        }
    }
}

impl Policy {
    /// Rejects thresholds that could never flip, or a window that could never hold a flip.
    pub fn validate(&self) -> Result<(), String> {
        if self.fail_threshold == 0 || self.pass_threshold == 0 {
            return Err("fail_threshold and pass_threshold must be at least 1".into());
        }
        if self.flap_flips > 0 && self.flap_window == 0 {
            return Err("flap_window must be positive when flap_flips is set".into());
        }
        Ok(())
    }
}

/// What one check's history has come to; stored between results (state file, Redis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CheckState {
    /// Thresholded health, ignoring flapping.
    pub health: Health,
    pub flapping: bool,
    /// Consecutive failures (passes) up to the latest result.
    pub fails: u32,
    pub passes: u32,
    /// When the current failure began (the raise time), while failing.
    pub raised_at: Option<u64>,
    /// When the last notice for this check went out.
    pub notified_at: Option<u64>,
    /// Times of the flips inside the flap window, oldest first.
    pub flips: Vec<u64>,
    /// Consecutive unknown results up to the latest result.
    pub unknowns: u32,
}

impl CheckState {
    /// The health as reported: flapping overrides the thresholded health.
    pub fn shown(&self) -> Health {
        if self.flapping {
            Health::Flapping
        } else {
            self.health
        }
    }
}

/// Which notice an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The check started failing.
    Raise,
    /// The check is still failing, `renotify` seconds after the last notice.
    StillFailing,
    /// The check recovered.
    Clear,
    /// The check flips too often; no more notices until it is stable.
    Flapping,
    /// custodian could not judge the check `unknown_threshold` times in a row (our own
    /// error); says nothing about the service, so it neither raises nor clears.
    CannotCheck,
    /// Any finished check, for metrics; never produced by [`step`].
    Result,
}

impl EventKind {
    /// Whether the event says the check is in trouble (alert active).
    pub fn is_firing(self) -> bool {
        matches!(
            self,
            EventKind::Raise | EventKind::StillFailing | EventKind::Flapping
        )
    }

    /// The upper-case word used in text formats (`RAISE`, `CLEAR`, ...).
    pub fn word(self) -> &'static str {
        match self {
            EventKind::Raise => "RAISE",
            EventKind::StillFailing => "STILL FAILING",
            EventKind::Clear => "CLEAR",
            EventKind::Flapping => "FLAPPING",
            EventKind::CannotCheck => "CANNOT CHECK",
            EventKind::Result => "RESULT",
        }
    }
}

/// One notice for the alerters: what happened, to which result, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub kind: EventKind,
    /// The result that caused it (secrets already masked).
    pub result: JobResult,
    /// When the event happened (unix seconds).
    pub at: u64,
    /// When the failure began, if the check is or was failing.
    pub raised_at: Option<u64>,
}

impl AlertEvent {
    /// An event for every result, for metrics alerters.
    pub fn result(result: JobResult, at: u64) -> Self {
        AlertEvent {
            kind: EventKind::Result,
            result,
            at,
            raised_at: None,
        }
    }

    /// How long the check has been (or was) failing, in seconds.
    pub fn failing_for(&self) -> Option<u64> {
        self.raised_at.map(|r| self.at.saturating_sub(r))
    }
}

/// Feeds one result into `state` at time `now`; returns the notice it causes, if any.
pub fn step(
    state: &mut CheckState,
    policy: &Policy,
    result: &JobResult,
    now: u64,
) -> Option<AlertEvent> {
    let failed = match result.status {
        Status::Skipped => return None,
        Status::Unknown => return unknown(state, policy, result, now),
        Status::Failed => true,
        // Partial is not down: it clears a raised alert like a pass.
        Status::Passed | Status::Partial => false,
    };
    state.unknowns = 0;
    count(state, failed);
    let flipped = flip(state, policy, now);
    let cutoff = now.saturating_sub(policy.flap_window);
    state.flips.retain(|&t| t > cutoff);
    let kind = decide(state, policy, flipped, now)?;
    if kind != EventKind::Clear {
        state.notified_at = Some(now);
    }
    let event = AlertEvent {
        kind,
        result: result.clone(),
        at: now,
        raised_at: state.raised_at,
    };
    if kind == EventKind::Clear {
        state.raised_at = None;
        state.notified_at = None;
    }
    Some(event)
}

/// An unknown result: counted, and noticed once when the run of them reaches the threshold.
fn unknown(
    state: &mut CheckState,
    policy: &Policy,
    result: &JobResult,
    now: u64,
) -> Option<AlertEvent> {
    state.unknowns = state.unknowns.saturating_add(1);
    (policy.unknown_threshold > 0 && state.unknowns == policy.unknown_threshold).then(|| {
        AlertEvent {
            kind: EventKind::CannotCheck,
            result: result.clone(),
            at: now,
            raised_at: state.raised_at,
        }
    })
}

fn count(state: &mut CheckState, failed: bool) {
    if failed {
        state.fails = state.fails.saturating_add(1);
        state.passes = 0;
    } else {
        state.passes = state.passes.saturating_add(1);
        state.fails = 0;
    }
}

/// Applies the thresholds; returns the health the check just flipped to, if it did.
fn flip(state: &mut CheckState, policy: &Policy, now: u64) -> Option<Health> {
    let to = if state.health != Health::Failing && state.fails >= policy.fail_threshold {
        Health::Failing
    } else if state.health != Health::Passing && state.passes >= policy.pass_threshold {
        Health::Passing
    } else {
        return None;
    };
    if state.health != Health::Unknown && policy.flap_flips > 0 {
        state.flips.push(now);
    }
    if to == Health::Failing {
        state.raised_at = Some(now);
    }
    state.health = to;
    Some(to)
}

/// Which notice, if any, the (already updated) state calls for.
fn decide(
    state: &mut CheckState,
    policy: &Policy,
    flipped: Option<Health>,
    now: u64,
) -> Option<EventKind> {
    if state.flapping {
        if !state.flips.is_empty() {
            return None;
        }
        state.flapping = false;
        return Some(settled(state.health));
    }
    if policy.flap_flips > 0 && state.flips.len() >= policy.flap_flips as usize {
        state.flapping = true;
        return Some(EventKind::Flapping);
    }
    match flipped {
        Some(Health::Failing) => Some(EventKind::Raise),
        Some(Health::Passing) if state.notified_at.is_some() => Some(EventKind::Clear),
        Some(_) => None,
        None if state.health == Health::Failing && due(state, policy, now) => {
            Some(EventKind::StillFailing)
        }
        None => None,
    }
}

/// The notice that ends a flapping spell.
fn settled(health: Health) -> EventKind {
    if health == Health::Failing {
        EventKind::Raise
    } else {
        EventKind::Clear
    }
}

/// Whether a "still failing" notice is due.
fn due(state: &CheckState, policy: &Policy, now: u64) -> bool {
    policy.renotify > 0
        && state
            .notified_at
            .is_some_and(|t| now.saturating_sub(t) >= policy.renotify)
}

#[cfg(test)]
mod tests;
