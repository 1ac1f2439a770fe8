//! The inspection API and the status page, on `daemon.metrics_addr` beside `/metrics`:
//!
//! - `GET /v1/queue?limit=N`: depth per level, the pool, the scheduler, and the first `N`
//!   queued executions in dispatch order, each with its position, levels, wait and reason;
//! - `GET /v1/executions/{id}`: where one execution is: queued, being scheduled, active, or
//!   finished recently (and how);
//! - `GET /v1/history`: depth and pool use, one sample a second over the last ten minutes;
//! - `GET /`: the status page, drawn in the browser from those three.
//!
//! Read-only. The answers come from the actors by messages ([`api`]), asked from a thread of
//! the inspection's own, so a slow answer never holds up `/metrics` or the health probes, and
//! the actors only ever copy out what is asked. [`Inspection`] outlives a rebuilt actor tree:
//! each tree [`attach`](Inspection::attach)es its actors when it starts and detaches them when
//! it stops; meanwhile the API says why it cannot answer.

pub mod api;
mod finishes;
pub mod page;

use std::sync::{Mutex, MutexGuard};

use actix::Recipient;
use coordinator_core::inspect::history::{History, Sample};

pub use finishes::Finishes;

use crate::actors::queue::{QueueListing, QueueLookup};
use crate::actors::resource::{AllocationLookup, PoolStatsQuery};
use crate::actors::scheduler::SchedulerStateQuery;

/// The actors the inspection API asks, as recipients so a test can stand in for them.
#[derive(Clone)]
pub struct InspectPeers {
    /// QueueActor: the head of the queue.
    pub listing: Recipient<QueueListing>,
    /// QueueActor: one execution.
    pub lookup: Recipient<QueueLookup>,
    /// ResourceActor: the pool's figures.
    pub pool: Recipient<PoolStatsQuery>,
    /// ResourceActor: what one execution holds.
    pub allocation: Recipient<AllocationLookup>,
    /// SchedulerActor: policy and mode.
    pub scheduler: Recipient<SchedulerStateQuery>,
}

/// What the inspection API answers from, for the life of the process.
#[derive(Default)]
pub struct Inspection {
    /// The running tree's actors; `None` while none runs (standby, recovering, starting).
    peers: Mutex<Option<InspectPeers>>,
    /// How recent executions ended, written by the actors.
    finishes: Finishes,
    /// Depth and pool use, sampled every second.
    history: Mutex<History>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inspection {
    /// The running tree's actors answer from now on.
    pub fn attach(&self, peers: InspectPeers) {
        *lock(&self.peers) = Some(peers);
    }

    /// No tree runs any more.
    pub fn detach(&self) {
        *lock(&self.peers) = None;
    }

    /// The memory of recent finishes, for the actors to write to.
    pub fn finishes(&self) -> Finishes {
        self.finishes.clone()
    }

    fn peers(&self) -> Option<InspectPeers> {
        lock(&self.peers).clone()
    }

    fn sampled(&self, sample: Sample) {
        lock(&self.history).push(sample);
    }

    fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }
}
