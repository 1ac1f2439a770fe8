//! SchedulerActor: the scheduling loop. Pulls the next execution from the queue, asks the pool
//! for its resources and publishes its `CreatePodCommand`; at most `max_concurrent_scheduling`
//! schedulings are in flight. Wakes on its interval and on every kick (arrival or release).

use std::time::{Duration, Instant};

use actix::prelude::*;
use coordinator_core::queue::QueuedExecution;
use coordinator_core::{Priority, LEVELS};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::actors::egress::{Handed, Publish, PublishBatch};
use crate::actors::queue::{Dequeue, PutBack, Requeue, ReturnUntried, Settle};
use crate::actors::resource::{AllocateInOrder, Release};
use crate::actors::{InjectFault, RestartCount};
use crate::clock::now_millis;
use crate::state::outputs::Outputs;
use crate::state::pending::Pending;
use crate::telemetry;
use crate::telemetry::sample::BoundedSample;
use crate::telemetry::stats::ActorStats;

/// Something changed (an arrival or a release): try to schedule now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Kick;

/// Stop starting new schedulings and answer once those in flight have finished.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Drain;

/// The scheduler's counters.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "SchedulerStats")]
pub struct SchedulerStatsQuery;

/// Queue wait of every execution commanded since start, per level (`Priority::ALL` order):
/// (count, p50, p99), from a bounded sample.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "[WaitSummary; LEVELS]")]
pub struct QueueWaits;

/// Queue waits of one level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitSummary {
    /// Executions commanded.
    pub count: u64,
    /// Median wait.
    pub p50: Duration,
    /// 99th percentile wait.
    pub p99: Duration,
}

/// A scheduling pass handed its commands to the egress (or ended without any); its slots are
/// free again (sent by the pass's task to the actor).
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct Scheduled(Pass);

/// The broker answered the commands of one pass (sent after [`Scheduled`] by the same task).
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct Acked(Vec<CommandAck>);

/// Counters of scheduling decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Executions commanded (command acknowledged by the broker).
    pub dispatched: u64,
    /// Executions put back for lack of resources.
    pub requeued: u64,
    /// Commands the broker did not take (execution put back).
    pub publish_failures: u64,
    /// Executions being scheduled now (dequeued, command not yet handed to the egress).
    pub in_flight: usize,
    /// Commands handed to the egress and not yet acknowledged.
    pub awaiting_ack: usize,
    /// True while the head of the queue waits for resources.
    pub blocked: bool,
}

/// The peers the scheduler talks to, as recipients so tests can stand in for them.
#[derive(Clone)]
pub struct SchedulerPeers {
    /// QueueActor: next executions.
    pub dequeue: Recipient<Dequeue>,
    /// QueueActor: put back (one level lower) after "insufficient".
    pub requeue: Recipient<Requeue>,
    /// QueueActor: put back, untried, behind a blocked execution.
    pub untried: Recipient<ReturnUntried>,
    /// QueueActor: commanded, no longer counts in positions.
    pub settle: Recipient<Settle>,
    /// QueueActor: put back at its level after a failed publish.
    pub put_back: Recipient<PutBack>,
    /// ResourceActor: reserve, in dispatch order.
    pub allocate: Recipient<AllocateInOrder>,
    /// ResourceActor: give back after a failed publish or a cancellation.
    pub release: Recipient<Release>,
    /// KafkaEgressActor: state record of an execution cancelled while being scheduled.
    pub publish: Recipient<Publish>,
    /// KafkaEgressActor: commands and state records.
    pub publish_batch: Recipient<PublishBatch>,
}

/// How a scheduling pass ended.
#[derive(Debug, Default)]
struct Pass {
    /// Slots it held.
    slots: usize,
    /// Commands handed to the egress.
    handed: usize,
    /// The queue had fewer executions than slots.
    drained: bool,
    /// An execution did not fit: put back, the pass ended there.
    blocked: bool,
    /// A peer was gone (stopping).
    peer_gone: bool,
}

/// What became of one handed command.
#[derive(Debug)]
enum CommandAck {
    /// Acknowledged.
    Commanded {
        priority: Priority,
        waited: Duration,
    },
    /// Not acknowledged: resources released; the execution to put back, unless a cancellation
    /// released it meanwhile.
    Failed(Option<Box<QueuedExecution<Pending>>>),
}

/// Commands handed and not yet acknowledged, at most; beyond it the scheduler waits for acks.
const MAX_AWAITING_ACK: usize = 10_000;

/// The scheduler actor.
pub struct SchedulerActor {
    peers: SchedulerPeers,
    outputs: Outputs,
    max_in_flight: usize,
    interval: Duration,
    stats_interval: Duration,
    counters: SchedulerStats,
    idle: bool,
    /// Waking from idle or blocked: one execution at a time until one is commanded.
    probing: bool,
    draining: bool,
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// Executions whose commands the broker refused, to put back once no pass runs.
    failed: Vec<QueuedExecution<Pending>>,
    command_metrics: telemetry::CommandMetrics,
    /// Queue waits of executions commanded since the last stats line, per level (ms).
    waits_ms: [BoundedSample; LEVELS],
    /// Queue waits since start, per level (ms).
    all_waits_ms: [BoundedSample; LEVELS],
    stats: ActorStats,
}

/// Queue-wait samples kept per level between two stats lines.
const WAIT_SAMPLES: usize = 4096;

/// Queue-wait samples kept per level since start.
const ALL_WAIT_SAMPLES: usize = 65_536;

/// "p50/p99" of `samples` in ms, or "-" when empty.
fn wait_summary(samples: &BoundedSample) -> String {
    match samples.percentiles() {
        Some(p) => format!("{}/{}", p.p50, p.p99),
        None => "-".to_owned(),
    }
}

impl SchedulerActor {
    /// A scheduler with at most `max_in_flight` executions being scheduled at once, waking
    /// every `interval`.
    pub fn new(
        peers: SchedulerPeers,
        outputs: Outputs,
        max_in_flight: usize,
        interval: Duration,
        stats_interval: Duration,
    ) -> Self {
        Self {
            peers,
            outputs,
            max_in_flight: max_in_flight.max(1),
            interval,
            stats_interval,
            counters: SchedulerStats::default(),
            idle: false,
            probing: false,
            draining: false,
            drain_waiters: Vec::new(),
            failed: Vec::new(),
            command_metrics: telemetry::CommandMetrics::new(),
            waits_ms: std::array::from_fn(|_| BoundedSample::new(WAIT_SAMPLES)),
            all_waits_ms: std::array::from_fn(|_| BoundedSample::new(ALL_WAIT_SAMPLES)),
            stats: ActorStats::new("scheduler"),
        }
    }

    /// Starts a scheduling pass over the free slots, unless the queue was seen empty, the head
    /// blocked, or too many commands wait for their acks.
    fn pass(&mut self, ctx: &mut Context<Self>) {
        // After the queue was seen empty or the head blocked, one execution probes; more follow
        // only once one was commanded, so an idle or blocked tick costs one dequeue.
        let limit = if self.probing { 1 } else { self.max_in_flight };
        let slots = limit.saturating_sub(self.counters.in_flight);
        if self.draining
            || self.idle
            || self.counters.blocked
            || slots == 0
            || self.counters.awaiting_ack >= MAX_AWAITING_ACK
        {
            return;
        }
        self.counters.in_flight += slots;
        let peers = self.peers.clone();
        let outputs = self.outputs.clone();
        let me = ctx.address();
        // Detached from the actor's context, so a restart never drops an execution that was
        // dequeued but not yet commanded.
        actix::spawn(schedule(peers, outputs, slots, me));
    }

    fn wake(&mut self, ctx: &mut Context<Self>) {
        if self.idle || self.counters.blocked {
            self.probing = true;
        }
        self.idle = false;
        self.counters.blocked = false;
        self.pass(ctx);
    }

    fn answer_drain(&mut self) {
        if self.draining && self.counters.in_flight == 0 && self.counters.awaiting_ack == 0 {
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// Puts back the executions whose commands failed, once no pass is running (one could
    /// take them again at once); the scheduler is blocked until the next tick meanwhile.
    fn put_back_failed(&mut self) {
        if self.counters.in_flight == 0 {
            for entry in self.failed.drain(..) {
                self.peers.put_back.do_send(PutBack(entry));
            }
        }
    }

    fn record_wait(&mut self, priority: Priority, waited: Duration) {
        let ms = waited.as_millis() as u64;
        self.waits_ms[priority.index()].push(ms);
        self.all_waits_ms[priority.index()].push(ms);
    }
}

/// One scheduling pass over `slots` executions: dequeue them, allocate in dispatch order until
/// one does not fit, hand the commands and state records to the egress, then report the acks.
async fn schedule(peers: SchedulerPeers, outputs: Outputs, slots: usize, me: Addr<SchedulerActor>) {
    let started = Instant::now();
    let (pass, handed) = hand_commands(&peers, &outputs, slots).await;
    let handed_count = pass.handed;
    me.do_send(Scheduled(pass));
    if let Some((commands, request)) = handed {
        telemetry::scheduling_duration(started.elapsed());
        // The egress answers once the messages are in the producer (or the transaction).
        let acks = request.await.unwrap_or_else(|_| Handed(Vec::new()));
        let outcomes = await_acks(&peers, commands, acks).await;
        debug_assert_eq!(outcomes.len(), handed_count);
        me.do_send(Acked(outcomes));
    }
}

/// A command handed to the egress, waiting for its ack.
struct HandedCommand {
    entry: QueuedExecution<Pending>,
    waited: Duration,
}

/// Dequeue, allocate, settle and hand over; `None` when nothing was handed.
async fn hand_commands(
    peers: &SchedulerPeers,
    outputs: &Outputs,
    slots: usize,
) -> (
    Pass,
    Option<(Vec<HandedCommand>, RecipientRequest<PublishBatch>)>,
) {
    let mut pass = Pass {
        slots,
        ..Pass::default()
    };
    let mut entries = match peers.dequeue.send(Dequeue { max: slots }).await {
        Ok(entries) => entries,
        Err(_) => {
            pass.peer_gone = true;
            return (pass, None);
        }
    };
    pass.drained = entries.len() < slots;
    if entries.is_empty() {
        return (pass, None);
    }
    let asks = entries
        .iter()
        .map(|e| (e.execution_id.clone(), e.payload.resources))
        .collect();
    let (allocations, refused) = match peers.allocate.send(AllocateInOrder(asks)).await {
        Ok(answer) => answer,
        Err(_) => {
            let _ = peers.untried.send(ReturnUntried(entries)).await;
            pass.peer_gone = true;
            return (pass, None);
        }
    };
    // Behind the first that did not fit: back at their level, untried (no demotion for them).
    let mut rest = entries.split_off(allocations.len());
    if let Some(insufficient) = refused {
        let blocked = rest.remove(0);
        debug!(execution_id = %blocked.execution_id, %insufficient, "Execution waits for resources.");
        let _ = peers.requeue.send(Requeue(blocked)).await;
        pass.blocked = true;
    }
    if !rest.is_empty() {
        let _ = peers.untried.send(ReturnUntried(rest)).await;
    }
    if entries.is_empty() {
        return (pass, None);
    }
    // Last check before the commands: a cancellation may have come in while we allocated.
    let keys = entries.iter().map(|e| (e.priority, e.arrival)).collect();
    let go = peers
        .settle
        .send(Settle(keys))
        .await
        .unwrap_or_else(|_| vec![true; entries.len()]);
    let now = now_millis();
    let mut commands = Vec::with_capacity(entries.len());
    let mut messages = Vec::with_capacity(entries.len() * 2);
    for ((entry, allocation), go) in entries.into_iter().zip(&allocations).zip(go) {
        let id = &entry.execution_id;
        if !go {
            info!(execution_id = %id, "Execution cancelled while being scheduled; not commanded.");
            drop_scheduled(peers, outputs, id).await;
            continue;
        }
        let command = match outputs.create_pod_command(&entry, allocation) {
            Ok(command) => command,
            Err(e) => {
                // Only a defect gets here: the request was encoded by the ingress.
                error!(execution_id = %id, error = %e, "Queued request does not decode; execution dropped.");
                drop_scheduled(peers, outputs, id).await;
                continue;
            }
        };
        messages.push(command);
        messages.push(outputs.state_allocated(&entry, allocation));
        let waited = entry.waited(now);
        commands.push(HandedCommand { entry, waited });
    }
    if commands.is_empty() {
        return (pass, None);
    }
    // Once in the egress's mailbox (unbounded) the commands are handed over: the slots are
    // free again. A gone egress answers no acks: every command counts as not acknowledged.
    let request = peers.publish_batch.send(PublishBatch(messages));
    pass.handed = commands.len();
    (pass, Some((commands, request)))
}

/// Gives back the resources of an execution that will not be commanded and records it finished.
async fn drop_scheduled(peers: &SchedulerPeers, outputs: &Outputs, id: &str) {
    let _ = peers
        .release
        .send(Release {
            execution_id: id.to_owned(),
        })
        .await;
    let _ = peers.publish.send(outputs.state_finished(id)).await;
}

/// Awaits the acks of handed commands; a command not acknowledged gives its resources back
/// and its execution goes back to its level, unless a cancellation released it meanwhile.
async fn await_acks(
    peers: &SchedulerPeers,
    commands: Vec<HandedCommand>,
    handed: Handed,
) -> Vec<CommandAck> {
    let mut acks = handed.0.into_iter();
    let mut outcomes = Vec::with_capacity(commands.len());
    for command in commands {
        let (command_ack, record_ack) = (acks.next(), acks.next());
        let (command_ok, record_ok) = match (command_ack, record_ack) {
            (Some(c), Some(r)) => {
                let (c, r) = futures::join!(c, r);
                (c.is_ok(), r.is_ok())
            }
            _ => (false, false),
        };
        let entry = command.entry;
        let id = &entry.execution_id;
        if !record_ok {
            // The command decides; a missing state record only matters to a restart.
            error!(execution_id = %id, "State record of a commanded execution not acknowledged.");
        }
        if command_ok {
            debug!(
                execution_id = %id,
                priority = entry.priority.value(),
                waited_ms = command.waited.as_millis() as u64,
                "Execution commanded."
            );
            outcomes.push(CommandAck::Commanded {
                priority: entry.priority,
                waited: command.waited,
            });
            continue;
        }
        let released = matches!(
            peers
                .release
                .send(Release {
                    execution_id: id.clone()
                })
                .await,
            Ok(Some(_))
        );
        if released {
            error!(execution_id = %id, "Command not acknowledged; resources released and execution put back.");
            outcomes.push(CommandAck::Failed(Some(Box::new(entry))));
        } else {
            info!(execution_id = %id, "Command not acknowledged for an execution cancelled meanwhile; dropped.");
            outcomes.push(CommandAck::Failed(None));
        }
    }
    outcomes
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.wake(ctx));
        ctx.run_interval(self.stats_interval, |act, _| {
            act.stats
                .report(act.counters.in_flight + act.counters.awaiting_ack);
            let waits: Vec<String> = Priority::ALL
                .iter()
                .map(|p| format!("{}={}", p.name(), wait_summary(&act.waits_ms[p.index()])))
                .collect();
            for samples in &mut act.waits_ms {
                samples.clear();
            }
            info!(
                target: "actor_stats",
                actor = "scheduler",
                dispatched = act.counters.dispatched,
                requeued = act.counters.requeued,
                publish_failures = act.counters.publish_failures,
                in_flight = act.counters.in_flight,
                awaiting_ack = act.counters.awaiting_ack,
                blocked = act.counters.blocked,
                queue_wait_p50_p99_ms = %waits.join(","),
                "Scheduler stats."
            );
        });
        self.pass(ctx);
    }
}

impl Supervised for SchedulerActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.stats.restarted();
        warn!(
            actor = "scheduler",
            restarts = self.stats.restarts(),
            in_flight = self.counters.in_flight,
            "Actor restarted."
        );
    }
}

impl Handler<Kick> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _msg: Kick, ctx: &mut Self::Context) {
        let started = Instant::now();
        self.wake(ctx);
        self.stats.record(started);
    }
}

impl Handler<Scheduled> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: Scheduled, ctx: &mut Self::Context) {
        let started = Instant::now();
        let pass = msg.0;
        self.counters.in_flight -= pass.slots;
        self.counters.awaiting_ack += pass.handed;
        if pass.handed > 0 {
            self.probing = false;
        }
        if pass.drained {
            self.idle = true;
        }
        if pass.blocked {
            telemetry::count(telemetry::name::REQUEUED);
            self.counters.requeued += 1;
            self.counters.blocked = true;
        }
        if pass.peer_gone {
            self.stats.error();
            self.counters.blocked = true;
        }
        self.put_back_failed();
        self.pass(ctx);
        self.answer_drain();
        self.stats.record(started);
    }
}

impl Handler<Acked> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: Acked, ctx: &mut Self::Context) {
        let started = Instant::now();
        for ack in msg.0 {
            self.counters.awaiting_ack -= 1;
            match ack {
                CommandAck::Commanded { priority, waited } => {
                    self.command_metrics.commanded(priority, waited);
                    self.counters.dispatched += 1;
                    self.record_wait(priority, waited);
                }
                CommandAck::Failed(entry) => {
                    self.stats.error();
                    self.command_metrics.failed();
                    self.counters.publish_failures += 1;
                    // Wait for the next tick rather than retrying at once against a failing
                    // broker: a pass running now must not take it again either.
                    self.counters.blocked = true;
                    self.failed.extend(entry.map(|e| *e));
                }
            }
        }
        self.put_back_failed();
        self.pass(ctx);
        self.answer_drain();
        self.stats.record(started);
    }
}

impl Handler<Drain> for SchedulerActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, _ctx: &mut Self::Context) -> Self::Result {
        self.draining = true;
        let (tx, rx) = oneshot::channel();
        self.drain_waiters.push(tx);
        self.answer_drain();
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<SchedulerStatsQuery> for SchedulerActor {
    type Result = MessageResult<SchedulerStatsQuery>;

    fn handle(&mut self, _msg: SchedulerStatsQuery, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.counters)
    }
}

impl Handler<QueueWaits> for SchedulerActor {
    type Result = MessageResult<QueueWaits>;

    fn handle(&mut self, _msg: QueueWaits, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(std::array::from_fn(|level| {
            let p = self.all_waits_ms[level].percentiles().unwrap_or_default();
            WaitSummary {
                count: p.count,
                p50: Duration::from_millis(p.p50),
                p99: Duration::from_millis(p.p99),
            }
        }))
    }
}

impl Handler<RestartCount> for SchedulerActor {
    type Result = u64;

    fn handle(&mut self, _msg: RestartCount, _ctx: &mut Self::Context) -> u64 {
        self.stats.restarts()
    }
}

impl Handler<InjectFault> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _msg: InjectFault, ctx: &mut Self::Context) {
        self.stats.error();
        ctx.stop();
    }
}
