//! Key filters: a small Bloom filter per child buffer so that a point
//! lookup skips, in one memory access, the buffers that cannot hold its
//! key; and one per leaf page map (`pages.rs`), so that a get of a key the
//! leaf does not hold reads nothing from the device.
//!
//! Why: a get walks one buffer per internal node on its path, and most of
//! those buffers do not hold its key (BENCHMARKS.md, "Tree against
//! RocksDB": ~9% of present keys sit in a buffer). Searching a buffer is a
//! binary search whose every probe reads a span and then a key somewhere
//! in the arena, two likely CPU cache misses per probe. A blocked Bloom
//! filter answers "not here" from one 64-bit word.
//!
//! The filter is derived from the buffer's keys, never stored on disk. It
//! may say "maybe" for a key the buffer does not hold (then the buffer is
//! searched as before), never "no" for one it holds: every key that enters
//! a buffer is added, and keys that leave only make it looser until the
//! next rebuild.

/// Filter bits per key at the filter's fullest (~1-2% false "maybe").
const BITS_PER_KEY: usize = 10;

/// A blocked Bloom filter: each key sets three bits of one 64-bit word.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyFilter {
    /// A power of two long (or empty: holds nothing).
    words: Vec<u64>,
}

/// A 64-bit hash of a key for [`KeyFilter`] (not stored anywhere, so it may
/// change between builds).
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    const MUL: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = 0x243F_6A88_85A3_08D3_u64 ^ (key.len() as u64).wrapping_mul(MUL);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(MUL).rotate_left(31);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(MUL).rotate_left(31);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^ (h >> 29)
}

/// The word a hash falls in (of `words`, any count below 2^32) and its
/// three bits: the word from the low 32 bits by multiply and shift (no
/// division, and no power of two needed, so a filter that never grows
/// takes only the words its keys need), the bits from the high ones.
fn slot(hash: u64, words: usize) -> (usize, u64) {
    let word = (((hash & 0xFFFF_FFFF) * words as u64) >> 32) as usize;
    let bit = |shift: u32| 1u64 << ((hash >> shift) & 63);
    (word, bit(40) | bit(46) | bit(52))
}

impl KeyFilter {
    /// A filter of the keys with `hashes`, with room for twice `count` keys
    /// before [`KeyFilter::is_full_for`] asks for a rebuild.
    pub fn with_hashes(count: usize, hashes: impl Iterator<Item = u64>) -> KeyFilter {
        let bits = (count.max(1) * 2 * BITS_PER_KEY).next_power_of_two();
        let mut filter = KeyFilter { words: vec![0; bits.div_ceil(64)] };
        for h in hashes {
            filter.add(h);
        }
        filter
    }

    /// A filter of a fixed set of `count` keys (`BITS_PER_KEY` bits each,
    /// no room to grow).
    pub fn exact(count: usize, hashes: impl Iterator<Item = u64>) -> KeyFilter {
        let words = (count.max(1) * BITS_PER_KEY).div_ceil(64);
        let mut filter = KeyFilter { words: vec![0; words] };
        for h in hashes {
            filter.add(h);
        }
        filter
    }

    /// True when `count` keys overfill it (or it has no words yet).
    pub fn is_full_for(&self, count: usize) -> bool {
        count * BITS_PER_KEY > self.words.len() * 64
    }

    pub fn add(&mut self, hash: u64) {
        if self.words.is_empty() {
            return;
        }
        let (word, bits) = slot(hash, self.words.len());
        self.words[word] |= bits;
    }

    /// False only when no key with this hash was added.
    pub fn may_hold(&self, hash: u64) -> bool {
        if self.words.is_empty() {
            return true;
        }
        let (word, bits) = slot(hash, self.words.len());
        self.words[word] & bits == bits
    }

    pub fn mem_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_keys_are_always_maybe_and_others_mostly_not() {
        let keys: Vec<Vec<u8>> = (0..500u32).map(|i| format!("{:016}", i * 7919).into_bytes()).collect();
        let mut filter = KeyFilter::with_hashes(keys.len() / 2, keys[..250].iter().map(|k| key_hash(k)));
        for k in &keys[250..] {
            filter.add(key_hash(k));
        }
        assert!(!filter.is_full_for(keys.len()));
        assert!(keys.iter().all(|k| filter.may_hold(key_hash(k))));
        let others = (0..10_000u32).filter(|i| filter.may_hold(key_hash(format!("{:016}", i * 7919 + 1).as_bytes())));
        assert!(others.count() < 500, "false maybes above 5%");
        assert!(KeyFilter::default().may_hold(key_hash(b"x")), "an empty filter knows nothing");
        assert_ne!(key_hash(b"ab"), key_hash(b"ab\0"));
    }

    #[test]
    fn an_exact_filter_holds_its_keys_in_ten_bits_each() {
        let keys: Vec<Vec<u8>> = (0..110u32).map(|i| format!("{:016}", i * 7919).into_bytes()).collect();
        let filter = KeyFilter::exact(keys.len(), keys.iter().map(|k| key_hash(k)));
        assert_eq!(filter.mem_bytes(), 1100usize.div_ceil(64) * 8);
        assert!(keys.iter().all(|k| filter.may_hold(key_hash(k))));
        let others = (0..10_000u32).filter(|i| filter.may_hold(key_hash(format!("{:016}", i * 7919 + 1).as_bytes())));
        assert!(others.count() < 500, "false maybes above 5%");
    }
}
