//! The decision of one scheduling pass, as a pure function: given the queue's candidates in
//! dispatch order, what the pool has free and what runs in it, the rules and the time, which
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
//! - [`Policy::Backfill`]: priority then FIFO, except that of the candidates that have waited
//!   their level's `max_wait`, the one with the earliest deadline goes first. The first
//!   candidate that does not fit gets a reservation: the earliest time the pool will hold it,
//!   if the running executions end by their timeouts.
//!   Candidates behind it start now when they fit and do not delay the reservation: they end
//!   by their timeout before it, or they fit in what is left at its time (EASY backfilling,
//!   over cpu, memory and gpu together). With `reservations = k` the first `k` candidates that
//!   cannot start each get one, each planned around the earlier ones ([`profile`]).
//!   See `docs/scheduling.md`.

mod backfill;
pub mod profile;

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{MaxWait, SchedulerConfig};
use crate::pool::Resources;
use crate::queue::Millis;
use crate::Priority;

/// How a pass treats the candidates that do not fit (`scheduler.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The first candidate that does not fit is demoted one level and the pass ends.
    Demote,
    /// The first candidate that does not fit blocks everything behind it, at its level.
    Strict,
    /// The first candidate that does not fit gets a reservation; the ones behind it start when
    /// they do not delay it. The one longest past its level's `max_wait` goes first.
    #[default]
    Backfill,
}

impl Policy {
    /// Every policy.
    pub const ALL: [Policy; 3] = [Policy::Demote, Policy::Strict, Policy::Backfill];

    /// Its name as written in config and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Demote => "demote",
            Policy::Strict => "strict",
            Policy::Backfill => "backfill",
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The policy and its knobs, as `[scheduler]` sets them.
///
/// Under `backfill` the caller's candidates are the first `backfill_depth` of the queue in
/// dispatch order, plus the execution that has waited longest past its level's `max_wait`
/// if it is not among them (the planner puts it first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// What becomes of a candidate that does not fit.
    pub policy: Policy,
    /// Under `backfill`: candidates looked at, at most.
    pub backfill_depth: usize,
    /// Under `backfill`: candidates that get a reservation, at most (at least 1).
    pub reservations: usize,
    /// Under `backfill`: per level, the wait after which a candidate may go to the front
    /// (the one whose deadline is earliest does).
    pub max_wait: MaxWait,
}

impl Rules {
    /// The rules `[scheduler]` sets.
    pub fn from_config(s: &SchedulerConfig) -> Rules {
        Rules {
            policy: s.policy,
            backfill_depth: s.backfill_depth,
            reservations: s.reservations,
            max_wait: s.max_wait,
        }
    }

    /// When an execution of `level` queued at `enqueued_at` has waited its `max_wait`.
    pub fn deadline(&self, level: Priority, enqueued_at: Millis) -> Millis {
        enqueued_at.saturating_add(millis(self.max_wait.of(level)))
    }
}

/// A policy alone: its knobs at their defaults.
impl From<Policy> for Rules {
    fn from(policy: Policy) -> Rules {
        Rules {
            policy,
            ..Rules::from_config(&SchedulerConfig::default())
        }
    }
}

impl From<&Rules> for Rules {
    fn from(rules: &Rules) -> Rules {
        *rules
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
    /// When it was first queued: under `backfill`, a candidate that has waited its level's
    /// `max_wait` goes to the front.
    pub enqueued_at: Millis,
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
    /// What runs now. Planning is cheapest when these are sorted by `ends_by`.
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
    /// Did not fit (or would have delayed an earlier reservation); keeps its place with a
    /// reservation: the pool holds it from `at` at the latest, if the running executions end
    /// by their timeouts, and nothing this pass starts delays that.
    Reserved {
        /// When it can start at the latest.
        at: Millis,
    },
    /// Fits what is free now, but starting it would delay the reservation of the candidate at
    /// index `reservation`; keeps its place.
    Held {
        /// The index, in the candidates, of the reservation it would delay.
        reservation: usize,
    },
    /// Does not fit what is free now, and every reservation of the pass went to candidates
    /// ahead of it; keeps its place.
    Waits,
}

impl Fate {
    /// True when the candidate keeps its place in the queue (everything but `Start` and
    /// `Demote`).
    pub fn keeps_place(self) -> bool {
        !matches!(self, Fate::Start | Fate::Demote)
    }
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

    /// Indexes of the candidates that hold a reservation, with its time, in order.
    pub fn reservations(&self) -> impl Iterator<Item = (usize, Millis)> + '_ {
        self.fates.iter().enumerate().filter_map(|(i, f)| match f {
            Fate::Reserved { at } => Some((i, *at)),
            _ => None,
        })
    }
}

/// Plans one pass over `candidates` (in dispatch order, as many as the pass may look at) on
/// `pool` under `rules` (a [`Policy`] alone takes its knobs' defaults) at `now`.
///
/// A plan where nothing can start changes nothing: planning again on the same queue, pool
/// and clock gives the same plan, so a caller that re-plans only on arrivals, releases and
/// ticks never spins.
pub fn plan(
    candidates: &[Candidate],
    pool: &PoolView,
    rules: impl Into<Rules>,
    now: Millis,
) -> Plan {
    let rules = rules.into();
    if rules.policy == Policy::Backfill {
        return backfill::plan(candidates, pool, &rules, now);
    }
    let mut free = pool.available;
    let mut fates = vec![Fate::Stay; candidates.len()];
    let mut started = Vec::new();
    for (i, candidate) in candidates.iter().enumerate() {
        if candidate.resources.fits_in(&free) {
            free = free.saturating_sub(&candidate.resources);
            fates[i] = Fate::Start;
            if rules.policy == Policy::Strict {
                started.push(Running {
                    resources: candidate.resources,
                    ends_by: now.saturating_add(millis(candidate.timeout)),
                });
            }
            continue;
        }
        fates[i] = match rules.policy {
            Policy::Demote => Fate::Demote,
            _ => Fate::Blocked {
                at: earliest(
                    candidate.resources,
                    free,
                    &releases(&pool.running, &started),
                    now,
                )
                .map(|(at, _)| at),
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
    earliest(wanted, free, &releases(running, &[]), now).map(|(at, _)| at)
}

/// `running` and `started` in the order they end: `started` (a pass's own starts, few) is
/// sorted and merged into `running`, which is sorted too unless the caller's is not.
fn releases<'a>(running: &'a [Running], started: &[Running]) -> Releases<'a> {
    let running = if running.is_sorted_by_key(|r| r.ends_by) {
        Cow::Borrowed(running)
    } else {
        let mut sorted = running.to_vec();
        sorted.sort_by_key(|r| r.ends_by);
        Cow::Owned(sorted)
    };
    let mut started = started.to_vec();
    started.sort_by_key(|r| r.ends_by);
    Releases { running, started }
}

/// What ends, in time order: see [`releases`].
struct Releases<'a> {
    running: Cow<'a, [Running]>,
    started: Vec<Running>,
}

impl Releases<'_> {
    fn iter(&self) -> impl Iterator<Item = &Running> + '_ {
        let (mut a, mut b) = (
            self.running.iter().peekable(),
            self.started.iter().peekable(),
        );
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y.ends_by < x.ends_by => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        })
    }

    fn to_vec(&self) -> Vec<Running> {
        self.iter().copied().collect()
    }
}

/// The earliest time `wanted` fits in `free` plus what `releases` free, and what is free at
/// that time with everything that ends by then counted; `None` when all of them together do
/// not free enough. A running execution past its timeout frees at once.
fn earliest(
    wanted: Resources,
    free: Resources,
    releases: &Releases<'_>,
    now: Millis,
) -> Option<(Millis, Resources)> {
    let mut free = free;
    let mut rest = releases.iter().peekable();
    let at = if wanted.fits_in(&free) {
        now
    } else {
        loop {
            let r = rest.next()?;
            free = free.plus(&r.resources);
            if wanted.fits_in(&free) {
                break r.ends_by.max(now);
            }
        }
    };
    while let Some(r) = rest.next_if(|r| r.ends_by.max(now) <= at) {
        free = free.plus(&r.resources);
    }
    Some((at, free))
}

/// A duration in whole milliseconds, saturating.
fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
