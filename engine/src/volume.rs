//! Creating, opening and closing a volume: the superblock pair on a device.
//!
//! - [`mkfs`] lays the volume out, zeroes the journal ring (so no record of an
//!   earlier volume on the same device can ever look current), and writes both
//!   superblock copies, generations 0 and 1.
//! - [`read_superblocks`] reads both copies and says what each holds; it writes
//!   nothing, so `keel inspect` can use it on any device.
//! - [`open`] takes the newest valid copy, refuses a device whose copies are
//!   both invalid (saying why, for each), and writes the next generation with
//!   the boot counter and journal epoch bumped and the clean flag cleared, so a
//!   crash from here on is recognised as one.
//! - [`close`] writes the next generation with the clean flag set; the engine
//!   calls it after its final checkpoint, when nothing is left to replay.
//!
//! Everything here runs on a reactor (`keel_reactor::io`), for instance under
//! `keel_reactor::block_on`. Every superblock write is followed by a flush
//! before the function returns, so what it returns is durable.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use keel_drivers::dma::DmaError;
use keel_drivers::{DeviceInfo, DmaBuf, IoError};
use keel_reactor::io::{self, DeviceId};

use crate::layout::{Layout, LayoutParams, PAGE_BYTES};
use crate::superblock::{Superblock, SuperblockError, FLAG_CLEAN, SHARD_STATE_BYTES};

/// The format's page must be made of whole logical blocks.
const BLOCK_BYTES_MAX: u32 = PAGE_BYTES as u32;
/// Journal zeroing: the largest write, and how many are in flight at once.
const ZERO_CHUNK_BYTES_MAX: usize = 1 << 20;
const ZERO_WRITES_IN_FLIGHT: usize = 8;

/// Why a volume could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{device}: logical blocks of {block_bytes} bytes are not supported (Keel needs 512 B to 4 KiB)")]
    BlockSize { device: String, block_bytes: u32 },
    #[error("{device}: cannot lay out a volume: {reason}")]
    Layout { device: String, reason: String },
    #[error("{device} already holds a Keel volume ({what}); pass --force to overwrite it")]
    Exists { device: String, what: String },
    #[error(
        "{device} holds data that is not a Keel volume (its first pages are not blank); pass --force to overwrite it"
    )]
    Foreign { device: String },
    #[error("{device} is blank: it holds no Keel volume yet (create one with `keel mkfs`)")]
    Blank { device: String },
    #[error(
        "{device} holds no valid Keel superblock, so the volume cannot be opened: \
         copy 0 (page 0): {first}; copy 1 (page 1): {second}"
    )]
    NoValidSuperblock { device: String, first: SuperblockError, second: SuperblockError },
    #[error("{device}: the volume needs {needed_pages} pages but the device has only {device_pages} (was it shrunk?)")]
    DeviceTooSmall { device: String, needed_pages: u64, device_pages: u64 },
    #[error(
        "{device}: the superblock (generation {generation}) read back after writing it is not the one written; \
         the device loses or changes writes"
    )]
    ReadBack { device: String, generation: u64 },
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("DMA buffer: {0}")]
    Dma(#[from] DmaError),
    #[error("cannot make a volume UUID: {0}")]
    Random(std::io::Error),
}

/// What one superblock page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotContents {
    /// Every byte is zero: never written.
    Blank,
    Valid(Superblock),
    /// Not a valid copy; `BadMagic` means nothing Keel wrote is there.
    Invalid(SuperblockError),
}

impl SlotContents {
    fn has_keel_magic(&self) -> bool {
        match self {
            SlotContents::Blank | SlotContents::Invalid(SuperblockError::BadMagic) => false,
            SlotContents::Valid(_) | SlotContents::Invalid(_) => true,
        }
    }

    fn error(&self) -> SuperblockError {
        match self {
            SlotContents::Blank => SuperblockError::BadMagic,
            SlotContents::Valid(_) => unreachable!("a valid slot has no error"),
            SlotContents::Invalid(e) => e.clone(),
        }
    }
}

/// Both superblock pages of a device, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperblockPair {
    /// `slots[i]` is page `i`.
    pub slots: [SlotContents; 2],
}

impl SuperblockPair {
    /// Both pages are all zero: a fresh device or file.
    pub fn is_blank(&self) -> bool {
        self.slots.iter().all(|s| *s == SlotContents::Blank)
    }

    /// Some page carries Keel's magic, valid or not.
    pub fn has_keel_magic(&self) -> bool {
        self.slots.iter().any(SlotContents::has_keel_magic)
    }

    /// The valid copy with the higher generation, and its page.
    pub fn newest(&self) -> Option<(usize, &Superblock)> {
        let valid = |i: usize| match &self.slots[i] {
            SlotContents::Valid(sb) => Some((i, sb)),
            _ => None,
        };
        match (valid(0), valid(1)) {
            (Some(a), Some(b)) => Some(if b.1.generation > a.1.generation { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The newest valid copy, or why there is none.
    pub fn choose(&self, device: &str) -> Result<Superblock, VolumeError> {
        if let Some((_, sb)) = self.newest() {
            return Ok(sb.clone());
        }
        if self.is_blank() {
            return Err(VolumeError::Blank { device: device.to_owned() });
        }
        Err(VolumeError::NoValidSuperblock {
            device: device.to_owned(),
            first: self.slots[0].error(),
            second: self.slots[1].error(),
        })
    }
}

/// Choices for a new volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkfsParams {
    pub layout: LayoutParams,
    /// Overwrite whatever the device holds.
    pub force: bool,
    /// Write zeros over the journal ring. Only a device known to read as zeros
    /// (a fresh memory device) may skip it.
    pub zero_journal: bool,
}

/// Reads both superblock pages.
pub async fn read_superblocks(device: DeviceId) -> Result<SuperblockPair, VolumeError> {
    let info = checked_info(device)?;
    let mut slots = [SlotContents::Blank, SlotContents::Blank];
    for (page, slot) in slots.iter_mut().enumerate() {
        let buf = io::alloc_buf(device, PAGE_BYTES).await?;
        let (buf, result) = io::read(device, page_lba(&info, page as u64), buf).await;
        result?;
        *slot = if buf.iter().all(|&b| b == 0) {
            SlotContents::Blank
        } else {
            Superblock::decode(&buf).map_or_else(SlotContents::Invalid, SlotContents::Valid)
        };
    }
    Ok(SuperblockPair { slots })
}

/// Creates a volume. `progress(done_bytes, total_bytes)` follows the journal
/// zeroing, the long part. Returns the superblock now in force (generation 1).
pub async fn mkfs<P: FnMut(u64, u64)>(
    device: DeviceId,
    params: &MkfsParams,
    mut progress: P,
) -> Result<Superblock, VolumeError> {
    let info = checked_info(device)?;
    if !params.force {
        refuse_if_in_use(device, &info).await?;
    }
    let layout = Layout::compute(info.capacity_bytes(), &params.layout)
        .map_err(|reason| VolumeError::Layout { device: info.name.clone(), reason })?;
    if params.zero_journal {
        zero_pages(device, &info, layout.journal_start_page, layout.journal_pages, &mut progress).await?;
    }
    // The journal is zero on the medium before any superblock points to it.
    io::flush(device).await?;
    let first = Superblock {
        generation: 0,
        volume_uuid: random_uuid()?,
        device_block_bytes: info.block_size_bytes,
        layout,
        flags: FLAG_CLEAN,
        journal_epoch: 0,
        // LSNs start at 1 (the journal's empty log begins there).
        journal_head_lsn: 1,
        journal_head_offset: 0,
        boot_counter: 0,
        created_unix_secs: now_unix_secs(),
        checkpoint_unix_secs: 0,
        shard_states: vec![[0; SHARD_STATE_BYTES]; layout.shard_count as usize],
    };
    let second = Superblock { generation: 1, ..first.clone() };
    write_page(device, &info, &first).await?;
    write_page(device, &info, &second).await?;
    io::flush(device).await?;
    let written = read_superblocks(device).await?;
    if written.newest().map(|(_, sb)| sb) != Some(&second) {
        return Err(VolumeError::ReadBack { device: info.name.clone(), generation: second.generation });
    }
    tracing::info!(device = %info.name, uuid = %format_uuid(&second.volume_uuid), "created a Keel volume");
    Ok(second)
}

/// Opens a volume: the newest valid copy, rewritten as the next generation
/// with the boot counter and journal epoch bumped and the clean flag cleared.
pub async fn open(device: DeviceId) -> Result<Superblock, VolumeError> {
    let info = checked_info(device)?;
    let pair = read_superblocks(device).await?;
    let current = pair.choose(&info.name)?;
    let device_pages = info.capacity_bytes() / PAGE_BYTES as u64;
    if current.layout.capacity_pages > device_pages {
        return Err(VolumeError::DeviceTooSmall {
            device: info.name.clone(),
            needed_pages: current.layout.capacity_pages,
            device_pages,
        });
    }
    let next = Superblock {
        generation: current.generation + 1,
        flags: current.flags & !FLAG_CLEAN,
        boot_counter: current.boot_counter + 1,
        journal_epoch: current.journal_epoch + 1,
        ..current
    };
    write_durably(device, &info, &next).await?;
    Ok(next)
}

/// The newest valid superblock, checked against the device, without writing
/// anything: the engine recovers from it and its first checkpoint writes the
/// next generation.
pub async fn read_current(device: DeviceId) -> Result<Superblock, VolumeError> {
    Ok(read_current_reporting(device).await?.0)
}

/// [`read_current`], and a description of the copy that was rejected, if
/// one was not valid and the other was used.
pub async fn read_current_reporting(device: DeviceId) -> Result<(Superblock, Option<String>), VolumeError> {
    let info = checked_info(device)?;
    let pair = read_superblocks(device).await?;
    let current = pair.choose(&info.name)?;
    // mkfs writes both copies and nothing ever erases one, so a copy that is
    // not valid on a volume is damage, even an all-zero one.
    let rejected = pair.slots.iter().enumerate().find_map(|(page, slot)| match slot {
        SlotContents::Invalid(e) => Some(format!("copy {page} (page {page}): {e}")),
        SlotContents::Blank => Some(format!("copy {page} (page {page}): all zeros")),
        SlotContents::Valid(_) => None,
    });
    let device_pages = info.capacity_bytes() / PAGE_BYTES as u64;
    if current.layout.capacity_pages > device_pages {
        return Err(VolumeError::DeviceTooSmall {
            device: info.name.clone(),
            needed_pages: current.layout.capacity_pages,
            device_pages,
        });
    }
    Ok((current, rejected))
}

/// Writes `sb` to its slot and flushes: when this returns, `sb` is durable.
pub async fn write_superblock(device: DeviceId, sb: &Superblock) -> Result<(), VolumeError> {
    let info = checked_info(device)?;
    write_durably(device, &info, sb).await
}

/// Marks the volume cleanly shut down: `sb` (the superblock in force) is
/// rewritten as the next generation with the clean flag set.
pub async fn close(device: DeviceId, sb: &Superblock) -> Result<Superblock, VolumeError> {
    let info = checked_info(device)?;
    let next = Superblock { generation: sb.generation + 1, flags: sb.flags | FLAG_CLEAN, ..sb.clone() };
    write_durably(device, &info, &next).await?;
    Ok(next)
}

/// "8-4-4-4-12" hexadecimal, as UUIDs are usually printed.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn checked_info(device: DeviceId) -> Result<DeviceInfo, VolumeError> {
    let info = io::device_info(device);
    let block = info.block_size_bytes;
    if !block.is_power_of_two() || !(512..=BLOCK_BYTES_MAX).contains(&block) {
        return Err(VolumeError::BlockSize { device: info.name, block_bytes: block });
    }
    Ok(info)
}

async fn refuse_if_in_use(device: DeviceId, info: &DeviceInfo) -> Result<(), VolumeError> {
    let pair = read_superblocks(device).await?;
    if pair.is_blank() {
        return Ok(());
    }
    if !pair.has_keel_magic() {
        return Err(VolumeError::Foreign { device: info.name.clone() });
    }
    let what = match pair.newest() {
        Some((_, sb)) => format!("uuid {}, generation {}", format_uuid(&sb.volume_uuid), sb.generation),
        None => "both superblock copies damaged".to_owned(),
    };
    Err(VolumeError::Exists { device: info.name.clone(), what })
}

fn page_lba(info: &DeviceInfo, page: u64) -> u64 {
    page * (PAGE_BYTES as u64 / u64::from(info.block_size_bytes))
}

async fn write_page(device: DeviceId, info: &DeviceInfo, sb: &Superblock) -> Result<(), VolumeError> {
    let mut buf = io::alloc_buf(device, PAGE_BYTES).await?;
    sb.encode(&mut buf);
    let (_, result) = io::write(device, page_lba(info, sb.slot_page()), buf, false).await;
    Ok(result?)
}

/// Writes `sb`, flushes, and reads the page back: nothing else on the device
/// checks the superblock (it is the root), so a write the device lost,
/// misdirected, tore or corrupted is caught here, where the caller can still
/// keep the previous copy in force, rather than at the next open.
async fn write_durably(device: DeviceId, info: &DeviceInfo, sb: &Superblock) -> Result<(), VolumeError> {
    write_page(device, info, sb).await?;
    io::flush(device).await?;
    let mut expected = vec![0u8; PAGE_BYTES];
    sb.encode(&mut expected);
    let buf = io::alloc_buf(device, PAGE_BYTES).await?;
    let (buf, result) = io::read(device, page_lba(info, sb.slot_page()), buf).await;
    result?;
    if buf[..] != expected[..] {
        return Err(VolumeError::ReadBack { device: info.name.clone(), generation: sb.generation });
    }
    Ok(())
}

/// Writes zeros over `pages` pages from `first_page`, several writes in flight.
async fn zero_pages<P: FnMut(u64, u64)>(
    device: DeviceId,
    info: &DeviceInfo,
    first_page: u64,
    pages: u64,
    progress: &mut P,
) -> Result<(), VolumeError> {
    let chunk_bytes = ZERO_CHUNK_BYTES_MAX.min(info.max_transfer_bytes as usize) / PAGE_BYTES * PAGE_BYTES;
    let chunk_pages = (chunk_bytes / PAGE_BYTES).max(1) as u64;
    let total_bytes = pages * PAGE_BYTES as u64;
    let mut in_flight = std::collections::VecDeque::new();
    let mut done_bytes = 0u64;
    let mut page = first_page;
    while page < first_page + pages || !in_flight.is_empty() {
        if page < first_page + pages && in_flight.len() < ZERO_WRITES_IN_FLIGHT {
            let n = chunk_pages.min(first_page + pages - page);
            let len_bytes = n as usize * PAGE_BYTES;
            let mut buf: DmaBuf = io::alloc_buf(device, len_bytes).await?;
            buf.fill(0);
            let lba = page_lba(info, page);
            in_flight.push_back(keel_reactor::spawn(async move { io::write(device, lba, buf, false).await.1 }));
            page += n;
            continue;
        }
        let oldest = in_flight.pop_front().expect("the loop runs while writes are in flight");
        oldest.await?;
        done_bytes = (done_bytes + chunk_pages * PAGE_BYTES as u64).min(total_bytes);
        progress(done_bytes, total_bytes);
    }
    progress(total_bytes, total_bytes);
    Ok(())
}

pub(crate) fn now_unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A random (version 4) UUID from the kernel's generator.
fn random_uuid() -> Result<[u8; 16], VolumeError> {
    let mut uuid = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut uuid)).map_err(VolumeError::Random)?;
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    Ok(uuid)
}
