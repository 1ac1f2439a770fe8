//! ResourceActor: owns the resource pool and every allocation.

use std::time::{Duration, Instant};

use actix::prelude::*;
use coordinator_core::planner::{self, Candidate, Fate, Policy, PoolView};
use coordinator_core::pool::{Allocation, Insufficient, PoolStats, ResourcePool, Resources};
use coordinator_core::Priority;
use tracing::{error, info, warn};

use crate::actors::{InjectFault, RestartCount};
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

/// Reserve resources for executions in the order given, stopping at the first that does not
/// fit: answers the allocations made (a prefix of the request) and, if one did not fit, why.
#[derive(Message, Debug, Clone)]
#[rtype(result = "(Vec<Allocation>, Option<Insufficient>)")]
pub struct AllocateInOrder(pub Vec<(String, Resources)>);

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

/// The pool actor.
pub struct ResourceActor {
    pool: ResourcePool,
    gauges: telemetry::PoolGauges,
    stats: ActorStats,
    stats_interval: Duration,
}

impl ResourceActor {
    /// An actor owning `pool`, logging stats every `stats_interval`.
    pub fn new(pool: ResourcePool, stats_interval: Duration) -> Self {
        Self {
            pool,
            gauges: telemetry::PoolGauges::new(),
            stats: ActorStats::new("resource"),
            stats_interval,
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
        self.gauges.set(&self.pool.stats());
        self.stats.record(started);
        result
    }
}

impl Handler<AllocateInOrder> for ResourceActor {
    type Result = MessageResult<AllocateInOrder>;

    fn handle(&mut self, msg: AllocateInOrder, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        // The decision is the core planner's (the one the simulator replays); an execution
        // that holds an allocation already gets it back, so it asks for nothing.
        let candidates: Vec<Candidate> = msg
            .0
            .iter()
            .map(|(execution_id, resources)| Candidate {
                priority: Priority::Normal,
                resources: if self.pool.contains(execution_id) {
                    Resources::default()
                } else {
                    *resources
                },
                timeout: Duration::ZERO,
            })
            .collect();
        let view = PoolView {
            available: self.pool.available(),
            running: Vec::new(),
        };
        let plan = planner::plan(&candidates, &view, Policy::Demote, 0);
        let mut granted = Vec::with_capacity(msg.0.len());
        let mut refused = None;
        for ((execution_id, resources), fate) in msg.0.into_iter().zip(plan.fates) {
            if fate != Fate::Start {
                refused = Some(Insufficient {
                    requested: resources,
                    available: self.pool.available(),
                });
                break;
            }
            match self.pool.allocate(&execution_id, resources) {
                Ok(allocation) => granted.push(allocation),
                Err(insufficient) => {
                    // The plan and the pool disagree: a defect; the pass ends as if it did
                    // not fit.
                    error!(execution_id = %execution_id, "The planner started an execution the pool refused.");
                    refused = Some(insufficient);
                    break;
                }
            }
        }
        self.gauges.set(&self.pool.stats());
        self.stats.record(started);
        MessageResult((granted, refused))
    }
}

impl Handler<Release> for ResourceActor {
    type Result = Option<Allocation>;

    fn handle(&mut self, msg: Release, _ctx: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let released = self.pool.release(&msg.execution_id);
        if released.is_some() {
            self.gauges.set(&self.pool.stats());
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
