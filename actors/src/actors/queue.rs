//! QueueActor: owns the priority queue, the per-user counts and the stale sweeper.

use std::time::{Duration, Instant};

use actix::prelude::*;
use coordinator_core::config::MaxWait;
use coordinator_core::estimate::waits::{Estimates, Ongoing, Waits};
use coordinator_core::events::{ErrorType, EventMetadata};
use coordinator_core::inspect::finished::Outcome;
use coordinator_core::inspect::view::WaitingExecution;
use coordinator_core::inspect::{self, Judge, Listing, Remaining};
use coordinator_core::planner::{Policy, Rules};
use coordinator_core::pool::Resources;
use coordinator_core::queue::{
    Cancelled, ExecutionQueue, Millis, QueueStats, QueuedExecution, Rejection,
};
use coordinator_core::reason::WaitReason;
use coordinator_core::Priority;
use tracing::{info, warn};

use crate::actors::egress::Publish;
use crate::actors::{InjectFault, RestartCount};
use crate::clock::now_millis;
use crate::inspect::Finishes;
use crate::state::outputs::Outputs;
use crate::state::pending::Pending;
use crate::telemetry;
use crate::telemetry::stats::ActorStats;

/// Queue a request; answers its true position or why it was refused.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Admitted, Rejection>")]
pub struct Enqueue {
    /// The execution.
    pub execution_id: String,
    /// The user the per-user limit counts against.
    pub user_id: String,
    /// Its level.
    pub priority: Priority,
    /// The request and what it will reserve.
    pub pending: Pending,
}

/// A queued request: its position, its estimated wait, and the broker's ack of its state
/// record.
pub struct Admitted {
    /// True position in dispatch order (0 = next).
    pub position: usize,
    /// How long it is expected to wait.
    pub estimate: Remaining,
    /// Resolves when the `queued` state record is acknowledged.
    pub state_ack: RecipientRequest<Publish>,
}

/// One execution a scheduling pass took from the queue. Until the queue has it back
/// ([`Return`]) or it is commanded ([`Settle`]), it still counts in the positions of the
/// executions behind it and against its user; only this handle ends that.
#[derive(Debug)]
pub struct Lease {
    /// Its level and arrival when taken: the queue's key for it.
    key: LeaseKey,
    entry: QueuedExecution<Pending>,
}

/// The queue's name for a lease, to settle it while the scheduler keeps the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseKey {
    priority: Priority,
    arrival: u64,
}

impl Lease {
    fn new(entry: QueuedExecution<Pending>) -> Self {
        Self {
            key: LeaseKey {
                priority: entry.priority,
                arrival: entry.arrival,
            },
            entry,
        }
    }

    /// The execution taken.
    pub fn entry(&self) -> &QueuedExecution<Pending> {
        &self.entry
    }

    /// Its key, for [`Settle`].
    pub fn key(&self) -> LeaseKey {
        self.key
    }
}

/// Take up to `max` executions in dispatch order (fewer when the queue holds fewer); with
/// `overdue`, the execution whose level's max wait ran out first comes first, wherever it is.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Vec<Lease>")]
pub struct Take {
    /// At most this many.
    pub max: usize,
    /// The max wait of each level, when the policy promotes executions past it.
    pub overdue: Option<MaxWait>,
    /// Stop once this many are taken and together they fit in what the pool last said is
    /// free: a pass that looks past its slots (backfill) needs the rest only when something
    /// does not fit, and taking and giving back a hundred executions per pass is most of what
    /// a pass costs behind a standing queue.
    pub enough: Option<usize>,
}

/// Leased executions are about to be commanded: they no longer count in positions. Answers,
/// for each, false when it was cancelled meanwhile (then it must not be commanded). The
/// scheduler keeps the leases: a command the broker refuses goes back with [`Return`].
#[derive(Message, Debug, Clone)]
#[rtype(result = "Vec<bool>")]
pub struct Settle(pub Vec<LeaseKey>);

/// Why leased executions go back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The plan left them where they were (not reached, behind a blocked execution, or
    /// blocked and keeping its place): same level, same arrival, state record unchanged.
    Kept,
    /// It did not fit and the policy demotes: one level lower when `queue.requeue_demotes`,
    /// same arrival, its state record rewritten.
    Refused,
    /// Its command was not acknowledged: same level and arrival, recorded as queued again.
    NotCommanded,
}

/// Give leased executions back to the queue, for the reason given.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Return {
    /// What goes back.
    pub leases: Vec<Lease>,
    /// Why.
    pub why: Why,
}

/// What the pool holds changed (sent by the resource actor): the wait estimator follows what
/// runs, learns run times from what ends and its own errors from what starts.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum PoolChanged {
    /// The pool holds exactly these (at the resource actor's start).
    Is {
        /// Free now.
        available: Resources,
        /// Every allocation.
        running: Vec<(String, Ongoing)>,
    },
    /// These started.
    Started {
        /// Free now.
        available: Resources,
        /// The allocations made.
        started: Vec<(String, Ongoing)>,
    },
    /// One ended.
    Ended {
        /// Free now.
        available: Resources,
        /// The execution that released what it held.
        execution_id: String,
        /// When.
        at: Millis,
    },
}

/// Cancel an execution: removed if queued, stopped if being scheduled.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Cancelled<Pending>")]
pub struct Cancel {
    /// The execution cancelled.
    pub execution_id: String,
}

/// Remember an execution as finished so a repeat of its request is a duplicate.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct RememberFinished {
    /// The execution that finished (rejected, dispatched elsewhere, restored as active).
    pub execution_id: String,
}

/// Whether a request id is queued or finished recently.
#[derive(Message, Debug, Clone)]
#[rtype(result = "bool")]
pub struct IsDuplicate {
    /// The execution asked about.
    pub execution_id: String,
}

/// Remove every execution queued longer than the stale timeout; answers them.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Vec<QueuedExecution<Pending>>")]
pub struct ExpireStale;

/// Executions expired since start.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "u64")]
pub struct ExpiredCount;

/// The queue's figures.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "QueueStats")]
pub struct QueueStatsQuery;

/// Every queued execution id in dispatch order (for tests and drills).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Vec<String>")]
pub struct QueuedIds;

/// The head of the queue, for the inspection API: the first `limit` executions in dispatch
/// order, each with why it waits on a pool with `free` allocatable.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Listing")]
pub struct QueueListing {
    /// At most this many executions.
    pub limit: usize,
    /// What the pool has allocatable now.
    pub free: Resources,
}

/// Where one execution is in the queue, for the inspection API.
#[derive(Message, Debug, Clone)]
#[rtype(result = "InQueue")]
pub struct QueueLookup {
    /// The execution asked about.
    pub execution_id: String,
    /// What the pool has allocatable now (for its reason).
    pub free: Resources,
}

/// The answer to [`QueueLookup`].
#[derive(Debug, Clone, PartialEq)]
pub enum InQueue {
    /// Queued: where, and why it waits.
    Queued(Box<WaitingExecution>),
    /// Taken by the scheduling pass running now.
    BeingScheduled,
    /// Neither.
    Absent,
}

/// The queue actor.
pub struct QueueActor {
    queue: ExecutionQueue<Pending>,
    stats: ActorStats,
    stats_interval: Duration,
    sweep_interval: Duration,
    /// Where state records and expiry events go.
    publish: Recipient<Publish>,
    outputs: Outputs,
    expired_total: u64,
    depth_gauges: telemetry::QueueDepthGauges,
    /// Where expiries are recorded for the inspection API.
    finishes: Finishes,
    /// The wait estimator.
    waits: Waits,
    /// The scheduler's rules, which the reasons follow.
    rules: Option<Rules>,
}

impl QueueActor {
    /// An actor owning `queue`; it writes every change to the state topic through `publish`,
    /// and the sweeper, every `sweep_interval`, publishes `execution_failed` for what expires.
    pub fn new(
        queue: ExecutionQueue<Pending>,
        publish: Recipient<Publish>,
        outputs: Outputs,
        stats_interval: Duration,
        sweep_interval: Duration,
    ) -> Self {
        Self {
            queue,
            stats: ActorStats::new("queue"),
            stats_interval,
            sweep_interval,
            publish,
            outputs,
            expired_total: 0,
            depth_gauges: telemetry::QueueDepthGauges::new(),
            finishes: Finishes::default(),
            waits: Waits::default(),
            rules: None,
        }
    }

    /// Works out why executions wait as a pass under `rules` decides it.
    pub fn judging_by(mut self, rules: Rules) -> Self {
        self.rules = Some(rules);
        self
    }

    /// How reasons are worked out: the planner's pass under `backfill`, a walk of the order
    /// otherwise.
    fn judge(&self) -> Judge {
        match self.rules {
            Some(rules) if rules.policy == Policy::Backfill => Judge::Plan {
                rules,
                running: self.waits.running_view(),
            },
            _ => Judge::Walk,
        }
    }

    /// Estimates waits on a pool of `capacity` allocatable (what an empty pool can give), as
    /// passes under `rules` start executions.
    pub fn estimating_on(mut self, capacity: Resources, rules: &Rules) -> Self {
        let within = match rules.policy {
            Policy::Backfill => rules.backfill_depth,
            _ => 0,
        };
        self.waits = Waits::new(capacity, within);
        self
    }

    /// Records the executions that expire in `finishes` (for the inspection API).
    pub fn recording_finishes(mut self, finishes: Finishes) -> Self {
        self.finishes = finishes;
        self
    }

    /// Expires stale entries: each gets `execution_failed` (timeout) and a state tombstone.
    fn sweep(&mut self) -> Vec<QueuedExecution<Pending>> {
        let now = now_millis();
        let expired = self.queue.expire(now);
        self.expired_total += expired.len() as u64;
        if !expired.is_empty() {
            metrics::counter!(telemetry::name::EXPIRED).increment(expired.len() as u64);
            self.observe();
        }
        let timeout = self.queue.limits().stale_timeout;
        for e in &expired {
            self.waits.forget(&e.execution_id);
            let waited = e.waited(now);
            info!(execution_id = %e.execution_id, waited_ms = waited.as_millis() as u64, "Execution expired in the queue.");
            let message = format!(
                "execution waited {} in the queue, longer than the stale timeout of {}; \
                 submit it again, at a higher priority or when the platform is less busy",
                humantime::format_duration(Duration::from_secs(waited.as_secs())),
                humantime::format_duration(timeout)
            );
            self.finishes
                .record(&e.execution_id, Outcome::Expired, Some(message.clone()));
            // Our own encoding: it decodes; if not, the failure still goes out, as ours.
            let metadata = e
                .payload
                .request(&e.execution_id)
                .map(|r| r.metadata)
                .unwrap_or_else(|_| EventMetadata::coordinator());
            let failed = self.outputs.failed(
                &e.execution_id,
                &metadata,
                ErrorType::Timeout,
                &message,
                e.payload.trace(),
            );
            self.send_logged(failed);
            self.send_logged(self.outputs.state_finished(&e.execution_id));
        }
        expired
    }

    /// Records an execution's return to the queue: its new `queued` state, or, when it was not
    /// queued again (cancelled while being scheduled), its tombstone.
    fn record_return(&mut self, id: &str, position: Option<usize>) {
        match (position, self.queue.get(id)) {
            (Some(_), Some(entry)) => self.send_logged(self.outputs.state_queued(entry)),
            _ if !self.queue.contains(id) => self.send_logged(self.outputs.state_finished(id)),
            _ => {}
        }
        self.observe();
    }

    /// Publishes the queue depth gauges, and tombstones for ids the duplicate memory forgot.
    fn observe(&mut self) {
        self.depth_gauges.set(&self.queue.depth());
        for id in self.queue.take_forgotten() {
            self.send_logged(self.outputs.state_forgotten(&id));
        }
    }

    /// Publishes without waiting for the answer; a failure is logged by the egress actor.
    fn send_logged(&self, message: Publish) {
        self.publish.do_send(message);
    }

    fn report(&mut self) {
        let s = self.queue.stats(now_millis(), 3);
        self.stats.report(s.total);
        let top_users = s
            .top_users
            .iter()
            .map(|(u, n)| format!("{u}={n}"))
            .collect::<Vec<_>>()
            .join(",");
        let depth = Priority::ALL
            .iter()
            .map(|p| format!("{}={}", p.name(), s.depth[p.index()]))
            .collect::<Vec<_>>()
            .join(",");
        let reasons = self.reason_counts();
        info!(
            target: "actor_stats",
            actor = "queue",
            depth_total = s.total,
            depth = %depth,
            oldest_wait_ms = s.oldest_wait.map_or(0, |d| d.as_millis() as u64),
            expired = self.expired_total,
            top_users = %top_users,
            reasons = %reasons,
            running_known = self.waits.running(),
            "Queue stats."
        );
    }
}

impl QueueActor {
    /// How many queued executions wait for each reason, as `kind=n,…` (kinds with none left
    /// out), on the pool as last reported.
    fn reason_counts(&self) -> String {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        let all = inspect::all_reasons(
            &self.queue,
            self.waits.available(),
            now_millis(),
            &self.judge(),
        );
        for r in all {
            let kind = match r {
                WaitReason::Starting => "starting",
                WaitReason::PoolFull { .. } => "pool_full",
                WaitReason::BehindHigherPriority => "behind_higher_priority",
                WaitReason::BehindEarlierArrivals => "behind_earlier_arrivals",
                WaitReason::ReservedFor { .. } => "reserved_for",
            };
            match counts.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((kind, 1)),
            }
        }
        counts
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Handler<PoolChanged> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: PoolChanged, _ctx: &mut Self::Context) {
        let started = Instant::now();
        match msg {
            PoolChanged::Is { available, running } => self.waits.pool_is(available, running),
            PoolChanged::Started { available, started } => {
                for (id, ongoing) in started {
                    self.waits.started(id, ongoing, available);
                }
            }
            PoolChanged::Ended {
                available,
                execution_id,
                at,
            } => self.waits.ended(&execution_id, at, available),
        }
        self.stats.record(started);
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.observe();
        ctx.run_interval(self.stats_interval, |act, _| act.report());
        ctx.run_interval(self.sweep_interval, |act, _| {
            act.sweep();
        });
    }
}

impl Supervised for QueueActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.stats.restarted();
        warn!(
            actor = "queue",
            restarts = self.stats.restarts(),
            queued = self.queue.len(),
            "Actor restarted; queue kept."
        );
    }
}

impl Handler<Enqueue> for QueueActor {
    type Result = Result<Admitted, Rejection>;

    fn handle(&mut self, msg: Enqueue, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let id = msg.execution_id;
        let result = self
            .queue
            .enqueue(
                id.clone(),
                msg.user_id,
                msg.priority,
                msg.pending,
                now_millis(),
            )
            .map(|position| {
                let now = now_millis();
                let estimate = match self.queue.get(&id) {
                    Some(entry) => {
                        let e = self.waits.estimate_new(&self.queue, entry, position, now);
                        Remaining {
                            median: e.median,
                            bound: e.bound.max(e.median),
                        }
                    }
                    None => Remaining {
                        median: Duration::ZERO,
                        bound: Duration::ZERO,
                    },
                };
                // Sent before any Dequeue is handled, so the state topic holds `queued`
                // before `allocated` for this execution.
                let record = self
                    .queue
                    .get(&id)
                    .map(|entry| self.outputs.state_queued(entry));
                let state_ack = match record {
                    Some(record) => self.publish.send(record),
                    None => self.publish.send(self.outputs.state_finished(&id)),
                };
                Admitted {
                    position,
                    estimate,
                    state_ack,
                }
            });
        self.observe();
        self.stats.record(started);
        result
    }
}

impl Handler<Take> for QueueActor {
    type Result = MessageResult<Take>;

    fn handle(&mut self, msg: Take, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let mut taken = Vec::with_capacity(msg.max.min(self.queue.len()));
        if let Some(max_wait) = msg.overdue.filter(|_| msg.max > 0) {
            let wait = |level| u64::try_from(max_wait.of(level).as_millis()).unwrap_or(u64::MAX);
            let overdue = self.queue.most_overdue(now_millis(), wait);
            if let Some(entry) = overdue.and_then(|arrival| self.queue.dequeue_at(arrival)) {
                taken.push(Lease::new(entry));
            }
        }
        let free = self.waits.available();
        let mut asked = taken
            .first()
            .map_or_else(Resources::default, |l: &Lease| l.entry.payload.resources);
        while taken.len() < msg.max {
            if msg.enough.is_some_and(|n| taken.len() >= n) && asked.fits_in(&free) {
                break;
            }
            match self.queue.dequeue() {
                Some(entry) => {
                    asked = asked.plus(&entry.payload.resources);
                    taken.push(Lease::new(entry));
                }
                None => break,
            }
        }
        if !taken.is_empty() {
            self.observe();
        }
        self.stats.record(started);
        MessageResult(taken)
    }
}

impl Handler<Return> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Return, _ctx: &mut Self::Context) {
        let started = Instant::now();
        for lease in msg.leases {
            let id = lease.entry.execution_id.clone();
            match msg.why {
                Why::Kept => {
                    // Its `queued` record still holds; only a cancellation meanwhile changes it.
                    if self.queue.put_back(lease.entry).is_none() && !self.queue.contains(&id) {
                        self.send_logged(self.outputs.state_finished(&id));
                    }
                }
                Why::Refused => {
                    let position = self.queue.requeue(lease.entry);
                    self.record_return(&id, position);
                }
                Why::NotCommanded => {
                    let position = self.queue.put_back(lease.entry);
                    self.record_return(&id, position);
                }
            }
        }
        self.observe();
        self.stats.record(started);
    }
}

impl Handler<Settle> for QueueActor {
    type Result = Vec<bool>;

    fn handle(&mut self, msg: Settle, _ctx: &mut Self::Context) -> Vec<bool> {
        let started = Instant::now();
        let go = msg
            .0
            .into_iter()
            .map(|key| self.queue.settle(key.priority, key.arrival))
            .collect();
        self.stats.record(started);
        go
    }
}

impl Handler<Cancel> for QueueActor {
    type Result = MessageResult<Cancel>;

    fn handle(&mut self, msg: Cancel, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let removed = self.queue.cancel(&msg.execution_id);
        self.waits.forget(&msg.execution_id);
        if matches!(removed, Cancelled::Queued(_)) {
            self.send_logged(self.outputs.state_finished(&msg.execution_id));
        }
        self.observe();
        self.stats.record(started);
        MessageResult(removed)
    }
}

impl Handler<RememberFinished> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: RememberFinished, _ctx: &mut Self::Context) {
        let started = Instant::now();
        self.queue.remember_finished(&msg.execution_id);
        self.observe();
        self.stats.record(started);
    }
}

impl Handler<IsDuplicate> for QueueActor {
    type Result = bool;

    fn handle(&mut self, msg: IsDuplicate, _ctx: &mut Self::Context) -> bool {
        let started = Instant::now();
        let duplicate = self.queue.is_duplicate(&msg.execution_id);
        self.stats.record(started);
        duplicate
    }
}

impl Handler<ExpireStale> for QueueActor {
    type Result = Vec<QueuedExecution<Pending>>;

    fn handle(&mut self, _msg: ExpireStale, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let expired = self.sweep();
        self.stats.record(started);
        expired
    }
}

impl Handler<QueueStatsQuery> for QueueActor {
    type Result = MessageResult<QueueStatsQuery>;

    fn handle(&mut self, _msg: QueueStatsQuery, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.queue.stats(now_millis(), 10))
    }
}

impl Handler<QueuedIds> for QueueActor {
    type Result = Vec<String>;

    fn handle(&mut self, _msg: QueuedIds, _ctx: &mut Self::Context) -> Vec<String> {
        let mut entries: Vec<_> = self
            .queue
            .iter()
            .map(|e| (e.priority, e.arrival, e.execution_id.clone()))
            .collect();
        entries.sort();
        entries.into_iter().map(|(_, _, id)| id).collect()
    }
}

impl Handler<QueueListing> for QueueActor {
    type Result = MessageResult<QueueListing>;

    fn handle(&mut self, msg: QueueListing, _ctx: &mut Self::Context) -> Self::Result {
        let now = now_millis();
        let estimates = Estimates {
            waits: &self.waits,
            queue: &self.queue,
        };
        MessageResult(inspect::listing(
            &self.queue,
            msg.limit,
            msg.free,
            now,
            &estimates,
            &self.judge(),
        ))
    }
}

impl Handler<QueueLookup> for QueueActor {
    type Result = MessageResult<QueueLookup>;

    fn handle(&mut self, msg: QueueLookup, _ctx: &mut Self::Context) -> Self::Result {
        let id = &msg.execution_id;
        let estimates = Estimates {
            waits: &self.waits,
            queue: &self.queue,
        };
        let judge = self.judge();
        let found = inspect::locate(&self.queue, id, msg.free, now_millis(), &estimates, &judge);
        MessageResult(match found {
            Some(waiting) => InQueue::Queued(Box::new(waiting)),
            None if self.queue.is_leased(id) => InQueue::BeingScheduled,
            None => InQueue::Absent,
        })
    }
}

impl Handler<ExpiredCount> for QueueActor {
    type Result = u64;

    fn handle(&mut self, _msg: ExpiredCount, _ctx: &mut Self::Context) -> u64 {
        self.expired_total
    }
}

impl Handler<RestartCount> for QueueActor {
    type Result = u64;

    fn handle(&mut self, _msg: RestartCount, _ctx: &mut Self::Context) -> u64 {
        self.stats.restarts()
    }
}

impl Handler<InjectFault> for QueueActor {
    type Result = ();

    fn handle(&mut self, _msg: InjectFault, ctx: &mut Self::Context) {
        self.stats.error();
        ctx.stop();
    }
}
