//! The journal payload of a transaction: every change it makes, on every
//! shard, in one record — so a multi-shard transaction is atomic by
//! construction. Byte layout in docs/FORMAT.md ("Transaction records").

use crate::merge::MergeOp;
use crate::store::Message;

pub const PAYLOAD_VERSION: u8 = 1;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 3;
const OP_MERGE: u8 = 4;
const OP_DELETE_RANGE: u8 = 5;

const MERGE_APPEND: u8 = 1;
const MERGE_PATCH_AT: u8 = 2;
const MERGE_ADD_I64: u8 = 3;
const MERGE_FIELD_SET: u8 = 4;
const MERGE_FIELD_DELETE: u8 = 5;

/// One change of a transaction, with the shard it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Write { shard: u32, key: Vec<u8>, message: Message },
    DeleteRange { shard: u32, start: Vec<u8>, end: Option<Vec<u8>> },
}

impl Op {
    pub fn shard(&self) -> u32 {
        match self {
            Op::Write { shard, .. } | Op::DeleteRange { shard, .. } => *shard,
        }
    }

    /// Bytes this op adds to a shard's in-memory buffers (for admission).
    pub fn size_bytes(&self) -> usize {
        match self {
            Op::Write { key, message, .. } => key.len() + message_size(message) + 16,
            Op::DeleteRange { start, end, .. } => start.len() + end.as_ref().map_or(0, Vec::len) + 16,
        }
    }
}

fn message_size(message: &Message) -> usize {
    match message {
        Message::Put(v) => v.len(),
        Message::Delete => 0,
        Message::Merge(op) => match op {
            MergeOp::Append(b) | MergeOp::PatchAt { bytes: b, .. } => b.len() + 8,
            MergeOp::AddI64(_) => 8,
            MergeOp::FieldSet { field, value } => field.len() + value.len(),
            MergeOp::FieldDelete { field } => field.len(),
        },
    }
}

/// Why a payload could not be decoded (the journal's checksum passed, so this
/// means a bug or a format mismatch, and recovery must stop loudly).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed transaction payload at byte {at}: {what}")]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).expect("lengths are bounded far below 4 GiB"));
        self.0.extend_from_slice(b);
    }
}

/// Encodes the ops of one transaction.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + ops.iter().map(Op::size_bytes).sum::<usize>()));
    w.u8(PAYLOAD_VERSION);
    w.u8(0);
    w.u16(0);
    w.u32(u32::try_from(ops.len()).expect("op count is bounded"));
    for op in ops {
        encode_op(&mut w, op);
    }
    w.0
}

fn encode_op(w: &mut Writer, op: &Op) {
    match op {
        Op::Write { shard, key, message } => {
            let kind = match message {
                Message::Put(_) => OP_PUT,
                Message::Delete => OP_DELETE,
                Message::Merge(_) => OP_MERGE,
            };
            w.u8(kind);
            w.u8(0);
            w.u16(*shard as u16);
            w.bytes(key);
            match message {
                Message::Put(v) => w.bytes(v),
                Message::Delete => {}
                Message::Merge(m) => encode_merge(w, m),
            }
        }
        Op::DeleteRange { shard, start, end } => {
            w.u8(OP_DELETE_RANGE);
            w.u8(0);
            w.u16(*shard as u16);
            w.bytes(start);
            match end {
                Some(end) => {
                    w.u8(1);
                    w.bytes(end);
                }
                None => w.u8(0),
            }
        }
    }
}

fn encode_merge(w: &mut Writer, m: &MergeOp) {
    match m {
        MergeOp::Append(b) => {
            w.u8(MERGE_APPEND);
            w.bytes(b);
        }
        MergeOp::PatchAt { offset, bytes } => {
            w.u8(MERGE_PATCH_AT);
            w.u64(*offset);
            w.bytes(bytes);
        }
        MergeOp::AddI64(d) => {
            w.u8(MERGE_ADD_I64);
            w.u64(*d as u64);
        }
        MergeOp::FieldSet { field, value } => {
            w.u8(MERGE_FIELD_SET);
            w.bytes(field);
            w.bytes(value);
        }
        MergeOp::FieldDelete { field } => {
            w.u8(MERGE_FIELD_DELETE);
            w.bytes(field);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or(DecodeError { at: self.at, what })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
}

/// Decodes a payload written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<Op>, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    if r.u8("version")? != PAYLOAD_VERSION {
        return Err(DecodeError { at: 0, what: "unknown payload version" });
    }
    r.u8("reserved")?;
    r.u16("reserved")?;
    let count = r.u32("op count")? as usize;
    // Each op takes at least 8 bytes: a count beyond that is malformed, and
    // checking first keeps a corrupt count from reserving huge memory.
    if count > bytes.len() / 8 {
        return Err(DecodeError { at: 4, what: "op count larger than the payload" });
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        ops.push(decode_op(&mut r)?);
    }
    if r.at != bytes.len() {
        return Err(DecodeError { at: r.at, what: "trailing bytes" });
    }
    Ok(ops)
}

fn decode_op(r: &mut Reader<'_>) -> Result<Op, DecodeError> {
    let kind = r.u8("op kind")?;
    r.u8("reserved")?;
    let shard = u32::from(r.u16("shard")?);
    let key = r.bytes("key")?;
    let message = match kind {
        OP_PUT => Message::Put(r.bytes("value")?),
        OP_DELETE => Message::Delete,
        OP_MERGE => Message::Merge(decode_merge(r)?),
        OP_DELETE_RANGE => {
            let end = match r.u8("range end flag")? {
                0 => None,
                1 => Some(r.bytes("range end")?),
                _ => return Err(DecodeError { at: r.at, what: "bad range end flag" }),
            };
            return Ok(Op::DeleteRange { shard, start: key, end });
        }
        _ => return Err(DecodeError { at: r.at, what: "unknown op kind" }),
    };
    Ok(Op::Write { shard, key, message })
}

fn decode_merge(r: &mut Reader<'_>) -> Result<MergeOp, DecodeError> {
    Ok(match r.u8("merge kind")? {
        MERGE_APPEND => MergeOp::Append(r.bytes("append bytes")?),
        MERGE_PATCH_AT => MergeOp::PatchAt { offset: r.u64("patch offset")?, bytes: r.bytes("patch bytes")? },
        MERGE_ADD_I64 => MergeOp::AddI64(r.u64("delta")? as i64),
        MERGE_FIELD_SET => MergeOp::FieldSet { field: r.bytes("field")?, value: r.bytes("field value")? },
        MERGE_FIELD_DELETE => MergeOp::FieldDelete { field: r.bytes("field")? },
        _ => return Err(DecodeError { at: r.at, what: "unknown merge kind" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Op> {
        vec![
            Op::Write { shard: 3, key: b"a".to_vec(), message: Message::Put(b"value".to_vec()) },
            Op::Write { shard: 0, key: b"b".to_vec(), message: Message::Delete },
            Op::Write { shard: 1, key: b"c".to_vec(), message: Message::Merge(MergeOp::AddI64(-5)) },
            Op::Write {
                shard: 1,
                key: b"d".to_vec(),
                message: Message::Merge(MergeOp::FieldSet { field: b"f".to_vec(), value: b"v".to_vec() }),
            },
            Op::Write {
                shard: 1,
                key: b"e".to_vec(),
                message: Message::Merge(MergeOp::PatchAt { offset: 9, bytes: vec![1, 2] }),
            },
            Op::DeleteRange { shard: 2, start: b"x".to_vec(), end: Some(b"y".to_vec()) },
            Op::DeleteRange { shard: 2, start: b"z".to_vec(), end: None },
        ]
    }

    #[test]
    fn payloads_round_trip() {
        let ops = sample();
        assert_eq!(decode(&encode(&ops)).unwrap(), ops);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
        }
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = decode(&bytes);
        }
    }
}
