use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::pool::{PoolSpec, ResourcePool};
use crate::queue::{ExecutionQueue, QueueLimits};

const ALL: [Priority; 5] = Priority::ALL;

fn candidate(priority: Priority, cpu: u64, mem: u64, gpu: u64) -> Candidate {
    Candidate {
        priority,
        resources: Resources::new(cpu, mem, gpu),
        timeout: Duration::from_secs(60),
    }
}

fn view(cpu: u64, mem: u64, gpu: u64, running: Vec<Running>) -> PoolView {
    PoolView {
        available: Resources::new(cpu, mem, gpu),
        running,
    }
}

#[test]
fn demote_starts_in_order_until_one_does_not_fit_and_requeues_that_one() {
    let candidates = [
        candidate(Priority::Critical, 400, 100, 0),
        candidate(Priority::High, 400, 100, 0),
        candidate(Priority::Normal, 400, 100, 0),
        candidate(Priority::Low, 100, 100, 0),
    ];
    let plan = plan(&candidates, &view(1000, 1000, 0, vec![]), Policy::Demote, 0);
    // The fourth would fit, but the pass ended at the third.
    assert_eq!(
        plan.fates,
        [Fate::Start, Fate::Start, Fate::Demote, Fate::Stay]
    );
    assert_eq!(plan.starts().collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn strict_blocks_behind_the_head_and_says_when_it_fits() {
    let running = vec![
        Running {
            resources: Resources::new(300, 0, 0),
            ends_by: 9_000,
        },
        Running {
            resources: Resources::new(500, 0, 0),
            ends_by: 5_000,
        },
    ];
    let candidates = [
        candidate(Priority::Critical, 700, 0, 0),
        candidate(Priority::Background, 100, 0, 0),
    ];
    // 400 free now; +500 at 5 s makes 900 ≥ 700.
    let plan = plan(
        &candidates,
        &view(400, 0, 0, running),
        Policy::Strict,
        1_000,
    );
    assert_eq!(plan.fates, [Fate::Blocked { at: Some(5_000) }, Fate::Stay]);
}

#[test]
fn earliest_start_is_none_when_nothing_running_frees_enough_and_now_when_it_fits() {
    let running = [Running {
        resources: Resources::new(0, 0, 1),
        ends_by: 10,
    }];
    assert_eq!(
        earliest_start(Resources::new(0, 0, 2), Resources::default(), &running, 0),
        None
    );
    assert_eq!(
        earliest_start(Resources::new(0, 0, 1), Resources::default(), &running, 50),
        Some(50),
        "a running execution past its timeout frees at once"
    );
    assert_eq!(
        earliest_start(
            Resources::new(1, 0, 0),
            Resources::new(1, 0, 0),
            &running,
            7
        ),
        Some(7)
    );
}

#[derive(Debug, Clone)]
struct Job {
    priority: Priority,
    cpu: u64,
    mem: u64,
    gpu: u64,
}

fn jobs() -> impl Strategy<Value = Vec<Job>> {
    prop::collection::vec(
        (0..5usize, 1..2_000u64, 1..4_096u64, 0..3u64).prop_map(|(p, cpu, mem, gpu)| Job {
            priority: ALL[p],
            cpu,
            mem,
            gpu,
        }),
        0..40,
    )
}

fn spec(cpu: u64, mem: u64, gpu: u64) -> PoolSpec {
    PoolSpec {
        total: Resources::new(cpu, mem, gpu),
        reserve: Resources::new(cpu / 10, mem / 10, 0),
        cap: Resources::new(cpu, mem, gpu),
        default_request: Resources::new(100, 128, 0),
        language_defaults: Default::default(),
    }
}

fn queue_of(jobs: &[Job], demotes: bool) -> ExecutionQueue<Resources> {
    let mut q = ExecutionQueue::new(QueueLimits {
        max_queue_size: 1_000,
        max_executions_per_user: 1_000,
        requeue_demotes: demotes,
        ..QueueLimits::default()
    });
    for (i, j) in jobs.iter().enumerate() {
        q.enqueue(
            format!("e{i}"),
            format!("u{}", i % 3),
            j.priority,
            Resources::new(j.cpu, j.mem, j.gpu),
            i as u64,
        )
        .expect("room");
    }
    q
}

/// The queue's order afterwards: (id, level, requeues), and the pool's allocations, sorted.
type Outcome = (Vec<(String, Priority, u32)>, Vec<(String, Resources)>);

fn outcome(q: &ExecutionQueue<Resources>, pool: &ResourcePool) -> Outcome {
    let order = q
        .iter()
        .map(|e| (e.execution_id.clone(), e.priority, e.requeues))
        .collect();
    let mut held: Vec<(String, Resources)> = pool
        .allocations()
        .map(|a| (a.execution_id, a.resources))
        .collect();
    held.sort_by(|a, b| a.0.cmp(&b.0));
    (order, held)
}

/// The pass as the scheduler ran it before the planner: dequeue up to `max`, allocate in order
/// until one does not fit, requeue that one, put the untried back.
fn pass_as_before(q: &mut ExecutionQueue<Resources>, pool: &mut ResourcePool, max: usize) {
    let taken: Vec<_> = std::iter::from_fn(|| q.dequeue()).take(max).collect();
    let mut rest = taken.into_iter();
    for entry in rest.by_ref() {
        match pool.allocate(&entry.execution_id, entry.payload) {
            Ok(_) => {
                q.settle(entry.priority, entry.arrival);
            }
            Err(_) => {
                q.requeue(entry);
                break;
            }
        }
    }
    for entry in rest {
        q.put_back(entry);
    }
}

/// The same pass through the planner.
fn pass_planned(
    q: &mut ExecutionQueue<Resources>,
    pool: &mut ResourcePool,
    max: usize,
    policy: Policy,
) -> Plan {
    let taken: Vec<_> = std::iter::from_fn(|| q.dequeue()).take(max).collect();
    let candidates: Vec<Candidate> = taken
        .iter()
        .map(|e| Candidate {
            priority: e.priority,
            resources: e.payload,
            timeout: Duration::from_secs(60),
        })
        .collect();
    let view = PoolView {
        available: pool.available(),
        running: Vec::new(),
    };
    let plan = plan(&candidates, &view, policy, 0);
    for (entry, fate) in taken.into_iter().zip(&plan.fates) {
        match fate {
            Fate::Start => {
                pool.allocate(&entry.execution_id, entry.payload)
                    .expect("the plan starts only what fits");
                q.settle(entry.priority, entry.arrival);
            }
            Fate::Demote => {
                q.requeue(entry);
            }
            Fate::Stay | Fate::Blocked { .. } => {
                q.put_back(entry);
            }
        }
    }
    plan
}

proptest! {
    #[test]
    fn demote_is_the_pass_as_it_was(
        jobs in jobs(),
        cpu in 500..8_000u64,
        mem in 1_000..16_000u64,
        gpu in 0..4u64,
        max in 1..12usize,
        demotes in any::<bool>(),
        passes in 1..6usize,
        releases in prop::collection::vec(0..40usize, 0..10),
    ) {
        let (mut q1, mut q2) = (queue_of(&jobs, demotes), queue_of(&jobs, demotes));
        let (mut p1, mut p2) = (ResourcePool::new(spec(cpu, mem, gpu)), ResourcePool::new(spec(cpu, mem, gpu)));
        for pass in 0..passes {
            pass_as_before(&mut q1, &mut p1, max);
            pass_planned(&mut q2, &mut p2, max, Policy::Demote);
            prop_assert_eq!(outcome(&q1, &p1), outcome(&q2, &p2), "after pass {}", pass);
            // Some executions end between passes, the same in both.
            for r in &releases {
                let id = format!("e{r}");
                prop_assert_eq!(p1.release(&id).is_some(), p2.release(&id).is_some());
            }
        }
    }

    #[test]
    fn no_plan_allocates_more_than_is_free(
        jobs in jobs(),
        cpu in 0..8_000u64,
        mem in 0..16_000u64,
        gpu in 0..4u64,
        strict in any::<bool>(),
    ) {
        let candidates: Vec<Candidate> = jobs.iter().map(|j| candidate(j.priority, j.cpu, j.mem, j.gpu)).collect();
        let policy = if strict { Policy::Strict } else { Policy::Demote };
        let free = Resources::new(cpu, mem, gpu);
        let plan = plan(&candidates, &view(cpu, mem, gpu, vec![]), policy, 0);
        let mut taken = Resources::default();
        for i in plan.starts() {
            let r = candidates[i].resources;
            taken = Resources::new(taken.cpu_millis + r.cpu_millis, taken.memory_mib + r.memory_mib, taken.gpu + r.gpu);
        }
        prop_assert!(taken.fits_in(&free), "{:?} taken of {:?}", taken, free);
    }

    #[test]
    fn through_the_pool_no_pass_goes_below_the_reserve(
        jobs in jobs(),
        cpu in 500..8_000u64,
        mem in 1_000..16_000u64,
        strict in any::<bool>(),
    ) {
        let policy = if strict { Policy::Strict } else { Policy::Demote };
        let mut q = queue_of(&jobs, true);
        let mut pool = ResourcePool::new(spec(cpu, mem, 2));
        for _ in 0..5 {
            // pass_planned panics if a start does not fit the pool's available amounts.
            pass_planned(&mut q, &mut pool, 8, policy);
            let s = pool.stats();
            prop_assert!(s.used.fits_in(&s.total.saturating_sub(&s.reserve)));
        }
    }

    #[test]
    fn strict_never_starts_anything_behind_a_blocked_head(
        jobs in jobs(),
        cpu in 0..4_000u64,
        mem in 0..8_000u64,
        gpu in 0..3u64,
    ) {
        let candidates: Vec<Candidate> = jobs.iter().map(|j| candidate(j.priority, j.cpu, j.mem, j.gpu)).collect();
        let plan = plan(&candidates, &view(cpu, mem, gpu, vec![]), Policy::Strict, 0);
        if let Some(blocked) = plan.fates.iter().position(|f| matches!(f, Fate::Blocked { .. })) {
            prop_assert!(plan.fates[blocked + 1..].iter().all(|f| *f == Fate::Stay));
            prop_assert!(plan.fates[..blocked].iter().all(|f| *f == Fate::Start));
        } else {
            prop_assert!(plan.fates.iter().all(|f| *f == Fate::Start));
        }
        prop_assert!(!plan.fates.contains(&Fate::Demote));
    }
}
