//! The recent past of the queue and the pool: one sample at a time, the last few minutes of
//! them, for the status page's charts.

use std::collections::VecDeque;
use std::time::Duration;

use crate::inspect::view::{rfc3339, HistoryAnswer, SampleView};
use crate::pool::Resources;
use crate::queue::Millis;
use crate::LEVELS;

/// How often the daemon samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// How many samples it keeps: ten minutes of them.
pub const SAMPLES_KEPT: usize = 600;

/// The queue and the pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// When.
    pub at: Millis,
    /// Queued executions per level, in `Priority::ALL` order.
    pub depth: [usize; LEVELS],
    /// Held by allocations.
    pub used: Resources,
    /// The pool's capacity.
    pub total: Resources,
    /// Executions holding resources.
    pub active_allocations: usize,
}

/// The last samples, at most `capacity` of them.
#[derive(Debug, Clone)]
pub struct History {
    capacity: usize,
    interval: Duration,
    samples: VecDeque<Sample>,
}

impl History {
    /// An empty history of at most `capacity` samples taken every `interval`.
    pub fn new(capacity: usize, interval: Duration) -> Self {
        Self {
            capacity,
            interval,
            samples: VecDeque::with_capacity(capacity),
        }
    }

    /// Adds the newest sample, forgetting the oldest beyond the capacity.
    pub fn push(&mut self, sample: Sample) {
        if self.capacity == 0 {
            return;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// `GET /v1/history` at `now`.
    pub fn answer(&self, now: Millis) -> HistoryAnswer {
        HistoryAnswer {
            at: rfc3339(now),
            interval_seconds: self.interval.as_secs_f64(),
            total: self
                .samples
                .back()
                .map(|s| s.total)
                .unwrap_or_default()
                .into(),
            samples: self
                .samples
                .iter()
                .map(|s| SampleView {
                    at_ms: s.at,
                    depth: s.depth.into(),
                    used: s.used.into(),
                    active_allocations: s.active_allocations,
                })
                .collect(),
        }
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new(SAMPLES_KEPT, SAMPLE_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_samples_oldest_first() {
        let mut h = History::new(3, Duration::from_secs(1));
        for at in 1..=5 {
            h.push(Sample {
                at,
                total: Resources::new(1_000, 1_024, at),
                ..Sample::default()
            });
        }
        assert_eq!(h.samples().map(|s| s.at).collect::<Vec<_>>(), [3, 4, 5]);
        let answer = h.answer(6);
        assert_eq!(answer.samples.len(), 3);
        assert_eq!(answer.samples[0].at_ms, 3);
        assert_eq!(answer.total.gpu, 5, "the total of the latest sample");
        assert_eq!(answer.interval_seconds, 1.0);
    }
}
