//! The replay itself: the daemon's queue, pool and pass planner driven by a virtual clock.
//!
//! Events are arrivals (a job is queued at its submit time), completions (its resources go
//! back to the pool when it has run its run time, or its timeout if that comes first) and
//! the scheduler's periodic tick. After each event the scheduler wakes as the daemon's does:
//! it runs passes (each over at most `scheduler.max_concurrent_scheduling` executions in
//! dispatch order, planned by [`crate::planner::plan`]) until one is blocked or the queue is
//! empty. A pass's plan is carried out as the daemon does it: `Start` allocates and settles,
//! `Demote` requeues (one level lower when `queue.requeue_demotes`), `Blocked` and `Stay` put
//! the execution back in its place.
//!
//! The daemon also wakes every `scheduler.scheduling_interval` with no event at all. Under
//! `demote` that matters: each blocked wake demotes the head once, so a blocked CRITICAL
//! execution is BACKGROUND after four ticks. The simulator ticks at multiples of the interval
//! on its clock, but only while a tick can change something: after a wake whose blocked
//! execution was demoted. A wake that demotes nothing (the head is BACKGROUND already, or the
//! policy keeps it in place) leaves a state that every further tick leaves as it is, so the
//! clock skips straight to the next arrival or completion. Every execution can be demoted at
//! most four times, so ticks cost at most a few passes per execution, however long the trace.
//!
//! A pass stops dequeuing after the first execution that does not fit what is left: the plan
//! of the executions behind it is `Stay` whatever they are, so leaving them queued is the
//! same as the daemon's dequeuing and putting them back, without the work.
//!
//! Under `backfill` a pass looks at the overdue execution with the earliest deadline (the one
//! the planner promotes) and then the queue in dispatch order (fair-share order with
//! `scheduler.fair_share_half_life`), up to `scheduler.backfill_depth` in all, without
//! dequeuing them; it takes out the ones the plan starts. `Reserved`, `Held` and `Waits` keep
//! their place. Once `scheduler.reservations` candidates did not fit what was free when the
//! pass began, a candidate that does not fit either can only wait: it counts toward the depth
//! but is not handed to the planner, and when not even the smallest request fits the pass
//! stops looking. Passes repeat while one starts something and there was more queued than it
//! looked at. Besides arrivals and completions, the scheduler is woken at the first tick after
//! an execution passes its `max_wait`, which is when the daemon's pass would promote it;
//! nothing else changes with time alone, so there are no other ticks.
//!
//! As it goes the replay checks the wait bound ([`super::bound`]) and every reservation: when
//! a pass starts something and reserves, the reserved execution must fit at its time given
//! when the running executions really end.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::config::Config;
use crate::fair_share::FairOrder;
use crate::planner::{self, Candidate, Fate, Policy, PoolView, Rules, Running};
use crate::pool::{PoolSpec, RequestError, ResourceAsk, ResourcePool, Resources};
use crate::queue::{ExecutionQueue, Millis, QueueLimits, QueuedExecution, Rejection};
use crate::sim::bound::{Bounds, Checks};
use crate::sim::eta::{Eta, JobEta, Scene};
use crate::sim::settings::SimJob;
use crate::sim::timeline::{self, Timeline};
use crate::Priority;

/// What became of one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Started at `start`, holding `resources`.
    Started {
        /// When it started.
        start: Millis,
        /// What it held (after the per-execution caps).
        resources: Resources,
    },
    /// Refused at admission: the queue was full or its user at the per-user limit.
    Rejected,
    /// Refused at admission: larger than the whole pool.
    NeverFits,
    /// Queued longer than `queue.stale_timeout` and removed.
    Expired,
    /// Still queued when the simulation ended (it cannot happen unless something never fits).
    Queued,
}

/// Everything a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// One per job, in the jobs' order.
    pub jobs: Vec<JobOutcome>,
    /// The pool's capacity after overcommit.
    pub capacity: Resources,
    /// Scheduling passes run.
    pub passes: u64,
    /// Ticks that woke the scheduler with no event.
    pub ticks: u64,
    /// Requeues that lowered a level.
    pub demotions: u64,
    /// Executions whose request was clamped to the per-execution caps.
    pub clamped: u64,
    /// When the last execution ended.
    pub end_ms: Millis,
    /// The jobs that started, in the order they were dispatched.
    pub dispatch_order: Vec<u32>,
    /// Queue depth per level and resources in use over the replay.
    pub timeline: Timeline,
    /// The wait bound and the reservations, as checked during the replay.
    pub checks: Checks,
    /// What each job's wait was estimated at when it was queued; empty unless the replay
    /// estimated ([`run_estimating`]).
    pub told: Vec<Option<JobEta>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Completion,
    Arrival,
    Tick,
}

struct Engine<'a> {
    jobs: &'a [SimJob],
    policy: Policy,
    rules: Rules,
    lookahead: usize,
    interval: Millis,
    demotes: bool,
    queue: ExecutionQueue<u32>,
    pool: ResourcePool,
    resources: Vec<Resources>,
    outcomes: Vec<JobOutcome>,
    completions: BinaryHeap<Reverse<(Millis, u32)>>,
    /// What runs, sorted by `ends_by`, and the job of each.
    view: PoolView,
    running_jobs: Vec<u32>,
    /// When each started job really releases its resources.
    ends: Vec<Millis>,
    next_tick: Option<Millis>,
    candidates: Vec<Candidate>,
    entries: Vec<QueuedExecution<u32>>,
    /// The job of each candidate of a backfill pass, and the pass that last took each job.
    pass_jobs: Vec<u32>,
    taken_by: Vec<u64>,
    /// The job of each arrival number.
    arrival_job: Vec<u32>,
    /// Fair share, with each job's user as a dense number.
    fair: Option<FairOrder<u32>>,
    user_of: Vec<u32>,
    bounds: Bounds,
    /// The least cpu any job asks for.
    smallest_cpu: u64,
    held_reservation: Vec<bool>,
    broken: Vec<bool>,
    passes: u64,
    ticks: u64,
    demotions: u64,
    clamped: u64,
    end_ms: Millis,
    dispatch_order: Vec<u32>,
    timeline: Timeline,
    eta: Option<Box<Eta>>,
}

/// Replays `jobs` under `config` and `policy`. `progress` is called now and then with the
/// events handled so far and the events there will be in all (ticks not counted).
pub fn run(
    jobs: &[SimJob],
    config: &Config,
    policy: Policy,
    progress: &mut dyn FnMut(u64, u64),
) -> Outcome {
    replay(jobs, config, policy, false, progress)
}

/// As [`run`], estimating every execution's wait when it is queued ([`super::eta`]): the
/// outcome's `told` holds the estimates. Each estimate walks the queue ahead of the execution
/// (at most [`crate::estimate::HORIZON`] of it), so this is slower on deep queues.
pub fn run_estimating(
    jobs: &[SimJob],
    config: &Config,
    policy: Policy,
    progress: &mut dyn FnMut(u64, u64),
) -> Outcome {
    replay(jobs, config, policy, true, progress)
}

fn replay(
    jobs: &[SimJob],
    config: &Config,
    policy: Policy,
    estimate: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Outcome {
    let q = &config.queue;
    let limits = QueueLimits {
        max_queue_size: q.max_queue_size,
        max_executions_per_user: q.max_executions_per_user,
        stale_timeout: q.stale_timeout,
        requeue_demotes: q.requeue_demotes,
        dedup_capacity: q.dedup_capacity,
    };
    let pool = ResourcePool::new(PoolSpec::from_config(&config.resources));
    let smallest_cpu = jobs
        .iter()
        .map(|j| j.cpu_millis.min(pool.spec().cap.cpu_millis))
        .min()
        .unwrap_or(0);
    let rules = Rules {
        policy,
        ..Rules::from_config(&config.scheduler)
    };
    let half_life = config.scheduler.fair_share_half_life;
    let fair_share = policy == Policy::Backfill && !half_life.is_zero();
    let mut users: FxHashMap<i64, u32> = FxHashMap::default();
    let user_of = if fair_share {
        jobs.iter()
            .map(|j| {
                let next = users.len() as u32;
                *users.entry(j.user).or_insert(next)
            })
            .collect()
    } else {
        Vec::new()
    };
    let e = Engine {
        jobs,
        policy,
        rules,
        lookahead: config.scheduler.max_concurrent_scheduling.max(1),
        interval: duration_millis(config.scheduler.scheduling_interval).max(1),
        demotes: q.requeue_demotes,
        queue: ExecutionQueue::new(limits),
        pool,
        resources: vec![Resources::default(); jobs.len()],
        outcomes: vec![JobOutcome::Queued; jobs.len()],
        completions: BinaryHeap::new(),
        view: PoolView::default(),
        running_jobs: Vec::new(),
        ends: vec![0; jobs.len()],
        next_tick: None,
        candidates: Vec::new(),
        entries: Vec::new(),
        pass_jobs: Vec::new(),
        taken_by: vec![0; jobs.len()],
        arrival_job: Vec::new(),
        fair: fair_share.then(|| FairOrder::new(half_life)),
        user_of,
        bounds: Bounds::new(
            jobs.len(),
            duration_millis(config.scheduler.scheduling_interval)
                + jobs.iter().map(|j| j.timeout_ms).max().unwrap_or(0),
        ),
        smallest_cpu,
        held_reservation: vec![false; jobs.len()],
        broken: vec![false; jobs.len()],
        passes: 0,
        ticks: 0,
        demotions: 0,
        clamped: 0,
        end_ms: 0,
        dispatch_order: Vec::new(),
        timeline: Timeline::default(),
        eta: estimate.then(|| {
            let within = match policy {
                Policy::Backfill => rules.backfill_depth,
                _ => 0,
            };
            Box::new(Eta::new(jobs.len(), within))
        }),
    };
    e.run(progress)
}

fn duration_millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The execution id of the `index`-th job: its index, unique even when a trace repeats job
/// numbers.
fn execution_id(index: u32) -> String {
    index.to_string()
}

impl Engine<'_> {
    fn run(mut self, progress: &mut dyn FnMut(u64, u64)) -> Outcome {
        let mut order: Vec<u32> = (0..self.jobs.len() as u32).collect();
        order.sort_by_key(|&i| (self.jobs[i as usize].submit_ms, i));
        let total = 2 * self.jobs.len() as u64;
        let mut handled = 0u64;
        let mut next_arrival = 0usize;
        loop {
            let completion = self
                .completions
                .peek()
                .map(|Reverse((t, _))| (*t, Kind::Completion));
            let arrival = order
                .get(next_arrival)
                .map(|&i| (self.jobs[i as usize].submit_ms, Kind::Arrival));
            let tick = self.next_tick.map(|t| (t, Kind::Tick));
            let Some((now, kind)) = [completion, arrival, tick].into_iter().flatten().min() else {
                break;
            };
            match kind {
                Kind::Completion => {
                    if let Some(Reverse((_, job))) = self.completions.pop() {
                        self.complete(job, now);
                    }
                    handled += 1;
                }
                Kind::Arrival => {
                    let job = order[next_arrival];
                    next_arrival += 1;
                    self.arrive(job, now);
                    handled += 1;
                }
                Kind::Tick => {
                    self.next_tick = None;
                    self.ticks += 1;
                }
            }
            self.wake(now);
            self.timeline.record(
                now,
                timeline::State {
                    queued: self.queue.depth(),
                    used: self.pool.used(),
                },
            );
            if handled % 65_536 == 0 {
                progress(handled, total);
            }
        }
        progress(total, total);
        Outcome {
            jobs: self.outcomes,
            capacity: self.pool.spec().total,
            passes: self.passes,
            ticks: self.ticks,
            demotions: self.demotions,
            clamped: self.clamped,
            end_ms: self.end_ms,
            dispatch_order: self.dispatch_order,
            timeline: self.timeline,
            checks: self.bounds.checks,
            told: self.eta.map(|e| e.told).unwrap_or_default(),
        }
    }

    fn arrive(&mut self, job: u32, now: Millis) {
        let j = &self.jobs[job as usize];
        let cpu = format!("{}m", j.cpu_millis);
        let memory = format!("{}Mi", j.memory_mib);
        let ask = ResourceAsk {
            language: "",
            cpu: Some(&cpu),
            memory: Some(&memory),
            gpu: None,
        };
        match self.pool.resolve(ask) {
            Ok(resolved) => {
                if resolved.clamped() {
                    self.clamped += 1;
                }
                self.resources[job as usize] = resolved.resources;
            }
            Err(RequestError::NeverFits { .. } | RequestError::InvalidQuantity(_)) => {
                self.outcomes[job as usize] = JobOutcome::NeverFits;
                return;
            }
        }
        let user = if j.user >= 0 {
            format!("user-{}", j.user)
        } else {
            "anonymous".to_owned()
        };
        let id = execution_id(job);
        match self.queue.enqueue(id.clone(), user, j.priority, job, now) {
            Ok(_) => {
                let arrival = self.queue.get(&id).map_or(0, |e| e.arrival) as usize;
                if self.arrival_job.len() <= arrival {
                    self.arrival_job.resize(arrival + 1, u32::MAX);
                }
                self.arrival_job[arrival] = job;
                if let Some(fair) = &mut self.fair {
                    fair.insert(j.priority, &self.user_of[job as usize], arrival as u64);
                }
                self.bounds.admitted(j.priority.index(), job);
                if let Some(eta) = &mut self.eta {
                    let scene = Scene {
                        queue: &self.queue,
                        running: &self.view.running,
                        running_jobs: &self.running_jobs,
                        resources: &self.resources,
                        available: self.pool.available(),
                        capacity: self.pool.spec().usable(),
                    };
                    eta.queued(self.jobs, job, now, &scene);
                }
            }
            Err(Rejection::QueueFull { .. } | Rejection::UserLimit { .. }) => {
                self.outcomes[job as usize] = JobOutcome::Rejected;
            }
            Err(Rejection::Duplicate { .. }) => {
                unreachable!("execution ids are the jobs' indexes, so never repeated")
            }
        }
    }

    fn complete(&mut self, job: u32, now: Millis) {
        self.pool.release(&execution_id(job));
        let ends_by = self.jobs[job as usize].timeout_ms + self.ends[job as usize]
            - self.jobs[job as usize].held_ms();
        let from = self.view.running.partition_point(|r| r.ends_by < ends_by);
        if let Some(pos) = (from..self.running_jobs.len()).find(|&i| self.running_jobs[i] == job) {
            self.view.running.remove(pos);
            self.running_jobs.remove(pos);
        }
        self.end_ms = self.end_ms.max(now);
        if let Some(eta) = &mut self.eta {
            let j = &self.jobs[job as usize];
            eta.ended(j, j.held_ms());
        }
    }

    /// Whether `job` is queued (admitted, not started or expired yet).
    fn waiting(outcomes: &[JobOutcome], job: u32) -> bool {
        outcomes[job as usize] == JobOutcome::Queued
    }

    /// What the scheduler does when woken at `now`: passes until one is blocked or the queue
    /// is empty; then a tick is due only if the blocked pass changed the queue's order, or at
    /// the next `max_wait` deadline.
    fn wake(&mut self, now: Millis) {
        for expired in self.queue.expire(now) {
            let job = expired.payload;
            self.outcomes[job as usize] = JobOutcome::Expired;
            let j = &self.jobs[job as usize];
            let deadline = self.rules.deadline(j.priority, j.submit_ms);
            self.bounds.expired(job, deadline, now);
            if let Some(fair) = &mut self.fair {
                fair.remove(
                    expired.priority,
                    &self.user_of[job as usize],
                    expired.arrival,
                );
            }
        }
        let (jobs, rules) = (self.jobs, self.rules);
        let deadline = |job: u32| {
            let j = &jobs[job as usize];
            rules.deadline(j.priority, j.submit_ms)
        };
        let outcomes = &self.outcomes;
        self.bounds
            .open(now, deadline, |job| Self::waiting(outcomes, job));
        self.next_tick = None;
        if self.policy == Policy::Backfill {
            while !self.queue.is_empty() {
                self.passes += 1;
                if !self.backfill_pass(now) {
                    break;
                }
            }
        } else {
            while !self.queue.is_empty() {
                self.passes += 1;
                match self.pass(now) {
                    PassEnd::Continue => {}
                    PassEnd::Settled => break,
                    PassEnd::Demoted => {
                        self.next_tick = Some((now / self.interval + 1) * self.interval);
                        break;
                    }
                }
            }
        }
        let outcomes = &self.outcomes;
        let running_until = self.view.running.last().map_or(now, |r| r.ends_by);
        self.bounds
            .close(now, running_until, |job| Self::waiting(outcomes, job));
        if let Some(d) = self
            .bounds
            .next_deadline(deadline, |job| Self::waiting(outcomes, job))
        {
            let tick = d.div_ceil(self.interval) * self.interval;
            self.next_tick = Some(self.next_tick.map_or(tick, |t| t.min(tick)));
        }
        self.queue.take_forgotten();
    }

    /// One backfill pass; true when another may start more.
    fn backfill_pass(&mut self, now: Millis) -> bool {
        let depth = self.rules.backfill_depth.max(1);
        self.candidates.clear();
        self.pass_jobs.clear();
        let pass = self.passes;
        let (jobs, resources) = (self.jobs, &self.resources);
        let candidate = |job: u32| {
            let j = &jobs[job as usize];
            Candidate {
                priority: j.priority,
                resources: resources[job as usize],
                timeout: Duration::from_millis(j.timeout_ms),
                enqueued_at: j.submit_ms,
            }
        };
        // The overdue execution with the earliest deadline, wherever it is in the queue.
        let outcomes = &self.outcomes;
        for job in self.bounds.line(|job| Self::waiting(outcomes, job)).take(1) {
            self.taken_by[job as usize] = pass;
            self.pass_jobs.push(job);
            self.candidates.push(candidate(job));
        }
        let arrival_job = &self.arrival_job;
        let order: Box<dyn Iterator<Item = (Priority, u64)>> = match &self.fair {
            Some(fair) => Box::new(fair.iter(now, |_, arrival| {
                let job = arrival_job[arrival as usize] as usize;
                resources[job].cpu_millis as f64 / 1000.0 * jobs[job].timeout_ms as f64 / 1000.0
            })),
            None => Box::new(self.queue.order()),
        };
        // Only a candidate that fits what is free at the start of the pass can start, and
        // once `reservations` candidates could not, the rest that do not fit can only wait:
        // they count toward the depth but the planner need not see them.
        let mut free = self.pool.available();
        let mut blocked = 0;
        for c in &self.candidates {
            if c.resources.fits_in(&free) && blocked == 0 {
                free = free.saturating_sub(&c.resources);
            } else if !c.resources.fits_in(&free) {
                blocked += 1;
            }
        }
        let reservations = self.rules.reservations.max(1);
        let mut looked = self.candidates.len();
        let mut more = false;
        for (_, arrival) in order {
            let job = arrival_job[arrival as usize];
            if self.taken_by[job as usize] == pass {
                continue;
            }
            if looked == depth {
                more = true;
                break;
            }
            looked += 1;
            let c = candidate(job);
            if c.resources.fits_in(&free) {
                if blocked == 0 {
                    free = free.saturating_sub(&c.resources);
                }
            } else {
                blocked += 1;
                if blocked > reservations {
                    if free.cpu_millis < self.smallest_cpu {
                        // Nothing further can start: the plan of the rest is to wait.
                        break;
                    }
                    continue;
                }
            }
            self.pass_jobs.push(job);
            self.candidates.push(c);
        }
        self.view.available = self.pool.available();
        let plan = planner::plan(&self.candidates, &self.view, self.rules, now);
        let mut started = false;
        for (i, fate) in plan.fates.iter().enumerate() {
            let job = self.pass_jobs[i];
            match fate {
                Fate::Start => {
                    if let Some(entry) = self.queue.dispatch(&execution_id(job)) {
                        if let Some(fair) = &mut self.fair {
                            let user = self.user_of[job as usize];
                            fair.remove(entry.priority, &user, entry.arrival);
                            let c = &self.candidates[i];
                            let charge =
                                c.resources.cpu_millis as f64 / 1000.0 * c.timeout.as_secs_f64();
                            fair.charge(&user, charge, now);
                        }
                        self.launch(job, now);
                        started = true;
                    }
                }
                Fate::Reserved { .. } if !self.held_reservation[job as usize] => {
                    self.held_reservation[job as usize] = true;
                    self.bounds.checks.reserved += 1;
                }
                _ => {}
            }
        }
        if started {
            self.check_reservations(&plan, now);
        }
        started && more
    }

    /// Each reservation of `plan`, just carried out, must fit at its time beside the earlier
    /// ones, given when the running executions really end.
    fn check_reservations(&mut self, plan: &planner::Plan, now: Millis) {
        let mut reserved: Vec<(Millis, usize)> =
            plan.reservations().map(|(i, at)| (at, i)).collect();
        reserved.sort_unstable();
        let mut earlier: Vec<(Resources, Millis, Millis)> = Vec::new();
        for (at, i) in reserved {
            let job = self.pass_jobs[i];
            let wanted = self.candidates[i].resources;
            let mut free = self.pool.available();
            let mut overrun = false;
            for (k, &r) in self.running_jobs.iter().enumerate() {
                let held = self.view.running[k].resources;
                if self.ends[r as usize] <= at {
                    free = free.plus(&held);
                } else if self.view.running[k].ends_by <= at {
                    overrun = true;
                }
            }
            for (held, from, until) in &earlier {
                if *from <= at && at < *until {
                    free = free.saturating_sub(held);
                }
            }
            if !wanted.fits_in(&free) && !self.broken[job as usize] {
                self.broken[job as usize] = true;
                if overrun {
                    self.bounds.checks.reservations_broken_by_overruns += 1;
                } else {
                    self.bounds.checks.reservations_broken += 1;
                }
            }
            let timeout = self.jobs[job as usize].timeout_ms;
            earlier.push((wanted, at.max(now), at.max(now) + timeout));
        }
    }

    fn pass(&mut self, now: Millis) -> PassEnd {
        let mut free = self.pool.available();
        self.candidates.clear();
        self.entries.clear();
        while self.entries.len() < self.lookahead {
            let Some(entry) = self.queue.dequeue() else {
                break;
            };
            let job = entry.payload as usize;
            let resources = self.resources[job];
            let fits = resources.fits_in(&free);
            free = free.saturating_sub(&resources);
            self.candidates.push(Candidate {
                priority: entry.priority,
                resources,
                timeout: Duration::from_millis(self.jobs[job].timeout_ms),
                enqueued_at: entry.enqueued_at,
            });
            self.entries.push(entry);
            if !fits {
                break;
            }
        }
        self.view.available = self.pool.available();
        let plan = planner::plan(&self.candidates, &self.view, self.policy, now);
        let mut end = PassEnd::Continue;
        let mut entries = std::mem::take(&mut self.entries);
        for (entry, fate) in entries.drain(..).zip(plan.fates) {
            match fate {
                Fate::Start => {
                    self.queue.settle(entry.priority, entry.arrival);
                    self.launch(entry.payload, now);
                }
                Fate::Demote => {
                    if self.demotes && entry.priority != Priority::Background {
                        self.demotions += 1;
                        end = PassEnd::Demoted;
                    } else {
                        end = PassEnd::Settled;
                    }
                    self.queue.requeue(entry);
                }
                Fate::Blocked { .. } => {
                    end = PassEnd::Settled;
                    self.queue.put_back(entry);
                }
                Fate::Stay | Fate::Reserved { .. } | Fate::Held { .. } | Fate::Waits => {
                    self.queue.put_back(entry);
                }
            }
        }
        self.entries = entries;
        end
    }

    /// Starts `job` at `now`: its resources, its completion, its place among what runs.
    fn launch(&mut self, job: u32, now: Millis) {
        let resources = self.resources[job as usize];
        let allocated = self.pool.allocate(&execution_id(job), resources);
        debug_assert!(allocated.is_ok(), "the plan starts only what fits");
        let j = &self.jobs[job as usize];
        let ends = now + j.held_ms();
        let ends_by = now + j.timeout_ms;
        self.completions.push(Reverse((ends, job)));
        self.ends[job as usize] = ends;
        let pos = self.view.running.partition_point(|r| r.ends_by <= ends_by);
        self.view
            .running
            .insert(pos, Running { resources, ends_by });
        self.running_jobs.insert(pos, job);
        self.dispatch_order.push(job);
        self.outcomes[job as usize] = JobOutcome::Started {
            start: now,
            resources,
        };
        let deadline = self.rules.deadline(j.priority, j.submit_ms);
        self.bounds.started(job, deadline, now, ends_by, ends);
        if let Some(eta) = &mut self.eta {
            eta.started(job, j.priority, now.saturating_sub(j.submit_ms), now);
        }
    }
}

/// How a pass ended.
enum PassEnd {
    /// Everything it looked at started: another pass may start more.
    Continue,
    /// Blocked, and the queue is as it was: ticks change nothing until the next event.
    Settled,
    /// Blocked, and the blocked execution went one level lower: a tick may do something.
    Demoted,
}
