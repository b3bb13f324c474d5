//! Key heads: a search aid for a leaf's sorted keys.
//!
//! A binary search over a leaf's serialized entries touches a different
//! cache line at every probe and compares whole keys. Keys in one leaf
//! usually share a long prefix (Redis keys such as `key:000000012345`
//! behind the gateway's tag), so what tells them apart sits in the bytes
//! after it. `KeyHeads` keeps, next to the offsets, the 8 bytes after the
//! shared prefix of every key as a big-endian integer (zero-padded): the
//! search compares integers in one small array and reads a whole key only
//! when two heads are equal. Derived from the keys, never stored on disk.
//!
//! Why a head order is a key order: when two heads differ, they differ
//! first at some byte `j`. If both keys have a byte at `j`, that byte
//! decides both orders. If one key ended before `j` (a zero pad), the keys
//! agree up to its end, so it is a prefix of the other and the smaller; the
//! other's byte at `j` is non-zero (the heads differ there), so the smaller
//! head agrees.

use std::cmp::Ordering;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyHeads {
    /// Bytes every key shares at its start.
    prefix_len: usize,
    heads: Vec<u64>,
}

/// A binary search over `count` sorted items seen through `order_at(i)`
/// (item `i` compared with the wanted one): `Ok(i)` on a match, else
/// `Err(i)` where it would go. The tree's sorted arrays (leaf entries,
/// buffered points, heads) are encodings, not slices of keys, so they share
/// this instead of `slice::binary_search_by`.
pub(crate) fn search(count: usize, mut order_at: impl FnMut(usize) -> Ordering) -> Result<usize, usize> {
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match order_at(mid) {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

/// The 8 bytes of `key` after `prefix_len`, zero-padded, big-endian.
fn head(key: &[u8], prefix_len: usize) -> u64 {
    let mut bytes = [0u8; 8];
    let rest = key.get(prefix_len..).unwrap_or(&[]);
    let n = rest.len().min(8);
    bytes[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(bytes)
}

impl KeyHeads {
    /// Heads of `count` sorted keys, key `i` given by `key_at(i)`.
    pub fn build<'a>(count: usize, key_at: impl Fn(usize) -> &'a [u8]) -> KeyHeads {
        if count == 0 {
            return KeyHeads::default();
        }
        // In a sorted run, the first and last keys share the least.
        let (first, last) = (key_at(0), key_at(count - 1));
        let prefix_len = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        let heads = (0..count).map(|i| head(key_at(i), prefix_len)).collect();
        KeyHeads { prefix_len, heads }
    }

    pub fn mem_bytes(&self) -> usize {
        self.heads.len() * 8
    }

    /// `Ok(i)` when key `i` equals `key`, else `Err(i)` where it would go;
    /// `None` when `key` lacks the shared prefix (search the keys instead).
    pub fn find<'a>(&self, key: &[u8], key_at: impl Fn(usize) -> &'a [u8]) -> Option<Result<usize, usize>> {
        let p = self.prefix_len;
        if self.heads.is_empty() || key.len() < p || key[..p] != key_at(0)[..p] {
            return None;
        }
        let wanted = head(key, p);
        Some(search(self.heads.len(), |i| self.heads[i].cmp(&wanted).then_with(|| key_at(i)[p..].cmp(&key[p..]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of a tricky sorted set, and keys around them, are found
    /// where a plain binary search over the keys finds them.
    #[test]
    fn heads_search_agrees_with_a_plain_search() {
        let mut keys: Vec<Vec<u8>> = vec![
            b"k".to_vec(),
            b"k\0".to_vec(),
            b"k\0\0".to_vec(),
            b"k\0\x01".to_vec(),
            b"k01234567".to_vec(),
            b"k012345670".to_vec(),
            b"k012345671".to_vec(),
            b"k0123456799".to_vec(),
            b"k1".to_vec(),
            b"k\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        ];
        for i in 0..300u32 {
            keys.push(format!("k:key:{:012}", i * 7).into_bytes());
        }
        keys.sort();
        keys.dedup();
        for len in [0, 1, 2, keys.len()] {
            let set = &keys[keys.len() - len..];
            let heads = KeyHeads::build(set.len(), |i| set[i].as_slice());
            let mut probes: Vec<Vec<u8>> = keys.clone();
            for k in &keys {
                probes.push([k.as_slice(), b"\0"].concat());
                probes.push(k[..k.len() - 1].to_vec());
            }
            probes.extend([b"".to_vec(), b"j".to_vec(), b"l".to_vec(), b"k:key:".to_vec()]);
            for probe in &probes {
                let plain = set.binary_search_by(|k| k.as_slice().cmp(probe.as_slice()));
                if let Some(found) = heads.find(probe, |i| set[i].as_slice()) {
                    assert_eq!(found, plain, "probe {probe:?} in a set of {len}");
                }
            }
        }
    }
}
