//! Latency histograms and the figures a run reports.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The longest latency recorded exactly; slower I/Os count at this value.
const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// Latencies (nanoseconds) of one reactor, by direction.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub read_ns: Histogram<u64>,
    pub write_ns: Histogram<u64>,
    pub bytes: u64,
}

impl Recorder {
    pub fn new() -> Self {
        let histogram = || Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid histogram bounds");
        Recorder { read_ns: histogram(), write_ns: histogram(), bytes: 0 }
    }

    pub fn record(&mut self, is_read: bool, latency: Duration, bytes: u64) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).clamp(1, LATENCY_NS_MAX);
        let histogram = if is_read { &mut self.read_ns } else { &mut self.write_ns };
        histogram.saturating_record(ns);
        self.bytes += bytes;
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides: adding cannot fail.
        self.read_ns.add(&other.read_ns).expect("histograms with equal bounds");
        self.write_ns.add(&other.write_ns).expect("histograms with equal bounds");
        self.bytes += other.bytes;
    }

    /// The figures over a measured window of `seconds`.
    pub fn measured(&self, seconds: f64) -> Measured {
        let mut all = self.read_ns.clone();
        all.add(&self.write_ns).expect("histograms with equal bounds");
        let ios = all.len();
        Measured {
            ios,
            iops: ios as f64 / seconds,
            mib_per_s: self.bytes as f64 / seconds / f64::from(1u32 << 20),
            latency_us: Latency::of(&all),
            read_latency_us: (!self.read_ns.is_empty()).then(|| Latency::of(&self.read_ns)),
            write_latency_us: (!self.write_ns.is_empty()).then(|| Latency::of(&self.write_ns)),
        }
    }
}

/// Latency figures in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub avg: f64,
    pub p50: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            avg: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// What one side (Keel or fio, one reactor or all) achieved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measured {
    pub ios: u64,
    pub iops: f64,
    pub mib_per_s: f64,
    pub latency_us: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_latency_us: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_latency_us: Option<Latency>,
}

/// Median, minimum and maximum of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Some(Spread { median, min: sorted[0], max: sorted[n - 1] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_series_is_the_mean_of_the_middle_two() {
        let spread = Spread::of(&[4.0, 1.0, 3.0, 2.0]).expect("non-empty");
        assert_eq!((spread.median, spread.min, spread.max), (2.5, 1.0, 4.0));
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn recorded_latencies_become_iops_and_percentiles() {
        let mut r = Recorder::new();
        for us in 1..=100u64 {
            r.record(us % 2 == 0, Duration::from_micros(us), 4096);
        }
        let m = r.measured(2.0);
        assert_eq!(m.ios, 100);
        assert_eq!(m.iops, 50.0);
        assert!((m.latency_us.p50 - 50.0).abs() < 0.1, "{:?}", m.latency_us);
        assert!((m.latency_us.max - 100.0).abs() < 0.1);
        assert!(m.read_latency_us.is_some() && m.write_latency_us.is_some());
    }
}
