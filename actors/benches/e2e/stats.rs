//! Order statistics over samples.

/// The value at quantile `q` (0..=1) of sorted `samples` (nearest rank), or 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of `values` (mean of the middle two for an even count), or NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// p50, p99, p99.9 and max of `samples` (µs), sorted in place.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest, µs.
    pub max_us: u64,
}

impl Percentiles {
    /// Sorts `samples` and reads the percentiles.
    pub fn of(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        Self {
            count: samples.len(),
            p50_us: quantile(samples, 0.50),
            p99_us: quantile(samples, 0.99),
            p999_us: quantile(samples, 0.999),
            max_us: samples.last().copied().unwrap_or(0),
        }
    }

    /// "p50 / p99 / p99.9 ms".
    pub fn summary(&self) -> String {
        format!(
            "{} / {} / {} ms",
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.p999_us)
        )
    }
}

/// Microseconds as milliseconds with sensible precision.
pub fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}
