use super::engine::{self, JobOutcome};
use super::report::Report;
use super::settings::SimConfig;
use super::swf::{self, SwfError};
use super::synth::{self, SynthParams};
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

fn starts(policy: Policy) -> (Vec<u64>, engine::Outcome) {
    let config = SimConfig::from_toml_str(CONFIG).unwrap();
    let records = swf::parse(trace().as_bytes(), None).unwrap();
    let (jobs, skipped) = map_all(&records, &config);
    assert_eq!(skipped, 0);
    let outcome = engine::run(&jobs, &config.config, policy, &mut |_, _| {});
    let starts = outcome
        .jobs
        .iter()
        .map(|o| match o {
            JobOutcome::Started { start, .. } => *start / 1000,
            other => panic!("not started: {other:?}"),
        })
        .collect();
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
