//! The supervised actor tree and its orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::Context as _;
use coordinator_core::config::Config;
use coordinator_core::pool::{PoolSpec, ResourcePool};
use coordinator_core::queue::{ExecutionQueue, QueueLimits};
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::egress::{Flush, KafkaEgressActor};
use crate::ingress::{EventHandler, IngressPeers, KafkaIngressActor, OffsetCommit, StopConsuming};
use crate::kafka::{daemon_producer_config, ensure_topics};
use crate::queue_actor::QueueActor;
use crate::resource_actor::ResourceActor;
use crate::scheduler::{Drain, SchedulerActor, SchedulerPeers};
use crate::state::{restore, Outputs, RestoredState};
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
    pub restored: (usize, usize),
    /// What `/readyz` answers from.
    pub readiness: Arc<Readiness>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Reports a failure the daemon cannot go on after (a transaction not committed): the
    /// process must restart from what Kafka holds.
    pub fatal: mpsc::UnboundedReceiver<String>,
    /// The egress actor's own thread, with exactly-once.
    _egress_arbiter: Option<Arbiter>,
}

impl Daemon {
    /// Creates topics if configured, restores state, and starts every actor under a
    /// supervisor. Must run inside an actix System.
    pub async fn start(config: Config, bootstrap: String) -> anyhow::Result<Daemon> {
        let kafka = config.kafka.clone();
        if kafka.create_topics {
            ensure_topics(&kafka, &bootstrap).await?;
        }
        let readiness = Arc::new(Readiness::default());
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
            actix_rt::task::spawn_blocking(move || restore(&kafka, &bootstrap))
                .await
                .context("state restore task")??
        };
        let metrics_addr = match config.daemon.metrics_socket_addr() {
            Some(addr) => Some(telemetry::serve(addr, readiness.clone())?),
            None => None,
        };
        let stats_interval = config.daemon.stats_interval;
        let outputs = Outputs::new(&kafka, config.wire.priority_format);

        let mut queue = ExecutionQueue::new(queue_limits(&config));
        let spec = PoolSpec::from_config(&config.resources);
        let mut pool = ResourcePool::new(spec.clone());
        let restored_counts = (restored.queued.len(), restored.allocated.len());
        for entry in restored.queued {
            let id = entry.execution_id.clone();
            if queue.restore(entry).is_none() {
                warn!(execution_id = %id, "Restored queue entry skipped: id or arrival taken.");
            }
        }
        for id in &restored.finished {
            queue.remember_finished(id);
        }
        for allocation in restored.allocated {
            queue.remember_finished(&allocation.execution_id);
            if let Err(e) = pool.allocate(&allocation.execution_id, allocation.resources) {
                warn!(execution_id = %allocation.execution_id, error = %e, "Restored allocation exceeds the pool as configured now; kept out of the books.");
            }
        }

        let delivery_timeout = kafka.delivery_timeout;
        let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
        let (egress, egress_arbiter) = if kafka.exactly_once {
            // Commits block their thread: the egress gets one of its own.
            let arbiter = Arbiter::new();
            let interval = kafka.transaction_interval;
            let state_topic = kafka.state_topic_full();
            let egress = Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
                KafkaEgressActor::transactional(
                    producer,
                    delivery_timeout,
                    stats_interval,
                    interval,
                    state_topic,
                    fatal_tx,
                )
            });
            (egress, Some(arbiter))
        } else {
            let egress = Supervisor::start(move |_| {
                KafkaEgressActor::new(producer, delivery_timeout, stats_interval)
            });
            (egress, None)
        };
        let offsets = if kafka.exactly_once {
            OffsetCommit::Transaction(egress.clone().recipient())
        } else {
            OffsetCommit::Consumer
        };
        let queue_addr = {
            let publish = egress.clone().recipient();
            let outputs = outputs.clone();
            let sweep = config.queue.stale_sweep_interval;
            Supervisor::start(move |_| {
                QueueActor::new(queue, publish, outputs, stats_interval, sweep)
            })
        };
        let resource = Supervisor::start(move |_| ResourceActor::new(pool, stats_interval));
        let scheduler = {
            let peers = SchedulerPeers {
                dequeue: queue_addr.clone().recipient(),
                requeue: queue_addr.clone().recipient(),
                untried: queue_addr.clone().recipient(),
                settle: queue_addr.clone().recipient(),
                put_back: queue_addr.clone().recipient(),
                allocate: resource.clone().recipient(),
                release: resource.clone().recipient(),
                publish: egress.clone().recipient(),
                publish_batch: egress.clone().recipient(),
            };
            let outputs = outputs.clone();
            let s = config.scheduler.clone();
            Supervisor::start(move |_| {
                SchedulerActor::new(
                    peers,
                    outputs,
                    s.max_concurrent_scheduling,
                    s.scheduling_interval,
                    stats_interval,
                )
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
            Supervisor::start(move |_| {
                let handler = EventHandler::new(peers, outputs, spec, max_bytes);
                KafkaIngressActor::new(kafka, bootstrap, handler, stats_interval, assigned, offsets)
            })
        };
        info!(
            restored_queued = restored_counts.0,
            restored_allocated = restored_counts.1,
            "Coordinator started."
        );
        Ok(Daemon {
            queue: queue_addr,
            resource,
            scheduler,
            ingress,
            egress,
            restored: restored_counts,
            readiness,
            metrics_addr,
            fatal: fatal_rx,
            _egress_arbiter: egress_arbiter,
        })
    }

    /// Stops the threads the daemon started beside the System's (the egress's, with
    /// exactly-once) and waits for them, so no client outlives the broker it talks to.
    pub fn stop_threads(self) {
        if let Some(arbiter) = self._egress_arbiter {
            arbiter.stop();
            let _ = arbiter.join();
        }
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
