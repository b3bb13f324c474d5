//! Printing a measured point: the journal's median and spread, each peer's,
//! and the per-run ratios (each journal run against the peer run next to it).

use keel_journal::JournalStats;

/// One measured journal run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub commits_per_sec: f64,
    pub bytes_per_sec: f64,
    /// Cores the whole process kept busy over the measured window.
    pub cpu_cores: f64,
    pub stats: JournalStats,
}

/// (median, min, max) of `values`, which must not be empty.
pub fn median_and_spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    (median, values[0], values[values.len() - 1])
}

/// Prints the journal's line for `metric` (already in the unit `name` ends
/// with), with group-commit figures from the median run.
pub fn journal_line(name: &str, journal: &[Sample], metric: impl Fn(&Sample) -> f64) {
    let (median, min, max) = median_and_spread(journal.iter().map(&metric).collect());
    let mut by_metric: Vec<&Sample> = journal.iter().collect();
    by_metric.sort_by(|a, b| metric(a).total_cmp(&metric(b)));
    let mid = &by_metric[by_metric.len() / 2].stats;
    let per_batch = mid.records as f64 / mid.batches.max(1) as f64;
    let per_flush = mid.records as f64 / mid.flushes.max(1) as f64;
    let batch_kib = mid.batch_bytes_written as f64 / mid.batches.max(1) as f64 / 1024.0;
    let write_kib = mid.batch_bytes_written as f64 / mid.writes.max(1) as f64 / 1024.0;
    println!(
        "journal {name}: median {median:.1} (min {min:.1}, max {max:.1}); records/batch {per_batch:.1}, KiB/batch {batch_kib:.0}, KiB/write {write_kib:.0}, records/flush {per_flush:.1}, reserve waits {}",
        mid.reserve_waits
    );
    // How many device writes were slivers (tails of batches that end just
    // past a piece boundary, or small batches): each takes a write slot like
    // a whole piece, so they cut the bytes the slots keep at the device.
    let short_percent = 100.0 * mid.writes_under_quarter_piece as f64 / mid.writes.max(1) as f64;
    println!(
        "  writes: {} in {} batches, {} ({short_percent:.1}%) under a quarter piece",
        mid.writes, mid.batches, mid.writes_under_quarter_piece
    );
}

/// Prints CPU seconds per GB written: the journal's (median of its runs)
/// and each fio peer's (median of fio's own usr+sys), so that a reader sees
/// how much of a shared machine each needs for the same bandwidth.
pub fn cpu_line(journal: &[Sample], peers: &[(&str, &[(f64, f64)])]) {
    let per_gb = |cores: f64, bytes_per_sec: f64| if bytes_per_sec > 0.0 { cores / (bytes_per_sec / 1e9) } else { 0.0 };
    let (journal_median, _, _) =
        median_and_spread(journal.iter().map(|s| per_gb(s.cpu_cores, s.bytes_per_sec)).collect());
    let (cores, _, _) = median_and_spread(journal.iter().map(|s| s.cpu_cores).collect());
    let mut line = format!("  CPU: journal {journal_median:.3} core-s per GB ({cores:.2} cores)");
    for (name, runs) in peers {
        if runs.is_empty() {
            continue;
        }
        let (median, _, _) = median_and_spread(runs.iter().map(|&(cores, bps)| per_gb(cores, bps)).collect());
        line.push_str(&format!(", {name} {median:.3}"));
    }
    println!("{line}");
}

/// Prints a peer's line: its values (in the journal's unit) and the per-run
/// ratios journal/peer.
pub fn peer_line(peer: &str, journal: &[f64], peer_values: &[f64]) {
    let (median, min, max) = median_and_spread(peer_values.to_vec());
    let ratios: Vec<f64> = journal.iter().zip(peer_values).map(|(j, p)| j / p).collect();
    let (ratio, ratio_min, ratio_max) = median_and_spread(ratios);
    println!(
        "  {peer}: median {median:.1} (min {min:.1}, max {max:.1}); ratio journal/peer: median {ratio:.2}x (min {ratio_min:.2}x, max {ratio_max:.2}x)"
    );
}
