//! The dispatch order under fair share: by level, then within a level by user usage, FIFO
//! per user (see the module above).
//!
//! Per level it keeps the users with queued executions sorted by their ledger rank (which
//! moves only when the user is charged), and each user's arrivals in order. The first `k`
//! executions in order are found in O(k log k) plus a lookup per execution, however many
//! users and executions are queued: users are taken from the sorted set lazily and merged
//! with a small heap of the users already taken, whose usage grows with each execution taken.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::hash::Hash;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::UsageLedger;
use crate::queue::Millis;
use crate::{Priority, LEVELS};

/// `x` as a u64 whose order is `x`'s (for finite values and infinities).
fn ordered(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

#[derive(Debug, Clone)]
struct Level<U> {
    /// (rank, first queued arrival, user) of every user with an execution queued here.
    users: BTreeSet<(u64, u64, U)>,
    /// Each user's queued arrivals here.
    queued: FxHashMap<U, BTreeSet<u64>>,
}

impl<U: Ord + Hash + Clone> Level<U> {
    fn new() -> Self {
        Self {
            users: BTreeSet::new(),
            queued: FxHashMap::default(),
        }
    }
}

/// Queued executions in fair-share order, and the usage that orders them.
#[derive(Debug, Clone)]
pub struct FairOrder<U> {
    ledger: UsageLedger<U>,
    levels: [Level<U>; LEVELS],
    len: usize,
}

impl<U: Ord + Hash + Clone> FairOrder<U> {
    /// An empty order whose usage halves every `half_life`.
    pub fn new(half_life: Duration) -> Self {
        Self {
            ledger: UsageLedger::new(half_life),
            levels: std::array::from_fn(|_| Level::new()),
            len: 0,
        }
    }

    /// The usage that orders users.
    pub fn ledger(&self) -> &UsageLedger<U> {
        &self.ledger
    }

    /// Executions in the order.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an execution of `user` queued at `level` with arrival number `arrival`.
    pub fn insert(&mut self, level: Priority, user: &U, arrival: u64) {
        let rank = ordered(self.ledger.rank(user));
        let l = &mut self.levels[level.index()];
        let arrivals = l.queued.entry(user.clone()).or_default();
        let head = arrivals.first().copied();
        if !arrivals.insert(arrival) {
            return;
        }
        self.len += 1;
        if head.is_none_or(|h| arrival < h) {
            if let Some(h) = head {
                l.users.remove(&(rank, h, user.clone()));
            }
            l.users.insert((rank, arrival, user.clone()));
        }
    }

    /// Removes an execution; false when it was not in the order.
    pub fn remove(&mut self, level: Priority, user: &U, arrival: u64) -> bool {
        let rank = ordered(self.ledger.rank(user));
        let l = &mut self.levels[level.index()];
        let Some(arrivals) = l.queued.get_mut(user) else {
            return false;
        };
        let head = arrivals.first().copied();
        if !arrivals.remove(&arrival) {
            return false;
        }
        self.len -= 1;
        if head == Some(arrival) {
            l.users.remove(&(rank, arrival, user.clone()));
            match arrivals.first() {
                Some(&next) => {
                    l.users.insert((rank, next, user.clone()));
                }
                None => {
                    l.queued.remove(user);
                }
            }
        }
        true
    }

    /// Charges `user` `amount` cpu·seconds at `now` and moves its executions accordingly.
    pub fn charge(&mut self, user: &U, amount: f64, now: Millis) {
        let old = ordered(self.ledger.rank(user));
        self.ledger.charge(user, amount, now);
        let new = ordered(self.ledger.rank(user));
        if old == new {
            return;
        }
        for l in &mut self.levels {
            if let Some(&head) = l.queued.get(user).and_then(BTreeSet::first) {
                l.users.remove(&(old, head, user.clone()));
                l.users.insert((new, head, user.clone()));
            }
        }
    }

    /// The executions in dispatch order at `now`, as (level, arrival). `cost` is what an
    /// execution would charge its user (cpu·seconds), so the ones behind it of the same user
    /// count it.
    pub fn iter<F>(&self, now: Millis, cost: F) -> FairIter<'_, U, F>
    where
        F: Fn(Priority, u64) -> f64,
    {
        FairIter {
            order: self,
            now,
            cost,
            level: 0,
            users: self.levels[0].users.iter(),
            fresh: None,
            taken: BinaryHeap::new(),
            cursors: Vec::new(),
        }
    }
}

/// The iterator of [`FairOrder::iter`].
pub struct FairIter<'a, U, F> {
    order: &'a FairOrder<U>,
    now: Millis,
    cost: F,
    /// The level being walked.
    level: usize,
    /// Its users not taken yet, least usage first.
    users: std::collections::btree_set::Iter<'a, (u64, u64, U)>,
    /// The next of them, with its usage now: (usage, first arrival, user).
    fresh: Option<(u64, u64, &'a U)>,
    /// Its users taken: (usage plus what they took, next arrival, cursor).
    taken: BinaryHeap<Reverse<(u64, u64, usize)>>,
    /// Where each taken user's arrivals stand.
    cursors: Vec<std::collections::btree_set::Range<'a, u64>>,
}

impl<'a, U: Ord + Hash + Clone, F: Fn(Priority, u64) -> f64> Iterator for FairIter<'a, U, F> {
    type Item = (Priority, u64);

    fn next(&mut self) -> Option<(Priority, u64)> {
        loop {
            if self.fresh.is_none() {
                let ledger = &self.order.ledger;
                let now = self.now;
                self.fresh = self.users.next().map(|(rank, head, user)| {
                    let usage = ledger.usage_of_rank(f64::from_bits(unordered(*rank)), now);
                    (ordered(usage), *head, user)
                });
            }
            let from_heap = match (self.fresh, self.taken.peek()) {
                (Some(f), Some(Reverse(t))) => (t.0, t.1) < (f.0, f.1),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => {
                    self.level += 1;
                    let l = self.order.levels.get(self.level)?;
                    self.users = l.users.iter();
                    self.cursors.clear();
                    continue;
                }
            };
            let level = Priority::ALL[self.level];
            let (usage, arrival, cursor) = if from_heap {
                let Reverse(t) = self.taken.pop()?;
                t
            } else {
                let (usage, head, user) = self.fresh.take()?;
                let queued = &self.order.levels[self.level].queued;
                self.cursors.push(queued.get(user)?.range(head + 1..));
                (usage, head, self.cursors.len() - 1)
            };
            if let Some(&next) = self.cursors[cursor].next() {
                let more = f64::from_bits(unordered(usage)) + (self.cost)(level, arrival);
                self.taken.push(Reverse((ordered(more), next, cursor)));
            }
            return Some((level, arrival));
        }
    }
}

/// The inverse of [`ordered`]: the bits of the f64 it came from.
fn unordered(key: u64) -> u64 {
    if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    }
}
