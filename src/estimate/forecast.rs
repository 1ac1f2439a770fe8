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

/// A walk down the queue, start time by start time. What runs comes in the order it is
/// expected to end and is read only as far as the walk needs it (an execution that does not
/// fit in what is free, a gap that does not open at once): with room to spare, thousands of
/// running executions cost nothing per estimate, and with a full pool only those that end
/// before the estimated one can start are read.
#[derive(Debug, Clone)]
pub struct Forecast<I: Iterator<Item = Release>> {
    /// No execution starts before the one ahead of it (priority, then arrival).
    t: Millis,
    now: Millis,
    free: Resources,
    /// Free now.
    available: Resources,
    /// Expected ends of what the walk placed.
    releases: BinaryHeap<Reverse<(Millis, u64, u64, u64)>>,
    /// What runs and has not been freed by the walk yet, in the order it ends.
    running: std::iter::Peekable<I>,
    /// What runs and the walk freed, in the order it ended.
    freed: Vec<Release>,
    /// What the pool holds in all, to turn work into time for the executions not walked.
    capacity: Resources,
    walked: u64,
    /// Resource × milliseconds of the executions walked, per cpu, memory and gpu.
    work: [f64; 3],
    /// Every interval the walk placed an execution in: (from, until, what).
    held: Vec<(Millis, Millis, Resources)>,
}

impl<I: Iterator<Item = Release> + Clone> Forecast<I> {
    /// A walk starting at `now` with `available` free and `running` (in the order it is
    /// expected to end) to end as given, on a pool of `capacity`.
    pub fn new(
        now: Millis,
        available: Resources,
        running: impl IntoIterator<IntoIter = I>,
        capacity: Resources,
    ) -> Self {
        Self {
            t: now,
            now,
            free: available,
            available,
            releases: BinaryHeap::new(),
            running: running.into_iter().peekable(),
            freed: Vec::new(),
            capacity,
            walked: 0,
            work: [0.0; 3],
            held: Vec::new(),
        }
    }

    /// Frees the next thing to end, what runs or what the walk placed; false when nothing
    /// is left to end.
    fn free_next(&mut self) -> bool {
        let placed = self.releases.peek().map(|Reverse((at, ..))| *at);
        let running = self.running.peek().map(|r| r.at.max(self.now));
        let (at, x) = match (placed, running) {
            (Some(p), Some(r)) if p <= r => self.pop_placed(),
            (_, Some(_)) => {
                let Some(r) = self.running.next() else {
                    return false;
                };
                self.freed.push(r);
                (r.at.max(self.now), r.resources)
            }
            (Some(_), None) => self.pop_placed(),
            (None, None) => return false,
        };
        self.t = self.t.max(at);
        self.free = self.free.plus(&x);
        true
    }

    fn pop_placed(&mut self) -> (Millis, Resources) {
        let Reverse((at, cpu, memory, gpu)) = self
            .releases
            .pop()
            .expect("peeked a placed release before popping it");
        (at, Resources::new(cpu, memory, gpu))
    }

    /// When the next execution in dispatch order, reserving `resources` for `runtime_ms`,
    /// is expected to start; `None` when what runs never frees enough for it.
    pub fn next(&mut self, resources: Resources, runtime_ms: u64) -> Option<Millis> {
        while !resources.fits_in(&self.free) {
            if !self.free_next() {
                return None;
            }
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
        // What runs only ever frees resources: if it fits from now without counting those, it
        // fits from now.
        let alone = first_fit(
            self.now,
            self.available,
            &self.held,
            std::iter::empty(),
            resources,
            runtime_ms,
        );
        if alone == Some(self.now) {
            return alone;
        }
        let now = self.now;
        let running = self
            .freed
            .iter()
            .copied()
            .chain(self.running.clone())
            .map(move |r| (r.at.max(now), r.resources));
        first_fit(
            self.now,
            self.available,
            &self.held,
            running,
            resources,
            runtime_ms,
        )
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

/// The earliest time from `now` at which `resources` fit for `runtime_ms`, with `available`
/// free now, the walk's `held` intervals taking and `running` (in the order it ends) giving
/// back: a scan of free resources as a step function of time, which reads `running` only up
/// to where it stops. `None` when it never fits.
fn first_fit(
    now: Millis,
    available: Resources,
    held: &[(Millis, Millis, Resources)],
    running: impl Iterator<Item = (Millis, Resources)>,
    resources: Resources,
    runtime_ms: u64,
) -> Option<Millis> {
    // The walk's (time, +1 frees / -1 takes, what), in time order.
    let mut placed: Vec<(Millis, i8, Resources)> = Vec::with_capacity(2 * held.len());
    for &(from, until, r) in held {
        if until > from {
            placed.push((from, -1, r));
            placed.push((until, 1, r));
        }
    }
    placed.sort_unstable_by_key(|e| (e.0, e.1));
    // Past the walk's last start only resources come back: once it fits then, it fits on.
    let last_take = placed.iter().rposition(|e| e.1 < 0);
    let mut placed = placed.into_iter().enumerate().peekable();
    let mut running = running.map(|(at, r)| (at, 1i8, r)).peekable();
    let mut free = [available.cpu_millis, available.memory_mib, available.gpu].map(i128::from);
    let mut at = now;
    // The start of the run of steps it has fitted in so far.
    let mut fitting: Option<Millis> = None;
    loop {
        // Everything that happens by `at`.
        loop {
            let next_placed = placed.peek().map(|(_, e)| *e).filter(|e| e.0 <= at);
            let next_running = running.peek().filter(|e| e.0 <= at).copied();
            let (_, sign, r) = match (next_placed, next_running) {
                (Some(p), Some(q)) if (p.0, p.1) <= (q.0, q.1) => placed.next().map(|(_, e)| e),
                (Some(_), None) => placed.next().map(|(_, e)| e),
                (_, Some(_)) => running.next(),
                (None, None) => break,
            }
            .expect("peeked an event before taking it");
            let d = [r.cpu_millis, r.memory_mib, r.gpu].map(i128::from);
            for k in 0..3 {
                free[k] += i128::from(sign) * d[k];
            }
        }
        if let Some(from) = fitting {
            if at >= from.saturating_add(runtime_ms) {
                return Some(from);
            }
        }
        let step = |k: usize| u64::try_from(free[k].max(0)).unwrap_or(0);
        if resources.fits_in(&Resources::new(step(0), step(1), step(2))) {
            let from = *fitting.get_or_insert(at);
            let takes_left = match (last_take, placed.peek()) {
                (Some(last), Some((next, _))) => *next <= last,
                _ => false,
            };
            if !takes_left {
                return Some(from);
            }
        } else {
            fitting = None;
        }
        at = match (placed.peek().map(|(_, e)| e), running.peek()) {
            (Some(p), Some(q)) => p.0.min(q.0),
            (Some(p), None) => p.0,
            (None, Some(q)) => q.0,
            // Nothing changes after the last step.
            (None, None) => return fitting,
        };
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
    fn a_gap_is_the_first_time_it_fits_for_its_whole_run() {
        // Two cores: one free now, one held until 1 s. The walk placed one core from 2 s to
        // 3 s (behind something bigger), so from 1 s to 2 s both are free, then one.
        let running = [Release {
            at: 1_000,
            resources: CORE,
        }];
        let two = Resources::new(2_000, 2_048, 0);
        let mut f = Forecast::new(0, CORE, running, two);
        assert_eq!(
            f.next(two, 1_000),
            Some(1_000),
            "both cores once the running one ends"
        );
        assert_eq!(f.next(CORE, 1_000), Some(2_000));
        // One core for 0.5 s fits now; two cores for 1 s only from 3 s; two cores never
        // between 1 s and 2 s for long enough.
        assert_eq!(f.gap(CORE, 500), Some(0));
        assert_eq!(f.gap(two, 1_000), Some(3_000));
        assert_eq!(f.gap(Resources::new(3_000, 1, 0), 1), None, "never fits");
    }

    #[test]
    fn what_runs_is_looked_at_only_when_the_walk_needs_it() {
        let looked = std::cell::Cell::new(0);
        let running = || {
            (0..1_000u64).map(|i| {
                looked.set(looked.get() + 1);
                Release {
                    at: 10_000 + i,
                    resources: CORE,
                }
            })
        };
        let big = Resources::new(1_010_000, 1_000_000, 0);
        // Room for ten more: the ten walked and the gap never need what runs.
        let mut f = Forecast::new(0, Resources::new(10_000, 10_240, 0), running(), big);
        for _ in 0..9 {
            assert_eq!(f.next(CORE, 1_000), Some(0));
        }
        assert_eq!(f.gap(CORE, 1_000), Some(0));
        assert_eq!(looked.get(), 0, "what runs was not looked at");
        // The tenth takes the last free core; the eleventh waits, and the first to end is
        // a walked one, before anything that runs: what runs is only peeked at.
        assert_eq!(f.next(CORE, 1_000), Some(0));
        assert_eq!(
            f.next(CORE, 100_000),
            Some(1_000),
            "when the first walked one ends"
        );
        assert_eq!(looked.get(), 1, "the first that runs, peeked at");
        // Thirteen cores: the nine walked ones left at 1 s, then four that run, read in the
        // order they end, and no more.
        assert_eq!(f.next(Resources::new(13_000, 1, 0), 1), Some(10_003));
        assert_eq!(looked.get(), 4, "what runs read only as far as needed");
        assert_eq!(f.gap(Resources::new(2_000, 1, 0), 1_000), Some(1_000));
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
