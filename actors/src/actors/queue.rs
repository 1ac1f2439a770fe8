//! QueueActor: owns the priority queue, the per-user counts and the stale sweeper.

use std::time::{Duration, Instant};

use actix::prelude::*;
use coordinator_core::events::{ErrorType, EventMetadata};
use coordinator_core::queue::{Cancelled, ExecutionQueue, QueueStats, QueuedExecution, Rejection};
use coordinator_core::Priority;
use tracing::{info, warn};

use crate::actors::egress::Publish;
use crate::actors::{InjectFault, RestartCount};
use crate::clock::now_millis;
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

/// A queued request: its position, and the broker's ack of its state record.
pub struct Admitted {
    /// True position in dispatch order (0 = next).
    pub position: usize,
    /// Resolves when the `queued` state record is acknowledged.
    pub state_ack: RecipientRequest<Publish>,
}

/// Take up to `max` executions in dispatch order (fewer when the queue holds fewer).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Vec<QueuedExecution<Pending>>")]
pub struct Dequeue {
    /// At most this many.
    pub max: usize,
}

/// Dequeued executions are about to be commanded: they no longer count in positions. Answers,
/// for each (level when dequeued, arrival), false when it was cancelled meanwhile (then it
/// must not be commanded).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Vec<bool>")]
pub struct Settle(pub Vec<(Priority, u64)>);

/// Give back executions a scheduling pass dequeued but never tried (the pass ended at a blocked
/// execution ahead of them): same level, same arrival, state record unchanged.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ReturnUntried(pub Vec<QueuedExecution<Pending>>);

/// Put an execution back after "insufficient resources" (one level lower when configured).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Option<usize>")]
pub struct Requeue(pub QueuedExecution<Pending>);

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

/// Put an execution back at its level after its command could not be published.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Option<usize>")]
pub struct PutBack(pub QueuedExecution<Pending>);

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
        }
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
            let waited = e.waited(now);
            info!(execution_id = %e.execution_id, waited_ms = waited.as_millis() as u64, "Execution expired in the queue.");
            let message = format!(
                "execution waited {} in the queue, longer than the stale timeout of {}; \
                 submit it again, at a higher priority or when the platform is less busy",
                humantime::format_duration(Duration::from_secs(waited.as_secs())),
                humantime::format_duration(timeout)
            );
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
        info!(
            target: "actor_stats",
            actor = "queue",
            depth_total = s.total,
            depth = %depth,
            oldest_wait_ms = s.oldest_wait.map_or(0, |d| d.as_millis() as u64),
            expired = self.expired_total,
            top_users = %top_users,
            "Queue stats."
        );
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
                    state_ack,
                }
            });
        self.observe();
        self.stats.record(started);
        result
    }
}

impl Handler<Dequeue> for QueueActor {
    type Result = MessageResult<Dequeue>;

    fn handle(&mut self, msg: Dequeue, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let mut taken = Vec::with_capacity(msg.max.min(self.queue.len()));
        while taken.len() < msg.max {
            match self.queue.dequeue() {
                Some(entry) => taken.push(entry),
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

impl Handler<ReturnUntried> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: ReturnUntried, _ctx: &mut Self::Context) {
        let started = Instant::now();
        for entry in msg.0 {
            let id = entry.execution_id.clone();
            // Its `queued` record still holds; only a cancellation meanwhile changes it.
            if self.queue.put_back(entry).is_none() && !self.queue.contains(&id) {
                self.send_logged(self.outputs.state_finished(&id));
            }
        }
        self.observe();
        self.stats.record(started);
    }
}

impl Handler<Requeue> for QueueActor {
    type Result = Option<usize>;

    fn handle(&mut self, msg: Requeue, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let id = msg.0.execution_id.clone();
        let position = self.queue.requeue(msg.0);
        self.record_return(&id, position);
        self.stats.record(started);
        position
    }
}

impl Handler<PutBack> for QueueActor {
    type Result = Option<usize>;

    fn handle(&mut self, msg: PutBack, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let id = msg.0.execution_id.clone();
        let position = self.queue.put_back(msg.0);
        self.record_return(&id, position);
        self.stats.record(started);
        position
    }
}

impl Handler<Settle> for QueueActor {
    type Result = Vec<bool>;

    fn handle(&mut self, msg: Settle, _ctx: &mut Self::Context) -> Vec<bool> {
        let started = Instant::now();
        let go = msg
            .0
            .into_iter()
            .map(|(priority, arrival)| self.queue.settle(priority, arrival))
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
