use super::*;
use crate::pool::Resources;

const CORE: Resources = Resources::new(1_000, 1_024, 0);

#[test]
fn before_completions_the_drain_rate_then_the_plan() {
    let mut e: Estimator<&str, &str> = Estimator::default();
    for t in [0, 1_000, 2_000, 3_000] {
        e.dispatched(t);
    }
    let drain = e.estimate(2, 5, Some(60_000), 3_000);
    assert_eq!(drain.guess.basis(), Basis::Drain);
    assert_eq!(
        drain.median,
        Duration::from_secs(5),
        "5 ahead, one start a second"
    );
    for _ in 0..PLAN_AFTER {
        e.finished("ann", "python", 500, 1_000);
    }
    let plan = e.estimate(2, 5, Some(63_000), 3_000);
    assert_eq!(plan.guess.basis(), Basis::Plan);
    assert_eq!(plan.median, Duration::from_secs(60));
    assert!(plan.bound >= plan.median);
}

#[test]
fn a_running_execution_ends_after_its_expected_run_time_or_sooner_than_its_timeout() {
    let mut e: Estimator<&str, &str> = Estimator::default();
    e.finished("ann", "python", 250, 1_000);
    e.finished("ann", "python", 250, 1_000);
    // Started at 0 with a 100 s timeout: expected to end at 25 s.
    assert_eq!(
        e.expected_end(&"ann", &"python", Some((0, 100_000)), 10_000),
        25_000
    );
    // Still running at 60 s: a quarter of the 40 s left.
    assert_eq!(
        e.expected_end(&"ann", &"python", Some((0, 100_000)), 60_000),
        70_000
    );
    assert_eq!(
        e.expected_end(&"ann", &"python", None, 1_000),
        1_000 + UNKNOWN_END.as_millis() as u64
    );
}

#[test]
fn estimates_learn_their_error() {
    let mut e: Estimator<&str, &str> = Estimator::default();
    for _ in 0..PLAN_AFTER {
        e.finished("ann", "python", 500, 1_000);
    }
    // The forecast says 10 s; executions really wait 30 s.
    for i in 0..500u64 {
        let now = i * 100_000;
        let est = e.estimate(0, 3, Some(now + 10_000), now);
        e.started(est.guess, 30_000, now + 30_000);
    }
    let est = e.estimate(0, 3, Some(10_000), 0);
    let median = est.median.as_secs_f64();
    assert!((median - 30.0).abs() < 0.1, "median {median}");
}

#[test]
fn a_forecast_and_the_estimator_together_place_the_queue() {
    let mut e: Estimator<&str, &str> = Estimator::default();
    for _ in 0..PLAN_AFTER {
        e.finished("ann", "python", 100, 1_000);
    }
    // One core, held by an execution started at 0 with a 100 s timeout (expected 10 s).
    let end = e.expected_end(&"ann", &"python", Some((0, 100_000)), 0);
    let mut f = Forecast::new(
        0,
        Resources::default(),
        [Release {
            at: end,
            resources: CORE,
        }],
        CORE,
    );
    let ahead = f.next(CORE, e.runtime_ms(&"ann", &"python", 100_000));
    assert_eq!(ahead, Some(10_000));
    let start = f.next(CORE, e.runtime_ms(&"ann", &"python", 100_000));
    assert_eq!(start, Some(20_000));
    assert_eq!(e.estimate(2, 1, start, 0).median, Duration::from_secs(20));
}
