//! What the engine applies to a tree: messages about keys, and the values they
//! carry. These types are also what the journal records (see [`Message::encode`]),
//! so their encodings are part of the format ("Tree: messages" in FORMAT.md).

use crate::codec::{put_bytes16, put_bytes32, put_i64, put_u32, put_u64, put_u8, Malformed, Reader};
use crate::limits::{FIELD_NAME_BYTES_MAX, MERGE_OPERAND_BYTES_MAX, VALUE_BYTES_MAX};
use keel_drivers::checksum;

/// Where an out-of-line value lives: a run of pages in the shard's region,
/// written once, checksummed. `crc32c` covers the generation (8 bytes,
/// little-endian) followed by the `length` value bytes, so a stale or
/// misdirected extent with the same bytes is still caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtentRef {
    /// First page, counted from the start of the shard's region.
    pub address: u64,
    /// Value length in bytes (the extent occupies `ceil(length / 4096)` pages).
    pub length: u32,
    pub crc32c: u32,
    /// The write generation the extent was written with.
    pub generation: u64,
}

/// Encoded size of an [`ExtentRef`].
pub const EXTENT_REF_BYTES: usize = 24;

impl ExtentRef {
    pub fn pages(&self) -> u64 {
        crate::limits::pages_for(self.length as usize).max(1)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.address);
        put_u32(out, self.length);
        put_u32(out, self.crc32c);
        put_u64(out, self.generation);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<ExtentRef, Malformed> {
        let address = r.u64("extent address")?;
        let length = r.u32("extent length")?;
        if length as usize > VALUE_BYTES_MAX {
            return Err(Malformed("extent length"));
        }
        Ok(ExtentRef { address, length, crc32c: r.u32("extent crc")?, generation: r.u64("extent generation")? })
    }

    /// The checksum an extent written with `generation` and holding `data` carries.
    pub fn checksum(generation: u64, data: &[u8]) -> u32 {
        // Folded where the CPU allows (`keel_drivers::checksum`): extents are
        // the NFS gateway's file data, checksummed whole on write and on read.
        checksum::crc32c_append(crc32c::crc32c(&generation.to_le_bytes()), data)
    }
}

/// A value as the tree stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Stored in the leaf (at most the configured inline maximum).
    Inline(Vec<u8>),
    /// Stored out of line in an extent written by [`crate::Tree::write_extent`].
    Extent(ExtentRef),
}

impl Value {
    /// Bytes this value takes in a node.
    pub fn encoded_bytes(&self) -> usize {
        match self {
            Value::Inline(v) => 5 + v.len(),
            Value::Extent(_) => 1 + EXTENT_REF_BYTES,
        }
    }
}

/// A partial update, applied to a key's value without reading it first. The
/// semantics are [`crate::merge::apply_merge`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOp {
    /// Append bytes to the value (an absent value counts as empty).
    Append(Vec<u8>),
    /// Write bytes at an offset, extending the value with zeros if it is shorter.
    PatchAt { offset: u64, bytes: Vec<u8> },
    /// Add to a counter stored as 8 bytes little-endian (wrapping; any other
    /// value counts as 0).
    AddI64(i64),
    /// Set one field of a field map (see [`crate::merge::field_map`]).
    FieldSet { field: Vec<u8>, value: Vec<u8> },
    /// Remove one field of a field map.
    FieldDelete { field: Vec<u8> },
}

const MERGE_APPEND: u8 = 1;
const MERGE_PATCH_AT: u8 = 2;
const MERGE_ADD_I64: u8 = 3;
const MERGE_FIELD_SET: u8 = 4;
const MERGE_FIELD_DELETE: u8 = 5;

impl MergeOp {
    /// Bytes of this operation's encoding.
    pub fn encoded_bytes(&self) -> usize {
        match self {
            MergeOp::Append(b) => 5 + b.len(),
            MergeOp::PatchAt { bytes, .. } => 13 + bytes.len(),
            MergeOp::AddI64(_) => 9,
            MergeOp::FieldSet { field, value } => 7 + field.len() + value.len(),
            MergeOp::FieldDelete { field } => 3 + field.len(),
        }
    }

    /// Checks the operand sizes against the format's limits.
    pub fn check(&self) -> Result<(), crate::TreeError> {
        let operand = match self {
            MergeOp::Append(b) | MergeOp::PatchAt { bytes: b, .. } => b.len(),
            MergeOp::AddI64(_) => 0,
            MergeOp::FieldSet { field, value } => {
                check_field(field)?;
                value.len()
            }
            MergeOp::FieldDelete { field } => {
                check_field(field)?;
                0
            }
        };
        if operand > MERGE_OPERAND_BYTES_MAX {
            return Err(crate::TreeError::MergeTooLarge { len_bytes: operand, max_bytes: MERGE_OPERAND_BYTES_MAX });
        }
        Ok(())
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            MergeOp::Append(b) => {
                put_u8(out, MERGE_APPEND);
                put_bytes32(out, b);
            }
            MergeOp::PatchAt { offset, bytes } => {
                put_u8(out, MERGE_PATCH_AT);
                put_u64(out, *offset);
                put_bytes32(out, bytes);
            }
            MergeOp::AddI64(d) => {
                put_u8(out, MERGE_ADD_I64);
                put_i64(out, *d);
            }
            MergeOp::FieldSet { field, value } => {
                put_u8(out, MERGE_FIELD_SET);
                put_bytes16(out, field);
                put_bytes32(out, value);
            }
            MergeOp::FieldDelete { field } => {
                put_u8(out, MERGE_FIELD_DELETE);
                put_bytes16(out, field);
            }
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<MergeOp, Malformed> {
        const MAX: usize = MERGE_OPERAND_BYTES_MAX;
        Ok(match r.u8("merge tag")? {
            MERGE_APPEND => MergeOp::Append(r.bytes32(MAX, "append operand")?.to_vec()),
            MERGE_PATCH_AT => {
                let offset = r.u64("patch offset")?;
                MergeOp::PatchAt { offset, bytes: r.bytes32(MAX, "patch operand")?.to_vec() }
            }
            MERGE_ADD_I64 => MergeOp::AddI64(r.i64("counter delta")?),
            MERGE_FIELD_SET => {
                let field = r.bytes16(FIELD_NAME_BYTES_MAX, "field name")?.to_vec();
                MergeOp::FieldSet { field, value: r.bytes32(MAX, "field value")?.to_vec() }
            }
            MERGE_FIELD_DELETE => {
                MergeOp::FieldDelete { field: r.bytes16(FIELD_NAME_BYTES_MAX, "field name")?.to_vec() }
            }
            _ => return Err(Malformed("merge tag")),
        })
    }
}

fn check_field(field: &[u8]) -> Result<(), crate::TreeError> {
    if field.len() > FIELD_NAME_BYTES_MAX {
        return Err(crate::TreeError::FieldTooLarge { len_bytes: field.len(), max_bytes: FIELD_NAME_BYTES_MAX });
    }
    Ok(())
}

/// One update to one key, in LSN order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Put(Value),
    Delete,
    Merge(MergeOp),
}

const MSG_PUT_INLINE: u8 = 1;
const MSG_PUT_EXTENT: u8 = 2;
const MSG_DELETE: u8 = 3;
const MSG_MERGE: u8 = 4;

impl Message {
    /// Encodes the message for a journal record (the key is the caller's).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Put(Value::Inline(v)) => {
                put_u8(out, MSG_PUT_INLINE);
                put_bytes32(out, v);
            }
            Message::Put(Value::Extent(e)) => {
                put_u8(out, MSG_PUT_EXTENT);
                e.encode(out);
            }
            Message::Delete => put_u8(out, MSG_DELETE),
            Message::Merge(op) => {
                put_u8(out, MSG_MERGE);
                op.encode(out);
            }
        }
    }

    /// Decodes a message written by [`Message::encode`]; returns it and the
    /// number of bytes it took.
    pub fn decode(bytes: &[u8]) -> Result<(Message, usize), Malformed> {
        let mut r = Reader::new(bytes);
        let message = match r.u8("message tag")? {
            MSG_PUT_INLINE => Message::Put(Value::Inline(r.bytes32(VALUE_BYTES_MAX, "inline value")?.to_vec())),
            MSG_PUT_EXTENT => Message::Put(Value::Extent(ExtentRef::decode(&mut r)?)),
            MSG_DELETE => Message::Delete,
            MSG_MERGE => Message::Merge(MergeOp::decode(&mut r)?),
            _ => return Err(Malformed("message tag")),
        };
        Ok((message, r.position()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_their_encoding() {
        let extent = ExtentRef { address: 9, length: 5000, crc32c: 0xdead_beef, generation: 77 };
        let messages = [
            Message::Put(Value::Inline(b"hello".to_vec())),
            Message::Put(Value::Extent(extent)),
            Message::Delete,
            Message::Merge(MergeOp::Append(b"x".to_vec())),
            Message::Merge(MergeOp::PatchAt { offset: 1 << 20, bytes: vec![1, 2, 3] }),
            Message::Merge(MergeOp::AddI64(-5)),
            Message::Merge(MergeOp::FieldSet { field: b"f".to_vec(), value: b"v".to_vec() }),
            Message::Merge(MergeOp::FieldDelete { field: b"f".to_vec() }),
        ];
        for m in messages {
            let mut out = Vec::new();
            m.encode(&mut out);
            let (back, used) = Message::decode(&out).unwrap();
            assert_eq!(back, m);
            assert_eq!(used, out.len());
            if let Message::Merge(op) = &m {
                assert_eq!(op.encoded_bytes(), out.len() - 1);
            }
            for cut in 0..out.len() {
                assert!(Message::decode(&out[..cut]).is_err(), "truncated at {cut} must not decode");
            }
        }
    }
}
