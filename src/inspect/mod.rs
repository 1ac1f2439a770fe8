//! What the inspection API tells about the queue, the pool and one execution: the answers
//! ([`view`]), the memory of recent finishes ([`finished`]) and the recent past of the queue
//! and pool ([`history`]), and the functions that describe queued executions from the queue
//! itself. Read-only: nothing here changes the queue.

pub mod finished;
pub mod history;
pub mod view;

use std::time::Duration;

use schemars::Schema;

use crate::pool::Resources;
use crate::queue::{ExecutionQueue, Millis, QueuedExecution};
use crate::reason::{Reasons, WaitReason};
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
) -> Listing {
    let mut reasons = Reasons::new(free);
    let executions = queue
        .in_dispatch_order()
        .take(limit)
        .map(|entry| {
            let reason = reasons.next(entry.priority, entry.payload.resources());
            describe(queue, entry, reason, now, estimate)
        })
        .collect();
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
) -> Option<WaitingExecution> {
    let entry = queue.get(execution_id)?;
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
