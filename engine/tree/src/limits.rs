//! Limits that are part of the format: every size the tree accepts from the
//! engine, and every length it decodes from a device, is checked against them.

/// The unit of allocation and I/O: one page of the volume.
pub const PAGE_BYTES: usize = 4096;
/// The longest key.
pub const KEY_BYTES_MAX: usize = 1024;
/// The end of a range delete may be one byte longer than a key, so that
/// "every key starting with P" is expressible as `[P, P ++ 0xFF..)`.
pub const RANGE_END_BYTES_MAX: usize = KEY_BYTES_MAX + 1;
/// The largest value, inline or out of line, and the largest result of a merge.
pub const VALUE_BYTES_MAX: usize = 16 << 20;
/// The largest operand of one merge (appended bytes, patched bytes, a field
/// value). Larger updates go through an out-of-line extent and a put.
pub const MERGE_OPERAND_BYTES_MAX: usize = 256 << 10;
/// The longest field name in a field map.
pub const FIELD_NAME_BYTES_MAX: usize = 1024;
/// The most merges one entry may carry in a node (a decoding bound: far
/// more than node sizes allow).
pub const MERGES_PER_ENTRY_MAX: usize = 1 << 20;
/// Size of the per-shard checkpoint state kept in the superblock.
pub const STATE_BYTES: usize = 96;

/// Pages needed to hold `bytes`.
pub fn pages_for(bytes: usize) -> u64 {
    bytes.div_ceil(PAGE_BYTES) as u64
}
