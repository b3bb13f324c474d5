//! Record marking (RFC 5531 section 11): on a stream, each RPC message is a
//! record made of fragments, each preceded by a 4-byte big-endian header
//! whose top bit marks the last fragment and whose low 31 bits are the
//! fragment's length.
//!
//! The deframer is fed bytes as they arrive and hands out whole records.
//! Every record is bounded (`record_bytes_max`), and so is the number of
//! fragments in one record, so a peer cannot make it hold more than about
//! `record_bytes_max` plus the fragment headers.

const LAST_FRAGMENT: u32 = 0x8000_0000;
/// Fragments one record may have: real clients send one; a few is plenty.
pub const FRAGMENTS_PER_RECORD_MAX: usize = 1024;
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record of at least {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { len_bytes: usize, max_bytes: usize },
    #[error("record has more than {FRAGMENTS_PER_RECORD_MAX} fragments")]
    TooManyFragments,
}

/// Reassembles records from a byte stream.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Start of the first byte not yet handed out.
    start: usize,
    record_bytes_max: usize,
}

impl Deframer {
    pub fn new(record_bytes_max: usize) -> Self {
        Deframer { buf: Vec::with_capacity(READ_CHUNK_BYTES), start: 0, record_bytes_max }
    }

    /// Free space to read into (at least a read chunk), at the end of the
    /// buffered bytes. Call [`Deframer::filled`] with what was read.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK_BYTES, 0);
        &mut self.buf[len..]
    }

    /// Keeps `n` bytes of what [`Deframer::spare`] returned.
    pub fn filled(&mut self, n: usize) {
        assert!(n <= READ_CHUNK_BYTES);
        let keep = self.buf.len() - READ_CHUNK_BYTES + n;
        self.buf.truncate(keep);
    }

    /// Bytes buffered and not yet part of a record handed out.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete record, if all of its fragments have arrived.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, RecordError> {
        let mut pos = self.start;
        let mut fragments = Vec::new();
        let mut total = 0usize;
        loop {
            let Some(header) = self.buf.get(pos..pos + 4) else { return Ok(None) };
            let header = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let len = (header & !LAST_FRAGMENT) as usize;
            total = total.saturating_add(len);
            if total > self.record_bytes_max {
                return Err(RecordError::TooLarge { len_bytes: total, max_bytes: self.record_bytes_max });
            }
            if fragments.len() >= FRAGMENTS_PER_RECORD_MAX {
                return Err(RecordError::TooManyFragments);
            }
            if self.buf.len() - pos - 4 < len {
                return Ok(None);
            }
            fragments.push(pos + 4..pos + 4 + len);
            pos += 4 + len;
            if header & LAST_FRAGMENT != 0 {
                break;
            }
        }
        let mut record = Vec::with_capacity(total);
        for range in fragments {
            record.extend_from_slice(&self.buf[range]);
        }
        self.start = pos;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(record))
    }
}

/// Bytes reserved at the front of an encoded message for its record mark.
pub const RECORD_MARK_BYTES: usize = 4;

/// Writes the single-fragment record mark into the first 4 bytes of
/// `message` (which were reserved for it).
pub fn seal_record(message: &mut [u8]) {
    assert!(message.len() >= RECORD_MARK_BYTES);
    let len = u32::try_from(message.len() - RECORD_MARK_BYTES).expect("record longer than 2 GiB");
    assert!(len & LAST_FRAGMENT == 0);
    message[..4].copy_from_slice(&(LAST_FRAGMENT | len).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(d: &mut Deframer, bytes: &[u8]) {
        for piece in bytes.chunks(7) {
            let spare = d.spare();
            spare[..piece.len()].copy_from_slice(piece);
            d.filled(piece.len());
        }
    }

    fn fragment(last: bool, body: &[u8]) -> Vec<u8> {
        let mut v = ((u32::from(last) << 31) | body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn multi_fragment_records_are_reassembled_in_order() {
        let mut d = Deframer::new(1024);
        let mut stream = fragment(false, b"hel");
        stream.extend(fragment(false, b""));
        stream.extend(fragment(true, b"lo"));
        stream.extend(fragment(true, b"second"));
        feed(&mut d, &stream[..5]);
        assert_eq!(d.next_record().unwrap(), None);
        feed(&mut d, &stream[5..]);
        assert_eq!(d.next_record().unwrap().unwrap(), b"hello");
        assert_eq!(d.next_record().unwrap().unwrap(), b"second");
        assert_eq!(d.next_record().unwrap(), None);
        assert_eq!(d.buffered_bytes(), 0);
    }

    #[test]
    fn records_over_the_limit_are_refused_before_they_are_buffered() {
        let mut d = Deframer::new(8);
        feed(&mut d, &fragment(false, b"12345"));
        feed(&mut d, &(0x8000_0000u32 | 100).to_be_bytes());
        assert_eq!(d.next_record(), Err(RecordError::TooLarge { len_bytes: 105, max_bytes: 8 }));
    }

    #[test]
    fn sealing_marks_one_last_fragment() {
        let mut m = vec![0, 0, 0, 0, 9, 9];
        seal_record(&mut m);
        let mut d = Deframer::new(16);
        feed(&mut d, &m);
        assert_eq!(d.next_record().unwrap().unwrap(), vec![9, 9]);
    }
}
