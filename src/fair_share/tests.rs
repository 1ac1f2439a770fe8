use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::Priority;

const HOUR: u64 = 3_600_000;

#[test]
fn usage_halves_every_half_life_and_charges_add() {
    let mut l = UsageLedger::new(Duration::from_secs(3600));
    l.charge(&"a", 100.0, 0);
    assert_eq!(l.usage(&"a", 0), 100.0);
    assert!((l.usage(&"a", HOUR) - 50.0).abs() < 1e-9);
    assert!((l.usage(&"a", 3 * HOUR) - 12.5).abs() < 1e-9);
    l.charge(&"a", 50.0, HOUR);
    assert!((l.usage(&"a", HOUR) - 100.0).abs() < 1e-9);
    assert_eq!(l.usage(&"b", HOUR), 0.0);
    assert_eq!(l.rank(&"b"), f64::NEG_INFINITY);
    assert_eq!(l.charged(), 150.0);
    assert!((l.decayed(HOUR) - 50.0).abs() < 1e-9);
    // Ignored: nothing can be refunded or poisoned.
    l.charge(&"a", -5.0, HOUR);
    l.charge(&"a", f64::NAN, HOUR);
    assert_eq!(l.charged(), 150.0);
}

#[test]
fn forgetting_keeps_the_books() {
    let mut l = UsageLedger::new(Duration::from_secs(60));
    l.charge(&1, 10.0, 0);
    l.charge(&2, 1_000.0, 0);
    l.forget(60_000, 6.0);
    assert_eq!(l.users(), 1);
    assert_eq!(l.usage(&1, 60_000), 0.0);
    assert!((l.total(60_000) + l.decayed(60_000) - 1_010.0).abs() < 1e-9);
}

/// Every execution costs 10 cpu·s here.
fn ten(_: Priority, _: u64) -> f64 {
    10.0
}

#[test]
fn a_light_user_goes_ahead_of_a_heavy_one_and_each_stays_fifo() {
    let mut o = FairOrder::new(Duration::from_secs(3600));
    o.charge(&"heavy", 25.0, 0);
    for arrival in [1, 2, 3] {
        o.insert(Priority::Normal, &"heavy", arrival);
    }
    o.insert(Priority::Normal, &"light", 4);
    o.insert(Priority::Normal, &"light", 5);
    o.insert(Priority::High, &"heavy", 6);
    let order: Vec<(Priority, u64)> = o.iter(0, ten).collect();
    // HIGH first whatever the usage. Within NORMAL, light (usage 0, then 10 with its first
    // counted) goes before heavy (25), then heavy's three in order.
    assert_eq!(
        order,
        [
            (Priority::High, 6),
            (Priority::Normal, 4),
            (Priority::Normal, 5),
            (Priority::Normal, 1),
            (Priority::Normal, 2),
            (Priority::Normal, 3),
        ]
    );
    // Charging light past heavy moves light's executions behind heavy's first ones.
    o.charge(&"light", 40.0, 0);
    let normal: Vec<u64> = o.iter(0, ten).skip(1).map(|(_, a)| a).collect();
    // heavy at 25 takes 1 (now 35) and 2 (45); light at 40 takes 4 (50); heavy 3; light 5.
    assert_eq!(normal, [1, 2, 4, 3, 5]);
    // Decay alone never reorders.
    let later: Vec<u64> = o
        .iter(10 * HOUR, |_, _| 0.0)
        .skip(1)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(later, [1, 2, 3, 4, 5]);
    assert!(o.remove(Priority::Normal, &"heavy", 1));
    assert!(!o.remove(Priority::Normal, &"heavy", 1));
    assert_eq!(o.len(), 5);
}

#[derive(Debug, Clone)]
enum Op {
    Charge(u8, u32, u64),
    Insert(u8, usize, u64),
    Remove(u8, usize, u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            (0..6u8, 0..5_000u32, 0..HOUR).prop_map(|(u, a, dt)| Op::Charge(u, a, dt)),
            (0..6u8, 0..5usize, 0..40u64).prop_map(|(u, l, a)| Op::Insert(u, l, a)),
            (0..6u8, 0..5usize, 0..40u64).prop_map(|(u, l, a)| Op::Remove(u, l, a)),
        ],
        0..120,
    )
}

proptest! {
    #[test]
    fn charged_usage_is_conserved(
        charges in prop::collection::vec((0..8u8, 0.0..1e6f64, 0..10 * HOUR), 0..100),
        half_life_s in 1..100_000u64,
        forget_below in prop::option::of(0.0..10.0f64),
    ) {
        let mut l = UsageLedger::new(Duration::from_secs(half_life_s));
        let mut now = 0;
        let mut sum = 0.0;
        for (user, amount, dt) in charges {
            now += dt;
            l.charge(&user, amount, now);
            sum += amount;
            prop_assert!((l.charged() - sum).abs() <= 1e-9 * sum.max(1.0));
        }
        if let Some(below) = forget_below {
            l.forget(now, below);
        }
        for later in [now, now + HOUR, now + 100 * HOUR] {
            let books = l.total(later) + l.decayed(later);
            prop_assert!(
                (books - sum).abs() <= 1e-9 * sum.max(1.0),
                "charged {} but usage {} + decayed {}", sum, l.total(later), l.decayed(later)
            );
            prop_assert!(l.total(later) <= l.total(now) + 1e-9 * sum.max(1.0));
        }
    }

    #[test]
    fn rank_orders_users_as_their_usage_at_any_later_time(
        charges in prop::collection::vec((0..5u8, 1.0..1e4f64, 0..HOUR), 1..60),
        later in prop::collection::vec(0..20 * HOUR, 1..5),
    ) {
        let mut l = UsageLedger::new(Duration::from_secs(3_600));
        let mut now = 0;
        for (user, amount, dt) in charges {
            now += dt;
            l.charge(&user, amount, now);
        }
        for dt in later {
            let t = now + dt;
            for a in 0..5u8 {
                for b in 0..5u8 {
                    let (ua, ub) = (l.usage(&a, t), l.usage(&b, t));
                    if l.rank(&a) < l.rank(&b) {
                        prop_assert!(ua <= ub * (1.0 + 1e-9), "{} {} at {}", ua, ub, t);
                    }
                    let via_rank = l.usage_of_rank(l.rank(&a), t);
                    prop_assert!((via_rank - ua).abs() <= 1e-9 * ua.max(1e-300));
                }
            }
        }
    }

    #[test]
    fn fair_order_is_least_usage_first_fifo_per_user(ops in ops(), at in 0..3 * HOUR) {
        let mut o = FairOrder::new(Duration::from_secs(3_600));
        // The model: per level, each user's queued arrivals; an arrival is queued once.
        let mut model: [BTreeMap<u8, BTreeSet<u64>>; 5] = Default::default();
        let mut now = 0;
        for op in ops {
            match op {
                Op::Charge(u, amount, dt) => {
                    now += dt;
                    o.charge(&u, f64::from(amount), now);
                }
                Op::Insert(u, l, a) => {
                    if !model.iter().any(|m| m.values().any(|s| s.contains(&a))) {
                        model[l].entry(u).or_default().insert(a);
                        o.insert(Priority::ALL[l], &u, a);
                    }
                }
                Op::Remove(u, l, a) => {
                    let had = model[l].get_mut(&u).is_some_and(|s| s.remove(&a));
                    prop_assert_eq!(o.remove(Priority::ALL[l], &u, a), had);
                }
            }
        }
        let now = now + at;
        let cost = |p: Priority, a: u64| (p.index() as u64 * 7 + a % 5) as f64 * 100.0;
        let got: Vec<(Priority, u64)> = o.iter(now, cost).collect();
        // The rule, by brute force: per level, repeatedly take the user whose usage plus the
        // cost of what was taken of it is least (ties: earlier next arrival).
        let mut want = Vec::new();
        for (l, users) in model.iter().enumerate() {
            let level = Priority::ALL[l];
            let mut left: BTreeMap<u8, Vec<u64>> = users
                .iter()
                .filter(|(_, s)| !s.is_empty())
                .map(|(u, s)| (*u, s.iter().copied().collect()))
                .collect();
            let mut usage: BTreeMap<u8, f64> = left
                .keys()
                .map(|u| (*u, o.ledger().usage_of_rank(o.ledger().rank(u), now)))
                .collect();
            while let Some((&u, _)) = left
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .min_by(|a, b| {
                    (usage[a.0], a.1[0]).partial_cmp(&(usage[b.0], b.1[0])).unwrap()
                })
            {
                let a = left.get_mut(&u).unwrap().remove(0);
                *usage.get_mut(&u).unwrap() += cost(level, a);
                want.push((level, a));
            }
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(o.len(), model.iter().flat_map(|m| m.values()).map(BTreeSet::len).sum::<usize>());
    }
}
