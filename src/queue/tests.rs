use super::*;
use proptest::prelude::*;

use Priority::*;

fn queue(max: usize, per_user: usize) -> ExecutionQueue<()> {
    ExecutionQueue::new(QueueLimits {
        max_queue_size: max,
        max_executions_per_user: per_user,
        stale_timeout: Duration::from_secs(60),
        requeue_demotes: true,
        dedup_capacity: 1000,
    })
}

fn add(q: &mut ExecutionQueue<()>, id: &str, user: &str, p: Priority, now: Millis) -> usize {
    q.enqueue(id.into(), user.into(), p, (), now).unwrap()
}

fn drain(q: &mut ExecutionQueue<()>) -> Vec<String> {
    std::iter::from_fn(|| {
        q.dequeue().map(|e| {
            q.settle(e.priority, e.arrival);
            e.execution_id
        })
    })
    .collect()
}

#[test]
fn dispatches_by_priority_then_arrival() {
    let mut q = queue(100, 100);
    add(&mut q, "n1", "u", Normal, 0);
    add(&mut q, "b1", "u", Background, 1);
    add(&mut q, "c1", "u", Critical, 2);
    add(&mut q, "n2", "u", Normal, 3);
    add(&mut q, "h1", "u", High, 4);
    add(&mut q, "c2", "u", Critical, 5);
    add(&mut q, "l1", "u", Low, 6);
    assert_eq!(drain(&mut q), ["c1", "c2", "h1", "n1", "n2", "l1", "b1"]);
    assert!(q.is_empty());
}

#[test]
fn enqueue_reports_the_true_rank() {
    let mut q = queue(100, 100);
    assert_eq!(add(&mut q, "n1", "u", Normal, 0), 0);
    assert_eq!(add(&mut q, "n2", "u", Normal, 0), 1);
    assert_eq!(add(&mut q, "c1", "u", Critical, 0), 0);
    assert_eq!(add(&mut q, "l1", "u", Low, 0), 3);
    assert_eq!(add(&mut q, "h1", "u", High, 0), 1);
    assert_eq!(q.position("c1"), Some(0));
    assert_eq!(q.position("h1"), Some(1));
    assert_eq!(q.position("n1"), Some(2));
    assert_eq!(q.position("n2"), Some(3));
    assert_eq!(q.position("l1"), Some(4));
    assert_eq!(q.position("nope"), None);
}

#[test]
fn queue_full_and_user_limit_are_typed_rejections() {
    let mut q = queue(3, 2);
    add(&mut q, "a1", "alice", Normal, 0);
    add(&mut q, "a2", "alice", Normal, 0);
    assert_eq!(
        q.enqueue("a3".into(), "alice".into(), Normal, (), 0),
        Err(Rejection::UserLimit {
            user: "alice".into(),
            max: 2
        })
    );
    add(&mut q, "b1", "bob", Normal, 0);
    assert_eq!(
        q.enqueue("b2".into(), "bob".into(), Normal, (), 0),
        Err(Rejection::QueueFull { max: 3 })
    );
    assert_eq!(q.len(), 3);
    assert_eq!(q.user_count("alice"), 2);
    // Freeing a slot admits the user again.
    q.cancel("a1").queued().unwrap();
    add(&mut q, "a4", "alice", Normal, 0);
    assert!(Rejection::QueueFull { max: 3 }
        .to_string()
        .contains("queue is full"));
}

#[test]
fn duplicates_are_detected_while_queued_and_after_leaving() {
    let mut q = queue(10, 10);
    add(&mut q, "x", "u", Normal, 0);
    assert_eq!(
        q.enqueue("x".into(), "u".into(), High, (), 0),
        Err(Rejection::Duplicate {
            execution_id: "x".into()
        })
    );
    assert_eq!(q.len(), 1);
    q.dequeue().unwrap();
    assert!(q.is_duplicate("x"));
    assert!(matches!(
        q.enqueue("x".into(), "u".into(), Normal, (), 0),
        Err(Rejection::Duplicate { .. })
    ));
    // Rejected requests are remembered too, so a redelivery is silent.
    let mut q = queue(0, 10);
    assert!(matches!(
        q.enqueue("y".into(), "u".into(), Normal, (), 0),
        Err(Rejection::QueueFull { .. })
    ));
    assert!(matches!(
        q.enqueue("y".into(), "u".into(), Normal, (), 0),
        Err(Rejection::Duplicate { .. })
    ));
}

#[test]
fn dedup_memory_is_bounded_and_forgets_the_oldest() {
    let mut q: ExecutionQueue<()> = ExecutionQueue::new(QueueLimits {
        dedup_capacity: 3,
        ..QueueLimits::default()
    });
    for id in ["a", "b", "c", "d"] {
        q.remember_finished(id);
    }
    assert!(!q.is_duplicate("a"));
    assert!(q.is_duplicate("b") && q.is_duplicate("c") && q.is_duplicate("d"));
    assert_eq!(q.recent.len(), 3);
    assert_eq!(q.recent_order.len(), 3);
    let forgotten: Vec<String> = q.take_forgotten().iter().map(|id| id.to_string()).collect();
    assert_eq!(forgotten, ["a"]);
    assert!(q.take_forgotten().is_empty());
}

#[test]
fn requeue_demotes_one_level_and_keeps_arrival() {
    let mut q = queue(10, 10);
    add(&mut q, "h1", "u", High, 0);
    add(&mut q, "n1", "u", Normal, 1);
    add(&mut q, "n2", "u", Normal, 2);
    let head = q.dequeue().unwrap();
    assert_eq!(head.execution_id, "h1");
    // h1 arrived first, so after demotion to NORMAL it goes ahead of n1 and n2.
    assert_eq!(q.requeue(head), Some(0));
    let e = q.get("h1").unwrap();
    assert_eq!((e.priority, e.requeues, e.enqueued_at), (Normal, 1, 0));
    assert_eq!(drain(&mut q), ["h1", "n1", "n2"]);
}

#[test]
fn requeue_never_goes_below_background_and_can_keep_the_level() {
    let mut q = queue(10, 10);
    add(&mut q, "b", "u", Background, 0);
    let e = q.dequeue().unwrap();
    q.requeue(e);
    assert_eq!(q.get("b").unwrap().priority, Background);

    let mut q: ExecutionQueue<()> = ExecutionQueue::new(QueueLimits {
        requeue_demotes: false,
        ..QueueLimits::default()
    });
    q.enqueue("c".into(), "u".into(), Critical, (), 0).unwrap();
    let e = q.dequeue().unwrap();
    q.requeue(e);
    assert_eq!(q.get("c").unwrap().priority, Critical);
}

#[test]
fn requeue_keeps_the_counts_and_never_queues_a_twin() {
    let mut q = queue(1, 1);
    add(&mut q, "a", "u", Normal, 0);
    let a = q.dequeue().unwrap();
    // The slot "a" holds while leased is still its own: it goes back despite the full queue.
    assert_eq!(q.requeue(a.clone()), Some(0));
    assert_eq!((q.len(), q.leased(), q.user_count("u")), (1, 0, 1));
    assert_eq!(q.requeue(a), None);
    assert_eq!((q.len(), q.user_count("u")), (1, 1));
}

#[test]
fn cancel_removes_and_fixes_positions_and_counts() {
    let mut q = queue(10, 10);
    add(&mut q, "a", "alice", Normal, 0);
    add(&mut q, "b", "bob", Normal, 0);
    add(&mut q, "c", "alice", Normal, 0);
    let removed = q.cancel("b").queued().unwrap();
    assert_eq!(removed.execution_id, "b");
    assert_eq!(q.cancel("b"), Cancelled::NotFound);
    assert_eq!(q.position("c"), Some(1));
    assert_eq!(q.user_count("bob"), 0);
    assert_eq!(q.user_count("alice"), 2);
    assert_eq!(q.stats(0, 5).depth, [0, 0, 2, 0, 0]);
}

#[test]
fn expire_returns_entries_older_than_the_timeout_oldest_first() {
    let mut q = queue(10, 10);
    add(&mut q, "old1", "u", Background, 0);
    add(&mut q, "old2", "u", Critical, 1_000);
    add(&mut q, "new", "u", Normal, 50_000);
    // Exactly at the timeout nothing is stale yet.
    assert!(q.expire(60_000).is_empty());
    let expired: Vec<_> = q
        .expire(61_001)
        .into_iter()
        .map(|e| e.execution_id)
        .collect();
    assert_eq!(expired, ["old1", "old2"]);
    assert_eq!(q.len(), 1);
    assert_eq!(q.user_count("u"), 1);
    assert!(q.is_duplicate("old1"));
    assert!(q.expire(61_001).is_empty());
}

#[test]
fn a_requeued_entry_still_expires_by_its_first_arrival() {
    let mut q = queue(10, 10);
    add(&mut q, "a", "u", Normal, 0);
    let a = q.dequeue().unwrap();
    q.requeue(a);
    assert_eq!(q.expire(60_001).len(), 1);
}

#[test]
fn stats_report_depth_top_users_and_oldest_wait() {
    let mut q = queue(100, 100);
    assert_eq!(q.stats(5, 3), QueueStats::default());
    add(&mut q, "a1", "alice", Critical, 1_000);
    add(&mut q, "a2", "alice", Low, 2_000);
    add(&mut q, "b1", "bob", Low, 3_000);
    add(&mut q, "c1", "carol", Normal, 4_000);
    let s = q.stats(11_000, 2);
    assert_eq!(s.depth, [1, 0, 1, 2, 0]);
    assert_eq!(s.total, 4);
    assert_eq!(s.oldest_wait, Some(Duration::from_secs(10)));
    assert_eq!(s.top_users, [("alice".into(), 2), ("bob".into(), 1)]);
}

#[test]
fn restore_keeps_arrival_and_numbers_new_arrivals_after_it() {
    let mut q = queue(10, 10);
    let restored = QueuedExecution {
        execution_id: "r".into(),
        user_id: "u".into(),
        priority: Normal,
        arrival: 41,
        enqueued_at: 7,
        requeues: 2,
        payload: (),
    };
    assert_eq!(q.restore(restored.clone()), Some(0));
    assert_eq!(q.restore(restored), None);
    add(&mut q, "n", "u", Normal, 8);
    assert_eq!(q.get("n").unwrap().arrival, 42);
    assert_eq!(drain(&mut q), ["r", "n"]);
}

#[test]
fn dequeued_executions_count_in_positions_until_settled_or_requeued() {
    let mut q = queue(10, 10);
    add(&mut q, "c", "u", Critical, 0);
    let head = q.dequeue().unwrap();
    assert_eq!(q.leased(), 1);
    // "c" is being scheduled: a later NORMAL arrival is behind it.
    assert_eq!(add(&mut q, "n1", "u", Normal, 1), 1);
    // A requeue puts it back (one level lower, still ahead of NORMAL) and lifts the lease.
    assert_eq!(q.requeue(head), Some(0));
    assert_eq!(q.leased(), 0);
    assert_eq!(q.position("n1"), Some(1));
    let head = q.dequeue().unwrap();
    q.settle(head.priority, head.arrival);
    assert_eq!(q.leased(), 0);
    assert_eq!(q.position("n1"), Some(0));
}

#[test]
fn leased_executions_count_against_the_size_and_user_limits() {
    let mut q = queue(2, 1);
    add(&mut q, "a", "alice", Normal, 0);
    let a = q.dequeue().unwrap();
    assert!(matches!(
        q.enqueue("a2".into(), "alice".into(), Normal, (), 1),
        Err(Rejection::UserLimit { .. })
    ));
    add(&mut q, "b", "bob", Normal, 1);
    assert!(matches!(
        q.enqueue("c".into(), "carol".into(), Normal, (), 1),
        Err(Rejection::QueueFull { .. })
    ));
    q.settle(a.priority, a.arrival);
    assert_eq!(q.user_count("alice"), 0);
    add(&mut q, "a3", "alice", Normal, 2);
}

#[test]
fn cancelling_an_execution_being_scheduled_stops_its_command_and_its_requeue() {
    let mut q = queue(10, 10);
    add(&mut q, "a", "u", Normal, 0);
    add(&mut q, "b", "u", Normal, 0);
    let a = q.dequeue().unwrap();
    assert_eq!(q.cancel("a"), Cancelled::Leased);
    assert!(
        !q.settle(a.priority, a.arrival),
        "a cancelled lease must not be commanded"
    );
    assert_eq!(q.user_count("u"), 1);
    let b = q.dequeue().unwrap();
    assert_eq!(q.cancel("b"), Cancelled::Leased);
    assert_eq!(
        q.requeue(b),
        None,
        "a cancelled lease is dropped, not requeued"
    );
    assert!(q.is_empty());
    assert_eq!((q.leased(), q.user_count("u")), (0, 0));
    assert_eq!(q.cancel("b"), Cancelled::NotFound);
    // Settling an uncancelled lease lets the command go.
    add(&mut q, "c", "u", Normal, 0);
    let c = q.dequeue().unwrap();
    assert!(q.settle(c.priority, c.arrival));
}

#[test]
fn put_back_keeps_the_level_and_counts_no_requeue() {
    let mut q = queue(10, 10);
    add(&mut q, "h", "u", High, 0);
    add(&mut q, "n", "u", Normal, 1);
    let h = q.dequeue().unwrap();
    assert_eq!(q.put_back(h), Some(0));
    let e = q.get("h").unwrap();
    assert_eq!((e.priority, e.requeues), (High, 0));
    assert_eq!(q.leased(), 0);
    let h = q.dequeue().unwrap();
    assert_eq!(q.cancel("h"), Cancelled::Leased);
    assert_eq!(q.put_back(h), None);
}

#[derive(Debug, Clone)]
enum Op {
    Enqueue { user: u8, priority: usize },
    Dequeue,
    DequeueAndRequeue,
    Cancel(usize),
    Dispatch(usize),
    Expire(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0usize..5).prop_map(|(user, priority)| Op::Enqueue { user, priority }),
        2 => Just(Op::Dequeue),
        2 => Just(Op::DequeueAndRequeue),
        1 => (0usize..64).prop_map(Op::Cancel),
        1 => (0usize..64).prop_map(Op::Dispatch),
        1 => (0u64..50).prop_map(Op::Expire),
    ]
}

proptest! {
    /// Against a model: dispatch order is (priority, arrival), positions are true ranks, and
    /// per-user counts always equal the entries present.
    #[test]
    fn queue_matches_its_model(ops in proptest::collection::vec(op(), 1..200), demotes in any::<bool>()) {
        let mut q: ExecutionQueue<u32> = ExecutionQueue::new(QueueLimits {
            max_queue_size: 40,
            max_executions_per_user: 15,
            stale_timeout: Duration::from_millis(100),
            requeue_demotes: demotes,
            dedup_capacity: 10_000,
        });
        // Model: (priority index, arrival, id, user, enqueued_at).
        let mut model: Vec<(usize, u64, String, String, u64)> = Vec::new();
        let mut now = 0u64;
        let mut next_id = 0u32;
        let mut arrival = 0u64;
        for op in ops {
            now += 1;
            match op {
                Op::Enqueue { user, priority } => {
                    let id = format!("e{next_id}");
                    let user = format!("u{user}");
                    let result = q.enqueue(id.clone(), user.clone(), Priority::ALL[priority], next_id, now);
                    next_id += 1;
                    let user_count = model.iter().filter(|m| m.3 == user).count();
                    if model.len() >= 40 {
                        prop_assert_eq!(result, Err(Rejection::QueueFull { max: 40 }));
                    } else if user_count >= 15 {
                        prop_assert!(matches!(result, Err(Rejection::UserLimit { .. })), "expected user limit");
                    } else {
                        model.push((priority, arrival, id.clone(), user, now));
                        arrival += 1;
                        model.sort();
                        let rank = model.iter().position(|m| m.2 == id).unwrap();
                        prop_assert_eq!(result, Ok(rank));
                    }
                }
                Op::Dequeue => {
                    let got = q.dequeue().map(|e| {
                        q.settle(e.priority, e.arrival);
                        e.execution_id
                    });
                    let want = if model.is_empty() { None } else { Some(model.remove(0).2) };
                    prop_assert_eq!(got, want);
                }
                Op::DequeueAndRequeue => {
                    if let Some(e) = q.dequeue() {
                        let mut m = model.remove(0);
                        prop_assert_eq!(&e.execution_id, &m.2);
                        if demotes {
                            m.0 = (m.0 + 1).min(4);
                        }
                        let pos = q.requeue(e);
                        model.push(m.clone());
                        model.sort();
                        prop_assert_eq!(pos, model.iter().position(|x| x.2 == m.2));
                    } else {
                        prop_assert!(model.is_empty());
                    }
                }
                Op::Cancel(i) => {
                    if !model.is_empty() {
                        let m = model.remove(i % model.len());
                        prop_assert_eq!(q.cancel(&m.2).queued().map(|e| e.execution_id), Some(m.2));
                    }
                }
                Op::Dispatch(i) => {
                    if !model.is_empty() {
                        let m = model.remove(i % model.len());
                        prop_assert_eq!(q.dispatch(&m.2).map(|e| e.execution_id), Some(m.2.clone()));
                        prop_assert!(q.dispatch(&m.2).is_none());
                        prop_assert!(q.is_duplicate(&m.2), "a dispatched id is remembered");
                    }
                }
                Op::Expire(advance) => {
                    now += advance;
                    let mut expired: Vec<String> = q.expire(now).into_iter().map(|e| e.execution_id).collect();
                    let mut want: Vec<String> = model.iter().filter(|m| now - m.4 > 100).map(|m| m.2.clone()).collect();
                    model.retain(|m| now - m.4 <= 100);
                    expired.sort();
                    want.sort();
                    prop_assert_eq!(expired, want);
                }
            }
            prop_assert_eq!(q.len(), model.len());
            let mut counts: rustc_hash::FxHashMap<String, usize> = Default::default();
            for m in &model {
                *counts.entry(m.3.clone()).or_default() += 1;
            }
            prop_assert_eq!(&q.per_user, &counts);
            for (rank, m) in model.iter().enumerate() {
                prop_assert_eq!(q.position(&m.2), Some(rank));
            }
            let mut depth = [0usize; LEVELS];
            for m in &model {
                depth[m.0] += 1;
            }
            prop_assert_eq!(q.stats(now, 0).depth, depth);
            let order: Vec<(Priority, u64)> = model.iter().map(|m| (Priority::ALL[m.0], m.1)).collect();
            prop_assert_eq!(q.order().collect::<Vec<_>>(), order);
        }
    }
}

#[test]
fn the_most_overdue_is_the_earliest_deadline_over_levels() {
    let mut q = queue(100, 100);
    add(&mut q, "b1", "u", Background, 0);
    add(&mut q, "n1", "u", Normal, 100);
    add(&mut q, "n2", "u", Normal, 150);
    add(&mut q, "c1", "u", Critical, 900);
    // Background may wait 1000 ms, normal 500 ms, critical 50 ms.
    let max_wait = |level: Priority| match level {
        Background => 1000,
        Normal => 500,
        _ => 50,
    };
    let arrival = |q: &ExecutionQueue<()>, id: &str| q.get(id).map(|e| e.arrival);
    assert_eq!(
        q.most_overdue(599, max_wait),
        None,
        "nothing has waited its max yet"
    );
    // n1's deadline is 600, c1's 950, b1's 1000.
    assert_eq!(q.most_overdue(600, max_wait), arrival(&q, "n1"));
    assert_eq!(q.most_overdue(2000, max_wait), arrival(&q, "n1"));
    let n1 = q.most_overdue(2000, max_wait).unwrap();
    let leased = q.dequeue_at(n1).expect("n1 is queued");
    assert_eq!(leased.execution_id, "n1");
    assert_eq!(
        q.position("b1"),
        Some(3),
        "a lease keeps its place in positions"
    );
    // n2's deadline is 650.
    assert_eq!(q.most_overdue(2000, max_wait), arrival(&q, "n2"));
    assert!(q.settle(leased.priority, leased.arrival));
    assert_eq!(q.position("b1"), Some(2));
}

proptest! {
    /// The entries in dispatch order are the queued ones sorted by (level, arrival), whatever
    /// is being scheduled meanwhile, and only leased ones count as leased.
    #[test]
    fn dispatch_order_is_level_then_arrival(
        levels in proptest::collection::vec(0usize..5, 0..60),
        leased in 0usize..8,
    ) {
        let mut q: ExecutionQueue<u32> = ExecutionQueue::new(QueueLimits::default());
        for (i, level) in levels.iter().enumerate() {
            q.enqueue(format!("e{i}"), "u".into(), Priority::ALL[*level], 0, 0).unwrap();
        }
        let taken: Vec<String> = (0..leased).filter_map(|_| q.dequeue()).map(|e| e.execution_id).collect();
        let mut want: Vec<(usize, usize)> = levels.iter().copied().zip(0..).collect();
        want.sort();
        let want: Vec<String> = want.into_iter().skip(taken.len()).map(|(_, i)| format!("e{i}")).collect();
        let got: Vec<String> = q.in_dispatch_order().map(|e| e.execution_id.clone()).collect();
        prop_assert_eq!(&got, &want);
        for (i, id) in got.iter().enumerate() {
            prop_assert_eq!(q.position(id), Some(i + taken.len()));
            prop_assert!(!q.is_leased(id));
        }
        for id in &taken {
            prop_assert!(q.is_leased(id));
        }
    }
}
