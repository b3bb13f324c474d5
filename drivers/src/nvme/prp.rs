//! Physical Region Page entries: how a command tells the controller where
//! its data lives, one 4 KiB memory page at a time.
//!
//! Buffers come from the DMA pool: page aligned and contiguous in IOVA space,
//! at most one 2 MiB region (512 pages) long. So PRP1 is always the first
//! page with offset 0; a transfer of two pages puts the second in PRP2; a
//! longer one puts pages 2..n in a PRP list of at most 511 entries, which
//! always fits in the one list page each command tracker owns (512 entries):
//! no list chaining is ever needed, which the assertion below keeps true.

use crate::dma::{PAGE_BYTES, REGION_BYTES};

/// The memory page size the controller is configured with (CC.MPS = 0).
pub const MEMORY_PAGE_BYTES: usize = 4096;
/// Entries in one PRP list page.
pub const LIST_ENTRIES: usize = MEMORY_PAGE_BYTES / 8;

const _: () = assert!(PAGE_BYTES == MEMORY_PAGE_BYTES && REGION_BYTES / MEMORY_PAGE_BYTES - 1 <= LIST_ENTRIES);

/// What goes in PRP2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prp2 {
    /// One page: PRP2 is unused.
    None,
    /// Two pages: PRP2 is the second page.
    Page(u64),
    /// More: PRP2 points to a list of this many entries.
    List { entries: usize },
}

/// Lays out a transfer of `len_bytes` at page-aligned `data_iova`. For
/// `Prp2::List`, the entries are written to `list` (the tracker's list page,
/// as 64-bit little-endian IOVAs).
pub fn layout(data_iova: u64, len_bytes: usize, list: &mut [u8]) -> Prp2 {
    assert!(data_iova.is_multiple_of(MEMORY_PAGE_BYTES as u64), "DMA buffers are page aligned");
    assert!(len_bytes > 0 && len_bytes <= REGION_BYTES, "transfer of {len_bytes} bytes");
    let pages = len_bytes.div_ceil(MEMORY_PAGE_BYTES);
    match pages {
        1 => Prp2::None,
        2 => Prp2::Page(data_iova + MEMORY_PAGE_BYTES as u64),
        _ => {
            let entries = pages - 1;
            assert!(list.len() >= entries * 8, "PRP list page too small");
            for (i, slot) in list.chunks_exact_mut(8).take(entries).enumerate() {
                let page = data_iova + ((i + 1) * MEMORY_PAGE_BYTES) as u64;
                slot.copy_from_slice(&page.to_le_bytes());
            }
            Prp2::List { entries }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_two_and_many_pages() {
        let mut list = vec![0u8; MEMORY_PAGE_BYTES];
        let base = 0x20_0000u64;
        assert_eq!(layout(base, 512, &mut list), Prp2::None);
        assert_eq!(layout(base, 4096, &mut list), Prp2::None);
        assert_eq!(layout(base, 4097, &mut list), Prp2::Page(base + 4096));
        assert_eq!(layout(base, 8192, &mut list), Prp2::Page(base + 4096));
        assert_eq!(layout(base, 3 * 4096, &mut list), Prp2::List { entries: 2 });
        assert_eq!(&list[0..8], &(base + 4096).to_le_bytes());
        assert_eq!(&list[8..16], &(base + 8192).to_le_bytes());
    }

    #[test]
    fn the_largest_buffer_fits_one_list_page() {
        let mut list = vec![0u8; MEMORY_PAGE_BYTES];
        let base = 0x40_0000u64;
        assert_eq!(layout(base, REGION_BYTES, &mut list), Prp2::List { entries: 511 });
        assert_eq!(&list[510 * 8..511 * 8], &(base + 511 * 4096).to_le_bytes());
    }
}
