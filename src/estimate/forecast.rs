//! The start times a plan expects: the queue walked in dispatch order, each execution starting
//! at the earliest time it fits once the ones ahead of it have started and what runs has
//! ended, with run times as expected rather than as long as their timeouts allow.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::pool::Resources;
use crate::queue::Millis;

/// An execution expected to free `resources` at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// When it is expected to end.
    pub at: Millis,
    /// What it holds.
    pub resources: Resources,
}

/// A walk down the queue, start time by start time.
#[derive(Debug, Clone)]
pub struct Forecast {
    /// No execution starts before the one ahead of it (priority, then arrival).
    t: Millis,
    free: Resources,
    releases: BinaryHeap<Reverse<(Millis, u64, u64, u64)>>,
    /// What the pool holds in all, to turn work into time for the executions not walked.
    capacity: Resources,
    walked: u64,
    /// Resource × milliseconds of the executions walked, per cpu, memory and gpu.
    work: [f64; 3],
    /// What is free now plus what runs: the pool before anything holds it.
    base: Resources,
    /// Every interval something is expected to hold resources: (from, until, what).
    held: Vec<(Millis, Millis, Resources)>,
}

impl Forecast {
    /// A walk starting at `now` with `available` free and `running` to end as given, on a
    /// pool of `capacity`.
    pub fn new(
        now: Millis,
        available: Resources,
        running: impl IntoIterator<Item = Release>,
        capacity: Resources,
    ) -> Self {
        let mut base = available;
        let mut held = Vec::new();
        let releases = running
            .into_iter()
            .map(|r| {
                let x = r.resources;
                base = Resources::new(
                    base.cpu_millis + x.cpu_millis,
                    base.memory_mib + x.memory_mib,
                    base.gpu + x.gpu,
                );
                held.push((now, r.at.max(now), x));
                Reverse((r.at.max(now), x.cpu_millis, x.memory_mib, x.gpu))
            })
            .collect();
        Self {
            t: now,
            free: available,
            releases,
            capacity,
            walked: 0,
            work: [0.0; 3],
            base,
            held,
        }
    }

    /// When the next execution in dispatch order, reserving `resources` for `runtime_ms`,
    /// is expected to start; `None` when what runs never frees enough for it.
    pub fn next(&mut self, resources: Resources, runtime_ms: u64) -> Option<Millis> {
        while !resources.fits_in(&self.free) {
            let Reverse((at, cpu, memory, gpu)) = self.releases.pop()?;
            self.t = self.t.max(at);
            self.free = Resources::new(
                self.free.cpu_millis + cpu,
                self.free.memory_mib + memory,
                self.free.gpu + gpu,
            );
        }
        self.free = self.free.saturating_sub(&resources);
        let end = self.t.saturating_add(runtime_ms);
        self.releases.push(Reverse((
            end,
            resources.cpu_millis,
            resources.memory_mib,
            resources.gpu,
        )));
        self.walked += 1;
        self.held.push((self.t, end, resources));
        let r = runtime_ms as f64;
        self.work[0] += resources.cpu_millis as f64 * r;
        self.work[1] += resources.memory_mib as f64 * r;
        self.work[2] += resources.gpu as f64 * r;
        Some(self.t)
    }

    /// The earliest time from now at which `resources` fit for `runtime_ms` around everything
    /// walked so far, each where the walk placed it: where an execution that backfills would
    /// start. `None` when it never fits.
    pub fn gap(&self, resources: Resources, runtime_ms: u64) -> Option<Millis> {
        // Free resources as a step function of time.
        let mut events: Vec<(Millis, i8, Resources)> = Vec::with_capacity(2 * self.held.len());
        for &(from, until, r) in &self.held {
            if until > from {
                events.push((from, -1, r));
                events.push((until, 1, r));
            }
        }
        events.sort_unstable_by_key(|e| (e.0, e.1));
        let mut steps: Vec<(Millis, Resources)> = Vec::with_capacity(events.len() + 1);
        let now = self.held.first().map_or(self.t, |h| h.0).min(self.t);
        let (mut used, mut i) = ([0i128; 3], 0);
        let mut at = now;
        loop {
            while i < events.len() && events[i].0 <= at {
                let (_, sign, r) = events[i];
                let d = [r.cpu_millis, r.memory_mib, r.gpu].map(i128::from);
                for k in 0..3 {
                    used[k] -= i128::from(sign) * d[k];
                }
                i += 1;
            }
            let base = [self.base.cpu_millis, self.base.memory_mib, self.base.gpu].map(i128::from);
            let free = |k: usize| u64::try_from((base[k] - used[k]).max(0)).unwrap_or(0);
            steps.push((at, Resources::new(free(0), free(1), free(2))));
            match events.get(i) {
                Some(e) => at = e.0,
                None => break,
            }
        }
        // The first step from which it fits through `runtime_ms`: a step it does not fit in
        // rules out every start before that step's end.
        let mut start = 0;
        'search: while start < steps.len() {
            let from = steps[start].0;
            let mut j = start;
            while j < steps.len() && steps[j].0 < from.saturating_add(runtime_ms) {
                if !resources.fits_in(&steps[j].1) {
                    start = j + 1;
                    continue 'search;
                }
                j += 1;
            }
            return Some(from);
        }
        None
    }

    /// When an execution reserving `resources` for `runtime_ms` is expected to start with
    /// `skipped` more executions ahead of it than were walked, each taken to need the mean work
    /// of the ones walked, the pool running them back to back on its whole capacity.
    pub fn after(
        &mut self,
        skipped: usize,
        resources: Resources,
        runtime_ms: u64,
    ) -> Option<Millis> {
        let start = self.next(resources, runtime_ms)?;
        if skipped == 0 {
            return Some(start);
        }
        let capacity = [
            self.capacity.cpu_millis,
            self.capacity.memory_mib,
            self.capacity.gpu,
        ];
        let per_execution = self
            .work
            .iter()
            .zip(capacity)
            .filter(|(_, c)| *c > 0)
            .map(|(w, c)| w / self.walked.max(1) as f64 / c as f64)
            .fold(0.0, f64::max);
        let tail = (skipped as f64 * per_execution).round() as u64;
        Some(start.saturating_add(tail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORE: Resources = Resources::new(1_000, 1_024, 0);

    #[test]
    fn each_starts_when_the_pool_has_room_and_not_before_the_one_ahead() {
        // Two cores, one free, one held until t=500.
        let running = [Release {
            at: 500,
            resources: CORE,
        }];
        let mut f = Forecast::new(100, CORE, running, Resources::new(2_000, 2_048, 0));
        assert_eq!(f.next(CORE, 1_000), Some(100), "fits what is free now");
        assert_eq!(f.next(CORE, 1_000), Some(500), "when the running one ends");
        assert_eq!(
            f.next(CORE, 10),
            Some(1_100),
            "when the first of those ends"
        );
        assert_eq!(
            f.next(Resources::new(500, 1, 0), 10),
            Some(1_110),
            "when the third ends: the pool is full until then"
        );
    }

    #[test]
    fn nothing_frees_enough_is_no_start_and_ends_in_the_past_free_now() {
        let running = [Release {
            at: 10,
            resources: CORE,
        }];
        let mut f = Forecast::new(100, Resources::default(), running, CORE);
        assert_eq!(f.next(CORE, 50), Some(100));
        assert_eq!(f.next(Resources::new(2_000, 1, 0), 50), None);
    }

    #[test]
    fn the_executions_not_walked_add_their_mean_work_over_the_capacity() {
        let mut f = Forecast::new(
            0,
            Resources::new(2_000, 2_048, 0),
            [],
            Resources::new(2_000, 2_048, 0),
        );
        assert_eq!(f.next(CORE, 1_000), Some(0));
        assert_eq!(f.next(CORE, 1_000), Some(0));
        // 10 more of one core for 1 s each on two cores: 5 s after the target could start.
        assert_eq!(f.after(10, CORE, 1_000), Some(1_000 + 5_000));
    }
}
