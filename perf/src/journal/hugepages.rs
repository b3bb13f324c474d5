//! 2 MiB hugepages for one `keel-perf journal` invocation: the journal's DMA
//! pool and the fio peer's buffers must both be hugepage-backed, or neither.
//!
//! Why it matters (BENCHMARKS.md, "Journal", "What the journal's 2x over fio
//! compared"): a 2 MiB write from a hugepage is one physically contiguous
//! segment and one request to the disk; from ordinary 4 KiB pages it is 512
//! segments, more than the virtio disk's `max_segments` (254), so the block
//! layer splits it into three requests, and this disk is then 1.5x slower.
//!
//! The pages are reserved on top of what the system already has (others may
//! be using those) and given back at the end; a killed run leaves them
//! reserved (`/proc/sys/vm/nr_hugepages`, a few dozen MiB).

use std::path::Path;

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";
const PAGE_BYTES: u64 = 2 << 20;

/// Hugepages this run added to the system's reservation; dropping it gives
/// them back.
#[derive(Debug)]
pub struct Reservation {
    added_pages: u64,
}

impl Reservation {
    /// Adds `bytes` worth of 2 MiB hugepages to the system's reservation and
    /// checks that they are free.
    pub fn add(bytes: u64) -> Result<Reservation, String> {
        let added_pages = bytes.div_ceil(PAGE_BYTES);
        let free_before = free_pages()?;
        let total = read_u64(Path::new(NR_HUGEPAGES))?;
        write_total(total + added_pages)?;
        let reservation = Reservation { added_pages };
        let free_after = free_pages()?;
        if free_after < free_before + added_pages {
            return Err(format!(
                "asked the kernel for {added_pages} more 2 MiB hugepages, got {} (memory fragmented?); \
                 run with --pages small to compare with ordinary pages on both sides",
                free_after.saturating_sub(free_before)
            ));
        }
        println!("hugepages: reserved {added_pages} more 2 MiB pages for this run (given back at the end)");
        Ok(reservation)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Relative to the value now, so that what others reserved meanwhile stays.
        if let Ok(total) = read_u64(Path::new(NR_HUGEPAGES)) {
            let _ = write_total(total.saturating_sub(self.added_pages));
        }
    }
}

fn free_pages() -> Result<u64, String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("HugePages_Free:"))
        .and_then(|rest| rest.trim().parse().ok())
        .ok_or_else(|| "/proc/meminfo has no HugePages_Free line".to_owned())
}

fn read_u64(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.trim().parse().map_err(|e| format!("{}: {e}", path.display()))
}

fn write_total(pages: u64) -> Result<(), String> {
    std::fs::write(NR_HUGEPAGES, pages.to_string()).map_err(|e| {
        format!("cannot reserve hugepages ({NR_HUGEPAGES}: {e}; not root?); run with --pages small instead")
    })
}
