//! Where a journal lives, who it belongs to, and how it behaves.

use keel_reactor::io::DeviceId;

use crate::error::JournalError;
use crate::format::{record_bytes, PAGE_BYTES};
use crate::Lsn;

/// The ring: a run of whole pages on one device, given by the caller (the
/// superblock's journal start page and page count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalRegion {
    pub device: DeviceId,
    pub first_page: u64,
    pub page_count: u64,
}

impl JournalRegion {
    pub fn ring_bytes(&self) -> u64 {
        self.page_count * PAGE_BYTES as u64
    }
}

/// Which volume and epoch records belong to: both seed every record's CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalIdentity {
    pub volume_uuid: [u8; 16],
    pub epoch: u64,
}

/// Where the log's live part starts (the superblock's head) and where
/// appending goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalPosition {
    /// The first LSN recovery would replay.
    pub head_lsn: Lsn,
    /// Logical ring offset of that record (or of the batch holding it).
    pub head_offset: u64,
    /// The LSN the next record gets.
    pub next_lsn: Lsn,
    /// Logical ring offset where the next batch starts; a page boundary.
    pub next_offset: u64,
}

impl JournalPosition {
    /// An empty journal on a freshly formatted volume.
    pub const FRESH: JournalPosition = JournalPosition { head_lsn: 1, head_offset: 0, next_lsn: 1, next_offset: 0 };

    /// An empty log that starts where `next_lsn` / `next_offset` say (after a
    /// checkpoint that covered everything before).
    pub fn empty_at(next_lsn: Lsn, next_offset: u64) -> JournalPosition {
        JournalPosition { head_lsn: next_lsn, head_offset: next_offset, next_lsn, next_offset }
    }
}

/// How a batch becomes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DurabilityMode {
    /// No cache: at write completion. FUA if the device has it: every batch
    /// write carries FUA. Else write, then flush. FUA is the default: up to
    /// `writes_in_flight_max` batches become durable in parallel, each at its
    /// own completion, and with 64 small-record committers it measured more
    /// commits/s than write-then-flush (BENCHMARKS.md, "Journal").
    #[default]
    Auto,
    /// Every batch write carries FUA and is durable when it completes.
    Fua,
    /// Batch writes go to the cache; a flush issued after they completed makes
    /// them durable (one flush covers many batches).
    WriteThenFlush,
}

/// The mode in force, after looking at the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durable {
    AtCompletion,
    Fua,
    Flush,
}

/// Limits and timing of a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The largest payload of one record.
    pub record_payload_bytes_max: usize,
    /// The largest batch; clamped to half the ring. A batch is written as
    /// pieces of at most one DMA region (2 MiB) and the device's maximum
    /// transfer each, so a batch larger than a piece costs several device
    /// writes but packs records across piece boundaries (31 records of
    /// 256 KiB in 8 MiB, against 7 in 2 MiB). Must hold a maximal record.
    pub batch_bytes_max: usize,
    /// Device writes (batch pieces) in flight at once; while this many are in
    /// flight, records that durability waiters need accumulate into the next
    /// batch.
    pub writes_in_flight_max: usize,
    /// A batch is sealed for a durability waiter (or the batch delay) only
    /// when its pieces and the writes already busy (in flight or sealed) fit
    /// in this many slots, or nothing is busy; clamped to
    /// `writes_in_flight_max`. The slots above it take only batches sealed
    /// full: a deeper queue then keeps more bytes of full batches at the
    /// device without sealing smaller batches for every waiter (with 8 slots
    /// for both, 64 small-record committers got half as many records per
    /// batch and fewer commits/s; BENCHMARKS.md, "Journal").
    pub waiter_seal_writes_max: usize,
    /// A batch nobody waits for is written at most this long after its first
    /// record.
    pub batch_delay_us: u64,
    pub durability: DurabilityMode,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            record_payload_bytes_max: 1 << 20,
            batch_bytes_max: 8 << 20,
            writes_in_flight_max: 8,
            waiter_seal_writes_max: 4,
            batch_delay_us: 500,
            durability: DurabilityMode::Auto,
        }
    }
}

impl JournalConfig {
    /// The largest record payload a batch can hold on `device`. A record may
    /// span the pieces of a batch, so this is bounded by the batch size, not
    /// by the device's largest transfer or one DMA region.
    pub fn payload_bytes_fit(&self, _device: &keel_drivers::DeviceInfo) -> usize {
        let batch_bytes = self.batch_bytes_max / PAGE_BYTES * PAGE_BYTES;
        let room = batch_bytes.saturating_sub(crate::format::HEADER_BYTES);
        room / crate::format::RECORD_ALIGN_BYTES * crate::format::RECORD_ALIGN_BYTES
    }

    /// This configuration with `record_payload_bytes_max` lowered, if it must
    /// be, to what a batch on `device` can hold, so that a configuration
    /// chosen for one device still opens on a device with a smaller transfer
    /// limit.
    pub fn fitted_to(&self, device: &keel_drivers::DeviceInfo) -> JournalConfig {
        let fit = self.payload_bytes_fit(device);
        if self.record_payload_bytes_max <= fit {
            return self.clone();
        }
        tracing::info!(
            configured_bytes = self.record_payload_bytes_max,
            fitted_bytes = fit,
            max_transfer_bytes = device.max_transfer_bytes,
            "journal record payload limit lowered to what one batch can hold"
        );
        JournalConfig { record_payload_bytes_max: fit, ..self.clone() }
    }
}

/// Bytes of one batch piece (one device write and one DMA buffer): the
/// device's largest transfer, at most one DMA region, in whole pages.
fn piece_bytes_for(device: &keel_drivers::DeviceInfo) -> usize {
    let transfer_max = device.max_transfer_bytes as usize;
    transfer_max.min(keel_drivers::dma::REGION_BYTES) / PAGE_BYTES * PAGE_BYTES
}

/// Limits derived from the configuration, the device and the region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub ring_bytes: u64,
    pub batch_bytes: usize,
    /// Bytes of one piece of a batch: one DMA buffer, one device write.
    pub piece_bytes: usize,
    pub payload_bytes_max: usize,
    pub writes_in_flight_max: usize,
    /// `JournalConfig::waiter_seal_writes_max`, at most `writes_in_flight_max`.
    pub waiter_seal_writes_max: usize,
    pub batch_buffers: usize,
    pub block_bytes: u64,
    pub durable: Durable,
}

impl Limits {
    pub fn derive(
        config: &JournalConfig,
        region: &JournalRegion,
        device: &keel_drivers::DeviceInfo,
    ) -> Result<Limits, JournalError> {
        let err = |s: String| Err(JournalError::Config(s));
        let block_bytes = u64::from(device.block_size_bytes);
        if !block_bytes.is_power_of_two() || block_bytes > PAGE_BYTES as u64 {
            return err(format!("device block size {block_bytes} is not a power of two up to {PAGE_BYTES}"));
        }
        let region_end = (region.first_page + region.page_count) * PAGE_BYTES as u64;
        if region.page_count < 4 || region_end > device.capacity_bytes() {
            return err(format!(
                "region of {} pages at page {} does not fit the device",
                region.page_count, region.first_page
            ));
        }
        // A batch leaves room in the ring for the pages of others, or
        // appending could stall forever.
        let half_ring = (region.ring_bytes() / 2) as usize;
        let batch_bytes = config.batch_bytes_max.min(half_ring) / PAGE_BYTES * PAGE_BYTES;
        let piece_bytes = piece_bytes_for(device);
        let claim_max = record_bytes(config.record_payload_bytes_max);
        // A maximal record must fit a batch.
        if batch_bytes < PAGE_BYTES || piece_bytes < PAGE_BYTES || claim_max > batch_bytes {
            return err(format!(
                "a batch of {batch_bytes} bytes (at most half the ring, {} bytes) must hold a maximal record ({claim_max} bytes), in pieces of at least one page (device transfer limit {} bytes)",
                region.ring_bytes(),
                device.max_transfer_bytes
            ));
        }
        if config.writes_in_flight_max == 0 || config.writes_in_flight_max > 64 {
            return err(format!("writes_in_flight_max {} is outside 1..=64", config.writes_in_flight_max));
        }
        if config.waiter_seal_writes_max == 0 {
            return err("waiter_seal_writes_max must be at least 1".into());
        }
        let durable = match config.durability {
            _ if !device.volatile_write_cache => Durable::AtCompletion,
            DurabilityMode::Fua if !device.fua => return err("the device does not support FUA".into()),
            DurabilityMode::Fua => Durable::Fua,
            DurabilityMode::WriteThenFlush => Durable::Flush,
            DurabilityMode::Auto if device.fua => Durable::Fua,
            DurabilityMode::Auto => Durable::Flush,
        };
        Ok(Limits {
            ring_bytes: region.ring_bytes(),
            batch_bytes,
            piece_bytes,
            payload_bytes_max: config.record_payload_bytes_max,
            writes_in_flight_max: config.writes_in_flight_max,
            waiter_seal_writes_max: config.waiter_seal_writes_max.min(config.writes_in_flight_max),
            // Pieces in flight, an open batch's worth, and one more so that
            // the next batch can start while a full one waits for write slots.
            batch_buffers: config.writes_in_flight_max + batch_bytes.div_ceil(piece_bytes) + 1,
            block_bytes,
            durable,
        })
    }
}
