//! The estimator as the daemon keeps it beside its queue: what runs in the pool (as the pool
//! reports it), the run times learned from what ended, and the estimate each queued execution
//! was given, to learn from its error when it starts.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::{forecast_start, Estimate, Estimator, Guess, Release};
use crate::inspect::{Remaining, WaitEstimate};
use crate::planner::Running;
use crate::pool::Resources;
use crate::queue::{ExecutionQueue, Millis, QueuedExecution};

/// What the estimator needs of a queued request.
pub trait Runs {
    /// What it reserves.
    fn reserves(&self) -> Resources;
    /// Its timeout, ms.
    fn timeout_ms(&self) -> u64;
    /// Its run-time keys ([`super::runtime_keys`]).
    fn runtime_keys(&self) -> (u64, u64);
}

/// An execution holding resources, as the pool reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ongoing {
    /// What it holds.
    pub resources: Resources,
    /// When it started and when it ends at the latest; `None` when restored from the state
    /// topic (not known).
    pub span: Option<(Millis, Millis)>,
    /// Its run-time keys, when known.
    pub keys: Option<(u64, u64)>,
}

/// The daemon's estimator and what it knows of the pool.
#[derive(Debug, Clone, Default)]
pub struct Waits {
    estimator: Estimator<u64, u64>,
    capacity: Resources,
    available: Resources,
    /// Shared ids: the sorted list below holds them too, without copies.
    running: FxHashMap<Arc<str>, Ongoing>,
    told: FxHashMap<String, (Guess, Millis)>,
    /// Executions a backfill pass looks at; 0 when the policy does not backfill.
    backfills_within: usize,
    /// Changes to what runs so far.
    changes: u64,
    /// What runs, in the order it is expected to end, as last sorted.
    ends: RefCell<Ends>,
}

/// What runs, in the order it is expected to end: sorted again when what runs has changed,
/// at most every [`RESORT_EVERY_MS`] once there are more than [`SORT_ALWAYS_UP_TO`]. Between
/// two sorts what ended since is skipped and what started since is not there yet (an estimate
/// then expects a little less to be freed).
#[derive(Debug, Clone, Default)]
struct Ends {
    /// When it was sorted, and after how many changes.
    sorted: Option<(Millis, u64)>,
    list: Vec<(Release, Arc<str>)>,
}

/// With up to this many running, what runs is sorted again on every change.
const SORT_ALWAYS_UP_TO: usize = 512;

/// Beyond that, at most this often (ms).
const RESORT_EVERY_MS: Millis = 100;

impl Waits {
    /// Nothing known yet, on a pool of `capacity` allocatable, under a policy that backfills
    /// within the first `backfills_within` executions (0: it does not).
    pub fn new(capacity: Resources, backfills_within: usize) -> Self {
        Self {
            capacity,
            available: capacity,
            backfills_within,
            ..Self::default()
        }
    }

    /// The pool now holds exactly `running`, with `available` free.
    pub fn pool_is(&mut self, available: Resources, running: Vec<(String, Ongoing)>) {
        self.available = available;
        self.running = running
            .into_iter()
            .map(|(id, r)| (Arc::from(id), r))
            .collect();
        self.changes += 1;
    }

    /// `execution_id` started holding `ongoing`; `available` is free now. Its estimate, if it
    /// had one, learns from its real wait.
    pub fn started(&mut self, execution_id: String, ongoing: Ongoing, available: Resources) {
        self.available = available;
        let since = ongoing.span.map(|(since, _)| since);
        match (self.told.remove(&execution_id), since) {
            (Some((guess, enqueued_at)), Some(since)) => {
                self.estimator
                    .started(guess, since.saturating_sub(enqueued_at), since)
            }
            (_, Some(since)) => self.estimator.dispatched(since),
            _ => {}
        }
        self.running.insert(Arc::from(execution_id), ongoing);
        self.changes += 1;
    }

    /// `execution_id` released what it held at `at`; `available` is free now.
    pub fn ended(&mut self, execution_id: &str, at: Millis, available: Resources) {
        self.available = available;
        self.changes += 1;
        if let Some(Ongoing {
            span: Some((since, ends_by)),
            keys: Some((key, group)),
            ..
        }) = self.running.remove(execution_id)
        {
            self.estimator.finished(
                key,
                group,
                at.saturating_sub(since),
                ends_by.saturating_sub(since),
            );
        }
    }

    /// `execution_id` left the queue without starting (cancelled, expired).
    pub fn forget(&mut self, execution_id: &str) {
        self.told.remove(execution_id);
    }

    /// Free now, as last reported.
    pub fn available(&self) -> Resources {
        self.available
    }

    /// How many run, as last reported.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// What runs, as a pass plans on it: with when each ends at the latest (never, when not
    /// known), in that order.
    pub fn running_view(&self) -> Vec<Running> {
        let mut running: Vec<Running> = self
            .running
            .values()
            .map(|r| Running {
                resources: r.resources,
                ends_by: r.span.map_or(Millis::MAX, |(_, ends_by)| ends_by),
            })
            .collect();
        running.sort_unstable_by_key(|r| r.ends_by);
        running
    }

    /// Estimates `entry`, queued now at `position`, remembers the estimate to learn from it,
    /// and returns it.
    pub fn estimate_new<T: Runs>(
        &mut self,
        queue: &ExecutionQueue<T>,
        entry: &QueuedExecution<T>,
        position: usize,
        now: Millis,
    ) -> Estimate {
        let estimate = self.estimate(queue, entry, position, now);
        self.told.insert(
            entry.execution_id.clone(),
            (estimate.guess, entry.enqueued_at),
        );
        estimate
    }

    /// Estimates `entry` at `position` in `queue` at `now`.
    pub fn estimate<T: Runs>(
        &self,
        queue: &ExecutionQueue<T>,
        entry: &QueuedExecution<T>,
        position: usize,
        now: Millis,
    ) -> Estimate {
        let e = &self.estimator;
        let mut ends = self.ends.borrow_mut();
        let stale = match ends.sorted {
            None => true,
            Some((at, changes)) => {
                changes != self.changes
                    && (self.running.len() <= SORT_ALWAYS_UP_TO
                        || now.abs_diff(at) >= RESORT_EVERY_MS)
            }
        };
        if stale {
            let mut list: Vec<(Release, Arc<str>)> = self
                .running
                .iter()
                .map(|(id, r)| {
                    let (key, group) = r.keys.unwrap_or_default();
                    let release = Release {
                        at: e.expected_end(&key, &group, r.span, now),
                        resources: r.resources,
                    };
                    (release, id.clone())
                })
                .collect();
            list.sort_unstable_by_key(|(r, _)| r.at);
            *ends = Ends {
                sorted: Some((now, self.changes)),
                list,
            };
        }
        let running = ends
            .list
            .iter()
            .filter(|(_, id)| self.running.contains_key(&**id))
            .map(|(r, _)| *r);
        let runtime = |p: &T| {
            let (key, group) = p.runtime_keys();
            e.runtime_ms(&key, &group, p.timeout_ms())
        };
        let ahead = queue
            .in_dispatch_order()
            .take_while(|ahead| ahead.execution_id != entry.execution_id)
            .map(|ahead| (ahead.payload.reserves(), runtime(&ahead.payload)));
        let start = forecast_start(
            now,
            self.available,
            running,
            self.capacity,
            ahead,
            position,
            entry.payload.reserves(),
            runtime(&entry.payload),
            self.backfills_within,
        );
        e.estimate(entry.priority.index(), position, start, now)
    }
}

/// The inspection API's estimates: what is left of each queued execution's wait.
pub struct Estimates<'a, T> {
    /// The estimator.
    pub waits: &'a Waits,
    /// The queue it estimates.
    pub queue: &'a ExecutionQueue<T>,
}

impl<T: Runs> WaitEstimate<T> for Estimates<'_, T> {
    fn remaining(
        &self,
        entry: &QueuedExecution<T>,
        position: usize,
        now: Millis,
    ) -> Option<Remaining> {
        let e = self.waits.estimate(self.queue, entry, position, now);
        Some(Remaining {
            median: e.median,
            bound: e.bound.max(e.median),
        })
    }
}

/// The median of an estimate, in seconds, as `execution_accepted` carries it.
pub fn seconds(d: Duration) -> f64 {
    (d.as_millis() as f64 / 100.0).round() / 10.0
}
