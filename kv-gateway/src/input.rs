//! A connection's input buffer: bytes read from the socket and not yet
//! decoded.
//!
//! The buffer keeps its initialised bytes between reads, so a read costs no
//! zeroing: only growth is zeroed. (Zeroing a fresh 64 KiB chunk before every
//! read was the largest single cost of a pipeline-1 GET.) Decoded bytes are
//! dropped by moving a start index; the pending bytes move to the front only
//! when the free tail is too short for the next read.

/// Bytes read but not yet decoded.
#[derive(Debug)]
pub(crate) struct InputBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes offered to each read, at least.
    chunk_bytes: usize,
    /// Bytes arrived since the decoder last looked (read while replies were
    /// being written): decode them before waiting for more.
    undecoded: bool,
}

impl InputBuffer {
    pub(crate) fn new(chunk_bytes: usize) -> InputBuffer {
        InputBuffer { buf: vec![0; chunk_bytes], start: 0, end: 0, chunk_bytes, undecoded: false }
    }

    /// The bytes waiting to be decoded.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.end - self.start
    }

    /// Drops the first `n` pending bytes (decoded).
    pub(crate) fn consume(&mut self, n: usize) {
        self.undecoded = false;
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 4 * self.chunk_bytes {
                // One large request grew the buffer; do not keep it.
                self.buf = vec![0; self.chunk_bytes];
            }
        }
    }

    /// Room for the next read: at least `chunk_bytes` after the pending bytes.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() - self.end < self.chunk_bytes {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < self.chunk_bytes {
                self.buf.resize(self.end + self.chunk_bytes, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`InputBuffer::spare`] as read.
    pub(crate) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
        self.undecoded |= n > 0;
    }

    /// Whether bytes arrived since the last [`InputBuffer::consume`].
    pub(crate) fn undecoded(&self) -> bool {
        self.undecoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(b: &mut InputBuffer, data: &[u8]) {
        let spare = b.spare();
        assert!(spare.len() >= 8);
        spare[..data.len()].copy_from_slice(data);
        b.filled(data.len());
    }

    #[test]
    fn pending_bytes_survive_consumption_compaction_and_growth() {
        let mut b = InputBuffer::new(8);
        read(&mut b, b"abcdef");
        b.consume(2);
        assert_eq!(b.pending(), b"cdef");
        read(&mut b, b"ghijkl");
        assert_eq!(b.pending(), b"cdefghijkl");
        read(&mut b, b"mnopqrst");
        assert_eq!(b.pending(), b"cdefghijklmnopqrst");
        for _ in 0..3 {
            read(&mut b, b"uvwxyz01");
        }
        assert_eq!(b.pending_len(), 42);
        assert!(b.pending().starts_with(b"cdefghijklmnopqrstuvwxyz01"));
        b.consume(42);
        assert_eq!(b.pending_len(), 0);
        assert_eq!(b.buf.len(), 8, "a drained buffer that grew past 4 chunks is replaced");
        read(&mut b, b"xy");
        assert_eq!(b.pending(), b"xy");
    }
}
