//! Why a queued execution is not running yet: a pure function of the queue's dispatch order and
//! what the pool has free, used by the inspection API and open to anything that replays the
//! queue.
//!
//! A pass takes the executions in dispatch order and starts each one that fits what is left;
//! the first that does not fit holds back everything behind it (`demote` and `strict` alike).
//! So, walking the order: a prefix of executions that fit starts at the next pass; the first that
//! does not fit waits for the pool; every one after it waits behind that one, which is either
//! of a higher level or of its own level and earlier.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::pool::Resources;
use crate::Priority;

/// One resource of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// CPU, counted in millicores.
    Cpu,
    /// Memory, counted in MiB.
    Memory,
    /// GPUs, counted whole.
    Gpu,
}

/// Why a queued execution waits. New policies bring reasons of their own (a reservation held
/// for another execution, say): a reader treats a `kind` it does not know as opaque.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitReason {
    /// It fits what is free once the executions ahead of it that fit have started: the next
    /// pass starts it.
    Starting,
    /// It is the first in dispatch order that does not fit what is free.
    PoolFull {
        /// The first of cpu, memory and gpu it needs more of than is free.
        resource: Resource,
        /// How much more of it than is free: millicores, MiB or GPUs.
        short_by: u64,
    },
    /// An execution of a higher level ahead of it does not fit, and holds it back.
    BehindHigherPriority,
    /// An execution of its own level that arrived earlier does not fit, and holds it back.
    BehindEarlierArrivals,
    /// It fits what is free, but starting it would delay the start the pool is reserved for
    /// an execution ahead of it (under `backfill`).
    ReservedFor {
        /// The execution the pool is reserved for.
        execution_id: String,
    },
}

/// The first of cpu, memory and gpu of which `wanted` needs more than `free` has, and by how
/// much; `None` when it fits.
pub fn shortfall(wanted: Resources, free: Resources) -> Option<(Resource, u64)> {
    [
        (Resource::Cpu, wanted.cpu_millis, free.cpu_millis),
        (Resource::Memory, wanted.memory_mib, free.memory_mib),
        (Resource::Gpu, wanted.gpu, free.gpu),
    ]
    .into_iter()
    .find(|(_, wanted, free)| wanted > free)
    .map(|(resource, wanted, free)| (resource, wanted - free))
}

/// The reasons of the executions of a queue, one after the other in dispatch order. Once one
/// did not fit ([`Reasons::blocked`]) the reason of every later one depends only on its level,
/// so a caller looking for one execution far down the queue can stop walking there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reasons {
    /// What is free after the executions that start.
    free: Resources,
    /// The level of the first execution that did not fit.
    blocker: Option<Priority>,
}

impl Reasons {
    /// A walk from the head of the queue, on a pool with `free` allocatable now.
    pub fn new(free: Resources) -> Self {
        Self {
            free,
            blocker: None,
        }
    }

    /// The reason of the next execution in dispatch order, queued at `level` and reserving
    /// `wants`.
    pub fn next(&mut self, level: Priority, wants: Resources) -> WaitReason {
        match self.blocker {
            Some(blocker) if blocker < level => WaitReason::BehindHigherPriority,
            Some(_) => WaitReason::BehindEarlierArrivals,
            None => match shortfall(wants, self.free) {
                None => {
                    self.free = self.free.saturating_sub(&wants);
                    WaitReason::Starting
                }
                Some((resource, short_by)) => {
                    self.blocker = Some(level);
                    WaitReason::PoolFull { resource, short_by }
                }
            },
        }
    }

    /// True once an execution did not fit.
    pub fn blocked(&self) -> bool {
        self.blocker.is_some()
    }
}

/// The reason of each execution of `order` (level and what it reserves, in dispatch order, from
/// the head) on a pool with `free` allocatable now.
pub fn reasons(
    order: impl IntoIterator<Item = (Priority, Resources)>,
    free: Resources,
) -> Vec<WaitReason> {
    let mut walk = Reasons::new(free);
    order
        .into_iter()
        .map(|(level, wants)| walk.next(level, wants))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Priority::*;

    const HALF: Resources = Resources::new(500, 256, 0);

    #[test]
    fn what_fits_starts_the_first_that_does_not_waits_for_the_pool_the_rest_behind_it() {
        let order = [
            (High, HALF),
            (High, Resources::new(2_000, 256, 0)),
            (High, HALF),
            (Normal, HALF),
        ];
        assert_eq!(
            reasons(order, Resources::new(1_200, 4_096, 0)),
            [
                WaitReason::Starting,
                WaitReason::PoolFull {
                    resource: Resource::Cpu,
                    short_by: 1_300
                },
                WaitReason::BehindEarlierArrivals,
                WaitReason::BehindHigherPriority,
            ]
        );
    }

    #[test]
    fn the_short_resource_is_the_first_of_cpu_memory_gpu_short() {
        let free = Resources::new(1_000, 1_000, 0);
        assert_eq!(shortfall(Resources::new(1_000, 1_000, 0), free), None);
        assert_eq!(
            shortfall(Resources::new(1_500, 3_000, 1), free),
            Some((Resource::Cpu, 500))
        );
        assert_eq!(
            shortfall(Resources::new(500, 3_000, 1), free),
            Some((Resource::Memory, 2_000))
        );
        assert_eq!(
            shortfall(Resources::new(500, 500, 2), free),
            Some((Resource::Gpu, 2))
        );
    }

    #[test]
    fn reasons_serialise_by_kind() {
        let full = WaitReason::PoolFull {
            resource: Resource::Memory,
            short_by: 512,
        };
        assert_eq!(
            serde_json::to_value(&full).unwrap(),
            serde_json::json!({"kind": "pool_full", "resource": "memory", "short_by": 512})
        );
        assert_eq!(
            serde_json::to_value(WaitReason::BehindHigherPriority).unwrap(),
            serde_json::json!({"kind": "behind_higher_priority"})
        );
    }

    fn level() -> impl Strategy<Value = Priority> {
        (0usize..5).prop_map(|i| Priority::ALL[i])
    }

    proptest! {
        /// Over any queue in dispatch order: the executions that start are a prefix that fits
        /// the pool together; at most one waits for the pool, the first after that prefix, and
        /// it is short of what it says; every later one waits behind it, for its level.
        #[test]
        fn reasons_follow_the_pass(
            mut order in proptest::collection::vec((level(), 0u64..2_000, 0u64..2_000, 0u64..2), 0..40),
            free in (0u64..6_000, 0u64..6_000, 0u64..3),
        ) {
            order.sort_by_key(|(level, ..)| *level);
            let order: Vec<(Priority, Resources)> =
                order.into_iter().map(|(l, c, m, g)| (l, Resources::new(c, m, g))).collect();
            let free = Resources::new(free.0, free.1, free.2);
            let got = reasons(order.iter().copied(), free);
            prop_assert_eq!(got.len(), order.len());
            let starting = got.iter().take_while(|r| **r == WaitReason::Starting).count();
            let mut left = free;
            for (_, wants) in &order[..starting] {
                prop_assert!(wants.fits_in(&left));
                left = left.saturating_sub(wants);
            }
            if let Some((level, wants)) = order.get(starting) {
                let (resource, short_by) = shortfall(*wants, left).expect("it does not fit");
                prop_assert_eq!(&got[starting], &WaitReason::PoolFull { resource, short_by });
                for ((l, _), reason) in order.iter().zip(&got).skip(starting + 1) {
                    let want = if l > level {
                        WaitReason::BehindHigherPriority
                    } else {
                        WaitReason::BehindEarlierArrivals
                    };
                    prop_assert_eq!(reason, &want);
                }
            }
        }
    }
}
