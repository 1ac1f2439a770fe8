//! Wait estimates in the replay, and how good they were: each execution is estimated when it
//! is queued, by the daemon's estimator and by two baselines, and scored against its real wait
//! once it started.
//!
//! - **ours**: the daemon's estimator ([`crate::estimate`]): the forecast on learned run times,
//!   calibrated.
//! - **timeouts**: the same forecast with every run time taken as its timeout, as a scheduler
//!   that plans on requested times estimates start times.
//! - **drain**: the queue position times the mean time between starts.
//!
//! The baselines are scored both as they are (the point is both the median and the bound) and
//! calibrated the way ours is, so the comparison shows what the learned run times add.
//! Everything learns online, as the daemon does; only executions queued in the second half of
//! the replay are scored.

use serde::Serialize;

use crate::estimate::calibration::{Calibrated, Calibration, COVERAGE};
use crate::estimate::{forecast_start, Basis, Estimator, Guess, Release};
use crate::planner::Running;
use crate::pool::Resources;
use crate::queue::{ExecutionQueue, Millis};
use crate::sim::engine::{JobOutcome, Outcome};
use crate::sim::settings::SimJob;
use crate::{Priority, LEVELS};

/// What one execution was told when it was queued, in milliseconds from then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobEta {
    /// Ours: median and bound.
    pub ours: (u64, u64),
    /// Ours was the forecast (not the drain rate, as before enough completions).
    pub planned: bool,
    /// The timeouts forecast: raw point, then calibrated median and bound.
    pub timeouts: (u64, u64, u64),
    /// Position × time between starts: raw point, then calibrated median and bound.
    pub drain: (u64, u64, u64),
}

#[derive(Debug, Clone, Copy)]
struct Open {
    ours: Guess,
    timeouts: (f64, Calibrated),
    drain: (f64, Calibrated),
}

/// The estimators of a replay as it runs.
#[derive(Debug, Clone)]
pub struct Eta {
    ours: Estimator<i64, ()>,
    timeouts: Calibration,
    drain: Calibration,
    open: Vec<Option<Open>>,
    /// One per job, once estimated.
    pub told: Vec<Option<JobEta>>,
    /// Executions a backfill pass looks at; 0 when the policy does not backfill.
    backfills_within: usize,
}

/// What the replay looks like when an execution is queued.
pub struct Scene<'a> {
    /// The queue, the new execution in it.
    pub queue: &'a ExecutionQueue<u32>,
    /// What runs, with when each ends at the latest, and the job of each.
    pub running: &'a [Running],
    /// The job of each of `running`.
    pub running_jobs: &'a [u32],
    /// What each job reserves.
    pub resources: &'a [Resources],
    /// Free now.
    pub available: Resources,
    /// The pool's allocatable capacity.
    pub capacity: Resources,
}

impl Eta {
    /// Estimators for `jobs` jobs, knowing nothing yet, under a policy that backfills within
    /// the first `backfills_within` executions (0: it does not).
    pub fn new(jobs: usize, backfills_within: usize) -> Self {
        Self {
            backfills_within,
            ours: Estimator::default(),
            timeouts: Calibration::new(LEVELS),
            drain: Calibration::new(LEVELS),
            open: vec![None; jobs],
            told: vec![None; jobs],
        }
    }

    /// `job` was queued at `now` in `scene`.
    pub fn queued(&mut self, jobs: &[SimJob], job: u32, now: Millis, scene: &Scene<'_>) {
        let Some(position) = scene.queue.position(&job.to_string()) else {
            return;
        };
        let j = &jobs[job as usize];
        let wants = scene.resources[job as usize];
        let ahead = || {
            scene
                .queue
                .in_dispatch_order()
                .take_while(|e| e.payload != job)
                .map(|e| {
                    (
                        scene.resources[e.payload as usize],
                        &jobs[e.payload as usize],
                    )
                })
        };
        let learned_running = scene.running.iter().zip(scene.running_jobs).map(|(r, &k)| {
            let k = &jobs[k as usize];
            let since = r.ends_by.saturating_sub(k.timeout_ms);
            Release {
                at: self
                    .ours
                    .expected_end(&k.user, &(), Some((since, r.ends_by)), now),
                resources: r.resources,
            }
        });
        let start = forecast_start(
            now,
            scene.available,
            learned_running,
            scene.capacity,
            ahead().map(|(r, a)| (r, self.ours.runtime_ms(&a.user, &(), a.timeout_ms))),
            position,
            wants,
            self.ours.runtime_ms(&j.user, &(), j.timeout_ms),
            self.backfills_within,
        );
        let planned = forecast_start(
            now,
            scene.available,
            scene.running.iter().map(|r| Release {
                at: r.ends_by,
                resources: r.resources,
            }),
            scene.capacity,
            ahead().map(|(r, a)| (r, a.timeout_ms)),
            position,
            wants,
            j.timeout_ms,
            self.backfills_within,
        );
        let level = j.priority.index();
        let ours = self.ours.estimate(level, position, start, now);
        let timeouts_point = planned.map_or(0.0, |s| s.saturating_sub(now) as f64);
        let drain_point = self.ours.drain_ms(position).unwrap_or(0.0);
        let t = self.timeouts.calibrate(level, timeouts_point);
        let d = self.drain.calibrate(level, drain_point);
        self.open[job as usize] = Some(Open {
            ours: ours.guess,
            timeouts: (timeouts_point, t),
            drain: (drain_point, d),
        });
        self.told[job as usize] = Some(JobEta {
            ours: (
                ours.median.as_millis() as u64,
                ours.bound.as_millis() as u64,
            ),
            planned: ours.guess.basis() == Basis::Plan,
            timeouts: (ms(timeouts_point), ms(t.median_ms), ms(t.bound_ms)),
            drain: (ms(drain_point), ms(d.median_ms), ms(d.bound_ms)),
        });
    }

    /// `job`, queued at `level`, started at `now` after waiting `waited_ms`.
    pub fn started(&mut self, job: u32, level: Priority, waited_ms: u64, now: Millis) {
        match self.open[job as usize].take() {
            Some(open) => {
                self.ours.started(open.ours, waited_ms, now);
                let (level, waited) = (level.index(), waited_ms as f64);
                self.timeouts
                    .learn(level, open.timeouts.0, &open.timeouts.1, waited);
                self.drain.learn(level, open.drain.0, &open.drain.1, waited);
            }
            None => self.ours.dispatched(now),
        }
    }

    /// `job` ended after holding its resources `held_ms`.
    pub fn ended(&mut self, job: &SimJob, held_ms: u64) {
        self.ours.finished(job.user, (), held_ms, job.timeout_ms);
    }
}

fn ms(x: f64) -> u64 {
    x.max(0.0).round() as u64
}

/// How well one estimator did on a set of executions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Score {
    /// Share of waits within the bound.
    pub coverage: f64,
    /// Mean |wait − median|, seconds.
    pub median_error_s: f64,
    /// Median |wait − median|, seconds.
    pub median_abs_error_s: f64,
    /// Mean pinball loss, seconds: at 0.5 on the median and at 0.9 on the bound, averaged.
    pub pinball_s: f64,
}

/// The scores of every estimator on one set of executions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Scores {
    /// Executions scored.
    pub n: u64,
    /// Of them, estimated by the forecast rather than the drain rate.
    pub planned: u64,
    /// Ours.
    pub ours: Score,
    /// The timeouts forecast, raw.
    pub timeouts: Score,
    /// The timeouts forecast, calibrated.
    pub timeouts_calibrated: Score,
    /// Position × drain rate, raw.
    pub drain: Score,
    /// Position × drain rate, calibrated.
    pub drain_calibrated: Score,
}

impl Scores {
    /// The lowest pinball loss of the baselines, raw or calibrated.
    pub fn best_baseline(&self) -> f64 {
        [
            self.timeouts.pinball_s,
            self.timeouts_calibrated.pinball_s,
            self.drain.pinball_s,
            self.drain_calibrated.pinball_s,
        ]
        .into_iter()
        .fold(f64::INFINITY, f64::min)
    }
}

/// The calibration of a replay: per level (in `Priority::ALL` order) and over all.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EtaError {
    /// Executions queued from this time on were scored.
    pub scored_from_ms: Millis,
    /// Per level.
    pub levels: Vec<Scores>,
    /// All levels together.
    pub all: Scores,
}

/// Scores what `told` said against what `outcome` did, over the jobs submitted from
/// `from_ms` on that started.
pub fn score(
    jobs: &[SimJob],
    outcome: &Outcome,
    told: &[Option<JobEta>],
    from_ms: Millis,
) -> EtaError {
    let mut per_level: Vec<Vec<(f64, JobEta)>> = vec![Vec::new(); LEVELS];
    for ((job, out), eta) in jobs.iter().zip(&outcome.jobs).zip(told) {
        if let (JobOutcome::Started { start, .. }, Some(eta)) = (out, eta) {
            if job.submit_ms >= from_ms {
                let waited = start.saturating_sub(job.submit_ms) as f64 / 1000.0;
                per_level[job.priority.index()].push((waited, *eta));
            }
        }
    }
    let all: Vec<(f64, JobEta)> = per_level.iter().flatten().copied().collect();
    EtaError {
        scored_from_ms: from_ms,
        levels: per_level.iter().map(|l| scores(l)).collect(),
        all: scores(&all),
    }
}

fn scores(set: &[(f64, JobEta)]) -> Scores {
    let s = |f: &dyn Fn(&JobEta) -> (u64, u64)| {
        score_one(set.iter().map(|(w, e)| {
            let (m, b) = f(e);
            (*w, m as f64 / 1000.0, b as f64 / 1000.0)
        }))
    };
    Scores {
        n: set.len() as u64,
        planned: set.iter().filter(|(_, e)| e.planned).count() as u64,
        ours: s(&|e| e.ours),
        timeouts: s(&|e| (e.timeouts.0, e.timeouts.0)),
        timeouts_calibrated: s(&|e| (e.timeouts.1, e.timeouts.2)),
        drain: s(&|e| (e.drain.0, e.drain.0)),
        drain_calibrated: s(&|e| (e.drain.1, e.drain.2)),
    }
}

/// Scores (wait, median, bound) triples, in seconds.
fn score_one(set: impl Iterator<Item = (f64, f64, f64)>) -> Score {
    let (mut n, mut covered, mut abs, mut pinball) = (0u64, 0u64, 0.0, 0.0);
    let mut errors = Vec::new();
    for (wait, median, bound) in set {
        n += 1;
        if wait <= bound {
            covered += 1;
        }
        let e = (wait - median).abs();
        abs += e;
        errors.push(e);
        pinball += (pinball_loss(0.5, wait, median) + pinball_loss(COVERAGE, wait, bound)) / 2.0;
    }
    if n == 0 {
        return Score::default();
    }
    errors.sort_by(f64::total_cmp);
    let nf = n as f64;
    Score {
        coverage: covered as f64 / nf,
        median_error_s: abs / nf,
        median_abs_error_s: errors[errors.len() / 2],
        pinball_s: pinball / nf,
    }
}

/// The pinball (quantile) loss of predicting `q`'s quantile as `predicted` when `actual` came.
pub fn pinball_loss(q: f64, actual: f64, predicted: f64) -> f64 {
    if actual >= predicted {
        q * (actual - predicted)
    } else {
        (1.0 - q) * (predicted - actual)
    }
}
