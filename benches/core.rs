//! Core operations at 1k, 10k, 100k and 1M queued, and a pool allocate + release pair.
//!
//! Each size has one group (`queue/<n>/…`) around one queue built once; the mutating benchmarks
//! put it back to `n` entries, so the big queue is not rebuilt per sample. Time per operation is
//! what criterion reports, except `enqueue_fill` and `dequeue_drain`, whose iteration is a whole
//! fill 0→n or drain n→0: divide by n, or read the `thrpt` line (operations per second).
//!
//! `CORE_BENCH_QUICK=1` runs 1k and 10k only, with shorter measurements.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use coordinator_core::config::ResourcesConfig;
use coordinator_core::estimate::runtime_keys;
use coordinator_core::estimate::waits::{Ongoing, Runs, Waits};
use coordinator_core::planner::{plan, Candidate, Policy, PoolView, Rules, Running};
use coordinator_core::pool::{PoolSpec, ResourcePool, Resources};
use coordinator_core::queue::{ExecutionQueue, QueueLimits};
use coordinator_core::Priority;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};

const USERS: u64 = 100;
const NOW: u64 = 1_700_000_000_000;

/// Knuth's MMIX LCG: deterministic ids, users and priorities without a rand dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One request as the queue sees it: a UUID-shaped id, a user among 100, a level.
struct Request {
    id: String,
    user: String,
    priority: Priority,
}

/// Requests numbered from `serial`, spread over users and levels by `rng`.
fn requests(rng: &mut Lcg, serial: &mut u64, count: usize) -> Vec<Request> {
    (0..count)
        .map(|_| {
            *serial += 1;
            let r = rng.next();
            Request {
                id: format!("{:08x}-0000-4000-8000-{:012x}", r & 0xffff_ffff, *serial),
                user: format!("user-{:03}", rng.next() % USERS),
                priority: Priority::ALL[rng.below(Priority::ALL.len())],
            }
        })
        .collect()
}

fn limits() -> QueueLimits {
    QueueLimits {
        max_queue_size: usize::MAX,
        max_executions_per_user: usize::MAX,
        ..QueueLimits::default()
    }
}

fn fill(queue: &mut ExecutionQueue<()>, batch: Vec<Request>) {
    for r in batch {
        black_box(queue.enqueue(r.id, r.user, r.priority, (), NOW).is_ok());
    }
}

/// A queue of `n` and the ids it holds, indexable for random picks.
struct Fixture {
    queue: ExecutionQueue<()>,
    ids: Vec<String>,
    /// Where each queued id is in `ids`.
    slot: HashMap<String, usize>,
    rng: Lcg,
    serial: u64,
}

impl Fixture {
    fn new(n: usize) -> Self {
        let mut rng = Lcg(0x5eed ^ n as u64);
        let mut serial = 0;
        let batch = requests(&mut rng, &mut serial, n);
        let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
        let slot = ids
            .iter()
            .enumerate()
            .map(|(s, id)| (id.clone(), s))
            .collect();
        let mut queue = ExecutionQueue::new(limits());
        fill(&mut queue, batch);
        assert_eq!(queue.len(), n);
        Self {
            queue,
            ids,
            slot,
            rng,
            serial,
        }
    }

    /// Puts `id` in slot `s` in place of the id that left the queue.
    fn replace(&mut self, s: usize, id: &str) {
        self.slot.remove(&self.ids[s]);
        self.slot.insert(id.to_owned(), s);
        self.ids[s] = id.to_owned();
    }

    /// Up to `k` distinct slots of `ids`, at random.
    fn slots(&mut self, k: usize) -> Vec<usize> {
        let mut seen = HashSet::with_capacity(k);
        let n = self.ids.len();
        (0..k.min(n))
            .map(|_| loop {
                let s = self.rng.below(n);
                if seen.insert(s) {
                    break s;
                }
            })
            .collect()
    }
}

/// Operations timed together between untimed fix-ups: 1% of the queue, at most 1,000, so
/// the size stays within 1% of n and the timer's overhead is spread over many operations.
fn chunk(n: usize) -> u64 {
    (n / 100).clamp(1, 1_000) as u64
}

/// Fill 0→n from empty; one iteration is the whole fill.
fn enqueue_fill(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, n: usize) {
    let mut rng = Lcg(0xf111 ^ n as u64);
    let mut serial = 0;
    let template = requests(&mut rng, &mut serial, n);
    group.throughput(Throughput::Elements(n as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("enqueue_fill", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<Request> = template
                    .iter()
                    .map(|r| Request {
                        id: r.id.clone(),
                        user: r.user.clone(),
                        priority: r.priority,
                    })
                    .collect();
                let mut queue = ExecutionQueue::new(limits());
                let start = Instant::now();
                fill(&mut queue, batch);
                total += start.elapsed();
                drop(black_box(queue));
            }
            total
        })
    });
}

/// Drain n→0, settling each execution as the scheduler does when it commands it; one
/// iteration is the whole drain of a copy of the fixture.
fn dequeue_drain(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, f: &Fixture) {
    let n = f.queue.len();
    group.throughput(Throughput::Elements(n as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("dequeue_drain", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut queue = f.queue.clone();
                let start = Instant::now();
                while let Some(e) = queue.dequeue() {
                    black_box(queue.settle(e.priority, e.arrival));
                }
                total += start.elapsed();
                drop(black_box(queue));
            }
            total
        })
    });
}

/// The per-operation benchmarks at size n, on the shared fixture.
fn steady(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, f: &mut Fixture) {
    let n = f.queue.len();
    let k = chunk(n);
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Auto);

    // One more entry into a queue of n, cancelled (untimed) after each chunk.
    group.bench_function("enqueue", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let batch = requests(&mut f.rng, &mut f.serial, (iters - done).min(k) as usize);
                let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
                let start = Instant::now();
                fill(&mut f.queue, batch);
                total += start.elapsed();
                for id in &ids {
                    black_box(f.queue.cancel(id));
                }
                done += ids.len() as u64;
            }
            total
        })
    });

    // The head of a queue of n alone; after each chunk (untimed) the dequeued are settled and
    // as many fresh requests queued.
    group.bench_function("dequeue", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let want = (iters - done).min(k) as usize;
                let mut out = Vec::with_capacity(want);
                let start = Instant::now();
                for _ in 0..want {
                    out.extend(f.queue.dequeue());
                }
                total += start.elapsed();
                for e in &out {
                    black_box(f.queue.settle(e.priority, e.arrival));
                }
                let batch = requests(&mut f.rng, &mut f.serial, out.len());
                for (e, r) in out.iter().zip(&batch) {
                    let s = f.slot[&e.execution_id];
                    f.replace(s, &r.id);
                }
                fill(&mut f.queue, batch);
                done += out.len() as u64;
            }
            total
        })
    });
    assert_eq!(f.queue.len(), n);

    // The head goes out and comes back (one level lower, same arrival): size stays n.
    group.bench_function("dequeue_requeue", |b| {
        b.iter(|| {
            if let Some(e) = f.queue.dequeue() {
                black_box(f.queue.requeue(e));
            }
        })
    });

    // A random queued id; after each chunk, fresh requests (untimed) take the cancelled slots.
    group.bench_function("cancel", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let slots = f.slots((iters - done).min(k) as usize);
                let start = Instant::now();
                for &s in &slots {
                    black_box(f.queue.cancel(&f.ids[s]));
                }
                total += start.elapsed();
                let batch = requests(&mut f.rng, &mut f.serial, slots.len());
                for (&s, r) in slots.iter().zip(&batch) {
                    f.replace(s, &r.id);
                }
                fill(&mut f.queue, batch);
                done += slots.len() as u64;
            }
            total
        })
    });
    assert_eq!(f.queue.len(), n);

    // True rank of a random queued id.
    group.bench_function("position", |b| {
        b.iter(|| {
            let s = f.rng.below(f.ids.len());
            black_box(f.queue.position(&f.ids[s]))
        })
    });
}

fn queue_benches(c: &mut Criterion, quick: bool) {
    let sizes: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        let mut f = Fixture::new(n);
        let mut group = c.benchmark_group(format!("queue/{n}"));
        let scale = if quick { 1 } else { 2 };
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500 * scale))
            .measurement_time(Duration::from_secs(
                scale * if n >= 1_000_000 { 4 } else { 2 },
            ));
        enqueue_fill(&mut group, n);
        dequeue_drain(&mut group, &f);
        group.sample_size(20);
        steady(&mut group, &mut f);
        group.finish();
    }
}

fn pool_benches(c: &mut Criterion) {
    let mut pool = ResourcePool::new(PoolSpec::from_config(&ResourcesConfig::default()));
    // A pool with some executions running, as in service.
    for i in 0..32 {
        let held = pool.allocate(&format!("running-{i}"), Resources::new(500, 512, 0));
        assert!(held.is_ok());
    }
    let ask = Resources::new(1_000, 1_024, 0);
    let mut group = c.benchmark_group("pool");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("allocate_release", |b| {
        b.iter(|| {
            black_box(pool.allocate(black_box("exec-bench"), ask).is_ok());
            black_box(pool.release(black_box("exec-bench")))
        })
    });
    group.finish();
}

/// One pass of the planner over `n` candidates (every one looked at), on a pool with 64
/// executions running and room for about half the candidates: every policy reaches the
/// candidate that does not fit; `strict` then works out when it will, and `backfill`
/// reserves it and tries every candidate behind it (with one reservation, and with four).
fn planner_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("planner");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [10usize, 100, 10_000] {
        let mut rng = Lcg(n as u64);
        let candidates: Vec<Candidate> = (0..n)
            .map(|_| Candidate {
                priority: Priority::ALL[rng.below(5)],
                resources: Resources::new(100 + rng.below(900) as u64, 128, 0),
                timeout: Duration::from_secs(30 + rng.below(300) as u64),
                enqueued_at: 0,
            })
            .collect();
        let half: u64 = candidates[..n / 2]
            .iter()
            .map(|c| c.resources.cpu_millis)
            .sum();
        let running: Vec<Running> = (0..64)
            .map(|i| Running {
                resources: Resources::new(500, 512, 0),
                ends_by: 1_000 + i * 997 % 60_000,
            })
            .collect();
        let view = PoolView {
            available: Resources::new(half.max(1), 1 << 30, 0),
            running,
        };
        group.throughput(Throughput::Elements(n as u64));
        for (name, policy) in [("demote", Policy::Demote), ("strict", Policy::Strict)] {
            group.bench_function(format!("{name}/{n}"), |b| {
                b.iter(|| plan(black_box(&candidates), black_box(&view), policy, 0))
            });
        }
        for reservations in [1, 4] {
            let rules = Rules {
                backfill_depth: n,
                reservations,
                ..Rules::from(Policy::Backfill)
            };
            let name = match reservations {
                1 => format!("backfill/{n}"),
                k => format!("backfill_{k}_reservations/{n}"),
            };
            group.bench_function(name, |b| {
                b.iter(|| plan(black_box(&candidates), black_box(&view), rules, 0))
            });
        }
    }
    group.finish();
}

/// `count` executions of half a core running since 0, with timeouts of 30 to 90 s, for 50 users.
fn running(count: u64) -> Vec<(String, Ongoing)> {
    (0..count)
        .map(|i| {
            let ongoing = Ongoing {
                resources: Resources::new(500, 512, 0),
                span: Some((0, 30_000 + i * 997 % 60_000)),
                keys: Some(runtime_keys("python", &format!("u{}", i % 50))),
            };
            (format!("r{i}"), ongoing)
        })
        .collect()
}

/// What the wait estimator reads of a queued request, for its benchmarks.
struct Job {
    resources: Resources,
    timeout_ms: u64,
    keys: (u64, u64),
}

impl Runs for Job {
    fn reserves(&self) -> Resources {
        self.resources
    }
    fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }
    fn runtime_keys(&self) -> (u64, u64) {
        self.keys
    }
}

/// The estimate of an execution just queued at the back of NORMAL, with `n` queued, 64
/// running and run times learned for 50 users: what the daemon computes for every accepted
/// request. At 100 queued, also with 64 and 10,000 running, in a pool with room and a full one.
fn estimate_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("estimate");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [10usize, 100, 10_000] {
        let mut rng = Lcg(n as u64 + 7);
        let mut queue = ExecutionQueue::new(QueueLimits {
            max_queue_size: n + 1,
            max_executions_per_user: n + 1,
            ..QueueLimits::default()
        });
        let mut last = String::new();
        for i in 0..n {
            let user = format!("u{}", rng.below(50));
            let job = Job {
                resources: Resources::new(100 + rng.below(900) as u64, 128, 0),
                timeout_ms: 30_000 + rng.below(300_000) as u64,
                keys: runtime_keys("python", &user),
            };
            let level = if i + 1 == n {
                Priority::Normal
            } else {
                Priority::ALL[rng.below(5)]
            };
            last = format!("e{i}");
            let _ = queue.enqueue(last.clone(), user, level, job, i as u64);
        }
        let mut waits = Waits::new(Resources::new(32_000, 1 << 20, 0), 100);
        waits.pool_is(Resources::default(), running(64));
        for i in 0..500u64 {
            let id = format!("done{i}");
            let ongoing = Ongoing {
                resources: Resources::new(100, 128, 0),
                span: Some((0, 60_000)),
                keys: Some(runtime_keys("python", &format!("u{}", i % 50))),
            };
            waits.started(id.clone(), ongoing, Resources::default());
            waits.ended(&id, 5_000 + i * 37 % 50_000, Resources::default());
        }
        let entry = queue.get(&last).expect("queued");
        let position = queue.position(&last).expect("queued");
        group.bench_function(format!("accepted/{n}"), |b| {
            b.iter(|| black_box(waits.estimate(&queue, black_box(entry), position, 1_000)))
        });
        // The same at 100 queued with many running: a pool with room to spare (nothing that
        // runs needs to be looked at) and a full one (all of it is).
        if n == 100 {
            for count in [64u64, 10_000] {
                for (room, available) in [
                    ("room", Resources::new(1_000_000, 1 << 30, 0)),
                    ("full", Resources::default()),
                ] {
                    let mut waits = Waits::new(Resources::new(6_000_000, 1 << 32, 0), 100);
                    waits.pool_is(available, running(count));
                    group.bench_function(format!("accepted_100/{count}_running_{room}"), |b| {
                        b.iter(|| {
                            black_box(waits.estimate(&queue, black_box(entry), position, 1_000))
                        })
                    });
                }
            }
            // What a full pool of 10,000 costs when what runs changed and the last sort is
            // 100 ms old: the list of expected ends is built and sorted again first.
            let mut waits = Waits::new(Resources::new(6_000_000, 1 << 32, 0), 100);
            waits.pool_is(Resources::default(), running(10_000));
            let mut now = 1_000;
            group.bench_function("accepted_100/10000_running_resorted", |b| {
                b.iter(|| {
                    now += 100;
                    waits.ended("not-running", now, Resources::default());
                    black_box(waits.estimate(&queue, black_box(entry), position, now))
                })
            });
        }
    }
    group.finish();
}

fn main() {
    let quick = std::env::var_os("CORE_BENCH_QUICK").is_some_and(|v| v != "0");
    let mut c = Criterion::default().configure_from_args();
    queue_benches(&mut c, quick);
    pool_benches(&mut c);
    planner_benches(&mut c);
    estimate_benches(&mut c);
    c.final_summary();
}
