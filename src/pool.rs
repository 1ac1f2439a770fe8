//! The CPU/memory/GPU pool: overcommit, reserves, per-execution caps, language
//! defaults and exact integer accounting (millicores, MiB, whole GPUs).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use thiserror::Error;

use crate::config::ResourcesConfig;
use crate::quantity::{self, QuantityError};

/// An amount of each resource, in exact integer units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Resources {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Whole GPUs.
    pub gpu: u64,
}

impl Resources {
    /// A triple of amounts.
    pub const fn new(cpu_millis: u64, memory_mib: u64, gpu: u64) -> Self {
        Self {
            cpu_millis,
            memory_mib,
            gpu,
        }
    }

    /// True when every amount of `self` is at most that of `other`.
    pub fn fits_in(&self, other: &Resources) -> bool {
        self.cpu_millis <= other.cpu_millis
            && self.memory_mib <= other.memory_mib
            && self.gpu <= other.gpu
    }

    /// Component-wise `self + other`, capped at the largest amount.
    pub fn plus(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_mib: self.memory_mib.saturating_add(other.memory_mib),
            gpu: self.gpu.saturating_add(other.gpu),
        }
    }

    /// Component-wise `self - other`, floored at zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_mib: self.memory_mib.saturating_sub(other.memory_mib),
            gpu: self.gpu.saturating_sub(other.gpu),
        }
    }

    /// Component-wise minimum.
    pub fn min(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.min(other.cpu_millis),
            memory_mib: self.memory_mib.min(other.memory_mib),
            gpu: self.gpu.min(other.gpu),
        }
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu {}, memory {}, gpu {}",
            quantity::format_cpu_millis(self.cpu_millis),
            quantity::format_memory_mib(self.memory_mib),
            self.gpu
        )
    }
}

/// Cores (possibly fractional, from config) to millicores, rounded to the nearest millicore.
fn cores_to_millis(cores: f64) -> u64 {
    if cores.is_finite() && cores > 0.0 {
        (cores * 1000.0).round() as u64
    } else {
        0
    }
}

/// `amount × factor`, floored, tolerant of binary rounding (32 × 1.2 is 38.4, not 38.39999).
fn scaled(amount: u64, factor: f64) -> u64 {
    if factor.is_finite() && factor > 0.0 {
        (amount as f64 * factor + 1e-6).floor() as u64
    } else {
        amount
    }
}

/// The pool's fixed shape, derived once from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// Capacity after overcommit.
    pub total: Resources,
    /// Kept free: `min(configured minimum, 10% of total)` for CPU and memory; none for GPU.
    pub reserve: Resources,
    /// Largest amount one execution gets; larger requests are clamped to it.
    pub cap: Resources,
    /// Request for a language missing from `language_defaults`.
    pub default_request: Resources,
    /// Request per language when the event names none.
    pub language_defaults: BTreeMap<String, Resources>,
}

impl PoolSpec {
    /// The spec derived from the `[resources]` section.
    pub fn from_config(c: &ResourcesConfig) -> Self {
        let total = Resources {
            cpu_millis: scaled(cores_to_millis(c.total_cpu_cores), c.overcommit_factor),
            memory_mib: scaled(c.total_memory_mb, c.overcommit_factor),
            gpu: scaled(c.total_gpu_count, c.overcommit_factor),
        };
        let reserve = Resources {
            cpu_millis: cores_to_millis(c.min_available_cpu_cores).min(total.cpu_millis / 10),
            memory_mib: c.min_available_memory_mb.min(total.memory_mib / 10),
            gpu: 0,
        };
        let cap = Resources {
            cpu_millis: cores_to_millis(c.max_cpu_per_execution),
            memory_mib: c.max_memory_per_execution_mb,
            gpu: c.max_gpu_per_execution,
        };
        let default_request =
            Resources::new(cores_to_millis(c.default_cpu_cores), c.default_memory_mb, 0);
        let language_defaults = c
            .language_defaults
            .iter()
            .map(|(language, d)| {
                (
                    language.to_ascii_lowercase(),
                    Resources::new(cores_to_millis(d.cpu_cores), d.memory_mb, 0),
                )
            })
            .collect();
        Self {
            total,
            reserve,
            cap,
            default_request,
            language_defaults,
        }
    }

    /// Resolves what a request will reserve: explicit quantities over language defaults,
    /// clamped to the caps; refuses unparsable quantities and requests that never fit.
    pub fn resolve(&self, ask: ResourceAsk<'_>) -> Result<ResolvedRequest, RequestError> {
        let default = self
            .language_defaults
            .get(&ask.language.to_ascii_lowercase())
            .copied()
            .unwrap_or(self.default_request);
        let asked = Resources {
            cpu_millis: match ask.cpu {
                Some(q) => quantity::parse_cpu_millis(q)?,
                None => default.cpu_millis,
            },
            memory_mib: match ask.memory {
                Some(q) => quantity::parse_memory_mib(q)?,
                None => default.memory_mib,
            },
            gpu: ask.gpu.map_or(default.gpu, u64::from),
        };
        let resources = asked.min(&self.cap);
        let usable = self.usable();
        if !resources.fits_in(&usable) {
            return Err(RequestError::NeverFits {
                requested: resources,
                usable,
            });
        }
        Ok(ResolvedRequest { resources, asked })
    }

    /// What an empty pool can give: total minus reserve.
    pub fn usable(&self) -> Resources {
        self.total.saturating_sub(&self.reserve)
    }
}

/// What an execution asks for, before defaults and caps are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceAsk<'a> {
    /// The request's `language`, selecting the default when a quantity is absent.
    pub language: &'a str,
    /// The event's `cpu_request` (Kubernetes quantity).
    pub cpu: Option<&'a str>,
    /// The event's `memory_request` (Kubernetes quantity).
    pub memory: Option<&'a str>,
    /// GPUs asked for.
    pub gpu: Option<u32>,
}

/// A request resolved to exact amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedRequest {
    /// What will be reserved.
    pub resources: Resources,
    /// What was asked for before clamping to the per-execution caps.
    pub asked: Resources,
}

impl ResolvedRequest {
    /// True when some amount was lowered to its cap.
    pub fn clamped(&self) -> bool {
        self.asked != self.resources
    }
}

/// Why a request can never be admitted.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RequestError {
    /// A quantity could not be parsed.
    #[error(transparent)]
    InvalidQuantity(#[from] QuantityError),
    /// Even an empty pool could not hold it.
    #[error(
        "execution requests {requested} but the pool can never give more than {usable}; \
         lower the request"
    )]
    NeverFits {
        /// The request after clamping.
        requested: Resources,
        /// Total minus reserve.
        usable: Resources,
    },
}

/// An allocation refused for lack of free resources now; it may fit after a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("insufficient resources: requested {requested}; available {available}")]
pub struct Insufficient {
    /// What was asked for.
    pub requested: Resources,
    /// What could be given without touching the reserve.
    pub available: Resources,
}

/// Resources held by one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The execution holding them.
    pub execution_id: String,
    /// The amounts held.
    pub resources: Resources,
}

/// Figures for the stats stream and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Capacity after overcommit.
    pub total: Resources,
    /// Kept free.
    pub reserve: Resources,
    /// Held by allocations.
    pub used: Resources,
    /// Still allocatable: total − reserve − used.
    pub available: Resources,
    /// Number of allocations.
    pub active_allocations: usize,
}

/// The resource pool and its allocations.
#[derive(Debug, Clone)]
pub struct ResourcePool {
    spec: PoolSpec,
    used: Resources,
    allocations: HashMap<String, Resources>,
}

impl ResourcePool {
    /// An empty pool of this shape.
    pub fn new(spec: PoolSpec) -> Self {
        Self {
            spec,
            used: Resources::default(),
            allocations: HashMap::new(),
        }
    }

    /// The pool's shape.
    pub fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    /// Resources allocatable now without touching the reserve.
    pub fn available(&self) -> Resources {
        self.spec.usable().saturating_sub(&self.used)
    }

    /// Resources held by allocations.
    pub fn used(&self) -> Resources {
        self.used
    }

    /// True when `execution_id` holds an allocation.
    pub fn contains(&self, execution_id: &str) -> bool {
        self.allocations.contains_key(execution_id)
    }

    /// The allocation of `execution_id`.
    pub fn allocation(&self, execution_id: &str) -> Option<Allocation> {
        self.allocations.get(execution_id).map(|r| Allocation {
            execution_id: execution_id.to_owned(),
            resources: *r,
        })
    }

    /// Resolves what a request will reserve (see [`PoolSpec::resolve`]).
    pub fn resolve(&self, ask: ResourceAsk<'_>) -> Result<ResolvedRequest, RequestError> {
        self.spec.resolve(ask)
    }

    /// Reserves `resources` for `execution_id` unless that would take any resource below its
    /// reserve. Allocating again for an id that holds an allocation returns the one it holds.
    pub fn allocate(
        &mut self,
        execution_id: &str,
        resources: Resources,
    ) -> Result<Allocation, Insufficient> {
        if let Some(held) = self.allocation(execution_id) {
            return Ok(held);
        }
        let available = self.available();
        if !resources.fits_in(&available) {
            return Err(Insufficient {
                requested: resources,
                available,
            });
        }
        self.used = Resources {
            cpu_millis: self.used.cpu_millis + resources.cpu_millis,
            memory_mib: self.used.memory_mib + resources.memory_mib,
            gpu: self.used.gpu + resources.gpu,
        };
        self.allocations.insert(execution_id.to_owned(), resources);
        Ok(Allocation {
            execution_id: execution_id.to_owned(),
            resources,
        })
    }

    /// Returns the resources of `execution_id` to the pool; `None` (a no-op) if it holds none.
    pub fn release(&mut self, execution_id: &str) -> Option<Allocation> {
        let resources = self.allocations.remove(execution_id)?;
        self.used = self.used.saturating_sub(&resources);
        Some(Allocation {
            execution_id: execution_id.to_owned(),
            resources,
        })
    }

    /// Every allocation, in no particular order.
    pub fn allocations(&self) -> impl Iterator<Item = Allocation> + '_ {
        self.allocations.iter().map(|(id, r)| Allocation {
            execution_id: id.clone(),
            resources: *r,
        })
    }

    /// Current figures.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            total: self.spec.total,
            reserve: self.spec.reserve,
            used: self.used,
            available: self.available(),
            active_allocations: self.allocations.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pool() -> ResourcePool {
        ResourcePool::new(PoolSpec::from_config(&ResourcesConfig::default()))
    }

    fn ask<'a>(
        language: &'a str,
        cpu: Option<&'a str>,
        memory: Option<&'a str>,
    ) -> ResourceAsk<'a> {
        ResourceAsk {
            language,
            cpu,
            memory,
            gpu: None,
        }
    }

    #[test]
    fn default_spec_applies_overcommit_and_reserves() {
        let spec = pool().spec().clone();
        // 32 cores × 1.2 = 38.4 cores; 65536 MiB × 1.2 = 78643.2 MiB, floored.
        assert_eq!(spec.total, Resources::new(38_400, 78_643, 0));
        // min(2 cores, 10% of 38.4) = 2 cores; min(4096, 7864) = 4096.
        assert_eq!(spec.reserve, Resources::new(2_000, 4_096, 0));
        assert_eq!(spec.cap, Resources::new(4_000, 8_192, 1));
        assert_eq!(spec.usable(), Resources::new(36_400, 74_547, 0));
    }

    #[test]
    fn reserve_is_ten_percent_of_a_small_pool() {
        let c = ResourcesConfig {
            total_cpu_cores: 4.0,
            total_memory_mb: 8192,
            overcommit_factor: 1.0,
            ..ResourcesConfig::default()
        };
        let spec = PoolSpec::from_config(&c);
        assert_eq!(spec.reserve, Resources::new(400, 819, 0));
    }

    #[test]
    fn explicit_requests_win_over_language_defaults() {
        let p = pool();
        let r = p.resolve(ask("python", None, None)).unwrap();
        assert_eq!(r.resources, Resources::new(500, 512, 0));
        let r = p.resolve(ask("go", None, None)).unwrap();
        assert_eq!(r.resources, Resources::new(250, 256, 0));
        let r = p.resolve(ask("Java", None, None)).unwrap();
        assert_eq!(r.resources, Resources::new(1_000, 1_024, 0));
        let r = p.resolve(ask("cobol", None, None)).unwrap();
        assert_eq!(r.resources, Resources::new(500, 512, 0));
        let r = p
            .resolve(ask("python", Some("100m"), Some("64Mi")))
            .unwrap();
        assert_eq!(r.resources, Resources::new(100, 64, 0));
        // One explicit, one default.
        let r = p.resolve(ask("r", Some("2"), None)).unwrap();
        assert_eq!(r.resources, Resources::new(2_000, 2_048, 0));
    }

    #[test]
    fn requests_above_the_caps_are_clamped() {
        let p = pool();
        let r = p.resolve(ask("python", Some("16"), Some("64Gi"))).unwrap();
        assert_eq!(r.resources, Resources::new(4_000, 8_192, 0));
        assert_eq!(r.asked, Resources::new(16_000, 65_536, 0));
        assert!(r.clamped());
        assert!(!p.resolve(ask("python", None, None)).unwrap().clamped());
    }

    #[test]
    fn unparsable_quantities_are_refused() {
        let p = pool();
        assert!(matches!(
            p.resolve(ask("python", Some("lots"), None)),
            Err(RequestError::InvalidQuantity(_))
        ));
        assert!(matches!(
            p.resolve(ask("python", None, Some("-5Mi"))),
            Err(RequestError::InvalidQuantity(_))
        ));
    }

    #[test]
    fn a_request_that_never_fits_is_refused_at_resolve() {
        // No GPUs in the default pool: any GPU request can never fit.
        let p = pool();
        let err = p
            .resolve(ResourceAsk {
                gpu: Some(1),
                ..ask("python", None, None)
            })
            .unwrap_err();
        assert!(matches!(err, RequestError::NeverFits { .. }));
        assert!(err.to_string().contains("can never give"));
        // Caps larger than the usable pool: a capped request still cannot fit.
        let c = ResourcesConfig {
            total_cpu_cores: 2.0,
            overcommit_factor: 1.0,
            ..ResourcesConfig::default()
        };
        let p = ResourcePool::new(PoolSpec::from_config(&c));
        assert!(matches!(
            p.resolve(ask("python", Some("1900m"), None)),
            Err(RequestError::NeverFits { .. })
        ));
        assert!(p.resolve(ask("python", Some("1800m"), None)).is_ok());
    }

    #[test]
    fn allocation_stops_at_the_reserve_and_release_restores_exactly() {
        let c = ResourcesConfig {
            total_cpu_cores: 10.0,
            total_memory_mb: 10_000,
            overcommit_factor: 1.0,
            ..ResourcesConfig::default()
        };
        let mut p = ResourcePool::new(PoolSpec::from_config(&c));
        // Usable: 9000m (reserve 1000m), 9000 MiB (reserve 1000).
        let r = Resources::new(3_000, 1_000, 0);
        p.allocate("a", r).unwrap();
        p.allocate("b", r).unwrap();
        p.allocate("c", r).unwrap();
        let err = p.allocate("d", Resources::new(1, 1, 0)).unwrap_err();
        assert_eq!(err.available, Resources::new(0, 6_000, 0));
        assert_eq!(p.stats().active_allocations, 3);
        // Allocating again for a holder does not double-count.
        assert_eq!(p.allocate("a", r).unwrap().resources, r);
        assert_eq!(p.used(), Resources::new(9_000, 3_000, 0));
        assert_eq!(p.release("b").unwrap().resources, r);
        assert_eq!(p.release("b"), None);
        p.allocate("d", Resources::new(1, 1, 0)).unwrap();
        for id in ["a", "c", "d"] {
            p.release(id).unwrap();
        }
        assert_eq!(p.used(), Resources::default());
        assert_eq!(p.available(), p.spec().usable());
    }

    proptest! {
        /// The pool never hands out its reserve, the books always balance, and any sequence of
        /// allocations and releases ending with every release returns it exactly to its start.
        #[test]
        fn pool_invariants(
            ops in proptest::collection::vec((any::<bool>(), 0usize..12, 0u64..5_000, 0u64..9_000, 0u64..2), 1..200),
            cores in 1u32..64,
            overcommit in 100u32..200,
        ) {
            let c = ResourcesConfig {
                total_cpu_cores: f64::from(cores) / 2.0,
                total_memory_mb: u64::from(cores) * 1_024,
                total_gpu_count: 2,
                overcommit_factor: f64::from(overcommit) / 100.0,
                ..ResourcesConfig::default()
            };
            let mut p = ResourcePool::new(PoolSpec::from_config(&c));
            let start = p.stats();
            for (alloc, id, cpu, mem, gpu) in ops {
                let id = format!("e{id}");
                if alloc {
                    let r = Resources::new(cpu, mem, gpu);
                    let before = p.available();
                    match p.allocate(&id, r) {
                        Ok(a) => prop_assert!(a.resources.fits_in(&before) || before == p.available()),
                        Err(e) => prop_assert!(!r.fits_in(&e.available)),
                    }
                } else {
                    p.release(&id);
                }
                let sum = p.allocations().fold(Resources::default(), |acc, a| Resources::new(
                    acc.cpu_millis + a.resources.cpu_millis,
                    acc.memory_mib + a.resources.memory_mib,
                    acc.gpu + a.resources.gpu,
                ));
                prop_assert_eq!(sum, p.used());
                prop_assert!(p.used().fits_in(&p.spec().usable()), "reserve touched");
            }
            let ids: Vec<String> = p.allocations().map(|a| a.execution_id).collect();
            for id in ids {
                p.release(&id);
            }
            prop_assert_eq!(p.stats(), start);
        }
    }
}
