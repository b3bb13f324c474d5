//! Little-endian encoding helpers for the tree's on-disk and journal formats.
//!
//! Every integer is written little-endian, explicitly. Decoding never panics:
//! a [`Reader`] checks each read against the bytes it has and reports a
//! [`Malformed`] error naming the field that did not fit, so a corrupt block
//! becomes a typed error, not an out-of-bounds index.

/// A decoding failure: which field could not be read or was out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0}")]
pub struct Malformed(pub &'static str);

pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A u16 length followed by the bytes. The caller has checked the length
/// against its limit (keys and field names are far below 64 KiB).
pub fn put_bytes16(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= usize::from(u16::MAX));
    put_u16(out, bytes.len() as u16);
    out.extend_from_slice(bytes);
}

/// A u32 length followed by the bytes.
pub fn put_bytes32(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= u32::MAX as usize);
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// Bytes of `v` as a varint: 7 bits per byte, low bits first, the top bit
/// of a byte set when another follows (1 byte below 128, at most 5).
pub fn varint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

/// Writes `v` as a varint (see [`varint_len`]).
pub fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint length followed by the bytes.
pub fn put_bytes_varint(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= u32::MAX as usize);
    put_varint(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// Writes `v` little-endian at `at` in an existing buffer.
pub fn set_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn set_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Reads a little-endian u32 at `at`; the caller guarantees the bounds.
pub fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

pub fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// A bounds-checked cursor over bytes being decoded.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// The bytes read since position `start`.
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start.min(self.pos)..self.pos]
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        if n > self.remaining() {
            return Err(Malformed(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Malformed> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, Malformed> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// A u16 length and that many bytes, the length at most `max`.
    pub fn bytes16(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        let n = usize::from(self.u16(what)?);
        if n > max {
            return Err(Malformed(what));
        }
        self.take(n, what)
    }

    /// A varint (see [`varint_len`]) in its shortest form: a longer form
    /// or a value past u32 is malformed, so every value has one encoding.
    pub fn varint(&mut self, what: &'static str) -> Result<u32, Malformed> {
        let mut v = 0u32;
        for i in 0..5 {
            let b = self.u8(what)?;
            let bits = u32::from(b & 0x7f);
            if i == 4 && bits > 0x0f {
                return Err(Malformed(what));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(Malformed(what));
                }
                return Ok(v);
            }
        }
        Err(Malformed(what))
    }

    /// A varint length and that many bytes, the length at most `max`.
    pub fn bytes_varint(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        let n = self.varint(what)? as usize;
        if n > max {
            return Err(Malformed(what));
        }
        self.take(n, what)
    }

    /// A u32 length and that many bytes, the length at most `max`.
    pub fn bytes32(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(Malformed(what));
        }
        self.take(n, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_errors_not_panics() {
        let mut out = Vec::new();
        put_u32(&mut out, 7);
        put_bytes16(&mut out, b"abc");
        let mut r = Reader::new(&out);
        assert_eq!(r.u32("a"), Ok(7));
        assert_eq!(r.bytes16(10, "b"), Ok(&b"abc"[..]));
        assert_eq!(r.u8("c"), Err(Malformed("c")));
        let mut r = Reader::new(&out[..5]);
        r.u32("a").unwrap();
        assert_eq!(r.bytes16(10, "b"), Err(Malformed("b")));
    }

    #[test]
    fn varints_round_trip_in_their_shortest_form_only() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152, u32::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("v"), Ok(v));
            assert!(r.is_empty());
            assert_eq!(Reader::new(&out[..out.len() - 1]).varint("v"), Err(Malformed("v")), "cut {v}");
        }
        assert_eq!(Reader::new(&[0x81, 0x00]).varint("v"), Err(Malformed("v")), "a longer form of 1");
        assert_eq!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x1f]).varint("v"), Err(Malformed("v")), "past u32");
        assert_eq!(Reader::new(&[0x80; 6]).varint("v"), Err(Malformed("v")));
    }

    #[test]
    fn lengths_above_the_limit_are_refused() {
        let mut out = Vec::new();
        put_bytes32(&mut out, &[1u8; 20]);
        assert_eq!(Reader::new(&out).bytes32(19, "v"), Err(Malformed("v")));
        assert_eq!(Reader::new(&out).bytes32(20, "v").map(<[u8]>::len), Ok(20));
    }
}
