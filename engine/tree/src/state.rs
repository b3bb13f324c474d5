//! The 96-byte shard state the superblock keeps for each tree: everything
//! needed to find the tree's newest checkpoint. Layout (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `KTST` |
//! | 4 | 2 | state version (1) |
//! | 6 | 2 | flags (0) |
//! | 8 | 8 | lsn_applied: every journal record up to it is in the checkpoint |
//! | 16 | 24 | directory location (address, length, crc32c, generation) |
//! | 40 | 8 | root node id |
//! | 48 | 8 | next node id |
//! | 56 | 8 | next write generation |
//! | 64 | 8 | region size in pages |
//! | 72 | 8 | pages in use in the checkpoint |
//! | 80 | 4 | tree height (root height) |
//! | 84 | 8 | reserved, zero |
//! | 92 | 4 | CRC-32C of bytes 0..92 |
//!
//! All zero means an empty shard that was never checkpointed.

use crate::codec::{get_u32, get_u64, set_u32, set_u64, Reader};
use crate::error::{BlockKind, CorruptReason, TreeError};
use crate::internal::NodeId;
use crate::limits::STATE_BYTES;
use crate::table::Location;

const STATE_MAGIC: [u8; 4] = *b"KTST";
const STATE_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardState {
    pub lsn_applied: u64,
    pub directory: Location,
    pub root: NodeId,
    pub next_node_id: u64,
    pub next_generation: u64,
    pub region_pages: u64,
    pub pages_in_use: u64,
    pub height: u32,
}

impl ShardState {
    pub fn encode(&self) -> [u8; STATE_BYTES] {
        let mut b = [0u8; STATE_BYTES];
        b[0..4].copy_from_slice(&STATE_MAGIC);
        b[4..6].copy_from_slice(&STATE_VERSION.to_le_bytes());
        set_u64(&mut b, 8, self.lsn_applied);
        let mut loc = Vec::with_capacity(24);
        self.directory.encode(&mut loc);
        b[16..40].copy_from_slice(&loc);
        set_u64(&mut b, 40, self.root.0);
        set_u64(&mut b, 48, self.next_node_id);
        set_u64(&mut b, 56, self.next_generation);
        set_u64(&mut b, 64, self.region_pages);
        set_u64(&mut b, 72, self.pages_in_use);
        set_u32(&mut b, 80, self.height);
        let crc = crc32c::crc32c(&b[..92]);
        set_u32(&mut b, 92, crc);
        b
    }

    /// `Ok(None)` for the all-zero state of an empty shard.
    pub fn decode(b: &[u8; STATE_BYTES]) -> Result<Option<ShardState>, TreeError> {
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        let corrupt = |reason| TreeError::corrupt(BlockKind::State, 0, reason);
        let malformed = |what| corrupt(CorruptReason::Malformed(crate::codec::Malformed(what)));
        let found = crc32c::crc32c(&b[..92]);
        let expected = get_u32(b, 92);
        if found != expected {
            return Err(corrupt(CorruptReason::Checksum { expected, found }));
        }
        if b[0..4] != STATE_MAGIC {
            return Err(malformed("shard state magic"));
        }
        if u16::from_le_bytes([b[4], b[5]]) != STATE_VERSION {
            return Err(malformed("shard state version"));
        }
        let directory =
            Location::decode(&mut Reader::new(&b[16..40])).map_err(|m| corrupt(CorruptReason::Malformed(m)))?;
        let state = ShardState {
            lsn_applied: get_u64(b, 8),
            directory,
            root: NodeId(get_u64(b, 40)),
            next_node_id: get_u64(b, 48),
            next_generation: get_u64(b, 56),
            region_pages: get_u64(b, 64),
            pages_in_use: get_u64(b, 72),
            height: get_u32(b, 80),
        };
        if state.root.0 == 0 || state.root.0 >= state.next_node_id || state.height == 0 || state.height > 64 {
            return Err(malformed("shard state root"));
        }
        if state.directory.is_none() {
            return Err(malformed("shard state directory"));
        }
        Ok(Some(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_rejects_any_flipped_bit() {
        let s = ShardState {
            lsn_applied: 99,
            directory: Location { address: 5, length: 4096, crc32c: 7, generation: 8 },
            root: NodeId(1),
            next_node_id: 10,
            next_generation: 11,
            region_pages: 1000,
            pages_in_use: 12,
            height: 2,
        };
        let b = s.encode();
        assert_eq!(ShardState::decode(&b).unwrap(), Some(s));
        for bit in 0..STATE_BYTES * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(ShardState::decode(&c).is_err(), "bit {bit}");
        }
        assert_eq!(ShardState::decode(&[0u8; STATE_BYTES]).unwrap(), None);
    }
}
