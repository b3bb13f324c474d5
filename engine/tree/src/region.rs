//! The shard's region of the device, and reads and writes of whole pages in
//! it. Transfers larger than the device's maximum (or a DMA buffer) are split
//! and run concurrently; the caller gets plain bytes.

use keel_drivers::dma::REGION_BYTES;
use keel_drivers::{DmaBuf, IoError};
use keel_reactor::io::{self, DeviceId};

use crate::error::{BlockKind, CorruptReason, TreeError};
use crate::limits::{pages_for, PAGE_BYTES};
use crate::sync::join_all;

/// Where the tree lives: pages `first_page .. first_page + pages` of a device.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    pub device: DeviceId,
    pub first_page: u64,
    pub pages: u64,
    blocks_per_page: u64,
    chunk_pages: u64,
}

impl Region {
    /// Checks the region against the device the calling reactor sees.
    pub fn new(device: DeviceId, first_page: u64, pages: u64) -> Result<Region, TreeError> {
        let info = io::device_info(device);
        let block = u64::from(info.block_size_bytes);
        if block == 0 || !(PAGE_BYTES as u64).is_multiple_of(block) {
            return Err(TreeError::Config(format!("device block size {block} does not divide the page size")));
        }
        let blocks_per_page = PAGE_BYTES as u64 / block;
        let end = first_page.checked_add(pages).and_then(|e| e.checked_mul(blocks_per_page));
        if pages == 0 || end.is_none_or(|e| e > info.capacity_blocks) {
            return Err(TreeError::Config(format!(
                "region of {pages} pages at page {first_page} does not fit on {} ({} blocks)",
                info.name, info.capacity_blocks
            )));
        }
        let max_bytes = (info.max_transfer_bytes as usize).min(REGION_BYTES);
        let chunk_pages = (max_bytes / PAGE_BYTES).max(1) as u64;
        Ok(Region { device, first_page, pages, blocks_per_page, chunk_pages })
    }

    fn check(&self, what: BlockKind, address: u64, pages: u64) -> Result<(), TreeError> {
        match address.checked_add(pages) {
            Some(end) if end <= self.pages => Ok(()),
            _ => Err(TreeError::corrupt(what, address, CorruptReason::OutOfRegion { pages: self.pages })),
        }
    }

    fn lba(&self, page: u64) -> u64 {
        (self.first_page + page) * self.blocks_per_page
    }

    /// Reads `len_bytes` starting at page `address` of the region.
    pub async fn read(&self, what: BlockKind, address: u64, len_bytes: usize) -> Result<Vec<u8>, TreeError> {
        let pages = pages_for(len_bytes).max(1);
        self.check(what, address, pages)?;
        let mut parts = Vec::new();
        let mut page = 0;
        while page < pages {
            let n = (pages - page).min(self.chunk_pages);
            parts.push(self.read_chunk(address + page, n));
            page += n;
        }
        let mut parts = join_all(parts).await;
        if parts.len() == 1 {
            if let Some(part) = parts.pop() {
                // One chunk (every page read of a get): its copy is the result.
                let mut out = part.map_err(|e| e.into_tree_error(what, address))?;
                out.truncate(len_bytes);
                return Ok(out);
            }
        }
        let mut out = Vec::with_capacity(len_bytes);
        for part in parts {
            let bytes = part.map_err(|e| e.into_tree_error(what, address))?;
            out.extend_from_slice(&bytes);
        }
        out.truncate(len_bytes);
        Ok(out)
    }

    async fn read_chunk(&self, page: u64, pages: u64) -> Result<Vec<u8>, ChunkError> {
        let len = pages as usize * PAGE_BYTES;
        let buf = io::alloc_buf(self.device, len).await.map_err(ChunkError::Dma)?;
        let (buf, result) = io::read(self.device, self.lba(page), buf).await;
        result.map(|()| buf.to_vec()).map_err(ChunkError::Io)
    }

    /// Writes `data` (padded with zeros to whole pages) at page `address`.
    pub async fn write(&self, what: BlockKind, address: u64, data: &[u8]) -> Result<(), TreeError> {
        let pages = pages_for(data.len()).max(1);
        self.check(what, address, pages)?;
        let chunk_bytes = self.chunk_pages as usize * PAGE_BYTES;
        let chunks: Vec<&[u8]> = data.chunks(chunk_bytes).collect();
        let parts: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(i, part)| self.write_chunk(address + i as u64 * self.chunk_pages, std::slice::from_ref(part)))
            .collect();
        for r in join_all(parts).await {
            r.map_err(|e| e.into_tree_error(what, address))?;
        }
        Ok(())
    }

    /// Writes `buf` (its length; padded with zeros to whole pages) at page
    /// `address`. A buffer of this device's pool that holds whole pages and
    /// fits one transfer goes to the device as it is; anything else is
    /// copied, as [`Region::write`] does.
    pub async fn write_buf(&self, what: BlockKind, address: u64, mut buf: DmaBuf) -> Result<(), TreeError> {
        let len = buf.len();
        let pages = pages_for(len).max(1);
        let padded = pages as usize * PAGE_BYTES;
        if pages > self.chunk_pages || buf.capacity() < padded || !buf.is_from(&io::dma_pool(self.device)) {
            return self.write(what, address, &buf).await;
        }
        self.check(what, address, pages)?;
        buf.set_len(padded);
        buf[len..].fill(0);
        let (_, result) = io::write(self.device, self.lba(address), buf, false).await;
        result.map_err(|source| TreeError::Io { what, address, source })
    }

    /// Writes `parts` from page `address` on, each starting on its own page
    /// (`pages_for(len).max(1)` pages each, zeros after each part's bytes):
    /// the nodes of one run (`write_runs.rs`). When they fit one transfer,
    /// they are copied once, straight into one DMA buffer; gathering them
    /// into a `Vec` first cost a second copy of every byte, the `Vec`'s
    /// regrowth copies, and fresh pages for a buffer of up to 512 KiB per
    /// run (BENCHMARKS.md, "Fill CPU (session 16, helper tree16)").
    pub async fn write_parts(&self, what: BlockKind, address: u64, parts: &[&[u8]]) -> Result<(), TreeError> {
        let pages: u64 = parts.iter().map(|p| pages_for(p.len()).max(1)).sum::<u64>().max(1);
        if pages > self.chunk_pages {
            return self.write(what, address, &crate::write_runs::run_bytes(parts.iter().copied())).await;
        }
        self.check(what, address, pages)?;
        self.write_chunk(address, parts).await.map_err(|e| e.into_tree_error(what, address))
    }

    /// One device write at `page` of `parts`, each from a page boundary and
    /// padded with zeros to whole pages (`pages_for(len).max(1)` each),
    /// copied once into one DMA buffer; the caller keeps it within one
    /// transfer.
    async fn write_chunk(&self, page: u64, parts: &[&[u8]]) -> Result<(), ChunkError> {
        let padded = |part: &[u8]| pages_for(part.len()).max(1) as usize * PAGE_BYTES;
        let len = parts.iter().map(|p| padded(p)).sum::<usize>();
        let mut buf = io::alloc_buf(self.device, len).await.map_err(ChunkError::Dma)?;
        let mut at = 0;
        for part in parts {
            let end = at + padded(part);
            buf[at..at + part.len()].copy_from_slice(part);
            buf[at + part.len()..end].fill(0);
            at = end;
        }
        let (_, result) = io::write(self.device, self.lba(page), buf, false).await;
        result.map_err(ChunkError::Io)
    }
}

/// Why one piece of a transfer failed.
enum ChunkError {
    Io(IoError),
    Dma(keel_drivers::dma::DmaError),
}

impl ChunkError {
    fn into_tree_error(self, what: BlockKind, address: u64) -> TreeError {
        match self {
            ChunkError::Io(source) => TreeError::Io { what, address, source },
            ChunkError::Dma(e) => TreeError::Dma(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};
    use keel_drivers::{BlockDevice, DmaPool};

    use super::*;
    use crate::write_runs::run_bytes;

    const DEV: DeviceId = DeviceId(0);

    /// Writes `parts` with `write_parts` at page 2 and gathered by
    /// `run_bytes` through `write` at page 40 of a fresh memory device, and
    /// returns the device's bytes of each, `pages` pages long.
    fn both_ways(parts: Vec<Vec<u8>>, max_transfer_bytes: u32, pages: usize) -> (Vec<u8>, Vec<u8>) {
        let store = Arc::new(MemoryStore::new());
        let config = MemoryDeviceConfig { capacity_bytes: 64 << 20, max_transfer_bytes, ..Default::default() };
        let pool = Arc::new(DmaPool::for_tests(16 << 20));
        let device: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::with_store(&config, pool, Arc::clone(&store)));
        // Old contents, so that padding left unwritten would show.
        let old = vec![0xEE; 100 * PAGE_BYTES];
        keel_reactor::block_on(&[device], async move {
            let region = Region::new(DEV, 1, 1000).unwrap();
            region.write(BlockKind::Node, 0, &old).await.unwrap();
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            region.write_parts(BlockKind::Leaf, 2, &slices).await.unwrap();
            region.write(BlockKind::Leaf, 40, &run_bytes(slices.iter().copied())).await.unwrap();
        })
        .unwrap();
        let read = |page: u64| {
            let mut out = vec![0; pages * PAGE_BYTES];
            store.read((1 + page) * PAGE_BYTES as u64, &mut out);
            out
        };
        (read(2), read(40))
    }

    #[test]
    fn a_run_written_in_parts_is_the_run_gathered_and_written() {
        let parts = vec![vec![1u8; PAGE_BYTES + 5], vec![2u8; 7], vec![3u8; 3 * PAGE_BYTES]];
        let (parts_way, gathered_way) = both_ways(parts.clone(), 2 << 20, 6);
        assert_eq!(parts_way, gathered_way);
        assert_eq!(&parts_way[..PAGE_BYTES + 5], parts[0].as_slice());
        assert!(parts_way[PAGE_BYTES + 5..2 * PAGE_BYTES].iter().all(|&b| b == 0), "padded with zeros");
        assert_eq!(&parts_way[2 * PAGE_BYTES..2 * PAGE_BYTES + 7], parts[1].as_slice());
        assert_eq!(&parts_way[3 * PAGE_BYTES..], parts[2].as_slice());
    }

    #[test]
    fn a_run_larger_than_one_transfer_is_written_the_same() {
        // 3 pages of transfer: the 5-page run takes the gathering path.
        let parts = vec![vec![4u8; 2 * PAGE_BYTES + 1], vec![5u8; 2 * PAGE_BYTES - 3]];
        let (parts_way, gathered_way) = both_ways(parts, 3 * PAGE_BYTES as u32, 6);
        assert_eq!(parts_way, gathered_way);
    }
}
