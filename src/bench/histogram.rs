//! A hand-written log-linear latency histogram.
//!
//! Values (nanoseconds) below 64 get one bucket each; above that, every power of two is split
//! into 64 equal sub-buckets, so a reported percentile is within 1/64 (about 1.6 %) of the true
//! sample. The bucket array has a fixed size (3,776 counters, 30 KiB), so recording never
//! allocates and histograms of several threads merge by adding counters. Minimum, maximum and
//! mean are tracked exactly.

/// Sub-buckets per power of two, as a number of bits.
const SUB_BITS: u32 = 6;
/// Sub-buckets per power of two.
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Buckets needed to cover every `u64`: one group of 64 below 64, then one group per exponent
/// 6..=63.
const BUCKET_COUNT: usize = ((64 - SUB_BITS as usize) + 1) * SUB_COUNT as usize;

/// Counts of latency samples in nanoseconds.
#[derive(Clone)]
pub struct Histogram {
    buckets: Box<[u64]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

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
        Histogram {
            buckets: vec![0; BUCKET_COUNT].into_boxed_slice(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one sample.
    pub fn record(&mut self, value: u64) {
        self.buckets[bucket_index(value)] += 1;
        self.count += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every sample of `other` to `self`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest recorded value `v` such that at least `quantile` of the samples are `<= v`,
    /// up to the bucket resolution, clamped to the exact minimum and maximum. Zero when empty.
    pub fn value_at_quantile(&self, quantile: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let quantile = quantile.clamp(0.0, 1.0);
        // The rank of the wanted sample, 1-based; at least the first sample.
        let rank = ((quantile * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket;
            if seen >= rank {
                return bucket_high(index).clamp(self.min, self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> LatencySummary {
        if self.count == 0 {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.count,
            min: self.min,
            p50: self.value_at_quantile(0.50),
            p99: self.value_at_quantile(0.99),
            p999: self.value_at_quantile(0.999),
            max: self.max,
            mean: (self.sum / u128::from(self.count)) as u64,
        }
    }
}

fn bucket_index(value: u64) -> usize {
    if value < SUB_COUNT {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= SUB_BITS because value >= SUB_COUNT.
    let group = (exponent - SUB_BITS + 1) as u64;
    let sub = (value >> (exponent - SUB_BITS)) - SUB_COUNT;
    (group * SUB_COUNT + sub) as usize
}

/// The largest value that falls in bucket `index`.
fn bucket_high(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_COUNT {
        return index;
    }
    let group = index / SUB_COUNT;
    let sub = index % SUB_COUNT;
    let shift = group - 1;
    let low = (sub + SUB_COUNT) << shift;
    low + ((1u64 << shift) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_every_value() {
        let mut previous_high = None;
        for index in 0..BUCKET_COUNT {
            let high = bucket_high(index);
            assert_eq!(bucket_index(high), index, "high end of bucket {index}");
            if let Some(previous) = previous_high {
                assert_eq!(
                    bucket_index(previous + 1),
                    index,
                    "low end of bucket {index}"
                );
            }
            previous_high = Some(high);
        }
        assert_eq!(previous_high, Some(u64::MAX));
    }

    #[test]
    fn relative_error_is_below_one_sixty_fourth() {
        for value in [
            65u64,
            100,
            1_000,
            12_345,
            999_999,
            123_456_789,
            u64::MAX / 3,
        ] {
            let high = bucket_high(bucket_index(value));
            assert!(high >= value);
            assert!(
                (high - value) as f64 / value as f64 <= 1.0 / 64.0,
                "{value} -> {high}"
            );
        }
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut histogram = Histogram::new();
        for value in 1..=10_000u64 {
            histogram.record(value * 1_000);
        }
        let summary = histogram.summary();
        assert_eq!(summary.count, 10_000);
        assert_eq!(summary.min, 1_000);
        assert_eq!(summary.max, 10_000_000);
        assert_eq!(summary.mean, 5_000_500);
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() / want as f64 <= 0.016;
        assert!(near(summary.p50, 5_000_000), "p50 {}", summary.p50);
        assert!(near(summary.p99, 9_900_000), "p99 {}", summary.p99);
        assert!(near(summary.p999, 9_990_000), "p999 {}", summary.p999);
    }

    #[test]
    fn small_values_are_exact_and_extremes_clamped() {
        let mut histogram = Histogram::new();
        for value in [3u64, 3, 3, 7] {
            histogram.record(value);
        }
        assert_eq!(histogram.value_at_quantile(0.5), 3);
        assert_eq!(histogram.value_at_quantile(0.75), 3);
        assert_eq!(histogram.value_at_quantile(1.0), 7);
        assert_eq!(histogram.value_at_quantile(0.0), 3);
        assert_eq!(Histogram::new().summary(), LatencySummary::default());
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
