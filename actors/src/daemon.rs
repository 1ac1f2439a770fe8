//! The supervised actor tree, its orderly shutdown, and the failures it cannot go on after.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::Context as _;
use coordinator_core::config::Config;
use coordinator_core::planner::Rules;
use coordinator_core::pool::{PoolSpec, ResourcePool};
use coordinator_core::queue::{ExecutionQueue, QueueLimits};
use rdkafka::producer::{FutureProducer, Producer};
use tracing::{error, info, warn};

use crate::actors::egress::{Flush, KafkaEgressActor, Transactional};
use crate::actors::ingress::{
    EventHandler, IngressPeers, KafkaIngressActor, OffsetCommit, StopConsuming,
};
use crate::actors::queue::QueueActor;
use crate::actors::resource::ResourceActor;
use crate::actors::scheduler::{Drain, SchedulerActor, SchedulerPeers};
use crate::inspect::{InspectPeers, Inspection};
use crate::kafka::{daemon_producer_config, writable_limit};
use crate::shutdown::Shutdown;
use crate::state::outputs::Outputs;
use crate::state::restore::StateTail;
use crate::state::restore::{Applied, RestoredState, RESTORE_TIMEOUT};
use crate::telemetry::{self, ProducerHealth, Readiness};

/// Queue limits from the `[queue]` section.
pub fn queue_limits(config: &Config) -> QueueLimits {
    let q = &config.queue;
    QueueLimits {
        max_queue_size: q.max_queue_size,
        max_executions_per_user: q.max_executions_per_user,
        stale_timeout: q.stale_timeout,
        requeue_demotes: q.requeue_demotes,
        dedup_capacity: q.dedup_capacity,
    }
}

/// The recoveries of a process: counted, logged and exported
/// (`execution_coordinator_recoveries_total`), and reported on the `actor_stats` stream as
/// actor `daemon` every `stats_interval`.
#[derive(Clone)]
pub struct Recoveries(Arc<AtomicU64>);

impl Recoveries {
    /// None yet; the stats line starts. Must run inside an actix System.
    pub fn start(stats_interval: Duration) -> Self {
        let recoveries = Recoveries(Arc::default());
        let count = recoveries.0.clone();
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(stats_interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                info!(
                    target: "actor_stats",
                    actor = "daemon",
                    recoveries = count.load(Ordering::Relaxed),
                    "Daemon stats."
                );
            }
        });
        recoveries
    }

    /// Recoveries so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one; returns the count.
    pub fn add(&self) -> u64 {
        telemetry::count(telemetry::name::RECOVERIES);
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// First pause between two attempts to start again after a failure; it doubles up to
/// [`MAX_RESTART_BACKOFF`].
pub(crate) const RESTART_BACKOFF: Duration = Duration::from_millis(500);

/// How long an actor thread may take to stop when the tree is torn down.
const THREAD_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest pause between two attempts to start again.
pub(crate) const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(10);

/// The running daemon: the address of each supervised actor.
pub struct Daemon {
    /// QueueActor.
    pub queue: Addr<QueueActor>,
    /// ResourceActor.
    pub resource: Addr<ResourceActor>,
    /// SchedulerActor.
    pub scheduler: Addr<SchedulerActor>,
    /// KafkaIngressActor.
    pub ingress: Addr<KafkaIngressActor>,
    /// KafkaEgressActor.
    pub egress: Addr<KafkaEgressActor>,
    /// What was restored from the state topic at start.
    pub restored: Applied,
    /// What `/readyz` answers from.
    pub readiness: Arc<Readiness>,
    /// What the inspection API answers from: the tree's actors while it runs.
    pub inspection: Arc<Inspection>,
    /// The tree's shutdown: requested with the [`Failure`](crate::shutdown::Failure) it cannot go on after, or when it
    /// is abandoned.
    pub shutdown: Shutdown,
    /// The thread of every actor but the egress: stopping it drops them all at once.
    arbiter: Arbiter,
    /// The egress actor's own thread, with exactly-once.
    egress_arbiter: Option<Arbiter>,
}

impl Daemon {
    /// Restores state and starts every actor under a supervisor, on threads of their own (so
    /// the tree can be abandoned whole). `readiness` and `inspection` outlive the tree:
    /// `/readyz` and the inspection API serve them across recoveries, and the tree attaches
    /// its actors to `inspection` once started. Must run inside an actix System.
    ///
    /// `tail` is the state topic as a standby kept it: only what was written since is read.
    /// Without one the whole topic is.
    pub async fn start(
        config: Config,
        bootstrap: String,
        readiness: Arc<Readiness>,
        inspection: Arc<Inspection>,
        tail: Option<StateTail>,
    ) -> anyhow::Result<Daemon> {
        if !config.scheduler.fair_share_half_life.is_zero() {
            warn!(
                half_life = %humantime::format_duration(config.scheduler.fair_share_half_life),
                "scheduler.fair_share_half_life is set, but the daemon does not apply fair share yet \
                 (the simulator does); executions are served FIFO within a level."
            );
        }
        // The topics were made once, before this instance joined the ownership group; a
        // recovery or a takeover does not make them again.
        let kafka = config.kafka.clone();
        let health = ProducerHealth {
            connected: readiness.producer_connected.clone(),
        };
        let producer: FutureProducer<ProducerHealth> = daemon_producer_config(&kafka, &bootstrap)
            .create_with_context(health)
            .context("creating the Kafka producer")?;
        if kafka.exactly_once {
            // Fences any earlier instance with this transactional.id and aborts its open
            // transaction — before the state is read, so nothing that instance could still
            // commit is missed. Blocking, so off the actors' thread.
            let p = producer.clone();
            let timeout = kafka.delivery_timeout;
            actix_rt::task::spawn_blocking(move || p.init_transactions(timeout))
                .await
                .context("init_transactions task")?
                .context(
                    "initialising Kafka transactions (is the broker's transaction log available?)",
                )?;
            info!(transactional_id = %kafka.effective_transactional_id(), "Exactly-once: transactions initialised; earlier instances fenced.");
        }
        let restored: RestoredState = {
            let kafka = kafka.clone();
            let bootstrap = bootstrap.clone();
            actix_rt::task::spawn_blocking(move || -> anyhow::Result<RestoredState> {
                let started = Instant::now();
                let mut tail = match tail {
                    Some(tail) => tail,
                    None => StateTail::open(&kafka, &bootstrap)?,
                };
                let before = tail.records();
                let read = tail.catch_up(RESTORE_TIMEOUT)?;
                if before > 0 {
                    info!(
                        kept = before,
                        read, "Standby taking over: read only what the owner wrote since."
                    );
                }
                Ok(tail.into_restored(started))
            })
            .await
            .context("state restore task")??
        };
        let stats_interval = config.daemon.stats_interval;
        let writable = writable_limit(&kafka, &bootstrap).await;
        let outputs = Outputs::new(&kafka, config.wire.priority_format).writing_at_most(writable);

        let mut queue = ExecutionQueue::new(queue_limits(&config));
        let spec = PoolSpec::from_config(&config.resources);
        let mut pool = ResourcePool::new(spec.clone());
        let restored = restored.apply(&mut queue, &mut pool);

        let delivery_timeout = kafka.delivery_timeout;
        let shutdown = Shutdown::new();
        let transactional = kafka.exactly_once.then(|| Transactional {
            interval: kafka.transaction_interval,
            commit_early: kafka.transaction_commit_early,
            state_topic: kafka.state_topic_full(),
            shutdown: shutdown.clone(),
        });
        let (egress, egress_arbiter) =
            KafkaEgressActor::start(producer, delivery_timeout, stats_interval, transactional);
        let offsets = if kafka.exactly_once {
            OffsetCommit::Transaction(egress.clone().recipient())
        } else {
            OffsetCommit::Consumer
        };
        let arbiter = Arbiter::new();
        let here = arbiter.handle();
        let finishes = inspection.finishes();
        let queue_addr = {
            let publish = egress.clone().recipient();
            let outputs = outputs.clone();
            let sweep = config.queue.stale_sweep_interval;
            let finishes = finishes.clone();
            let capacity = spec.usable();
            let rules = Rules::from_config(&config.scheduler);
            Supervisor::start_in_arbiter(&here, move |_| {
                QueueActor::new(queue, publish, outputs, stats_interval, sweep)
                    .recording_finishes(finishes)
                    .estimating_on(capacity, &rules)
                    .judging_by(rules)
            })
        };
        let resource = {
            let changes = queue_addr.clone().recipient();
            Supervisor::start_in_arbiter(&here, move |_| {
                ResourceActor::new(pool, stats_interval).telling(changes)
            })
        };
        let scheduler = {
            let peers = SchedulerPeers {
                take: queue_addr.clone().recipient(),
                give_back: queue_addr.clone().recipient(),
                settle: queue_addr.clone().recipient(),
                view: resource.clone().recipient(),
                reserve: resource.clone().recipient(),
                release: resource.clone().recipient(),
                publish: egress.clone().recipient(),
                publish_batch: egress.clone().recipient(),
            };
            let outputs = outputs.clone();
            let s = config.scheduler.clone();
            Supervisor::start_in_arbiter(&here, move |_| {
                SchedulerActor::new(
                    peers,
                    outputs,
                    s.max_concurrent_scheduling,
                    s.scheduling_interval,
                    stats_interval,
                )
                .rules(Rules::from_config(&s))
            })
        };
        let ingress = {
            let peers = IngressPeers {
                enqueue: queue_addr.clone().recipient(),
                cancel: queue_addr.clone().recipient(),
                is_duplicate: queue_addr.clone().recipient(),
                remember: queue_addr.clone().recipient(),
                release: resource.clone().recipient(),
                kick: scheduler.clone().recipient(),
                publish: egress.clone().recipient(),
            };
            let max_bytes = kafka.max_message_bytes;
            let kafka = kafka.clone();
            let assigned = readiness.consumer_assigned.clone();
            let shutdown = shutdown.clone();
            Supervisor::start_in_arbiter(&here, move |_| {
                let handler =
                    EventHandler::new(peers, outputs, spec, max_bytes).recording_finishes(finishes);
                KafkaIngressActor::new(
                    kafka,
                    bootstrap,
                    handler,
                    stats_interval,
                    assigned,
                    offsets,
                    shutdown,
                )
            })
        };
        inspection.attach(InspectPeers {
            listing: queue_addr.clone().recipient(),
            lookup: queue_addr.clone().recipient(),
            pool: resource.clone().recipient(),
            allocation: resource.clone().recipient(),
            scheduler: scheduler.clone().recipient(),
        });
        info!(
            restored_queued = restored.queued,
            restored_allocated = restored.allocated,
            "Coordinator started."
        );
        Ok(Daemon {
            queue: queue_addr,
            resource,
            scheduler,
            ingress,
            egress,
            restored,
            readiness,
            inspection,
            shutdown,
            arbiter,
            egress_arbiter,
        })
    }

    /// Starts the tree again after a [`Failure::Recoverable`](crate::shutdown::Failure::Recoverable) or on a takeover: fences and
    /// aborts what the last owner left open, restores from the state topic (from `tail` on the
    /// first attempt, as a standby kept it) and consumes from the committed offsets. While the
    /// brokers cannot be reached every attempt fails; it tries again with a growing pause until
    /// it succeeds or `stop` is requested (then `None`).
    pub async fn restart(
        config: &Config,
        bootstrap: &str,
        readiness: &Arc<Readiness>,
        inspection: &Arc<Inspection>,
        mut tail: Option<StateTail>,
        stop: &Shutdown,
    ) -> Option<Daemon> {
        let mut backoff = RESTART_BACKOFF;
        for attempt in 1u64.. {
            let start = Daemon::start(
                config.clone(),
                bootstrap.to_owned(),
                readiness.clone(),
                inspection.clone(),
                tail.take(),
            );
            let failed = tokio::select! {
                started = start => match started {
                    Ok(daemon) => return Some(daemon),
                    Err(e) => e,
                },
                _ = stop.requested() => return None,
            };
            warn!(attempt, error = %format!("{failed:#}"), retry_in = %humantime::format_duration(backoff), "Restart failed; trying again.");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.requested() => return None,
            }
            backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
        }
        None
    }

    /// Abandons the tree after a [`Failure`](crate::shutdown::Failure): the egress commits nothing more, then every
    /// thread stops ([`Daemon::stop_threads`]).
    pub async fn abandon(self) {
        self.shutdown.request();
        let _ = actix_rt::task::spawn_blocking(move || self.stop_threads()).await;
    }

    /// Stops the threads of the tree and waits for them: every actor, its consumer and its
    /// producer are dropped, nothing more is committed (what was not is aborted by the next
    /// instance's `init_transactions`), and no client outlives the broker it talks to. After
    /// [`Daemon::shutdown`] this ends the daemon; after a [`Failure`](crate::shutdown::Failure) it abandons the tree.
    pub fn stop_threads(self) {
        let started = Instant::now();
        self.inspection.detach();
        self.readiness
            .consumer_assigned
            .store(false, Ordering::Relaxed);
        for arbiter in std::iter::once(self.arbiter).chain(self.egress_arbiter) {
            arbiter.stop();
            // A thread blocked inside librdkafka (a transactional call on a broker that went
            // away) may never return: it is waited for a while, then left behind; the next
            // owner's init_transactions fences its producer.
            let (done, stopped) = std::sync::mpsc::channel();
            let joiner = std::thread::spawn(move || {
                let _ = arbiter.join();
                let _ = done.send(());
            });
            if stopped.recv_timeout(THREAD_STOP_TIMEOUT).is_ok() {
                let _ = joiner.join();
            } else {
                error!(
                    waited = %humantime::format_duration(THREAD_STOP_TIMEOUT),
                    "An actor thread did not stop (blocked in the Kafka client); left behind."
                );
            }
        }
        info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Actor threads stopped."
        );
    }

    /// Stops consuming, lets in-flight scheduling finish, flushes the producer and commits,
    /// all within `grace`. Returns false (with a warning) if the grace ran out.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        let started = Instant::now();
        let ingress = self.ingress.clone();
        let scheduler = self.scheduler.clone();
        let egress = self.egress.clone();
        let orderly = async move {
            let _ = ingress.send(StopConsuming).await;
            let _ = scheduler.send(Drain).await;
            let _ = egress.send(Flush(grace)).await;
        };
        match tokio::time::timeout(grace, orderly).await {
            Ok(()) => {
                info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Coordinator stopped cleanly."
                );
                true
            }
            Err(_) => {
                warn!(grace = %humantime::format_duration(grace), "Shutdown grace ran out; stopping anyway.");
                false
            }
        }
    }
}
