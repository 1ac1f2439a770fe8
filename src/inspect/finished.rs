//! The recent finishes: how each execution that left the coordinator's hands ended, for the
//! inspection API. Bounded: past its capacity the oldest is forgotten first.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::queue::Millis;

/// How many finishes the daemon keeps for the inspection API.
pub const RECENT_FINISHES: usize = 10_000;

/// How an execution ended, as far as the coordinator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The worker reported `execution_completed`.
    Completed,
    /// The worker reported `execution_failed`.
    Failed,
    /// The pod monitor reported `execution_timeout`.
    Timeout,
    /// `execution_cancelled` arrived: while it was queued, being scheduled or running, or
    /// before its request.
    Cancelled,
    /// It waited in the queue longer than `queue.stale_timeout`.
    Expired,
    /// Its request was refused (invalid, never fits, too large, queue full, user limit).
    Rejected,
}

/// One execution's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// How it ended.
    pub outcome: Outcome,
    /// When the coordinator learnt it.
    pub at: Millis,
    /// What the coordinator or the worker said about it.
    pub message: Option<String>,
}

/// The last finishes, by execution id, at most `capacity` of them.
#[derive(Debug, Clone)]
pub struct RecentFinishes {
    capacity: usize,
    by_id: FxHashMap<Arc<str>, Finish>,
    /// Ids, oldest first.
    order: VecDeque<Arc<str>>,
}

impl RecentFinishes {
    /// An empty memory of at most `capacity` finishes.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            by_id: FxHashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Records how `execution_id` ended, over what was recorded for it before (a later word
    /// wins: a completion after a cancellation is the last thing known).
    pub fn record(&mut self, execution_id: &str, finish: Finish) {
        if let Some(known) = self.by_id.get_mut(execution_id) {
            *known = finish;
            return;
        }
        if self.capacity == 0 {
            return;
        }
        let id: Arc<str> = Arc::from(execution_id);
        self.by_id.insert(id.clone(), finish);
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }

    /// Records `finish` unless something is known of `execution_id` already.
    pub fn record_first(&mut self, execution_id: &str, finish: Finish) {
        if !self.by_id.contains_key(execution_id) {
            self.record(execution_id, finish);
        }
    }

    /// How `execution_id` ended, if it is remembered.
    pub fn get(&self, execution_id: &str) -> Option<&Finish> {
        self.by_id.get(execution_id)
    }

    /// Finishes remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when none is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Default for RecentFinishes {
    fn default() -> Self {
        Self::new(RECENT_FINISHES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish(outcome: Outcome, at: Millis) -> Finish {
        Finish {
            outcome,
            at,
            message: None,
        }
    }

    #[test]
    fn the_oldest_is_forgotten_first_and_a_later_word_wins() {
        let mut f = RecentFinishes::new(2);
        f.record("a", finish(Outcome::Completed, 1));
        f.record("b", finish(Outcome::Rejected, 2));
        f.record("a", finish(Outcome::Failed, 3));
        assert_eq!(f.get("a").map(|f| f.outcome), Some(Outcome::Failed));
        assert_eq!(f.len(), 2);
        f.record("c", finish(Outcome::Expired, 4));
        assert_eq!(f.get("a"), None, "a was recorded first");
        assert_eq!(f.get("b").map(|f| f.at), Some(2));
        assert_eq!(f.get("c").map(|f| f.outcome), Some(Outcome::Expired));
        f.record_first("c", finish(Outcome::Cancelled, 5));
        assert_eq!(f.get("c").map(|f| f.outcome), Some(Outcome::Expired));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn no_capacity_remembers_nothing() {
        let mut f = RecentFinishes::new(0);
        f.record("a", finish(Outcome::Completed, 1));
        assert!(f.is_empty());
        assert_eq!(f.get("a"), None);
    }
}
