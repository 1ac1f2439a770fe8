//! Run times learned from completions: per key (in the daemon, language and user) the decayed
//! mean of run time ÷ timeout, falling back to the key's group (the language), then to every
//! completion, then to the timeout itself.

use std::hash::Hash;

use rustc_hash::FxHashMap;

/// Weight of the newest completion in a decayed mean: the last few dominate.
const WEIGHT: f64 = 0.25;

/// Completions a key or a group needs before its own mean is trusted.
const TRUSTED_AFTER: u32 = 2;

/// A decayed mean of ratios and how many went into it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Mean {
    value: f64,
    count: u32,
}

impl Mean {
    fn add(&mut self, ratio: f64) {
        self.value = if self.count == 0 {
            ratio
        } else {
            self.value + WEIGHT * (ratio - self.value)
        };
        self.count = self.count.saturating_add(1);
    }

    fn trusted(&self) -> Option<f64> {
        (self.count >= TRUSTED_AFTER).then_some(self.value)
    }
}

/// What fraction of its timeout an execution is expected to run, learned online.
#[derive(Debug, Clone)]
pub struct Runtimes<K, G> {
    by_key: FxHashMap<K, Mean>,
    by_group: FxHashMap<G, Mean>,
    all: Mean,
}

impl<K, G> Default for Runtimes<K, G> {
    fn default() -> Self {
        Self {
            by_key: FxHashMap::default(),
            by_group: FxHashMap::default(),
            all: Mean::default(),
        }
    }
}

impl<K: Hash + Eq, G: Hash + Eq> Runtimes<K, G> {
    /// An execution of `key` in `group` ran `ran_ms` of its `timeout_ms`.
    pub fn observe(&mut self, key: K, group: G, ran_ms: u64, timeout_ms: u64) {
        let ratio = ratio(ran_ms, timeout_ms);
        self.by_key.entry(key).or_default().add(ratio);
        self.by_group.entry(group).or_default().add(ratio);
        self.all.add(ratio);
    }

    /// The fraction of its timeout an execution of `key` in `group` is expected to run: the
    /// key's own mean once it has a few completions, else its group's, else everyone's, else 1
    /// (the timeout, as a plan that knows nothing assumes).
    pub fn ratio(&self, key: &K, group: &G) -> f64 {
        self.by_key
            .get(key)
            .and_then(Mean::trusted)
            .or_else(|| self.by_group.get(group).and_then(Mean::trusted))
            .or_else(|| (self.all.count > 0).then_some(self.all.value))
            .unwrap_or(1.0)
    }

    /// The expected run time of an execution of `key` in `group` with `timeout_ms`.
    pub fn expected_ms(&self, key: &K, group: &G, timeout_ms: u64) -> u64 {
        (self.ratio(key, group) * timeout_ms as f64).round() as u64
    }

    /// Completions learned from.
    pub fn observed(&self) -> u64 {
        u64::from(self.all.count)
    }

    /// Keys with a mean of their own.
    pub fn keys(&self) -> usize {
        self.by_key.len()
    }
}

/// `ran ÷ timeout`, in [0, 1]; an execution with no timeout counts as having run all of it.
fn ratio(ran_ms: u64, timeout_ms: u64) -> f64 {
    if timeout_ms == 0 {
        1.0
    } else {
        (ran_ms as f64 / timeout_ms as f64).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_trusted_after_two_completions_before_that_its_group_then_everyone() {
        let mut r: Runtimes<&str, &str> = Runtimes::default();
        assert_eq!(
            r.ratio(&"ann", &"python"),
            1.0,
            "nothing learned: the timeout"
        );
        r.observe("bob", "go", 900, 1_000);
        assert_eq!(r.ratio(&"ann", &"python"), 0.9, "one completion anywhere");
        r.observe("bob", "python", 100, 1_000);
        r.observe("cat", "python", 100, 1_000);
        let python = r.ratio(&"ann", &"python");
        assert!((python - 0.1).abs() < 1e-9, "the group's own: {python}");
        r.observe("ann", "python", 500, 1_000);
        let group = r.ratio(&"ann", &"python");
        assert!(
            (group - 0.2).abs() < 1e-9,
            "one is not enough: the group's {group}"
        );
        r.observe("ann", "python", 500, 1_000);
        assert_eq!(r.ratio(&"ann", &"python"), 0.5);
        assert_eq!(r.expected_ms(&"ann", &"python", 60_000), 30_000);
    }

    #[test]
    fn recent_completions_weigh_more_and_ratios_stay_within_the_timeout() {
        let mut r: Runtimes<u32, ()> = Runtimes::default();
        for _ in 0..20 {
            r.observe(1, (), 100, 1_000);
        }
        for _ in 0..5 {
            r.observe(1, (), 5_000, 1_000);
        }
        let ratio = r.ratio(&1, &());
        assert!(ratio > 0.7 && ratio <= 1.0, "{ratio}");
        assert_eq!(r.observed(), 25);
    }
}
