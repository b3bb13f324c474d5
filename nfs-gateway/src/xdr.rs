//! XDR (RFC 4506) encoding and decoding, as ONC RPC, MOUNT and NFS use it.
//!
//! Decoding never panics and never allocates more than the input holds:
//! every variable-length item is checked against a caller-given maximum and
//! against the bytes actually left before anything is copied. Integers are
//! big-endian on the wire (XDR's rule, unlike Keel's on-disk little-endian).

/// Why a buffer does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    #[error("input ends {needed_bytes} bytes early")]
    Short { needed_bytes: usize },
    #[error("length {len} exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("value {value} is not valid here")]
    BadValue { value: u32 },
}

/// A cursor over bytes to decode.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

fn padded(len: usize) -> usize {
    len.saturating_add(3) & !3
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Bytes not yet decoded.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// Everything not yet decoded, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        rest
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], XdrError> {
        if self.remaining() < len {
            return Err(XdrError::Short { needed_bytes: len - self.remaining() });
        }
        let out = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Result<i32, XdrError> {
        self.u32().map(|v| v as i32)
    }

    pub fn u64(&mut self) -> Result<u64, XdrError> {
        let hi = u64::from(self.u32()?);
        let lo = u64::from(self.u32()?);
        Ok(hi << 32 | lo)
    }

    /// A bool: only 0 and 1 are valid.
    pub fn bool(&mut self) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(XdrError::BadValue { value }),
        }
    }

    /// Fixed-length opaque data of `len` bytes (plus padding). Padding
    /// content is ignored, as glibc's decoder does: strictness there would
    /// only break clients.
    pub fn fixed(&mut self, len: usize) -> Result<&'a [u8], XdrError> {
        let b = self.take(padded(len))?;
        Ok(&b[..len])
    }

    /// Fixed-length opaque data into an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let b = self.fixed(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// Variable-length opaque data of at most `max` bytes.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        self.fixed(len)
    }

    /// An XDR string: variable-length bytes (not necessarily UTF-8; NFS
    /// names are byte strings).
    pub fn string(&mut self, max: usize) -> Result<&'a [u8], XdrError> {
        self.opaque(max)
    }

    /// The length of a variable-length array, checked against `max` and
    /// against the bytes left (each element takes at least
    /// `element_bytes_min`), so a forged count cannot make the caller
    /// reserve memory the input does not back.
    pub fn array_len(&mut self, max: usize, element_bytes_min: usize) -> Result<usize, XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        let needed = len.saturating_mul(element_bytes_min.max(1));
        if needed > self.remaining() {
            return Err(XdrError::Short { needed_bytes: needed - self.remaining() });
        }
        Ok(len)
    }

    /// An optional item (XDR's `*` pointer: a bool, then the item if true).
    pub fn optional<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, XdrError>) -> Result<Option<T>, XdrError> {
        if self.bool()? {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A growing buffer to encode into.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    pub fn with_capacity(capacity_bytes: usize) -> Self {
        Writer { buf: Vec::with_capacity(capacity_bytes) }
    }

    /// Continues encoding after bytes already in `buf`.
    pub fn from_vec(buf: Vec<u8>) -> Self {
        Writer { buf }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.u32(v as u32)
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u32(u32::from(v))
    }

    /// Fixed-length opaque data, padded to a multiple of 4.
    pub fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(self.buf.len() + padded(bytes.len()) - bytes.len(), 0);
        self
    }

    /// Variable-length opaque data. The caller keeps lengths within the
    /// protocol's limits; anything longer than u32 is a bug.
    pub fn opaque(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u32::try_from(bytes.len()).expect("XDR opaque longer than 4 GiB");
        self.u32(len);
        self.fixed(bytes)
    }

    pub fn string(&mut self, bytes: &[u8]) -> &mut Self {
        self.opaque(bytes)
    }

    /// Overwrites a u32 already written at `pos` (a count patched in later).
    pub fn patch_u32(&mut self, pos: usize, v: u32) {
        self.buf[pos..pos + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// Encoded size of variable-length opaque data of `len` bytes.
pub fn opaque_size(len: usize) -> usize {
    4 + padded(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_item_kind() {
        let mut w = Writer::new();
        w.u32(7).i32(-2).u64(u64::MAX - 1).bool(true).fixed(b"abc").opaque(b"hello").string(b"");
        let bytes = w.into_vec();
        assert_eq!(bytes.len() % 4, 0);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.i32().unwrap(), -2);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert!(r.bool().unwrap());
        assert_eq!(r.fixed(3).unwrap(), b"abc");
        assert_eq!(r.opaque(5).unwrap(), b"hello");
        assert_eq!(r.string(0).unwrap(), b"");
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn over_long_and_short_inputs_are_errors_not_panics() {
        let mut w = Writer::new();
        w.opaque(b"hello");
        let bytes = w.into_vec();
        assert_eq!(Reader::new(&bytes).opaque(4), Err(XdrError::TooLong { len: 5, max: 4 }));
        assert!(matches!(Reader::new(&bytes[..6]).opaque(16), Err(XdrError::Short { .. })));
        assert!(matches!(Reader::new(&[0, 0]).u32(), Err(XdrError::Short { needed_bytes: 2 })));
        let forged = [0xFF, 0xFF, 0xFF, 0xFF];
        assert!(Reader::new(&forged).opaque(usize::MAX).is_err());
        assert!(Reader::new(&forged).array_len(usize::MAX, 4).is_err());
        assert_eq!(Reader::new(&[0, 0, 0, 2]).bool(), Err(XdrError::BadValue { value: 2 }));
    }
}
