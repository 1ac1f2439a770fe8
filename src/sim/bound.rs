//! The wait bound, checked on every execution of a replay.
//!
//! An execution is *overdue* once it has waited its level's `scheduler.max_wait`. Overdue
//! executions form a line in deadline order; under `backfill` the planner puts the head of
//! that line in front of the queue, where it takes the reservation. When one reaches the head
//! — at the first wake-up after its deadline, or when the one ahead of it starts — it must
//! start by the time everything running then has ended by its timeout. So no execution waits
//! longer than its `max_wait`, plus a tick, plus the time spent behind earlier overdue
//! executions, plus the longest time left to any execution running when it reached the head.
//! An execution that starts later, or is expired later, is a *bound violation*; one during
//! whose wait at the head an execution held its resources past its timeout (`[simulate]
//! overruns = "run"`) is counted as a *trace overrun* instead.

use std::collections::VecDeque;

use serde::Serialize;

use crate::queue::Millis;

/// What a replay checked as it went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Checks {
    /// Executions that waited their level's `max_wait`.
    pub overdue: u64,
    /// Overdue executions that started (or expired) after their bound.
    pub bound_violations: u64,
    /// Violations during which an execution ran past its timeout: the trace's doing.
    pub trace_overruns: u64,
    /// Executions that waited longer than their `max_wait`, a tick and the longest timeout of
    /// any execution of the run: the bound as it reads for one overdue execution at a time,
    /// which several overdue at once can exceed without a violation above.
    pub beyond_longest_timeout: u64,
    /// Executions that held a reservation at some pass.
    pub reserved: u64,
    /// Reservations a pass made that the same pass's starts break, given when what runs
    /// really ends: counted once per execution.
    pub reservations_broken: u64,
    /// Of those, the ones an execution running past its timeout breaks.
    pub reservations_broken_by_overruns: u64,
}

/// The overdue line and each execution's bound.
#[derive(Debug, Clone)]
pub(super) struct Bounds {
    /// Per level, the admitted jobs in arrival order, and the first not yet overdue.
    admitted: [Vec<u32>; 5],
    cursor: [usize; 5],
    /// Overdue jobs in deadline order; jobs that left the queue are skipped lazily.
    line: VecDeque<u32>,
    /// When each job must have started by, once it reached the head of the line.
    bound: Vec<Millis>,
    head_since: Vec<Millis>,
    /// [from, to) of every execution holding resources past its timeout.
    overruns: Vec<(Millis, Millis)>,
    /// A tick plus the longest timeout of any job.
    slack: Millis,
    pub(super) checks: Checks,
}

const NONE: Millis = Millis::MAX;

impl Bounds {
    pub(super) fn new(jobs: usize, slack: Millis) -> Self {
        Self {
            admitted: Default::default(),
            cursor: [0; 5],
            line: VecDeque::new(),
            bound: vec![NONE; jobs],
            head_since: vec![NONE; jobs],
            overruns: Vec::new(),
            slack,
            checks: Checks::default(),
        }
    }

    /// `job`, of `level`, is queued.
    pub(super) fn admitted(&mut self, level: usize, job: u32) {
        self.admitted[level].push(job);
    }

    /// At the start of a wake at `now`: the jobs whose deadline has passed join the line,
    /// earliest deadline first.
    pub(super) fn open(
        &mut self,
        now: Millis,
        deadline: impl Fn(u32) -> Millis,
        waiting: impl Fn(u32) -> bool,
    ) {
        let mut joined: Vec<(Millis, u32)> = Vec::new();
        for level in 0..5 {
            while let Some(&job) = self.admitted[level].get(self.cursor[level]) {
                let d = deadline(job);
                if waiting(job) && d > now {
                    break;
                }
                self.cursor[level] += 1;
                if waiting(job) {
                    joined.push((d, job));
                }
            }
        }
        joined.sort_unstable();
        for (_, job) in joined {
            self.checks.overdue += 1;
            self.line.push_back(job);
        }
    }

    /// The overdue jobs still waiting, in deadline order (the first `n`).
    pub(super) fn line<'a>(
        &'a self,
        waiting: impl Fn(u32) -> bool + 'a,
    ) -> impl Iterator<Item = u32> + 'a {
        self.line.iter().copied().filter(move |&j| waiting(j))
    }

    /// The earliest deadline after now of a job still waiting.
    pub(super) fn next_deadline(
        &mut self,
        deadline: impl Fn(u32) -> Millis,
        waiting: impl Fn(u32) -> bool,
    ) -> Option<Millis> {
        (0..5)
            .filter_map(|level| {
                while let Some(&job) = self.admitted[level].get(self.cursor[level]) {
                    if waiting(job) {
                        return Some(deadline(job));
                    }
                    self.cursor[level] += 1;
                }
                None
            })
            .min()
    }

    /// `job`, whose deadline is `deadline`, started at `now`, to run until `ends_by` at the
    /// latest (its timeout), holding its resources until `held_until`.
    pub(super) fn started(
        &mut self,
        job: u32,
        deadline: Millis,
        now: Millis,
        ends_by: Millis,
        held_until: Millis,
    ) {
        if now > deadline.saturating_add(self.slack) {
            self.checks.beyond_longest_timeout += 1;
        }
        if held_until > ends_by {
            self.overruns.push((ends_by, held_until));
        }
        self.check(job, now);
    }

    /// `job`, whose deadline is `deadline`, was expired at `now`.
    pub(super) fn expired(&mut self, job: u32, deadline: Millis, now: Millis) {
        if now > deadline.saturating_add(self.slack) {
            self.checks.beyond_longest_timeout += 1;
        }
        self.check(job, now);
    }

    fn check(&mut self, job: u32, now: Millis) {
        let j = job as usize;
        if self.bound[j] == NONE || now <= self.bound[j] {
            return;
        }
        let since = self.head_since[j];
        if self
            .overruns
            .iter()
            .any(|&(from, to)| from < now && to > since)
        {
            self.checks.trace_overruns += 1;
        } else {
            self.checks.bound_violations += 1;
        }
    }

    /// At the end of a wake at `now`: a job that reached the head of the line gets its bound,
    /// `running_until`: the latest `ends_by` of what runs now.
    pub(super) fn close(
        &mut self,
        now: Millis,
        running_until: Millis,
        waiting: impl Fn(u32) -> bool,
    ) {
        while let Some(&job) = self.line.front() {
            if waiting(job) {
                break;
            }
            self.line.pop_front();
        }
        if let Some(&head) = self.line.front() {
            let h = head as usize;
            if self.bound[h] == NONE {
                self.head_since[h] = now;
                self.bound[h] = now.max(running_until);
            }
        }
    }
}
