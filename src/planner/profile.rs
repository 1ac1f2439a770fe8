//! What a pass expects to be free from now on: a step function of time, built from what is
//! free now, the releases of the running executions (each at its timeout) and the
//! reservations and starts the pass has made. It answers whether an execution fits
//! throughout an interval, and the earliest time it does.
//!
//! A backfill pass with one reservation needs none of this (what is left at the reservation's
//! time is one amount); it is built when a second reservation is made.

use crate::pool::Resources;
use crate::queue::Millis;

use super::Running;

/// A signed amount of each resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Amount {
    cpu: i64,
    memory: i64,
    gpu: i64,
}

impl Amount {
    fn of(r: &Resources, sign: i64) -> Amount {
        let signed = |v: u64| sign * i64::try_from(v).unwrap_or(i64::MAX);
        Amount {
            cpu: signed(r.cpu_millis),
            memory: signed(r.memory_mib),
            gpu: signed(r.gpu),
        }
    }

    fn add(&mut self, other: &Amount) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.gpu += other.gpu;
    }

    fn covers(&self, r: &Resources) -> bool {
        let at_least = |have: i64, want: u64| have >= 0 && have as u64 >= want;
        at_least(self.cpu, r.cpu_millis)
            && at_least(self.memory, r.memory_mib)
            && at_least(self.gpu, r.gpu)
    }
}

/// A change of what is free, at a time.
#[derive(Debug, Clone, Copy)]
struct Step {
    at: Millis,
    change: Amount,
}

/// Free resources over time, from `now` on.
#[derive(Debug, Clone)]
pub struct Profile {
    now: Millis,
    free: Amount,
    /// Sorted by time; none before `now`.
    steps: Vec<Step>,
}

impl Profile {
    /// `free` now, and `running` (any order) releasing at their `ends_by`; one past its
    /// timeout releases at once.
    pub fn new(now: Millis, free: Resources, running: &[Running]) -> Profile {
        let mut steps: Vec<Step> = running
            .iter()
            .map(|r| Step {
                at: r.ends_by.max(now),
                change: Amount::of(&r.resources, 1),
            })
            .collect();
        steps.sort_by_key(|s| s.at);
        Profile {
            now,
            free: Amount::of(&free, 1),
            steps,
        }
    }

    fn insert(&mut self, at: Millis, change: Amount) {
        let i = self.steps.partition_point(|s| s.at <= at);
        self.steps.insert(i, Step { at, change });
    }

    /// Takes `r` from now until `end` (a start this pass).
    pub fn start(&mut self, r: &Resources, end: Millis) {
        self.free.add(&Amount::of(r, -1));
        self.insert(end.max(self.now), Amount::of(r, 1));
    }

    /// Takes `r` from `at` until `end` (a reservation).
    pub fn reserve(&mut self, r: &Resources, at: Millis, end: Millis) {
        self.insert(at.max(self.now), Amount::of(r, -1));
        self.insert(end.max(at).max(self.now), Amount::of(r, 1));
    }

    /// `Ok` when `r` fits throughout `[start, end)`, else the first time in it that it does
    /// not. What frees at `start` counts; what takes at `end` does not.
    pub fn fits(&self, r: &Resources, start: Millis, end: Millis) -> Result<(), Millis> {
        let start = start.max(self.now);
        let mut level = self.free;
        let mut steps = self.steps.iter().peekable();
        while let Some(s) = steps.next_if(|s| s.at <= start) {
            level.add(&s.change);
        }
        if !level.covers(r) {
            return Err(start);
        }
        while let Some(s) = steps.next_if(|s| s.at < end) {
            level.add(&s.change);
            // Several steps at one time count together.
            if steps.peek().is_some_and(|next| next.at == s.at) {
                continue;
            }
            if !level.covers(r) {
                return Err(s.at);
            }
        }
        Ok(())
    }

    /// The earliest time from now that `r` fits for `duration` ms; `None` when it never
    /// does.
    pub fn earliest(&self, r: &Resources, duration: Millis) -> Option<Millis> {
        std::iter::once(self.now)
            .chain(self.steps.iter().map(|s| s.at))
            .find(|&t| self.fits(r, t, t.saturating_add(duration)).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(millis: u64) -> Resources {
        Resources::new(millis, 0, 0)
    }

    #[test]
    fn releases_add_and_reservations_take_for_their_interval() {
        let running = [
            Running {
                resources: cpu(300),
                ends_by: 50,
            },
            Running {
                resources: cpu(200),
                ends_by: 5,
            },
        ];
        let mut p = Profile::new(10, cpu(100), &running);
        // The one past its timeout frees at once: 300 from 10, 600 from 50.
        assert_eq!(p.fits(&cpu(300), 10, 1_000), Ok(()));
        assert_eq!(p.fits(&cpu(400), 10, 1_000), Err(10));
        assert_eq!(p.earliest(&cpu(600), 5), Some(50));
        assert_eq!(p.earliest(&cpu(601), 5), None);
        p.reserve(&cpu(600), 50, 80);
        // 0 free during [50, 80): nothing that runs into it fits; what ends by 50 does.
        assert_eq!(p.fits(&cpu(100), 10, 50), Ok(()));
        assert_eq!(p.fits(&cpu(100), 10, 51), Err(50));
        assert_eq!(p.earliest(&cpu(100), 60), Some(80));
        p.start(&cpu(300), 50);
        assert_eq!(p.fits(&cpu(1), 10, 11), Err(10));
        assert_eq!(p.earliest(&cpu(300), 1), Some(80));
    }
}
