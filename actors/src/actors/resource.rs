//! ResourceActor: owns the resource pool and every allocation.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use actix::prelude::*;
use coordinator_core::estimate::waits::Ongoing;
use coordinator_core::planner::{PoolView, Running};
use coordinator_core::pool::{Allocation, Insufficient, PoolStats, ResourcePool, Resources};
use coordinator_core::queue::Millis;
use tracing::{info, warn};

use crate::actors::queue::PoolChanged;
use crate::actors::{InjectFault, RestartCount};
use crate::clock::now_millis;
use crate::telemetry;
use crate::telemetry::stats::ActorStats;

/// Reserve resources for an execution.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Allocation, Insufficient>")]
pub struct Allocate {
    /// The execution to hold them.
    pub execution_id: String,
    /// The amounts to reserve.
    pub resources: Resources,
}

/// What the pool looks like to a scheduling pass, and which of `holding` hold an allocation
/// already (they start without asking for more).
#[derive(Message, Debug, Clone)]
#[rtype(result = "PoolSnapshot")]
pub struct ViewPool {
    /// The executions the pass plans for.
    pub holding: Vec<String>,
    /// What each of them reserves (one that holds an allocation already asks for nothing).
    pub wants: Vec<Resources>,
    /// Whether the pass needs what runs and when it ends (a policy that looks ahead does),
    /// when they do not all fit in what is free.
    pub running: bool,
}

/// The answer to [`ViewPool`].
#[derive(Debug, Clone, Default)]
pub struct PoolSnapshot {
    /// Free amounts and, when asked, what runs.
    pub view: PoolView,
    /// For each execution asked about, whether it holds an allocation already.
    pub holding: Vec<bool>,
}

/// Reserve resources for the executions a plan starts, each on its own: answers, in order,
/// the allocation or why it did not fit (only when the pool changed under the plan).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Vec<Result<Allocation, Insufficient>>")]
pub struct Reserve(pub Vec<Reservation>);

/// One execution's share of a [`Reserve`].
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The execution to hold them.
    pub execution_id: String,
    /// The amounts.
    pub resources: Resources,
    /// When it will have ended at the latest (its start plus its timeout).
    pub ends_by: Millis,
    /// What the wait estimator learns its run time under.
    pub runtime_keys: (u64, u64),
}

/// Return an execution's resources to the pool; answers what was released, if anything.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Option<Allocation>")]
pub struct Release {
    /// The execution that finished or was cancelled.
    pub execution_id: String,
}

/// The pool's figures.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "PoolStats")]
pub struct PoolStatsQuery;

/// Every allocation held now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Vec<Allocation>")]
pub struct AllocationsQuery;

/// What one execution holds, for the inspection API.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Option<Held>")]
pub struct AllocationLookup {
    /// The execution asked about.
    pub execution_id: String,
}

/// What an execution holds, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The amounts.
    pub resources: Resources,
    /// When it was allocated; `None` when restored from the state topic.
    pub since: Option<Millis>,
    /// When it will have ended at the latest (its start plus its timeout); `None` when
    /// restored.
    pub ends_by: Option<Millis>,
}

/// When an allocation made here began, when it ends at the latest, and its run-time keys.
#[derive(Debug, Clone, Copy)]
struct Span {
    since: Millis,
    ends_by: Millis,
    keys: (u64, u64),
}

/// The pool actor.
pub struct ResourceActor {
    pool: ResourcePool,
    /// When each allocation made here began and ends at the latest; restored ones are not in
    /// it.
    spans: HashMap<String, Span>,
    /// Every allocation in the order it ends at the latest (never, [`Millis::MAX`], when that
    /// is not known: restored from the state topic), with what it holds: what a pass plans on,
    /// kept in order as allocations come and go rather than sorted per pass.
    ending: BTreeMap<(Millis, String), Resources>,
    gauges: telemetry::PoolGauges,
    stats: ActorStats,
    stats_interval: Duration,
    /// Told of every change: the queue's wait estimator.
    changes: Option<Recipient<PoolChanged>>,
}

impl ResourceActor {
    /// An actor owning `pool`, logging stats every `stats_interval`.
    pub fn new(pool: ResourcePool, stats_interval: Duration) -> Self {
        let ending = pool
            .allocations()
            .map(|a| ((Millis::MAX, a.execution_id), a.resources))
            .collect();
        Self {
            pool,
            spans: HashMap::new(),
            ending,
            gauges: telemetry::PoolGauges::new(),
            stats: ActorStats::new("resource"),
            stats_interval,
            changes: None,
        }
    }

    /// Tells `changes` of every allocation made and released (and of all of them at start).
    pub fn telling(mut self, changes: Recipient<PoolChanged>) -> Self {
        self.changes = Some(changes);
        self
    }

    fn tell(&self, change: PoolChanged) {
        if let Some(changes) = &self.changes {
            changes.do_send(change);
        }
    }

    fn ongoing(&self, execution_id: &str, resources: Resources) -> Ongoing {
        let span = self.spans.get(execution_id);
        Ongoing {
            resources,
            span: span.map(|s| (s.since, s.ends_by)),
            keys: span.map(|s| s.keys),
        }
    }

    fn report(&mut self) {
        let s = self.pool.stats();
        self.stats.report(0);
        info!(
            target: "actor_stats",
            actor = "resource",
            cpu_used_millis = s.used.cpu_millis,
            cpu_total_millis = s.total.cpu_millis,
            memory_used_mib = s.used.memory_mib,
            memory_total_mib = s.total.memory_mib,
            gpu_used = s.used.gpu,
            gpu_total = s.total.gpu,
            active_allocations = s.active_allocations,
            "Pool stats."
        );
    }
}

impl Actor for ResourceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.gauges.set(&self.pool.stats());
        let running = self
            .pool
            .allocations()
            .map(|a| {
                let ongoing = self.ongoing(&a.execution_id, a.resources);
                (a.execution_id, ongoing)
            })
            .collect();
        self.tell(PoolChanged::Is {
            available: self.pool.available(),
            running,
        });
        ctx.run_interval(self.stats_interval, |act, _| act.report());
    }
}

impl Supervised for ResourceActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.stats.restarted();
        warn!(
            actor = "resource",
            restarts = self.stats.restarts(),
            allocations = self.pool.stats().active_allocations,
            "Actor restarted; allocations kept."
        );
    }
}

impl Handler<Allocate> for ResourceActor {
    type Result = Result<Allocation, Insufficient>;

    fn handle(&mut self, msg: Allocate, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let result = self.pool.allocate(&msg.execution_id, msg.resources);
        if let Ok(held) = &result {
            if !self.spans.contains_key(&msg.execution_id) {
                self.ending
                    .insert((Millis::MAX, msg.execution_id.clone()), held.resources);
            }
        }
        self.gauges.set(&self.pool.stats());
        self.stats.record(started);
        result
    }
}

impl Handler<ViewPool> for ResourceActor {
    type Result = MessageResult<ViewPool>;

    fn handle(&mut self, msg: ViewPool, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let holding: Vec<bool> = msg
            .holding
            .iter()
            .map(|id| self.pool.contains(id))
            .collect();
        // When they all fit together, each starts in order and no plan looks further: what
        // runs (thousands, sorted) is not needed.
        let asked = msg
            .wants
            .iter()
            .zip(&holding)
            .filter(|(_, holds)| !**holds)
            .fold(Resources::default(), |sum, (r, _)| sum.plus(r));
        let running = if msg.running && !asked.fits_in(&self.pool.available()) {
            // In the order they end, as the planner walks them; those restored from the state
            // topic (their ends not known) last.
            self.ending
                .iter()
                .map(|(&(ends_by, _), &resources)| Running { resources, ends_by })
                .collect()
        } else {
            Vec::new()
        };
        let view = PoolView {
            available: self.pool.available(),
            running,
        };
        self.stats.record(started);
        MessageResult(PoolSnapshot { view, holding })
    }
}

impl Handler<Reserve> for ResourceActor {
    type Result = MessageResult<Reserve>;

    fn handle(&mut self, msg: Reserve, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let now = now_millis();
        let mut made = Vec::new();
        let answers = msg
            .0
            .into_iter()
            .map(|r| {
                let allocation = self.pool.allocate(&r.execution_id, r.resources);
                if let Ok(held) = &allocation {
                    let span = Span {
                        since: now,
                        ends_by: r.ends_by,
                        keys: r.runtime_keys,
                    };
                    // One it holds already is timed from now, as before.
                    let old = self.spans.insert(r.execution_id.clone(), span);
                    let old_end = old.map_or(Millis::MAX, |old| old.ends_by);
                    self.ending.remove(&(old_end, r.execution_id.clone()));
                    self.ending
                        .insert((r.ends_by, r.execution_id.clone()), held.resources);
                    let ongoing = self.ongoing(&r.execution_id, r.resources);
                    made.push((r.execution_id, ongoing));
                }
                allocation
            })
            .collect();
        if !made.is_empty() {
            self.tell(PoolChanged::Started {
                available: self.pool.available(),
                started: made,
            });
        }
        self.gauges.set(&self.pool.stats());
        self.stats.record(started);
        MessageResult(answers)
    }
}

impl Handler<Release> for ResourceActor {
    type Result = Option<Allocation>;

    fn handle(&mut self, msg: Release, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let released = self.pool.release(&msg.execution_id);
        let span = self.spans.remove(&msg.execution_id);
        let end = span.map_or(Millis::MAX, |span| span.ends_by);
        self.ending.remove(&(end, msg.execution_id.clone()));
        if released.is_some() {
            self.gauges.set(&self.pool.stats());
            self.tell(PoolChanged::Ended {
                available: self.pool.available(),
                execution_id: msg.execution_id.clone(),
                at: now_millis(),
            });
        }
        self.stats.record(started);
        released
    }
}

impl Handler<PoolStatsQuery> for ResourceActor {
    type Result = MessageResult<PoolStatsQuery>;

    fn handle(&mut self, _msg: PoolStatsQuery, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.pool.stats())
    }
}

impl Handler<AllocationsQuery> for ResourceActor {
    type Result = MessageResult<AllocationsQuery>;

    fn handle(&mut self, _msg: AllocationsQuery, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.pool.allocations().collect())
    }
}

impl Handler<AllocationLookup> for ResourceActor {
    type Result = Option<Held>;

    fn handle(&mut self, msg: AllocationLookup, _ctx: &mut Self::Context) -> Option<Held> {
        let allocation = self.pool.allocation(&msg.execution_id)?;
        let span = self.spans.get(&msg.execution_id);
        Some(Held {
            resources: allocation.resources,
            since: span.map(|s| s.since),
            ends_by: span.map(|s| s.ends_by),
        })
    }
}

impl Handler<RestartCount> for ResourceActor {
    type Result = u64;

    fn handle(&mut self, _msg: RestartCount, _ctx: &mut Self::Context) -> u64 {
        self.stats.restarts()
    }
}

impl Handler<InjectFault> for ResourceActor {
    type Result = ();

    fn handle(&mut self, _msg: InjectFault, ctx: &mut Self::Context) {
        self.stats.error();
        ctx.stop();
    }
}
