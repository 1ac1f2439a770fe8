use std::time::Duration;

use proptest::prelude::*;

use super::view::{ExecutionAnswer, Level};
use super::*;
use crate::queue::QueueLimits;
use crate::reason::Resource;
use Priority::*;

/// A queued request of the tests: the level it asked and what it reserves.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ask(Priority, Resources);

impl Waiting for Ask {
    fn asked(&self) -> Priority {
        self.0
    }
    fn resources(&self) -> Resources {
        self.1
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(60)
    }
}

const HALF: Resources = Resources::new(500, 256, 0);

fn queue(entries: &[(&str, Priority, Resources)]) -> ExecutionQueue<Ask> {
    let mut q = ExecutionQueue::new(QueueLimits::default());
    for (i, (id, level, wants)) in entries.iter().enumerate() {
        q.enqueue(
            (*id).into(),
            format!("u{i}"),
            *level,
            Ask(*level, *wants),
            1_000 * i as u64,
        )
        .unwrap();
    }
    q
}

#[test]
fn the_listing_is_in_dispatch_order_with_true_positions_levels_and_reasons() {
    let mut q = queue(&[
        ("n1", Normal, HALF),
        ("h1", High, Resources::new(2_000, 256, 0)),
        ("n2", Normal, HALF),
        ("c1", Critical, HALF),
        ("b1", Background, HALF),
    ]);
    // c1 is being scheduled: it counts in positions, not in the listing.
    let c1 = q.dequeue().unwrap();
    assert_eq!(c1.execution_id, "c1");
    let free = Resources::new(1_000, 4_096, 0);
    let listing = listing(&q, 10, free, 10_000, &NoEstimate, &Judge::Walk);
    assert_eq!(listing.queued, 4);
    assert_eq!(listing.being_scheduled, 1);
    assert_eq!(listing.depth, [0, 1, 2, 0, 1]);
    let ids: Vec<&str> = listing
        .executions
        .iter()
        .map(|e| e.execution_id.as_str())
        .collect();
    assert_eq!(ids, ["h1", "n1", "n2", "b1"]);
    let positions: Vec<usize> = listing.executions.iter().map(|e| e.position).collect();
    assert_eq!(positions, [1, 2, 3, 4], "c1, being scheduled, is ahead");
    let reasons: Vec<&WaitReason> = listing.executions.iter().map(|e| &e.reason).collect();
    assert_eq!(
        reasons,
        [
            &WaitReason::PoolFull {
                resource: Resource::Cpu,
                short_by: 1_000
            },
            &WaitReason::BehindHigherPriority,
            &WaitReason::BehindHigherPriority,
            &WaitReason::BehindHigherPriority,
        ]
    );
    let n1 = &listing.executions[1];
    assert_eq!(
        (n1.level_asked, n1.level_now),
        (Level::Normal, Level::Normal)
    );
    assert_eq!(n1.user_id, "u0");
    assert_eq!(n1.waited_seconds, 10.0);
    assert_eq!(n1.queued_at, "1970-01-01T00:00:00.000Z");
    assert_eq!(n1.estimated_wait_seconds, None);
    assert_eq!(n1.resources.cpu_millis, 500);
}

#[test]
fn a_demoted_execution_shows_the_level_it_asked_and_the_one_it_is_at() {
    let mut q: ExecutionQueue<Ask> = ExecutionQueue::new(QueueLimits::default());
    q.enqueue("a".into(), "u".into(), High, Ask(High, HALF), 0)
        .unwrap();
    let a = q.dequeue().unwrap();
    q.requeue(a);
    let a = locate(&q, "a", Resources::default(), 0, &NoEstimate, &Judge::Walk).unwrap();
    assert_eq!((a.level_asked, a.level_now), (Level::High, Level::Normal));
    assert_eq!(a.requeues, 1);
    assert_eq!(
        a.reason,
        WaitReason::PoolFull {
            resource: Resource::Cpu,
            short_by: 500
        }
    );
    assert_eq!(
        locate(&q, "b", Resources::default(), 0, &NoEstimate, &Judge::Walk),
        None
    );
}

#[test]
fn the_estimate_is_whatever_the_estimator_says() {
    struct ByPosition;
    impl WaitEstimate<Ask> for ByPosition {
        fn remaining(
            &self,
            _: &QueuedExecution<Ask>,
            position: usize,
            _: Millis,
        ) -> Option<Remaining> {
            let median = Duration::from_millis(1_500 * position as u64);
            Some(Remaining {
                median,
                bound: 2 * median,
            })
        }
    }
    let q = queue(&[("a", Normal, HALF), ("b", Normal, HALF)]);
    let listing = listing(&q, 10, Resources::default(), 0, &ByPosition, &Judge::Walk);
    let estimates: Vec<Option<f64>> = listing
        .executions
        .iter()
        .map(|e| e.estimated_wait_seconds)
        .collect();
    assert_eq!(estimates, [Some(0.0), Some(1.5)]);
    let bounds: Vec<Option<f64>> = listing
        .executions
        .iter()
        .map(|e| e.estimated_wait_bound_seconds)
        .collect();
    assert_eq!(bounds, [Some(0.0), Some(3.0)]);
}

#[test]
fn a_queued_answer_carries_its_state_beside_the_fields_of_the_listing() {
    let q = queue(&[("a", Low, HALF)]);
    let a = locate(
        &q,
        "a",
        Resources::new(500, 256, 0),
        0,
        &NoEstimate,
        &Judge::Walk,
    )
    .unwrap();
    assert_eq!(a.reason, WaitReason::Starting);
    let json = serde_json::to_value(ExecutionAnswer::Queued(a)).unwrap();
    assert_eq!(json["state"], "queued");
    assert_eq!(json["level_now"], "low");
    assert_eq!(json["reason"]["kind"], "starting");
    assert!(json["estimated_wait_seconds"].is_null());
}

fn entries() -> impl Strategy<Value = Vec<(usize, u64)>> {
    proptest::collection::vec((0usize..5, 0u64..1_500), 0..30)
}

proptest! {
    /// Looking one execution up says what the listing says of it, wherever it is.
    #[test]
    fn locate_agrees_with_the_listing(entries in entries(), free in 0u64..4_000, taken in 0usize..3) {
        let mut q: ExecutionQueue<Ask> = ExecutionQueue::new(QueueLimits::default());
        for (i, (level, cpu)) in entries.iter().enumerate() {
            let wants = Resources::new(*cpu, 1, 0);
            q.enqueue(format!("e{i}"), "u".into(), Priority::ALL[*level], Ask(Priority::ALL[*level], wants), 0).unwrap();
        }
        for _ in 0..taken {
            q.dequeue();
        }
        let free = Resources::new(free, 100, 0);
        let listing = listing(&q, usize::MAX, free, 5, &NoEstimate, &Judge::Walk);
        prop_assert_eq!(listing.executions.len(), q.len());
        for (i, listed) in listing.executions.iter().enumerate() {
            prop_assert_eq!(listed.position, i + q.leased());
            let found = locate(&q, &listed.execution_id, free, 5, &NoEstimate, &Judge::Walk);
            prop_assert_eq!(found.as_ref(), Some(listed));
        }
    }
}

#[test]
fn every_answer_has_a_schema_of_its_own() {
    let files: std::collections::BTreeSet<&str> =
        Answer::ALL.iter().map(|a| a.schema_file()).collect();
    assert_eq!(files.len(), Answer::ALL.len());
    for answer in Answer::ALL {
        let schema = serde_json::to_value(answer.json_schema()).unwrap();
        assert!(schema["title"].is_string(), "{answer:?}: {schema}");
    }
}

/// A request of the backfill tests: its level, what it reserves, its timeout.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Timed(Priority, Resources, Duration);

impl Waiting for Timed {
    fn asked(&self) -> Priority {
        self.0
    }
    fn resources(&self) -> Resources {
        self.1
    }
    fn timeout(&self) -> Duration {
        self.2
    }
}

#[test]
fn under_backfill_what_would_delay_the_reservation_is_reserved_for_it_and_the_rest_starts() {
    // One core: half held until 60 s, half free.
    let mut q = ExecutionQueue::new(QueueLimits::default());
    let core = Resources::new(1_000, 256, 0);
    for (i, (id, wants, timeout)) in [
        ("a", core, 60),
        ("b", HALF, 120),
        ("c", HALF, 30),
        ("d", core, 60),
    ]
    .into_iter()
    .enumerate()
    {
        let ask = Timed(Normal, wants, Duration::from_secs(timeout));
        q.enqueue(id.into(), format!("u{i}"), Normal, ask, i as u64)
            .unwrap();
    }
    let judge = Judge::Plan {
        rules: Rules::from(crate::planner::Policy::Backfill),
        running: vec![Running {
            resources: HALF,
            ends_by: 60_000,
        }],
    };
    let free = HALF;
    let listing = listing(&q, 10, free, 0, &NoEstimate, &judge);
    let reasons: Vec<WaitReason> = listing.executions.into_iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        [
            WaitReason::PoolFull {
                resource: Resource::Cpu,
                short_by: 500
            },
            WaitReason::ReservedFor {
                execution_id: "a".into()
            },
            WaitReason::Starting,
            WaitReason::BehindEarlierArrivals,
        ]
    );
    let b = locate(&q, "b", free, 0, &NoEstimate, &judge).unwrap();
    assert_eq!(
        b.reason,
        WaitReason::ReservedFor {
            execution_id: "a".into()
        }
    );
    // Walking instead, everything behind the first that does not fit waits behind it.
    let walked = locate(&q, "c", free, 0, &NoEstimate, &Judge::Walk).unwrap();
    assert_eq!(walked.reason, WaitReason::BehindEarlierArrivals);
    assert_eq!(all_reasons(&q, free, 0, &judge).len(), 4);
}
