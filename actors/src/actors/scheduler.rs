//! SchedulerActor: the scheduling loop. A pass leases the next executions from the queue, views
//! the pool, plans with the core's planner (the decision the simulator replays), reserves what
//! the plan starts, gives the rest back saying why, and publishes the commands; at most
//! `max_concurrent_scheduling` executions are in a pass. Wakes on its interval and on every
//! kick (arrival or release).

use std::time::{Duration, Instant};

use actix::prelude::*;
use coordinator_core::planner::{self, Candidate, Fate, Policy, Rules};
use coordinator_core::pool::{Insufficient, Resources};
use coordinator_core::{Priority, LEVELS};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::actors::egress::{Handed, Publish, PublishBatch};
use crate::actors::queue::{Lease, Return, Settle, Take, Why};
use crate::actors::resource::{Release, Reservation, Reserve, ViewPool};
use crate::actors::{InjectFault, RestartCount};
use crate::clock::now_millis;
use crate::state::outputs::Outputs;
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

/// Queue wait of every execution commanded since start, per level asked for (`Priority::ALL`
/// order): count, p50, p99 (from a bounded sample), and how many were commanded lower.
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
    /// Of those, commanded at a lower level than they asked for (demoted while waiting).
    pub demoted: u64,
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
    /// QueueActor: lease the next executions.
    pub take: Recipient<Take>,
    /// QueueActor: give leased executions back, saying why.
    pub give_back: Recipient<Return>,
    /// QueueActor: leased executions about to be commanded.
    pub settle: Recipient<Settle>,
    /// ResourceActor: what the pool has free and what runs.
    pub view: Recipient<ViewPool>,
    /// ResourceActor: reserve for what a plan starts.
    pub reserve: Recipient<Reserve>,
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
        /// The level it was commanded at.
        priority: Priority,
        /// The level its request asked for.
        asked: Priority,
        waited: Duration,
    },
    /// Not acknowledged: resources released; the execution to give back, unless a
    /// cancellation released it meanwhile.
    Failed(Option<Box<Lease>>),
}

/// Commands handed and not yet acknowledged, at most; beyond it the scheduler waits for acks.
const MAX_AWAITING_ACK: usize = 10_000;

/// When the scheduler starts passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Passes take as many executions as there are free slots.
    Running,
    /// Woken after `Idle` or `Blocked`: a pass takes one execution, until one is commanded,
    /// so an idle or blocked wake-up costs one lease.
    Probing,
    /// The queue was seen empty: nothing until a kick or a tick.
    Idle,
    /// An execution did not fit, a command failed or a peer was gone: nothing until a kick or
    /// a tick (a failing broker is not retried at once).
    Blocked,
    /// Stopping: no new passes; drain waiters are answered once nothing is in flight.
    Draining,
}

/// What the scheduler has decided since start.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    dispatched: u64,
    requeued: u64,
    publish_failures: u64,
}

/// The scheduler actor.
pub struct SchedulerActor {
    peers: SchedulerPeers,
    outputs: Outputs,
    rules: Rules,
    max_in_flight: usize,
    interval: Duration,
    stats_interval: Duration,
    mode: Mode,
    /// Slots held by the pass running now (at most one runs at a time).
    in_flight: usize,
    /// Commands handed to the egress and not yet acknowledged.
    awaiting_ack: usize,
    counters: Counters,
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// Executions whose commands the broker refused, to give back once no pass runs.
    failed: Vec<Lease>,
    command_metrics: telemetry::CommandMetrics,
    /// Queue waits of executions commanded since the last stats line, per level (ms).
    waits_ms: [BoundedSample; LEVELS],
    /// Queue waits since start, per level (ms).
    all_waits_ms: [BoundedSample; LEVELS],
    /// Commanded below the level asked, since start, per level asked.
    demoted: [u64; LEVELS],
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
    /// every `interval`, planning under the `demote` policy (see [`SchedulerActor::rules`]).
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
            rules: Rules::from(Policy::Demote),
            max_in_flight: max_in_flight.max(1),
            interval,
            stats_interval,
            mode: Mode::Running,
            in_flight: 0,
            awaiting_ack: 0,
            counters: Counters::default(),
            drain_waiters: Vec::new(),
            failed: Vec::new(),
            command_metrics: telemetry::CommandMetrics::new(),
            waits_ms: std::array::from_fn(|_| BoundedSample::new(WAIT_SAMPLES)),
            all_waits_ms: std::array::from_fn(|_| BoundedSample::new(ALL_WAIT_SAMPLES)),
            demoted: [0; LEVELS],
            stats: ActorStats::new("scheduler"),
        }
    }

    /// Plans under `rules` (`scheduler.policy` and its knobs).
    pub fn rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    /// Starts a scheduling pass over the free slots, unless the mode says wait, a pass runs,
    /// or too many commands wait for their acks.
    fn pass(&mut self, ctx: &mut Context<Self>) {
        let limit = match self.mode {
            Mode::Running => self.max_in_flight,
            Mode::Probing => 1,
            Mode::Idle | Mode::Blocked | Mode::Draining => return,
        };
        if self.in_flight > 0 || self.awaiting_ack >= MAX_AWAITING_ACK {
            return;
        }
        self.in_flight = limit;
        // Backfill looks past the slots: the executions behind a blocked one are what it may
        // start.
        let lookahead = match self.rules.policy {
            Policy::Backfill => limit.max(self.rules.backfill_depth),
            Policy::Demote | Policy::Strict => limit,
        };
        let pass = PassRun {
            peers: self.peers.clone(),
            outputs: self.outputs.clone(),
            rules: self.rules,
            slots: limit,
            lookahead,
        };
        // Detached from the actor's context, so a restart never drops an execution that was
        // leased but not yet commanded.
        actix::spawn(schedule(pass, ctx.address()));
    }

    fn wake(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.mode, Mode::Idle | Mode::Blocked) {
            self.mode = Mode::Probing;
        }
        self.pass(ctx);
    }

    /// Waits for a kick or a tick in `mode`, unless stopping; `Blocked` is not lowered to
    /// `Idle` (a pass that found the queue empty after a failed command must not retry it).
    fn wait_in(&mut self, mode: Mode) {
        match (self.mode, mode) {
            (Mode::Draining, _) | (Mode::Blocked, Mode::Idle) => {}
            _ => self.mode = mode,
        }
    }

    fn answer_drain(&mut self) {
        if self.mode == Mode::Draining && self.in_flight == 0 && self.awaiting_ack == 0 {
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// Gives back the executions whose commands failed, once no pass is running (one could
    /// take them again at once); the scheduler is blocked until the next tick meanwhile.
    fn give_back_failed(&mut self) {
        if self.in_flight == 0 && !self.failed.is_empty() {
            self.peers.give_back.do_send(Return {
                leases: std::mem::take(&mut self.failed),
                why: Why::NotCommanded,
            });
        }
    }

    fn record_wait(&mut self, priority: Priority, waited: Duration) {
        let ms = waited.as_millis() as u64;
        self.waits_ms[priority.index()].push(ms);
        self.all_waits_ms[priority.index()].push(ms);
    }

    /// The figures tests and the stats line read.
    fn figures(&self) -> SchedulerStats {
        SchedulerStats {
            dispatched: self.counters.dispatched,
            requeued: self.counters.requeued,
            publish_failures: self.counters.publish_failures,
            in_flight: self.in_flight,
            awaiting_ack: self.awaiting_ack,
            blocked: self.mode == Mode::Blocked,
        }
    }
}

/// What one pass needs, detached from the actor.
struct PassRun {
    peers: SchedulerPeers,
    outputs: Outputs,
    rules: Rules,
    /// Most executions the pass starts.
    slots: usize,
    /// Most executions it looks at.
    lookahead: usize,
}

/// One scheduling pass: lease, plan, reserve, hand the commands and state records to the
/// egress, then report the acks.
async fn schedule(run: PassRun, me: Addr<SchedulerActor>) {
    let started = Instant::now();
    let (pass, handed) = hand_commands(&run).await;
    let handed_count = pass.handed;
    me.do_send(Scheduled(pass));
    if let Some((commands, request)) = handed {
        telemetry::scheduling_duration(started.elapsed());
        // The egress answers once the messages are in the producer (or the transaction).
        let acks = request.await.unwrap_or_else(|_| Handed(Vec::new()));
        let outcomes = await_acks(&run.peers, commands, acks).await;
        debug_assert_eq!(outcomes.len(), handed_count);
        me.do_send(Acked(outcomes));
    }
}

/// A command handed to the egress, waiting for its ack.
struct HandedCommand {
    lease: Lease,
    waited: Duration,
}

/// Gives `leases` back for `why`; nothing to do when there are none.
async fn give_back(peers: &SchedulerPeers, leases: Vec<Lease>, why: Why) {
    if !leases.is_empty() {
        let _ = peers.give_back.send(Return { leases, why }).await;
    }
}

/// Lease, plan, reserve, settle and hand over; `None` when nothing was handed.
async fn hand_commands(
    run: &PassRun,
) -> (
    Pass,
    Option<(Vec<HandedCommand>, RecipientRequest<PublishBatch>)>,
) {
    let peers = &run.peers;
    let mut pass = Pass {
        slots: run.slots,
        ..Pass::default()
    };
    // Backfill looks past the slots only when what it took first does not all fit.
    let enough = (run.lookahead > run.slots).then_some(run.slots);
    let take = Take {
        max: run.lookahead,
        overdue: (run.rules.policy == Policy::Backfill).then_some(run.rules.max_wait),
        enough,
    };
    let leases = match peers.take.send(take).await {
        Ok(leases) => leases,
        Err(_) => {
            pass.peer_gone = true;
            return (pass, None);
        }
    };
    // Exactly the slots taken may be a stop at enough (all fit), not an empty queue.
    pass.drained = match enough {
        Some(slots) if leases.len() == slots => false,
        _ => leases.len() < run.lookahead,
    };
    if leases.is_empty() {
        return (pass, None);
    }
    let asked = ViewPool {
        holding: leases
            .iter()
            .map(|l| l.entry().execution_id.clone())
            .collect(),
        wants: leases.iter().map(|l| l.entry().payload.resources).collect(),
        running: run.rules.policy != Policy::Demote,
    };
    let snapshot = match peers.view.send(asked).await {
        Ok(snapshot) => snapshot,
        Err(_) => {
            give_back(peers, leases, Why::Kept).await;
            pass.peer_gone = true;
            return (pass, None);
        }
    };
    // An execution that holds an allocation already gets it back, so it asks for nothing.
    let candidates: Vec<Candidate> = leases
        .iter()
        .zip(&snapshot.holding)
        .map(|(lease, holding)| {
            let entry = lease.entry();
            Candidate {
                priority: entry.priority,
                resources: if *holding {
                    Resources::default()
                } else {
                    entry.payload.resources
                },
                timeout: entry.payload.timeout,
                enqueued_at: entry.enqueued_at,
            }
        })
        .collect();
    let now = now_millis();
    let plan = planner::plan(&candidates, &snapshot.view, run.rules, now);
    let mut starts = Vec::new();
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    let mut capped = false;
    for (lease, fate) in leases.into_iter().zip(plan.fates) {
        match fate {
            Fate::Start if starts.len() < run.slots => starts.push(lease),
            // More start than the pass has slots: the next pass takes them.
            Fate::Start => {
                capped = true;
                kept.push(lease);
            }
            Fate::Stay | Fate::Held { .. } | Fate::Waits => kept.push(lease),
            Fate::Demote | Fate::Blocked { .. } | Fate::Reserved { .. } => {
                let entry = lease.entry();
                let insufficient = Insufficient {
                    requested: entry.payload.resources,
                    available: snapshot.view.available,
                };
                debug!(execution_id = %entry.execution_id, %insufficient, ?fate, "Execution waits for resources.");
                pass.blocked = true;
                if fate == Fate::Demote {
                    refused.push(lease);
                } else {
                    kept.push(lease);
                }
            }
        }
    }
    if capped {
        // More can start now: the next pass goes on at once, whatever else the plan said.
        pass.blocked = false;
        pass.drained = false;
    }
    let reservations = starts
        .iter()
        .map(|lease| {
            let entry = lease.entry();
            Reservation {
                execution_id: entry.execution_id.clone(),
                resources: entry.payload.resources,
                ends_by: now.saturating_add(entry.payload.timeout.as_millis() as u64),
                runtime_keys: entry.payload.runtime_keys,
            }
        })
        .collect();
    let answers = match peers.reserve.send(Reserve(reservations)).await {
        Ok(answers) => answers,
        Err(_) => {
            kept.append(&mut starts);
            give_back(peers, refused, Why::Kept).await;
            give_back(peers, kept, Why::Kept).await;
            pass.peer_gone = true;
            return (pass, None);
        }
    };
    let mut allocated = Vec::with_capacity(starts.len());
    for (lease, answer) in starts.into_iter().zip(answers) {
        match answer {
            Ok(allocation) => allocated.push((lease, allocation)),
            Err(insufficient) => {
                // Only one pass runs at a time and only passes allocate: the pool changed
                // under the plan, which would be a defect. It keeps its place.
                error!(execution_id = %lease.entry().execution_id, %insufficient, "The pool refused an execution the plan started.");
                pass.blocked = true;
                kept.push(lease);
            }
        }
    }
    give_back(peers, refused, Why::Refused).await;
    give_back(peers, kept, Why::Kept).await;
    if allocated.is_empty() {
        return (pass, None);
    }
    // Last check before the commands: a cancellation may have come in while we allocated.
    let keys = allocated.iter().map(|(lease, _)| lease.key()).collect();
    let go = peers
        .settle
        .send(Settle(keys))
        .await
        .unwrap_or_else(|_| vec![true; allocated.len()]);
    let outputs = &run.outputs;
    let mut commands = Vec::with_capacity(allocated.len());
    let mut messages = Vec::with_capacity(allocated.len() * 2);
    for ((lease, allocation), go) in allocated.into_iter().zip(go) {
        let entry = lease.entry();
        let id = &entry.execution_id;
        if !go {
            info!(execution_id = %id, "Execution cancelled while being scheduled; not commanded.");
            drop_scheduled(peers, outputs, id).await;
            continue;
        }
        let command = match outputs.create_pod_command(entry, &allocation) {
            Ok(command) => command,
            Err(e) => {
                // Only a defect gets here: the request was encoded by the ingress.
                error!(execution_id = %id, error = %e, "Queued request does not decode; execution dropped.");
                drop_scheduled(peers, outputs, id).await;
                continue;
            }
        };
        messages.push(command);
        messages.push(outputs.state_allocated(entry, &allocation));
        let waited = entry.waited(now);
        commands.push(HandedCommand { lease, waited });
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
        let lease = command.lease;
        let entry = lease.entry();
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
                asked: entry.payload.asked,
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
            error!(execution_id = %id, "Command not acknowledged; resources released and execution given back.");
            outcomes.push(CommandAck::Failed(Some(Box::new(lease))));
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
            act.stats.report(act.in_flight + act.awaiting_ack);
            let figures = act.figures();
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
                dispatched = figures.dispatched,
                requeued = figures.requeued,
                publish_failures = figures.publish_failures,
                in_flight = figures.in_flight,
                awaiting_ack = figures.awaiting_ack,
                blocked = figures.blocked,
                policy = %act.rules.policy,
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
            in_flight = self.in_flight,
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
        self.in_flight -= pass.slots;
        self.awaiting_ack += pass.handed;
        if pass.blocked {
            telemetry::count(telemetry::name::REQUEUED);
            self.counters.requeued += 1;
        }
        if pass.peer_gone {
            self.stats.error();
        }
        if pass.blocked || pass.peer_gone {
            self.wait_in(Mode::Blocked);
        } else if pass.drained {
            self.wait_in(Mode::Idle);
        } else if pass.handed > 0 && self.mode == Mode::Probing {
            self.mode = Mode::Running;
        }
        self.give_back_failed();
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
            self.awaiting_ack -= 1;
            match ack {
                CommandAck::Commanded {
                    priority,
                    asked,
                    waited,
                } => {
                    self.command_metrics.commanded(priority, waited);
                    self.counters.dispatched += 1;
                    self.record_wait(asked, waited);
                    if priority != asked {
                        self.demoted[asked.index()] += 1;
                    }
                }
                CommandAck::Failed(lease) => {
                    self.stats.error();
                    self.command_metrics.failed();
                    self.counters.publish_failures += 1;
                    // Wait for the next tick rather than retrying at once against a failing
                    // broker: a pass running now must not take it again either.
                    self.wait_in(Mode::Blocked);
                    self.failed.extend(lease.map(|l| *l));
                }
            }
        }
        self.give_back_failed();
        self.pass(ctx);
        self.answer_drain();
        self.stats.record(started);
    }
}

impl Handler<Drain> for SchedulerActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, _ctx: &mut Self::Context) -> Self::Result {
        self.mode = Mode::Draining;
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
        MessageResult(self.figures())
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
                demoted: self.demoted[level],
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

/// The scheduler's policy and mode, for the inspection API.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "coordinator_core::inspect::view::SchedulerState")]
pub struct SchedulerStateQuery;

impl Handler<SchedulerStateQuery> for SchedulerActor {
    type Result = MessageResult<SchedulerStateQuery>;

    fn handle(&mut self, _msg: SchedulerStateQuery, _ctx: &mut Self::Context) -> Self::Result {
        use coordinator_core::inspect::view::{SchedulerMode, SchedulerState};
        let mode = match self.mode {
            Mode::Running => SchedulerMode::Running,
            Mode::Probing => SchedulerMode::Probing,
            Mode::Idle => SchedulerMode::Idle,
            Mode::Blocked => SchedulerMode::Blocked,
            Mode::Draining => SchedulerMode::Draining,
        };
        MessageResult(SchedulerState {
            policy: self.rules.policy.name().to_owned(),
            mode,
        })
    }
}
