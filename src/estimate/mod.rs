//! How long a queued execution will wait: a median and a 90% bound, from the plan the queue and
//! the pool imply, with run times learned from completions, calibrated against the waits seen.
//!
//! - [`runtimes`]: the fraction of its timeout an execution is expected to run, per language and
//!   user, learned online from completions.
//! - [`forecast`]: the queue walked in dispatch order on those run times, each execution
//!   starting when it fits after the ones ahead of it (what a plan that keeps priorities and
//!   arrival order gives).
//! - [`calibration`]: what the forecast's recent errors make of its next estimate: a median and
//!   a bound that nine waits in ten stay within, per level.
//! - [`waits`]: the estimator as the daemon keeps it beside its queue.
//!
//! Until a few completions have been seen, the estimate is the queue position times the mean
//! time between starts (the drain rate), calibrated the same way. Pure: callers pass the time.

pub mod calibration;
pub mod forecast;
pub mod runtimes;
pub mod waits;

use std::hash::Hash;
use std::time::Duration;

use crate::pool::Resources;
use crate::queue::Millis;
use crate::LEVELS;
use calibration::{Calibrated, Calibration};
pub use forecast::{Forecast, Release};
use runtimes::Runtimes;

/// Completions seen before the plan is trusted over the drain rate.
const PLAN_AFTER: u64 = 10;

/// Weight of the newest gap between starts in their decayed mean.
const GAP_WEIGHT: f64 = 0.05;

/// How long an execution whose start and timeout are not known (restored from the state
/// topic) is expected to run on.
pub const UNKNOWN_END: Duration = Duration::from_secs(300);

/// What an estimate was based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The forecast on learned run times.
    Plan,
    /// The queue position times the mean time between starts.
    Drain,
}

/// An estimate, and what the estimator needs back when the execution starts to learn from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Half the executions in its place are expected to start sooner.
    pub median: Duration,
    /// Nine in ten are expected to start sooner.
    pub bound: Duration,
    /// What to hand back to [`Estimator::started`].
    pub guess: Guess,
}

/// What an estimate was, for learning from its error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guess {
    level: usize,
    point_ms: f64,
    told: Calibrated,
    basis: Basis,
}

impl Guess {
    /// What the estimate was based on.
    pub fn basis(&self) -> Basis {
        self.basis
    }
}

/// The estimator: run times learned per key `K` (language and user) in group `G`
/// (language), the mean time between starts, and the calibration of each basis.
#[derive(Debug, Clone)]
pub struct Estimator<K, G> {
    runtimes: Runtimes<K, G>,
    plan: Calibration,
    drain: Calibration,
    /// Decayed mean time between starts, and the last start.
    gap_ms: Option<f64>,
    last_start: Option<Millis>,
}

impl<K, G> Default for Estimator<K, G> {
    fn default() -> Self {
        Self {
            runtimes: Runtimes::default(),
            plan: Calibration::new(LEVELS),
            drain: Calibration::new(LEVELS),
            gap_ms: None,
            last_start: None,
        }
    }
}

impl<K: Hash + Eq, G: Hash + Eq> Estimator<K, G> {
    /// The run times learned so far.
    pub fn runtimes(&self) -> &Runtimes<K, G> {
        &self.runtimes
    }

    /// How long an execution of `key` in `group` with `timeout_ms` is expected to run.
    pub fn runtime_ms(&self, key: &K, group: &G, timeout_ms: u64) -> u64 {
        self.runtimes.expected_ms(key, group, timeout_ms)
    }

    /// When a running execution of `key` in `group` is expected to end, at `now`: its start
    /// plus its expected run time, or, once it has run longer than that, the same fraction of
    /// what is left of its timeout. `span` is its start and latest end (start plus timeout);
    /// `None` when not known, and then [`UNKNOWN_END`] from now.
    pub fn expected_end(
        &self,
        key: &K,
        group: &G,
        span: Option<(Millis, Millis)>,
        now: Millis,
    ) -> Millis {
        let Some((since, ends_by)) = span else {
            return now.saturating_add(UNKNOWN_END.as_millis() as u64);
        };
        let ratio = self.runtimes.ratio(key, group);
        let timeout = ends_by.saturating_sub(since);
        let expected = since.saturating_add((ratio * timeout as f64) as u64);
        if expected >= now {
            expected
        } else {
            now.saturating_add((ratio * ends_by.saturating_sub(now) as f64) as u64)
        }
    }

    /// The estimate for an execution at `level`, `position` in dispatch order (0 = next),
    /// whose forecast start is `start` (`None` when the forecast could not place it), at
    /// `now`.
    pub fn estimate(
        &self,
        level: usize,
        position: usize,
        start: Option<Millis>,
        now: Millis,
    ) -> Estimate {
        let drain = self.drain_ms(position);
        let plan = start.map(|s| s.saturating_sub(now) as f64);
        let (basis, point_ms) = match (plan, drain) {
            (Some(_), Some(d)) if self.runtimes.observed() < PLAN_AFTER => (Basis::Drain, d),
            (Some(p), _) => (Basis::Plan, p),
            (None, Some(d)) => (Basis::Drain, d),
            (None, None) => (Basis::Drain, 0.0),
        };
        let calibration = match basis {
            Basis::Plan => &self.plan,
            Basis::Drain => &self.drain,
        };
        let c = calibration.calibrate(level, point_ms);
        Estimate {
            median: millis(c.median_ms),
            bound: millis(c.bound_ms),
            guess: Guess {
                level,
                point_ms,
                told: c,
                basis,
            },
        }
    }

    /// Position × the mean time between starts: the wait the drain rate alone gives an
    /// execution at `position`; `None` before two starts.
    pub fn drain_ms(&self, position: usize) -> Option<f64> {
        self.gap_ms.map(|gap| gap * position as f64)
    }

    /// The execution estimated by `guess` started at `now` after waiting `waited_ms`.
    pub fn started(&mut self, guess: Guess, waited_ms: u64, now: Millis) {
        let calibration = match guess.basis {
            Basis::Plan => &mut self.plan,
            Basis::Drain => &mut self.drain,
        };
        calibration.learn(guess.level, guess.point_ms, &guess.told, waited_ms as f64);
        self.dispatched(now);
    }

    /// An execution with no estimate started at `now` (it still counts toward the drain rate).
    pub fn dispatched(&mut self, now: Millis) {
        if let Some(last) = self.last_start {
            let gap = now.saturating_sub(last) as f64;
            self.gap_ms = Some(match self.gap_ms {
                Some(mean) => mean + GAP_WEIGHT * (gap - mean),
                None => gap,
            });
        }
        self.last_start = Some(self.last_start.map_or(now, |l| l.max(now)));
    }

    /// An execution of `key` in `group` with `timeout_ms` ran `ran_ms`.
    pub fn finished(&mut self, key: K, group: G, ran_ms: u64, timeout_ms: u64) {
        self.runtimes.observe(key, group, ran_ms, timeout_ms);
    }
}

/// Executions ahead walked one by one before the rest are counted by their mean work: the
/// cost of an estimate stays bounded however deep the queue.
pub const HORIZON: usize = 1_000;

/// The forecast start of an execution reserving `wants` for `runtime_ms`, `position` in
/// dispatch order behind `ahead` (the executions before it, in order, with what each reserves
/// and its expected run time; at most [`HORIZON`] of them are walked), on a pool of
/// `capacity` with `available` free at `now` and `running` to end as given (in the order it
/// ends; it is read only as far as needed). When its position
/// is within `backfills_within` (the executions a backfill pass looks at; 0 when the policy does
/// not backfill) and it fits in a gap before its turn, the gap's start, as backfilling would
/// start it there. `None` when what runs never frees enough for it.
#[allow(clippy::too_many_arguments)]
pub fn forecast_start(
    now: Millis,
    available: Resources,
    running: impl IntoIterator<Item = Release, IntoIter: Clone>,
    capacity: Resources,
    ahead: impl IntoIterator<Item = (Resources, u64)>,
    position: usize,
    wants: Resources,
    runtime_ms: u64,
    backfills_within: usize,
) -> Option<Millis> {
    let mut forecast = Forecast::new(now, available, running, capacity);
    let mut walked = 0;
    for (resources, runtime) in ahead.into_iter().take(HORIZON.min(position)) {
        forecast.next(resources, runtime);
        walked += 1;
    }
    let skipped = position.saturating_sub(walked);
    let gap = (skipped == 0 && position < backfills_within)
        .then(|| forecast.gap(wants, runtime_ms))
        .flatten();
    let turn = forecast.after(skipped, wants, runtime_ms)?;
    Some(gap.map_or(turn, |g| g.min(turn)))
}

/// The keys run times are learned under: one per language and user, and one per language.
pub fn runtime_keys(language: &str, user: &str) -> (u64, u64) {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let hasher = BuildHasherDefault::<rustc_hash::FxHasher>::default();
    (hasher.hash_one((language, user)), hasher.hash_one(language))
}

fn millis(ms: f64) -> Duration {
    Duration::from_millis(ms.max(0.0).round() as u64)
}

#[cfg(test)]
mod tests;
