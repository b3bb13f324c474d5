//! Message buffers of internal nodes: for each child, the messages that are
//! waiting to be flushed to it.
//!
//! A buffer holds, per key, one [`Pending`] (what the messages that reached
//! this node say about the key, combined in LSN order), and a set of range
//! tombstones. Invariant: every point in a buffer is newer than every
//! tombstone of the same buffer that covers its key (a tombstone drops the
//! older points it covers when it arrives), and a point whose base is
//! [`Base::Below`] is never covered by a tombstone of its buffer (it is
//! rebased on the delete instead). So a lookup decides from one buffer alone
//! whether it must look further down.
//!
//! Memory form: the buffered points decide how many messages the cache
//! holds, and so how many a flush carries down to a leaf (BENCHMARKS.md,
//! "Where a random fill's bytes and time go"). So the points are kept in
//! their node encoding (`[key len: u16][key][pending]`) in one byte arena
//! per buffer, with a key-ordered array of spans into it: a point costs its
//! encoded bytes plus 8, not a map slot and two allocations. A replaced
//! point leaves dead bytes behind, reclaimed when they grow to a quarter of
//! the arena.

use crate::codec::{put_bytes16, put_u32, Malformed, Reader};
use crate::filter::{key_hash, KeyFilter};
use crate::limits::{KEY_BYTES_MAX, RANGE_END_BYTES_MAX};
use crate::message::ExtentRef;
pub(crate) use crate::pending::{Base, BaseRef, Pending, PendingRef};

const TOMBSTONE_MEM_OVERHEAD: usize = 64;
/// Dead arena bytes tolerated before a rebuild, at the least.
const DEAD_BYTES_MIN: usize = 512;
/// Arena growth step at the least (a buffer rarely holds less).
const ARENA_GROW_MIN: usize = 256;

/// Where a point's encoding sits in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// The messages an internal node holds for one child.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChildBuffer {
    /// Encoded points, in arrival order, with dead ones among them.
    arena: Vec<u8>,
    /// The live points, in key order.
    spans: Vec<Span>,
    dead_bytes: usize,
    /// Sorted, disjoint half-open ranges.
    tombstones: Tombstones,
    encoded_bytes: usize,
    /// Every live point's key is in it (see `filter.rs`).
    filter: KeyFilter,
}

/// Sorted, disjoint half-open ranges.
pub(crate) type Tombstones = Vec<(Vec<u8>, Vec<u8>)>;

/// Bytes of the two counts that start a buffer's encoding.
pub(crate) const BUFFER_HEADER_BYTES: usize = 8;

fn tombstone_bytes(start: &[u8], end: &[u8]) -> usize {
    4 + start.len() + end.len()
}

impl PartialEq for ChildBuffer {
    fn eq(&self, other: &Self) -> bool {
        self.point_count() == other.point_count()
            && self.tombstones == other.tombstones
            && (0..self.point_count()).all(|i| self.raw(i) == other.raw(i))
    }
}

impl Eq for ChildBuffer {}

impl ChildBuffer {
    /// Encoded bytes of the messages (without the buffer header).
    pub fn encoded_bytes(&self) -> usize {
        self.encoded_bytes
    }

    /// Memory held, counted by capacity (what the allocator really gave).
    pub fn mem_bytes(&self) -> usize {
        self.arena.capacity()
            + self.spans.capacity() * std::mem::size_of::<Span>()
            + self.tombstones.iter().map(|(s, e)| s.len() + e.len() + TOMBSTONE_MEM_OVERHEAD).sum::<usize>()
            + self.filter.mem_bytes()
    }

    pub fn point_count(&self) -> usize {
        self.spans.len()
    }

    pub fn tombstones(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.tombstones
    }

    /// The encoding of point `i` (in key order).
    fn raw(&self, i: usize) -> &[u8] {
        let s = self.spans[i];
        &self.arena[s.start as usize..(s.start + s.len) as usize]
    }

    pub fn key(&self, i: usize) -> &[u8] {
        let raw = self.raw(i);
        let len = usize::from(u16::from_le_bytes([raw[0], raw[1]]));
        &raw[2..2 + len]
    }

    /// Point `i`: its key, its encoding and its pending read in place.
    pub fn point(&self, i: usize) -> (&[u8], &[u8], PendingRef<'_>) {
        let raw = self.raw(i);
        let len = usize::from(u16::from_le_bytes([raw[0], raw[1]]));
        let pending = PendingRef::parse(&raw[2 + len..]).expect("buffered points are checked when they enter");
        (&raw[2..2 + len], raw, pending)
    }

    /// The points in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], PendingRef<'_>)> + '_ {
        (0..self.point_count()).map(|i| {
            let (k, _, p) = self.point(i);
            (k, p)
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.point_count()).map(|i| self.key(i))
    }

    /// The points with `low <= key < high` (`high` None: no upper bound).
    pub fn range<'a>(
        &'a self,
        low: &[u8],
        high: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], PendingRef<'a>)> + 'a {
        let from = self.lower_bound(low);
        let to = high.map_or(self.point_count(), |h| self.lower_bound(h));
        (from..to.max(from)).map(|i| {
            let (k, _, p) = self.point(i);
            (k, p)
        })
    }

    /// `Ok(i)` when point `i` has `key`, else `Err(i)` where it would go.
    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        crate::heads::search(self.point_count(), |i| self.key(i).cmp(key))
    }

    fn lower_bound(&self, key: &[u8]) -> usize {
        self.find(key).unwrap_or_else(|i| i)
    }

    pub fn get(&self, key: &[u8]) -> Option<PendingRef<'_>> {
        self.find(key).ok().map(|i| self.point(i).2)
    }

    /// [`ChildBuffer::get`] for a key whose [`key_hash`] is `hash`: asks
    /// the filter first, so most buffers are passed without a search.
    pub fn get_hashed(&self, key: &[u8], hash: u64) -> Option<PendingRef<'_>> {
        if self.spans.is_empty() || !self.filter.may_hold(hash) {
            return None;
        }
        self.get(key)
    }

    /// Adds the key of a point just inserted to the filter (rebuilding it,
    /// larger, when it is full).
    fn filter_add(&mut self, hash: u64) {
        if self.filter.is_full_for(self.point_count()) {
            self.rebuild_filter();
        } else {
            self.filter.add(hash);
        }
    }

    fn rebuild_filter(&mut self) {
        let filter = KeyFilter::with_hashes(self.point_count(), self.keys().map(key_hash));
        self.filter = filter;
    }

    /// True when the buffer holds deletes (which free space once they reach
    /// the leaves).
    pub fn has_deletes(&self) -> bool {
        !self.tombstones.is_empty() || self.iter().any(|(_, p)| p.base == BaseRef::Delete)
    }

    /// True when a tombstone of this buffer covers `key`.
    pub fn covers(&self, key: &[u8]) -> bool {
        let i = self.tombstones.partition_point(|(s, _)| s.as_slice() <= key);
        i > 0 && key < self.tombstones[i - 1].1.as_slice()
    }

    /// The smallest key or tombstone start in the buffer.
    pub fn first_key(&self) -> Option<&[u8]> {
        let point = (self.point_count() > 0).then(|| self.key(0));
        let tomb = self.tombstones.first().map(|(s, _)| s.as_slice());
        match (point, tomb) {
            (Some(p), Some(t)) => Some(p.min(t)),
            (p, t) => p.or(t),
        }
    }

    /// Makes room for `n` more arena bytes, growing it by a quarter at a
    /// time (not doubling: the slack would count against the cache).
    fn reserve_arena(&mut self, n: usize) {
        if self.arena.capacity() - self.arena.len() < n {
            self.arena.reserve_exact(n.max(self.arena.len() / 4).max(ARENA_GROW_MIN));
        }
    }

    /// Appends an encoded point to the arena.
    fn push_arena(&mut self, raw: &[u8]) -> Span {
        self.reserve_arena(raw.len());
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(raw);
        Span { start, len: raw.len() as u32 }
    }

    /// Encodes a point straight into the arena: no temporary buffer per
    /// message (one allocation and copy less on every buffered insert).
    fn push_pending(&mut self, key: &[u8], p: &Pending) -> Span {
        let n = 2 + key.len() + p.encoded_bytes();
        self.reserve_arena(n);
        let start = self.arena.len();
        put_bytes16(&mut self.arena, key);
        p.encode(&mut self.arena);
        debug_assert_eq!(self.arena.len() - start, n);
        Span { start: start as u32, len: (self.arena.len() - start) as u32 }
    }

    /// Adds a message newer than everything in the buffer.
    pub fn insert_point(&mut self, key: &[u8], mut newer: Pending, inline_max: usize, garbage: &mut Vec<ExtentRef>) {
        match self.find(key) {
            Ok(i) => {
                let older = self.point(i).2.to_owned();
                let combined = older.combine(newer, inline_max, garbage);
                self.replace(i, key, &combined);
            }
            Err(i) => {
                if newer.base == Base::Below && self.covers(key) {
                    newer.base = Base::Delete;
                    newer.normalize(inline_max);
                }
                let span = self.push_pending(key, &newer);
                self.encoded_bytes += span.len as usize;
                self.spans.insert(i, span);
                self.filter_add(key_hash(key));
            }
        }
    }

    /// Takes in the points `range` of `incoming` (a buffer flushed from the
    /// parent: in key order, inside this child's bounds, newer than
    /// everything here) in one merge pass, copying each point's encoding as
    /// it is unless something here combines with it. Why not one insert per
    /// point: each grew the arena (a realloc every few points), shifted the
    /// span array and searched it from scratch; a flush carries tens of
    /// points into a buffer, so the arena is grown once here, the spans are
    /// rebuilt once, and each search starts where the last one ended.
    pub fn absorb_run(
        &mut self,
        incoming: &ChildBuffer,
        range: std::ops::Range<usize>,
        inline_max: usize,
        garbage: &mut Vec<ExtentRef>,
    ) {
        if range.is_empty() {
            return;
        }
        let raw_bytes: usize = incoming.spans[range.clone()].iter().map(|s| s.len as usize).sum();
        self.reserve_arena(raw_bytes);
        let old = std::mem::take(&mut self.spans);
        let mut spans = Vec::with_capacity(old.len() + range.len());
        let mut hashes = Vec::with_capacity(range.len());
        let mut next = 0usize;
        for p in range {
            let (key, raw, pending) = incoming.point(p);
            let found = self.gallop(&old, next, key);
            let at = found.unwrap_or_else(|i| i);
            spans.extend_from_slice(&old[next..at]);
            next = at;
            let span = match found {
                Ok(i) => {
                    let older = self.span_pending(old[i]).to_owned();
                    let combined = older.combine(pending.to_owned(), inline_max, garbage);
                    self.dead_bytes += old[i].len as usize;
                    self.encoded_bytes -= old[i].len as usize;
                    next = i + 1;
                    self.push_pending(key, &combined)
                }
                Err(_) if pending.base == BaseRef::Below && self.covers(key) => {
                    let mut newer = pending.to_owned();
                    newer.base = Base::Delete;
                    newer.normalize(inline_max);
                    hashes.push(key_hash(key));
                    self.push_pending(key, &newer)
                }
                Err(_) => {
                    hashes.push(key_hash(key));
                    self.push_arena(raw)
                }
            };
            self.encoded_bytes += span.len as usize;
            spans.push(span);
        }
        spans.extend_from_slice(&old[next..]);
        self.spans = spans;
        if self.filter.is_full_for(self.point_count()) {
            self.rebuild_filter();
        } else {
            hashes.into_iter().for_each(|h| self.filter.add(h));
        }
        self.maybe_compact();
    }

    /// Where `key` is (`Ok`) or would go (`Err`) among `spans[from..]`, whose
    /// keys are sorted: an exponential search from `from` (the points of a
    /// flush arrive in key order, so the next one is usually close), then
    /// a binary search within the step that passed it.
    fn gallop(&self, spans: &[Span], from: usize, key: &[u8]) -> Result<usize, usize> {
        let key_at = |i: usize| self.span_key(spans[i]);
        let (mut lo, mut step) = (from, 1usize);
        while lo + step <= spans.len() && key_at(lo + step - 1) < key {
            lo += step;
            step *= 2;
        }
        let hi = (lo + step).min(spans.len());
        crate::heads::search(hi - lo, |i| key_at(lo + i).cmp(key)).map(|i| lo + i).map_err(|i| lo + i)
    }

    fn span_key(&self, s: Span) -> &[u8] {
        let raw = &self.arena[s.start as usize..(s.start + s.len) as usize];
        let len = usize::from(u16::from_le_bytes([raw[0], raw[1]]));
        &raw[2..2 + len]
    }

    fn span_pending(&self, s: Span) -> PendingRef<'_> {
        let raw = &self.arena[s.start as usize..(s.start + s.len) as usize];
        let len = usize::from(u16::from_le_bytes([raw[0], raw[1]]));
        PendingRef::parse(&raw[2 + len..]).expect("buffered points are checked when they enter")
    }

    fn replace(&mut self, i: usize, key: &[u8], p: &Pending) {
        let old = self.spans[i].len as usize;
        let span = self.push_pending(key, p);
        self.spans[i] = span;
        self.encoded_bytes = self.encoded_bytes - old + span.len as usize;
        self.dead_bytes += old;
        self.maybe_compact();
    }

    fn maybe_compact(&mut self) {
        if self.dead_bytes >= DEAD_BYTES_MIN && self.dead_bytes * 4 >= self.arena.len() {
            self.compact();
        }
    }

    /// Rewrites the arena with the live points only, in key order.
    fn compact(&mut self) {
        let live = self.arena.len() - self.dead_bytes;
        let mut arena = Vec::with_capacity(live);
        let mut spans = Vec::with_capacity(self.spans.len());
        for i in 0..self.point_count() {
            let raw = self.raw(i);
            spans.push(Span { start: arena.len() as u32, len: raw.len() as u32 });
            arena.extend_from_slice(raw);
        }
        self.arena = arena;
        self.spans = spans;
        self.dead_bytes = 0;
        // Points may have left (tombstones, splits): tighten the filter.
        self.rebuild_filter();
    }

    /// Adds a range delete newer than everything in the buffer: drops the
    /// points it covers and joins it with overlapping tombstones.
    pub fn insert_tombstone(&mut self, start: &[u8], end: &[u8], garbage: &mut Vec<ExtentRef>) {
        if start >= end {
            return;
        }
        let (from, to) = (self.lower_bound(start), self.lower_bound(end));
        for i in from..to {
            garbage.extend(self.point(i).2.extent());
            let len = self.spans[i].len as usize;
            self.encoded_bytes -= len;
            self.dead_bytes += len;
        }
        self.spans.drain(from..to);
        self.maybe_compact();
        let (mut s, mut e) = (start.to_vec(), end.to_vec());
        let mut kept = Vec::with_capacity(self.tombstones.len() + 1);
        for (ts, te) in self.tombstones.drain(..) {
            if te.as_slice() < s.as_slice() || ts.as_slice() > e.as_slice() {
                kept.push((ts, te));
            } else {
                self.encoded_bytes -= tombstone_bytes(&ts, &te);
                if ts < s {
                    s = ts;
                }
                if te > e {
                    e = te;
                }
            }
        }
        self.encoded_bytes += tombstone_bytes(&s, &e);
        let at = kept.partition_point(|(ts, _)| ts.as_slice() < s.as_slice());
        kept.insert(at, (s, e));
        self.tombstones = kept;
    }

    /// Moves everything at or above `pivot` into a new buffer.
    pub fn split_off(&mut self, pivot: &[u8]) -> ChildBuffer {
        let at = self.lower_bound(pivot);
        let mut right = ChildBuffer::default();
        for i in at..self.point_count() {
            right.push_copy(self.raw(i));
        }
        for i in at..self.point_count() {
            self.dead_bytes += self.spans[i].len as usize;
        }
        self.spans.truncate(at);
        self.compact();
        let mut left_tombs = Vec::new();
        for (s, e) in self.tombstones.drain(..) {
            if e.as_slice() <= pivot {
                left_tombs.push((s, e));
            } else if s.as_slice() >= pivot {
                right.tombstones.push((s, e));
            } else {
                left_tombs.push((s, pivot.to_vec()));
                right.tombstones.push((pivot.to_vec(), e));
            }
        }
        self.tombstones = left_tombs;
        self.recount();
        right.recount();
        right
    }

    /// Appends a point's encoding after every point here (keys in order).
    fn push_copy(&mut self, raw: &[u8]) {
        let span = self.push_arena(raw);
        self.spans.push(span);
        let hash = key_hash(self.key(self.point_count() - 1));
        self.filter_add(hash);
    }

    /// Appends a buffer whose keys all lie above this one's.
    pub fn append(&mut self, mut right: ChildBuffer) {
        debug_assert!(match (self.point_count().checked_sub(1).map(|i| self.key(i)), right.first_key()) {
            (Some(l), Some(r)) => l < r,
            _ => true,
        });
        for i in 0..right.point_count() {
            self.push_copy(right.raw(i));
        }
        self.tombstones.append(&mut right.tombstones);
        self.recount();
    }

    /// Takes the contents, leaving the buffer empty.
    pub fn take(&mut self) -> ChildBuffer {
        std::mem::take(self)
    }

    fn recount(&mut self) {
        self.encoded_bytes = self.spans.iter().map(|s| s.len as usize).sum::<usize>()
            + self.tombstones.iter().map(|(s, e)| tombstone_bytes(s, e)).sum::<usize>();
    }

    /// Every extent the buffer references (for space accounting and fsck).
    pub fn extents(&self) -> impl Iterator<Item = ExtentRef> + '_ {
        self.iter().filter_map(|(_, p)| p.extent())
    }

    /// Appends the buffer's encoding (FORMAT.md, internal nodes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.point_count() as u32);
        put_u32(out, self.tombstones.len() as u32);
        for i in 0..self.point_count() {
            out.extend_from_slice(self.raw(i));
        }
        for (s, e) in &self.tombstones {
            put_bytes16(out, s);
            put_bytes16(out, e);
        }
    }

    /// Decodes and checks one buffer of a child whose keys lie in
    /// `[low, high)`; the points' encoding becomes the arena as it is.
    pub fn decode(r: &mut Reader<'_>, low: Option<&[u8]>, high: Option<&[u8]>) -> Result<ChildBuffer, Malformed> {
        let in_range = |k: &[u8]| low.is_none_or(|l| l <= k) && high.is_none_or(|h| k < h);
        let points_n = r.u32("buffer point count")? as usize;
        let tombs_n = r.u32("buffer tombstone count")? as usize;
        if points_n > r.remaining() || tombs_n > r.remaining() {
            return Err(Malformed("buffer counts"));
        }
        let first = r.position();
        let mut spans = Vec::with_capacity(points_n);
        let mut last: Option<&[u8]> = None;
        for _ in 0..points_n {
            let start = r.position();
            let key = r.bytes16(KEY_BYTES_MAX, "buffered key")?;
            if !in_range(key) || last.is_some_and(|l| l >= key) {
                return Err(Malformed("buffered key order"));
            }
            PendingRef::skip_checked(r)?;
            last = Some(key);
            spans.push(Span { start: (start - first) as u32, len: (r.position() - start) as u32 });
        }
        let arena = r.since(first).to_vec();
        let mut tombstones: Tombstones = Vec::with_capacity(tombs_n);
        for _ in 0..tombs_n {
            let s = r.bytes16(KEY_BYTES_MAX, "tombstone start")?.to_vec();
            let e = r.bytes16(RANGE_END_BYTES_MAX, "tombstone end")?.to_vec();
            let ordered = tombstones.last().is_none_or(|(_, pe)| pe.as_slice() < s.as_slice());
            if s >= e || !ordered || !in_range(&s) || high.is_some_and(|h| e.as_slice() > h) {
                return Err(Malformed("tombstone range"));
            }
            tombstones.push((s, e));
        }
        let mut buffer =
            ChildBuffer { arena, spans, dead_bytes: 0, tombstones, encoded_bytes: 0, filter: KeyFilter::default() };
        buffer.recount();
        buffer.rebuild_filter();
        let below_covered = buffer.iter().any(|(k, p)| p.base == BaseRef::Below && buffer.covers(k));
        if below_covered {
            return Err(Malformed("buffered merge under a tombstone"));
        }
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::ValueRef;
    use crate::message::{MergeOp, Message, Value};

    fn put(v: &[u8]) -> Pending {
        Pending::from_message(Message::Put(Value::Inline(v.to_vec())))
    }

    fn merge(op: MergeOp) -> Pending {
        Pending::from_message(Message::Merge(op))
    }

    fn owned(b: &ChildBuffer, key: &[u8]) -> Option<Pending> {
        b.get(key).map(PendingRef::to_owned)
    }

    #[test]
    fn a_newer_put_replaces_and_merges_fold_into_inline_puts() {
        let mut b = ChildBuffer::default();
        let mut g = Vec::new();
        b.insert_point(b"k", put(b"ab"), 64, &mut g);
        b.insert_point(b"k", merge(MergeOp::Append(b"c".to_vec())), 64, &mut g);
        assert_eq!(b.get(b"k").unwrap().base, BaseRef::Put(ValueRef::Inline(b"abc")));
        b.insert_point(b"k", put(b"z"), 64, &mut g);
        assert_eq!(owned(&b, b"k").unwrap(), put(b"z"));
        assert_eq!(b.encoded_bytes(), 2 + 1 + put(b"z").encoded_bytes());
    }

    #[test]
    fn a_tombstone_drops_older_points_and_rebases_newer_merges() {
        let mut b = ChildBuffer::default();
        let mut g = Vec::new();
        let e = ExtentRef { address: 1, length: 10, crc32c: 0, generation: 1 };
        b.insert_point(b"b", Pending::from_message(Message::Put(Value::Extent(e))), 64, &mut g);
        b.insert_point(b"x", put(b"1"), 64, &mut g);
        b.insert_tombstone(b"a", b"c", &mut g);
        assert_eq!(g, vec![e]);
        assert!(b.get(b"b").is_none());
        assert!(b.covers(b"b") && !b.covers(b"c") && b.get(b"x").is_some());
        b.insert_point(b"b", merge(MergeOp::Append(b"q".to_vec())), 64, &mut g);
        assert_eq!(b.get(b"b").unwrap().base, BaseRef::Put(ValueRef::Inline(b"q")));
        b.insert_tombstone(b"b", b"f", &mut g);
        assert_eq!(b.tombstones(), &[(b"a".to_vec(), b"f".to_vec())]);
        let right = b.split_off(b"d");
        assert_eq!(b.tombstones(), &[(b"a".to_vec(), b"d".to_vec())]);
        assert_eq!(right.tombstones(), &[(b"d".to_vec(), b"f".to_vec())]);
        assert!(right.get(b"x").is_some());
    }

    #[test]
    fn counter_merges_on_an_unknown_base_join() {
        let mut b = ChildBuffer::default();
        let mut g = Vec::new();
        b.insert_point(b"n", merge(MergeOp::AddI64(2)), 64, &mut g);
        b.insert_point(b"n", merge(MergeOp::AddI64(3)), 64, &mut g);
        assert_eq!(b.get(b"n").unwrap().merges(), vec![MergeOp::AddI64(5)]);
    }

    /// A flush's run of points absorbed in one merge leaves the same buffer
    /// as one insert per point: new keys, keys that combine with a buffered
    /// point, merges under a tombstone (rebased on a delete), and the
    /// garbage they make.
    #[test]
    fn absorbing_a_run_equals_one_insert_per_point() {
        let mut x = 11u64;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 33
        };
        for round in 0..40u64 {
            let (mut here, mut parent, mut g) = (ChildBuffer::default(), ChildBuffer::default(), Vec::new());
            let message = |r: u64| match r % 4 {
                0 => merge(MergeOp::AddI64(r as i64)),
                1 => Pending::from_message(Message::Delete),
                2 => merge(MergeOp::Append(vec![r as u8; (r % 5) as usize])),
                _ => put(&vec![r as u8; (r % 30) as usize]),
            };
            for _ in 0..(next() % 200) {
                let r = next();
                here.insert_point(format!("k{:03}", r % 300).as_bytes(), message(r), 16, &mut g);
            }
            if round % 2 == 0 {
                here.insert_tombstone(b"k100", b"k150", &mut g);
            }
            for _ in 0..(next() % 120) {
                let r = next();
                parent.insert_point(format!("k{:03}", r % 300).as_bytes(), message(r), 16, &mut g);
            }
            let (mut merged, mut one_by_one) = (here.clone(), here);
            let (mut g1, mut g2) = (Vec::new(), Vec::new());
            merged.absorb_run(&parent, 0..parent.point_count(), 16, &mut g1);
            for (k, p) in parent.iter() {
                one_by_one.insert_point(k, p.to_owned(), 16, &mut g2);
            }
            assert_eq!(merged, one_by_one, "round {round}");
            assert_eq!(merged.encoded_bytes(), one_by_one.encoded_bytes());
            assert_eq!(g1, g2);
            for k in (0..300).map(|i| format!("k{i:03}").into_bytes()) {
                let hash = crate::filter::key_hash(&k);
                assert_eq!(merged.get_hashed(&k, hash).map(PendingRef::to_owned), owned(&one_by_one, &k));
            }
        }
    }

    /// The arena form against a map of owned pendings, through inserts,
    /// replacements (dead bytes, compaction), tombstones, splits, appends
    /// and an encoding round trip.
    #[test]
    fn the_arena_agrees_with_a_map() {
        let mut b = ChildBuffer::default();
        let mut model = std::collections::BTreeMap::new();
        let mut g = Vec::new();
        let mut x = 7u64;
        for step in 0..3000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let key = format!("k{:03}", (x >> 33) % 300).into_bytes();
            if step % 97 == 0 {
                b.insert_tombstone(&key, b"k2", &mut g);
                model.retain(|k: &Vec<u8>, _| k.as_slice() < key.as_slice() || k.as_slice() >= &b"k2"[..]);
                continue;
            }
            let value = vec![(x >> 20) as u8; (x % 40) as usize];
            b.insert_point(&key, put(&value), 4096, &mut g);
            model.insert(key, put(&value));
        }
        let check = |b: &ChildBuffer, model: &std::collections::BTreeMap<Vec<u8>, Pending>| {
            let got: Vec<(Vec<u8>, Pending)> = b.iter().map(|(k, p)| (k.to_vec(), p.to_owned())).collect();
            let want: Vec<(Vec<u8>, Pending)> = model.iter().map(|(k, p)| (k.clone(), p.clone())).collect();
            assert_eq!(got, want);
            let enc: usize = model.iter().map(|(k, p)| 2 + k.len() + p.encoded_bytes()).sum::<usize>()
                + b.tombstones().iter().map(|(s, e)| tombstone_bytes(s, e)).sum::<usize>();
            assert_eq!(b.encoded_bytes(), enc);
            // The filter never hides a buffered key.
            for k in (0..300).map(|i| format!("k{i:03}").into_bytes()) {
                let hash = crate::filter::key_hash(&k);
                assert_eq!(b.get_hashed(&k, hash).map(PendingRef::to_owned), model.get(&k).cloned());
            }
        };
        check(&b, &model);
        assert!(b.arena.len() <= 2 * b.encoded_bytes() + DEAD_BYTES_MIN, "dead bytes are reclaimed");
        let mut out = Vec::new();
        b.encode(&mut out);
        assert_eq!(out.len(), BUFFER_HEADER_BYTES + b.encoded_bytes());
        let back = ChildBuffer::decode(&mut Reader::new(&out), None, None).unwrap();
        assert_eq!(back, b);
        let mut left = back.clone();
        let right = left.split_off(b"k150");
        assert!(left.keys().all(|k| k < &b"k150"[..]) && right.keys().all(|k| k >= &b"k150"[..]));
        left.append(right);
        // (A tombstone across the pivot comes back in two pieces.)
        assert!(left.iter().zip(b.iter()).all(|((lk, lp), (bk, bp))| lk == bk && lp.to_owned() == bp.to_owned()));
        check(&left, &model);
    }
}
