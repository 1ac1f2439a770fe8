use super::engine::{self, JobOutcome};
use super::report::Report;
use super::settings::SimConfig;
use super::swf::{self, SwfError};
use super::synth::{self, SynthParams, Workload};
use super::*;
use crate::planner::Policy;
use crate::Priority;

/// A 4-core pool, no reserve, nothing expired, the daemon's 500 ms tick, levels from the queue number.
const CONFIG: &str = r#"
[queue]
stale_timeout = "3650days"
max_executions_per_user = 100000

[resources]
total_cpu_cores = 4.0
total_memory_mb = 1024
overcommit_factor = 1.0
min_available_cpu_cores = 0.0
min_available_memory_mb = 0
max_cpu_per_execution = 4.0

[scheduler]
scheduling_interval = "500ms"

[simulate]
priority = "queue"
queue_priority = { 1 = "critical", 2 = "high", 3 = "normal", 4 = "low", 5 = "background" }
"#;

/// job, submit, runtime, procs, reqtime, queue (the rest unknown, user 1, recorded wait 0).
fn line(job: u32, submit: u32, runtime: u32, procs: u32, req: u32, queue: u32) -> String {
    format!("{job} {submit} 0 {runtime} {procs} -1 -1 {procs} {req} -1 1 1 1 -1 {queue} -1 -1 -1")
}

/// Four jobs on 4 cores: a 3-core job runs, a 4-core job blocks, a 1-core job and a HIGH
/// 2-core job arrive behind it.
fn trace() -> String {
    [
        "; a header line".to_owned(),
        line(1, 0, 100, 3, 200, 3),
        line(2, 10, 50, 4, 100, 3),
        line(3, 20, 10, 1, 20, 3),
        line(4, 30, 30, 2, 60, 2),
    ]
    .join("\n")
}

/// Replays `trace` under `config` and `policy`: each job's start in seconds, the outcome, and
/// how many records were skipped.
fn run_trace(config: &SimConfig, trace: &str, policy: Policy) -> (Vec<u64>, engine::Outcome, u64) {
    let records = swf::parse(trace.as_bytes(), None).unwrap();
    let (jobs, skipped) = map_all(&records, config);
    let outcome = engine::run(&jobs, &config.config, policy, &mut |_, _| {});
    let starts = outcome
        .jobs
        .iter()
        .map(|o| match o {
            JobOutcome::Started { start, .. } => *start / 1000,
            other => panic!("not started: {other:?}"),
        })
        .collect();
    (starts, outcome, skipped)
}

fn starts(policy: Policy) -> (Vec<u64>, engine::Outcome) {
    let config = SimConfig::from_toml_str(CONFIG).unwrap();
    let (starts, outcome, skipped) = run_trace(&config, &trace(), policy);
    assert_eq!(skipped, 0);
    (starts, outcome)
}

#[test]
fn parses_fields_and_skips_the_header() {
    let records = swf::parse(trace().as_bytes(), None).unwrap();
    assert_eq!(records.len(), 4);
    let r = records[1];
    assert_eq!((r.job, r.submit, r.runtime), (2, 10.0, 50.0));
    assert_eq!((r.procs, r.req_procs, r.req_time), (4, 4, 100.0));
    assert_eq!((r.user, r.queue, r.mem_kb), (1, 3, -1.0));
    assert_eq!(swf::parse(trace().as_bytes(), Some(2)).unwrap().len(), 2);
}

#[test]
fn a_bad_line_is_an_error_naming_its_line() {
    let text = format!("{}\n; header\n1 2 3\n", line(1, 0, 1, 1, 1, 1));
    let err = swf::parse(text.as_bytes(), None).unwrap_err();
    assert!(
        matches!(err, SwfError::FieldCount { line: 3, found: 3 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "line 3: expected 18 whitespace-separated fields, found 3"
    );
    let text = line(1, 0, 1, 1, 1, 1).replace(" 0 1 1 -1", " 0 x1 1 -1");
    let err = swf::parse(text.as_bytes(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: field 4 (runtime) is not a number: `x1`"
    );
}

#[test]
fn strict_schedule_by_hand_never_starts_behind_a_blocked_head() {
    let (starts, outcome) = starts(Policy::Strict);
    // t=0 job 1 (3 cores). Job 2 (4 cores) blocks; job 3 (1 core) fits but waits behind it;
    // job 4 (HIGH) goes ahead of both at t=100 when job 1 ends; job 2 at 130; job 3 at 180.
    assert_eq!(starts, vec![0, 130, 180, 100]);
    assert_eq!(outcome.demotions, 0);
    assert_eq!(
        outcome.ticks, 0,
        "a strict block is left alone until an event"
    );
    assert_eq!(outcome.end_ms, 190_000);
}

#[test]
fn demote_schedule_by_hand_demotes_blocked_heads_each_tick() {
    let (starts, outcome) = starts(Policy::Demote);
    // t=10 job 2 does not fit: NORMAL → LOW, at the 10.5 s tick → BACKGROUND, at 11 s it
    // stays. t=20 job 3 (NORMAL) is now ahead of it and fits. t=30 job 4 (HIGH) does not
    // fit: → NORMAL, → LOW at 30.5 s, → BACKGROUND at 31 s, behind job 2; 31.5 s changes
    // nothing. t=100 job 2 starts; t=150 job 4.
    assert_eq!(starts, vec![0, 100, 20, 150]);
    assert_eq!(outcome.demotions, 2 + 3);
    assert_eq!(outcome.ticks, 2 + 3);
}

#[test]
fn a_job_that_runs_past_its_request_is_killed_there() {
    let config = SimConfig::from_toml_str(CONFIG).unwrap();
    let text = format!(
        "{}\n{}",
        line(1, 0, 100, 4, 50, 3),
        line(2, 0, 10, 4, 20, 3)
    );
    let records = swf::parse(text.as_bytes(), None).unwrap();
    let report = simulate(&records, &config, Some(Policy::Strict), "t", &mut |_, _| {});
    assert_eq!(report.killed_at_timeout, 1);
    // Job 2 waits for job 1's timeout (50 s), not its run time (100 s).
    assert_eq!(report.levels[Priority::Normal.index()].wait.max, 50.0);
}

#[test]
fn report_has_every_level_and_the_recorded_waits() {
    let config = SimConfig::from_toml_str(CONFIG).unwrap();
    let records = swf::parse(trace().as_bytes(), None).unwrap();
    let report = simulate(&records, &config, Some(Policy::Strict), "t", &mut |_, _| {});
    let text = report.to_text();
    for level in [
        "critical",
        "high",
        "normal",
        "low",
        "background",
        "all",
        "trace",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(level)),
            "{level} missing:\n{text}"
        );
    }
    let all = &report.levels[5].wait;
    assert_eq!(all.jobs, 4);
    assert_eq!(all.max, 160.0);
    assert_eq!(all.mean, (0.0 + 120.0 + 160.0 + 70.0) / 4.0);
    // 4 cores over 190 s; used 3·100 + 4·50 + 1·10 + 2·30 = 570 core·s.
    assert!((report.utilisation - 570.0 / 760.0).abs() < 1e-9);
    assert_eq!(report.recorded.as_ref().unwrap().jobs, 4);
}

#[test]
fn same_input_config_and_seed_give_identical_reports() {
    let text = CONFIG.replace("priority = \"queue\"", "priority = \"mix\"\nseed = 7");
    let config = SimConfig::from_toml_str(&text).unwrap();
    let params = SynthParams {
        jobs: 3_000,
        seed: 11,
        procs: 4,
        load: 0.9,
        workload: Workload::Hpc,
    };
    let run = |seed| {
        let records = synth::generate(&SynthParams { seed, ..params });
        let r: Report = simulate(&records, &config, Some(Policy::Demote), "s", &mut |_, _| {});
        (r.to_text(), serde_json::to_string(&r).unwrap())
    };
    let a = run(11);
    assert_eq!(a, run(11));
    assert_ne!(a, run(12));
}

#[test]
fn strict_keeps_priorities_apart_where_demote_blurs_them() {
    let text = CONFIG.replace("priority = \"queue\"", "priority = \"mix\"");
    let config = SimConfig::from_toml_str(&text).unwrap();
    let records = synth::generate(&SynthParams {
        jobs: 4_000,
        seed: 3,
        procs: 4,
        load: 0.95,
        workload: Workload::Hpc,
    });
    let strict = simulate(&records, &config, Some(Policy::Strict), "s", &mut |_, _| {});
    let demote = simulate(&records, &config, Some(Policy::Demote), "d", &mut |_, _| {});
    let gap = |r: &Report| r.levels[4].wait.mean - r.levels[0].wait.mean;
    assert!(
        gap(&strict) > 0.0,
        "{}\n{}",
        strict.to_text(),
        demote.to_text()
    );
    assert!(
        gap(&strict) > gap(&demote),
        "strict {} demote {}",
        gap(&strict),
        gap(&demote)
    );
    assert!(demote.demotions > 0);
    assert_eq!(strict.demotions, 0);
}

#[test]
fn simulate_section_is_checked() {
    let err = SimConfig::from_toml_str("[simulate]\nbogus = 1\n").unwrap_err();
    assert!(err.contains("bogus"), "{err}");
    let err =
        SimConfig::from_toml_str("[simulate]\nqueue_priority = { 1 = \"urgent\" }\n").unwrap_err();
    assert!(err.contains("urgent"), "{err}");
    let err = SimConfig::from_toml_str("[resources]\novercommit_factor = 0.5\n").unwrap_err();
    assert!(err.contains("overcommit_factor"), "{err}");
}

#[test]
fn the_shipped_trace_config_is_the_machine() {
    let config = SimConfig::from_toml_str(include_str!("../../traces/kth-sp2.toml")).unwrap();
    let spec = crate::pool::PoolSpec::from_config(&config.config.resources);
    assert_eq!(spec.total.cpu_millis, 100_000);
    assert_eq!(spec.reserve.cpu_millis, 0);
    assert_eq!(spec.usable().cpu_millis, 100_000);
    assert!(spec.cap.cpu_millis >= 100_000);
}

#[test]
fn the_timeline_holds_what_ran_and_what_waited() {
    let (_, outcome) = starts(Policy::Strict);
    let t = &outcome.timeline;
    assert_eq!((t.start_ms(), t.end_ms()), (0, 190_000));
    let points = t.points();
    assert!(points.len() <= super::timeline::MAX_INTERVALS);
    let over_time = |f: &dyn Fn(&super::timeline::Point) -> f64| -> f64 {
        let sum: f64 = points
            .iter()
            .map(|p| f(p) * (p.end_ms - p.start_ms) as f64)
            .sum();
        sum.round()
    };
    // Core·seconds: job 1 3 × 100, job 2 4 × 50, job 3 1 × 10, job 4 2 × 30.
    assert_eq!(over_time(&|p| p.cpu_millis), 570.0 * 1e6);
    // Job 4 (HIGH) waits 30 s – 100 s; job 2 waits 10 s – 130 s and job 3 20 s – 180 s (NORMAL).
    assert_eq!(over_time(&|p| p.queued[1]), 70.0 * 1e3);
    assert_eq!(over_time(&|p| p.queued[2]), 280.0 * 1e3);
    assert_eq!(over_time(&|p| p.queued[0] + p.queued[3] + p.queued[4]), 0.0);
}

fn config_with(scheduler: &str, simulate: &str) -> SimConfig {
    let text = CONFIG
        .replace(
            "[scheduler]\nscheduling_interval = \"500ms\"\n",
            &format!("[scheduler]\nscheduling_interval = \"500ms\"\n{scheduler}\n"),
        )
        .replace("[simulate]\n", &format!("[simulate]\n{simulate}\n"));
    SimConfig::from_toml_str(&text).unwrap()
}

fn replay(config: &SimConfig, trace: &str) -> (Vec<u64>, engine::Outcome) {
    let (starts, outcome, _) = run_trace(config, trace, config.config.scheduler.policy);
    (starts, outcome)
}

#[test]
fn backfill_schedule_by_hand_starts_what_does_not_delay_the_reservation() {
    let config = config_with("policy = \"backfill\"", "");
    let (starts, outcome) = replay(&config, &trace());
    // t=0 job 1 (3 cores, until 200 s at the latest). t=10 job 2 (4 cores) is reserved for
    // 200 s. t=20 job 3 (1 core, 20 s at most) ends before that and starts at once. t=30 job
    // 4 (HIGH, 2 cores) goes ahead of job 2 and takes the reservation; it starts at 100 when
    // job 1 ends; job 2 then waits for it, until 130.
    assert_eq!(starts, vec![0, 130, 20, 100]);
    assert_eq!(outcome.demotions, 0);
    assert_eq!(outcome.checks.reserved, 2);
    assert_eq!(outcome.checks.reservations_broken, 0);
    // Strict runs job 3 only at 180 s.
    assert_eq!(self::starts(Policy::Strict).0, vec![0, 130, 180, 100]);
}

#[test]
fn an_execution_past_max_wait_goes_first_and_its_wait_is_bounded() {
    // 10 s for NORMAL: job 2 (4 cores) becomes overdue at 20 s, before job 4 (HIGH) arrives
    // at 30 s, so it keeps the reservation and starts at 100 s when job 1 ends, ahead of the
    // HIGH one. Job 3 still backfills at 20 s.
    let config = config_with(
        "policy = \"backfill\"\nmax_wait = { normal = \"10s\", high = \"10m\" }",
        "",
    );
    let (starts, outcome) = replay(&config, &trace());
    assert_eq!(starts, vec![0, 100, 20, 150]);
    assert_eq!(outcome.checks.overdue, 1);
    assert_eq!(outcome.checks.bound_violations, 0);
    // It reached the head of the overdue line at the 20 s tick, with job 1 running until
    // 200 s at the latest: its bound is 200 s, and it started at 100 s.
    assert_eq!(outcome.checks.beyond_longest_timeout, 0);
}

#[test]
fn overruns_break_reservations_and_bounds_and_are_told_apart() {
    // Job 1 (2 cores) asks for 50 s and runs 100 s. Job 2 (4 cores) is reserved for 50 s.
    // Job 3 (2 cores, 20 s) backfills. Job 2 is overdue at 6 s: its bound is 50 s.
    let trace = [
        line(1, 0, 100, 2, 50, 3),
        line(2, 1, 10, 4, 20, 3),
        line(3, 2, 10, 2, 20, 3),
    ]
    .join("\n");
    let scheduler = "policy = \"backfill\"\nmax_wait = { normal = \"5s\" }";
    let (starts, outcome) = replay(&config_with(scheduler, "overruns = \"run\""), &trace);
    // Job 1 holds its cores until 100 s, past its timeout.
    assert_eq!(starts, vec![0, 100, 2]);
    let c = outcome.checks;
    assert_eq!((c.bound_violations, c.trace_overruns), (0, 1));
    assert_eq!(
        (c.reservations_broken, c.reservations_broken_by_overruns),
        (0, 1)
    );
    // Killed at its timeout, job 1 frees the pool at 50 s: nothing is missed.
    let (starts, outcome) = replay(&config_with(scheduler, ""), &trace);
    assert_eq!(starts, vec![0, 50, 2]);
    let c = outcome.checks;
    assert_eq!(
        (c.bound_violations, c.trace_overruns, c.reservations_broken),
        (0, 0, 0)
    );
    let report = simulate(
        &swf::parse(trace.as_bytes(), None).unwrap(),
        &config_with(scheduler, "overruns = \"run\""),
        None,
        "t",
        &mut |_, _| {},
    );
    assert_eq!((report.overran, report.killed_at_timeout), (1, 0));
}

#[test]
fn fair_share_serves_the_light_user_before_the_heavy_users_backlog() {
    // One core. User 1 submits four 10 s jobs at 0 s, user 2 one at 1 s.
    let text = (1..=4)
        .map(|j| line(j, 0, 10, 1, 10, 3))
        .chain(["5 1 0 10 1 -1 -1 1 10 -1 1 2 1 -1 3 -1 -1 -1".to_owned()])
        .collect::<Vec<_>>()
        .join("\n");
    let one_core = |scheduler: &str| {
        let text = CONFIG
            .replace("total_cpu_cores = 4.0", "total_cpu_cores = 1.0")
            .replace("max_cpu_per_execution = 4.0", "max_cpu_per_execution = 1.0")
            .replace(
                "[scheduler]\n",
                &format!("[scheduler]\n{scheduler}\nmax_wait = {{ normal = \"1h\" }}\n"),
            );
        SimConfig::from_toml_str(&text).unwrap()
    };
    let (fifo, _) = replay(&one_core("policy = \"backfill\""), &text);
    assert_eq!(fifo, vec![0, 10, 20, 30, 40]);
    let (fair, _) = replay(
        &one_core("policy = \"backfill\"\nfair_share_half_life = \"1h\""),
        &text,
    );
    // After user 1's first job (charged 10 cpu·s) user 2 has used less: its job goes next.
    assert_eq!(fair, vec![0, 20, 30, 40, 10]);
}

#[test]
fn the_platform_workload_is_seeded_short_bursty_and_at_five_levels() {
    let params = SynthParams {
        jobs: 20_000,
        seed: 4,
        procs: 145,
        load: 0.95,
        workload: Workload::Platform,
    };
    let jobs = synth::generate(&params);
    assert_eq!(jobs, synth::generate(&params));
    assert_ne!(jobs, synth::generate(&SynthParams { seed: 5, ..params }));
    assert_eq!(jobs.len(), 20_000);
    assert!(jobs.windows(2).all(|w| w[0].submit <= w[1].submit));
    let mut levels = [0usize; 5];
    for j in &jobs {
        levels[(j.queue - 1) as usize] += 1;
        assert!([30.0, 60.0, 120.0, 300.0, 600.0].contains(&j.req_time));
        assert!(j.runtime >= 1.0 && j.runtime <= 3.0 * j.req_time);
        assert!([1, 2, 4, 8, 16].contains(&j.procs));
    }
    assert!(levels.iter().all(|n| *n > 200), "{levels:?}");
    let heavy = jobs.iter().filter(|j| j.user < 4).count() as f64 / 20_000.0;
    assert!((0.35..0.45).contains(&heavy), "{heavy}");
    let killed = jobs.iter().filter(|j| j.runtime > j.req_time).count() as f64 / 20_000.0;
    assert!((0.02..0.04).contains(&killed), "{killed}");
    // Bursts: many submissions a tenth of a second after the previous one.
    let close = jobs
        .windows(2)
        .filter(|w| w[1].submit - w[0].submit <= 0.1 + 1e-9)
        .count();
    assert!(close > 6_000, "{close}");
}

#[test]
fn shipped_comparison_configs_differ_only_in_the_scheduler() {
    let kth = include_str!("../../traces/kth-sp2.toml");
    let platform = include_str!("../../traces/platform.toml");
    for (base, others) in [
        (
            kth,
            [
                include_str!("../../traces/kth-sp2-strict.toml"),
                include_str!("../../traces/kth-sp2-backfill.toml"),
                include_str!("../../traces/kth-sp2-fair.toml"),
            ],
        ),
        (
            platform,
            [
                include_str!("../../traces/platform-demote.toml"),
                include_str!("../../traces/platform-strict.toml"),
                include_str!("../../traces/platform-fair.toml"),
            ],
        ),
    ] {
        let base = SimConfig::from_toml_str(base).unwrap();
        for other in others {
            let mut other = SimConfig::from_toml_str(other).unwrap();
            assert_ne!(other.config.scheduler, base.config.scheduler);
            other.config.scheduler = base.config.scheduler.clone();
            assert_eq!(other, base);
        }
    }
}

mod bound_property {
    use proptest::prelude::*;

    use super::super::engine;
    use super::super::settings::SimJob;
    use crate::config::{Config, MaxWait};
    use crate::planner::Policy;
    use crate::Priority;

    fn jobs() -> impl Strategy<Value = Vec<SimJob>> {
        prop::collection::vec(
            (
                0..600u64,
                1..8u64,
                1..120u64,
                0..=110u64,
                0..5usize,
                0..4i64,
            )
                .prop_map(|(submit_s, cores, timeout_s, share, level, user)| {
                    let timeout_ms = timeout_s * 1000;
                    SimJob {
                        submit_ms: submit_s * 1000,
                        runtime_ms: (timeout_ms * share / 100).max(1),
                        timeout_ms,
                        cpu_millis: cores * 1000,
                        memory_mib: cores * 100,
                        priority: Priority::ALL[level],
                        user,
                        recorded_wait_ms: None,
                        overruns: false,
                    }
                }),
            1..80,
        )
    }

    fn config(waits: [u64; 5], reservations: usize, fair: bool, depth: usize) -> Config {
        let mut c = Config::default();
        c.resources.total_cpu_cores = 8.0;
        c.resources.total_memory_mb = 1000;
        c.resources.overcommit_factor = 1.0;
        c.resources.min_available_cpu_cores = 0.0;
        c.resources.min_available_memory_mb = 0;
        c.resources.max_cpu_per_execution = 8.0;
        c.queue.stale_timeout = std::time::Duration::from_secs(100_000);
        c.scheduler.policy = Policy::Backfill;
        c.scheduler.reservations = reservations;
        c.scheduler.backfill_depth = depth;
        let s = |v: u64| std::time::Duration::from_secs(v);
        c.scheduler.max_wait = MaxWait {
            critical: s(waits[0]),
            high: s(waits[1]),
            normal: s(waits[2]),
            low: s(waits[3]),
            background: s(waits[4]),
        };
        if fair {
            c.scheduler.fair_share_half_life = s(300);
        }
        c
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn every_wait_is_bounded_and_no_reservation_is_broken(
            jobs in jobs(),
            waits in prop::array::uniform5(1..400u64),
            reservations in 1..4usize,
            fair in any::<bool>(),
            depth in 1..30usize,
        ) {
            let config = config(waits, reservations, fair, depth);
            let outcome = engine::run(&jobs, &config, Policy::Backfill, &mut |_, _| {});
            let c = outcome.checks;
            prop_assert_eq!(c.bound_violations, 0, "{:?}", c);
            prop_assert_eq!(c.trace_overruns, 0);
            prop_assert_eq!(c.reservations_broken, 0, "{:?}", c);
            let all_started = outcome
                .jobs
                .iter()
                .all(|o| matches!(o, engine::JobOutcome::Started { .. }));
            prop_assert!(all_started);
        }

        #[test]
        fn overruns_are_the_only_misses(
            jobs in jobs(),
            overrun in prop::collection::vec(any::<bool>(), 80),
            waits in prop::array::uniform5(1..400u64),
            reservations in 1..4usize,
        ) {
            // Some jobs run up to twice their timeout and hold their resources all along.
            let jobs: Vec<SimJob> = jobs
                .into_iter()
                .zip(overrun)
                .map(|(j, o)| if o {
                    SimJob { runtime_ms: j.timeout_ms * 2, overruns: true, ..j }
                } else {
                    j
                })
                .collect();
            let config = config(waits, reservations, false, 20);
            let outcome = engine::run(&jobs, &config, Policy::Backfill, &mut |_, _| {});
            prop_assert_eq!(outcome.checks.bound_violations, 0, "{:?}", outcome.checks);
            prop_assert_eq!(outcome.checks.reservations_broken, 0, "{:?}", outcome.checks);
        }
    }
}
