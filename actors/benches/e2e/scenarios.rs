//! The four end-to-end scenarios. Each run takes fresh topics and deletes them afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator_core::config::TopicLayout;
use execution_coordinator::telemetry::name;

use crate::kafka_io::{self, now_us, Levels, RequestTemplate, RunTopics, LEVELS, NORMAL};
use crate::procs::{config_toml, metric, out_dir, scrape, Proc, Program, RUN_TIME_MS};
use crate::report::{
    BacklogResult, LatencyResult, LatencyRun, MemoryResult, Phases, SaturationResult,
    ThroughputResult, ThroughputRun,
};
use crate::stats::{median, Percentiles};
use crate::{layout_name, Mode, Plan};

/// Room for everything: the queue and the pool never refuse (throughput and latency).
const ROOMY: &[(&str, &str)] = &[
    ("queue", "max_queue_size = 1000000"),
    ("queue", "max_executions_per_user = 1000000"),
    ("resources", "total_cpu_cores = 1000000.0"),
    ("resources", "total_memory_mb = 1000000000"),
];

/// A pool of 4 cores, 0.4 of them reserve: 18 executions of 200m at once.
const SMALL_POOL: &[(&str, &str)] = &[
    ("queue", "max_queue_size = 1000000"),
    ("queue", "max_executions_per_user = 1000000"),
    ("resources", "total_cpu_cores = 4.0"),
    ("resources", "overcommit_factor = 1.0"),
];

/// Warm-up of each latency run, not counted: long enough for the daemon to drain the backlog
/// of its cold start (the first requests wait for connections and metadata).
const WARM_UP: Duration = Duration::from_secs(4);

/// How long the latency collector waits for stragglers after the last request.
pub const GRACE: Duration = Duration::from_secs(10);

/// The config of one run: `knobs` in `mode`, on `topics` in their layout.
fn config(topics: &RunTopics, plan: &Plan, mode: Mode, knobs: &[(&str, &str)]) -> String {
    let mut lines = knobs.to_vec();
    lines.push(("kafka", mode.config_line()));
    if plan.commit_early {
        lines.push(("kafka", "transaction_commit_early = true"));
    }
    config_toml(topics, &plan.bootstrap, &lines)
}

/// The daemon and the two reference pipes, in an order that reverses every round.
fn programs_for_round(round: usize) -> [Program; 3] {
    let mut order = [Program::Daemon, Program::Equivalent, Program::Passthrough];
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Throughput with `n` preloaded requests on `partitions` input partitions: `rounds` rounds,
/// the pipes' order reversed every round.
pub async fn throughput(
    plan: &Plan,
    layout: TopicLayout,
    mode: Mode,
    n: usize,
    rounds: usize,
    partitions: i32,
) -> anyhow::Result<ThroughputResult> {
    let template = RequestTemplate::new(None, "200m");
    let mut result = ThroughputResult {
        layout,
        mode,
        n,
        partitions,
        ..Default::default()
    };
    for round in 0..rounds {
        let mut rates = HashMap::new();
        for pipe in programs_for_round(round) {
            let topics = RunTopics::fresh("tput", layout).with_input_partitions(partitions);
            let run = throughput_run(plan, &topics, mode, pipe, n, &template, round).await?;
            eprintln!(
                "e2e: throughput {} {} {partitions}p n={n} round {} {}: {:.0} req/s over {} commands, {:.0} CPU ms per 1,000",
                layout_name(layout),
                mode.name(),
                round + 1,
                pipe.name(),
                run.rate,
                run.commanded,
                run.cpu_ms_per_1k
            );
            rates.insert(pipe, run.rate);
            match pipe {
                Program::Daemon => result.daemon.push(run),
                Program::Equivalent => result.equivalent.push(run),
                _ => result.passthrough.push(run),
            }
        }
        result
            .ratios
            .push(rates[&Program::Daemon] / rates[&Program::Passthrough]);
        result
            .equivalent_ratios
            .push(rates[&Program::Daemon] / rates[&Program::Equivalent]);
    }
    result.median_ratio = median(&result.ratios);
    result.median_equivalent_ratio = median(&result.equivalent_ratios);
    Ok(result)
}

async fn throughput_run(
    plan: &Plan,
    topics: &RunTopics,
    mode: Mode,
    pipe: Program,
    n: usize,
    template: &RequestTemplate,
    round: usize,
) -> anyhow::Result<ThroughputRun> {
    let layout = topics.layout();
    topics.create(&plan.bootstrap).await?;
    kafka_io::preload(&plan.bootstrap, &topics.requests(), template, 0, n, NORMAL).await?;
    let proc = Proc::start(
        pipe,
        &config(topics, plan, mode, ROOMY),
        &format!(
            "throughput-{}-{}-{}p-{n}-r{}-{}",
            layout_name(layout),
            mode.name(),
            topics.input_partitions,
            round + 1,
            pipe.name()
        ),
    )?;
    let cap = Duration::from_secs(plan.run_cap_secs);
    let complete =
        kafka_io::wait_for_count(&plan.bootstrap, &topics.commands(), n as i64, cap).await?;
    let commands = if complete {
        kafka_io::read_back(&plan.bootstrap, &topics.commands(), Some(n))?
    } else {
        Vec::new()
    };
    let cpu = proc.cpu_time()?;
    proc.stop().await?;
    // Capped: measured on what was commanded until the stop (which commits the last of it).
    let commands = if complete {
        commands
    } else {
        kafka_io::read_back(&plan.bootstrap, &topics.commands(), None)?
    };
    let written = written(&plan.bootstrap, topics)?;
    topics.delete(&plan.bootstrap).await;
    let mut seen = vec![false; n];
    for c in &commands {
        if let Some(s) = seen.get_mut(c.tag.seq as usize) {
            *s = true;
        }
    }
    let commanded = seen.iter().filter(|s| **s).count();
    anyhow::ensure!(
        !complete || commanded == n,
        "{}: {} of {n} commands missing",
        pipe.name(),
        n - commanded
    );
    anyhow::ensure!(commanded > 1, "{}: fewer than 2 commands", pipe.name());
    let first = commands.iter().map(|c| c.appended_ms).min().unwrap_or(0);
    let last = commands.iter().map(|c| c.appended_ms).max().unwrap_or(0);
    let span_ms = (last - first).max(1) as f64;
    Ok(ThroughputRun {
        rate: (commanded as f64 - 1.0) * 1000.0 / span_ms,
        commanded,
        span_ms: span_ms as u64,
        cpu_ms_per_1k: cpu.as_secs_f64() * 1000.0 * 1000.0 / commanded as f64,
        written,
    })
}

/// What a pipe wrote to the run's output topics, per kind; requests (on the `shared`
/// layout's one topic of events) are not its own.
fn written(
    bootstrap: &str,
    topics: &RunTopics,
) -> anyhow::Result<std::collections::BTreeMap<String, (u64, u64)>> {
    let mut outputs = vec![topics.accepted(), topics.commands(), topics.state()];
    outputs.dedup();
    let requests = topics.requests();
    let mut written = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for topic in outputs {
        for (kind, (messages, bytes)) in kafka_io::sizes(bootstrap, &topic)? {
            // The 1-in-1-out pipe writes copies of requests; on the input topic they are not
            // its own.
            if kind != "execution_requested" || topic != requests {
                let entry = written.entry(kind).or_default();
                entry.0 += messages;
                entry.1 += bytes;
            }
        }
    }
    Ok(written)
}

/// Latency at a steady `rate` on `partitions` input partitions: `rounds` rounds, the pipes'
/// order reversed every round, samples of all rounds pooled per pipe.
pub async fn latency(
    plan: &Plan,
    layout: TopicLayout,
    mode: Mode,
    rate: u32,
    rounds: usize,
    partitions: i32,
) -> anyhow::Result<LatencyResult> {
    let template = RequestTemplate::new(None, "200m");
    let mut samples: HashMap<Program, Vec<u64>> = HashMap::new();
    let mut runs: HashMap<Program, Vec<LatencyRun>> = HashMap::new();
    for round in 0..rounds {
        for pipe in programs_for_round(round) {
            let topics = RunTopics::fresh("lat", layout).with_input_partitions(partitions);
            let (run, mut s) =
                latency_run(plan, &topics, mode, pipe, rate, &template, round).await?;
            eprintln!(
                "e2e: latency {} {} {partitions}p {rate}/s round {} {}: {} (commanded {}/{} measured, CPU {:.0}%)",
                layout_name(layout),
                mode.name(),
                round + 1,
                pipe.name(),
                run.percentiles.summary(),
                run.received,
                run.measured,
                run.cpu_percent
            );
            samples.entry(pipe).or_default().append(&mut s);
            runs.entry(pipe).or_default().push(run);
        }
    }
    let mut pooled = |pipe| Percentiles::of(samples.entry(pipe).or_default());
    Ok(LatencyResult {
        layout,
        mode,
        rate,
        partitions,
        daemon: pooled(Program::Daemon),
        passthrough: pooled(Program::Passthrough),
        equivalent: pooled(Program::Equivalent),
        daemon_runs: runs.remove(&Program::Daemon).unwrap_or_default(),
        passthrough_runs: runs.remove(&Program::Passthrough).unwrap_or_default(),
        equivalent_runs: runs.remove(&Program::Equivalent).unwrap_or_default(),
    })
}

async fn latency_run(
    plan: &Plan,
    topics: &RunTopics,
    mode: Mode,
    pipe: Program,
    rate: u32,
    template: &RequestTemplate,
    round: usize,
) -> anyhow::Result<(LatencyRun, Vec<u64>)> {
    topics.create(&plan.bootstrap).await?;
    let name = format!(
        "latency-{}-{}-{}p-{rate}-r{}-{}",
        layout_name(topics.layout()),
        mode.name(),
        topics.input_partitions,
        round + 1,
        pipe.name()
    );
    let mut proc = Proc::start(pipe, &config(topics, plan, mode, ROOMY), &name)?;
    proc.wait_ready().await?;
    let consumer = kafka_io::subscribed(&plan.bootstrap, &topics.commands())?;
    let cpu_before = proc.cpu_time()?;
    let started = Instant::now();
    let steady = Steady::start(plan, topics, consumer, template, rate)?;
    // The daemon's transactions are counted after the warm-up, to the last request.
    let metrics = match (pipe, mode) {
        (Program::Daemon, Mode::ExactlyOnce) => Some(proc.metrics_addr().await?),
        _ => None,
    };
    let mut phases_before = None;
    if let Some(addr) = &metrics {
        tokio::time::sleep(WARM_UP).await;
        phases_before = Some((Instant::now(), scrape(addr)?));
    }
    let steady = steady.sent().await?;
    let transactions = match (&metrics, phases_before) {
        (Some(addr), Some((since, before))) => {
            Some(phases(&before, &scrape(addr)?, since.elapsed()))
        }
        _ => None,
    };
    let (start_us, sent, arrivals) = steady.collected().await?;
    let cpu = proc.cpu_time()? - cpu_before;
    let elapsed = started.elapsed();
    proc.stop().await?;
    topics.delete(&plan.bootstrap).await;
    let csv: String = arrivals
        .iter()
        .map(|a| {
            format!(
                "{},{},{}\n",
                a.tag.seq,
                a.tag.sent_us.saturating_sub(start_us),
                a.received_us.saturating_sub(a.tag.sent_us)
            )
        })
        .collect();
    std::fs::write(
        out_dir()?.join(format!("{name}.csv")),
        format!("seq,sent_us,latency_us\n{csv}"),
    )?;
    let (mut samples, measured) = after_warm_up(&arrivals, start_us, rate, sent);
    let run = LatencyRun {
        sent,
        measured,
        received: samples.len() as u64,
        percentiles: Percentiles::of(&mut samples),
        cpu_percent: cpu.as_secs_f64() * 100.0 / elapsed.as_secs_f64(),
        transactions,
    };
    Ok((run, samples))
}

/// A steady load of `rate` requests per second for the warm-up and the measured seconds, its
/// commands collected as they arrive.
struct Steady {
    start_us: u64,
    stop: Arc<AtomicBool>,
    collector: std::sync::mpsc::Receiver<anyhow::Result<Vec<kafka_io::Arrival>>>,
    generator: Option<std::sync::mpsc::Receiver<anyhow::Result<(u64, u64)>>>,
    sent: u64,
}

impl Steady {
    /// Starts sending `template` requests to the input of `topics`; the commands are read from
    /// `consumer`, subscribed before anything was commanded (only the load's own are kept).
    fn start(
        plan: &Plan,
        topics: &RunTopics,
        consumer: rdkafka::consumer::BaseConsumer,
        template: &RequestTemplate,
        rate: u32,
    ) -> anyhow::Result<Self> {
        let duration = WARM_UP + Duration::from_secs(plan.latency_secs);
        let expected = rate as u64 * duration.as_millis() as u64 / 1000;
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let stop = stop.clone();
            kafka_io::spawn("e2e-collector", move || {
                kafka_io::collect(&consumer, expected, &stop, GRACE)
            })?
        };
        let start_us = now_us();
        let generator = {
            let (bootstrap, topic, template) =
                (plan.bootstrap.clone(), topics.requests(), template.clone());
            kafka_io::spawn("e2e-generator", move || {
                kafka_io::paced(&bootstrap, &topic, &template, rate, duration)
            })?
        };
        Ok(Self {
            start_us,
            stop,
            collector,
            generator: Some(generator),
            sent: 0,
        })
    }

    /// Once the last request is sent and acknowledged.
    async fn sent(mut self) -> anyhow::Result<Self> {
        if let Some(generator) = self.generator.take() {
            let (sent, failed) = kafka_io::join(generator).await?;
            anyhow::ensure!(failed == 0, "{failed} requests not acknowledged");
            self.sent = sent;
        }
        Ok(self)
    }

    /// Once the commands are in (or the grace after the last request ran out): when the load
    /// began, how many were sent, and what arrived.
    async fn collected(self) -> anyhow::Result<(u64, u64, Vec<kafka_io::Arrival>)> {
        let steady = self.sent().await?;
        steady.stop.store(true, Ordering::Relaxed);
        let arrivals = kafka_io::join(steady.collector).await?;
        Ok((steady.start_us, steady.sent, arrivals))
    }
}

/// The latencies of the requests sent after the warm-up, and how many were sent then.
fn after_warm_up(
    arrivals: &[kafka_io::Arrival],
    start_us: u64,
    rate: u32,
    sent: u64,
) -> (Vec<u64>, u64) {
    let measured_from = start_us + WARM_UP.as_micros() as u64;
    let samples = arrivals
        .iter()
        .filter(|a| a.tag.sent_us >= measured_from)
        .map(|a| a.received_us.saturating_sub(a.tag.sent_us))
        .collect();
    let warm_up_sent = rate as u64 * WARM_UP.as_millis() as u64 / 1000;
    (samples, sent.saturating_sub(warm_up_sent))
}

/// The transactions committed between two scrapes `window` apart, and their phases' means.
fn phases(before: &str, after: &str, window: Duration) -> Phases {
    let series = |what: &str, phase: &str| {
        let name = format!("{}_{what}{{phase=\"{phase}\"}}", name::TRANSACTION);
        metric(after, &name) - metric(before, &name)
    };
    let commits = series("count", "commit");
    let mean_ms = |phase: &str| series("sum", phase) * 1000.0 / commits.max(1.0);
    Phases {
        per_s: commits / window.as_secs_f64(),
        open_ms: mean_ms("open"),
        deliveries_ms: mean_ms("deliveries"),
        commit_ms: mean_ms("commit"),
    }
}

/// CPU time per second of wall time over `window`.
async fn cpu_per_second(proc: &Proc, window: Duration) -> anyhow::Result<f64> {
    let before = proc.cpu_time()?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let used = proc.cpu_time()? - before;
    Ok(used.as_secs_f64() * 1000.0 / started.elapsed().as_secs_f64())
}

/// Polls the daemon's metrics until `metric_name` reaches `at_least`.
async fn wait_for_metric(
    addr: &str,
    metric_name: &str,
    at_least: f64,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = scrape(addr)?;
        let value = metric(&text, metric_name);
        if value >= at_least {
            return Ok(text);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{metric_name} is {value} after {timeout:?}, expected {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pool with room for 18; requests of all five levels preloaded; worker-sim finishes each
/// execution `RUN_TIME_MS` after its command. Then the worker stops, more requests arrive, and
/// the daemon's CPU is measured while the head of the queue is blocked.
pub async fn saturation(
    plan: &Plan,
    layout: TopicLayout,
    mode: Mode,
) -> anyhow::Result<SaturationResult> {
    let n = plan.saturation_n;
    let window = Duration::from_secs(plan.cpu_window_secs);
    let template = RequestTemplate::new(None, "200m");
    let topics = RunTopics::fresh("sat", layout);
    topics.create(&plan.bootstrap).await?;
    let config = config(&topics, plan, mode, SMALL_POOL);
    let run = format!("{}-{}", layout_name(layout), mode.name());
    let mut proc = Proc::start(
        Program::Daemon,
        &config,
        &format!("saturation-{run}-daemon"),
    )?;
    proc.wait_ready().await?;
    let addr = proc.metrics_addr().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_cpu = cpu_per_second(&proc, window).await?;

    // worker-sim reads the same config: commands from, and completions to, the layout's topics.
    let worker = Proc::start(
        Program::WorkerSim,
        &config,
        &format!("saturation-{run}-worker-sim"),
    )?;
    kafka_io::wait_group_stable(&plan.bootstrap, &format!("{}-worker-sim", topics.group())).await?;
    let before = scrape(&addr)?;
    kafka_io::preload(
        &plan.bootstrap,
        &topics.requests(),
        &template,
        0,
        n,
        Levels::Mixed,
    )
    .await?;
    let cap = Duration::from_secs(plan.run_cap_secs.max(n as u64 * RUN_TIME_MS / 1000 + 30));
    let complete =
        kafka_io::wait_for_count(&plan.bootstrap, &topics.commands(), n as i64, cap).await?;
    if complete {
        kafka_io::read_back(&plan.bootstrap, &topics.commands(), Some(n))?;
    }
    let after = scrape(&addr)?;
    worker.stop().await?;

    // Head blocked: the executions not completed hold their share, and more arrive than fit.
    let extra = 200;
    let accepted = metric(&after, name::ACCEPTED);
    kafka_io::preload(
        &plan.bootstrap,
        &topics.requests(),
        &template,
        n as u64,
        extra,
        NORMAL,
    )
    .await?;
    wait_for_metric(
        &addr,
        name::ACCEPTED,
        accepted + extra as f64,
        Duration::from_secs(60),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let blocked_before = scrape(&addr)?;
    let blocked_cpu = cpu_per_second(&proc, window).await?;
    let blocked_after = scrape(&addr)?;
    proc.stop().await?;

    let accepted = kafka_io::read_back(&plan.bootstrap, &topics.accepted(), None)?;
    let commands = kafka_io::read_back(&plan.bootstrap, &topics.commands(), None)?;
    topics.delete(&plan.bootstrap).await;
    let accepted_at: HashMap<u64, i64> = accepted
        .iter()
        .filter(|e| e.event_type == "execution_accepted")
        .map(|e| (e.tag.seq, e.appended_ms))
        .collect();
    let mut waits: HashMap<u8, Vec<u64>> = HashMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut commanded = 0usize;
    for c in commands.iter().filter(|c| (c.tag.seq as usize) < n) {
        commanded += 1;
        first = first.min(c.appended_ms);
        last = last.max(c.appended_ms);
        if let Some(acc) = accepted_at.get(&c.tag.seq) {
            let wait_us = (c.appended_ms - acc).max(0) as u64 * 1000;
            waits.entry(c.tag.priority).or_default().push(wait_us);
        }
    }
    let span_s = ((last - first).max(1) as f64) / 1000.0;
    let delta = |a: &str, b: &str, m: &str| metric(b, m) - metric(a, m);
    let dispatched = delta(&before, &after, name::COMMANDED);
    let requeued = delta(&before, &after, name::REQUEUED);
    let blocked_requeues = delta(&blocked_before, &blocked_after, name::REQUEUED);
    Ok(SaturationResult {
        layout,
        mode,
        n,
        commanded,
        slots: 18,
        run_time_ms: RUN_TIME_MS,
        dispatched_per_s: dispatched / span_s,
        decisions_per_s: (dispatched + requeued) / span_s,
        wait_by_priority: LEVELS
            .iter()
            .map(|p| (*p, Percentiles::of(waits.entry(*p).or_default())))
            .collect(),
        queued_while_blocked: metric(&blocked_after, name::QUEUE_DEPTH) as u64,
        idle_cpu_ms_per_s: idle_cpu,
        blocked_cpu_ms_per_s: blocked_cpu,
        blocked_requeues_per_s: blocked_requeues / window.as_secs_f64(),
    })
}

/// 1 KiB of script.
fn script_1k() -> String {
    let line = "print(\"an execution waiting in the coordinator's queue\")\n";
    line.repeat(1024 / line.len() + 1)[..1024].to_owned()
}

/// Resident memory with `n` queued executions of 1 KiB scripts, behind a blocker that holds
/// the whole pool.
pub async fn memory(
    plan: &Plan,
    layout: TopicLayout,
    mode: Mode,
    n: usize,
) -> anyhow::Result<MemoryResult> {
    let topics = RunTopics::fresh("mem", layout);
    topics.create(&plan.bootstrap).await?;
    let mut proc = Proc::start(
        Program::Daemon,
        &config(&topics, plan, mode, SMALL_POOL),
        &format!("memory-{}-{}-{n}-daemon", layout_name(layout), mode.name()),
    )?;
    proc.wait_ready().await?;
    let addr = proc.metrics_addr().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_rss, _) = proc.memory()?;
    // The blocker takes all 3.6 free cores.
    let blocker = RequestTemplate::new(None, "3600m");
    kafka_io::preload(
        &plan.bootstrap,
        &topics.requests(),
        &blocker,
        n as u64,
        1,
        NORMAL,
    )
    .await?;
    wait_for_metric(&addr, name::COMMANDED, 1.0, Duration::from_secs(30)).await?;
    let script = script_1k();
    let template = RequestTemplate::new(Some(script.clone()), "500m");
    let started = Instant::now();
    let request_bytes =
        kafka_io::preload(&plan.bootstrap, &topics.requests(), &template, 0, n, NORMAL).await?;
    let scraped = wait_for_metric(
        &addr,
        name::ACCEPTED,
        (n + 1) as f64,
        Duration::from_secs(120 + n as u64 / 200),
    )
    .await?;
    let ingest_s = started.elapsed().as_secs_f64();
    let queued = metric(&scraped, name::QUEUE_DEPTH) as u64;
    // Let the producer acks (and in the shared layout the echoes of `execution_accepted`)
    // settle: RSS steady for 2 s.
    let mut last = proc.memory()?.0;
    let mut steady_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while steady_since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = proc.memory()?.0;
        if now.abs_diff(last) > last / 100 {
            steady_since = Instant::now();
        }
        last = now;
    }
    let (rss, hwm) = proc.memory()?;
    let commanded = metric(&scrape(&addr)?, name::COMMANDED) as u64;
    proc.stop().await?;
    topics.delete(&plan.bootstrap).await;
    anyhow::ensure!(
        commanded == 1,
        "the blocker did not hold the pool: {commanded} commanded"
    );
    let script_bytes = (n * script.len()) as u64;
    Ok(MemoryResult {
        layout,
        mode,
        n,
        queued,
        idle_rss,
        rss,
        peak_rss: hwm,
        script_bytes,
        request_bytes,
        limit: 2 * script_bytes + 50 * 1024 * 1024,
        ingest_per_s: n as f64 / ingest_s,
    })
}

/// A pool of a million cores (no overcommit) that takes executions of up to all of it.
const BACKLOG_POOL: &[(&str, &str)] = &[
    ("queue", "max_queue_size = 1000000"),
    ("queue", "max_executions_per_user = 1000000"),
    ("resources", "total_cpu_cores = 1000000.0"),
    ("resources", "overcommit_factor = 1.0"),
    ("resources", "total_memory_mb = 1000000000"),
    ("resources", "max_cpu_per_execution = 1000000.0"),
];

/// Sequence numbers of the backlog part's requests, apart from the latency part's (from 0):
/// the throughput requests, the backlog, the blocker.
const BACKLOG_THROUGHPUT_SEQ: u64 = 10_000_000;
const BACKLOG_SEQ: u64 = 20_000_000;
const BLOCKER_SEQ: u64 = 30_000_000;

/// The daemon with `queued` executions waiting the whole run: a blocker takes 900,000 of the
/// million cores, then `queued` BACKGROUND requests of 200,000 cores each queue behind it
/// (they never fit), then NORMAL requests of 200m (they start at once, ahead of the backlog in
/// dispatch order) are measured as in the throughput and latency benches: `n` preloaded, then
/// `rate`/s steady. What the standing queue costs shows against the run with none queued.
pub async fn backlog(
    plan: &Plan,
    layout: TopicLayout,
    mode: Mode,
    queued: usize,
    n: usize,
    rate: u32,
) -> anyhow::Result<BacklogResult> {
    let topics = RunTopics::fresh("backlog", layout);
    topics.create(&plan.bootstrap).await?;
    let name = format!(
        "backlog-{}-{}-{queued}-daemon",
        layout_name(layout),
        mode.name()
    );
    let mut proc = Proc::start(
        Program::Daemon,
        &config(&topics, plan, mode, BACKLOG_POOL),
        &name,
    )?;
    proc.wait_ready().await?;
    let addr = proc.metrics_addr().await?;
    // Subscribed before anything is commanded; it keeps only the latency part's (seq < its
    // count), so the blocker's and the throughput part's commands pass by.
    let consumer = kafka_io::subscribed(&plan.bootstrap, &topics.commands())?;
    let blocker = RequestTemplate::new(None, "900000");
    kafka_io::preload(
        &plan.bootstrap,
        &topics.requests(),
        &blocker,
        BLOCKER_SEQ,
        1,
        NORMAL,
    )
    .await?;
    wait_for_metric(&addr, name::COMMANDED, 1.0, Duration::from_secs(30)).await?;
    let waiting = RequestTemplate::new(None, "200000");
    kafka_io::preload(
        &plan.bootstrap,
        &topics.requests(),
        &waiting,
        BACKLOG_SEQ,
        queued,
        Levels::Only(10),
    )
    .await?;
    let scraped = wait_for_metric(
        &addr,
        name::ACCEPTED,
        (queued + 1) as f64,
        Duration::from_secs(120 + queued as u64 / 200),
    )
    .await?;
    let depth = metric(&scraped, name::QUEUE_DEPTH) as u64;

    // Throughput: `n` preloaded at once.
    let template = RequestTemplate::new(None, "200m");
    let cpu_before = proc.cpu_time()?;
    kafka_io::preload(
        &plan.bootstrap,
        &topics.requests(),
        &template,
        BACKLOG_THROUGHPUT_SEQ,
        n,
        NORMAL,
    )
    .await?;
    let cap = Duration::from_secs(plan.run_cap_secs);
    let complete =
        kafka_io::wait_for_count(&plan.bootstrap, &topics.commands(), n as i64 + 1, cap).await?;
    anyhow::ensure!(
        complete,
        "{name}: {n} requests not commanded within {cap:?}"
    );
    let commands = kafka_io::read_back(&plan.bootstrap, &topics.commands(), Some(n + 1))?;
    let cpu = proc.cpu_time()? - cpu_before;
    let measured: Vec<i64> = commands
        .iter()
        .filter(|c| (BACKLOG_THROUGHPUT_SEQ..BACKLOG_SEQ).contains(&c.tag.seq))
        .map(|c| c.appended_ms)
        .collect();
    let first = measured.iter().min().copied().unwrap_or(0);
    let last = measured.iter().max().copied().unwrap_or(0);
    let rate_measured = (measured.len() as f64 - 1.0) * 1000.0 / (last - first).max(1) as f64;

    // Latency: `rate`/s steady, as in the latency bench.
    let steady = Steady::start(plan, &topics, consumer, &template, rate)?;
    let (start_us, sent, arrivals) = steady.collected().await?;
    let still_queued = metric(&scrape(&addr)?, name::QUEUE_DEPTH) as u64;
    proc.stop().await?;
    topics.delete(&plan.bootstrap).await;
    anyhow::ensure!(
        still_queued >= queued as u64,
        "{name}: the backlog did not stay queued ({still_queued} of {queued})"
    );
    let (mut samples, measured) = after_warm_up(&arrivals, start_us, rate, sent);
    Ok(BacklogResult {
        layout,
        mode,
        queued,
        depth,
        n,
        rate: rate_measured,
        cpu_ms_per_1k: cpu.as_secs_f64() * 1000.0 * 1000.0 / n.max(1) as f64,
        latency_rate: rate,
        received: samples.len() as u64,
        measured,
        latency: Percentiles::of(&mut samples),
    })
}
