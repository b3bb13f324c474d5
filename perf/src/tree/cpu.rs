//! CPU time of a benchmark phase, this process's and its waited-for
//! children's (db_bench), so that a point read's cost can be compared per
//! operation: a CPU figure survives a loaded machine better than a rate.

/// The kernel reports process times in USER_HZ ticks, 100 per second on
/// every Linux user ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system, all threads) used so far by this process
/// and by the children it has waited for.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub own_s: f64,
    pub children_s: f64,
}

impl CpuTimes {
    /// From /proc/self/stat; zero when it cannot be read (the figure is
    /// then reported as 0, never invented).
    pub fn now() -> CpuTimes {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return CpuTimes::default() };
        // The command name may contain spaces; fields resume after its ')'.
        let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
        let fields: Vec<u64> = rest.split_whitespace().skip(11).take(4).filter_map(|f| f.parse().ok()).collect();
        let [utime, stime, cutime, cstime] = fields[..] else { return CpuTimes::default() };
        CpuTimes {
            own_s: (utime + stime) as f64 / TICKS_PER_SECOND,
            children_s: (cutime + cstime) as f64 / TICKS_PER_SECOND,
        }
    }
}

/// Microseconds of CPU per operation.
pub fn us_per_op(cpu_s: f64, ops: u64) -> f64 {
    cpu_s * 1e6 / ops.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_read_and_grows_with_work() {
        let before = CpuTimes::now();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        while CpuTimes::now().own_s <= before.own_s {
            assert!(std::time::Instant::now() < deadline, "30 s of spinning never showed as CPU time");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        assert!(before.children_s >= 0.0);
    }
}
