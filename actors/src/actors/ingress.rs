//! KafkaIngressActor: owns the input consumer. Decodes each event, drives the queue and the
//! pool, and stores the event's offset only once everything it caused has been acknowledged
//! by the broker; commits every `commit_interval`, on revocation and on stop.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use coordinator_core::config::KafkaConfig;
use coordinator_core::events::{
    decode_input, ErrorType, EventMetadata, ExecutionCancelled, ExecutionRequested, InputEvent,
};
use coordinator_core::inspect::finished::Outcome;
use coordinator_core::pool::{PoolSpec, RequestError, ResourceAsk};
use coordinator_core::queue::{Cancelled, Rejection};
use futures::future::{join_all, LocalBoxFuture};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use tracing::{debug, error, info, warn};

use crate::actors::egress::{IncludeOffset, Publish};
use crate::actors::queue::{Cancel, Enqueue, IsDuplicate, RememberFinished};
use crate::actors::resource::Release;
use crate::actors::scheduler::Kick;
use crate::actors::{InjectFault, RestartCount};
use crate::inspect::Finishes;
use crate::kafka::trace::TraceContext;
use crate::kafka::{consumer_config, is_nothing_to_commit, CommitOnRevoke};
use crate::shutdown::{Failure, Shutdown};
use crate::state::outputs::{Outputs, ORIGIN, ORIGIN_HEADER};
use crate::state::pending::Pending;
use crate::telemetry;
use crate::telemetry::stats::ActorStats;

/// Stop consuming, wait for the effects of what was consumed, commit; answers when done.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopConsuming;

/// The ingress counters.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "IngressCounters")]
pub struct IngressStatsQuery;

/// What the ingress has seen, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngressCounters {
    /// Messages consumed.
    pub consumed: u64,
    /// Requests queued (and `execution_accepted` published).
    pub accepted: u64,
    /// Requests refused: queue full.
    pub rejected_queue_full: u64,
    /// Requests refused: per-user limit.
    pub rejected_user_limit: u64,
    /// Requests refused: invalid (priority, quantity).
    pub rejected_invalid: u64,
    /// Requests refused: can never fit.
    pub rejected_never_fits: u64,
    /// Requests refused: their command or state record would be larger than can be written.
    pub rejected_too_large: u64,
    /// Requests ignored as duplicates.
    pub duplicates: u64,
    /// Queued executions cancelled.
    pub cancelled_queued: u64,
    /// Active executions cancelled (resources released).
    pub cancelled_active: u64,
    /// Completions and failures that released resources.
    pub released: u64,
    /// Events of other types, skipped.
    pub skipped: u64,
    /// Undecodable messages sent to the DLQ.
    pub dead_lettered: u64,
    /// Messages whose effects the broker did not acknowledge.
    pub publish_failures: u64,
}

/// The peers the ingress drives, as recipients so tests can stand in for them.
#[derive(Clone)]
pub struct IngressPeers {
    /// QueueActor.
    pub enqueue: Recipient<Enqueue>,
    /// QueueActor.
    pub cancel: Recipient<Cancel>,
    /// QueueActor.
    pub is_duplicate: Recipient<IsDuplicate>,
    /// QueueActor.
    pub remember: Recipient<RememberFinished>,
    /// ResourceActor.
    pub release: Recipient<Release>,
    /// SchedulerActor.
    pub kick: Recipient<Kick>,
    /// KafkaEgressActor.
    pub publish: Recipient<Publish>,
}

/// Decides what one input event does. Shared by the consume loop; cheap to clone.
#[derive(Clone)]
pub struct EventHandler {
    peers: IngressPeers,
    outputs: Outputs,
    spec: Arc<PoolSpec>,
    max_message_bytes: usize,
    counters: Rc<RefCell<IngressCounters>>,
    /// The accepted counters (ours, Integr8sCode's `status="queued"`), looked up once.
    accepted: (metrics::Counter, metrics::Counter),
    /// Where refusals, cancellations and completions are recorded for the inspection API.
    finishes: Finishes,
}

/// The broker acks for one input event's effects.
type Acks = LocalBoxFuture<'static, bool>;

impl EventHandler {
    /// A handler publishing through `peers` and resolving requests against `spec`.
    pub fn new(
        peers: IngressPeers,
        outputs: Outputs,
        spec: PoolSpec,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            peers,
            outputs,
            spec: Arc::new(spec),
            max_message_bytes,
            counters: Rc::new(RefCell::new(IngressCounters::default())),
            accepted: (
                metrics::counter!(telemetry::name::ACCEPTED),
                metrics::counter!(telemetry::integr8scode::SCHEDULED, "status" => "queued"),
            ),
            finishes: Finishes::default(),
        }
    }

    /// Records how executions end in `finishes` (for the inspection API).
    pub fn recording_finishes(mut self, finishes: Finishes) -> Self {
        self.finishes = finishes;
        self
    }

    /// The counters so far.
    pub fn counters(&self) -> IngressCounters {
        *self.counters.borrow()
    }

    fn count(&self, f: impl FnOnce(&mut IngressCounters)) {
        f(&mut self.counters.borrow_mut());
    }

    /// Sends `messages` to the egress now (in this order) and returns their joint ack.
    fn publish(&self, messages: Vec<Publish>) -> Acks {
        let requests: Vec<_> = messages
            .into_iter()
            .map(|m| self.peers.publish.send(m))
            .collect();
        async move {
            join_all(requests)
                .await
                .into_iter()
                .all(|r| matches!(r, Ok(Ok(_))))
        }
        .boxed_local()
    }

    /// Handles one raw input message: `source` is (topic, partition, offset); `trace` its
    /// trace context, carried onto what it causes.
    pub async fn handle(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        source: (&str, i32, i64),
        trace: Option<Box<TraceContext>>,
    ) -> Acks {
        self.count(|c| c.consumed += 1);
        let bytes = payload.unwrap_or_default();
        match decode_input(bytes, self.max_message_bytes) {
            Err(e) => {
                self.count(|c| c.dead_lettered += 1);
                telemetry::count(telemetry::name::DEAD_LETTERED);
                warn!(
                    topic = source.0,
                    partition = source.1,
                    offset = source.2,
                    error = %e,
                    "Bad input sent to the dead-letter queue."
                );
                let mut out = vec![self.outputs.dead_letter(
                    key,
                    payload,
                    source,
                    &e.to_string(),
                    trace.as_deref(),
                )];
                if let Some(id) = e.execution_id.as_deref().filter(|id| !id.is_empty()) {
                    if !self.is_duplicate(id).await {
                        self.remember(id).await;
                        let metadata = e
                            .metadata
                            .as_deref()
                            .cloned()
                            .unwrap_or_else(EventMetadata::coordinator);
                        let message =
                            format!("the execution request could not be read: {}", e.message);
                        out.push(self.outputs.failed(
                            id,
                            &metadata,
                            ErrorType::SystemError,
                            &message,
                            trace.as_deref(),
                        ));
                        self.finishes.record(id, Outcome::Rejected, Some(message));
                        out.push(self.outputs.state_finished(id));
                    }
                }
                self.publish(out)
            }
            Ok(InputEvent::Requested(request)) => {
                self.on_requested(request, trace, bytes.len()).await
            }
            Ok(InputEvent::Cancelled(event)) => self.on_cancelled(&event).await,
            Ok(InputEvent::Completed(event)) => {
                let said = format!("exit code {}", event.exit_code);
                self.on_finished(&event.execution_id, Outcome::Completed, said)
                    .await
            }
            Ok(InputEvent::Failed(event)) => {
                let said = match event.error_message.trim() {
                    "" => format!(
                        "{} (exit code {})",
                        event.error_type.as_str(),
                        event.exit_code
                    ),
                    message => format!("{}: {message}", event.error_type.as_str()),
                };
                self.on_finished(&event.execution_id, Outcome::Failed, said)
                    .await
            }
            Ok(InputEvent::TimedOut(event)) => {
                let said = format!("ran past its timeout of {} s", event.timeout_seconds);
                self.on_finished(&event.execution_id, Outcome::Timeout, said)
                    .await
            }
            Ok(InputEvent::Other { event_type }) => {
                self.count(|c| c.skipped += 1);
                debug!(%event_type, "Event of another type skipped.");
                self.publish(Vec::new())
            }
        }
    }

    async fn is_duplicate(&self, id: &str) -> bool {
        self.peers
            .is_duplicate
            .send(IsDuplicate {
                execution_id: id.to_owned(),
            })
            .await
            .unwrap_or(false)
    }

    async fn remember(&self, id: &str) {
        let _ = self
            .peers
            .remember
            .send(RememberFinished {
                execution_id: id.to_owned(),
            })
            .await;
    }

    /// Refuses a request before queueing: remembered, so a redelivery is a duplicate.
    /// Counts a refusal for `why`, in the ingress's counters and the rejection metric.
    fn count_refusal(&self, why: Refusal) {
        self.count(|c| *why.counter(c) += 1);
        telemetry::rejected(why.label());
    }

    /// Refuses `request` for `why`: counted, remembered as finished, and answered with
    /// `execution_failed` saying `message`.
    async fn refuse(
        &self,
        request: &ExecutionRequested,
        why: Refusal,
        message: String,
        trace: Option<&TraceContext>,
    ) -> Acks {
        self.count_refusal(why);
        let error_type = why.error_type();
        info!(execution_id = %request.execution_id, error_type = ?error_type, reason = %message, "Execution rejected.");
        self.remember(&request.execution_id).await;
        self.finishes.record(
            &request.execution_id,
            Outcome::Rejected,
            Some(message.clone()),
        );
        self.publish(vec![
            self.outputs.failed(
                &request.execution_id,
                &request.metadata,
                error_type,
                &message,
                trace,
            ),
            self.outputs.state_finished(&request.execution_id),
        ])
    }

    /// A duplicate request is ignored without a word.
    fn ignore_duplicate(&self, id: &str) -> Acks {
        self.count(|c| c.duplicates += 1);
        telemetry::count(telemetry::name::DUPLICATES);
        debug!(execution_id = %id, "Duplicate request ignored.");
        self.publish(Vec::new())
    }

    async fn on_requested(
        &self,
        request: ExecutionRequested,
        trace: Option<Box<TraceContext>>,
        bytes: usize,
    ) -> Acks {
        let id = request.execution_id.clone();
        // A valid request's duplicate check is the queue's own (at enqueue); a request about to
        // be refused asks first, so a redelivery is not refused twice.
        let priority = match request.priority_level() {
            Ok(p) => p,
            Err(_) if self.is_duplicate(&id).await => return self.ignore_duplicate(&id),
            Err(e) => {
                return self
                    .refuse(&request, Refusal::Invalid, e.to_string(), trace.as_deref())
                    .await;
            }
        };
        let ask = ResourceAsk {
            language: &request.language,
            cpu: request.cpu_request.as_deref(),
            memory: request.memory_request.as_deref(),
            gpu: request.gpu_request,
        };
        let resolved = match self.spec.resolve(ask) {
            Ok(r) => r,
            Err(_) if self.is_duplicate(&id).await => return self.ignore_duplicate(&id),
            Err(e @ RequestError::InvalidQuantity(_)) => {
                return self
                    .refuse(&request, Refusal::Invalid, e.to_string(), trace.as_deref())
                    .await;
            }
            Err(e @ RequestError::NeverFits { .. }) => {
                return self
                    .refuse(
                        &request,
                        Refusal::NeverFits,
                        e.to_string(),
                        trace.as_deref(),
                    )
                    .await;
            }
        };
        if let Err(message) = self.outputs.check_size(bytes, request.script.len()) {
            if self.is_duplicate(&id).await {
                return self.ignore_duplicate(&id);
            }
            return self
                .refuse(&request, Refusal::TooLarge, message, trace.as_deref())
                .await;
        }
        if resolved.clamped() {
            info!(execution_id = %id, asked = %resolved.asked, granted = %resolved.resources, "Request clamped to the per-execution caps.");
        }
        let user_id = request.metadata.user_key().to_owned();
        let enqueue = Enqueue {
            execution_id: id.clone(),
            user_id,
            priority,
            pending: Pending::new(&request, resolved.resources, trace.clone()),
        };
        match self.peers.enqueue.send(enqueue).await {
            Ok(Ok(admitted)) => {
                self.count(|c| c.accepted += 1);
                self.accepted.0.increment(1);
                self.accepted.1.increment(1);
                debug!(execution_id = %id, position = admitted.position, "Execution queued.");
                let accepted = self.publish(vec![self.outputs.accepted(
                    &request,
                    priority,
                    admitted.position,
                    Some(admitted.estimate),
                    trace.as_deref(),
                )]);
                self.peers.kick.do_send(Kick);
                let state = admitted.state_ack;
                async move {
                    let state_ok = matches!(state.await, Ok(Ok(_)));
                    accepted.await && state_ok
                }
                .boxed_local()
            }
            Ok(Err(Rejection::Duplicate { .. })) => self.ignore_duplicate(&id),
            Ok(Err(rejection)) => {
                // Not remembered as finished: the same request may be sent again later.
                self.count_refusal(match rejection {
                    Rejection::QueueFull { .. } => Refusal::QueueFull,
                    _ => Refusal::UserLimit,
                });
                info!(execution_id = %id, reason = %rejection, "Execution rejected.");
                self.finishes
                    .record(&id, Outcome::Rejected, Some(rejection.to_string()));
                self.publish(vec![
                    self.outputs.failed(
                        &id,
                        &request.metadata,
                        ErrorType::ResourceLimit,
                        &rejection.to_string(),
                        trace.as_deref(),
                    ),
                    self.outputs.state_finished(&id),
                ])
            }
            Err(e) => {
                error!(execution_id = %id, error = %e, "Queue unavailable; the event will be consumed again.");
                async { false }.boxed_local()
            }
        }
    }

    async fn on_cancelled(&self, event: &ExecutionCancelled) -> Acks {
        let id = event.execution_id.as_str();
        let said = match (event.cancelled_by.as_deref(), event.reason.as_deref()) {
            (Some(by), Some(why)) => Some(format!("cancelled by {by}: {why}")),
            (Some(by), None) => Some(format!("cancelled by {by}")),
            (None, Some(why)) => Some(format!("cancelled: {why}")),
            (None, None) => None,
        };
        let queued = self
            .peers
            .cancel
            .send(Cancel {
                execution_id: id.to_owned(),
            })
            .await;
        match queued {
            Ok(Cancelled::Queued(_)) => {
                self.count(|c| c.cancelled_queued += 1);
                info!(execution_id = %id, "Queued execution cancelled.");
                self.finishes.record(id, Outcome::Cancelled, said);
                return self.publish(Vec::new());
            }
            Ok(Cancelled::Leased) => {
                self.count(|c| c.cancelled_queued += 1);
                info!(execution_id = %id, "Execution cancelled while being scheduled; it will not be commanded.");
                self.finishes.record(id, Outcome::Cancelled, said);
                return self.publish(Vec::new());
            }
            Ok(Cancelled::NotFound) | Err(_) => {}
        }
        let released = self.release(id).await;
        if released {
            self.count(|c| c.cancelled_active += 1);
            info!(execution_id = %id, "Active execution cancelled; resources released.");
            self.finishes.record(id, Outcome::Cancelled, said);
            return self.publish(vec![self.outputs.state_finished(id)]);
        }
        // Unknown id: remember it, so a request arriving after its cancellation is not run.
        // An execution that ended before keeps the end it had.
        self.remember(id).await;
        self.finishes.record_first(id, Outcome::Cancelled, said);
        self.publish(vec![self.outputs.state_finished(id)])
    }

    /// A completion, failure or timeout: the resources go back, and how it ended is recorded.
    async fn on_finished(&self, id: &str, outcome: Outcome, said: String) -> Acks {
        if self.release(id).await {
            self.count(|c| c.released += 1);
            self.finishes.record(id, outcome, Some(said));
            debug!(execution_id = %id, "Execution finished; resources released.");
            self.publish(vec![self.outputs.state_finished(id)])
        } else {
            self.publish(Vec::new())
        }
    }

    async fn release(&self, id: &str) -> bool {
        let released = matches!(
            self.peers
                .release
                .send(Release {
                    execution_id: id.to_owned(),
                })
                .await,
            Ok(Some(_))
        );
        if released {
            self.peers.kick.do_send(Kick);
        }
        released
    }
}

/// Where an input event came from.
struct Consumed {
    topic: String,
    partition: i32,
    offset: i64,
}

/// Why a request is refused: what it is counted as, and the error type it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A field the coordinator cannot read (priority, quantities).
    Invalid,
    /// Asks for more than the pool could ever give.
    NeverFits,
    /// Its outputs would exceed what the brokers take.
    TooLarge,
    /// The queue is at its maximum size.
    QueueFull,
    /// Its user is at the per-user limit.
    UserLimit,
}

impl Refusal {
    /// The `reason` label of the rejection metric.
    fn label(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::NeverFits => "never_fits",
            Refusal::TooLarge => "too_large",
            Refusal::QueueFull => "queue_full",
            Refusal::UserLimit => "user_limit",
        }
    }

    fn error_type(self) -> ErrorType {
        match self {
            Refusal::Invalid => ErrorType::SystemError,
            _ => ErrorType::ResourceLimit,
        }
    }

    fn counter(self, c: &mut IngressCounters) -> &mut u64 {
        match self {
            Refusal::Invalid => &mut c.rejected_invalid,
            Refusal::NeverFits => &mut c.rejected_never_fits,
            Refusal::TooLarge => &mut c.rejected_too_large,
            Refusal::QueueFull => &mut c.rejected_queue_full,
            Refusal::UserLimit => &mut c.rejected_user_limit,
        }
    }
}

/// How consumed offsets are committed.
#[derive(Clone)]
pub enum OffsetCommit {
    /// At least once: stored once the event's effects are acknowledged, committed by the
    /// consumer every `commit_interval`, on revocation and on stop.
    Consumer,
    /// Exactly once: handed to the egress, which commits them in the transaction holding the
    /// event's effects.
    Transaction(Recipient<IncludeOffset>),
}

/// The ingress actor.
pub struct KafkaIngressActor {
    offsets: OffsetCommit,
    kafka: KafkaConfig,
    bootstrap: String,
    handler: EventHandler,
    /// The running consume loop's shutdown, and the one it requests when it has stopped.
    consuming: Option<(Shutdown, Shutdown)>,
    assigned: Arc<std::sync::atomic::AtomicBool>,
    /// Shared with the consume loop, which records every message it handles.
    stats: Arc<std::sync::Mutex<ActorStats>>,
    stats_interval: Duration,
    stopped: bool,
    /// The tree's shutdown: an event whose effects were not acknowledged fails it, and the
    /// consume loop stops when it is requested.
    shutdown: Shutdown,
}

/// Events consumed but not yet acknowledged, at most; beyond it the consumer waits. Each holds
/// its outputs in the producer until acked, so the bound is the peak memory of a burst; more
/// gains no throughput (BENCHMARKS.md has the measurement).
const MAX_UNACKED: usize = 2_000;

impl KafkaIngressActor {
    /// An ingress for the input topics of `kafka` on `bootstrap`; `assigned` tells whether
    /// the consumer holds partitions (for `/readyz`).
    pub fn new(
        kafka: KafkaConfig,
        bootstrap: String,
        handler: EventHandler,
        stats_interval: Duration,
        assigned: Arc<std::sync::atomic::AtomicBool>,
        offsets: OffsetCommit,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            shutdown,
            offsets,
            kafka,
            bootstrap,
            handler,
            consuming: None,
            assigned,
            stats: Arc::new(std::sync::Mutex::new(ActorStats::new("kafka_ingress"))),
            stats_interval,
            stopped: false,
        }
    }

    fn start_loop(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        let consumer: StreamConsumer<CommitOnRevoke> =
            match consumer_config(&self.kafka, &self.bootstrap)
                .create_with_context(CommitOnRevoke::new(self.assigned.clone()))
            {
                Ok(c) => c,
                Err(e) => {
                    error!(error = %e, "Could not create the Kafka consumer; retrying in 1 s.");
                    ctx.run_later(Duration::from_secs(1), |act, ctx| act.start_loop(ctx));
                    return;
                }
            };
        let topics = self.kafka.input_topics_full();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&topic_refs) {
            error!(error = %e, "Could not subscribe to the input topics; retrying in 1 s.");
            ctx.run_later(Duration::from_secs(1), |act, ctx| act.start_loop(ctx));
            return;
        }
        info!(topics = ?topics, group = %self.kafka.group_id, "Consuming.");
        let (stop, stopped) = (self.shutdown.child(), Shutdown::new());
        self.consuming = Some((stop.clone(), stopped.clone()));
        let consumer = Arc::new(consumer);
        let run = consume(
            consumer,
            self.handler.clone(),
            self.offsets.clone(),
            self.kafka.commit_interval,
            (stop, stopped),
            self.shutdown.clone(),
            self.stats.clone(),
        );
        ctx.spawn(run.into_actor(self).map(|result, act, ctx| {
            if let Err(e) = result {
                error!(error = %e, "Consume loop failed; restarting the ingress.");
                act.stats().error();
                ctx.stop();
            }
        }));
    }
}

/// The consume loop: handle in order, store offsets in order once acknowledged. Runs until
/// `stop` is requested; then waits for the acks of what it consumed, commits, and requests
/// `stopped`. An event whose effects were not acknowledged fails `tree`.
async fn consume(
    consumer: Arc<StreamConsumer<CommitOnRevoke>>,
    handler: EventHandler,
    offsets: OffsetCommit,
    commit_interval: Duration,
    (stop, stopped): (Shutdown, Shutdown),
    tree: Shutdown,
    stats: Arc<std::sync::Mutex<ActorStats>>,
) -> anyhow::Result<()> {
    let by_consumer = matches!(offsets, OffsetCommit::Consumer);
    let mut unacked: FuturesOrdered<LocalBoxFuture<'static, (Consumed, bool)>> =
        FuturesOrdered::new();
    let mut commit_tick = tokio::time::interval(commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stream = consumer.stream();
    let mut failed = false;
    // The assignment count when the group metadata was last sent to the egress.
    let mut group_of: Option<u64> = None;
    loop {
        tokio::select! {
            biased;
            _ = stop.requested() => break,
            Some((consumed, ok)) = unacked.next(), if !unacked.is_empty() => {
                if ok && !failed && by_consumer {
                    if let Err(e) = consumer.store_offset(&consumed.topic, consumed.partition, consumed.offset) {
                        warn!(error = %e, topic = %consumed.topic, partition = consumed.partition, "Offset not stored (partition revoked?).");
                    }
                } else if !ok {
                    handler.count(|c| c.publish_failures += 1);
                    if !failed {
                        error!(topic = %consumed.topic, partition = consumed.partition, offset = consumed.offset, "Effects of an event not acknowledged; its offset and later ones stay uncommitted, and the coordinator recovers.");
                        tree.fail(Failure::Recoverable(format!(
                            "the effects of {}/{}@{} were not acknowledged",
                            consumed.topic, consumed.partition, consumed.offset
                        )));
                    }
                    failed = true;
                }
            }
            _ = commit_tick.tick(), if by_consumer => commit(&consumer, CommitMode::Async),
            message = stream.next(), if unacked.len() < MAX_UNACKED && !failed => {
                let Some(message) = message else { break };
                match message {
                    Ok(m) => {
                        let started = std::time::Instant::now();
                        let (acks, consumed) = handle_message(&handler, &m).await;
                        stats.lock().unwrap_or_else(|e| e.into_inner()).record(started);
                        if let OffsetCommit::Transaction(egress) = &offsets {
                            // The group's metadata is asked of librdkafka's main thread (a
                            // round trip): only after an assignment, when the generation may
                            // have moved; the egress keeps the last it was sent.
                            let assignments = consumer.context().assignments.load(Ordering::Relaxed);
                            let group = if group_of != Some(assignments) {
                                group_of = Some(assignments);
                                consumer.group_metadata()
                            } else {
                                None
                            };
                            // After every message the event caused: same or earlier transaction.
                            egress.do_send(IncludeOffset {
                                topic: consumed.topic.clone(),
                                partition: consumed.partition,
                                next_offset: consumed.offset + 1,
                                group,
                            });
                        }
                        unacked.push_back(async move { (consumed, acks.await) }.boxed_local());
                    }
                    Err(e) => warn!(error = %e, "Kafka consumer error."),
                }
            }
        }
    }
    // Stop: everything consumed must be acknowledged and committed before we answer.
    while let Some((consumed, ok)) = unacked.next().await {
        if ok && !failed && by_consumer {
            let _ = consumer.store_offset(&consumed.topic, consumed.partition, consumed.offset);
        } else if !ok {
            failed = true;
        }
    }
    if by_consumer {
        commit(&consumer, CommitMode::Sync);
    }
    drop(stream);
    stopped.request();
    if failed {
        anyhow::bail!("some events' effects were not acknowledged by the broker");
    }
    Ok(())
}

async fn handle_message(handler: &EventHandler, m: &BorrowedMessage<'_>) -> (Acks, Consumed) {
    let consumed = Consumed {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
    };
    if is_own_event(m) {
        // Our own `execution_accepted` / `execution_failed` coming back: nothing to do (the
        // failures we publish are for executions that hold no resources).
        handler.count(|c| {
            c.consumed += 1;
            c.skipped += 1;
        });
        return (handler.publish(Vec::new()), consumed);
    }
    let acks = handler
        .handle(
            m.key(),
            m.payload(),
            (m.topic(), m.partition(), m.offset()),
            TraceContext::of(m),
        )
        .await;
    (acks, consumed)
}

/// Whether the message carries the coordinator's origin header.
fn is_own_event(m: &BorrowedMessage<'_>) -> bool {
    m.headers().is_some_and(|headers| {
        headers
            .iter()
            .any(|h| h.key == ORIGIN_HEADER && h.value == Some(ORIGIN.as_bytes()))
    })
}

fn commit(consumer: &StreamConsumer<CommitOnRevoke>, mode: CommitMode) {
    if let Err(e) = consumer.commit_consumer_state(mode) {
        if !is_nothing_to_commit(&e) {
            warn!(error = %e, "Offset commit failed.");
        }
    }
}

impl Actor for KafkaIngressActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.stats_interval, |act, _| act.report());
        self.start_loop(ctx);
    }
}

impl KafkaIngressActor {
    fn stats(&self) -> std::sync::MutexGuard<'_, ActorStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&mut self) {
        let c = self.handler.counters();
        self.stats().report(0);
        let rejected: BTreeMap<&str, u64> = [
            ("queue_full", c.rejected_queue_full),
            ("user_limit", c.rejected_user_limit),
            ("invalid", c.rejected_invalid),
            ("never_fits", c.rejected_never_fits),
            ("too_large", c.rejected_too_large),
        ]
        .into_iter()
        .collect();
        info!(
            target: "actor_stats",
            actor = "kafka_ingress",
            consumed = c.consumed,
            accepted = c.accepted,
            rejected = ?rejected,
            duplicates = c.duplicates,
            cancelled_queued = c.cancelled_queued,
            cancelled_active = c.cancelled_active,
            released = c.released,
            skipped = c.skipped,
            dead_lettered = c.dead_lettered,
            "Ingress stats."
        );
    }
}

impl Supervised for KafkaIngressActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.stats().restarted();
        self.consuming = None;
        warn!(
            actor = "kafka_ingress",
            restarts = self.stats().restarts(),
            "Actor restarted; consuming again from the committed offsets."
        );
    }
}

impl Handler<StopConsuming> for KafkaIngressActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: StopConsuming, _ctx: &mut Self::Context) -> Self::Result {
        self.stopped = true;
        let consuming = self.consuming.take();
        Box::pin(async move {
            if let Some((stop, stopped)) = consuming {
                stop.request();
                stopped.requested().await;
            }
        })
    }
}

impl Handler<IngressStatsQuery> for KafkaIngressActor {
    type Result = MessageResult<IngressStatsQuery>;

    fn handle(&mut self, _msg: IngressStatsQuery, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.handler.counters())
    }
}

impl Handler<RestartCount> for KafkaIngressActor {
    type Result = u64;

    fn handle(&mut self, _msg: RestartCount, _ctx: &mut Self::Context) -> u64 {
        self.stats().restarts()
    }
}

impl Handler<InjectFault> for KafkaIngressActor {
    type Result = ();

    fn handle(&mut self, _msg: InjectFault, ctx: &mut Self::Context) {
        self.stats().error();
        ctx.stop();
    }
}
