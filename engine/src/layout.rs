//! Where things live on a volume: two superblock pages, the journal ring, and
//! one data region per shard. Everything is counted in 4 KiB pages, whatever
//! the device's logical block size (512 B or 4 KiB).

/// The unit of the on-disk format.
pub const PAGE_BYTES: usize = 4096;
/// Pages 0 and 1 hold the two superblock copies.
pub const SUPERBLOCK_PAGES: u64 = 2;
/// The smallest journal: room for several maximal records and group commits.
pub const JOURNAL_PAGES_MIN: u64 = 2048; // 8 MiB
/// The default journal is 1/32 of the device, capped here.
pub const JOURNAL_PAGES_DEFAULT_MAX: u64 = 256 * 1024; // 1 GiB
/// The smallest data region a shard may have.
pub const SHARD_PAGES_MIN: u64 = 1024; // 4 MiB

/// The regions of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub capacity_pages: u64,
    pub journal_start_page: u64,
    pub journal_pages: u64,
    pub data_start_page: u64,
    pub pages_per_shard: u64,
    pub shard_count: u32,
}

/// Choices made at mkfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutParams {
    pub shard_count: u32,
    /// Journal size; `None` picks 1/32 of the device within limits.
    pub journal_bytes: Option<u64>,
}

impl Layout {
    /// Lays out a device of `capacity_bytes`.
    pub fn compute(capacity_bytes: u64, params: &LayoutParams) -> Result<Layout, String> {
        let capacity_pages = capacity_bytes / PAGE_BYTES as u64;
        if params.shard_count == 0 || params.shard_count as usize > crate::superblock::SHARDS_MAX {
            return Err(format!(
                "shard count {} is out of range 1..={}",
                params.shard_count,
                crate::superblock::SHARDS_MAX
            ));
        }
        let journal_pages = match params.journal_bytes {
            Some(bytes) => bytes / PAGE_BYTES as u64,
            None => (capacity_pages / 32).clamp(JOURNAL_PAGES_MIN, JOURNAL_PAGES_DEFAULT_MAX),
        };
        if journal_pages < JOURNAL_PAGES_MIN {
            return Err(format!("a journal of {journal_pages} pages is below the minimum of {JOURNAL_PAGES_MIN}"));
        }
        let data_start_page = SUPERBLOCK_PAGES + journal_pages;
        let data_pages = capacity_pages.saturating_sub(data_start_page);
        let pages_per_shard = data_pages / u64::from(params.shard_count);
        if pages_per_shard < SHARD_PAGES_MIN {
            return Err(format!(
                "a device of {capacity_bytes} bytes is too small for {} shards and a journal of {} MiB (each shard needs at least {} MiB)",
                params.shard_count,
                (journal_pages * PAGE_BYTES as u64) >> 20,
                (SHARD_PAGES_MIN * PAGE_BYTES as u64) >> 20
            ));
        }
        let layout = Layout {
            capacity_pages,
            journal_start_page: SUPERBLOCK_PAGES,
            journal_pages,
            data_start_page,
            pages_per_shard,
            shard_count: params.shard_count,
        };
        layout.validate().map_err(str::to_owned)?;
        Ok(layout)
    }

    /// Checks that the regions are in order, disjoint and on the device.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.shard_count == 0 || self.shard_count as usize > crate::superblock::SHARDS_MAX {
            return Err("shard count");
        }
        if self.journal_start_page < SUPERBLOCK_PAGES || self.journal_pages < JOURNAL_PAGES_MIN {
            return Err("journal region");
        }
        if self.data_start_page < self.journal_start_page + self.journal_pages {
            return Err("data region overlaps the journal");
        }
        let end = self
            .pages_per_shard
            .checked_mul(u64::from(self.shard_count))
            .and_then(|d| d.checked_add(self.data_start_page));
        match end {
            Some(end) if end <= self.capacity_pages && self.pages_per_shard >= SHARD_PAGES_MIN => Ok(()),
            _ => Err("data region past the end of the device"),
        }
    }

    /// First page and page count of `shard`'s data region.
    pub fn shard_region(&self, shard: u32) -> (u64, u64) {
        assert!(shard < self.shard_count);
        (self.data_start_page + u64::from(shard) * self.pages_per_shard, self.pages_per_shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_disjoint_and_fit() {
        for gib in [1u64, 8, 64, 1024] {
            for shards in [1u32, 2, 7, 32] {
                let layout =
                    Layout::compute(gib << 30, &LayoutParams { shard_count: shards, journal_bytes: None }).unwrap();
                let (last_start, last_len) = layout.shard_region(shards - 1);
                assert!(last_start + last_len <= layout.capacity_pages);
                assert!(layout.journal_start_page + layout.journal_pages <= layout.shard_region(0).0);
            }
        }
    }

    #[test]
    fn a_tiny_device_is_refused_with_a_reason() {
        let err = Layout::compute(16 << 20, &LayoutParams { shard_count: 4, journal_bytes: None }).unwrap_err();
        assert!(err.contains("too small"), "{err}");
    }
}
