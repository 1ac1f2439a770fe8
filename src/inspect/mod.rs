//! What the inspection API tells about the queue, the pool and one execution: the answers
//! ([`view`]), the memory of recent finishes ([`finished`]) and the recent past of the queue
//! and pool ([`history`]), and the functions that describe queued executions from the queue
//! itself. Read-only: nothing here changes the queue.

pub mod finished;
pub mod history;
pub mod view;

use std::time::Duration;

use schemars::Schema;

use crate::planner::{self, Candidate, Fate, PoolView, Rules, Running};
use crate::pool::Resources;
use crate::queue::{ExecutionQueue, Millis, QueuedExecution};
use crate::reason::{shortfall, Reasons, WaitReason};
use crate::{Priority, LEVELS};
use view::{rfc3339, seconds, WaitingExecution};

/// Most executions `GET /v1/queue` lists when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 50;

/// Most executions `GET /v1/queue` lists at all.
pub const MAX_LIMIT: usize = 1_000;

/// What the inspection API needs of a queued request.
pub trait Waiting {
    /// The level the request asked for.
    fn asked(&self) -> Priority;
    /// What it will reserve.
    fn resources(&self) -> Resources;
    /// How long it may run at most.
    fn timeout(&self) -> Duration;
}

/// How reasons are worked out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Judge {
    /// By walking the dispatch order: what fits starts, the first that does not holds back
    /// the rest (`demote` and `strict`).
    #[default]
    Walk,
    /// By the planner's pass under `rules` (`backfill`), with what runs and when it ends at
    /// the latest: an execution behind a reservation may start, or be held for it.
    Plan {
        /// The policy and its knobs.
        rules: Rules,
        /// What runs.
        running: Vec<Running>,
    },
}

/// The wait still ahead of a queued execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining {
    /// Half the executions in its place start sooner.
    pub median: Duration,
    /// Nine in ten start sooner.
    pub bound: Duration,
}

/// Estimates how much longer a queued execution waits, for `estimated_wait_seconds`.
pub trait WaitEstimate<T> {
    /// The wait still ahead of `entry`, at `position` in dispatch order, at `now`; `None` when
    /// there is no estimate.
    fn remaining(
        &self,
        entry: &QueuedExecution<T>,
        position: usize,
        now: Millis,
    ) -> Option<Remaining>;
}

/// No estimate at all: every `estimated_wait_seconds` is null.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEstimate;

impl<T> WaitEstimate<T> for NoEstimate {
    fn remaining(&self, _: &QueuedExecution<T>, _: usize, _: Millis) -> Option<Remaining> {
        None
    }
}

/// The head of the queue, as `GET /v1/queue` lists it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Listing {
    /// Queued executions per level, in `Priority::ALL` order.
    pub depth: [usize; LEVELS],
    /// Queued executions in all.
    pub queued: usize,
    /// Executions taken by the pass running now.
    pub being_scheduled: usize,
    /// The first queued executions, in dispatch order.
    pub executions: Vec<WaitingExecution>,
}

/// The first `limit` executions of `queue` in dispatch order, each with its reason on a pool
/// with `free` allocatable, at `now`. O(limit · log n).
pub fn listing<T: Waiting>(
    queue: &ExecutionQueue<T>,
    limit: usize,
    free: Resources,
    now: Millis,
    estimate: &impl WaitEstimate<T>,
    judge: &Judge,
) -> Listing {
    let executions = match judge {
        Judge::Walk => {
            let mut reasons = Reasons::new(free);
            queue
                .in_dispatch_order()
                .take(limit)
                .map(|entry| {
                    let reason = reasons.next(entry.priority, entry.payload.resources());
                    describe(queue, entry, reason, now, estimate)
                })
                .collect()
        }
        Judge::Plan { rules, running } => {
            let window = rules.backfill_depth.max(1).max(limit);
            let entries: Vec<&QueuedExecution<T>> =
                queue.in_dispatch_order().take(window).collect();
            let reasons = planned(&entries, free, rules, running, now);
            entries
                .iter()
                .zip(reasons)
                .take(limit)
                .map(|(entry, reason)| describe(queue, entry, reason, now, estimate))
                .collect()
        }
    };
    Listing {
        depth: queue.depth(),
        queued: queue.len(),
        being_scheduled: queue.leased(),
        executions,
    }
}

/// The queued execution `execution_id`, with its reason on a pool with `free` allocatable, at
/// `now`; `None` when it is not queued. The walk from the head stops at the first execution
/// that does not fit, beyond which the reason depends only on the level: O(k · log n) for the
/// k executions ahead of it that fit.
pub fn locate<T: Waiting>(
    queue: &ExecutionQueue<T>,
    execution_id: &str,
    free: Resources,
    now: Millis,
    estimate: &impl WaitEstimate<T>,
    judge: &Judge,
) -> Option<WaitingExecution> {
    let entry = queue.get(execution_id)?;
    if let Judge::Plan { rules, running } = judge {
        // The pass looks at `backfill_depth` executions; the target, if further down, is
        // behind what the pass holds.
        let depth = rules.backfill_depth.max(1);
        let mut entries: Vec<&QueuedExecution<T>> = Vec::with_capacity(depth + 1);
        for ahead in queue.in_dispatch_order() {
            if ahead.execution_id == execution_id || entries.len() == depth {
                break;
            }
            entries.push(ahead);
        }
        entries.push(entry);
        let reason = planned(&entries, free, rules, running, now)
            .pop()
            .unwrap_or(WaitReason::Starting);
        return Some(describe(queue, entry, reason, now, estimate));
    }
    let mut reasons = Reasons::new(free);
    for ahead in queue.in_dispatch_order() {
        if reasons.blocked() || ahead.execution_id == execution_id {
            break;
        }
        reasons.next(ahead.priority, ahead.payload.resources());
    }
    let reason = reasons.next(entry.priority, entry.payload.resources());
    Some(describe(queue, entry, reason, now, estimate))
}

/// The reason of every queued execution, in dispatch order: for counting them.
pub fn all_reasons<T: Waiting>(
    queue: &ExecutionQueue<T>,
    free: Resources,
    now: Millis,
    judge: &Judge,
) -> Vec<WaitReason> {
    match judge {
        Judge::Walk => crate::reason::reasons(
            queue
                .in_dispatch_order()
                .map(|e| (e.priority, e.payload.resources())),
            free,
        ),
        Judge::Plan { rules, running } => {
            let entries: Vec<&QueuedExecution<T>> = queue.in_dispatch_order().collect();
            let window = rules.backfill_depth.max(1).min(entries.len());
            let mut reasons = planned(&entries[..window], free, rules, running, now);
            let holder = reasons
                .iter()
                .zip(&entries)
                .find(|(r, _)| matches!(r, WaitReason::PoolFull { .. }))
                .map(|(_, e)| e.priority);
            reasons.extend(entries[window..].iter().map(|e| match holder {
                Some(first) if first < e.priority => WaitReason::BehindHigherPriority,
                _ => WaitReason::BehindEarlierArrivals,
            }));
            reasons
        }
    }
}

/// The reasons of `entries` (the head of the queue, in dispatch order, the last one possibly
/// from further down) as the planner's pass under `rules` decides them, on a pool with `free`
/// allocatable and `running`.
fn planned<T: Waiting>(
    entries: &[&QueuedExecution<T>],
    free: Resources,
    rules: &Rules,
    running: &[Running],
    now: Millis,
) -> Vec<WaitReason> {
    let candidates: Vec<Candidate> = entries
        .iter()
        .map(|e| Candidate {
            priority: e.priority,
            resources: e.payload.resources(),
            timeout: e.payload.timeout(),
            enqueued_at: e.enqueued_at,
        })
        .collect();
    let pool = PoolView {
        available: free,
        running: running.to_vec(),
    };
    let plan = planner::plan(&candidates, &pool, *rules, now);
    // The first that cannot start holds the others back.
    let holder = plan.fates.iter().position(|f| {
        matches!(
            f,
            Fate::Reserved { .. } | Fate::Blocked { .. } | Fate::Demote
        )
    });
    let behind = |level: Priority| match holder.map(|h| candidates[h].priority) {
        Some(first) if first < level => WaitReason::BehindHigherPriority,
        _ => WaitReason::BehindEarlierArrivals,
    };
    plan.fates
        .iter()
        .zip(&candidates)
        .map(|(fate, c)| match fate {
            Fate::Start => WaitReason::Starting,
            Fate::Reserved { .. } | Fate::Blocked { .. } | Fate::Demote => {
                match shortfall(c.resources, free) {
                    Some((resource, short_by)) => WaitReason::PoolFull { resource, short_by },
                    None => behind(c.priority),
                }
            }
            Fate::Held { reservation } => WaitReason::ReservedFor {
                execution_id: entries[*reservation].execution_id.clone(),
            },
            Fate::Waits | Fate::Stay => behind(c.priority),
        })
        .collect()
}

fn describe<T: Waiting>(
    queue: &ExecutionQueue<T>,
    entry: &QueuedExecution<T>,
    reason: WaitReason,
    now: Millis,
    estimate: &impl WaitEstimate<T>,
) -> WaitingExecution {
    let position = queue.position(&entry.execution_id).unwrap_or_default();
    let remaining = estimate.remaining(entry, position, now);
    WaitingExecution {
        execution_id: entry.execution_id.clone(),
        user_id: entry.user_id.clone(),
        position,
        level_asked: entry.payload.asked().into(),
        level_now: entry.priority.into(),
        queued_at: rfc3339(entry.enqueued_at),
        waited_seconds: seconds(entry.waited(now)),
        estimated_wait_seconds: remaining.map(|r| seconds(r.median)),
        estimated_wait_bound_seconds: remaining.map(|r| seconds(r.bound)),
        requeues: entry.requeues,
        resources: entry.payload.resources().into(),
        reason,
    }
}

/// The answers that have a JSON Schema under `schemas/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `GET /v1/queue`.
    Queue,
    /// `GET /v1/executions/{id}`.
    Execution,
    /// `GET /v1/history`.
    History,
    /// Any error (4xx, 5xx).
    Error,
}

impl Answer {
    /// Every answer.
    pub const ALL: [Answer; 4] = [
        Answer::Queue,
        Answer::Execution,
        Answer::History,
        Answer::Error,
    ];

    /// The file name of its schema under `schemas/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            Answer::Queue => "inspect_queue.schema.json",
            Answer::Execution => "inspect_execution.schema.json",
            Answer::History => "inspect_history.schema.json",
            Answer::Error => "inspect_error.schema.json",
        }
    }

    /// Its JSON Schema.
    pub fn json_schema(self) -> Schema {
        match self {
            Answer::Queue => schemars::schema_for!(view::QueueAnswer),
            Answer::Execution => schemars::schema_for!(view::ExecutionAnswer),
            Answer::History => schemars::schema_for!(view::HistoryAnswer),
            Answer::Error => schemars::schema_for!(view::ErrorAnswer),
        }
    }
}

#[cfg(test)]
mod tests;
