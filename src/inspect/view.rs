//! The answers of the inspection API, as they go on the wire (JSON), each with its JSON Schema
//! (`schemas/inspect_*.schema.json`).

use std::time::{Duration, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::inspect::finished::Outcome;
use crate::pool::{PoolStats, Resources};
use crate::queue::Millis;
use crate::reason::WaitReason;
use crate::{Priority, LEVELS};

/// A priority level, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Dispatched first.
    Critical,
    /// After critical.
    High,
    /// The default.
    Normal,
    /// After normal.
    Low,
    /// Dispatched last.
    Background,
}

impl From<Priority> for Level {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Critical => Level::Critical,
            Priority::High => Level::High,
            Priority::Normal => Level::Normal,
            Priority::Low => Level::Low,
            Priority::Background => Level::Background,
        }
    }
}

/// An amount of each resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Amounts {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Whole GPUs.
    pub gpu: u64,
}

impl From<Resources> for Amounts {
    fn from(r: Resources) -> Self {
        Self {
            cpu_millis: r.cpu_millis,
            memory_mib: r.memory_mib,
            gpu: r.gpu,
        }
    }
}

/// Queued executions per level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Depth {
    /// At critical.
    pub critical: usize,
    /// At high.
    pub high: usize,
    /// At normal.
    pub normal: usize,
    /// At low.
    pub low: usize,
    /// At background.
    pub background: usize,
}

impl From<[usize; LEVELS]> for Depth {
    fn from(d: [usize; LEVELS]) -> Self {
        let [critical, high, normal, low, background] = d;
        Self {
            critical,
            high,
            normal,
            low,
            background,
        }
    }
}

/// The pool now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PoolUse {
    /// Capacity, after overcommit.
    pub total: Amounts,
    /// Kept free: no allocation reaches into it.
    pub reserve: Amounts,
    /// Held by allocations.
    pub used: Amounts,
    /// Allocatable now: total less reserve less used.
    pub free: Amounts,
    /// Executions holding resources.
    pub active_allocations: usize,
}

impl From<PoolStats> for PoolUse {
    fn from(s: PoolStats) -> Self {
        Self {
            total: s.total.into(),
            reserve: s.reserve.into(),
            used: s.used.into(),
            free: s.available.into(),
            active_allocations: s.active_allocations,
        }
    }
}

/// When the scheduler starts passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerMode {
    /// Passes take as many executions as there are free slots.
    Running,
    /// Woken after idle or blocked: passes take one execution until one is commanded.
    Probing,
    /// The queue was seen empty; waiting for an arrival or a tick.
    Idle,
    /// An execution did not fit (or a command failed); waiting for a release, an arrival or
    /// a tick.
    Blocked,
    /// Stopping: no new passes.
    Draining,
}

/// The scheduler now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SchedulerState {
    /// `scheduler.policy`: what a pass does with an execution that does not fit.
    pub policy: String,
    /// When it starts passes.
    pub mode: SchedulerMode,
}

/// One queued execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WaitingExecution {
    /// The execution.
    pub execution_id: String,
    /// The user its per-user limit counts against (`"anonymous"` when the request had none).
    pub user_id: String,
    /// Its true rank in dispatch order, 0 next; executions being scheduled ahead of it count.
    pub position: usize,
    /// The level its request asked for.
    pub level_asked: Level,
    /// The level it is queued at now: lower than asked after demotions.
    pub level_now: Level,
    /// When it was first queued (RFC 3339).
    pub queued_at: String,
    /// How long it has waited so far.
    pub waited_seconds: f64,
    /// How long it is expected to wait still: the median, half the executions in its place
    /// start sooner; null when there is no estimate.
    pub estimated_wait_seconds: Option<f64>,
    /// Nine executions in ten in its place start sooner than this; null when there is no
    /// estimate.
    pub estimated_wait_bound_seconds: Option<f64>,
    /// How often a pass gave it back for lack of resources.
    pub requeues: u32,
    /// What it will reserve.
    pub resources: Amounts,
    /// Why it is not running yet.
    pub reason: WaitReason,
}

/// `GET /v1/queue`: the queue, the pool and the scheduler now, and the first queued
/// executions in dispatch order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueueAnswer {
    /// When the answer was made (RFC 3339).
    pub at: String,
    /// Queued executions per level (those being scheduled not counted).
    pub depth: Depth,
    /// Queued executions in all.
    pub queued: usize,
    /// Executions taken by the scheduling pass running now, not yet commanded or back.
    pub being_scheduled: usize,
    /// The pool.
    pub pool: PoolUse,
    /// The scheduler.
    pub scheduler: SchedulerState,
    /// How many executions were asked for at most.
    pub limit: usize,
    /// The first `limit` queued executions, in dispatch order.
    pub executions: Vec<WaitingExecution>,
}

/// `GET /v1/executions/{id}`: where one execution is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ExecutionAnswer {
    /// Waiting in the queue.
    Queued(WaitingExecution),
    /// Taken by the scheduling pass running now: about to be commanded or given back.
    Scheduling {
        /// The execution.
        execution_id: String,
    },
    /// Commanded: it holds resources until it completes, fails, times out or is cancelled.
    Active {
        /// The execution.
        execution_id: String,
        /// What it holds.
        resources: Amounts,
        /// When it was allocated (RFC 3339); null when it was restored from the state topic.
        since: Option<String>,
        /// How long it has held them; null when `since` is.
        running_seconds: Option<f64>,
        /// When its `timeout_seconds` run out (RFC 3339); null when `since` is.
        ends_by: Option<String>,
    },
    /// Finished recently: how it ended.
    Finished {
        /// The execution.
        execution_id: String,
        /// How it ended.
        outcome: Outcome,
        /// When the coordinator learnt it (RFC 3339).
        finished_at: String,
        /// What the coordinator or the worker said about it, if anything.
        message: Option<String>,
    },
}

/// One sample of `GET /v1/history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SampleView {
    /// When it was taken, in ms since the UNIX epoch.
    pub at_ms: u64,
    /// Queued executions per level.
    pub depth: Depth,
    /// Held by allocations.
    pub used: Amounts,
    /// Executions holding resources.
    pub active_allocations: usize,
}

/// `GET /v1/history`: queue depth and pool use over the last minutes, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryAnswer {
    /// When the answer was made (RFC 3339).
    pub at: String,
    /// Seconds between two samples.
    pub interval_seconds: f64,
    /// The pool's capacity, as of the latest sample.
    pub total: Amounts,
    /// The samples, oldest first; none while this instance does not own the queue.
    pub samples: Vec<SampleView>,
}

/// What the inspection API answers when it cannot answer the question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorAnswer {
    /// What went wrong, in a sentence.
    pub error: String,
}

/// `at` (ms since the UNIX epoch) as RFC 3339 with milliseconds.
pub fn rfc3339(at: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at)).to_string()
}

/// `d` in seconds, to the millisecond.
pub fn seconds(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}
