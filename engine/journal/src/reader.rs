//! Reading the ring for recovery: logical offsets in, bytes out, through a
//! window of a few large reads.

use keel_reactor::io;

use crate::config::JournalRegion;
use crate::error::JournalError;
use crate::format::PAGE_BYTES;

/// Bytes read at once when the window moves.
const WINDOW_BYTES: usize = 1 << 20;

pub(crate) struct RingReader {
    region: JournalRegion,
    ring_bytes: u64,
    block_bytes: u64,
    transfer_bytes: usize,
    /// Logical offset of `window[0]`.
    window_start: u64,
    window: Vec<u8>,
}

impl RingReader {
    pub fn new(region: JournalRegion) -> RingReader {
        let info = io::device_info(region.device);
        let transfer_bytes =
            (info.max_transfer_bytes as usize).min(keel_drivers::dma::REGION_BYTES) / PAGE_BYTES * PAGE_BYTES;
        RingReader {
            region,
            ring_bytes: region.ring_bytes(),
            block_bytes: u64::from(info.block_size_bytes),
            transfer_bytes: transfer_bytes.max(PAGE_BYTES),
            window_start: 0,
            window: Vec::new(),
        }
    }

    /// The `len` bytes at logical offset `at`. The range must not cross the
    /// ring's end (records never do; callers check lengths first).
    pub async fn bytes(&mut self, at: u64, len: usize) -> Result<&[u8], JournalError> {
        let ring = self.ring_bytes;
        assert!(at % ring + len as u64 <= ring, "a read of the ring never crosses its end");
        let cached = at >= self.window_start && at + len as u64 <= self.window_start + self.window.len() as u64;
        if !cached {
            let start = at / PAGE_BYTES as u64 * PAGE_BYTES as u64;
            let to_ring_end = ring - start % ring;
            let wanted = ((at - start) as usize + len).next_multiple_of(PAGE_BYTES).max(WINDOW_BYTES);
            let window_bytes = (wanted as u64).min(to_ring_end) as usize;
            self.fill(start, window_bytes).await?;
        }
        let from = (at - self.window_start) as usize;
        Ok(&self.window[from..from + len])
    }

    async fn fill(&mut self, start: u64, len: usize) -> Result<(), JournalError> {
        self.window.clear();
        self.window_start = start;
        let first_byte = self.region.first_page * PAGE_BYTES as u64 + start % self.ring_bytes;
        let mut done = 0usize;
        while done < len {
            let piece = (len - done).min(self.transfer_bytes);
            let buf = io::alloc_buf(self.region.device, piece)
                .await
                .map_err(|e| JournalError::Config(format!("recovery read buffer: {e}")))?;
            let lba = (first_byte + done as u64) / self.block_bytes;
            let (buf, result) = io::read(self.region.device, lba, buf).await;
            result.map_err(JournalError::Io)?;
            self.window.extend_from_slice(&buf[..piece]);
            done += piece;
        }
        Ok(())
    }
}
