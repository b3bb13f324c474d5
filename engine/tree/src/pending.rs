//! What a buffer knows about one key: a [`Pending`] (a base, then merges in
//! LSN order), its encoding in a node (FORMAT.md, "internal nodes"), and a
//! borrowed view of that encoding ([`PendingRef`]) that lookups read in place
//! without allocating.

use crate::codec::{put_bytes32, put_u32, put_u8, Malformed, Reader};
use crate::leaf::ValueRef;
use crate::limits::{MERGES_PER_ENTRY_MAX, VALUE_BYTES_MAX};
use crate::merge::{apply_all, compose};
use crate::message::{ExtentRef, MergeOp, Message, Value};

const BASE_BELOW: u8 = 0;
const BASE_PUT_INLINE: u8 = 1;
const BASE_PUT_EXTENT: u8 = 2;
const BASE_DELETE: u8 = 3;

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

    pub fn encode(&self, out: &mut Vec<u8>) {
        match &self.base {
            Base::Below => put_u8(out, BASE_BELOW),
            Base::Put(Value::Inline(v)) => {
                put_u8(out, BASE_PUT_INLINE);
                put_bytes32(out, v);
            }
            Base::Put(Value::Extent(e)) => {
                put_u8(out, BASE_PUT_EXTENT);
                e.encode(out);
            }
            Base::Delete => put_u8(out, BASE_DELETE),
        }
        put_u32(out, self.merges.len() as u32);
        for m in &self.merges {
            m.encode(out);
        }
    }
}

/// A pending's base, borrowed from its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BaseRef<'a> {
    Below,
    Put(ValueRef<'a>),
    Delete,
}

/// A pending read in place from its encoding: the base is borrowed, the
/// merges stay encoded until asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingRef<'a> {
    pub base: BaseRef<'a>,
    merge_count: usize,
    /// The encoded merges (exactly `merge_count` of them).
    merges: &'a [u8],
}

impl<'a> PendingRef<'a> {
    /// Reads and checks the encoding that fills all of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<PendingRef<'a>, Malformed> {
        let mut r = Reader::new(bytes);
        let base = match r.u8("pending base")? {
            BASE_BELOW => BaseRef::Below,
            BASE_PUT_INLINE => BaseRef::Put(ValueRef::Inline(r.bytes32(VALUE_BYTES_MAX, "pending value")?)),
            BASE_PUT_EXTENT => BaseRef::Put(ValueRef::Extent(ExtentRef::decode(&mut r)?)),
            BASE_DELETE => BaseRef::Delete,
            _ => return Err(Malformed("pending base")),
        };
        let merge_count = r.u32("pending merge count")? as usize;
        if merge_count > MERGES_PER_ENTRY_MAX || (merge_count == 0 && base == BaseRef::Below) {
            return Err(Malformed("pending merge count"));
        }
        let merges = r.take(r.remaining(), "pending merges")?;
        Ok(PendingRef { base, merge_count, merges })
    }

    /// Reads the encoding at the start of `r`, checking the merges too;
    /// leaves `r` after it.
    pub fn skip_checked(r: &mut Reader<'_>) -> Result<(), Malformed> {
        let base = r.u8("pending base")?;
        match base {
            BASE_BELOW | BASE_DELETE => {}
            BASE_PUT_INLINE => {
                r.bytes32(VALUE_BYTES_MAX, "pending value")?;
            }
            BASE_PUT_EXTENT => {
                ExtentRef::decode(r)?;
            }
            _ => return Err(Malformed("pending base")),
        }
        let count = r.u32("pending merge count")? as usize;
        if count > MERGES_PER_ENTRY_MAX || (count == 0 && base == BASE_BELOW) {
            return Err(Malformed("pending merge count"));
        }
        for _ in 0..count {
            MergeOp::decode(r)?;
        }
        Ok(())
    }

    pub fn has_merges(&self) -> bool {
        self.merge_count > 0
    }

    /// The merges, decoded (oldest first).
    pub fn merges(&self) -> Vec<MergeOp> {
        let mut r = Reader::new(self.merges);
        (0..self.merge_count)
            .map(|_| MergeOp::decode(&mut r).expect("buffered merges are checked when they enter the buffer"))
            .collect()
    }

    pub fn extent(&self) -> Option<ExtentRef> {
        match self.base {
            BaseRef::Put(ValueRef::Extent(e)) => Some(e),
            _ => None,
        }
    }

    pub fn to_owned(self) -> Pending {
        let base = match self.base {
            BaseRef::Below => Base::Below,
            BaseRef::Put(v) => Base::Put(v.to_value()),
            BaseRef::Delete => Base::Delete,
        };
        Pending { base, merges: self.merges() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_reads_back_in_place_and_owned() {
        let e = ExtentRef { address: 3, length: 9000, crc32c: 1, generation: 2 };
        let cases = [
            Pending { base: Base::Put(Value::Inline(b"v".to_vec())), merges: Vec::new() },
            Pending { base: Base::Put(Value::Extent(e)), merges: vec![MergeOp::AddI64(1)] },
            Pending { base: Base::Delete, merges: Vec::new() },
            Pending { base: Base::Below, merges: vec![MergeOp::Append(b"x".to_vec()), MergeOp::AddI64(2)] },
        ];
        for p in cases {
            let mut out = Vec::new();
            p.encode(&mut out);
            assert_eq!(out.len(), p.encoded_bytes());
            let view = PendingRef::parse(&out).unwrap();
            assert_eq!(view.to_owned(), p);
            assert_eq!(view.extent(), p.extent());
            let mut r = Reader::new(&out);
            PendingRef::skip_checked(&mut r).unwrap();
            assert!(r.is_empty());
            for cut in 0..out.len() {
                assert!(PendingRef::skip_checked(&mut Reader::new(&out[..cut])).is_err(), "cut at {cut}");
            }
        }
    }
}
