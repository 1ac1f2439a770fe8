//! The decision of one scheduling pass, as a pure function: given the queue's candidates in
//! dispatch order, what the pool has free and what runs in it, a policy and the time, which
//! candidates start now and what becomes of the others. No clock is read and nothing is
//! mutated: the caller carries the plan out (the daemon through its actors, a simulator on its
//! own clock), so both decide alike.
//!
//! Policies:
//! - [`Policy::Demote`]: in order, each candidate that fits starts; the first that does not fit
//!   is requeued (one level lower when `queue.requeue_demotes`) and the pass ends.
//! - [`Policy::Strict`]: priority then FIFO; the first candidate that does not fit keeps its
//!   place and blocks everything behind it. Its plan says when the pool will hold it at the
//!   latest, if the running executions end by their timeouts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pool::Resources;
use crate::queue::Millis;
use crate::Priority;

/// How a pass treats the candidates that do not fit (`scheduler.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The first candidate that does not fit is demoted one level and the pass ends.
    #[default]
    Demote,
    /// The first candidate that does not fit blocks everything behind it, at its level.
    Strict,
}

impl Policy {
    /// Every policy.
    pub const ALL: [Policy; 2] = [Policy::Demote, Policy::Strict];

    /// Its name as written in config and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Demote => "demote",
            Policy::Strict => "strict",
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A queued execution the pass may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its current level.
    pub priority: Priority,
    /// What it reserves.
    pub resources: Resources,
    /// How long it may run at most (its `timeout_seconds`).
    pub timeout: Duration,
}

/// An execution holding resources now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// What it holds.
    pub resources: Resources,
    /// When it will have ended at the latest: its start plus its timeout.
    pub ends_by: Millis,
}

/// What the pool looks like to a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolView {
    /// Allocatable now without touching the reserve.
    pub available: Resources,
    /// What runs now.
    pub running: Vec<Running>,
}

/// What becomes of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Starts now with its resources.
    Start,
    /// Not tried this pass; stays where it is.
    Stay,
    /// Did not fit; requeued with its arrival: one level lower (never below BACKGROUND) when
    /// the queue demotes on requeue (`queue.requeue_demotes`), else at its level.
    Demote,
    /// Did not fit; keeps its place, and the pool will hold it by `at` at the latest (if the
    /// running executions end by their timeouts), or `None` when nothing running frees enough.
    Blocked {
        /// The latest time it can start, given what runs now.
        at: Option<Millis>,
    },
}

/// The plan of one pass: one [`Fate`] per candidate, in the candidates' order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The fate of each candidate.
    pub fates: Vec<Fate>,
}

impl Plan {
    /// Indexes of the candidates that start, in order.
    pub fn starts(&self) -> impl Iterator<Item = usize> + '_ {
        self.fates
            .iter()
            .enumerate()
            .filter(|(_, f)| **f == Fate::Start)
            .map(|(i, _)| i)
    }
}

/// Plans one pass over `candidates` (in dispatch order, as many as the pass may look at) on
/// `pool` under `policy` at `now`.
pub fn plan(candidates: &[Candidate], pool: &PoolView, policy: Policy, now: Millis) -> Plan {
    let mut free = pool.available;
    let mut fates = vec![Fate::Stay; candidates.len()];
    for (i, candidate) in candidates.iter().enumerate() {
        if candidate.resources.fits_in(&free) {
            free = free.saturating_sub(&candidate.resources);
            fates[i] = Fate::Start;
            continue;
        }
        fates[i] = match policy {
            Policy::Demote => Fate::Demote,
            Policy::Strict => Fate::Blocked {
                at: earliest_start(candidate.resources, free, &pool.running, now),
            },
        };
        break;
    }
    Plan { fates }
}

/// The earliest time `wanted` fits, starting from `free` now and adding what each running
/// execution frees when it ends by its timeout; `None` when even all of them do not free
/// enough.
pub fn earliest_start(
    wanted: Resources,
    free: Resources,
    running: &[Running],
    now: Millis,
) -> Option<Millis> {
    if wanted.fits_in(&free) {
        return Some(now);
    }
    let mut ends: Vec<&Running> = running.iter().collect();
    ends.sort_by_key(|r| r.ends_by);
    let mut free = free;
    for r in ends {
        free = Resources::new(
            free.cpu_millis + r.resources.cpu_millis,
            free.memory_mib + r.resources.memory_mib,
            free.gpu + r.resources.gpu,
        );
        if wanted.fits_in(&free) {
            return Some(r.ends_by.max(now));
        }
    }
    None
}

#[cfg(test)]
mod tests;
