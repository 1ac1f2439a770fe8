//! A bounded sample of measurements and its percentiles: the one helper behind every p50/p99
//! the daemon reports (actor handling times, queue waits).

/// At most `capacity` values; once full, each new value overwrites one round-robin, so the
/// sample keeps a spread over everything pushed. Counts every value pushed.
#[derive(Debug, Clone)]
pub struct BoundedSample {
    values: Vec<u64>,
    capacity: usize,
    cursor: usize,
    pushed: u64,
}

/// Percentiles of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Values pushed (not only those kept).
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
}

impl BoundedSample {
    /// Empty, keeping at most `capacity` values.
    pub fn new(capacity: usize) -> Self {
        Self {
            values: Vec::new(),
            capacity: capacity.max(1),
            cursor: 0,
            pushed: 0,
        }
    }

    /// Adds `value`.
    pub fn push(&mut self, value: u64) {
        self.pushed += 1;
        if self.values.len() < self.capacity {
            self.values.push(value);
        } else {
            self.values[self.cursor] = value;
            self.cursor = (self.cursor + 1) % self.capacity;
        }
    }

    /// Empties it, count included.
    pub fn clear(&mut self) {
        self.values.clear();
        self.cursor = 0;
        self.pushed = 0;
    }

    /// Values kept: at most the capacity.
    pub fn kept(&self) -> usize {
        self.values.len()
    }

    /// Values pushed since it was made or cleared.
    pub fn count(&self) -> u64 {
        self.pushed
    }

    /// p50 and p99 of the values kept (nearest rank, rounding down); `None` when empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_unstable();
        let at = |p: usize| sorted[(sorted.len() - 1) * p / 100];
        Some(Percentiles {
            count: self.pushed,
            p50: at(50),
            p99: at(99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_what_is_kept_and_a_count_of_everything() {
        let mut s = BoundedSample::new(100);
        assert_eq!(s.percentiles(), None);
        for v in 1..=100 {
            s.push(v);
        }
        assert_eq!(
            s.percentiles(),
            Some(Percentiles {
                count: 100,
                p50: 50,
                p99: 99
            })
        );
        // Full: new values overwrite the oldest first.
        for _ in 0..100 {
            s.push(1_000);
        }
        let p = s.percentiles().expect("not empty");
        assert_eq!((p.count, p.p50, p.p99), (200, 1_000, 1_000));
        s.clear();
        assert_eq!((s.count(), s.percentiles()), (0, None));
    }
}
