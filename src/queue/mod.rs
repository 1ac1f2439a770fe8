//! The pending-execution queue: priority and FIFO order, admission limits, stale expiry and duplicate detection.
//!
//! Five priority levels, FIFO by arrival within a level, a maximum size and a per-user limit,
//! true dispatch positions, requeue one level lower keeping the arrival, stale expiry and
//! duplicate detection. Every operation that touches one entry is O(log n).

mod order;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use thiserror::Error;

pub use order::OrderSet;

use crate::{Priority, LEVELS};

/// Milliseconds since an epoch the caller chooses (the daemon uses the UNIX epoch).
pub type Millis = u64;

/// Admission and expiry limits of the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueLimits {
    /// Requests beyond this many queued executions are rejected.
    pub max_queue_size: usize,
    /// Queued executions allowed per user.
    pub max_executions_per_user: usize,
    /// Executions queued longer than this are expired.
    pub stale_timeout: Duration,
    /// Whether a requeue after "insufficient resources" lowers the priority one level.
    pub requeue_demotes: bool,
    /// How many finished execution ids are remembered for duplicate detection.
    pub dedup_capacity: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_queue_size: 10_000,
            max_executions_per_user: 100,
            stale_timeout: Duration::from_secs(3600),
            requeue_demotes: true,
            dedup_capacity: 100_000,
        }
    }
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    /// The queue already holds `max` executions.
    #[error("queue is full ({max} executions queued); retry later")]
    QueueFull {
        /// The configured maximum.
        max: usize,
    },
    /// The user already has `max` executions queued.
    #[error(
        "user {user} already has {max} executions queued, the per-user limit; \
         wait for some of them to start"
    )]
    UserLimit {
        /// The user, or "anonymous".
        user: String,
        /// The configured per-user maximum.
        max: usize,
    },
    /// The execution id is queued already or finished recently.
    #[error("execution {execution_id} is already queued or finished recently")]
    Duplicate {
        /// The repeated id.
        execution_id: String,
    },
}

/// One execution waiting in the queue, with the request it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedExecution<T> {
    /// The execution id (Kafka key).
    pub execution_id: String,
    /// The user the per-user limit counts against.
    pub user_id: String,
    /// The level it is queued at now (lower after a demoting requeue).
    pub priority: Priority,
    /// Arrival order: FIFO within a level, kept across requeues.
    pub arrival: u64,
    /// When it was first queued.
    pub enqueued_at: Millis,
    /// How many times it went back to the queue for lack of resources.
    pub requeues: u32,
    /// The request itself.
    pub payload: T,
}

impl<T> QueuedExecution<T> {
    /// How long it has waited at `now`.
    pub fn waited(&self, now: Millis) -> Duration {
        Duration::from_millis(now.saturating_sub(self.enqueued_at))
    }
}

/// Figures for the stats stream and metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueStats {
    /// Queued executions per level, in `Priority::ALL` order.
    pub depth: [usize; LEVELS],
    /// Queued executions in all.
    pub total: usize,
    /// Wait of the longest-queued execution.
    pub oldest_wait: Option<Duration>,
    /// Users with the most queued executions, most first (ties by name).
    pub top_users: Vec<(String, usize)>,
}

/// A dequeued execution whose scheduling is not settled.
#[derive(Debug, Clone)]
struct Lease {
    execution_id: Arc<str>,
    user_id: String,
    cancelled: bool,
}

/// What a cancellation found.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled<T> {
    /// It was queued and is removed.
    Queued(QueuedExecution<T>),
    /// It is being scheduled: [`ExecutionQueue::settle`] will answer false and a requeue will
    /// drop it, so it is never commanded.
    Leased,
    /// Neither queued nor being scheduled.
    NotFound,
}

impl<T> Cancelled<T> {
    /// The removed entry, when it was queued.
    pub fn queued(self) -> Option<QueuedExecution<T>> {
        match self {
            Cancelled::Queued(entry) => Some(entry),
            _ => None,
        }
    }
}

const PRIORITY_SHIFT: u32 = 60;

fn order_key(priority: Priority, arrival: u64) -> u64 {
    ((priority.index() as u64) << PRIORITY_SHIFT) | arrival
}

/// The priority queue of pending executions.
#[derive(Debug, Clone)]
pub struct ExecutionQueue<T> {
    limits: QueueLimits,
    /// Entries by arrival: the first is the oldest.
    /// Boxed: B-tree nodes hold a dozen values inline, so large values would waste the free
    /// slots of every node.
    entries: BTreeMap<u64, Box<QueuedExecution<T>>>,
    /// Arrival of each queued execution id.
    ids: FxHashMap<String, u64>,
    /// Dispatch order: (priority, arrival) packed into one key.
    order: OrderSet,
    /// Keys of executions dequeued whose scheduling is not settled yet: they are still ahead
    /// of later arrivals, so positions count them.
    leased: OrderSet,
    /// Who holds each lease: a leased execution still counts against its user's limit, and
    /// can be cancelled while it is being scheduled.
    leases: FxHashMap<u64, Lease>,
    /// The leased key of each leased execution id.
    lease_ids: FxHashMap<Arc<str>, u64>,
    depth: [usize; LEVELS],
    per_user: FxHashMap<String, usize>,
    recent: FxHashSet<Arc<str>>,
    recent_order: VecDeque<Arc<str>>,
    /// Ids forgotten by the bounded duplicate memory since the last [`take_forgotten`].
    ///
    /// [`take_forgotten`]: ExecutionQueue::take_forgotten
    forgotten: Vec<Arc<str>>,
    next_arrival: u64,
}

impl<T> ExecutionQueue<T> {
    /// An empty queue with these limits.
    pub fn new(limits: QueueLimits) -> Self {
        Self {
            limits,
            entries: BTreeMap::new(),
            ids: FxHashMap::default(),
            order: OrderSet::new(),
            leased: OrderSet::new(),
            leases: FxHashMap::default(),
            lease_ids: FxHashMap::default(),
            depth: [0; LEVELS],
            per_user: FxHashMap::default(),
            recent: FxHashSet::default(),
            recent_order: VecDeque::new(),
            forgotten: Vec::new(),
            next_arrival: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &QueueLimits {
        &self.limits
    }

    /// Number of queued executions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `execution_id` is queued.
    pub fn contains(&self, execution_id: &str) -> bool {
        self.ids.contains_key(execution_id)
    }

    /// Queued executions of `user`, counting those dequeued but not settled.
    pub fn user_count(&self, user: &str) -> usize {
        self.per_user.get(user).copied().unwrap_or(0)
    }

    /// True when `execution_id` is queued or finished recently.
    pub fn is_duplicate(&self, execution_id: &str) -> bool {
        self.contains(execution_id) || self.recent.contains(execution_id)
    }

    /// Remembers `execution_id` as finished, so a repeat of its request is a duplicate.
    /// Memory is bounded by `dedup_capacity`: the oldest ids are forgotten first.
    pub fn remember_finished(&mut self, execution_id: &str) {
        self.remember(Arc::from(execution_id));
    }

    fn remember(&mut self, id: Arc<str>) {
        if self.limits.dedup_capacity == 0 || !self.recent.insert(id.clone()) {
            return;
        }
        self.recent_order.push_back(id);
        while self.recent_order.len() > self.limits.dedup_capacity {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
                self.forgotten.push(old);
            }
        }
    }

    /// The ids the duplicate memory forgot since the last call (oldest first), so a durable
    /// copy of that memory can forget them too.
    pub fn take_forgotten(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.forgotten)
    }

    /// Queues a request; returns its position (0 = next to dispatch) or why it was refused.
    /// A refused request is remembered, so its redelivery is a duplicate, not a second refusal.
    pub fn enqueue(
        &mut self,
        execution_id: String,
        user_id: String,
        priority: Priority,
        payload: T,
        now: Millis,
    ) -> Result<usize, Rejection> {
        if self.is_duplicate(&execution_id) {
            return Err(Rejection::Duplicate { execution_id });
        }
        let rejection = if self.len() + self.leased() >= self.limits.max_queue_size {
            Some(Rejection::QueueFull {
                max: self.limits.max_queue_size,
            })
        } else if self.user_count(&user_id) >= self.limits.max_executions_per_user {
            Some(Rejection::UserLimit {
                user: user_id.clone(),
                max: self.limits.max_executions_per_user,
            })
        } else {
            None
        };
        if let Some(rejection) = rejection {
            self.remember_finished(&execution_id);
            return Err(rejection);
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        Ok(self.insert(QueuedExecution {
            execution_id,
            user_id,
            priority,
            arrival,
            enqueued_at: now,
            requeues: 0,
            payload,
        }))
    }

    /// Puts an entry back in its place by (priority, arrival) without admission checks.
    fn insert(&mut self, entry: QueuedExecution<T>) -> usize {
        let key = order_key(entry.priority, entry.arrival);
        self.order.insert(key);
        self.depth[entry.priority.index()] += 1;
        *self.per_user.entry(entry.user_id.clone()).or_insert(0) += 1;
        self.ids.insert(entry.execution_id.clone(), entry.arrival);
        self.entries.insert(entry.arrival, Box::new(entry));
        self.rank(key)
    }

    /// Rank in dispatch order, counting dequeued executions not yet settled.
    fn rank(&self, key: u64) -> usize {
        self.order.rank(key) + self.leased.rank(key)
    }

    /// Takes an entry out by arrival, keeping every index consistent. The user's count is
    /// left to the caller.
    fn take(&mut self, arrival: u64) -> Option<(QueuedExecution<T>, Arc<str>)> {
        let entry = *self.entries.remove(&arrival)?;
        self.order.remove(order_key(entry.priority, arrival));
        self.depth[entry.priority.index()] -= 1;
        self.ids.remove(&entry.execution_id);
        let id: Arc<str> = Arc::from(entry.execution_id.as_str());
        self.remember(id.clone());
        Some((entry, id))
    }

    /// Takes an entry out for good (cancel, expiry).
    fn remove(&mut self, arrival: u64) -> Option<QueuedExecution<T>> {
        let (entry, _) = self.take(arrival)?;
        self.uncount_user(&entry.user_id);
        Some(entry)
    }

    fn uncount_user(&mut self, user: &str) {
        if let Some(count) = self.per_user.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                self.per_user.remove(user);
            }
        }
    }

    /// Ends the lease of `key`, if any, and its count against its user.
    fn end_lease(&mut self, key: u64) -> Option<Lease> {
        if !self.leased.remove(key) {
            return None;
        }
        let lease = self.leases.remove(&key)?;
        self.lease_ids.remove(&lease.execution_id);
        self.uncount_user(&lease.user_id);
        Some(lease)
    }

    /// Removes and returns the next execution in dispatch order. Until it is [`settle`]d or
    /// [`requeue`]d it still counts in the positions of executions behind it.
    ///
    /// [`settle`]: ExecutionQueue::settle
    /// [`requeue`]: ExecutionQueue::requeue
    pub fn dequeue(&mut self) -> Option<QueuedExecution<T>> {
        let key = self.order.first()?;
        self.dequeue_at(key & ((1 << PRIORITY_SHIFT) - 1))
    }

    /// As [`dequeue`](ExecutionQueue::dequeue), for the queued execution of arrival
    /// `arrival` wherever it is in dispatch order; `None` when none is queued with it.
    pub fn dequeue_at(&mut self, arrival: u64) -> Option<QueuedExecution<T>> {
        let (entry, id) = self.take(arrival)?;
        let key = order_key(entry.priority, arrival);
        self.leased.insert(key);
        self.lease_ids.insert(id.clone(), key);
        self.leases.insert(
            key,
            Lease {
                execution_id: id,
                user_id: entry.user_id.clone(),
                cancelled: false,
            },
        );
        Some(entry)
    }

    /// Removes a queued execution that starts now, wherever it is in dispatch order (a start
    /// behind a reservation): the same as dequeuing it and settling it at once.
    pub fn dispatch(&mut self, execution_id: &str) -> Option<QueuedExecution<T>> {
        let arrival = *self.ids.get(execution_id)?;
        self.remove(arrival)
    }

    /// The queued executions in dispatch order, as (level, arrival), without those being
    /// scheduled. Each step is O(1) amortised.
    pub fn order(&self) -> impl Iterator<Item = (Priority, u64)> + '_ {
        self.order.iter().map(|key| {
            let level = Priority::ALL[(key >> PRIORITY_SHIFT) as usize];
            (level, key & ((1 << PRIORITY_SHIFT) - 1))
        })
    }

    /// The arrival of the queued execution whose wait passed `max_wait(its level)` earliest,
    /// if one has by `now`. Each level is served in arrival order, so only the first of each
    /// level is looked at: O(levels · log n).
    pub fn most_overdue(&self, now: Millis, max_wait: impl Fn(Priority) -> Millis) -> Option<u64> {
        Priority::ALL
            .iter()
            .filter_map(|&level| {
                let key = self.order.first_from(order_key(level, 0))?;
                if key >> PRIORITY_SHIFT != level.index() as u64 {
                    return None;
                }
                let arrival = key & ((1 << PRIORITY_SHIFT) - 1);
                let entry = self.entries.get(&arrival)?;
                let deadline = entry.enqueued_at.saturating_add(max_wait(level));
                (deadline <= now).then_some((deadline, arrival))
            })
            .min()
            .map(|(_, arrival)| arrival)
    }

    /// Ends the scheduling of a dequeued execution that is about to be commanded: it no longer
    /// counts in positions, in the queue size or against its user. Returns false when it was
    /// cancelled meanwhile: it must not be commanded.
    pub fn settle(&mut self, priority: Priority, arrival: u64) -> bool {
        self.end_lease(order_key(priority, arrival))
            .is_none_or(|lease| !lease.cancelled)
    }

    /// Dequeued executions not settled or requeued yet.
    pub fn leased(&self) -> usize {
        self.leased.len()
    }

    /// The next execution in dispatch order, left in place.
    pub fn peek(&self) -> Option<&QueuedExecution<T>> {
        let key = self.order.first()?;
        self.entries
            .get(&(key & ((1 << PRIORITY_SHIFT) - 1)))
            .map(|e| &**e)
    }

    /// Puts a dequeued execution back after "insufficient resources": one level lower when
    /// `requeue_demotes` (never below BACKGROUND), keeping its arrival. Admission limits do not
    /// apply, since it was admitted before. Returns its new position, or `None` if it was
    /// cancelled while being scheduled or an entry with the same id is queued already.
    pub fn requeue(&mut self, mut entry: QueuedExecution<T>) -> Option<usize> {
        entry.requeues += 1;
        let demote = self.limits.requeue_demotes;
        self.reinsert(entry, demote)
    }

    /// Puts a dequeued execution back at its level and arrival, as if it had never left (its
    /// command could not be published: not a lack of resources). `None` when it was cancelled
    /// meanwhile or an entry with its id is queued.
    pub fn put_back(&mut self, entry: QueuedExecution<T>) -> Option<usize> {
        self.reinsert(entry, false)
    }

    fn reinsert(&mut self, mut entry: QueuedExecution<T>, demote: bool) -> Option<usize> {
        let lease = self.end_lease(order_key(entry.priority, entry.arrival));
        if lease.is_some_and(|l| l.cancelled)
            || self.contains(&entry.execution_id)
            || self.entries.contains_key(&entry.arrival)
        {
            return None;
        }
        if demote {
            entry.priority = entry.priority.demoted();
        }
        Some(self.insert(entry))
    }

    /// Restores an entry recorded earlier (e.g. from a state log), with its arrival and level.
    /// Later arrivals are numbered after it. Returns `None` if its id or arrival is taken.
    pub fn restore(&mut self, entry: QueuedExecution<T>) -> Option<usize> {
        if self.contains(&entry.execution_id)
            || self.entries.contains_key(&entry.arrival)
            || entry.arrival >= (1 << PRIORITY_SHIFT)
        {
            return None;
        }
        self.next_arrival = self.next_arrival.max(entry.arrival + 1);
        Some(self.insert(entry))
    }

    /// Cancels an execution: removed when queued, marked when being scheduled.
    pub fn cancel(&mut self, execution_id: &str) -> Cancelled<T> {
        if let Some(arrival) = self.ids.get(execution_id).copied() {
            return self
                .remove(arrival)
                .map_or(Cancelled::NotFound, Cancelled::Queued);
        }
        match self.lease_ids.get(execution_id) {
            Some(key) => {
                if let Some(lease) = self.leases.get_mut(key) {
                    lease.cancelled = true;
                }
                Cancelled::Leased
            }
            None => Cancelled::NotFound,
        }
    }

    /// The true position of a queued execution in dispatch order (0 = next).
    pub fn position(&self, execution_id: &str) -> Option<usize> {
        let arrival = *self.ids.get(execution_id)?;
        let entry = self.entries.get(&arrival)?;
        Some(self.rank(order_key(entry.priority, arrival)))
    }

    /// The queued entry for `execution_id`.
    pub fn get(&self, execution_id: &str) -> Option<&QueuedExecution<T>> {
        self.entries.get(self.ids.get(execution_id)?).map(|e| &**e)
    }

    /// Removes and returns every execution queued longer than `stale_timeout` at `now`,
    /// oldest first. Cost is O(k log n) for k expired entries.
    pub fn expire(&mut self, now: Millis) -> Vec<QueuedExecution<T>> {
        let timeout = self.limits.stale_timeout;
        let mut expired = Vec::new();
        while let Some((&arrival, entry)) = self.entries.first_key_value() {
            if entry.waited(now) <= timeout {
                break;
            }
            if let Some(entry) = self.remove(arrival) {
                expired.push(entry);
            }
        }
        expired
    }

    /// Queued executions per level, in `Priority::ALL` order.
    pub fn depth(&self) -> [usize; LEVELS] {
        self.depth
    }

    /// Entries in arrival order (oldest first).
    pub fn iter(&self) -> impl Iterator<Item = &QueuedExecution<T>> {
        self.entries.values().map(|e| &**e)
    }

    /// Depth per level, oldest wait and the `top` users with most queued executions.
    pub fn stats(&self, now: Millis, top: usize) -> QueueStats {
        let mut top_users: Vec<(String, usize)> = self
            .per_user
            .iter()
            .map(|(user, count)| (user.clone(), *count))
            .collect();
        top_users.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top_users.truncate(top);
        QueueStats {
            depth: self.depth,
            total: self.len(),
            oldest_wait: self.entries.values().next().map(|e| e.waited(now)),
            top_users,
        }
    }

    /// The queued entries in dispatch order (those being scheduled left out), each step O(1)
    /// amortised: the first `k` cost O(k + log n).
    pub fn in_dispatch_order(&self) -> impl Iterator<Item = &QueuedExecution<T>> + '_ {
        self.order
            .iter()
            .filter_map(|key| self.entries.get(&(key & ((1 << PRIORITY_SHIFT) - 1))))
            .map(|e| &**e)
    }

    /// True while `execution_id` is being scheduled: dequeued, neither settled nor back.
    pub fn is_leased(&self, execution_id: &str) -> bool {
        self.lease_ids.contains_key(execution_id)
    }
}

#[cfg(test)]
mod tests;
