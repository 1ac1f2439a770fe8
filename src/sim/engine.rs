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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::config::Config;
use crate::planner::{self, Candidate, Fate, Policy, PoolView, Running};
use crate::pool::{PoolSpec, RequestError, ResourceAsk, ResourcePool, Resources};
use crate::queue::{ExecutionQueue, Millis, QueueLimits, QueuedExecution, Rejection};
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
    lookahead: usize,
    interval: Millis,
    demotes: bool,
    queue: ExecutionQueue<u32>,
    pool: ResourcePool,
    resources: Vec<Resources>,
    outcomes: Vec<JobOutcome>,
    completions: BinaryHeap<Reverse<(Millis, u32)>>,
    view: PoolView,
    running_jobs: Vec<u32>,
    running_pos: Vec<u32>,
    next_tick: Option<Millis>,
    candidates: Vec<Candidate>,
    entries: Vec<QueuedExecution<u32>>,
    passes: u64,
    ticks: u64,
    demotions: u64,
    clamped: u64,
    end_ms: Millis,
    dispatch_order: Vec<u32>,
    timeline: Timeline,
}

/// Replays `jobs` under `config` and `policy`. `progress` is called now and then with the
/// events handled so far and the events there will be in all (ticks not counted).
pub fn run(
    jobs: &[SimJob],
    config: &Config,
    policy: Policy,
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
    let e = Engine {
        jobs,
        policy,
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
        running_pos: vec![u32::MAX; jobs.len()],
        next_tick: None,
        candidates: Vec::new(),
        entries: Vec::new(),
        passes: 0,
        ticks: 0,
        demotions: 0,
        clamped: 0,
        end_ms: 0,
        dispatch_order: Vec::new(),
        timeline: Timeline::default(),
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
        match self
            .queue
            .enqueue(execution_id(job), user, j.priority, job, now)
        {
            Ok(_) => {}
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
        let pos = self.running_pos[job as usize] as usize;
        self.running_pos[job as usize] = u32::MAX;
        self.view.running.swap_remove(pos);
        self.running_jobs.swap_remove(pos);
        if let Some(&moved) = self.running_jobs.get(pos) {
            self.running_pos[moved as usize] = pos as u32;
        }
        self.end_ms = self.end_ms.max(now);
    }

    /// What the scheduler does when woken at `now`: passes until one is blocked or the queue
    /// is empty; then a tick is due only if the blocked pass changed the queue's order.
    fn wake(&mut self, now: Millis) {
        for expired in self.queue.expire(now) {
            self.outcomes[expired.payload as usize] = JobOutcome::Expired;
        }
        self.next_tick = None;
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
        self.queue.take_forgotten();
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
                Fate::Start => self.start(entry, now),
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

    fn start(&mut self, entry: QueuedExecution<u32>, now: Millis) {
        let job = entry.payload;
        let resources = self.resources[job as usize];
        let allocated = self.pool.allocate(&entry.execution_id, resources);
        debug_assert!(allocated.is_ok(), "the plan starts only what fits");
        self.queue.settle(entry.priority, entry.arrival);
        let j = &self.jobs[job as usize];
        let ends = now + j.held_ms();
        self.completions.push(Reverse((ends, job)));
        self.running_pos[job as usize] = self.view.running.len() as u32;
        self.view.running.push(Running {
            resources,
            ends_by: now + j.timeout_ms,
        });
        self.running_jobs.push(job);
        self.dispatch_order.push(job);
        self.outcomes[job as usize] = JobOutcome::Started {
            start: now,
            resources,
        };
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
