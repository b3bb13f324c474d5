//! The file system's key layout in the engine (docs/FORMAT.md, "File system
//! keys"). Keys are compared bytewise, so numbers in keys are big-endian
//! (key order = numeric order); values are little-endian like the rest of
//! the format.
//!
//! Everything of one inode starts with `0x90` and its 8-byte number: the
//! engine routes keys with a first byte of 0x80 or more by their first 9
//! bytes, so an inode's attributes, directory entries and data chunks all
//! live on one shard and most operations are single-shard transactions.
//! Per-shard bookkeeping (inode number leases, orphans, space counters)
//! lives under `0x91` and a per-shard *anchor*: an 8-byte id chosen so that
//! the key routes to that shard.

use keel_engine::route;

/// First byte of every inode key.
pub const TAG_INODE: u8 = 0x90;
/// First byte of every per-shard bookkeeping key.
pub const TAG_SHARD: u8 = 0x91;

pub const KIND_ATTR: u8 = 0x00;
pub const KIND_ENTRY_BY_NAME: u8 = 0x01;
pub const KIND_ENTRY_BY_COOKIE: u8 = 0x02;
pub const KIND_CHUNK: u8 = 0x04;

pub const SHARD_KIND_LEASE: u8 = 0x00;
pub const SHARD_KIND_ORPHAN: u8 = 0x01;
pub const SHARD_KIND_USED_BYTES: u8 = 0x02;
pub const SHARD_KIND_INODES: u8 = 0x03;
/// The file system's superblock, under shard 0's anchor.
pub const SHARD_KIND_FS_SUPER: u8 = 0x10;
/// A key locked (never written) by renames that move a directory to another
/// parent, under shard 0's anchor: serializes them so the loop check holds.
pub const SHARD_KIND_RENAME_LOCK: u8 = 0x11;

/// File data is stored in chunks of this many bytes, chunk `i` covering
/// bytes `[i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES)`.
pub const CHUNK_BYTES: u64 = 64 * 1024;

fn inode_prefix(ino: u64, kind: u8, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + extra);
    k.push(TAG_INODE);
    k.extend_from_slice(&ino.to_be_bytes());
    k.push(kind);
    k
}

pub fn attr(ino: u64) -> Vec<u8> {
    inode_prefix(ino, KIND_ATTR, 0)
}

pub fn entry_by_name(dir: u64, name: &[u8]) -> Vec<u8> {
    let mut k = inode_prefix(dir, KIND_ENTRY_BY_NAME, name.len());
    k.extend_from_slice(name);
    k
}

pub fn entry_by_cookie(dir: u64, cookie: u64) -> Vec<u8> {
    let mut k = inode_prefix(dir, KIND_ENTRY_BY_COOKIE, 8);
    k.extend_from_slice(&cookie.to_be_bytes());
    k
}

/// The first key after every by-cookie entry of `dir`.
pub fn entry_by_cookie_end(dir: u64) -> Vec<u8> {
    inode_prefix(dir, KIND_ENTRY_BY_COOKIE + 1, 0)
}

pub fn chunk(ino: u64, index: u64) -> Vec<u8> {
    let mut k = inode_prefix(ino, KIND_CHUNK, 8);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The first key after every chunk of `ino`.
pub fn chunk_end(ino: u64) -> Vec<u8> {
    inode_prefix(ino, KIND_CHUNK + 1, 0)
}

/// The chunk index a chunk key names.
pub fn chunk_index_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(10..18)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

fn shard_prefix(anchor: u64, kind: u8, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + extra);
    k.push(TAG_SHARD);
    k.extend_from_slice(&anchor.to_be_bytes());
    k.push(kind);
    k
}

pub fn shard_lease(anchor: u64) -> Vec<u8> {
    shard_prefix(anchor, SHARD_KIND_LEASE, 0)
}

pub fn shard_used_bytes(anchor: u64) -> Vec<u8> {
    shard_prefix(anchor, SHARD_KIND_USED_BYTES, 0)
}

pub fn shard_inodes(anchor: u64) -> Vec<u8> {
    shard_prefix(anchor, SHARD_KIND_INODES, 0)
}

pub fn fs_super(anchor0: u64) -> Vec<u8> {
    shard_prefix(anchor0, SHARD_KIND_FS_SUPER, 0)
}

pub fn rename_lock(anchor0: u64) -> Vec<u8> {
    shard_prefix(anchor0, SHARD_KIND_RENAME_LOCK, 0)
}

pub fn orphan(anchor: u64, ino: u64) -> Vec<u8> {
    let mut k = shard_prefix(anchor, SHARD_KIND_ORPHAN, 8);
    k.extend_from_slice(&ino.to_be_bytes());
    k
}

pub fn orphan_range(anchor: u64) -> (Vec<u8>, Vec<u8>) {
    (shard_prefix(anchor, SHARD_KIND_ORPHAN, 0), shard_prefix(anchor, SHARD_KIND_ORPHAN + 1, 0))
}

/// The inode number an orphan key names.
pub fn orphan_ino_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(10..18)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The shard an inode lives on.
pub fn shard_of_ino(ino: u64, shard_count: u32) -> u32 {
    route::shard_of(&attr(ino), shard_count)
}

/// The anchor of each shard: the smallest id whose bookkeeping keys route
/// to that shard. Deterministic given the shard count (fixed at mkfs).
pub fn anchors(shard_count: u32) -> Vec<u64> {
    let mut found: Vec<Option<u64>> = vec![None; shard_count as usize];
    let mut left = shard_count as usize;
    let mut id = 0u64;
    while left > 0 {
        let s = route::shard_of(&shard_lease(id), shard_count) as usize;
        if found[s].is_none() {
            found[s] = Some(id);
            left -= 1;
        }
        id += 1;
        // CRC-32C spreads consecutive ids well; a million tries without
        // covering at most 32 shards would mean routing changed.
        assert!(id < 1 << 20, "no anchor found for some shard");
    }
    found.into_iter().map(|a| a.expect("every shard has an anchor")).collect()
}

/// Inode numbers of shard `s` are `(s + 1) << 48 | k`, for the values of `k`
/// whose number routes to `s`.
pub const INO_SHARD_SHIFT: u32 = 48;

pub fn ino_candidate(shard: u32, k: u64) -> u64 {
    debug_assert!(k < 1 << INO_SHARD_SHIFT);
    (u64::from(shard) + 1) << INO_SHARD_SHIFT | k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_an_inode_routes_with_its_attributes() {
        for shards in [1, 2, 5, 32] {
            let ino = ino_candidate(1, 77);
            let s = shard_of_ino(ino, shards);
            for key in [entry_by_name(ino, b"x"), entry_by_cookie(ino, 9), chunk(ino, 3)] {
                assert_eq!(route::shard_of(&key, shards), s);
            }
        }
    }

    #[test]
    fn anchors_route_to_their_shard() {
        for shards in [1, 2, 3, 8, 32] {
            let a = anchors(shards);
            for (s, &anchor) in a.iter().enumerate() {
                for key in [shard_lease(anchor), orphan(anchor, 5), shard_used_bytes(anchor)] {
                    assert_eq!(route::shard_of(&key, shards), s as u32);
                }
            }
        }
    }

    #[test]
    fn chunk_keys_sort_by_index_and_stay_below_the_end_key() {
        assert!(chunk(9, 1) < chunk(9, 256));
        assert!(chunk(9, u64::MAX) < chunk_end(9));
        assert_eq!(chunk_index_of(&chunk(9, 300)), Some(300));
        assert!(entry_by_cookie(4, u64::MAX) < entry_by_cookie_end(4));
    }
}
