//! Latency samples in nanoseconds, kept in an HDR histogram (the `hdrhistogram` crate): three
//! significant digits, so a reported percentile is within 0.1 % of the true sample; histograms of
//! several threads merge by adding counts.

/// Significant decimal digits the histogram keeps for every value.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Counts of latency samples in nanoseconds.
#[derive(Clone)]
pub struct Histogram(hdrhistogram::Histogram<u64>);

/// The figures a benchmark report quotes, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        // The digits are in 0..=5, so the constructor cannot refuse them; the histogram grows
        // to cover whatever is recorded.
        Histogram(hdrhistogram::Histogram::new(SIGNIFICANT_DIGITS).expect("valid precision"))
    }

    /// Records one sample. The histogram grows to cover it; a value beyond any histogram's
    /// reach (above `u64::MAX / 2`) counts as the largest one it can hold.
    pub fn record(&mut self, nanos: u64) {
        if self.0.record(nanos).is_err() {
            self.0.saturating_record(nanos);
        }
    }

    /// Adds every sample of `other` to `self`.
    pub fn merge(&mut self, other: &Histogram) {
        // Both grow on demand, so adding never runs out of range; if it did, the sums of the
        // two are still the best figure, so their values are recorded one by one.
        if self.0.add(&other.0).is_err() {
            for value in other.0.iter_recorded() {
                self.0
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn summary(&self) -> LatencySummary {
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        let histogram = &self.0;
        LatencySummary {
            count: histogram.len(),
            min: histogram.min(),
            p50: histogram.value_at_quantile(0.50),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean().round() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut histogram = Histogram::new();
        for value in 1..=10_000u64 {
            histogram.record(value * 1_000);
        }
        let summary = histogram.summary();
        assert_eq!(summary.count, 10_000);
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() / want as f64 <= 0.001;
        assert!(near(summary.min, 1_000), "min {}", summary.min);
        assert!(near(summary.max, 10_000_000), "max {}", summary.max);
        assert!(near(summary.mean, 5_000_500), "mean {}", summary.mean);
        assert!(near(summary.p50, 5_000_000), "p50 {}", summary.p50);
        assert!(near(summary.p99, 9_900_000), "p99 {}", summary.p99);
        assert!(near(summary.p999, 9_990_000), "p999 {}", summary.p999);
    }

    #[test]
    fn an_empty_histogram_summarizes_to_zeros() {
        assert_eq!(Histogram::new().summary(), LatencySummary::default());
        let mut histogram = Histogram::new();
        histogram.record(u64::MAX);
        assert_eq!(histogram.count(), 1);
    }

    #[test]
    fn merge_equals_recording_into_one() {
        let mut left = Histogram::new();
        let mut right = Histogram::new();
        let mut both = Histogram::new();
        for value in 0..5_000u64 {
            let sample = value * value;
            if value % 3 == 0 {
                left.record(sample);
            } else {
                right.record(sample);
            }
            both.record(sample);
        }
        left.merge(&right);
        assert_eq!(left.summary(), both.summary());
    }
}
