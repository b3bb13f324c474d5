//! Which shard owns a key, and which reactor serves a shard.
//!
//! Routing is part of the on-disk format (a key's data lives in its shard's
//! region), so it never depends on configuration other than the shard count
//! fixed at mkfs. See docs/FORMAT.md, "Key routing".

use std::ops::Bound;

/// Keys whose first byte is at least this are routed by a fixed-length prefix.
pub const PREFIX_ROUTED_TAG_MIN: u8 = 0x80;
/// The routed prefix of such keys: a tag byte and an 8-byte identifier.
pub const ROUTE_PREFIX_BYTES: usize = 9;

/// The bytes of `key` that decide its shard.
pub fn route_bytes(key: &[u8]) -> &[u8] {
    match key.first() {
        Some(&tag) if tag >= PREFIX_ROUTED_TAG_MIN => &key[..key.len().min(ROUTE_PREFIX_BYTES)],
        _ => key,
    }
}

/// The shard that owns `key`.
pub fn shard_of(key: &[u8], shard_count: u32) -> u32 {
    debug_assert!(shard_count > 0);
    crc32c::crc32c(route_bytes(key)) % shard_count
}

/// The one shard holding every key in `[start, end)`, when the range lies
/// inside one prefix-routed identifier (a directory's entries, a file's data).
pub fn single_shard_of_range(start: &[u8], end: Bound<&[u8]>, shard_count: u32) -> Option<u32> {
    let prefix = route_bytes(start);
    let routed = start.first().is_some_and(|&t| t >= PREFIX_ROUTED_TAG_MIN) && prefix.len() == ROUTE_PREFIX_BYTES;
    if !routed {
        return None;
    }
    // Every key in the range shares start's prefix iff the range ends before
    // the prefix's successor.
    let successor = prefix_successor(prefix)?;
    let inside = match end {
        Bound::Excluded(e) => e <= successor.as_slice(),
        Bound::Included(e) => e < successor.as_slice(),
        Bound::Unbounded => false,
    };
    inside.then(|| shard_of(start, shard_count))
}

/// The smallest byte string greater than every string starting with `prefix`.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last != 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// The reactor that hosts `shard`.
pub fn reactor_of(shard: u32, reactor_count: usize) -> usize {
    shard as usize % reactor_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_routed_keys_of_one_id_share_a_shard() {
        let mut a = vec![0x90u8];
        a.extend_from_slice(&42u64.to_be_bytes());
        let mut b = a.clone();
        a.extend_from_slice(b"attributes");
        b.extend_from_slice(b"some directory entry name");
        for shards in 1..=32 {
            assert_eq!(shard_of(&a, shards), shard_of(&b, shards));
        }
    }

    #[test]
    fn whole_key_routing_spreads_keys() {
        let mut counts = [0usize; 8];
        for i in 0..8000 {
            counts[shard_of(format!("user{i}").as_bytes(), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn a_range_inside_one_id_has_one_shard() {
        let mut start = vec![0x90u8];
        start.extend_from_slice(&7u64.to_be_bytes());
        let end = prefix_successor(&start).unwrap();
        assert_eq!(single_shard_of_range(&start, Bound::Excluded(&end), 4), Some(shard_of(&start, 4)));
        assert_eq!(single_shard_of_range(&start, Bound::Included(&end), 4), None);
        assert_eq!(single_shard_of_range(b"k", Bound::Excluded(b"z"), 4), None);
        let mut far = start.clone();
        far[8] += 2;
        assert_eq!(single_shard_of_range(&start, Bound::Excluded(&far), 4), None);
    }
}
