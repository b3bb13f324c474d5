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

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::merge::{apply_all, compose};
use crate::message::{ExtentRef, MergeOp, Message, Value};

/// Approximate memory of one buffered point beyond its encoded bytes
/// (B-tree slot, key and value allocations).
const POINT_MEM_OVERHEAD: usize = 96;
const TOMBSTONE_MEM_OVERHEAD: usize = 64;

/// What a key's older history is, as far as one buffer knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Base {
    /// The buffer holds only merges: the base is further down the tree.
    Below,
    Put(Value),
    Delete,
}

/// The combined effect of the messages a buffer holds for one key: a base,
/// then merges in LSN order (oldest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub base: Base,
    pub merges: Vec<MergeOp>,
}

impl Pending {
    pub fn from_message(message: Message) -> Pending {
        match message {
            Message::Put(v) => Pending { base: Base::Put(v), merges: Vec::new() },
            Message::Delete => Pending { base: Base::Delete, merges: Vec::new() },
            Message::Merge(op) => Pending { base: Base::Below, merges: vec![op] },
        }
    }

    /// Bytes of this pending's encoding in a node (see FORMAT.md, internal nodes).
    pub fn encoded_bytes(&self) -> usize {
        let base = match &self.base {
            Base::Below | Base::Delete => 0,
            Base::Put(v) => v.encoded_bytes() - 1,
        };
        1 + base + 4 + self.merges.iter().map(MergeOp::encoded_bytes).sum::<usize>()
    }

    /// The extent this pending would drop if something newer replaced it.
    pub fn extent(&self) -> Option<ExtentRef> {
        match self.base {
            Base::Put(Value::Extent(e)) => Some(e),
            _ => None,
        }
    }

    /// Folds merges into an inline or deleted base when the result stays
    /// inline, and joins adjacent counter additions.
    pub fn normalize(&mut self, inline_max: usize) {
        if self.merges.is_empty() {
            return;
        }
        let start = match &self.base {
            Base::Put(Value::Inline(v)) => Some(Some(v.clone())),
            Base::Delete => Some(None),
            _ => None,
        };
        if let Some(start) = start {
            let fits = |r: &Option<Vec<u8>>| r.as_ref().is_none_or(|v| v.len() <= inline_max);
            let result = apply_all(start, &self.merges);
            if fits(&result) {
                self.base = result.map_or(Base::Delete, |v| Base::Put(Value::Inline(v)));
                self.merges.clear();
                return;
            }
        }
        let mut joined: Vec<MergeOp> = Vec::with_capacity(self.merges.len());
        for op in self.merges.drain(..) {
            match joined.last().and_then(|last| compose(last, &op)) {
                Some(c) => *joined.last_mut().expect("compose needs a last element") = c,
                None => joined.push(op),
            }
        }
        self.merges = joined;
    }

    /// `newer` applied on top of `self` (older). Extents the result no longer
    /// references are appended to `garbage`.
    pub fn combine(mut self, newer: Pending, inline_max: usize, garbage: &mut Vec<ExtentRef>) -> Pending {
        match newer.base {
            Base::Put(_) | Base::Delete => {
                garbage.extend(self.extent());
                newer
            }
            Base::Below => {
                self.merges.extend(newer.merges);
                self.normalize(inline_max);
                self
            }
        }
    }
}

/// The messages an internal node holds for one child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChildBuffer {
    points: BTreeMap<Vec<u8>, Pending>,
    /// Sorted, disjoint half-open ranges.
    tombstones: Vec<(Vec<u8>, Vec<u8>)>,
    encoded_bytes: usize,
}

/// Buffered points by key.
pub(crate) type Points = BTreeMap<Vec<u8>, Pending>;
/// Sorted, disjoint half-open ranges.
pub(crate) type Tombstones = Vec<(Vec<u8>, Vec<u8>)>;

/// Bytes of the two counts that start a buffer's encoding.
pub(crate) const BUFFER_HEADER_BYTES: usize = 8;

fn point_bytes(key: &[u8], p: &Pending) -> usize {
    2 + key.len() + p.encoded_bytes()
}

fn tombstone_bytes(start: &[u8], end: &[u8]) -> usize {
    4 + start.len() + end.len()
}

impl ChildBuffer {
    /// Encoded bytes of the messages (without the buffer header).
    pub fn encoded_bytes(&self) -> usize {
        self.encoded_bytes
    }

    pub fn mem_bytes(&self) -> usize {
        self.encoded_bytes + self.points.len() * POINT_MEM_OVERHEAD + self.tombstones.len() * TOMBSTONE_MEM_OVERHEAD
    }

    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    pub fn points(&self) -> &BTreeMap<Vec<u8>, Pending> {
        &self.points
    }

    pub fn tombstones(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.tombstones
    }

    pub fn get(&self, key: &[u8]) -> Option<&Pending> {
        self.points.get(key)
    }

    /// True when the buffer holds deletes (which free space once they reach
    /// the leaves).
    pub fn has_deletes(&self) -> bool {
        !self.tombstones.is_empty() || self.points.values().any(|p| p.base == Base::Delete)
    }

    /// True when a tombstone of this buffer covers `key`.
    pub fn covers(&self, key: &[u8]) -> bool {
        let i = self.tombstones.partition_point(|(s, _)| s.as_slice() <= key);
        i > 0 && key < self.tombstones[i - 1].1.as_slice()
    }

    /// The smallest key or tombstone start in the buffer.
    pub fn first_key(&self) -> Option<&[u8]> {
        let point = self.points.keys().next().map(Vec::as_slice);
        let tomb = self.tombstones.first().map(|(s, _)| s.as_slice());
        match (point, tomb) {
            (Some(p), Some(t)) => Some(p.min(t)),
            (p, t) => p.or(t),
        }
    }

    /// Adds a message newer than everything in the buffer.
    pub fn insert_point(&mut self, key: Vec<u8>, mut newer: Pending, inline_max: usize, garbage: &mut Vec<ExtentRef>) {
        // One search of the map per message (this runs for every message at
        // every level it passes through).
        let covered = newer.base == Base::Below && self.covers(&key);
        match self.points.entry(key) {
            Entry::Occupied(mut slot) => {
                let older = std::mem::replace(slot.get_mut(), Pending { base: Base::Delete, merges: Vec::new() });
                self.encoded_bytes -= point_bytes(slot.key(), &older);
                let combined = older.combine(newer, inline_max, garbage);
                self.encoded_bytes += point_bytes(slot.key(), &combined);
                *slot.get_mut() = combined;
            }
            Entry::Vacant(slot) => {
                if covered {
                    newer.base = Base::Delete;
                    newer.normalize(inline_max);
                }
                self.encoded_bytes += point_bytes(slot.key(), &newer);
                slot.insert(newer);
            }
        }
    }

    /// Adds a range delete newer than everything in the buffer: drops the
    /// points it covers and joins it with overlapping tombstones.
    pub fn insert_tombstone(&mut self, start: &[u8], end: &[u8], garbage: &mut Vec<ExtentRef>) {
        if start >= end {
            return;
        }
        let covered: Vec<Vec<u8>> = self
            .points
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in covered {
            if let Some(p) = self.points.remove(&key) {
                self.encoded_bytes -= point_bytes(&key, &p);
                garbage.extend(p.extent());
            }
        }
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
        let right_points = self.points.split_off(pivot);
        let mut right = ChildBuffer { points: right_points, tombstones: Vec::new(), encoded_bytes: 0 };
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

    /// Appends a buffer whose keys all lie above this one's.
    pub fn append(&mut self, mut right: ChildBuffer) {
        debug_assert!(match (self.points.keys().next_back(), right.first_key()) {
            (Some(l), Some(r)) => l.as_slice() < r,
            _ => true,
        });
        self.points.append(&mut right.points);
        self.tombstones.append(&mut right.tombstones);
        self.recount();
    }

    /// Takes the contents, leaving the buffer empty.
    pub fn take(&mut self) -> ChildBuffer {
        std::mem::take(self)
    }

    /// The parts: points in key order and tombstones.
    pub fn into_parts(self) -> (Points, Tombstones) {
        (self.points, self.tombstones)
    }

    /// Rebuilds a buffer from decoded parts (checked by the caller).
    pub fn from_parts(points: Points, tombstones: Tombstones) -> ChildBuffer {
        let mut b = ChildBuffer { points, tombstones, encoded_bytes: 0 };
        b.recount();
        b
    }

    fn recount(&mut self) {
        self.encoded_bytes = self.points.iter().map(|(k, p)| point_bytes(k, p)).sum::<usize>()
            + self.tombstones.iter().map(|(s, e)| tombstone_bytes(s, e)).sum::<usize>();
    }

    /// Every extent the buffer references (for space accounting and fsck).
    pub fn extents(&self) -> impl Iterator<Item = ExtentRef> + '_ {
        self.points.values().filter_map(Pending::extent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &[u8]) -> Pending {
        Pending::from_message(Message::Put(Value::Inline(v.to_vec())))
    }

    fn merge(op: MergeOp) -> Pending {
        Pending::from_message(Message::Merge(op))
    }

    #[test]
    fn a_newer_put_replaces_and_merges_fold_into_inline_puts() {
        let mut b = ChildBuffer::default();
        let mut g = Vec::new();
        b.insert_point(b"k".to_vec(), put(b"ab"), 64, &mut g);
        b.insert_point(b"k".to_vec(), merge(MergeOp::Append(b"c".to_vec())), 64, &mut g);
        assert_eq!(b.get(b"k").unwrap().base, Base::Put(Value::Inline(b"abc".to_vec())));
        b.insert_point(b"k".to_vec(), put(b"z"), 64, &mut g);
        assert_eq!(b.get(b"k").unwrap(), &put(b"z"));
        assert_eq!(b.encoded_bytes(), 2 + 1 + put(b"z").encoded_bytes());
    }

    #[test]
    fn a_tombstone_drops_older_points_and_rebases_newer_merges() {
        let mut b = ChildBuffer::default();
        let mut g = Vec::new();
        let e = ExtentRef { address: 1, length: 10, crc32c: 0, generation: 1 };
        b.insert_point(b"b".to_vec(), Pending::from_message(Message::Put(Value::Extent(e))), 64, &mut g);
        b.insert_point(b"x".to_vec(), put(b"1"), 64, &mut g);
        b.insert_tombstone(b"a", b"c", &mut g);
        assert_eq!(g, vec![e]);
        assert!(b.get(b"b").is_none());
        assert!(b.covers(b"b") && !b.covers(b"c") && b.get(b"x").is_some());
        b.insert_point(b"b".to_vec(), merge(MergeOp::Append(b"q".to_vec())), 64, &mut g);
        assert_eq!(b.get(b"b").unwrap().base, Base::Put(Value::Inline(b"q".to_vec())));
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
        b.insert_point(b"n".to_vec(), merge(MergeOp::AddI64(2)), 64, &mut g);
        b.insert_point(b"n".to_vec(), merge(MergeOp::AddI64(3)), 64, &mut g);
        assert_eq!(b.get(b"n").unwrap().merges, vec![MergeOp::AddI64(5)]);
    }
}
