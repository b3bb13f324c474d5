//! The journal payload of a transaction: every change it makes, on every
//! shard, in one record — so a multi-shard transaction is atomic by
//! construction. Byte layout in docs/FORMAT.md ("Transaction records"); the
//! messages inside use the tree's encoding ("Tree: messages").

use keel_tree::{ExtentRef, Message, Value};

pub const PAYLOAD_VERSION: u8 = 2;

const OP_WRITE: u8 = 1;
const OP_DELETE_RANGE: u8 = 5;

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
            Op::Write { key, message, .. } => key.len() + message_bytes(message) + 16,
            Op::DeleteRange { start, end, .. } => start.len() + end.as_ref().map_or(0, Vec::len) + 16,
        }
    }

    /// Whether the op may only free space (so it may use the tree's reserve).
    pub fn reclaims(&self) -> bool {
        matches!(self, Op::DeleteRange { .. } | Op::Write { message: Message::Delete, .. })
    }

    /// The out-of-line value this op refers to, if any.
    pub fn extent(&self) -> Option<ExtentRef> {
        match self {
            Op::Write { message: Message::Put(Value::Extent(e)), .. } => Some(*e),
            _ => None,
        }
    }
}

fn message_bytes(message: &Message) -> usize {
    match message {
        Message::Put(v) => v.encoded_bytes(),
        Message::Delete => 1,
        Message::Merge(op) => op.encoded_bytes(),
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

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).expect("lengths are bounded far below 4 GiB").to_le_bytes());
    out.extend_from_slice(b);
}

fn put_head(out: &mut Vec<u8>, kind: u8, shard: u32) {
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&u16::try_from(shard).expect("at most 32 shards").to_le_bytes());
}

/// Encodes the ops of one transaction.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + ops.iter().map(Op::size_bytes).sum::<usize>());
    out.extend_from_slice(&[PAYLOAD_VERSION, 0, 0, 0]);
    out.extend_from_slice(&u32::try_from(ops.len()).expect("op count is bounded").to_le_bytes());
    for op in ops {
        match op {
            Op::Write { shard, key, message } => {
                put_head(&mut out, OP_WRITE, *shard);
                put_bytes(&mut out, key);
                message.encode(&mut out);
            }
            Op::DeleteRange { shard, start, end } => {
                put_head(&mut out, OP_DELETE_RANGE, *shard);
                put_bytes(&mut out, start);
                match end {
                    Some(end) => {
                        out.push(1);
                        put_bytes(&mut out, end);
                    }
                    None => out.push(0),
                }
            }
        }
    }
    out
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
    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
    fn message(&mut self) -> Result<Message, DecodeError> {
        let (message, used) =
            Message::decode(&self.bytes[self.at..]).map_err(|m| DecodeError { at: self.at, what: m.0 })?;
        self.at += used;
        Ok(message)
    }
}

/// Decodes a payload written by [`encode`]. `shard_count` bounds the shard
/// numbers a valid payload may name.
pub fn decode(bytes: &[u8], shard_count: u32) -> Result<Vec<Op>, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    if r.u8("version")? != PAYLOAD_VERSION {
        return Err(DecodeError { at: 0, what: "unknown payload version" });
    }
    r.take(3, "reserved")?;
    let count = r.u32("op count")? as usize;
    // Each op takes at least 9 bytes: a larger count is malformed, and
    // checking first keeps a corrupt count from reserving huge memory.
    if count > bytes.len() / 9 {
        return Err(DecodeError { at: 4, what: "op count larger than the payload" });
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        ops.push(decode_op(&mut r, shard_count)?);
    }
    if r.at != bytes.len() {
        return Err(DecodeError { at: r.at, what: "trailing bytes" });
    }
    Ok(ops)
}

fn decode_op(r: &mut Reader<'_>, shard_count: u32) -> Result<Op, DecodeError> {
    let kind = r.u8("op kind")?;
    r.u8("reserved")?;
    let shard = u32::from(r.u16("shard")?);
    if shard >= shard_count {
        return Err(DecodeError { at: r.at, what: "shard out of range" });
    }
    let key = r.bytes("key")?;
    match kind {
        OP_WRITE => Ok(Op::Write { shard, key, message: r.message()? }),
        OP_DELETE_RANGE => {
            let end = match r.u8("range end flag")? {
                0 => None,
                1 => Some(r.bytes("range end")?),
                _ => return Err(DecodeError { at: r.at, what: "bad range end flag" }),
            };
            Ok(Op::DeleteRange { shard, start: key, end })
        }
        _ => Err(DecodeError { at: r.at, what: "unknown op kind" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_tree::MergeOp;

    fn sample() -> Vec<Op> {
        let extent = ExtentRef { address: 3, length: 9000, crc32c: 7, generation: 2 };
        vec![
            Op::Write { shard: 3, key: b"a".to_vec(), message: Message::Put(Value::Inline(b"value".to_vec())) },
            Op::Write { shard: 2, key: b"big".to_vec(), message: Message::Put(Value::Extent(extent)) },
            Op::Write { shard: 0, key: b"b".to_vec(), message: Message::Delete },
            Op::Write { shard: 1, key: b"c".to_vec(), message: Message::Merge(MergeOp::AddI64(-5)) },
            Op::Write {
                shard: 1,
                key: b"d".to_vec(),
                message: Message::Merge(MergeOp::FieldSet { field: b"f".to_vec(), value: b"v".to_vec() }),
            },
            Op::DeleteRange { shard: 2, start: b"x".to_vec(), end: Some(b"y".to_vec()) },
            Op::DeleteRange { shard: 2, start: b"z".to_vec(), end: None },
        ]
    }

    #[test]
    fn payloads_round_trip() {
        let ops = sample();
        assert_eq!(decode(&encode(&ops), 4).unwrap(), ops);
    }

    #[test]
    fn a_shard_beyond_the_volume_is_refused() {
        assert!(decode(&encode(&sample()), 3).is_err());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n], 4).is_err(), "prefix of {n} bytes decoded");
        }
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if !bytes.is_empty() {
                bytes[0] = PAYLOAD_VERSION;
            }
            let _ = decode(&bytes, 32);
        }
    }
}
