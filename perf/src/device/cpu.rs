//! CPU time of this process, to report how many cores a run kept busy.

use std::time::Instant;

/// The kernel reports process times in USER_HZ ticks, which is 100 on every
/// Linux architecture's user ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// A point from which CPU use is measured.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    ticks: u64,
    at: Instant,
}

impl CpuClock {
    pub fn start() -> CpuClock {
        CpuClock { ticks: process_ticks().unwrap_or(0), at: Instant::now() }
    }

    /// Cores used on average since `start` (1.0 = one core busy throughout).
    pub fn cores_since(&self) -> f64 {
        let ticks = process_ticks().unwrap_or(self.ticks).saturating_sub(self.ticks);
        let wall = self.at.elapsed().as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        ticks as f64 / TICKS_PER_SECOND / wall
    }
}

/// utime + stime of this process, from /proc/self/stat.
fn process_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 of the file is fields[0] here; utime and stime are fields 14, 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_ticks_are_read_and_grow_with_work() {
        let before = process_ticks().expect("/proc/self/stat is readable");
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        while process_ticks().expect("readable") <= before {
            assert!(Instant::now() < deadline, "30 s of spinning never showed as CPU time");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        assert!(CpuClock::start().cores_since() >= 0.0);
    }
}
