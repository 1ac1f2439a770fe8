use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::MaxWait;
use crate::pool::{PoolSpec, ResourcePool};
use crate::queue::{ExecutionQueue, QueueLimits};

const ALL: [Priority; 5] = Priority::ALL;

fn candidate(priority: Priority, cpu: u64, mem: u64, gpu: u64) -> Candidate {
    Candidate {
        priority,
        resources: Resources::new(cpu, mem, gpu),
        timeout: Duration::from_secs(60),
        enqueued_at: 0,
    }
}

/// A NORMAL candidate of `cpu` millicores that may run `timeout_s` and was queued at
/// `queued_ms`.
fn job(cpu: u64, timeout_s: u64, queued_ms: u64) -> Candidate {
    Candidate {
        priority: Priority::Normal,
        resources: Resources::new(cpu, 0, 0),
        timeout: Duration::from_secs(timeout_s),
        enqueued_at: queued_ms,
    }
}

fn running(cpu: u64, ends_by: Millis) -> Running {
    Running {
        resources: Resources::new(cpu, 0, 0),
        ends_by,
    }
}

fn backfill(reservations: usize, depth: usize) -> Rules {
    Rules {
        reservations,
        backfill_depth: depth,
        ..Rules::from(Policy::Backfill)
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

#[test]
fn strict_counts_what_the_pass_starts_in_its_block_time() {
    // 1000 free, nothing running: the first takes 600 until 61 s, the second (800) can only
    // start when it ends.
    let plan = plan(
        &[job(600, 60, 0), job(800, 10, 0)],
        &view(1_000, 0, 0, vec![]),
        Policy::Strict,
        1_000,
    );
    assert_eq!(
        plan.fates,
        [Fate::Start, Fate::Blocked { at: Some(61_000) }]
    );
}

#[test]
fn backfill_reserves_the_head_and_starts_what_ends_before_it() {
    // 400 free; 500 more at 5 s. The head (800) is reserved for 5 s, leaving 100 then.
    // Behind it: 200 for 3 s ends before 5 s and starts; 200 for 10 s fits what is free but
    // would still hold 200 at 5 s, so it is held; 100 for 10 s fits in the 100 left over and
    // starts; 600 fits nowhere now.
    let candidates = [
        job(800, 1, 0),
        job(200, 3, 0),
        job(200, 10, 0),
        job(100, 10, 0),
        job(600, 1, 0),
    ];
    let plan = plan(
        &candidates,
        &view(400, 0, 0, vec![running(500, 5_000)]),
        Policy::Backfill,
        1_000,
    );
    assert_eq!(
        plan.fates,
        [
            Fate::Reserved { at: 5_000 },
            Fate::Start,
            Fate::Held { reservation: 0 },
            Fate::Start,
            Fate::Waits,
        ]
    );
    assert_eq!(plan.reservations().collect::<Vec<_>>(), [(0, 5_000)]);
}

#[test]
fn backfill_over_every_resource_at_once() {
    // Memory is what the head lacks; a candidate that ends after the reservation must fit
    // in what is left of every resource, gpu included.
    let view = PoolView {
        available: Resources::new(1_000, 100, 1),
        running: vec![Running {
            resources: Resources::new(0, 400, 0),
            ends_by: 9_000,
        }],
    };
    let c = |cpu, mem, gpu, timeout_s| Candidate {
        resources: Resources::new(cpu, mem, gpu),
        ..job(0, timeout_s, 0)
    };
    let candidates = [
        c(500, 400, 0, 1),
        c(400, 0, 1, 60),
        c(600, 0, 0, 60),
        c(100, 100, 0, 60),
    ];
    let plan = plan(&candidates, &view, Policy::Backfill, 0);
    // At 9 s: 1000m, 500 MiB, 1 gpu free; the head takes 500m and 400 MiB, leaving 500m,
    // 100 MiB, 1 gpu. The second takes 400m and the gpu, the third would need 600m of 100m.
    assert_eq!(
        plan.fates,
        [
            Fate::Reserved { at: 9_000 },
            Fate::Start,
            Fate::Held { reservation: 0 },
            Fate::Start,
        ]
    );
}

#[test]
fn backfill_promotes_whoever_waited_past_max_wait_to_the_reservation() {
    let rules = Rules {
        max_wait: MaxWait::all(Duration::from_secs(60)),
        ..Rules::from(Policy::Backfill)
    };
    let critical = |cpu, timeout_s| Candidate {
        priority: Priority::Critical,
        ..job(cpu, timeout_s, 65_000)
    };
    // A BACKGROUND candidate queued at 0 is past its 60 s at 70 s; the CRITICAL ones are
    // ahead of it in the queue, but it goes first and takes the reservation.
    let background = Candidate {
        priority: Priority::Background,
        ..job(900, 10, 0)
    };
    let later = Candidate {
        priority: Priority::Background,
        ..job(800, 10, 20_000)
    };
    let candidates = [critical(300, 10), critical(200, 20), background, later];
    let pool = view(500, 0, 0, vec![running(500, 80_000)]);
    let plan = plan(&candidates, &pool, rules, 70_000);
    assert_eq!(
        plan.fates,
        [
            Fate::Start,
            Fate::Held { reservation: 2 },
            Fate::Reserved { at: 80_000 },
            Fate::Waits,
        ],
        "the first critical ends by 80 s and starts; the second would take the reserved room"
    );
    // Before its deadline it is behind them: both start, and it is reserved after them.
    let plan = super::plan(&candidates, &pool, rules, 59_000);
    assert_eq!(
        plan.fates,
        [
            Fate::Start,
            Fate::Start,
            Fate::Reserved { at: 80_000 },
            Fate::Waits,
        ]
    );
}

#[test]
fn only_the_earliest_deadline_goes_first_the_others_keep_their_place() {
    let rules = Rules {
        max_wait: MaxWait::all(Duration::from_secs(60)),
        ..Rules::from(Policy::Backfill)
    };
    let at = |priority, cpu, queued_ms| Candidate {
        priority,
        ..job(cpu, 100, queued_ms)
    };
    // Both LOW ones are overdue at 100 s; the older goes first and takes the reservation (the
    // pool holds 1200 from 150 s). The CRITICAL one, not overdue, comes next and fits in what
    // is left then; the younger LOW one waits in its place behind it.
    let candidates = [
        at(Priority::Critical, 200, 90_000),
        at(Priority::Low, 900, 0),
        at(Priority::Low, 900, 10_000),
    ];
    let pool = view(300, 0, 0, vec![running(900, 150_000)]);
    assert_eq!(
        plan(&candidates, &pool, rules, 100_000).fates,
        [Fate::Start, Fate::Reserved { at: 150_000 }, Fate::Waits]
    );
}

#[test]
fn overdue_candidates_go_first_earliest_deadline_first() {
    let rules = Rules {
        max_wait: MaxWait {
            critical: Duration::from_secs(10),
            background: Duration::from_secs(100),
            ..MaxWait::all(Duration::from_secs(50))
        },
        ..Rules::from(Policy::Backfill)
    };
    let at = |priority, queued_ms| Candidate {
        priority,
        ..job(1_000, 10, queued_ms)
    };
    // Deadlines: critical 5+10 = 15 s, background 0+100 = 100 s, normal 30+50 = 80 s.
    let candidates = [
        at(Priority::Critical, 5_000),
        at(Priority::Normal, 30_000),
        at(Priority::Background, 0),
    ];
    let pool = view(0, 0, 0, vec![running(1_000, 200_000)]);
    let fates = |now| plan(&candidates, &pool, rules, now).fates;
    // At 120 s all three are overdue: the critical one's deadline is the earliest.
    assert_eq!(fates(120_000)[0], Fate::Reserved { at: 200_000 });
    // At 90 s the critical (15 s) and the normal (80 s) are; the critical still first.
    assert_eq!(fates(90_000)[0], Fate::Reserved { at: 200_000 });
    // With a later critical deadline the normal one wins.
    let late = [at(Priority::Critical, 75_000), candidates[1]];
    assert_eq!(
        plan(&late, &pool, rules, 90_000).fates,
        [Fate::Waits, Fate::Reserved { at: 200_000 }]
    );
}

#[test]
fn backfill_looks_no_further_than_its_depth() {
    let candidates = [
        job(900, 1, 0),
        job(100, 1, 0),
        job(100, 1, 0),
        job(100, 1, 0),
    ];
    let plan = plan(
        &candidates,
        &view(300, 0, 0, vec![running(700, 5_000)]),
        backfill(1, 3),
        0,
    );
    assert_eq!(
        plan.fates,
        [
            Fate::Reserved { at: 5_000 },
            Fate::Start,
            Fate::Start,
            Fate::Stay
        ]
    );
}

#[test]
fn more_reservations_plan_each_around_the_earlier_ones() {
    // 1000 in all: 1000 held until 10 s. A (800, 20 s) from 10 s to 30 s; B (500, 5 s) fits
    // only from 30 s; C (200, 100 s) can start at 10 s beside A but would overlap B's
    // reservation, where 500 + 200 ≤ 1000: it is reserved at 10 s too.
    let candidates = [
        job(800, 20, 0),
        job(500, 5, 0),
        job(200, 100, 0),
        job(300, 50, 0),
    ];
    let pool = view(0, 0, 0, vec![running(1_000, 10_000)]);
    let plan3 = plan(&candidates, &pool, backfill(3, 100), 0);
    assert_eq!(
        plan3.fates,
        [
            Fate::Reserved { at: 10_000 },
            Fate::Reserved { at: 30_000 },
            Fate::Reserved { at: 10_000 },
            Fate::Waits,
        ]
    );
    // With one reservation only A holds one; the rest do not fit now and wait.
    let plan1 = plan(&candidates, &pool, backfill(1, 100), 0);
    assert_eq!(
        plan1.fates,
        [
            Fate::Reserved { at: 10_000 },
            Fate::Waits,
            Fate::Waits,
            Fate::Waits
        ]
    );
}

#[test]
fn with_two_reservations_a_start_must_spare_both() {
    // 600 free now, 400 more at 10 s. A (1000, 10 s) from 10 s to 20 s; B (700, 10 s) fits
    // from 20 s. C (300, 15 s) fits now and ends before B but runs into A: held for A. D
    // (300, 5 s) ends before A and starts. E (300, 30 s) fits what D left, but runs into A.
    let candidates = [
        job(1_000, 10, 0),
        job(700, 10, 0),
        job(300, 15, 0),
        job(300, 5, 0),
        job(300, 30, 0),
    ];
    let pool = view(600, 0, 0, vec![running(400, 10_000)]);
    let plan = plan(&candidates, &pool, backfill(2, 100), 0);
    assert_eq!(
        plan.fates,
        [
            Fate::Reserved { at: 10_000 },
            Fate::Reserved { at: 20_000 },
            Fate::Held { reservation: 0 },
            Fate::Start,
            Fate::Held { reservation: 0 },
        ]
    );
}

#[test]
fn backfill_without_a_time_for_the_head_starts_nothing_behind_it() {
    // Nothing running: the view cannot say when 900 will be free, so nothing is shown not
    // to delay it.
    let plan = plan(
        &[job(100, 1, 0), job(900, 1, 0), job(100, 1, 0)],
        &view(500, 0, 0, vec![]),
        Policy::Backfill,
        0,
    );
    assert_eq!(
        plan.fates,
        [Fate::Start, Fate::Blocked { at: None }, Fate::Stay]
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
            enqueued_at: e.enqueued_at,
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
            Fate::Stay
            | Fate::Blocked { .. }
            | Fate::Reserved { .. }
            | Fate::Held { .. }
            | Fate::Waits => {
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
        policy in 0..3usize,
        ends in prop::collection::vec((0..2_000u64, 0..4_000u64, 0..2u64, 0..100_000u64), 0..8),
    ) {
        let candidates: Vec<Candidate> = jobs.iter().map(|j| candidate(j.priority, j.cpu, j.mem, j.gpu)).collect();
        let policy = Policy::ALL[policy];
        let free = Resources::new(cpu, mem, gpu);
        let running = ends.iter().map(|&(c, m, g, e)| Running { resources: Resources::new(c, m, g), ends_by: e }).collect();
        let plan = plan(&candidates, &view(cpu, mem, gpu, running), policy, 50_000);
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
        // Backfill has its own pass through the pool below, with what runs in it.
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

/// A pool with executions running in it and candidates queued, for backfill properties.
#[derive(Debug, Clone)]
struct Scene {
    total: Resources,
    /// (resources, ends_by, % of the time to its end it really runs)
    running: Vec<(Resources, Millis, u64)>,
    /// (candidate, % of its timeout it really runs)
    queued: Vec<(Candidate, u64)>,
    reservations: usize,
    depth: usize,
}

const NOW: Millis = 10_000_000;

/// How much of its time an execution really runs: often all of it, the case that can break a
/// reservation.
fn share() -> impl Strategy<Value = u64> {
    prop_oneof![Just(100u64), 0..=100u64]
}

fn scene() -> impl Strategy<Value = Scene> {
    (1_000..8_000u64, 1_000..16_000u64, 0..3u64).prop_flat_map(|(cpu, mem, gpu)| {
        let total = Resources::new(cpu, mem, gpu);
        let amount = move |div: u64| {
            (0..=cpu / div, 0..=mem / div, 0..=gpu).prop_map(|(c, m, g)| Resources::new(c, m, g))
        };
        // Times on whole seconds, as timeouts are, so ends meet reservations exactly.
        let running = prop::collection::vec(
            (amount(2), -20..300i64, share())
                .prop_map(|(r, s, share)| (r, (NOW as i64 + s * 1_000) as Millis, share)),
            0..12,
        );
        let size = prop_oneof![amount(1), amount(4), amount(10)];
        let queued = prop::collection::vec(
            (size, 0..5usize, 1..300u64, 0..=3_600u64, share()).prop_map(
                |(resources, p, timeout_s, waited_s, share)| {
                    (
                        Candidate {
                            priority: ALL[p],
                            resources,
                            timeout: Duration::from_secs(timeout_s),
                            enqueued_at: NOW - waited_s * 1_000,
                        },
                        share,
                    )
                },
            ),
            0..30,
        );
        (running, queued, 1..4usize, 1..40usize).prop_map(
            move |(running, queued, reservations, depth)| {
                // Keep the running executions that fit the pool together.
                let mut used = Resources::default();
                let running = running
                    .into_iter()
                    .filter(|(r, _, _)| {
                        let more = used.plus(r);
                        let fits = more.fits_in(&total);
                        if fits {
                            used = more;
                        }
                        fits
                    })
                    .collect();
                Scene {
                    total,
                    running,
                    queued,
                    reservations,
                    depth,
                }
            },
        )
    })
}

impl Scene {
    fn view(&self) -> PoolView {
        let used = self
            .running
            .iter()
            .fold(Resources::default(), |a, (r, _, _)| a.plus(r));
        PoolView {
            available: self.total.saturating_sub(&used),
            running: self
                .running
                .iter()
                .map(|&(resources, ends_by, _)| Running { resources, ends_by })
                .collect(),
        }
    }

    fn rules(&self) -> Rules {
        Rules {
            reservations: self.reservations,
            backfill_depth: self.depth,
            ..Rules::from(Policy::Backfill)
        }
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.queued.iter().map(|(c, _)| *c).collect()
    }
}

/// When something that runs from `start` for `share`% of `span` ms really ends.
fn really_ends(start: Millis, span: Millis, share: u64) -> Millis {
    start + span * share / 100
}

/// Signed free amounts, for walking a schedule forward.
#[derive(Debug, Default, Clone, Copy)]
struct Free([i64; 3]);

impl Free {
    fn of(r: &Resources) -> Free {
        Free([r.cpu_millis as i64, r.memory_mib as i64, r.gpu as i64])
    }
    fn add(&mut self, r: &Resources, sign: i64) {
        for (have, v) in self.0.iter_mut().zip(Free::of(r).0) {
            *have += sign * v;
        }
    }
    fn covers(&self, r: &Resources) -> bool {
        let v = Free::of(r).0;
        (0..3).all(|i| self.0[i] >= v[i])
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn backfill_never_delays_a_reservation_it_made(scene in scene()) {
        let candidates = scene.candidates();
        let view = scene.view();
        let plan = plan(&candidates, &view, scene.rules(), NOW);
        // Start what the plan starts; every execution then runs its real share of its time,
        // never past its timeout. Each reservation, in time order, must fit at its time
        // beside the earlier ones, which hold theirs until their timeouts.
        let mut holds: Vec<(Resources, Millis)> = scene
            .running
            .iter()
            .map(|&(r, ends_by, share)| (r, really_ends(NOW, ends_by.saturating_sub(NOW), share)))
            .collect();
        for i in plan.starts() {
            let (c, share) = scene.queued[i];
            holds.push((c.resources, really_ends(NOW, c.timeout.as_millis() as u64, share)));
        }
        let mut reserved: Vec<(usize, Millis)> = plan.reservations().collect();
        reserved.sort_by_key(|&(i, at)| (at, i));
        prop_assert!(reserved.len() <= scene.reservations);
        for (i, at) in reserved {
            let mut free = Free::of(&scene.total);
            for (r, end) in &holds {
                if *end > at {
                    free.add(r, -1);
                }
            }
            let c = candidates[i];
            prop_assert!(
                free.covers(&c.resources),
                "candidate {} reserved at {} does not fit: {:?} free, {:?}",
                i, at, free, plan.fates
            );
            holds.push((c.resources, at + c.timeout.as_millis() as u64));
        }
    }

    #[test]
    fn backfill_starts_what_fits_and_at_least_what_strict_starts(scene in scene()) {
        let candidates = scene.candidates();
        let view = scene.view();
        let rules = Rules { max_wait: MaxWait::all(Duration::from_secs(7_200)), ..scene.rules() };
        let backfill = plan(&candidates, &view, rules, NOW);
        let strict = plan(&candidates[..scene.depth.min(candidates.len())], &view, Policy::Strict, NOW);
        let mut taken = Free::default();
        for i in backfill.starts() {
            taken.add(&candidates[i].resources, 1);
        }
        let free = Free::of(&view.available);
        for k in 0..3 {
            prop_assert!(taken.0[k] <= free.0[k], "{:?} taken of {:?}", taken, view.available);
        }
        // Nothing is overdue (max_wait 2 h, queued at most 1 h ago), so backfill sees the
        // candidates in strict's order and starts strict's prefix, and maybe more.
        for i in strict.starts() {
            prop_assert_eq!(backfill.fates[i], Fate::Start);
        }
        // A candidate is left without a reservation only when they are all taken.
        let reserved = backfill.reservations().count();
        prop_assert!(reserved <= scene.reservations);
        if backfill.fates.iter().any(|f| matches!(f, Fate::Held { .. } | Fate::Waits)) {
            prop_assert_eq!(reserved, scene.reservations, "{:?}", backfill.fates);
        }
    }

    #[test]
    fn the_earliest_deadline_past_max_wait_starts_or_is_reserved(scene in scene(), wait_s in 1..3_600u64) {
        let candidates = scene.candidates();
        let rules = Rules { max_wait: MaxWait::all(Duration::from_secs(wait_s)), ..scene.rules() };
        let plan = plan(&candidates, &scene.view(), rules, NOW);
        let first = (0..candidates.len())
            .filter(|&i| rules.deadline(candidates[i].priority, candidates[i].enqueued_at) <= NOW)
            .min_by_key(|&i| (rules.deadline(candidates[i].priority, candidates[i].enqueued_at), i));
        if let Some(i) = first {
            // Everything running ends at some point and every candidate fits the pool, so
            // it always has a time.
            prop_assert!(
                matches!(plan.fates[i], Fate::Start | Fate::Reserved { .. }),
                "overdue candidate {} got {:?}", i, plan.fates[i]
            );
        }
    }

    #[test]
    fn a_plan_carried_out_leaves_nothing_more_to_start(scene in scene()) {
        // Plan, start what it starts, plan again at the same time: unless the overdue
        // execution at the front started (so the next one is promoted), nothing more starts
        // and the reservations stay, so a scheduler that re-plans without an event does
        // nothing (no spinning). Either way, passes at one time end after a few.
        let rules = Rules { backfill_depth: 1_000, ..scene.rules() };
        let mut queued = scene.candidates();
        let mut view = scene.view();
        let mut last: Option<(bool, Vec<Millis>)> = None;
        for pass in 0..=queued.len() + 1 {
            let plan = plan(&queued, &view, rules, NOW);
            let reserved: Vec<Millis> = plan.reservations().map(|(_, at)| at).collect();
            if let Some((head_started, before)) = &last {
                if !head_started {
                    prop_assert_eq!(plan.starts().count(), 0, "pass {}: {:?}", pass, plan.fates);
                    prop_assert_eq!(&reserved, before);
                }
            }
            if plan.starts().count() == 0 {
                break;
            }
            prop_assert!(pass <= queued.len(), "passes at one time never end");
            let head = (0..queued.len())
                .filter(|&i| rules.deadline(queued[i].priority, queued[i].enqueued_at) <= NOW)
                .min_by_key(|&i| (rules.deadline(queued[i].priority, queued[i].enqueued_at), i));
            last = Some((head.is_some_and(|h| plan.fates[h] == Fate::Start), reserved));
            for i in plan.starts() {
                let c = queued[i];
                view.available = view.available.saturating_sub(&c.resources);
                view.running.push(Running { resources: c.resources, ends_by: NOW + c.timeout.as_millis() as u64 });
            }
            queued = (0..queued.len())
                .filter(|&i| plan.fates[i] != Fate::Start)
                .map(|i| queued[i])
                .collect();
        }
    }

    #[test]
    fn backfill_through_the_pool_never_goes_below_the_reserve(
        jobs in jobs(),
        cpu in 500..8_000u64,
        mem in 1_000..16_000u64,
        timeouts in prop::collection::vec(1..600u64, 40),
        releases in prop::collection::vec(prop::collection::vec(0..40usize, 0..6), 5),
        depth in 1..20usize,
        reservations in 1..3usize,
    ) {
        let mut q = queue_of(&jobs, false);
        let mut pool = ResourcePool::new(spec(cpu, mem, 2));
        let rules = Rules { backfill_depth: depth, reservations, ..Rules::from(Policy::Backfill) };
        let mut ends: std::collections::HashMap<String, Millis> = Default::default();
        for (pass, released) in releases.iter().enumerate() {
            let now = pass as u64 * 60_000;
            let taken: Vec<_> = std::iter::from_fn(|| q.dequeue()).take(depth).collect();
            let candidates: Vec<Candidate> = taken
                .iter()
                .map(|e| Candidate {
                    priority: e.priority,
                    resources: e.payload,
                    timeout: Duration::from_secs(timeouts[e.arrival as usize % 40]),
                    enqueued_at: e.enqueued_at,
                })
                .collect();
            let view = PoolView {
                available: pool.available(),
                running: pool
                    .allocations()
                    .map(|a| Running { resources: a.resources, ends_by: ends[&a.execution_id] })
                    .collect(),
            };
            let plan = plan(&candidates, &view, rules, now);
            for ((entry, fate), c) in taken.into_iter().zip(&plan.fates).zip(&candidates) {
                if *fate == Fate::Start {
                    prop_assert!(pool.allocate(&entry.execution_id, entry.payload).is_ok(), "{:?}", plan.fates);
                    ends.insert(entry.execution_id.clone(), now + c.timeout.as_millis() as u64);
                    q.settle(entry.priority, entry.arrival);
                } else {
                    prop_assert!(fate.keeps_place());
                    q.put_back(entry);
                }
            }
            let s = pool.stats();
            prop_assert!(s.used.fits_in(&s.total.saturating_sub(&s.reserve)));
            for r in released {
                pool.release(&format!("e{r}"));
            }
        }
    }
}
