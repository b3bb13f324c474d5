//! Leaves: sorted entries kept in their serialized form.
//!
//! A leaf in memory is the byte string it has on disk plus an array of entry
//! offsets, so a cached leaf costs little more than its disk size and a point
//! lookup is a binary search without decoding. Leaves change only by whole
//! batches (a flush from the parent), which rebuild the bytes in one pass.
//!
//! Entry encoding in memory: `[key len: u16][key][flags: u8]`, then the
//! value: inline `[len: u32][bytes]` or an extent reference (24 bytes), then,
//! when flag bit 1 is set, `[count: u32]` merges waiting for their
//! out-of-line base to be read. Fixed-size lengths and whole keys let a
//! lookup read any entry's key at its offset. On disk (`disk.rs`, FORMAT.md
//! "Leaf payload") the keys' shared prefix is written once and lengths are
//! varints, so a leaf is re-encoded when it is written and when it is read.

mod disk;

pub(crate) use disk::{find_in_run, layout, RunFind};

use crate::buffer::{Base, BaseRef, ChildBuffer, PendingRef};
use crate::codec::{put_bytes16, put_bytes32, put_u32, put_u8, Malformed, Reader};
use crate::heads::KeyHeads;
use crate::limits::{KEY_BYTES_MAX, MERGES_PER_ENTRY_MAX, VALUE_BYTES_MAX};
use crate::merge::apply_all;
use crate::message::{ExtentRef, MergeOp, Value};

const FLAG_EXTENT: u8 = 1;
const FLAG_MERGES: u8 = 2;
const LEAF_MEM_OVERHEAD: usize = 96;

/// A value as stored in a leaf entry, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueRef<'a> {
    Inline(&'a [u8]),
    Extent(ExtentRef),
}

impl ValueRef<'_> {
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Inline(v) => Value::Inline(v.to_vec()),
            ValueRef::Extent(e) => Value::Extent(e),
        }
    }
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub key: &'a [u8],
    pub value: ValueRef<'a>,
    /// Merges to apply to an out-of-line value (empty for inline values).
    pub merges: Vec<MergeOp>,
}

fn parse_entry(data: &[u8], pos: usize) -> Result<(Entry<'_>, usize), Malformed> {
    let mut r = Reader::new(data.get(pos..).ok_or(Malformed("leaf entry offset"))?);
    let key = r.bytes16(KEY_BYTES_MAX, "leaf key")?;
    let (value, merges) = parse_value(&mut r, InlineLength::U32)?;
    let end = pos + r.position();
    Ok((Entry { key, value, merges }, end))
}

/// How an inline value's length is written: fixed in memory, a varint on
/// disk (`disk.rs`).
#[derive(Clone, Copy)]
enum InlineLength {
    U32,
    Varint,
}

/// The flags, value and merges of an entry, after its key.
fn parse_value<'a>(r: &mut Reader<'a>, length: InlineLength) -> Result<(ValueRef<'a>, Vec<MergeOp>), Malformed> {
    let flags = r.u8("leaf entry flags")?;
    if flags & !(FLAG_EXTENT | FLAG_MERGES) != 0 || flags == FLAG_MERGES {
        return Err(Malformed("leaf entry flags"));
    }
    let value = if flags & FLAG_EXTENT != 0 {
        ValueRef::Extent(ExtentRef::decode(r)?)
    } else {
        ValueRef::Inline(match length {
            InlineLength::U32 => r.bytes32(VALUE_BYTES_MAX, "leaf inline value")?,
            InlineLength::Varint => r.bytes_varint(VALUE_BYTES_MAX, "leaf inline value")?,
        })
    };
    let mut merges = Vec::new();
    if flags & FLAG_MERGES != 0 {
        let count = r.u32("leaf merge count")?;
        if count == 0 || count as usize > MERGES_PER_ENTRY_MAX {
            return Err(Malformed("leaf merge count"));
        }
        for _ in 0..count {
            merges.push(MergeOp::decode(r)?);
        }
    }
    Ok((value, merges))
}

fn encode_entry(out: &mut Vec<u8>, key: &[u8], value: ValueRef<'_>, merges: &[MergeOp]) {
    debug_assert!(merges.is_empty() || matches!(value, ValueRef::Extent(_)));
    put_bytes16(out, key);
    let mut flags = 0;
    if matches!(value, ValueRef::Extent(_)) {
        flags |= FLAG_EXTENT;
    }
    if !merges.is_empty() {
        flags |= FLAG_MERGES;
    }
    put_u8(out, flags);
    match value {
        ValueRef::Inline(v) => put_bytes32(out, v),
        ValueRef::Extent(e) => e.encode(out),
    }
    if !merges.is_empty() {
        put_u32(out, merges.len() as u32);
        for m in merges {
            m.encode(out);
        }
    }
}

/// Sorted entries in serialized form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leaf {
    data: Vec<u8>,
    offsets: Vec<u32>,
    /// Search aid derived from the keys (see `heads.rs`).
    heads: KeyHeads,
    /// Size of the on-disk payload (`disk.rs`), derived from the entries.
    disk_bytes: usize,
}

impl Default for Leaf {
    fn default() -> Self {
        Leaf::with_heads(Vec::new(), Vec::new())
    }
}

/// What a flush into a leaf produced.
#[derive(Debug)]
pub(crate) struct Applied {
    pub leaf: Leaf,
    /// Entries were left with a value over the inline limit or with merges
    /// on an out-of-line value: the leaf should be materialized.
    pub needs_materialize: bool,
}

impl Leaf {
    fn with_heads(data: Vec<u8>, offsets: Vec<u32>) -> Leaf {
        let mut leaf = Leaf { data, offsets, heads: KeyHeads::default(), disk_bytes: 0 };
        leaf.heads = KeyHeads::build(leaf.len(), |i| leaf.key(i));
        leaf.disk_bytes = leaf.compute_disk_bytes();
        leaf
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Size of the node payload on disk (what node sizes are measured in).
    pub fn encoded_bytes(&self) -> usize {
        self.disk_bytes
    }

    pub fn mem_bytes(&self) -> usize {
        self.data.len() + self.offsets.len() * 4 + self.heads.mem_bytes() + LEAF_MEM_OVERHEAD
    }

    fn span(&self, i: usize) -> (usize, usize) {
        let start = self.offsets[i] as usize;
        let end = self.offsets.get(i + 1).map_or(self.data.len(), |&o| o as usize);
        (start, end)
    }

    pub fn entry(&self, i: usize) -> Entry<'_> {
        parse_entry(&self.data, self.offsets[i] as usize).expect("leaf entries are checked when the leaf is built").0
    }

    pub fn key(&self, i: usize) -> &[u8] {
        let at = self.offsets[i] as usize;
        let len = usize::from(u16::from_le_bytes([self.data[at], self.data[at + 1]]));
        &self.data[at + 2..at + 2 + len]
    }

    /// `Ok(i)` when entry `i` has `key`, else `Err(i)` where it would go.
    pub fn find(&self, key: &[u8]) -> Result<usize, usize> {
        if let Some(found) = self.heads.find(key, |i| self.key(i)) {
            return found;
        }
        crate::heads::search(self.len(), |i| self.key(i).cmp(key))
    }

    pub fn get(&self, key: &[u8]) -> Option<Entry<'_>> {
        self.find(key).ok().map(|i| self.entry(i))
    }

    pub fn first_key(&self) -> Option<&[u8]> {
        (!self.is_empty()).then(|| self.key(0))
    }

    /// True when an entry should move out of line or has merges waiting.
    pub fn needs_materialize(&self, inline_max: usize) -> bool {
        (0..self.len()).any(|i| {
            let e = self.entry(i);
            !e.merges.is_empty() || matches!(e.value, ValueRef::Inline(v) if v.len() > inline_max)
        })
    }

    /// Applies a flushed buffer (every message newer than every entry):
    /// tombstones first, then points. Dropped extents go to `garbage`.
    pub fn apply(&self, buffer: ChildBuffer, inline_max: usize, garbage: &mut Vec<ExtentRef>) -> Applied {
        let tombstones = buffer.tombstones();
        let mut out = LeafBuilder::with_capacity(self.data.len() + buffer.encoded_bytes() + buffer.point_count() * 4);
        let mut points = buffer.iter().peekable();
        let mut t = 0usize;
        let mut needs_materialize = false;
        for i in 0..self.len() {
            let key = self.key(i);
            while let Some((pk, _)) = points.peek() {
                if *pk >= key {
                    break;
                }
                let (pk, p) = points.next().expect("peeked");
                needs_materialize |= out.push_combined(pk, None, p, inline_max, garbage);
            }
            while t < tombstones.len() && tombstones[t].1.as_slice() <= key {
                t += 1;
            }
            let entry = self.entry(i);
            let covered = t < tombstones.len() && tombstones[t].0.as_slice() <= key;
            let old = if covered {
                if let ValueRef::Extent(e) = entry.value {
                    garbage.push(e);
                }
                None
            } else {
                Some(entry)
            };
            match points.peek() {
                Some((pk, _)) if *pk == key => {
                    let (pk, p) = points.next().expect("peeked");
                    needs_materialize |= out.push_combined(pk, old, p, inline_max, garbage);
                }
                _ => {
                    if old.is_some() {
                        let (s, e) = self.span(i);
                        out.push_raw(&self.data[s..e]);
                    }
                }
            }
        }
        for (pk, p) in points {
            needs_materialize |= out.push_combined(pk, None, p, inline_max, garbage);
        }
        Applied { leaf: out.finish(), needs_materialize }
    }

    /// Replaces the value of entry `key` (materialization), or removes the
    /// entry when `value` is `None` (its merges deleted it).
    pub fn replace_value(&self, key: &[u8], value: Option<ValueRef<'_>>) -> Leaf {
        let mut out = LeafBuilder::with_capacity(self.data.len());
        for i in 0..self.len() {
            if self.key(i) == key {
                if let Some(value) = value {
                    out.offsets.push(out.data.len() as u32);
                    encode_entry(&mut out.data, key, value, &[]);
                }
            } else {
                let (s, e) = self.span(i);
                out.push_raw(&self.data[s..e]);
            }
        }
        out.finish()
    }

    /// Splits into pieces of at most `target_bytes` on disk each (a single
    /// entry larger than that gets a piece of its own). Returns the pieces
    /// and, for every piece after the first, the pivot separating it from
    /// the previous. Sizes are counted with this leaf's shared prefix: a
    /// piece's own prefix is at least as long, and each of its entries
    /// saves what its longer prefix field costs, so a piece is no larger.
    pub fn split(&self, target_bytes: usize) -> (Vec<Leaf>, Vec<Vec<u8>>) {
        let prefix_bytes = self.shared_prefix_len();
        let fixed_bytes = disk::PREFIX_LEN_BYTES + prefix_bytes;
        let total = self.disk_bytes;
        let pieces_wanted = total.div_ceil(target_bytes.max(1)).max(1);
        let soft_bytes = total.div_ceil(pieces_wanted);
        let mem_capacity = self.data.len() / pieces_wanted + 256;
        let mut pieces = Vec::with_capacity(pieces_wanted + 1);
        let mut pivots = Vec::with_capacity(pieces_wanted);
        let mut current = LeafBuilder::with_capacity(mem_capacity);
        let mut used = fixed_bytes;
        for i in 0..self.len() {
            let (s, e) = self.span(i);
            let size = self.disk_entry_bytes(i, prefix_bytes);
            if !current.is_empty() && (used + size > target_bytes || used >= soft_bytes) {
                pivots.push(separator(self.key(i - 1), self.key(i)));
                pieces.push(std::mem::replace(&mut current, LeafBuilder::with_capacity(mem_capacity)).finish());
                used = fixed_bytes;
            }
            current.push_raw(&self.data[s..e]);
            used += size;
        }
        pieces.push(current.finish());
        (pieces, pivots)
    }

    /// The concatenation of two leaves whose keys do not interleave.
    pub fn concat(left: &Leaf, right: &Leaf) -> Leaf {
        debug_assert!(match (left.len(), right.first_key()) {
            (0, _) | (_, None) => true,
            (n, Some(r)) => left.key(n - 1) < r,
        });
        let mut out = LeafBuilder::with_capacity(left.data.len() + right.data.len());
        out.data.extend_from_slice(&left.data);
        out.offsets.extend_from_slice(&left.offsets);
        let shift = left.data.len() as u32;
        out.data.extend_from_slice(&right.data);
        out.offsets.extend(right.offsets.iter().map(|o| o + shift));
        out.finish()
    }
}

/// The shortest key `s` with `left < s <= right`, so pivots stay short.
pub(crate) fn separator(left: &[u8], right: &[u8]) -> Vec<u8> {
    debug_assert!(left < right);
    for n in 1..=right.len() {
        if &right[..n] > left {
            return right[..n].to_vec();
        }
    }
    right.to_vec()
}

/// Builds a leaf entry by entry, in key order.
struct LeafBuilder {
    data: Vec<u8>,
    offsets: Vec<u32>,
}

impl LeafBuilder {
    fn with_capacity(bytes: usize) -> Self {
        LeafBuilder { data: Vec::with_capacity(bytes), offsets: Vec::new() }
    }

    fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    fn push_raw(&mut self, entry: &[u8]) {
        self.offsets.push(self.data.len() as u32);
        self.data.extend_from_slice(entry);
    }

    /// Pushes what `pending` makes of `old` (which it replaces). Returns true
    /// when the result should be materialized.
    fn push_combined(
        &mut self,
        key: &[u8],
        old: Option<Entry<'_>>,
        pending: PendingRef<'_>,
        inline_max: usize,
        garbage: &mut Vec<ExtentRef>,
    ) -> bool {
        let drop_old = |garbage: &mut Vec<ExtentRef>, old: &Option<Entry<'_>>| {
            if let Some(Entry { value: ValueRef::Extent(e), .. }) = old {
                garbage.push(*e);
            }
        };
        // The common case, a plain put, is copied from the buffer as it is.
        if let (BaseRef::Put(value), false) = (pending.base, pending.has_merges()) {
            drop_old(garbage, &old);
            self.offsets.push(self.data.len() as u32);
            encode_entry(&mut self.data, key, value, &[]);
            return matches!(value, ValueRef::Inline(v) if v.len() > inline_max);
        }
        let pending = pending.to_owned();
        let result: Option<(Value, Vec<MergeOp>)> = match pending.base {
            Base::Put(v) => {
                drop_old(garbage, &old);
                Some((v, pending.merges))
            }
            Base::Delete => {
                drop_old(garbage, &old);
                apply_all(None, &pending.merges).map(|v| (Value::Inline(v), Vec::new()))
            }
            Base::Below => match old {
                None => apply_all(None, &pending.merges).map(|v| (Value::Inline(v), Vec::new())),
                Some(Entry { value: ValueRef::Inline(v), .. }) => {
                    apply_all(Some(v.to_vec()), &pending.merges).map(|v| (Value::Inline(v), Vec::new()))
                }
                Some(Entry { value: ValueRef::Extent(e), merges, .. }) => {
                    let mut all = merges;
                    all.extend(pending.merges);
                    Some((Value::Extent(e), all))
                }
            },
        };
        let Some((value, merges)) = result else { return false };
        let (value, merges) = match value {
            Value::Inline(v) if !merges.is_empty() => match apply_all(Some(v), &merges) {
                Some(v) => (Value::Inline(v), Vec::new()),
                None => return false,
            },
            other => (other, merges),
        };
        let needs = !merges.is_empty() || matches!(&value, Value::Inline(v) if v.len() > inline_max);
        let vref = match &value {
            Value::Inline(v) => ValueRef::Inline(v),
            Value::Extent(e) => ValueRef::Extent(*e),
        };
        self.offsets.push(self.data.len() as u32);
        encode_entry(&mut self.data, key, vref, &merges);
        needs
    }

    fn finish(self) -> Leaf {
        Leaf::with_heads(self.data, self.offsets)
    }
}

/// Builds a leaf from sorted owned entries (tests and tools).
#[cfg(test)]
pub(crate) fn leaf_from(entries: &[(&[u8], Value)]) -> Leaf {
    let mut b = LeafBuilder::with_capacity(256);
    for (k, v) in entries {
        b.offsets.push(b.data.len() as u32);
        let vref = match v {
            Value::Inline(v) => ValueRef::Inline(v),
            Value::Extent(e) => ValueRef::Extent(*e),
        };
        encode_entry(&mut b.data, k, vref, &[]);
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn round_trip(leaf: &Leaf) -> Leaf {
        let mut out = Vec::new();
        leaf.encode(&mut out);
        Leaf::decode(&out, leaf.len()).unwrap()
    }

    fn inline(v: &[u8]) -> Value {
        Value::Inline(v.to_vec())
    }

    fn buffer(msgs: &[(&[u8], Message)], tombs: &[(&[u8], &[u8])]) -> ChildBuffer {
        let mut b = ChildBuffer::default();
        let mut g = Vec::new();
        for (s, e) in tombs {
            b.insert_tombstone(s, e, &mut g);
        }
        for (k, m) in msgs {
            b.insert_point(k, crate::buffer::Pending::from_message(m.clone()), 64, &mut g);
        }
        b
    }

    #[test]
    fn apply_merges_entries_and_messages_in_key_order() {
        let leaf = leaf_from(&[(b"b", inline(b"1")), (b"d", inline(b"2")), (b"f", inline(b"3"))]);
        let buf = buffer(
            &[
                (b"a", Message::Put(inline(b"0"))),
                (b"d", Message::Delete),
                (b"f", Message::Merge(MergeOp::Append(b"x".to_vec()))),
                (b"g", Message::Merge(MergeOp::Append(b"y".to_vec()))),
            ],
            &[],
        );
        let mut g = Vec::new();
        let out = leaf.apply(buf, 64, &mut g).leaf;
        let got: Vec<(Vec<u8>, ValueRef<'_>)> =
            (0..out.len()).map(|i| (out.key(i).to_vec(), out.entry(i).value)).collect();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), ValueRef::Inline(b"0")),
                (b"b".to_vec(), ValueRef::Inline(b"1")),
                (b"f".to_vec(), ValueRef::Inline(b"3x")),
                (b"g".to_vec(), ValueRef::Inline(b"y")),
            ]
        );
        assert_eq!(round_trip(&out), out);
    }

    #[test]
    fn tombstones_drop_entries_and_free_their_extents() {
        let e = ExtentRef { address: 3, length: 9000, crc32c: 1, generation: 2 };
        let leaf = leaf_from(&[(b"a", inline(b"1")), (b"b", Value::Extent(e)), (b"c", inline(b"3"))]);
        let buf = buffer(&[(b"b", Message::Merge(MergeOp::Append(b"n".to_vec())))], &[(b"b", b"c")]);
        let mut g = Vec::new();
        let out = leaf.apply(buf, 64, &mut g).leaf;
        assert_eq!(g, vec![e]);
        assert_eq!(out.get(b"b").unwrap().value, ValueRef::Inline(b"n"));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn merges_on_an_extent_wait_for_materialization() {
        let e = ExtentRef { address: 3, length: 9000, crc32c: 1, generation: 2 };
        let leaf = leaf_from(&[(b"a", Value::Extent(e))]);
        let buf = buffer(&[(b"a", Message::Merge(MergeOp::AddI64(1)))], &[]);
        let applied = leaf.apply(buf, 64, &mut Vec::new());
        assert!(applied.needs_materialize);
        let entry = applied.leaf.get(b"a").unwrap();
        assert_eq!(entry.merges, vec![MergeOp::AddI64(1)]);
        assert_eq!(round_trip(&applied.leaf), applied.leaf);
    }

    #[test]
    fn split_respects_the_target_and_pivots_separate_pieces() {
        let entries: Vec<(Vec<u8>, Value)> =
            (0..100u32).map(|i| (format!("key{i:04}").into_bytes(), inline(&[7u8; 20]))).collect();
        let refs: Vec<(&[u8], Value)> = entries.iter().map(|(k, v)| (k.as_slice(), v.clone())).collect();
        let leaf = leaf_from(&refs);
        let (pieces, pivots) = leaf.split(700);
        assert_eq!(pieces.len(), pivots.len() + 1);
        assert!(pieces.iter().all(|p| p.encoded_bytes() <= 700 && !p.is_empty()));
        for (i, pivot) in pivots.iter().enumerate() {
            let left_last = pieces[i].key(pieces[i].len() - 1);
            assert!(left_last < pivot.as_slice() && pivot.as_slice() <= pieces[i + 1].key(0));
        }
        let total: usize = pieces.iter().map(Leaf::len).sum();
        assert_eq!(total, 100);
        let joined = pieces.iter().skip(1).fold(pieces[0].clone(), |acc, p| Leaf::concat(&acc, p));
        assert_eq!(joined, leaf);
    }
}
