//! The replay over time: how many executions each level had queued and what the pool had in
//! use, as means over equal intervals.
//!
//! The state is recorded after every event, but kept in at most [`MAX_INTERVALS`] intervals:
//! when the replay outgrows them, neighbours merge in pairs and the width doubles. A minute of
//! trace and a year of it both end with between half of them and all of them, at a fixed
//! memory and a fixed cost per event. The sums are exact integers (amount × milliseconds), so
//! the same replay always gives the same timeline, and the mean cpu in use over the whole
//! timeline is exactly the cpu·time the executions held.

use crate::pool::Resources;
use crate::queue::Millis;
use crate::LEVELS;

/// The most intervals a timeline keeps.
pub const MAX_INTERVALS: usize = 1000;

/// What the replay looked like from one event to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// Executions queued per level (the level they are queued at now), in `Priority::ALL` order.
    pub queued: [usize; LEVELS],
    /// Resources held by running executions.
    pub used: Resources,
}

/// The means over one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Where the interval starts, on the replay's clock.
    pub start_ms: Millis,
    /// Where it ends (the last one ends at the last event).
    pub end_ms: Millis,
    /// Mean executions queued per level, in `Priority::ALL` order.
    pub queued: [f64; LEVELS],
    /// Mean millicores in use.
    pub cpu_millis: f64,
    /// Mean MiB in use.
    pub memory_mib: f64,
    /// Mean GPUs in use.
    pub gpu: f64,
}

/// Amount × milliseconds over one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sums {
    queued: [u128; LEVELS],
    cpu: u128,
    memory: u128,
    gpu: u128,
}

impl Sums {
    fn add(&mut self, state: &State, ms: Millis) {
        let ms = u128::from(ms);
        for (sum, &n) in self.queued.iter_mut().zip(&state.queued) {
            *sum += n as u128 * ms;
        }
        self.cpu += u128::from(state.used.cpu_millis) * ms;
        self.memory += u128::from(state.used.memory_mib) * ms;
        self.gpu += u128::from(state.used.gpu) * ms;
    }

    fn merge(&mut self, other: &Sums) {
        for (sum, n) in self.queued.iter_mut().zip(&other.queued) {
            *sum += n;
        }
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.gpu += other.gpu;
    }
}

/// Queue depth and resources in use over a replay, in at most [`MAX_INTERVALS`] intervals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timeline {
    start_ms: Millis,
    width_ms: Millis,
    sums: Vec<Sums>,
    last: Option<(Millis, State)>,
}

impl Timeline {
    /// From `now` on the replay is in `state` (until the next call). Calls come in time order;
    /// the first one starts the timeline.
    pub fn record(&mut self, now: Millis, state: State) {
        match self.last {
            None => {
                self.start_ms = now;
                self.width_ms = 1;
            }
            Some((since, previous)) if now > since => self.add(since, now, &previous),
            Some(_) => {}
        }
        let since = self.last.map_or(now, |(since, _)| since.max(now));
        self.last = Some((since, state));
    }

    /// Where the timeline starts: the first event.
    pub fn start_ms(&self) -> Millis {
        self.start_ms
    }

    /// Where it ends: the last event.
    pub fn end_ms(&self) -> Millis {
        self.last.map_or(self.start_ms, |(t, _)| t)
    }

    /// The intervals in time order, each with its means.
    pub fn points(&self) -> Vec<Point> {
        let end = self.end_ms();
        self.sums
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let start_ms = self.start_ms + i as u64 * self.width_ms;
                let end_ms = start_ms.saturating_add(self.width_ms).min(end);
                let ms = end_ms.checked_sub(start_ms).filter(|&ms| ms > 0)? as f64;
                Some(Point {
                    start_ms,
                    end_ms,
                    queued: s.queued.map(|q| q as f64 / ms),
                    cpu_millis: s.cpu as f64 / ms,
                    memory_mib: s.memory as f64 / ms,
                    gpu: s.gpu as f64 / ms,
                })
            })
            .collect()
    }

    /// Adds `state` held from `from` to `to` (exclusive), merging intervals first if `to`
    /// falls beyond the last one.
    fn add(&mut self, from: Millis, to: Millis, state: &State) {
        while (to - 1 - self.start_ms) / self.width_ms >= MAX_INTERVALS as u64 {
            self.halve();
        }
        let mut t = from;
        while t < to {
            let i = ((t - self.start_ms) / self.width_ms) as usize;
            let next = (self.start_ms + (i as u64 + 1) * self.width_ms).min(to);
            if self.sums.len() <= i {
                self.sums.resize(i + 1, Sums::default());
            }
            self.sums[i].add(state, next - t);
            t = next;
        }
    }

    fn halve(&mut self) {
        self.sums = self
            .sums
            .chunks(2)
            .map(|pair| {
                let mut merged = pair[0];
                if let Some(second) = pair.get(1) {
                    merged.merge(second);
                }
                merged
            })
            .collect();
        self.width_ms = self.width_ms.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(queued: usize, cpu_millis: u64) -> State {
        State {
            queued: [0, 0, queued, 0, 0],
            used: Resources::new(cpu_millis, 0, 0),
        }
    }

    #[test]
    fn a_short_replay_keeps_every_millisecond() {
        let mut t = Timeline::default();
        t.record(100, state(2, 1000));
        t.record(103, state(0, 500));
        t.record(105, state(0, 0));
        let points = t.points();
        assert_eq!(points.len(), 5);
        assert_eq!((points[0].start_ms, points[4].end_ms), (100, 105));
        assert_eq!(points[2].queued[2], 2.0);
        assert_eq!(points[3].cpu_millis, 500.0);
    }

    #[test]
    fn a_long_replay_stays_within_the_bound_and_keeps_its_sums() {
        let mut t = Timeline::default();
        let mut expected: u128 = 0;
        let mut now = 0;
        for i in 0..50_000u64 {
            let cpu = (i * 7919) % 1000;
            let gap = 1 + (i * 104_729) % 5000;
            t.record(now, state((i % 13) as usize, cpu));
            expected += u128::from(cpu) * u128::from(gap);
            now += gap;
        }
        t.record(now, state(0, 0));
        let points = t.points();
        assert!(points.len() <= MAX_INTERVALS, "{}", points.len());
        assert!(points.len() > MAX_INTERVALS / 2, "{}", points.len());
        assert_eq!(points.last().map(|p| p.end_ms), Some(now));
        let total: f64 = points
            .iter()
            .map(|p| p.cpu_millis * (p.end_ms - p.start_ms) as f64)
            .sum();
        assert!((total - expected as f64).abs() / (expected as f64) < 1e-9);
        for pair in points.windows(2) {
            assert_eq!(pair[0].end_ms, pair[1].start_ms);
        }
    }

    #[test]
    fn events_at_the_same_time_keep_the_last_state() {
        let mut t = Timeline::default();
        t.record(0, state(5, 0));
        t.record(0, state(1, 0));
        t.record(10, state(0, 0));
        assert!(t.points().iter().all(|p| p.queued[2] == 1.0));
    }
}
