//! Internal nodes: pivots, child ids, and one message buffer per child.
//!
//! Child `i` holds the keys `k` with `pivots[i-1] <= k < pivots[i]` (the
//! node's own bounds at the ends). Children are named by node id, never by
//! address, so writing a child to a new place does not touch its parent.

use crate::buffer::{ChildBuffer, Pending, BUFFER_HEADER_BYTES};
use crate::codec::{put_bytes16, put_u64, Malformed, Reader};
use crate::heads::KeyHeads;
use crate::limits::KEY_BYTES_MAX;
use crate::message::ExtentRef;

/// A node's name in the indirection table. 0 is never a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// Per child beyond its pivot's and buffer's bytes: the id, the buffer's
/// and the pivot's headers, and three allocations' bookkeeping.
const CHILD_MEM_OVERHEAD: usize = 160;
const INTERNAL_MEM_OVERHEAD: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Internal {
    /// 1 for a parent of leaves.
    pub height: u8,
    /// Private so that every change goes through a method that rebuilds
    /// `pivot_heads` (a stale head would send a lookup to the wrong child).
    pivots: Vec<Vec<u8>>,
    /// Search aid for `pivots` (derived, never stored): every lookup
    /// passes here, and a binary search over separately allocated pivots
    /// misses the CPU cache at every probe.
    pivot_heads: KeyHeads,
    pub children: Vec<NodeId>,
    pub buffers: Vec<ChildBuffer>,
}

impl Internal {
    /// A node with one child and empty buffers.
    pub fn with_child(height: u8, child: NodeId) -> Internal {
        Internal::new(height, Vec::new(), vec![child], vec![ChildBuffer::default()])
    }

    /// A node of `children` separated by `pivots` (one fewer), with `buffers`.
    pub fn new(height: u8, pivots: Vec<Vec<u8>>, children: Vec<NodeId>, buffers: Vec<ChildBuffer>) -> Internal {
        let mut node = Internal { height, pivots, pivot_heads: KeyHeads::default(), children, buffers };
        node.reindex();
        node
    }

    /// Rebuilds the pivot heads after the pivots changed.
    fn reindex(&mut self) {
        let pivots = &self.pivots;
        self.pivot_heads = KeyHeads::build(pivots.len(), |i| pivots[i].as_slice());
    }

    pub fn pivots(&self) -> &[Vec<u8>] {
        &self.pivots
    }

    pub fn child_index(&self, key: &[u8]) -> usize {
        let pivots = &self.pivots;
        match self.pivot_heads.find(key, |i| pivots[i].as_slice()) {
            // Pivot `i` equals the key: the key starts child `i + 1`.
            Some(Ok(i)) => i + 1,
            Some(Err(i)) => i,
            None => pivots.partition_point(|p| p.as_slice() <= key),
        }
    }

    /// The lower bound of child `i` within this node (None for the first).
    pub fn child_low(&self, i: usize) -> Option<&[u8]> {
        i.checked_sub(1).map(|j| self.pivots[j].as_slice())
    }

    /// The upper bound of child `i` within this node (None for the last).
    pub fn child_high(&self, i: usize) -> Option<&[u8]> {
        self.pivots.get(i).map(Vec::as_slice)
    }

    pub fn buffer_bytes(&self) -> usize {
        self.buffers.iter().map(ChildBuffer::encoded_bytes).sum()
    }

    /// Size of the serialized payload.
    pub fn encoded_bytes(&self) -> usize {
        self.children.len() * (8 + BUFFER_HEADER_BYTES)
            + self.pivots.iter().map(|p| 2 + p.len()).sum::<usize>()
            + self.buffer_bytes()
    }

    pub fn mem_bytes(&self) -> usize {
        self.mem_bytes_but_buffers() + self.buffers.iter().map(ChildBuffer::mem_bytes).sum::<usize>()
    }

    /// What the node holds in memory besides its child buffers.
    fn mem_bytes_but_buffers(&self) -> usize {
        INTERNAL_MEM_OVERHEAD
            + self.children.len() * CHILD_MEM_OVERHEAD
            + self.pivots.iter().map(Vec::len).sum::<usize>()
            + self.pivot_heads.mem_bytes()
    }

    /// `(self.mem_bytes(), self.buffer_bytes())` in one pass over the
    /// buffers: the budget check before every write reads both of the root
    /// (`maintenance::decide`).
    pub fn mem_and_buffer_bytes(&self) -> (usize, usize) {
        let (mut mem, mut buffered) = (0usize, 0usize);
        for b in &self.buffers {
            mem += b.mem_bytes();
            buffered += b.encoded_bytes();
        }
        (self.mem_bytes_but_buffers() + mem, buffered)
    }

    /// The child with the most buffered bytes, and how many.
    pub fn heaviest_child(&self) -> (usize, usize) {
        let mut best = (0usize, 0usize);
        for (i, b) in self.buffers.iter().enumerate() {
            if b.encoded_bytes() > best.1 {
                best = (i, b.encoded_bytes());
            }
        }
        best
    }

    pub fn insert_point(&mut self, key: &[u8], pending: Pending, inline_max: usize, garbage: &mut Vec<ExtentRef>) {
        let i = self.child_index(key);
        self.buffers[i].insert_point(key, pending, inline_max, garbage);
    }

    /// Routes a range delete to every child it overlaps, clipped to each.
    pub fn insert_tombstone(&mut self, start: &[u8], end: &[u8], garbage: &mut Vec<ExtentRef>) {
        if start >= end {
            return;
        }
        let first = self.child_index(start);
        for i in first..self.children.len() {
            let lo = match self.child_low(i) {
                Some(low) if i > first => low.to_vec(),
                _ => start.to_vec(),
            };
            let (hi, last) = match self.child_high(i) {
                Some(high) if high < end => (high.to_vec(), false),
                _ => (end.to_vec(), true),
            };
            self.buffers[i].insert_tombstone(&lo, &hi, garbage);
            if last {
                break;
            }
        }
    }

    /// Takes in a buffer flushed from the parent (newer than everything here).
    pub fn absorb(&mut self, incoming: ChildBuffer, inline_max: usize, garbage: &mut Vec<ExtentRef>) {
        for (s, e) in incoming.tombstones() {
            self.insert_tombstone(s, e, garbage);
        }
        // The points come in key order: walk the children along with them
        // instead of searching the pivots for each key, and hand each child
        // its run of points at once.
        let (mut i, mut run_start) = (0, 0);
        for p in 0..incoming.point_count() {
            let key = incoming.key(p);
            if i < self.pivots.len() && self.pivots[i].as_slice() <= key {
                self.buffers[i].absorb_run(&incoming, run_start..p, inline_max, garbage);
                run_start = p;
                while i < self.pivots.len() && self.pivots[i].as_slice() <= key {
                    i += 1;
                }
            }
        }
        self.buffers[i].absorb_run(&incoming, run_start..incoming.point_count(), inline_max, garbage);
    }

    /// Child `i` became `pieces` (the first keeps its id) separated by
    /// `pivots`: the buffer for it is split along.
    pub fn replace_child(&mut self, i: usize, pieces: &[NodeId], pivots: Vec<Vec<u8>>) {
        assert_eq!(pieces.len(), pivots.len() + 1);
        assert_eq!(pieces[0], self.children[i]);
        let mut rest: Vec<ChildBuffer> = Vec::with_capacity(pivots.len());
        for pivot in pivots.iter().rev() {
            rest.push(self.buffers[i].split_off(pivot));
        }
        rest.reverse();
        let at = i + 1;
        self.children.splice(at..at, pieces[1..].iter().copied());
        self.buffers.splice(at..at, rest);
        self.pivots.splice(i..i, pivots);
        debug_assert!(self.pivots.windows(2).all(|w| w[0] < w[1]));
        self.reindex();
    }

    /// Joins children `i` and `i + 1` (the caller merged the nodes into
    /// child `i`); returns the id of the removed child.
    pub fn join_children(&mut self, i: usize) -> NodeId {
        let right_buffer = self.buffers.remove(i + 1);
        self.buffers[i].append(right_buffer);
        self.pivots.remove(i);
        self.reindex();
        self.children.remove(i + 1)
    }

    /// Splits off the upper half of the children. Returns the new right node
    /// and the pivot between the halves.
    pub fn split(&mut self) -> (Internal, Vec<u8>) {
        let n = self.children.len();
        assert!(n >= 2);
        let mid = n / 2;
        let right = Internal::new(
            self.height,
            self.pivots.split_off(mid),
            self.children.split_off(mid),
            self.buffers.split_off(mid),
        );
        let pivot = self.pivots.pop().expect("a split node has a pivot at the cut");
        self.reindex();
        (right, pivot)
    }

    /// Appends `right` (whose keys start at `pivot`) to this node.
    pub fn concat(&mut self, pivot: Vec<u8>, mut right: Internal) {
        debug_assert_eq!(self.height, right.height);
        self.pivots.push(pivot);
        self.pivots.append(&mut right.pivots);
        self.children.append(&mut right.children);
        self.buffers.append(&mut right.buffers);
        self.reindex();
    }

    /// Every extent referenced by a buffered message.
    pub fn extents(&self) -> impl Iterator<Item = ExtentRef> + '_ {
        self.buffers.iter().flat_map(ChildBuffer::extents)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        for c in &self.children {
            put_u64(out, c.0);
        }
        for p in &self.pivots {
            put_bytes16(out, p);
        }
        for b in &self.buffers {
            b.encode(out);
        }
    }

    /// Decodes and checks an internal node's payload.
    pub fn decode(height: u8, payload: &[u8], child_count: usize) -> Result<Internal, Malformed> {
        if height == 0 || child_count == 0 || child_count > payload.len() / 8 {
            return Err(Malformed("internal child count"));
        }
        let mut r = Reader::new(payload);
        let mut children = Vec::with_capacity(child_count);
        for _ in 0..child_count {
            let id = r.u64("child id")?;
            if id == 0 {
                return Err(Malformed("child id"));
            }
            children.push(NodeId(id));
        }
        let mut pivots: Vec<Vec<u8>> = Vec::with_capacity(child_count - 1);
        for _ in 1..child_count {
            let p = r.bytes16(KEY_BYTES_MAX, "pivot")?;
            if pivots.last().is_some_and(|last| last.as_slice() >= p) {
                return Err(Malformed("pivot order"));
            }
            pivots.push(p.to_vec());
        }
        let mut node = Internal::new(height, pivots, children, Vec::with_capacity(child_count));
        for i in 0..child_count {
            let buffer = ChildBuffer::decode(&mut r, node.child_low(i), node.child_high(i))?;
            node.buffers.push(buffer);
        }
        if !r.is_empty() {
            return Err(Malformed("internal node trailing bytes"));
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MergeOp, Message, Value};

    fn node3() -> Internal {
        let mut n = Internal::with_child(1, NodeId(1));
        n.replace_child(0, &[NodeId(1), NodeId(2), NodeId(3)], vec![b"g".to_vec(), b"p".to_vec()]);
        n
    }

    #[test]
    fn tombstones_are_clipped_to_each_child() {
        let mut n = node3();
        let mut g = Vec::new();
        n.insert_tombstone(b"c", b"r", &mut g);
        assert_eq!(n.buffers[0].tombstones(), &[(b"c".to_vec(), b"g".to_vec())]);
        assert_eq!(n.buffers[1].tombstones(), &[(b"g".to_vec(), b"p".to_vec())]);
        assert_eq!(n.buffers[2].tombstones(), &[(b"p".to_vec(), b"r".to_vec())]);
        n.insert_tombstone(b"h", b"i", &mut g);
        assert_eq!(n.buffers[1].tombstones(), &[(b"g".to_vec(), b"p".to_vec())]);
    }

    #[test]
    fn encoding_round_trips_and_split_concat_restore() {
        let mut n = node3();
        let mut g = Vec::new();
        for (k, m) in [
            (&b"a"[..], Message::Put(Value::Inline(b"1".to_vec()))),
            (b"h", Message::Merge(MergeOp::AddI64(4))),
            (b"z", Message::Delete),
        ] {
            n.insert_point(k, Pending::from_message(m), 16, &mut g);
        }
        n.insert_tombstone(b"q", b"s", &mut g);
        let mut out = Vec::new();
        n.encode(&mut out);
        assert_eq!(out.len(), n.encoded_bytes());
        assert_eq!(n.mem_and_buffer_bytes(), (n.mem_bytes(), n.buffer_bytes()));
        let back = Internal::decode(1, &out, 3).unwrap();
        assert_eq!(back, n);
        let mut left = back.clone();
        let (right, pivot) = left.split();
        left.concat(pivot, right);
        assert_eq!(left, n);
        assert!(Internal::decode(1, &out[..out.len() - 1], 3).is_err());
    }

    /// The pivot heads send every key where a plain search of the pivots
    /// does, through splits, joins and concatenations.
    #[test]
    fn child_index_agrees_with_a_plain_search() {
        let check = |n: &Internal| {
            let mut probes: Vec<Vec<u8>> = n.pivots().to_vec();
            for p in n.pivots() {
                probes.push([p.as_slice(), b"\0"].concat());
                probes.push(p[..p.len() - 1].to_vec());
            }
            probes.extend([b"".to_vec(), b"0".to_vec(), b"9".to_vec(), b"\xff".to_vec()]);
            for k in &probes {
                assert_eq!(n.child_index(k), n.pivots().partition_point(|p| p.as_slice() <= k.as_slice()), "{k:?}");
            }
        };
        let mut n = Internal::with_child(1, NodeId(1));
        let pivots: Vec<Vec<u8>> = (1..60u64).map(|i| format!("{:016}", i * 977).into_bytes()).collect();
        let ids: Vec<NodeId> = (1..=60).map(NodeId).collect();
        n.replace_child(0, &ids, pivots);
        check(&n);
        n.replace_child(3, &[NodeId(4), NodeId(99)], vec![b"00000000000031".to_vec()]);
        check(&n);
        n.join_children(10);
        check(&n);
        let (right, pivot) = n.split();
        check(&n);
        check(&right);
        n.concat(pivot, right);
        check(&n);
    }

    #[test]
    fn joining_children_joins_their_buffers() {
        let mut n = node3();
        let mut g = Vec::new();
        n.insert_point(b"b", Pending::from_message(Message::Delete), 16, &mut g);
        n.insert_point(b"k", Pending::from_message(Message::Delete), 16, &mut g);
        assert_eq!(n.join_children(0), NodeId(2));
        assert_eq!(n.children, vec![NodeId(1), NodeId(3)]);
        assert_eq!(n.buffers[0].point_count(), 2);
        assert_eq!(n.child_index(b"k"), 0);
    }
}
