//! Page maps of leaves: what a point read needs to read one 4 KiB page of
//! a leaf instead of all of it.
//!
//! A leaf is written as one image of several pages and its table entry
//! checks the whole image, so a leaf read from the device is first read
//! whole and verified. From that verified image the cache keeps a small
//! map: for every page its CRC-32C, where the first entry starting in it
//! begins, that entry's key (without the prefix all the leaf's keys
//! share, kept once), and where an entry running on into the next page
//! begins. Later, when the leaf is no longer cached, a get reads only
//! the page whose key range holds its key and compares the page with the
//! CRC of the same page of the verified image. The map names the table
//! entry it was taken from and is used only while that entry is still the
//! leaf's: any other bytes at that address (torn, lost, misdirected, stale,
//! flipped) fail the comparison, and the read falls back to reading the
//! leaf whole, which reports the fault as before. Nothing of this is on
//! the device: the format is unchanged.
//!
//! The map also keeps a Bloom filter of the leaf's keys (~10 bits per key,
//! `filter.rs`): a get of a key the filter rules out reads nothing, where
//! it would read a page only to find the key absent. Why: with keys drawn
//! at random with replacement, about a third of the gets of a random-read
//! benchmark ask for keys never written, and each of them cost a device
//! read (BENCHMARKS.md, "Tree against RocksDB"). A filter never says "no"
//! for a key the leaf holds, and it is used under the same rule as the
//! map: only while the table entry it was taken from is still the leaf's.

use crate::filter::{key_hash, KeyFilter};
use crate::leaf::{layout, Leaf};
use crate::limits::PAGE_BYTES;
use crate::node::NODE_HEADER_BYTES;
use crate::table::Location;

const NONE: u32 = u32::MAX;
/// Bookkeeping of one map in the cache beyond its arrays (the map entry,
/// the struct, two allocations).
const MAP_MEM_OVERHEAD: usize = 112;

#[derive(Debug, Clone, Copy)]
struct PageInfo {
    crc32c: u32,
    /// Image offset of the first entry that starts in this page (NONE: none).
    start: u32,
    /// Image offset of the entry that starts here and ends in a later page.
    straddle: u32,
    /// [`key_tag`] of that entry's key: a get of that key reads both pages
    /// at once instead of finding its entry cut off after one page (2-3%
    /// of the random benchmark's page reads were such second reads).
    straddle_tag: u32,
    /// End of this page's first key (less the prefix) in `keys`.
    key_end: u32,
}

/// One leaf version's page map.
#[derive(Debug, Clone)]
pub(crate) struct LeafPages {
    /// The table entry of the image the map was taken from.
    pub at: Location,
    pages: Vec<PageInfo>,
    /// What every key of the leaf starts with (written once in its image).
    prefix: Vec<u8>,
    /// The pages' first keys without the prefix.
    keys: Vec<u8>,
    /// Every key of the leaf version `at` names.
    filter: KeyFilter,
}

/// Which bytes of the image a read of `key` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The key sorts before the leaf's first key: the leaf does not hold it.
    Absent,
    /// Read pages `first_page..first_page + pages`; the entries from image
    /// offset `start` up to `whole_end` are complete in them, and the bytes
    /// after `whole_end` (up to the end of the read) begin one more entry.
    /// Keys in the image are stored without their first `prefix_bytes`
    /// bytes, which the key asked for has.
    Read { first_page: usize, pages: usize, start: usize, whole_end: usize, prefix_bytes: usize },
}

impl LeafPages {
    /// The map of `leaf`, whose verified image (header + payload) is
    /// `image`, read through `at`. None for a leaf of one page: reading it
    /// whole costs the same.
    pub fn build(image: &[u8], leaf: &Leaf, at: Location) -> Option<LeafPages> {
        if image.len() <= PAGE_BYTES || leaf.is_empty() {
            return None;
        }
        let info = PageInfo { crc32c: 0, start: NONE, straddle: NONE, straddle_tag: 0, key_end: 0 };
        let mut pages = vec![info; image.len().div_ceil(PAGE_BYTES)];
        for (p, page) in image.chunks(PAGE_BYTES).enumerate() {
            pages[p].crc32c = crc32c::crc32c(page);
        }
        let layout = layout(image.get(NODE_HEADER_BYTES..)?).ok()?;
        if layout.spans.len() != leaf.len() {
            return None;
        }
        let mut keys = Vec::new();
        for (i, &(entry_start, entry_end)) in layout.spans.iter().enumerate() {
            let start = NODE_HEADER_BYTES + entry_start;
            let end = NODE_HEADER_BYTES + entry_end;
            let p = start / PAGE_BYTES;
            if pages[p].start == NONE {
                pages[p].start = start as u32;
                keys.extend_from_slice(leaf.key(i).get(layout.prefix.len()..)?);
                pages[p].key_end = keys.len() as u32;
            }
            if (end - 1) / PAGE_BYTES != p {
                pages[p].straddle = start as u32;
                pages[p].straddle_tag = key_tag(leaf.key(i));
            }
        }
        let filter = KeyFilter::exact(leaf.len(), (0..leaf.len()).map(|i| key_hash(leaf.key(i))));
        let prefix = layout.prefix.to_vec();
        Some(LeafPages { at, pages, prefix, keys, filter })
    }

    pub fn mem_bytes(&self) -> usize {
        MAP_MEM_OVERHEAD
            + self.pages.capacity() * std::mem::size_of::<PageInfo>()
            + self.prefix.capacity()
            + self.keys.capacity()
            + self.filter.mem_bytes()
    }

    /// False only when the leaf version `at` names does not hold `key`.
    pub fn may_hold(&self, key: &[u8]) -> bool {
        self.filter.may_hold(key_hash(key))
    }

    /// Pages with entries starting in them, in order, with their first keys.
    fn starts(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        let mut key_start = 0usize;
        self.pages.iter().enumerate().filter(|(_, p)| p.start != NONE).map(move |(i, p)| {
            let key = &self.keys[key_start..p.key_end as usize];
            key_start = p.key_end as usize;
            (i, key)
        })
    }

    /// The page to read for `key` (see [`Plan`]); `whole` asks for every
    /// page the key's run of entries touches, not only the first.
    pub fn plan(&self, key: &[u8], whole: bool) -> Plan {
        // Every key of the leaf has the prefix: a key without it is not there.
        let Some(suffix) = key.strip_prefix(self.prefix.as_slice()) else { return Plan::Absent };
        let prefix_bytes = self.prefix.len();
        let mut chosen: Option<usize> = None;
        let mut next_start: Option<usize> = None;
        for (p, first) in self.starts() {
            if first <= suffix {
                chosen = Some(p);
            } else {
                next_start = Some(self.pages[p].start as usize);
                break;
            }
        }
        let Some(p) = chosen else { return Plan::Absent };
        let info = self.pages[p];
        let start = info.start as usize;
        let run_end = next_start.unwrap_or(self.at.length as usize);
        // A tag that matches by chance only costs reading one page more.
        let straddler = info.straddle != NONE && info.straddle_tag == key_tag(key);
        if info.straddle == NONE || whole || straddler {
            let last_page = (run_end - 1) / PAGE_BYTES;
            return Plan::Read { first_page: p, pages: last_page - p + 1, start, whole_end: run_end, prefix_bytes };
        }
        Plan::Read { first_page: p, pages: 1, start, whole_end: info.straddle as usize, prefix_bytes }
    }

    /// What a read of pages `first_page..first_page + pages` must find,
    /// kept apart from the map (which may be dropped while the read is in
    /// flight). None for more pages than that holds: read the leaf whole.
    pub fn expected(&self, first_page: usize, pages: usize) -> Option<PageCrcs> {
        let infos = self.pages.get(first_page..first_page.checked_add(pages)?)?;
        if pages == 0 || pages > PAGES_CHECKED_MAX {
            return None;
        }
        let mut crcs = [0u32; PAGES_CHECKED_MAX];
        for (c, info) in crcs.iter_mut().zip(infos) {
            *c = info.crc32c;
        }
        Some(PageCrcs { first_page, pages, crcs, image_bytes: self.at.length as usize })
    }
}

/// 32 bits of a key's filter hash: tells, in a page map, whether a key is
/// the entry that runs on into the next page.
fn key_tag(key: &[u8]) -> u32 {
    (key_hash(key) >> 16) as u32
}

/// The most pages one read through a map checks (an entry longer than
/// that sends the get to a whole read).
const PAGES_CHECKED_MAX: usize = 4;

/// The CRC-32C of consecutive pages of one verified leaf image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageCrcs {
    first_page: usize,
    pages: usize,
    crcs: [u32; PAGES_CHECKED_MAX],
    image_bytes: usize,
}

impl PageCrcs {
    /// Bytes to read: the pages, the last one only up to the image's end.
    pub fn read_bytes(&self) -> usize {
        ((self.first_page + self.pages) * PAGE_BYTES).min(self.image_bytes) - self.first_page * PAGE_BYTES
    }

    /// True when `bytes` are those pages of the image (the last page up to
    /// the image's end), every one of them.
    pub fn verify(&self, bytes: &[u8]) -> bool {
        if bytes.len() != self.read_bytes() {
            return false;
        }
        bytes.chunks(PAGE_BYTES).zip(&self.crcs[..self.pages]).all(|(page, &crc)| crc32c::crc32c(page) == crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal::NodeId;
    use crate::leaf::{find_in_run, leaf_from, RunFind};
    use crate::message::Value;
    use crate::node::Node;

    /// A sample's (key, value) pairs.
    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn sample() -> (Entries, Vec<u8>, Leaf, Location) {
        let entries: Entries =
            (0..150u32).map(|i| (format!("key{:06}", i * 2).into_bytes(), vec![b'a' + (i % 26) as u8; 90])).collect();
        let refs: Vec<(&[u8], Value)> = entries.iter().map(|(k, v)| (k.as_slice(), Value::Inline(v.clone()))).collect();
        let leaf = leaf_from(&refs);
        let image = Node::Leaf(leaf.clone()).serialize(NodeId(3), 9);
        let at = Location { address: 0, length: image.len() as u32, crc32c: crc32c::crc32c(&image), generation: 9 };
        (entries, image, leaf, at)
    }

    /// Reads `key` the way a get does: one page, then the whole run when
    /// the entry goes on past it.
    fn read(map: &LeafPages, image: &[u8], key: &[u8]) -> (Option<Vec<u8>>, usize) {
        let mut whole = false;
        loop {
            let Plan::Read { first_page, pages, start, whole_end, prefix_bytes } = map.plan(key, whole) else {
                return (None, 0);
            };
            assert!(!whole || key_tag(key) != map.pages[first_page].straddle_tag, "a straddling key read twice");
            let from = first_page * PAGE_BYTES;
            let to = ((first_page + pages) * PAGE_BYTES).min(image.len());
            let bytes = &image[from..to];
            assert!(map.expected(first_page, pages).unwrap().verify(bytes));
            match find_in_run(&bytes[start - from..], whole_end - start, &key[prefix_bytes..]).unwrap() {
                RunFind::Found(e) => match e.value {
                    crate::leaf::ValueRef::Inline(v) => return (Some(v.to_vec()), pages),
                    crate::leaf::ValueRef::Extent(_) => unreachable!(),
                },
                RunFind::Absent => return (None, pages),
                RunFind::CutOff => {
                    assert!(!whole, "a whole run is never cut off");
                    whole = true;
                }
            }
        }
    }

    #[test]
    fn every_key_reads_from_its_page_and_absent_keys_stay_absent() {
        let (entries, image, leaf, at) = sample();
        assert!(image.len() > 3 * PAGE_BYTES);
        let map = LeafPages::build(&image, &leaf, at).unwrap();
        let mut one_page = 0;
        for (k, v) in &entries {
            let (found, pages) = read(&map, &image, k);
            assert_eq!(found.as_ref(), Some(v), "{}", String::from_utf8_lossy(k));
            one_page += usize::from(pages == 1);
            let mut missing = k.clone();
            missing.push(b'!');
            assert_eq!(read(&map, &image, &missing).0, None);
        }
        assert!(one_page >= entries.len() - 4, "{one_page} of {} read one page", entries.len());
        assert!(map.pages.iter().any(|p| p.straddle != NONE), "the sample has entries across pages");
        assert_eq!(map.plan(b"a", false), Plan::Absent);
        assert_eq!(read(&map, &image, b"zzz").0, None);
    }

    #[test]
    fn the_filter_holds_every_key_and_rules_out_most_others() {
        let (entries, image, leaf, at) = sample();
        let map = LeafPages::build(&image, &leaf, at).unwrap();
        assert!(entries.iter().all(|(k, _)| map.may_hold(k)));
        let absent = (0..entries.len() as u32).filter(|i| map.may_hold(format!("key{:06}", i * 2 + 1).as_bytes()));
        assert!(absent.count() < entries.len() / 10, "false maybes above 10%");
    }

    #[test]
    fn a_page_that_differs_from_the_image_fails() {
        let (_, image, leaf, at) = sample();
        let map = LeafPages::build(&image, &leaf, at).unwrap();
        let page = &image[PAGE_BYTES..2 * PAGE_BYTES];
        let second = map.expected(1, 1).unwrap();
        assert!(second.verify(page));
        assert!(!map.expected(0, 1).unwrap().verify(page), "a page read from the wrong place");
        let mut flipped = page.to_vec();
        flipped[100] ^= 4;
        assert!(!second.verify(&flipped));
        assert!(!second.verify(&page[..100]), "a short read");
        assert!(map.expected(9, 1).is_none(), "past the image");
        let last = image.len().div_ceil(PAGE_BYTES) - 1;
        assert!(map.expected(last, 1).unwrap().verify(&image[last * PAGE_BYTES..]), "the last, partial page");
        assert!(map.expected(last, 2).is_none());
    }

    #[test]
    fn a_one_page_leaf_has_no_map() {
        let leaf = leaf_from(&[(b"k", Value::Inline(b"v".to_vec()))]);
        let image = Node::Leaf(leaf.clone()).serialize(NodeId(3), 9);
        let at = Location { address: 0, length: image.len() as u32, crc32c: crc32c::crc32c(&image), generation: 9 };
        assert!(LeafPages::build(&image, &leaf, at).is_none());
    }
}
