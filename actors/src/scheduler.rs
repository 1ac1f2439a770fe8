//! SchedulerActor: the scheduling loop. Pulls the next execution from the queue, asks the pool
//! for its resources and publishes its `CreatePodCommand`; at most `max_concurrent_scheduling`
//! schedulings are in flight. Wakes on its interval and on every kick (arrival or release).

use std::time::{Duration, Instant};

use actix::prelude::*;
use coordinator_core::queue::QueuedExecution;
use coordinator_core::Priority;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::clock::now_millis;
use crate::egress::Publish;
use crate::queue_actor::{Dequeue, PutBack, Requeue, Settle};
use crate::resource_actor::{Allocate, Release};
use crate::state::{Outputs, Pending};
use crate::stats::ActorStats;
use crate::telemetry;
use crate::{InjectFault, ReportStats, RestartCount};

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
#[rtype(result = "[WaitSummary; 5]")]
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

/// One scheduling finished (sent by the scheduling task to the actor).
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct Scheduled(Outcome);

/// Counters of scheduling decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Executions commanded.
    pub dispatched: u64,
    /// Executions put back for lack of resources.
    pub requeued: u64,
    /// Commands the broker did not take (execution put back).
    pub publish_failures: u64,
    /// Schedulings in flight now.
    pub in_flight: usize,
    /// True while the head of the queue waits for resources.
    pub blocked: bool,
}

/// The peers the scheduler talks to, as recipients so tests can stand in for them.
#[derive(Clone)]
pub struct SchedulerPeers {
    /// QueueActor: next execution.
    pub dequeue: Recipient<Dequeue>,
    /// QueueActor: put back.
    pub requeue: Recipient<Requeue>,
    /// QueueActor: commanded, no longer counts in positions.
    pub settle: Recipient<Settle>,
    /// QueueActor: put back at its level after a failed publish.
    pub put_back: Recipient<PutBack>,
    /// ResourceActor: reserve.
    pub allocate: Recipient<Allocate>,
    /// ResourceActor: give back after a failed publish.
    pub release: Recipient<Release>,
    /// KafkaEgressActor: command and state record.
    pub publish: Recipient<Publish>,
}

#[derive(Debug)]
enum Outcome {
    /// The queue was empty.
    Empty,
    /// Commanded and acknowledged.
    Dispatched {
        priority: Priority,
        waited: Duration,
    },
    /// Not enough free resources: put back, the pass ends.
    Blocked,
    /// The command was not acknowledged: resources released, execution put back.
    PublishFailed,
    /// Cancelled while being scheduled: resources released, not commanded.
    Cancelled,
    /// A peer was gone (stopping).
    PeerGone,
}

/// The scheduler actor.
pub struct SchedulerActor {
    peers: SchedulerPeers,
    outputs: Outputs,
    max_in_flight: usize,
    interval: Duration,
    stats_interval: Duration,
    counters: SchedulerStats,
    idle: bool,
    /// Waking from idle or blocked: one scheduling at a time until one dispatches.
    probing: bool,
    draining: bool,
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// Queue waits of executions commanded since the last stats line, per level (ms).
    waits_ms: [Vec<u64>; 5],
    /// Queue waits since start, per level: (count, bounded sample in ms).
    all_waits_ms: [(u64, Vec<u64>); 5],
    stats: ActorStats,
}

/// Queue-wait samples kept per level between two stats lines.
const WAIT_SAMPLES: usize = 4096;

/// Queue-wait samples kept per level since start.
const ALL_WAIT_SAMPLES: usize = 65_536;

/// "p50/p99" of `samples` in ms, or "-" when empty.
fn wait_summary(samples: &mut [u64]) -> String {
    if samples.is_empty() {
        return "-".to_owned();
    }
    samples.sort_unstable();
    let at = |p: usize| samples[((samples.len() - 1) * p) / 100];
    format!("{}/{}", at(50), at(99))
}

impl SchedulerActor {
    /// A scheduler with at most `max_in_flight` schedulings at once, waking every `interval`.
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
            waits_ms: Default::default(),
            all_waits_ms: Default::default(),
            stats: ActorStats::new("scheduler"),
        }
    }

    /// Starts schedulings until the limit, an empty queue or a blocked head.
    fn pass(&mut self, ctx: &mut Context<Self>) {
        // After the queue was seen empty or the head blocked, one scheduling probes; more
        // follow only once something was dispatched, so an idle tick costs one dequeue.
        let limit = if self.probing { 1 } else { self.max_in_flight };
        while !self.draining
            && !self.idle
            && !self.counters.blocked
            && self.counters.in_flight < limit
        {
            self.counters.in_flight += 1;
            let peers = self.peers.clone();
            let outputs = self.outputs.clone();
            let me = ctx.address();
            // Detached from the actor's context, so a restart never drops an execution that
            // was dequeued but not yet commanded.
            actix::spawn(async move {
                let outcome = schedule_one(peers, outputs).await;
                me.do_send(Scheduled(outcome));
            });
        }
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
        if self.draining && self.counters.in_flight == 0 {
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

/// One scheduling: dequeue, allocate, publish command and state; put back on failure.
async fn schedule_one(peers: SchedulerPeers, outputs: Outputs) -> Outcome {
    let started = Instant::now();
    let entry: QueuedExecution<Pending> = match peers.dequeue.send(Dequeue).await {
        Ok(Some(entry)) => entry,
        Ok(None) => return Outcome::Empty,
        Err(_) => return Outcome::PeerGone,
    };
    let id = entry.execution_id.clone();
    let resources = entry.payload.resources;
    let allocation = match peers
        .allocate
        .send(Allocate {
            execution_id: id.clone(),
            resources,
        })
        .await
    {
        Ok(Ok(allocation)) => allocation,
        Ok(Err(insufficient)) => {
            debug!(execution_id = %id, %insufficient, "Head of queue waits for resources.");
            let _ = peers.requeue.send(Requeue(entry)).await;
            return Outcome::Blocked;
        }
        Err(_) => {
            let _ = peers.requeue.send(Requeue(entry)).await;
            return Outcome::PeerGone;
        }
    };
    // Last check before the command: a cancellation may have come in while we allocated.
    let go = peers
        .settle
        .send(Settle {
            priority: entry.priority,
            arrival: entry.arrival,
        })
        .await
        .unwrap_or(true);
    if !go {
        info!(execution_id = %id, "Execution cancelled while being scheduled; not commanded.");
        let _ = peers
            .release
            .send(Release {
                execution_id: id.clone(),
            })
            .await;
        let _ = peers.publish.send(outputs.state_finished(&id)).await;
        return Outcome::Cancelled;
    }
    let command = outputs.create_pod_command(&entry, &allocation);
    let record = outputs.state_allocated(&entry, &allocation);
    let (command, record) = futures::join!(peers.publish.send(command), peers.publish.send(record));
    if !matches!(record, Ok(Ok(_))) {
        // The command decides; a missing state record only matters to a restart.
        error!(execution_id = %id, "State record of a commanded execution not acknowledged.");
    }
    if matches!(command, Ok(Ok(_))) {
        let waited = entry.waited(now_millis());
        telemetry::scheduling_duration(started.elapsed());
        telemetry::queue_wait(entry.priority, waited);
        telemetry::count(telemetry::name::COMMANDED);
        debug!(
            execution_id = %id,
            priority = entry.priority.value(),
            waited_ms = waited.as_millis() as u64,
            cpu_millis = allocation.resources.cpu_millis,
            memory_mib = allocation.resources.memory_mib,
            "Execution commanded."
        );
        return Outcome::Dispatched {
            priority: entry.priority,
            waited,
        };
    }
    // Not commanded: give the resources back and put the execution back where it was, unless a
    // cancellation released them meanwhile (then it is gone for good).
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
        let _ = peers.put_back.send(PutBack(entry)).await;
    } else {
        info!(execution_id = %id, "Command not acknowledged for an execution cancelled meanwhile; dropped.");
    }
    Outcome::PublishFailed
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.wake(ctx));
        ctx.run_interval(self.stats_interval, |act, _| {
            act.stats.report(act.counters.in_flight);
            let waits: Vec<String> = Priority::ALL
                .iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        p.name(),
                        wait_summary(&mut act.waits_ms[p.index()])
                    )
                })
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
        self.counters.in_flight -= 1;
        match msg.0 {
            Outcome::Empty => self.idle = true,
            Outcome::Dispatched { priority, waited } => {
                self.probing = false;
                self.counters.dispatched += 1;
                let ms = waited.as_millis() as u64;
                let samples = &mut self.waits_ms[priority.index()];
                if samples.len() < WAIT_SAMPLES {
                    samples.push(ms);
                }
                let (count, sample) = &mut self.all_waits_ms[priority.index()];
                *count += 1;
                if sample.len() < ALL_WAIT_SAMPLES {
                    sample.push(ms);
                } else {
                    // Keep a spread over the whole run: overwrite round-robin.
                    let slot = (*count as usize) % ALL_WAIT_SAMPLES;
                    sample[slot] = ms;
                }
            }
            Outcome::Blocked => {
                telemetry::count(telemetry::name::REQUEUED);
                self.counters.requeued += 1;
                self.counters.blocked = true;
            }
            Outcome::PublishFailed => {
                self.stats.error();
                self.counters.publish_failures += 1;
                // Wait for the next tick rather than retrying at once against a failing broker.
                self.counters.blocked = true;
            }
            Outcome::Cancelled => {}
            Outcome::PeerGone => {
                self.stats.error();
                self.counters.blocked = true;
            }
        }
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
        let mut out = [WaitSummary::default(); 5];
        for (summary, (count, sample)) in out.iter_mut().zip(&self.all_waits_ms) {
            let mut sorted = sample.clone();
            sorted.sort_unstable();
            let at = |p: usize| {
                sorted
                    .get(sorted.len().saturating_sub(1) * p / 100)
                    .map_or(Duration::ZERO, |ms| Duration::from_millis(*ms))
            };
            *summary = WaitSummary {
                count: *count,
                p50: at(50),
                p99: at(99),
            };
        }
        MessageResult(out)
    }
}

impl Handler<RestartCount> for SchedulerActor {
    type Result = u64;

    fn handle(&mut self, _msg: RestartCount, _ctx: &mut Self::Context) -> u64 {
        self.stats.restarts()
    }
}

impl Handler<ReportStats> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _msg: ReportStats, _ctx: &mut Self::Context) {
        self.stats.report(self.counters.in_flight);
    }
}

impl Handler<InjectFault> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _msg: InjectFault, ctx: &mut Self::Context) {
        self.stats.error();
        ctx.stop();
    }
}
