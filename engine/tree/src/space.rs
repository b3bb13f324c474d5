//! Space in the shard's region: which pages are in use, and the rule for
//! reusing freed ones.
//!
//! A bitmap has one bit per page (1 = in use). It is kept in chunks shared by
//! reference counting, so a checkpoint snapshots it cheaply.
//!
//! Copy-on-write frees space that the last durable checkpoint may still
//! reference, so a free is never immediate: it waits in `freed_since_freeze`
//! until the next checkpoint is frozen, then in `freed_at_frozen` until that
//! checkpoint is durable, and only then is the space cleared for reuse. The
//! checkpoint image itself excludes every page waiting to be freed.
//!
//! Space-map page on disk (4096 bytes): magic `KTSM`, chunk index (u32),
//! generation (u64), then 510 little-endian u64 words = 32640 page bits.

use std::rc::Rc;

use crate::codec::{get_u32, get_u64, put_u32, put_u64};
use crate::error::{BlockKind, CorruptReason, TreeError};
use crate::limits::PAGE_BYTES;
use crate::table::Location;

pub(crate) const WORDS_PER_CHUNK: usize = 510;
pub(crate) const PAGES_PER_CHUNK: u64 = (WORDS_PER_CHUNK * 64) as u64;
const SPACE_MAGIC: [u8; 4] = *b"KTSM";
const SPACE_HEADER_BYTES: usize = 16;
const _: () = assert!(SPACE_HEADER_BYTES + WORDS_PER_CHUNK * 8 == PAGE_BYTES);

pub(crate) type Chunk = [u64; WORDS_PER_CHUNK];

/// One bit per page of the region.
#[derive(Debug, Clone)]
pub(crate) struct SpaceMap {
    chunks: Vec<Rc<Chunk>>,
    pages: u64,
    free_pages: u64,
}

impl SpaceMap {
    /// An empty map of `pages` (bits past the end are set, so never free).
    pub fn new(pages: u64) -> SpaceMap {
        let n = pages.div_ceil(PAGES_PER_CHUNK).max(1) as usize;
        let end_pages = n as u64 * PAGES_PER_CHUNK;
        let chunks = (0..n).map(|_| Rc::new([0u64; WORDS_PER_CHUNK])).collect();
        let mut map = SpaceMap { chunks, pages, free_pages: end_pages };
        let end = n as u64 * PAGES_PER_CHUNK;
        for p in pages..end {
            map.set_bit(p, true);
        }
        map
    }

    /// Rebuilds a map from its chunks (decoded from a checkpoint).
    pub fn from_chunks(chunks: Vec<Rc<Chunk>>, pages: u64) -> Result<SpaceMap, &'static str> {
        if chunks.len() as u64 != pages.div_ceil(PAGES_PER_CHUNK).max(1) {
            return Err("space map chunk count");
        }
        let mut map = SpaceMap { chunks, pages, free_pages: 0 };
        let end = map.chunks.len() as u64 * PAGES_PER_CHUNK;
        if (pages..end).any(|p| !map.bit(p)) {
            return Err("space map bits past the region");
        }
        let used: u64 = map.chunks.iter().flat_map(|c| c.iter()).map(|w| u64::from(w.count_ones())).sum();
        map.free_pages = end - used;
        Ok(map)
    }

    pub fn chunks(&self) -> &[Rc<Chunk>] {
        &self.chunks
    }

    pub fn pages(&self) -> u64 {
        self.pages
    }

    pub fn free_pages(&self) -> u64 {
        self.free_pages
    }

    fn word_of(p: u64) -> (usize, usize, u64) {
        let c = (p / PAGES_PER_CHUNK) as usize;
        let bit = p % PAGES_PER_CHUNK;
        (c, (bit / 64) as usize, 1u64 << (bit % 64))
    }

    pub fn bit(&self, p: u64) -> bool {
        let (c, w, m) = Self::word_of(p);
        self.chunks[c][w] & m != 0
    }

    fn set_bit(&mut self, p: u64, used: bool) {
        let (c, w, m) = Self::word_of(p);
        let word = &mut Rc::make_mut(&mut self.chunks[c])[w];
        debug_assert_ne!(*word & m != 0, used, "page {p} already {}", if used { "in use" } else { "free" });
        if used {
            *word |= m;
            self.free_pages -= 1;
        } else {
            *word &= !m;
            self.free_pages += 1;
        }
    }

    pub fn is_free_range(&self, start: u64, n: u64) -> bool {
        start.checked_add(n).is_some_and(|end| end <= self.pages) && (start..start + n).all(|p| !self.bit(p))
    }

    pub fn is_used_range(&self, start: u64, n: u64) -> bool {
        start.checked_add(n).is_some_and(|end| end <= self.pages) && (start..start + n).all(|p| self.bit(p))
    }

    pub fn mark_used(&mut self, start: u64, n: u64) {
        for p in start..start + n {
            self.set_bit(p, true);
        }
    }

    pub fn mark_free(&mut self, start: u64, n: u64) {
        for p in start..start + n {
            self.set_bit(p, false);
        }
    }

    /// The first run of `n` free pages at or after `from`, wrapping once.
    pub fn find_run(&self, n: u64, from: u64) -> Option<u64> {
        if n == 0 || n > self.free_pages {
            return None;
        }
        let from = if from >= self.pages { 0 } else { from };
        self.find_run_in(n, from, self.pages).or_else(|| self.find_run_in(n, 0, (from + n).min(self.pages)))
    }

    fn find_run_in(&self, n: u64, from: u64, to: u64) -> Option<u64> {
        let (mut run_start, mut run_len) = (from, 0u64);
        let mut p = from;
        while p < to {
            if p.is_multiple_of(64) && p + 64 <= to {
                let (c, w, _) = Self::word_of(p);
                let word = self.chunks[c][w];
                if word == u64::MAX {
                    run_len = 0;
                    p += 64;
                    continue;
                }
                if word == 0 {
                    if run_len == 0 {
                        run_start = p;
                    }
                    run_len += 64;
                    if run_len >= n {
                        return Some(run_start);
                    }
                    p += 64;
                    continue;
                }
            }
            if self.bit(p) {
                run_len = 0;
            } else {
                if run_len == 0 {
                    run_start = p;
                }
                run_len += 1;
                if run_len >= n {
                    return Some(run_start);
                }
            }
            p += 1;
        }
        None
    }
}

/// The live space map and the frees waiting for checkpoints to be durable.
///
/// Space can also be *in flight*: allocated and being written, but not yet
/// referenced by the tree (an eviction write, an extent whose journal record
/// has not been applied). A checkpoint image excludes in-flight space, so a
/// crash never leaks it; recovery adopts the extents the journal refers to.
#[derive(Debug)]
pub(crate) struct Space {
    /// 1 = in use, in flight, or waiting to be freed.
    pub map: SpaceMap,
    freed_since_freeze: Vec<(u64, u64)>,
    freed_at_frozen: Vec<(u64, u64)>,
    in_flight: std::collections::HashMap<u64, u64>,
    cursor: u64,
}

impl Space {
    pub fn new(map: SpaceMap) -> Space {
        Space {
            map,
            freed_since_freeze: Vec::new(),
            freed_at_frozen: Vec::new(),
            in_flight: std::collections::HashMap::new(),
            cursor: 0,
        }
    }

    /// Allocates `n` contiguous pages that the tree will reference at once
    /// (checkpoint writes), or `None` when no run is free.
    pub fn alloc(&mut self, n: u64) -> Option<u64> {
        let start = self.map.find_run(n, self.cursor)?;
        self.map.mark_used(start, n);
        self.cursor = start + n;
        Some(start)
    }

    /// Allocates pages that stay in flight until [`Space::commit`] or
    /// [`Space::abort`].
    pub fn alloc_in_flight(&mut self, n: u64) -> Option<u64> {
        let start = self.alloc(n)?;
        self.in_flight.insert(start, n);
        Some(start)
    }

    /// In-flight pages are now referenced by the tree.
    pub fn commit(&mut self, start: u64) {
        let removed = self.in_flight.remove(&start);
        debug_assert!(removed.is_some(), "commit of pages {start} not in flight");
    }

    /// In-flight pages that nothing will reference: free at once (no
    /// checkpoint image includes in-flight space).
    pub fn abort(&mut self, start: u64) {
        if let Some(n) = self.in_flight.remove(&start) {
            self.map.mark_free(start, n);
        }
    }

    /// Frees pages that a durable or frozen checkpoint may reference.
    pub fn free_deferred(&mut self, start: u64, n: u64) {
        debug_assert!(self.map.is_used_range(start, n), "deferred free of pages {start}+{n} not in use");
        self.freed_since_freeze.push((start, n));
    }

    /// Frees pages no checkpoint references (never written, or orphaned).
    pub fn free_now(&mut self, start: u64, n: u64) {
        self.map.mark_free(start, n);
    }

    /// Frees pages that the previous checkpoint references but the frozen one
    /// does not (its own replaced metadata): reusable once the frozen one is
    /// durable.
    pub fn free_at_frozen(&mut self, start: u64, n: u64) {
        self.freed_at_frozen.push((start, n));
    }

    /// A checkpoint is frozen: returns the image's space map (the live map
    /// without any page waiting to be freed).
    pub fn freeze(&mut self) -> SpaceMap {
        debug_assert!(self.freed_at_frozen.is_empty(), "a checkpoint is already frozen");
        self.freed_at_frozen = std::mem::take(&mut self.freed_since_freeze);
        let mut image = self.map.clone();
        for &(s, n) in &self.freed_at_frozen {
            if !self.in_flight.contains_key(&s) {
                image.mark_free(s, n);
            }
        }
        for (&s, &n) in &self.in_flight {
            image.mark_free(s, n);
        }
        image
    }

    /// The frozen checkpoint is durable: what it freed may be reused.
    pub fn checkpoint_durable(&mut self) {
        for (s, n) in std::mem::take(&mut self.freed_at_frozen) {
            self.in_flight.remove(&s);
            self.map.mark_free(s, n);
        }
    }

    /// The frozen checkpoint failed: its frees wait for the next one.
    pub fn checkpoint_failed(&mut self) {
        let mut at = std::mem::take(&mut self.freed_at_frozen);
        at.append(&mut self.freed_since_freeze);
        self.freed_since_freeze = at;
    }

    /// Withdraws frees that were waiting for the frozen checkpoint (it will
    /// not become durable and the pages stay referenced).
    pub fn cancel_at_frozen(&mut self, frees: &[(u64, u64)]) {
        self.freed_at_frozen.retain(|f| !frees.contains(f));
    }

    /// Pages waiting for a checkpoint before they can be reused.
    pub fn pending_pages(&self) -> u64 {
        self.freed_since_freeze.iter().chain(&self.freed_at_frozen).map(|&(_, n)| n).sum()
    }
}

pub(crate) fn encode_chunk(chunk: &Chunk, index: u32, generation: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAGE_BYTES);
    out.extend_from_slice(&SPACE_MAGIC);
    put_u32(&mut out, index);
    put_u64(&mut out, generation);
    for w in chunk {
        put_u64(&mut out, *w);
    }
    out
}

pub(crate) fn decode_chunk(bytes: &[u8], index: u32, at: &Location) -> Result<Chunk, TreeError> {
    let corrupt = |reason| TreeError::corrupt(BlockKind::SpaceMap, at.address, reason);
    if bytes.len() < PAGE_BYTES || bytes[0..4] != SPACE_MAGIC {
        return Err(corrupt(CorruptReason::Malformed(crate::codec::Malformed("space map magic"))));
    }
    let found_index = get_u32(bytes, 4);
    if found_index != index {
        return Err(corrupt(CorruptReason::WrongIdentity { expected: index.into(), found: found_index.into() }));
    }
    let found_gen = get_u64(bytes, 8);
    if found_gen != at.generation {
        return Err(corrupt(CorruptReason::WrongGeneration { expected: at.generation, found: found_gen }));
    }
    let mut chunk = [0u64; WORDS_PER_CHUNK];
    for (i, w) in chunk.iter_mut().enumerate() {
        *w = get_u64(bytes, SPACE_HEADER_BYTES + i * 8);
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_found_and_the_end_is_never_allocated() {
        let mut s = Space::new(SpaceMap::new(100));
        let a = s.alloc(60).unwrap();
        let b = s.alloc(40).unwrap();
        assert_eq!((a, b), (0, 60));
        assert_eq!(s.alloc(1), None);
        s.free_now(10, 5);
        assert_eq!(s.alloc(6), None);
        assert_eq!(s.alloc(5), Some(10));
    }

    #[test]
    fn freed_space_is_reused_only_after_the_next_checkpoint_is_durable() {
        let mut s = Space::new(SpaceMap::new(10));
        let a = s.alloc(10).unwrap();
        s.free_deferred(a, 4);
        assert_eq!(s.alloc(1), None);
        let image = s.freeze();
        assert!(image.is_free_range(0, 4), "the image excludes pages waiting to be freed");
        s.free_deferred(4, 2);
        assert_eq!(s.alloc(1), None, "not before the checkpoint is durable");
        s.checkpoint_durable();
        assert_eq!(s.alloc(4), Some(0));
        assert_eq!(s.alloc(1), None, "pages freed after the freeze wait for the next checkpoint");
        let _ = s.freeze();
        s.checkpoint_durable();
        assert_eq!(s.alloc(2), Some(4));
    }

    #[test]
    fn chunks_round_trip() {
        let mut m = SpaceMap::new(PAGES_PER_CHUNK + 7);
        m.mark_used(3, 2);
        m.mark_used(PAGES_PER_CHUNK + 1, 1);
        let at = Location { address: 0, length: 4096, crc32c: 0, generation: 5 };
        let chunks: Vec<_> = m
            .chunks()
            .iter()
            .enumerate()
            .map(|(i, c)| Rc::new(decode_chunk(&encode_chunk(c, i as u32, 5), i as u32, &at).unwrap()))
            .collect();
        let back = SpaceMap::from_chunks(chunks, m.pages()).unwrap();
        assert_eq!(back.free_pages(), m.free_pages());
        assert!(back.bit(3) && back.bit(4) && back.bit(PAGES_PER_CHUNK + 1) && !back.bit(5));
    }
}
