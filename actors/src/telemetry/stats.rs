//! Per-actor counters and handling times for the actor-stats log stream.

use std::time::{Duration, Instant};

use tracing::info;

use crate::telemetry::sample::BoundedSample;

/// Samples kept between two reports; older ones are overwritten round-robin.
const MAX_SAMPLES: usize = 4096;

/// What one actor has done: messages handled, errors, restarts, handling times.
#[derive(Debug, Clone)]
pub struct ActorStats {
    name: &'static str,
    handled: u64,
    handled_at_last_report: u64,
    errors: u64,
    restarts: u64,
    /// Handling times since the last report, µs.
    samples_us: BoundedSample,
}

/// A snapshot of an actor's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Messages handled since start.
    pub handled: u64,
    /// Messages handled since the previous report.
    pub handled_since_last: u64,
    /// Errors since start.
    pub errors: u64,
    /// Restarts by the supervisor since start.
    pub restarts: u64,
    /// Median handling time since the previous report.
    pub p50: Duration,
    /// 99th percentile handling time since the previous report.
    pub p99: Duration,
}

impl ActorStats {
    /// Fresh figures for the actor `name`.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            handled: 0,
            handled_at_last_report: 0,
            errors: 0,
            restarts: 0,
            samples_us: BoundedSample::new(MAX_SAMPLES),
        }
    }

    /// The actor's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Counts one handled message that started at `started`.
    pub fn record(&mut self, started: Instant) {
        self.handled += 1;
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.samples_us.push(us);
    }

    /// Counts one error.
    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// Counts one restart by the supervisor (also as a Prometheus counter).
    pub fn restarted(&mut self) {
        self.restarts += 1;
        crate::telemetry::restarted(self.name);
    }

    /// Restarts since start.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Current figures, without resetting the interval.
    pub fn snapshot(&self) -> StatsSnapshot {
        let p = self.samples_us.percentiles().unwrap_or_default();
        StatsSnapshot {
            handled: self.handled,
            handled_since_last: self.handled - self.handled_at_last_report,
            errors: self.errors,
            restarts: self.restarts,
            p50: Duration::from_micros(p.p50),
            p99: Duration::from_micros(p.p99),
        }
    }

    /// Logs one `actor_stats` line with `backlog` (in-flight work or pending deliveries) and
    /// starts a new interval.
    pub fn report(&mut self, backlog: usize) -> StatsSnapshot {
        let s = self.snapshot();
        info!(
            target: "actor_stats",
            actor = self.name,
            handled = s.handled,
            handled_since_last = s.handled_since_last,
            errors = s.errors,
            restarts = s.restarts,
            backlog,
            p50_us = s.p50.as_micros() as u64,
            p99_us = s.p99.as_micros() as u64,
            "Actor stats."
        );
        self.handled_at_last_report = self.handled;
        self.samples_us.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_intervals() {
        let mut s = ActorStats::new("test");
        let t = Instant::now();
        for _ in 0..10 {
            s.record(t);
        }
        s.error();
        s.restarted();
        let first = s.report(3);
        assert_eq!(first.handled, 10);
        assert_eq!(first.handled_since_last, 10);
        assert_eq!((first.errors, first.restarts), (1, 1));
        assert!(first.p50 <= first.p99);
        s.record(Instant::now());
        let second = s.snapshot();
        assert_eq!((second.handled, second.handled_since_last), (11, 1));
    }

    #[test]
    fn samples_are_bounded() {
        let mut s = ActorStats::new("test");
        let t = Instant::now();
        for _ in 0..(MAX_SAMPLES * 2 + 5) {
            s.record(t);
        }
        assert_eq!(s.samples_us.kept(), MAX_SAMPLES);
        assert_eq!(s.snapshot().handled as usize, MAX_SAMPLES * 2 + 5);
    }
}
