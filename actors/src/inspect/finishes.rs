//! [`Finishes`]: how recent executions ended, written by the actors as they learn it and read
//! by the inspection API. Shared rather than owned by an actor, like the metrics: it outlives
//! a rebuilt actor tree, and a write is one short lock.

use std::sync::{Arc, Mutex, MutexGuard};

use coordinator_core::inspect::finished::{Finish, Outcome, RecentFinishes};

use crate::clock::now_millis;

/// A handle on the memory of recent finishes; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Finishes(Arc<Mutex<RecentFinishes>>);

impl Finishes {
    fn lock(&self) -> MutexGuard<'_, RecentFinishes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `execution_id` ended now with `outcome`; `message` says why, when there is a word.
    pub fn record(&self, execution_id: &str, outcome: Outcome, message: Option<String>) {
        let finish = Finish {
            outcome,
            at: now_millis(),
            message,
        };
        self.lock().record(execution_id, finish);
    }

    /// As [`Finishes::record`], unless something is known of `execution_id` already (a
    /// cancellation of an execution that completed earlier says nothing new).
    pub fn record_first(&self, execution_id: &str, outcome: Outcome, message: Option<String>) {
        let finish = Finish {
            outcome,
            at: now_millis(),
            message,
        };
        self.lock().record_first(execution_id, finish);
    }

    /// How `execution_id` ended, if it is remembered.
    pub fn get(&self, execution_id: &str) -> Option<Finish> {
        self.lock().get(execution_id).cloned()
    }
}
