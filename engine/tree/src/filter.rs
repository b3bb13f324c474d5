//! Key filters: a small Bloom filter per child buffer so that a point
//! lookup skips, in one memory access, the buffers that cannot hold its
//! key; and one per leaf page map (`pages.rs`), so that a get of a key the
//! leaf does not hold reads nothing from the device.
//!
//! Why: a get walks one buffer per internal node on its path, and most of
//! those buffers do not hold its key (BENCHMARKS.md, "Tree against
//! RocksDB": ~9% of present keys sit in a buffer). Searching a buffer is a
//! binary search whose every probe reads a span and then a key somewhere
//! in the arena, two likely CPU cache misses per probe. A Bloom filter
//! answers "not here" from a few bits of a small array (a buffer's filter
//! is a cache line or two).
//!
//! Layout: a plain Bloom filter, six bits per key anywhere in the filter
//! (double hashing of one 64-bit hash). At 10 bits per key that says
//! "maybe" for ~0.8% of absent keys, where the earlier blocked layout
//! (three bits in one 64-bit word) said it for ~2.3% (3.0% measured on the
//! random benchmark's leaves): each false "maybe" of a leaf's filter is a
//! device read, and the filters are small enough that their bits share a
//! few cache lines anyway (BENCHMARKS.md, "Tree against RocksDB", evening
//! of 2026-12-04).
//!
//! The filter is derived from the buffer's keys, never stored on disk. It
//! may say "maybe" for a key the buffer does not hold (then the buffer is
//! searched as before), never "no" for one it holds: every key that enters
//! a buffer is added, and keys that leave only make it looser until the
//! next rebuild.

/// Filter bits per key at the filter's fullest (~0.8% false "maybe").
const BITS_PER_KEY: usize = 10;
/// Bits set per key (the best count for 10 bits per key is 6-7).
const PROBES: u32 = 6;

/// A Bloom filter: each key sets `PROBES` bits of the filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyFilter {
    /// Empty: holds nothing, says "maybe" for every key.
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

/// Bit `i` of the `PROBES` bits of `hash` in a filter of `bits` bits
/// (any count below 2^32): double hashing, `h1 + i * h2` over the low and
/// high halves (h2 odd, so the probes of one key differ), mapped onto the
/// bits by multiply and shift (no division, no power of two needed, so an
/// exact filter takes only the words its keys need).
fn probe(hash: u64, i: u32, bits: u64) -> (usize, u64) {
    let (h1, h2) = (hash as u32, ((hash >> 32) as u32) | 1);
    let at = (u64::from(h1.wrapping_add(i.wrapping_mul(h2))) * bits) >> 32;
    ((at / 64) as usize, 1u64 << (at % 64))
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

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    pub fn add(&mut self, hash: u64) {
        if self.words.is_empty() {
            return;
        }
        let bits = self.bits();
        for i in 0..PROBES {
            let (word, bit) = probe(hash, i, bits);
            self.words[word] |= bit;
        }
    }

    /// False only when no key with this hash was added.
    pub fn may_hold(&self, hash: u64) -> bool {
        if self.words.is_empty() {
            return true;
        }
        let bits = self.bits();
        (0..PROBES).all(|i| {
            let (word, bit) = probe(hash, i, bits);
            self.words[word] & bit != 0
        })
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
        assert!(others.count() < 200, "false maybes above 2%");
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

    /// Leaf-sized exact filters over keys like the benchmark's (16 digits,
    /// one leaf's run of them) say "maybe" for about 1% of absent keys
    /// (the one-word layout said it for 2-3%): each such "maybe" costs a
    /// device read.
    #[test]
    fn exact_filters_of_leaf_sized_key_runs_say_maybe_for_about_one_percent() {
        let (mut maybes, mut probes) = (0usize, 0usize);
        for leaf in 0..200u64 {
            let keys: Vec<Vec<u8>> =
                (0..120u64).map(|i| format!("{:016}", leaf * 100_000 + i * 13).into_bytes()).collect();
            let filter = KeyFilter::exact(keys.len(), keys.iter().map(|k| key_hash(k)));
            assert!(keys.iter().all(|k| filter.may_hold(key_hash(k))));
            for i in 0..1_000u64 {
                probes += 1;
                maybes +=
                    usize::from(filter.may_hold(key_hash(format!("{:016}", leaf * 100_000 + i * 13 + 5).as_bytes())));
            }
        }
        let percent = 100.0 * maybes as f64 / probes as f64;
        assert!(percent < 1.5, "false maybes {percent:.2}%");
    }
}
