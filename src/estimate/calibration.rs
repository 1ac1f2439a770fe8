//! From a plan's point estimate to a calibrated median and 90% bound: the recent errors of
//! the point estimates give their median and upper quantile, and the quantile the bound uses
//! is nudged after every start so that, over time, nine waits in ten end within it (adaptive
//! conformal prediction).
//!
//! An error is the ratio (actual + s) ÷ (estimated + s), where s is the level's mean wait of
//! late: a ratio, so that one calibration serves waits of seconds and of days, and offset by
//! the typical wait, so that an estimate of zero for a wait of an hour does not make every
//! later bound an hour times some enormous factor.

use std::collections::VecDeque;

/// Errors remembered per level: enough for a stable 90th percentile, few enough to follow a
/// workload that changes.
const WINDOW: usize = 1_000;

/// Errors a level needs before its own are used; until then every level's are.
const OWN_AFTER: usize = 50;

/// The least offset of the ratios: one second.
const OFFSET_MS: f64 = 1_000.0;

/// Weight of the newest wait in a level's mean wait.
const MEAN_WEIGHT: f64 = 0.01;

/// The share of waits the bound is meant to cover.
pub const COVERAGE: f64 = 0.9;

/// How fast the bound's quantile follows its misses.
const STEP: f64 = 0.005;

/// Recent errors, in arrival order and sorted.
#[derive(Debug, Clone, Default)]
struct Errors {
    recent: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl Errors {
    fn add(&mut self, error: f64) {
        if self.recent.len() == WINDOW {
            if let Some(old) = self.recent.pop_front() {
                let at = self.sorted.partition_point(|e| *e < old);
                self.sorted.remove(at);
            }
        }
        self.recent.push_back(error);
        let at = self.sorted.partition_point(|e| *e < error);
        self.sorted.insert(at, error);
    }

    /// The `q` quantile (0..=1), nearest rank.
    fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.sorted.len();
        (n > 0).then(|| self.sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
    }
}

/// One level's errors and the quantile its bound uses.
#[derive(Debug, Clone)]
struct Level {
    errors: Errors,
    /// The quantile of the errors the bound is taken at, adapted to the misses.
    upper: f64,
    /// The level's mean wait of late, ms.
    mean_wait_ms: Option<f64>,
}

impl Default for Level {
    fn default() -> Self {
        Self {
            errors: Errors::default(),
            upper: COVERAGE,
            mean_wait_ms: None,
        }
    }
}

/// A median and a bound, in milliseconds from now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibrated {
    /// Half the waits are expected to be shorter.
    pub median_ms: f64,
    /// Nine in ten are expected to be shorter.
    pub bound_ms: f64,
    /// The offset of the ratios it was made with: hand it back to [`Calibration::learn`].
    pub offset_ms: f64,
}

/// The errors of one point estimator, per level and per kind of estimate (an execution
/// expected to start at once, or to wait), and what they make of its estimates. The two kinds
/// err so differently that one set of errors would serve neither.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// Per level, then per kind: `2 × level + kind`.
    levels: Vec<Level>,
    /// Per kind, every level's.
    all: [Errors; 2],
    mean_wait_ms: [Option<f64>; 2],
}

/// 0 for an estimate of starting at once (under a second), 1 for one of waiting.
fn kind(point_ms: f64) -> usize {
    usize::from(point_ms >= OFFSET_MS)
}

impl Calibration {
    /// No errors seen yet, for `levels` levels.
    pub fn new(levels: usize) -> Self {
        Self {
            levels: vec![Level::default(); 2 * levels],
            all: Default::default(),
            mean_wait_ms: [None; 2],
        }
    }

    /// The median and bound of a wait at `level` whose point estimate is `point_ms`. With no
    /// errors seen yet, the point is the median and twice it the bound.
    pub fn calibrate(&self, level: usize, point_ms: f64) -> Calibrated {
        let k = kind(point_ms);
        let own = &self.levels[2 * level + k];
        let (errors, mean_wait) = if own.errors.sorted.len() >= OWN_AFTER {
            (&own.errors, own.mean_wait_ms)
        } else {
            (&self.all[k], self.mean_wait_ms[k])
        };
        let offset_ms = mean_wait.unwrap_or(0.0).max(OFFSET_MS);
        let scale = |error: f64| ((point_ms + offset_ms) * error - offset_ms).max(0.0);
        match (errors.quantile(0.5), errors.quantile(own.upper)) {
            (Some(mid), Some(upper)) => Calibrated {
                median_ms: scale(mid),
                bound_ms: scale(upper).max(scale(mid)),
                offset_ms,
            },
            _ => Calibrated {
                median_ms: point_ms,
                bound_ms: 2.0 * point_ms + offset_ms,
                offset_ms,
            },
        }
    }

    /// An execution at `level` estimated at `point_ms`, with `told` as what calibration made
    /// of it then, waited `actual_ms`.
    pub fn learn(&mut self, level: usize, point_ms: f64, told: &Calibrated, actual_ms: f64) {
        let (bound_ms, offset) = (told.bound_ms, told.offset_ms);
        let error = (actual_ms + offset) / (point_ms + offset);
        let mean =
            |m: Option<f64>| Some(m.map_or(actual_ms, |m| m + MEAN_WEIGHT * (actual_ms - m)));
        let k = kind(point_ms);
        self.mean_wait_ms[k] = mean(self.mean_wait_ms[k]);
        let own = &mut self.levels[2 * level + k];
        own.mean_wait_ms = mean(own.mean_wait_ms);
        own.errors.add(error);
        self.all[k].add(error);
        let missed = if actual_ms > bound_ms { 1.0 } else { 0.0 };
        // Adaptive conformal inference: a miss raises the quantile, a hit lowers it a little.
        own.upper = (own.upper + STEP * (missed - (1.0 - COVERAGE))).clamp(0.5, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_that_is_always_half_the_wait_is_doubled() {
        let mut c = Calibration::new(1);
        for _ in 0..200 {
            let b = c.calibrate(0, 9_000.0);
            c.learn(0, 9_000.0, &b, 19_000.0);
        }
        let got = c.calibrate(0, 9_000.0);
        assert!((got.median_ms - 19_000.0).abs() < 1.0, "{got:?}");
        assert!(got.bound_ms >= got.median_ms);
    }

    #[test]
    fn the_bound_covers_about_nine_in_ten_of_a_spread_of_errors() {
        let mut c = Calibration::new(1);
        let mut covered = 0;
        let n = 20_000;
        // A deterministic spread: waits from a tenth to ten times the point, log-uniform.
        for i in 0..n {
            let u = ((i * 7_919) % 1_000) as f64 / 1_000.0;
            let actual = 10_000.0 * (10f64).powf(2.0 * u - 1.0);
            let b = c.calibrate(0, 10_000.0);
            if i >= n / 2 && actual <= b.bound_ms {
                covered += 1;
            }
            c.learn(0, 10_000.0, &b, actual);
        }
        let coverage = covered as f64 / (n / 2) as f64;
        assert!((0.87..=0.93).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn a_level_uses_everyones_errors_until_it_has_its_own() {
        let mut c = Calibration::new(2);
        for _ in 0..OWN_AFTER {
            let b = c.calibrate(0, 0.0);
            c.learn(0, 0.0, &b, 3_000.0);
        }
        let other = c.calibrate(1, 0.0);
        assert!((other.median_ms - 3_000.0).abs() < 60.0, "{other:?}");
        let b = c.calibrate(1, 0.0);
        c.learn(1, 0.0, &b, 0.0);
        let still = c.calibrate(1, 0.0);
        assert!((still.median_ms - 3_000.0).abs() < 60.0, "{still:?}");
    }
}
