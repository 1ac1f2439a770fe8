//! The state topic's record: one definition of its wire form, written with what a queued
//! execution keeps and read back as a whole request.

use coordinator_core::events::ExecutionRequested;
use coordinator_core::Priority;
use serde::{Deserialize, Serialize};

use crate::kafka::trace::TraceContext;

/// One record of the state topic. Read back (the defaults) the request is a whole
/// [`ExecutionRequested`]; written, it is what the queued execution kept (absent only if that
/// does not decode, a defect: restore then skips the record), and the trace is borrowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "snake_case",
    bound(deserialize = "Request: Deserialize<'de>, Trace: Deserialize<'de>")
)]
pub enum StateRecord<Request = Box<ExecutionRequested>, Trace = Box<TraceContext>> {
    /// Waiting in the queue.
    Queued {
        /// Current level.
        priority: Priority,
        /// Arrival order.
        arrival: u64,
        /// First queued at, ms since the UNIX epoch.
        enqueued_at: u64,
        /// Requeues so far.
        requeues: u32,
        /// CPU to reserve, millicores.
        cpu_millis: u64,
        /// Memory to reserve, MiB.
        memory_mib: u64,
        /// GPUs to reserve.
        gpu: u64,
        /// The request.
        request: Request,
        /// The request's trace context, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<Trace>,
    },
    /// Gone: remembered only to recognise a repeat of its request.
    Finished {
        /// When it finished, ms since the UNIX epoch (restore keeps the newest).
        finished_at: u64,
    },
    /// Commanded; holds resources until completion, failure or cancellation.
    Allocated {
        /// CPU held, millicores.
        cpu_millis: u64,
        /// Memory held, MiB.
        memory_mib: u64,
        /// GPUs held.
        gpu: u64,
    },
}
