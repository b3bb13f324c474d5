//! The superblock: what a volume is and where its newest checkpoint lives.
//!
//! Two copies live in pages 0 and 1; a write of generation `g` goes to page
//! `g % 2`, so the previous copy survives a torn write. Mount reads both and
//! takes the valid one with the higher generation. The byte layout is in
//! `docs/FORMAT.md` ("Superblock"); the constants below are its source of truth.

use crate::layout::{Layout, PAGE_BYTES};

pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"KEELSUP1";
/// 2: leaves with their keys' shared prefix once and varint lengths
/// (FORMAT.md "Leaf payload").
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of opaque checkpoint state each shard keeps in the superblock.
pub const SHARD_STATE_BYTES: usize = 96;
/// The most shards a volume can have (their states must fit in one page).
pub const SHARDS_MAX: usize = 32;
const SHARD_TABLE_OFFSET: usize = 256;
const CRC_OFFSET: usize = PAGE_BYTES - 4;

/// Bit 0 of `flags`: the volume was shut down cleanly (nothing to replay).
pub const FLAG_CLEAN: u32 = 1;

/// Decoded contents of one superblock copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub generation: u64,
    pub volume_uuid: [u8; 16],
    pub device_block_bytes: u32,
    pub layout: Layout,
    pub flags: u32,
    /// Journal records must carry this epoch; bumped each time the volume is
    /// opened, so records written after an earlier crash point can never be
    /// mistaken for current ones.
    pub journal_epoch: u64,
    /// First LSN recovery must replay.
    pub journal_head_lsn: u64,
    /// Logical byte offset (in the journal ring) of the record `journal_head_lsn`.
    pub journal_head_offset: u64,
    /// Incremented on every open; the NFS write verifier derives from it.
    pub boot_counter: u64,
    pub created_unix_secs: u64,
    pub checkpoint_unix_secs: u64,
    /// Per shard, the tree's checkpoint state (opaque here; all zero = empty).
    pub shard_states: Vec<[u8; SHARD_STATE_BYTES]>,
}

/// Why a superblock copy was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    #[error("bad magic (not a Keel volume, or never formatted)")]
    BadMagic,
    #[error("checksum mismatch (torn or corrupt)")]
    BadChecksum,
    #[error("format version {0} is not supported by this build (supports {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("inconsistent field: {0}")]
    Inconsistent(&'static str),
}

fn put_u32(page: &mut [u8], at: usize, v: u32) {
    page[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(page: &mut [u8], at: usize, v: u64) {
    page[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(page: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(page[at..at + 4].try_into().expect("4 bytes"))
}

fn get_u64(page: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(page[at..at + 8].try_into().expect("8 bytes"))
}

impl Superblock {
    /// The page this copy is written to.
    pub fn slot_page(&self) -> u64 {
        self.generation % 2
    }

    /// Serialises into exactly one page.
    pub fn encode(&self, page: &mut [u8]) {
        assert_eq!(page.len(), PAGE_BYTES);
        assert!(self.shard_states.len() == self.layout.shard_count as usize && self.shard_states.len() <= SHARDS_MAX);
        page.fill(0);
        page[0..8].copy_from_slice(&SUPERBLOCK_MAGIC);
        put_u32(page, 8, FORMAT_VERSION);
        put_u32(page, 12, PAGE_BYTES as u32);
        put_u64(page, 16, self.generation);
        page[24..40].copy_from_slice(&self.volume_uuid);
        put_u32(page, 40, PAGE_BYTES as u32);
        put_u32(page, 44, self.device_block_bytes);
        put_u64(page, 48, self.layout.capacity_pages);
        put_u64(page, 56, self.layout.journal_start_page);
        put_u64(page, 64, self.layout.journal_pages);
        put_u64(page, 72, self.layout.data_start_page);
        put_u64(page, 80, self.layout.pages_per_shard);
        put_u32(page, 88, self.layout.shard_count);
        put_u32(page, 92, self.flags);
        put_u64(page, 96, self.journal_epoch);
        put_u64(page, 104, self.journal_head_lsn);
        put_u64(page, 112, self.journal_head_offset);
        put_u64(page, 120, self.boot_counter);
        put_u64(page, 128, self.created_unix_secs);
        put_u64(page, 136, self.checkpoint_unix_secs);
        for (i, state) in self.shard_states.iter().enumerate() {
            let at = SHARD_TABLE_OFFSET + i * SHARD_STATE_BYTES;
            page[at..at + SHARD_STATE_BYTES].copy_from_slice(state);
        }
        let crc = crc32c::crc32c(&page[..CRC_OFFSET]);
        put_u32(page, CRC_OFFSET, crc);
    }

    /// Parses and validates one page.
    pub fn decode(page: &[u8]) -> Result<Superblock, SuperblockError> {
        if page.len() < PAGE_BYTES || page[0..8] != SUPERBLOCK_MAGIC {
            return Err(SuperblockError::BadMagic);
        }
        if crc32c::crc32c(&page[..CRC_OFFSET]) != get_u32(page, CRC_OFFSET) {
            return Err(SuperblockError::BadChecksum);
        }
        let version = get_u32(page, 8);
        if version != FORMAT_VERSION {
            return Err(SuperblockError::UnsupportedVersion(version));
        }
        if get_u32(page, 12) != PAGE_BYTES as u32 || get_u32(page, 40) != PAGE_BYTES as u32 {
            return Err(SuperblockError::Inconsistent("page size"));
        }
        let layout = Layout {
            capacity_pages: get_u64(page, 48),
            journal_start_page: get_u64(page, 56),
            journal_pages: get_u64(page, 64),
            data_start_page: get_u64(page, 72),
            pages_per_shard: get_u64(page, 80),
            shard_count: get_u32(page, 88),
        };
        layout.validate().map_err(SuperblockError::Inconsistent)?;
        let shard_states = (0..layout.shard_count as usize)
            .map(|i| {
                let at = SHARD_TABLE_OFFSET + i * SHARD_STATE_BYTES;
                page[at..at + SHARD_STATE_BYTES].try_into().expect("fixed size")
            })
            .collect();
        let mut volume_uuid = [0u8; 16];
        volume_uuid.copy_from_slice(&page[24..40]);
        Ok(Superblock {
            generation: get_u64(page, 16),
            volume_uuid,
            device_block_bytes: get_u32(page, 44),
            layout,
            flags: get_u32(page, 92),
            journal_epoch: get_u64(page, 96),
            journal_head_lsn: get_u64(page, 104),
            journal_head_offset: get_u64(page, 112),
            boot_counter: get_u64(page, 120),
            created_unix_secs: get_u64(page, 128),
            checkpoint_unix_secs: get_u64(page, 136),
            shard_states,
        })
    }
}

/// Picks the newest valid copy of two. Both invalid is an error that names both
/// reasons.
pub fn choose(
    a: Result<Superblock, SuperblockError>,
    b: Result<Superblock, SuperblockError>,
) -> Result<Superblock, (SuperblockError, SuperblockError)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(if b.generation > a.generation { b } else { a }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(ea), Err(eb)) => Err((ea, eb)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LayoutParams;

    fn sample() -> Superblock {
        let layout = Layout::compute(1 << 30, &LayoutParams { shard_count: 4, journal_bytes: None }).unwrap();
        Superblock {
            generation: 7,
            volume_uuid: [9; 16],
            device_block_bytes: 512,
            layout,
            flags: FLAG_CLEAN,
            journal_epoch: 3,
            journal_head_lsn: 100,
            journal_head_offset: 8192,
            boot_counter: 5,
            created_unix_secs: 1,
            checkpoint_unix_secs: 2,
            shard_states: vec![[1; SHARD_STATE_BYTES], [2; SHARD_STATE_BYTES], [3; SHARD_STATE_BYTES], [0; 96]],
        }
    }

    #[test]
    fn a_superblock_round_trips() {
        let sb = sample();
        let mut page = vec![0u8; PAGE_BYTES];
        sb.encode(&mut page);
        assert_eq!(Superblock::decode(&page).unwrap(), sb);
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let sb = sample();
        let mut page = vec![0u8; PAGE_BYTES];
        sb.encode(&mut page);
        for bit in (0..PAGE_BYTES * 8).step_by(97) {
            let mut bad = page.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Superblock::decode(&bad).is_err(), "bit {bit} flip went unnoticed");
        }
    }

    #[test]
    fn the_newest_valid_copy_wins() {
        let mut old = sample();
        old.generation = 4;
        let new = sample();
        assert_eq!(choose(Ok(old.clone()), Ok(new.clone())).unwrap().generation, 7);
        assert_eq!(choose(Ok(old), Err(SuperblockError::BadChecksum)).unwrap().generation, 4);
        assert!(choose(Err(SuperblockError::BadMagic), Err(SuperblockError::BadChecksum)).is_err());
    }
}
