//! The locked-memory limit. VFIO pins every page it maps for DMA and counts
//! it against RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK.

use super::checks::Step;

const CAP_IPC_LOCK: u32 = 14;

/// The soft "Max locked memory" of /proc/self/limits, in bytes (`None`:
/// unlimited).
pub fn parse_memlock(limits: &str) -> Option<Option<u64>> {
    let line = limits.lines().find(|l| l.starts_with("Max locked memory"))?;
    let soft = line["Max locked memory".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

/// Whether CapEff in /proc/self/status has CAP_IPC_LOCK.
pub fn parse_has_ipc_lock(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Checks that `dma_bytes` can be pinned by a process with this process's
/// limits, and says what a service running as another user needs.
pub fn memlock(dma_bytes: u64) -> Step {
    let what = "memlock limit";
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hint = "a service running without CAP_IPC_LOCK needs LimitMEMLOCK=infinity (systemd) or `ulimit -l unlimited`";
    if parse_has_ipc_lock(&status) {
        return Step::ok(what, format!("this process has CAP_IPC_LOCK (no limit applies); {hint}"));
    }
    match parse_memlock(&limits) {
        Some(None) => Step::ok(what, "unlimited"),
        Some(Some(limit)) if limit >= dma_bytes => Step::ok(what, format!("{limit} bytes, enough for {dma_bytes}")),
        Some(Some(limit)) => Step::fail(
            what,
            format!("{limit} bytes cannot pin a DMA pool of {dma_bytes} bytes: VFIO's mapping would fail; {hint}"),
        ),
        None => Step::warn(what, format!("cannot read the limit from /proc/self/limits; {hint}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_and_capabilities_are_read_from_proc() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max locked memory         8388608              8388608              bytes\n";
        assert_eq!(parse_memlock(limits), Some(Some(8 << 20)));
        let unlimited = "Max locked memory         unlimited            unlimited            bytes\n";
        assert_eq!(parse_memlock(unlimited), Some(None));
        assert_eq!(parse_memlock("nothing"), None);
        assert!(parse_has_ipc_lock("Name:\tkeel\nCapEff:\t000001ffffffffff\n"));
        assert!(!parse_has_ipc_lock("CapEff:\t0000000000000000\n"));
        assert!(parse_has_ipc_lock("CapEff:\t0000000000004000\n"));
    }
}
