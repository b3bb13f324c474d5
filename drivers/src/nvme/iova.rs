//! Where the controller sees the DMA pool: its I/O virtual addresses.
//!
//! The pool is one contiguous virtual mapping, mapped into the device's
//! IOMMU domain in one piece. When the IOMMU accepts the pool's virtual
//! addresses, IOVA = VA and translation is the identity; when it does not
//! (an emulated or small IOMMU with 39 address bits cannot reach the
//! 47-bit addresses user space lives at), the pool is mapped at the lowest
//! valid IOVA instead and translation is one subtraction and one addition.

use super::error::NvmeError;
use super::vfio::{IovaRange, Vfio};
use crate::dma::{DmaPool, REGION_BYTES};

/// The pool's mapping into one device's IOVA space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IovaWindow {
    pub va_base: usize,
    pub len_bytes: usize,
    pub iova_base: u64,
}

impl IovaWindow {
    /// The device address of pool address `addr`.
    pub fn iova(&self, addr: usize) -> u64 {
        debug_assert!(self.contains(addr), "address {addr:#x} outside the DMA pool");
        (addr - self.va_base) as u64 + self.iova_base
    }

    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.va_base && addr < self.va_base + self.len_bytes
    }

    /// Chooses where to map `len_bytes` at `va_base` given the valid ranges
    /// (empty: unknown, then IOVA = VA is tried).
    pub fn choose(va_base: usize, len_bytes: usize, ranges: &[IovaRange]) -> Option<IovaWindow> {
        let fits = |start: u64, range: &IovaRange| {
            start >= range.start && start.checked_add(len_bytes as u64 - 1).is_some_and(|end| end <= range.end)
        };
        if ranges.is_empty() || ranges.iter().any(|r| fits(va_base as u64, r)) {
            return Some(IovaWindow { va_base, len_bytes, iova_base: va_base as u64 });
        }
        // Keep IOVA 0 and the first region unused: a zero PRP is a bug's
        // signature, and should fault rather than reach the pool.
        let align = REGION_BYTES as u64;
        ranges.iter().find_map(|r| {
            let start = r.start.max(align).div_ceil(align) * align;
            fits(start, r).then_some(IovaWindow { va_base, len_bytes, iova_base: start })
        })
    }

    /// Maps the whole pool into `vfio`'s container.
    pub fn map(vfio: &Vfio, pool: &DmaPool) -> Result<IovaWindow, NvmeError> {
        let regions = pool.regions();
        let va_base = regions.first().map(|r| r.addr).unwrap_or(0);
        let len_bytes = pool.size_bytes();
        assert!(
            regions.iter().enumerate().all(|(i, r)| r.addr == va_base + i * REGION_BYTES),
            "the DMA pool is one contiguous mapping"
        );
        let ranges = vfio.iova_ranges();
        let window = IovaWindow::choose(va_base, len_bytes, &ranges).ok_or_else(|| NvmeError::DmaMap {
            pci_address: vfio.pci_address().to_owned(),
            size_bytes: len_bytes,
            source: std::io::Error::other(format!("no valid IOVA range can hold the pool (ranges: {ranges:?})")),
        })?;
        if window.iova_base != va_base as u64 {
            tracing::info!(
                pci = vfio.pci_address(),
                iova_base = format_args!("{:#x}", window.iova_base),
                "the IOMMU cannot address the pool's virtual addresses; mapping it at a lower IOVA"
            );
        }
        vfio.map_dma(va_base, window.iova_base, len_bytes)?;
        Ok(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_the_iommu_reaches_the_pool_else_lowest_fit() {
        let va = 0x7f12_3440_0000usize;
        let len = 64 << 20;
        let wide = [IovaRange { start: 0, end: (1 << 48) - 1 }];
        assert_eq!(IovaWindow::choose(va, len, &wide).map(|w| w.iova_base), Some(va as u64));
        assert_eq!(IovaWindow::choose(va, len, &[]).map(|w| w.iova_base), Some(va as u64));
        let narrow = [IovaRange { start: 0, end: 0xfedf_ffff }, IovaRange { start: 0xfef0_0000, end: (1 << 39) - 1 }];
        let w = IovaWindow::choose(va, len, &narrow).expect("a low window");
        assert_eq!(w.iova_base, REGION_BYTES as u64);
        assert_eq!(w.iova(va + 4096), REGION_BYTES as u64 + 4096);
        let tiny = [IovaRange { start: 0, end: 0xffff }];
        assert_eq!(IovaWindow::choose(va, len, &tiny), None);
    }
}
