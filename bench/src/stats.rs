//! Percentiles and the units the table prints.

use std::time::Duration;

/// Percentiles of a set of samples (nanoseconds), nearest-rank.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// The median.
    pub p50_ns: u64,
    /// The 99th percentile.
    pub p99_ns: u64,
    /// The largest sample.
    pub max_ns: u64,
}

impl Summary {
    /// Summarizes samples; `None` when there are none.
    pub fn of(samples: &[u64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Summary {
            count: sorted.len(),
            p50_ns: percentile(&sorted, 50.0),
            p99_ns: percentile(&sorted, 99.0),
            max_ns: *sorted.last().unwrap_or(&0),
        })
    }

    /// `p50 … · p99 …` in a fitting unit.
    pub fn text(&self) -> String {
        format!("p50 {} · p99 {}", ns(self.p50_ns), ns(self.p99_ns))
    }
}

/// The nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u64], pct: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (pct / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of unsorted values.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nanoseconds as `850 ns`, `92.4 µs`, `1.53 ms` or `2.10 s`.
pub fn ns(value: u64) -> String {
    let v = value as f64;
    if v < 1e3 {
        format!("{value} ns")
    } else if v < 1e6 {
        format!("{:.1} µs", v / 1e3)
    } else if v < 1e9 {
        format!("{:.2} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

/// Bytes as `512 B`, `12.3 KiB` or `7.45 MiB`.
pub fn bytes(value: u64) -> String {
    let v = value as f64;
    if v < 1024.0 {
        format!("{value} B")
    } else if v < 1024.0 * 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{:.2} MiB", v / 1024.0 / 1024.0)
    }
}

/// A rate as `1.23 M/s`, `45.6 k/s` or `789 /s`.
pub fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M/s", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1} k/s", per_second / 1e3)
    } else {
        format!("{per_second:.0} /s")
    }
}

/// A duration in nanoseconds, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!((s.p50_ns, s.p99_ns, s.max_ns, s.count), (50, 99, 100, 100));
        assert_eq!(Summary::of(&[7]).unwrap().p99_ns, 7);
        assert!(Summary::of(&[]).is_none());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn units() {
        assert_eq!(ns(850), "850 ns");
        assert_eq!(ns(92_400), "92.4 µs");
        assert_eq!(ns(1_530_000), "1.53 ms");
        assert_eq!(bytes(30 * 1024), "30.0 KiB");
        assert_eq!(bytes(8 * 1024 * 1024), "8.00 MiB");
        assert_eq!(rate(1_234_567.0), "1.23 M/s");
        assert_eq!(rate(45_600.0), "45.6 k/s");
    }
}
