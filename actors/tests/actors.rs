//! The actors without a broker (collector actors, no Kafka): real QueueActor, ResourceActor and
//! SchedulerActor under their supervisors, with a collector in place of the Kafka egress.
//! Scheduling order, blocking without spinning, reserved amounts on the wire, the publish-failure
//! path, restarts that keep state, and stale expiry. Every wait polls with a deadline.

mod support;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use coordinator_core::config::KafkaConfig;
use coordinator_core::events::{saga_id, ExecutionRequested};
use coordinator_core::pool::{Allocation, PoolSpec, ResourceAsk, ResourcePool, Resources};
use coordinator_core::priority::PriorityFormat;
use coordinator_core::quantity::{format_cpu_millis, format_memory_mib};
use coordinator_core::queue::{Cancelled, ExecutionQueue, QueueLimits};
use coordinator_core::Priority;
use execution_coordinator::actors::queue::{
    Cancel, Enqueue, ExpireStale, IsDuplicate, QueueActor, QueueStatsQuery, QueuedIds,
};
use execution_coordinator::actors::resource::{
    Allocate, AllocationsQuery, PoolStatsQuery, Release, Reserve, ResourceActor,
};
use execution_coordinator::actors::scheduler::{
    Kick, SchedulerActor, SchedulerPeers, SchedulerStats, SchedulerStatsQuery,
};
use execution_coordinator::actors::{InjectFault, RestartCount};
use execution_coordinator::state::outputs::Outputs;
use execution_coordinator::state::pending::Pending;
use serde_json::Value;
use support::actors::{
    admitted, eventually, pool, request, AllocateGate, Collector, DequeueCounter, Sink, Topics,
};
use tokio::sync::Semaphore;

use Priority::{Background, Critical, High, Low, Normal};

/// Long enough that a timer never fires during a test: only kicks and starts wake the actor.
const NEVER: Duration = Duration::from_secs(3600);

/// What each test execution reserves unless the test says otherwise.
const SMALL: Resources = Resources::new(500, 256, 0);

/// The actors under test, wired as the daemon wires them but publishing to a collector.
struct Rig {
    sink: Sink,
    topics: Topics,
    outputs: Outputs,
    collector: Addr<Collector>,
    queue: Addr<QueueActor>,
    resource: Addr<ResourceActor>,
    /// Dequeue calls the schedulers made.
    dequeues: Arc<AtomicU64>,
}

impl Rig {
    /// Queue and pool actors under supervisors; timers off.
    fn start(pool: PoolSpec, limits: QueueLimits) -> Rig {
        Rig::with_sweep(pool, limits, NEVER)
    }

    /// As [`Rig::start`], with the queue's stale sweeper running every `sweep`.
    fn with_sweep(pool: PoolSpec, limits: QueueLimits, sweep: Duration) -> Rig {
        let kafka = KafkaConfig::default();
        let outputs = Outputs::new(&kafka, PriorityFormat::Name);
        let sink = Sink::default();
        let collector = Collector::start(sink.clone());
        let queue = {
            let publish = collector.clone().recipient();
            let outputs = outputs.clone();
            Supervisor::start(move |_| {
                QueueActor::new(ExecutionQueue::new(limits), publish, outputs, NEVER, sweep)
            })
        };
        let resource =
            Supervisor::start(move |_| ResourceActor::new(ResourcePool::new(pool), NEVER));
        Rig {
            sink,
            topics: Topics::new(&kafka),
            outputs,
            collector,
            queue,
            resource,
            dequeues: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A supervised scheduler on this rig's actors; its dequeues are counted.
    fn scheduler(&self, max_in_flight: usize, interval: Duration) -> Addr<SchedulerActor> {
        self.scheduler_with(max_in_flight, interval, self.resource.clone().recipient())
    }

    /// As [`Rig::scheduler`], with its `Reserve` requests going to `reserve`.
    fn scheduler_with(
        &self,
        max_in_flight: usize,
        interval: Duration,
        reserve: Recipient<Reserve>,
    ) -> Addr<SchedulerActor> {
        let counter = DequeueCounter::start(self.queue.clone().recipient(), self.dequeues.clone());
        let peers = SchedulerPeers {
            take: counter.recipient(),
            give_back: self.queue.clone().recipient(),
            settle: self.queue.clone().recipient(),
            view: self.resource.clone().recipient(),
            reserve,
            release: self.resource.clone().recipient(),
            publish: self.collector.clone().recipient(),
            publish_batch: self.collector.clone().recipient(),
        };
        let outputs = self.outputs.clone();
        Supervisor::start(move |_| {
            SchedulerActor::new(peers, outputs, max_in_flight, interval, NEVER)
        })
    }

    /// Queues `request` reserving `resources`; answers its position.
    async fn enqueue_request(&self, request: ExecutionRequested, resources: Resources) -> usize {
        let id = request.execution_id.clone();
        let priority = request.priority_level().expect("a valid level");
        let answer = self
            .queue
            .send(Enqueue {
                execution_id: id.clone(),
                user_id: request.metadata.user_key().to_owned(),
                priority,
                pending: Pending::new(&request, resources, None),
            })
            .await;
        admitted(&id, answer).position
    }

    /// Queues the golden request as `id` at `priority`, reserving `resources`.
    async fn enqueue(&self, id: &str, priority: Priority, resources: Resources) -> usize {
        self.enqueue_request(request(id, priority, "alice"), resources)
            .await
    }

    /// Queued ids in dispatch order.
    async fn queued(&self) -> Vec<String> {
        self.queue.send(QueuedIds).await.expect("queue answers")
    }

    /// Allocations held, by execution id.
    async fn allocations(&self) -> Vec<Allocation> {
        let mut held = self
            .resource
            .send(AllocationsQuery)
            .await
            .expect("pool answers");
        held.sort_by(|a, b| a.execution_id.cmp(&b.execution_id));
        held
    }

    /// Execution ids of the commands delivered so far, in publish order.
    fn commands(&self) -> Vec<String> {
        self.sink.keys(&self.topics.commands)
    }

    /// Waits until exactly `ids` have been commanded, in that order.
    async fn await_commands(&self, ids: &[&str]) {
        let want: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        eventually(&format!("commands {want:?}"), || {
            let have = self.commands();
            assert!(
                want.starts_with(&have),
                "commands {have:?} do not lead to {want:?}"
            );
            std::future::ready((have == want).then_some(()))
        })
        .await;
    }

    /// The payloads of the state records published for `id`, in order (`None` = tombstone).
    fn state_of(&self, id: &str) -> Vec<Option<Value>> {
        self.sink
            .delivered_to(&self.topics.state)
            .into_iter()
            .filter(|p| p.key == id)
            .map(|p| p.payload)
            .collect()
    }

    /// What the state records of `id` say, in order: "queued", "allocated" or "tombstone".
    fn state_names(&self, id: &str) -> Vec<String> {
        self.state_of(id)
            .into_iter()
            .map(|record| match record {
                Some(record) => record["state"].as_str().unwrap_or("?").to_owned(),
                None => "tombstone".to_owned(),
            })
            .collect()
    }

    /// The delivered command for `id`.
    fn command_of(&self, id: &str) -> Value {
        let commands: Vec<Value> = self
            .sink
            .delivered_to(&self.topics.commands)
            .into_iter()
            .filter(|p| p.key == id)
            .filter_map(|p| p.payload)
            .collect();
        assert_eq!(commands.len(), 1, "one command for {id}: {commands:?}");
        commands.into_iter().next().expect("one command")
    }
}

async fn stats(scheduler: &Addr<SchedulerActor>) -> SchedulerStats {
    scheduler
        .send(SchedulerStatsQuery)
        .await
        .expect("scheduler answers")
}

/// Waits until the scheduler's counters satisfy `done`; answers them.
async fn await_stats(
    scheduler: &Addr<SchedulerActor>,
    what: &str,
    done: impl Fn(&SchedulerStats) -> bool,
) -> SchedulerStats {
    eventually(what, || async {
        let s = stats(scheduler).await;
        done(&s).then_some(s)
    })
    .await
}

async fn await_restarts<A>(addr: &Addr<A>, what: &str, want: u64)
where
    A: Actor<Context = Context<A>> + Handler<RestartCount>,
{
    eventually(&format!("{what} restarted {want} time(s)"), || async {
        let restarts = addr.send(RestartCount).await.ok()?;
        assert!(restarts <= want, "{what} restarted {restarts} times");
        (restarts == want).then_some(())
    })
    .await;
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[actix::test]
async fn commands_leave_in_priority_order_then_fifo_within_a_level() {
    let rig = Rig::start(pool(38_400, 65_536), QueueLimits::default());
    let arrivals = [
        ("n1", Normal),
        ("l1", Low),
        ("c1", Critical),
        ("n2", Normal),
        ("b1", Background),
        ("h1", High),
        ("c2", Critical),
        ("l2", Low),
        ("h2", High),
        ("n3", Normal),
    ];
    let mut positions = Vec::new();
    for (id, priority) in arrivals {
        positions.push(rig.enqueue(id, priority, SMALL).await);
    }
    // True rank at arrival: everything of a higher level or earlier at the same level.
    assert_eq!(positions, [0, 1, 0, 2, 4, 1, 1, 6, 3, 6]);
    let order = ["c1", "c2", "h1", "h2", "n1", "n2", "n3", "l1", "l2", "b1"];
    assert_eq!(rig.queued().await, ids(&order));

    // One scheduling at a time, and no timer: the publish order is the dispatch order.
    let scheduler = rig.scheduler(1, NEVER);
    rig.await_commands(&order).await;
    let s = await_stats(&scheduler, "an idle scheduler", |s| s.in_flight == 0).await;
    assert_eq!((s.dispatched, s.requeued, s.blocked), (10, 0, false));
    for (id, priority) in arrivals {
        let command = rig.command_of(id);
        assert_eq!(command["event_type"], "create_pod_command");
        assert_eq!(command["execution_id"], id);
        assert_eq!(command["priority"], priority.name(), "priority of {id}");
    }
    assert!(rig.queued().await.is_empty());
    assert_eq!(rig.allocations().await.len(), 10);
}

#[actix::test]
async fn a_blocked_head_is_requeued_one_level_lower_and_waits_for_a_release() {
    // Room for two executions of SMALL.
    let rig = Rig::start(pool(1_000, 1_024), QueueLimits::default());
    rig.enqueue("a", High, SMALL).await;
    rig.enqueue("b", High, SMALL).await;
    rig.enqueue("c", Normal, SMALL).await;
    rig.enqueue("d", Normal, SMALL).await;
    rig.enqueue("e", Low, SMALL).await;

    // No timer: after the start, only a kick may wake the scheduler.
    let scheduler = rig.scheduler(1, NEVER);
    let s = await_stats(&scheduler, "the pass to block", |s| {
        s.blocked && s.in_flight == 0
    })
    .await;
    assert_eq!((s.dispatched, s.requeued), (2, 1));
    assert_eq!(rig.commands(), ids(&["a", "b"]));
    // c did not fit: back one level lower (NORMAL → LOW), keeping its arrival, so it is now
    // behind d but still ahead of e, which arrived later at LOW.
    assert_eq!(rig.queued().await, ids(&["d", "c", "e"]));
    let depth = rig.queue.send(QueueStatsQuery).await.expect("queue").depth;
    assert_eq!(depth, [0, 0, 1, 2, 0]);
    let c = rig.state_of("c");
    let last = c.last().cloned().flatten().expect("a queued record for c");
    assert_eq!(
        (&last["state"], &last["priority"], &last["requeues"]),
        (&Value::from("queued"), &Value::from(8), &Value::from(1))
    );
    // a, b and c were each dequeued once; the pass ended at c.
    assert_eq!(rig.dequeues.load(Ordering::SeqCst), 3);

    // A release and a kick: the next head (d) goes out at once — the timer is an hour away.
    let released = rig
        .resource
        .send(Release {
            execution_id: "a".into(),
        })
        .await
        .expect("pool answers");
    assert_eq!(released.map(|a| a.resources), Some(SMALL));
    scheduler.do_send(Kick);
    rig.await_commands(&["a", "b", "d"]).await;
    let s = await_stats(&scheduler, "the pass to block again", |s| {
        s.blocked && s.in_flight == 0 && s.requeued == 2
    })
    .await;
    assert_eq!(s.dispatched, 3);
    // c was the head again and did not fit: LOW → BACKGROUND; e is next now.
    assert_eq!(rig.queued().await, ids(&["e", "c"]));
    assert_eq!(rig.dequeues.load(Ordering::SeqCst), 5);
    let held: Vec<String> = rig
        .allocations()
        .await
        .into_iter()
        .map(|a| a.execution_id)
        .collect();
    assert_eq!(held, ids(&["b", "d"]));
}

#[actix::test]
async fn a_blocked_pass_demotes_only_the_execution_that_did_not_fit() {
    // Room for two executions of SMALL; ten schedulings may run at once.
    let rig = Rig::start(pool(1_000, 1_024), QueueLimits::default());
    for id in ["a", "b"] {
        rig.enqueue(id, Normal, SMALL).await;
    }
    for id in ["c", "d", "e", "f"] {
        rig.enqueue(id, High, SMALL).await;
    }
    let scheduler = rig.scheduler(10, NEVER);
    let s = await_stats(&scheduler, "the pass to block", |s| {
        s.blocked && s.in_flight == 0 && s.awaiting_ack == 0
    })
    .await;
    assert_eq!((s.dispatched, s.requeued), (2, 1));
    assert_eq!(rig.commands(), ids(&["c", "d"]));
    // e did not fit and went one level lower; f, a and b, behind it, were never tried and keep
    // their levels: f (HIGH) is still ahead of everything NORMAL.
    assert_eq!(rig.queued().await, ids(&["f", "a", "b", "e"]));
    let depth = rig.queue.send(QueueStatsQuery).await.expect("queue").depth;
    assert_eq!(depth, [0, 1, 3, 0, 0]);
    for id in ["f", "a", "b"] {
        assert_eq!(rig.state_names(id), ["queued"], "{id} was written again");
    }

    // A release: f goes out, then the pass stops at a (NORMAL → LOW), b and e stay NORMAL.
    rig.resource
        .send(Release {
            execution_id: "c".into(),
        })
        .await
        .expect("pool answers");
    scheduler.do_send(Kick);
    rig.await_commands(&["c", "d", "f"]).await;
    let s = await_stats(&scheduler, "the pass to block again", |s| {
        s.blocked && s.in_flight == 0 && s.requeued == 2
    })
    .await;
    assert_eq!(s.dispatched, 3);
    assert_eq!(rig.queued().await, ids(&["b", "e", "a"]));
    let depth = rig.queue.send(QueueStatsQuery).await.expect("queue").depth;
    assert_eq!(depth, [0, 0, 2, 1, 0]);
}

#[actix::test]
async fn a_blocked_scheduler_retries_once_per_tick_and_never_spins() {
    let interval = Duration::from_millis(50);
    let rig = Rig::start(pool(1_000, 1_024), QueueLimits::default());
    for id in ["a", "b", "c"] {
        rig.enqueue(id, Normal, SMALL).await;
    }
    let scheduler = rig.scheduler(1, interval);
    await_stats(&scheduler, "the pass to block", |s| {
        s.blocked && s.dispatched == 2
    })
    .await;

    // Watch the blocked scheduler for a while: each tick may retry the head once (one dequeue,
    // one requeue), no more. A busy loop would count thousands here.
    let before = stats(&scheduler).await;
    let dequeues_before = rig.dequeues.load(Ordering::SeqCst);
    let watched = Instant::now();
    let window = Duration::from_millis(600);
    while watched.elapsed() < window {
        let s = stats(&scheduler).await;
        assert_eq!(s.dispatched, 2, "nothing fits, nothing is dispatched");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = stats(&scheduler).await;
    let dequeues = rig.dequeues.load(Ordering::SeqCst) - dequeues_before;
    let elapsed = watched.elapsed();
    let ticks = elapsed.as_millis() as u64 / interval.as_millis() as u64;
    let requeues = after.requeued - before.requeued;
    assert!(
        requeues >= 1,
        "the tick retries the head (0 requeues in {elapsed:?})"
    );
    assert!(
        requeues <= ticks + 2 && dequeues <= ticks + 2,
        "{requeues} requeues and {dequeues} dequeues in {elapsed:?}: more than one per {interval:?} tick"
    );
    assert_eq!(rig.commands(), ids(&["a", "b"]));
    assert_eq!(rig.queued().await, ids(&["c"]));

    // The release lets c through.
    rig.resource
        .send(Release {
            execution_id: "b".into(),
        })
        .await
        .expect("pool answers");
    scheduler.do_send(Kick);
    rig.await_commands(&["a", "b", "c"]).await;
    assert!(rig.queued().await.is_empty());
}

#[actix::test]
async fn state_records_and_the_command_carry_the_reserved_amounts() {
    let spec = pool(38_400, 65_536);
    let rig = Rig::start(spec.clone(), QueueLimits::default());
    // Asks for more than the per-execution caps (4 cores, 8 GiB): clamped, as ingress resolves it.
    let mut big = request("big", Normal, "bob");
    big.cpu_request = Some("8".into());
    big.memory_request = Some("16Gi".into());
    big.cpu_limit = Some("1000m".into());
    big.memory_limit = Some("128Mi".into());
    // Asks for less than the golden request's limits: reserved as asked, limits kept.
    let mut small = request("small", Normal, "bob");
    small.cpu_request = Some("0.25".into());
    small.memory_request = Some("64Mi".into());
    let mut reserved = Vec::new();
    for r in [big, small] {
        let resolved = spec
            .resolve(ResourceAsk {
                language: &r.language,
                cpu: r.cpu_request.as_deref(),
                memory: r.memory_request.as_deref(),
                gpu: r.gpu_request,
            })
            .expect("fits");
        reserved.push(resolved.resources);
        rig.enqueue_request(r, resolved.resources).await;
    }
    assert_eq!(
        reserved,
        [Resources::new(4_000, 8_192, 0), Resources::new(250, 64, 0)]
    );

    let scheduler = rig.scheduler(1, NEVER);
    rig.await_commands(&["big", "small"]).await;
    await_stats(&scheduler, "an idle scheduler", |s| s.in_flight == 0).await;

    for (id, r, limits) in [
        ("big", reserved[0], ("4000m", "8192Mi")),
        ("small", reserved[1], ("1000m", "128Mi")),
    ] {
        let states = rig.state_of(id);
        assert_eq!(
            states.len(),
            2,
            "queued then allocated for {id}: {states:?}"
        );
        let queued = states[0].clone().expect("queued record");
        let allocated = states[1].clone().expect("allocated record");
        assert_eq!(queued["state"], "queued");
        assert_eq!(queued["request"]["execution_id"], id);
        assert_eq!(allocated["state"], "allocated");
        for record in [&queued, &allocated] {
            assert_eq!(record["cpu_millis"], r.cpu_millis, "{id}: {record}");
            assert_eq!(record["memory_mib"], r.memory_mib, "{id}: {record}");
            assert_eq!(record["gpu"], 0, "{id}: {record}");
        }
        let command = rig.command_of(id);
        assert_eq!(command["cpu_request"], format_cpu_millis(r.cpu_millis));
        assert_eq!(command["memory_request"], format_memory_mib(r.memory_mib));
        // Kubernetes refuses a request above its limit: the limit is raised to the reservation.
        assert_eq!(
            (&command["cpu_limit"], &command["memory_limit"]),
            (&Value::from(limits.0), &Value::from(limits.1))
        );
        assert_eq!(command["saga_id"], saga_id(id).to_string());
        assert_eq!(command["metadata"]["service_name"], "execution-coordinator");
        assert_eq!(command["metadata"]["user_id"], "bob");
    }
    assert_eq!(
        rig.allocations().await,
        vec![
            Allocation {
                execution_id: "big".into(),
                resources: reserved[0],
            },
            Allocation {
                execution_id: "small".into(),
                resources: reserved[1],
            },
        ]
    );
    let used = rig.resource.send(PoolStatsQuery).await.expect("pool").used;
    assert_eq!(used, Resources::new(4_250, 8_256, 0));
}

#[actix::test]
async fn a_command_the_broker_refuses_releases_the_allocation_and_requeues() {
    let rig = Rig::start(pool(38_400, 65_536), QueueLimits::default());
    rig.sink.fail(&rig.topics.commands);
    rig.enqueue("x", High, SMALL).await;

    let scheduler = rig.scheduler(1, NEVER);
    let s = await_stats(&scheduler, "the publish failure", |s| {
        s.publish_failures == 1 && s.in_flight == 0
    })
    .await;
    assert_eq!(s.dispatched, 0);
    assert!(s.blocked, "a failing broker is not retried at once");
    let attempts: Vec<_> = rig
        .sink
        .all()
        .into_iter()
        .filter(|p| p.topic == rig.topics.commands)
        .collect();
    assert_eq!(attempts.len(), 1);
    assert!(!attempts[0].delivered);
    // Resources back in the pool, execution back in the queue, and the last state record
    // (what a restarted daemon would read) says queued.
    assert!(rig.allocations().await.is_empty());
    let used = rig.resource.send(PoolStatsQuery).await.expect("pool").used;
    assert_eq!(used, Resources::default());
    assert_eq!(rig.queued().await, ids(&["x"]));
    assert_eq!(rig.state_names("x"), ["queued", "allocated", "queued"]);

    // The broker recovers: the next wake-up commands it, once.
    rig.sink.heal();
    scheduler.do_send(Kick);
    rig.await_commands(&["x"]).await;
    await_stats(&scheduler, "an idle scheduler", |s| s.in_flight == 0).await;
    assert!(rig.queued().await.is_empty());
    assert_eq!(
        rig.allocations().await,
        vec![Allocation {
            execution_id: "x".into(),
            resources: SMALL,
        }]
    );
    assert_eq!(
        rig.state_names("x"),
        ["queued", "allocated", "queued", "allocated"]
    );
}

#[actix::test]
async fn the_queue_actor_restarts_with_its_entries_in_order() {
    let rig = Rig::start(pool(38_400, 65_536), QueueLimits::default());
    for (id, priority) in [
        ("q1", Low),
        ("q2", Critical),
        ("q3", Normal),
        ("q4", Critical),
    ] {
        rig.enqueue(id, priority, SMALL).await;
    }
    let before = rig.queued().await;
    assert_eq!(before, ids(&["q2", "q4", "q3", "q1"]));
    let stats_before = rig.queue.send(QueueStatsQuery).await.expect("queue");
    assert_eq!(rig.queue.send(RestartCount).await.expect("queue"), 0);

    rig.queue
        .send(InjectFault)
        .await
        .expect("queue takes the fault");
    await_restarts(&rig.queue, "the queue", 1).await;

    assert_eq!(rig.queued().await, before);
    let stats_after = rig.queue.send(QueueStatsQuery).await.expect("queue");
    assert_eq!(
        (stats_after.depth, stats_after.total, &stats_after.top_users),
        (
            stats_before.depth,
            stats_before.total,
            &stats_before.top_users
        )
    );
    let duplicate = rig
        .queue
        .send(IsDuplicate {
            execution_id: "q3".into(),
        })
        .await
        .expect("queue");
    assert!(duplicate, "dedup memory survives the restart");
    // Arrival numbering goes on: a new NORMAL entry lands behind q3.
    assert_eq!(rig.enqueue("q5", Normal, SMALL).await, 3);

    // The restarted queue serves the scheduler in the same order.
    let _scheduler = rig.scheduler(1, NEVER);
    rig.await_commands(&["q2", "q4", "q3", "q5", "q1"]).await;
    assert_eq!(rig.queue.send(RestartCount).await.expect("queue"), 1);
}

#[actix::test]
async fn the_resource_actor_restarts_with_its_allocations() {
    // Room for three of SMALL.
    let rig = Rig::start(pool(1_500, 1_024), QueueLimits::default());
    for id in ["r1", "r2"] {
        rig.resource
            .send(Allocate {
                execution_id: id.into(),
                resources: SMALL,
            })
            .await
            .expect("pool answers")
            .expect("fits");
    }
    let before = rig.allocations().await;
    let pool_before = rig.resource.send(PoolStatsQuery).await.expect("pool");
    assert_eq!(pool_before.active_allocations, 2);

    rig.resource
        .send(InjectFault)
        .await
        .expect("pool takes the fault");
    await_restarts(&rig.resource, "the pool", 1).await;

    assert_eq!(rig.allocations().await, before);
    assert_eq!(
        rig.resource.send(PoolStatsQuery).await.expect("pool"),
        pool_before
    );
    // The books still add up: one more fits, a fourth does not, a release frees one.
    let allocate = |id: &str| {
        rig.resource.send(Allocate {
            execution_id: id.into(),
            resources: SMALL,
        })
    };
    assert!(allocate("r3").await.expect("pool").is_ok());
    assert!(allocate("r4").await.expect("pool").is_err());
    let released = rig
        .resource
        .send(Release {
            execution_id: "r1".into(),
        })
        .await
        .expect("pool");
    assert_eq!(released.map(|a| a.resources), Some(SMALL));
    assert!(allocate("r4").await.expect("pool").is_ok());
    assert_eq!(rig.resource.send(RestartCount).await.expect("pool"), 1);
}

#[actix::test]
async fn the_scheduler_restarts_and_still_schedules() {
    let rig = Rig::start(pool(38_400, 65_536), QueueLimits::default());
    let scheduler = rig.scheduler(1, NEVER);
    rig.enqueue("s1", Normal, SMALL).await;
    scheduler.do_send(Kick);
    rig.await_commands(&["s1"]).await;
    await_stats(&scheduler, "an idle scheduler", |s| s.in_flight == 0).await;

    scheduler
        .send(InjectFault)
        .await
        .expect("scheduler takes the fault");
    await_restarts(&scheduler, "the scheduler", 1).await;
    let s = stats(&scheduler).await;
    assert_eq!((s.dispatched, s.in_flight), (1, 0), "counters survive");

    // An arrival after the restart is commanded on the kick that follows it.
    rig.enqueue("s2", High, SMALL).await;
    rig.enqueue("s3", Critical, SMALL).await;
    scheduler.do_send(Kick);
    rig.await_commands(&["s1", "s3", "s2"]).await;
    let s = await_stats(&scheduler, "an idle scheduler", |s| s.in_flight == 0).await;
    assert_eq!(s.dispatched, 3);
    assert_eq!(scheduler.send(RestartCount).await.expect("scheduler"), 1);
}

/// Checks what the queue published for an expired execution: `execution_failed` (`timeout`)
/// on the events topic and `finished` last on the state topic.
fn assert_expired_on_the_wire(rig: &Rig, id: &str) {
    let failed: Vec<Value> = rig
        .sink
        .delivered_to(&rig.topics.failed)
        .into_iter()
        .filter(|p| p.key == id)
        .filter_map(|p| p.payload)
        .collect();
    assert_eq!(failed.len(), 1, "one execution_failed for {id}: {failed:?}");
    let failed = &failed[0];
    assert_eq!(failed["event_type"], "execution_failed");
    assert_eq!(failed["execution_id"], id);
    assert_eq!(failed["error_type"], "timeout");
    assert_eq!(failed["exit_code"], -1);
    let message = failed["error_message"].as_str().unwrap_or_default();
    assert!(message.contains("stale timeout"), "{message}");
    assert_eq!(failed["stderr"], failed["error_message"]);
    assert_eq!(failed["metadata"]["user_id"], "alice");
    let states = rig.state_of(id);
    assert!(
        matches!(states.as_slice(), [Some(queued), Some(finished)]
            if queued["state"] == "queued" && finished["state"] == "finished"),
        "queued then finished for {id}: {states:?}"
    );
}

#[actix::test]
async fn stale_executions_expire_with_a_timeout_failure_and_a_finished_record() {
    let stale_timeout = Duration::from_millis(250);
    let limits = QueueLimits {
        stale_timeout,
        ..QueueLimits::default()
    };
    let rig = Rig::start(pool(38_400, 65_536), limits);
    rig.enqueue("old1", Normal, SMALL).await;
    rig.enqueue("old2", Critical, SMALL).await;

    let expired = RefCell::new(Vec::new());
    eventually("old1 and old2 to expire", || async {
        let swept = rig.queue.send(ExpireStale).await.expect("queue");
        let mut expired = expired.borrow_mut();
        expired.extend(swept.into_iter().map(|e| e.execution_id));
        (expired.len() >= 2).then_some(())
    })
    .await;
    let expired = expired.into_inner();
    // Oldest first, whatever the level.
    assert_eq!(expired, ids(&["old1", "old2"]));
    for id in ["old1", "old2"] {
        assert_expired_on_the_wire(&rig, id);
    }
    assert!(rig.queued().await.is_empty());
    assert_eq!(
        rig.queue.send(QueueStatsQuery).await.expect("queue").total,
        0
    );
    let duplicate = rig
        .queue
        .send(IsDuplicate {
            execution_id: "old1".into(),
        })
        .await
        .expect("queue");
    assert!(duplicate, "a redelivered expired request is a duplicate");

    // A fresh entry is left alone while it is younger than the timeout.
    let enqueued = Instant::now();
    rig.enqueue("fresh", Normal, SMALL).await;
    let swept = rig.queue.send(ExpireStale).await.expect("queue");
    if enqueued.elapsed() < stale_timeout {
        assert!(swept.is_empty(), "{swept:?}");
        assert_eq!(rig.queued().await, ids(&["fresh"]));
    }

    // Expired executions are never dispatched; the fresh one is.
    let scheduler = rig.scheduler(1, NEVER);
    if swept.is_empty() {
        rig.await_commands(&["fresh"]).await;
    }
    await_stats(&scheduler, "an idle scheduler", |s| s.in_flight == 0).await;
    assert!(!rig.commands().iter().any(|id| id.starts_with("old")));
}

#[actix::test]
async fn the_sweeper_expires_on_its_own_timer() {
    let limits = QueueLimits {
        stale_timeout: Duration::from_millis(20),
        ..QueueLimits::default()
    };
    let rig = Rig::with_sweep(pool(38_400, 65_536), limits, Duration::from_millis(10));
    rig.enqueue("late", Low, SMALL).await;
    eventually("the sweeper to expire late", || {
        std::future::ready(
            rig.state_of("late")
                .last()
                .is_some_and(|last| last.as_ref().is_some_and(|r| r["state"] == "finished"))
                .then_some(()),
        )
    })
    .await;
    assert_expired_on_the_wire(&rig, "late");
    assert!(rig.queued().await.is_empty());
}

// Known defects, reproduced; each `ignore` names the fix it waits for.

#[actix::test]
async fn an_acknowledged_command_is_never_sent_twice() {
    let rig = Rig::start(pool(38_400, 65_536), QueueLimits::default());
    rig.enqueue("x", Normal, SMALL).await;
    // The command goes out; only the `allocated` state record is refused.
    rig.sink.fail(&rig.topics.state);
    let scheduler = rig.scheduler(1, NEVER);
    await_stats(&scheduler, "the first scheduling", |s| {
        s.dispatched + s.publish_failures == 1 && s.in_flight == 0
    })
    .await;
    assert_eq!(rig.commands(), ids(&["x"]));
    rig.sink.heal();
    scheduler.do_send(Kick);
    eventually("the pass after the kick", || async {
        let s = stats(&scheduler).await;
        (rig.dequeues.load(Ordering::SeqCst) >= 2 && s.in_flight == 0).then_some(())
    })
    .await;
    assert_eq!(rig.commands(), ids(&["x"]), "x was commanded twice");
}

#[actix::test]
async fn an_execution_cancelled_while_being_scheduled_is_recorded_finished() {
    // Room for one SMALL, taken: x will not fit.
    let rig = Rig::start(pool(500, 256), QueueLimits::default());
    rig.resource
        .send(Allocate {
            execution_id: "holder".into(),
            resources: SMALL,
        })
        .await
        .expect("pool")
        .expect("fits");
    rig.enqueue("x", Normal, SMALL).await;
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let allocate =
        AllocateGate::start(rig.resource.clone().recipient(), gate.clone(), seen.clone());
    let scheduler = rig.scheduler_with(1, NEVER, allocate.recipient());
    eventually("x to be dequeued and its allocation asked for", || {
        std::future::ready((seen.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await;

    // Cancelled while the scheduler waits for the pool, as ingress does it.
    let cancelled = rig
        .queue
        .send(Cancel {
            execution_id: "x".into(),
        })
        .await
        .expect("queue");
    assert!(matches!(cancelled, Cancelled::Leased), "{cancelled:?}");
    gate.add_permits(1);
    await_stats(&scheduler, "the refused allocation", |s| {
        s.requeued == 1 && s.in_flight == 0
    })
    .await;
    assert!(rig.queued().await.is_empty(), "cancelled, so not requeued");
    assert!(rig.commands().is_empty());
    // A restarted daemon rebuilds its queue from the last record of each execution.
    assert_eq!(
        rig.state_names("x").last().map(String::as_str),
        Some("finished"),
        "x was cancelled but its last state record says otherwise"
    );
}

#[actix::test]
async fn an_execution_cancelled_while_its_command_is_in_flight_is_not_requeued() {
    let rig = Rig::start(pool(38_400, 65_536), QueueLimits::default());
    rig.enqueue("x", Normal, SMALL).await;
    rig.sink.hold(&rig.topics.commands);
    let scheduler = rig.scheduler(1, NEVER);
    eventually("the command of x to be in flight", || {
        std::future::ready((rig.sink.waiting() == 1).then_some(()))
    })
    .await;

    // Cancelled now, as ingress does it: the queue no longer knows x (settled), so the
    // allocation is released and a tombstone written.
    let cancelled = rig
        .queue
        .send(Cancel {
            execution_id: "x".into(),
        })
        .await
        .expect("queue");
    assert!(matches!(cancelled, Cancelled::NotFound), "{cancelled:?}");
    let released = rig
        .resource
        .send(Release {
            execution_id: "x".into(),
        })
        .await
        .expect("pool");
    assert!(released.is_some());
    rig.collector
        .send(rig.outputs.state_finished("x"))
        .await
        .expect("collector")
        .expect("delivered");

    // Then the broker refuses the command.
    rig.sink.fail(&rig.topics.commands);
    rig.sink.open();
    await_stats(&scheduler, "the refused command", |s| {
        s.publish_failures == 1 && s.in_flight == 0
    })
    .await;
    rig.sink.heal();
    assert!(
        rig.queued().await.is_empty(),
        "x was cancelled but is queued again"
    );
    assert_eq!(
        rig.state_names("x").last().map(String::as_str),
        Some("finished")
    );
}
