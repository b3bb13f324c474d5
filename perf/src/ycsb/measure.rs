//! Latency recording and YCSB-style reports.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Latencies of one client, by operation label.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    ok_us: BTreeMap<&'static str, Vec<u32>>,
    errors: BTreeMap<&'static str, u64>,
}

impl Recorder {
    pub fn record(&mut self, label: &'static str, latency: Duration, ok: bool) {
        if ok {
            let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
            self.ok_us.entry(label).or_default().push(us);
        } else {
            *self.errors.entry(label).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        for (label, mut v) in other.ok_us {
            self.ok_us.entry(label).or_default().append(&mut v);
        }
        for (label, n) in other.errors {
            *self.errors.entry(label).or_default() += n;
        }
    }

    pub fn operations(&self) -> u64 {
        self.ok_us.values().map(|v| v.len() as u64).sum::<u64>() + self.errors.values().sum::<u64>()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The report as YCSB prints it.
    pub fn report(&mut self, runtime: Duration, counted_ops: u64) -> String {
        let mut out = String::new();
        let ms = runtime.as_millis();
        let secs = runtime.as_secs_f64().max(1e-9);
        let _ = writeln!(out, "[OVERALL], RunTime(ms), {ms}");
        let _ = writeln!(out, "[OVERALL], Throughput(ops/sec), {:.2}", counted_ops as f64 / secs);
        let labels: Vec<&'static str> = self.ok_us.keys().chain(self.errors.keys()).copied().collect();
        let mut seen = std::collections::BTreeSet::new();
        for label in labels {
            if !seen.insert(label) {
                continue;
            }
            let lat = self.ok_us.entry(label).or_default();
            lat.sort_unstable();
            let errors = self.errors.get(label).copied().unwrap_or(0);
            let ops = lat.len() as u64 + errors;
            let _ = writeln!(out, "[{label}], Operations, {ops}");
            if !lat.is_empty() {
                let avg = lat.iter().map(|&v| f64::from(v)).sum::<f64>() / lat.len() as f64;
                let _ = writeln!(out, "[{label}], AverageLatency(us), {avg:.2}");
                let _ = writeln!(out, "[{label}], MinLatency(us), {}", lat[0]);
                let _ = writeln!(out, "[{label}], MaxLatency(us), {}", lat[lat.len() - 1]);
                for p in [50u32, 95, 99] {
                    let _ = writeln!(out, "[{label}], {p}thPercentileLatency(us), {}", percentile(lat, p));
                }
                let _ = writeln!(out, "[{label}], Return=OK, {}", lat.len());
            }
            if errors > 0 {
                let _ = writeln!(out, "[{label}], Return=ERROR, {errors}");
            }
        }
        out
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u32], p: u32) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1);
    sorted[usize::try_from(rank - 1).unwrap_or(0).min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_ycsb_lines() {
        let mut r = Recorder::default();
        for us in 1..=100 {
            r.record("READ", Duration::from_micros(us), true);
        }
        r.record("UPDATE", Duration::from_micros(5), false);
        let text = r.report(Duration::from_secs(2), 101);
        assert!(text.contains("[OVERALL], Throughput(ops/sec), 50.50"));
        assert!(text.contains("[READ], 95thPercentileLatency(us), 95"));
        assert!(text.contains("[READ], MinLatency(us), 1"));
        assert!(text.contains("[UPDATE], Return=ERROR, 1"));
    }
}
