//! Record marking (RFC 5531 section 11): on a stream, each RPC message is a
//! record made of fragments, each preceded by a 4-byte big-endian header
//! whose top bit marks the last fragment and whose low 31 bits are the
//! fragment's length.
//!
//! The deframer is fed bytes as they arrive and hands out whole records.
//! Every record is bounded (`record_bytes_max`), and so is the number of
//! fragments in one record, so a peer cannot make it hold more than about
//! `record_bytes_max` plus the fragment headers.
//!
//! A deframer may be given a [`Splitter`]: for a large single-fragment
//! record it names where the record's bulk payload starts (a WRITE's data)
//! and gives a DMA buffer for it; the payload is then read (or copied once)
//! into that buffer and the record is handed out as a head and a payload,
//! so the data reaches the device without another copy.

use keel_engine::DmaBuf;

const LAST_FRAGMENT: u32 = 0x8000_0000;
/// Fragments one record may have: real clients send one; a few is plenty.
pub const FRAGMENTS_PER_RECORD_MAX: usize = 1024;
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// After a record whose payload was split off, reads ask for this much
/// only: enough for the next call's header, so that a following WRITE's
/// data is read into its payload buffer rather than copied there from
/// the read buffer (one more read per WRITE instead of a 64 KiB copy).
const HEAD_READ_BYTES: usize = 1024;
/// A single-fragment record at least this long whose body has not all
/// arrived is read straight into its own buffer (a 64 KiB WRITE is then
/// not copied out of the read buffer once more).
const DIRECT_RECORD_BYTES_MIN: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record of at least {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { len_bytes: usize, max_bytes: usize },
    #[error("record has more than {FRAGMENTS_PER_RECORD_MAX} fragments")]
    TooManyFragments,
}

/// Given the first bytes of a large single-fragment record's body (at
/// least what has arrived) and the body's length: where its bulk payload
/// starts and a buffer of the payload's length to hold it, or `None` to
/// keep the record whole.
pub type Splitter = Box<dyn FnMut(&[u8], usize) -> Option<(usize, DmaBuf)> + Send>;

/// A record as handed out: its bytes are `head` followed by `payload`.
#[derive(Debug)]
pub struct Record {
    pub head: Vec<u8>,
    /// The bulk payload, when a [`Splitter`] separated one.
    pub payload: Option<DmaBuf>,
}

impl Record {
    /// The record's bytes in one buffer.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.payload {
            None => self.head,
            Some(payload) => {
                let mut bytes = self.head;
                bytes.extend_from_slice(&payload);
                bytes
            }
        }
    }
}

/// Where a large record's body (or its payload) is being read.
#[derive(Debug)]
enum DirectBody {
    Whole(Vec<u8>),
    Payload { head: Vec<u8>, payload: DmaBuf },
}

impl DirectBody {
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            DirectBody::Whole(body) => body,
            DirectBody::Payload { payload, .. } => payload,
        }
    }

    fn into_record(self) -> Record {
        match self {
            DirectBody::Whole(head) => Record { head, payload: None },
            DirectBody::Payload { head, payload } => Record { head, payload: Some(payload) },
        }
    }
}

/// A large single-fragment record being read into its own buffer.
#[derive(Debug)]
struct Direct {
    /// The buffer being filled, its final length.
    body: DirectBody,
    /// Bytes of the buffer received so far.
    received: usize,
}

/// Reassembles records from a byte stream.
pub struct Deframer {
    buf: Vec<u8>,
    /// Start of the first byte not yet handed out.
    start: usize,
    record_bytes_max: usize,
    direct: Option<Direct>,
    /// What the last [`Deframer::spare`] returned: the direct body's rest
    /// (its length), or a read chunk at the end of `buf` (`None`).
    spare_direct: Option<usize>,
    splitter: Option<Splitter>,
    /// The last record handed out had its payload split off.
    after_split: bool,
    /// Length of the read chunk the last [`Deframer::spare`] offered.
    spare_chunk: usize,
}

impl std::fmt::Debug for Deframer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deframer")
            .field("buffered_bytes", &self.buffered_bytes())
            .field("record_bytes_max", &self.record_bytes_max)
            .field("splits", &self.splitter.is_some())
            .finish()
    }
}

impl Deframer {
    pub fn new(record_bytes_max: usize) -> Self {
        Deframer {
            buf: Vec::with_capacity(READ_CHUNK_BYTES),
            start: 0,
            record_bytes_max,
            direct: None,
            spare_direct: None,
            splitter: None,
            after_split: false,
            spare_chunk: 0,
        }
    }

    /// A deframer that separates the bulk payload of large records that
    /// `splitter` recognises (see [`Deframer::next_split_record`]).
    pub fn with_splitter(record_bytes_max: usize, splitter: Splitter) -> Self {
        Deframer { splitter: Some(splitter), ..Deframer::new(record_bytes_max) }
    }

    /// Free space to read into, at the end of the buffered bytes: a read
    /// chunk, or the rest of a large record's own buffer. Call
    /// [`Deframer::filled`] with what was read.
    pub fn spare(&mut self) -> &mut [u8] {
        if let Some(direct) = self.direct.as_mut() {
            let received = direct.received;
            let bytes = direct.body.bytes_mut();
            self.spare_direct = Some(bytes.len() - received);
            return &mut bytes[received..];
        }
        self.spare_direct = None;
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.spare_chunk = if self.after_split { HEAD_READ_BYTES } else { READ_CHUNK_BYTES };
        self.buf.resize(len + self.spare_chunk, 0);
        &mut self.buf[len..]
    }

    /// Keeps `n` bytes of what [`Deframer::spare`] returned.
    pub fn filled(&mut self, n: usize) {
        if let Some(rest) = self.spare_direct.take() {
            assert!(n <= rest);
            if let Some(direct) = self.direct.as_mut() {
                direct.received += n;
            }
            return;
        }
        assert!(n <= self.spare_chunk);
        let keep = self.buf.len() - self.spare_chunk + n;
        self.buf.truncate(keep);
    }

    /// Bytes buffered and not yet part of a record handed out.
    pub fn buffered_bytes(&self) -> usize {
        let direct = self.direct.as_ref().map_or(0, |d| match &d.body {
            DirectBody::Whole(_) => d.received,
            DirectBody::Payload { head, .. } => head.len() + d.received,
        });
        self.buf.len() - self.start + direct
    }

    /// The next complete record, if all of its fragments have arrived.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, RecordError> {
        Ok(self.next_split_record()?.map(Record::into_bytes))
    }

    /// The next complete record, its payload apart if the splitter
    /// separated one.
    pub fn next_split_record(&mut self) -> Result<Option<Record>, RecordError> {
        let record = self.next_record_parts()?;
        if let Some(r) = &record {
            self.after_split = r.payload.is_some();
        }
        Ok(record)
    }

    fn next_record_parts(&mut self) -> Result<Option<Record>, RecordError> {
        if let Some(mut direct) = self.direct.take() {
            if direct.received < direct.body.bytes_mut().len() {
                self.direct = Some(direct);
                return Ok(None);
            }
            return Ok(Some(direct.body.into_record()));
        }
        if let Some(record) = self.split_if_large() {
            return Ok(Some(record));
        }
        if self.direct.is_some() {
            return Ok(None);
        }
        self.start_direct_if_large();
        if self.direct.is_some() {
            return Ok(None);
        }
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
        self.consumed_to(pos);
        Ok(Some(Record { head: record, payload: None }))
    }

    /// Everything before `pos` in `buf` has been handed out.
    fn consumed_to(&mut self, pos: usize) {
        self.start = pos;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// The length of the large single-fragment record (within the limit)
    /// that starts the buffered bytes, if one does.
    fn large_single_fragment(&self) -> Option<usize> {
        let header = self.buf.get(self.start..self.start + 4)?;
        let header = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let len = (header & !LAST_FRAGMENT) as usize;
        let large = len >= DIRECT_RECORD_BYTES_MIN && len <= self.record_bytes_max;
        (header & LAST_FRAGMENT != 0 && large).then_some(len)
    }

    /// Separates the payload of a large single-fragment record the splitter
    /// recognises: the bytes of it that have arrived are copied into the
    /// payload buffer; the record is returned if it is complete, otherwise
    /// the rest is read straight into the payload buffer.
    fn split_if_large(&mut self) -> Option<Record> {
        let len = self.large_single_fragment()?;
        let body_from = self.start + 4;
        let have = (self.buf.len() - body_from).min(len);
        let splitter = self.splitter.as_mut()?;
        let (payload_from, mut payload) = splitter(&self.buf[body_from..body_from + have], len)?;
        if payload_from > have || payload.len() != len - payload_from {
            return None;
        }
        let head = self.buf[body_from..body_from + payload_from].to_vec();
        let got = have - payload_from;
        payload[..got].copy_from_slice(&self.buf[body_from + payload_from..body_from + have]);
        self.consumed_to(body_from + have);
        if got == payload.len() {
            return Some(Record { head, payload: Some(payload) });
        }
        self.direct = Some(Direct { body: DirectBody::Payload { head, payload }, received: got });
        None
    }

    /// A single-fragment record of at least `DIRECT_RECORD_BYTES_MIN` bytes
    /// (within the limit) whose body has not all arrived moves into a buffer
    /// of its own, which the following reads fill directly.
    fn start_direct_if_large(&mut self) {
        let Some(len) = self.large_single_fragment() else { return };
        let body_from = self.start + 4;
        let have = self.buf.len() - body_from;
        if have >= len {
            return;
        }
        let mut body = vec![0u8; len];
        body[..have].copy_from_slice(&self.buf[body_from..]);
        self.buf.clear();
        self.start = 0;
        self.direct = Some(Direct { body: DirectBody::Whole(body), received: have });
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

    fn feed(d: &mut Deframer, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let spare = d.spare();
            let n = spare.len().min(bytes.len()).min(7);
            spare[..n].copy_from_slice(&bytes[..n]);
            d.filled(n);
            bytes = &bytes[n..];
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
    fn a_large_record_is_read_into_its_own_buffer_between_small_ones() {
        let large: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut stream = fragment(true, b"before");
        stream.extend(fragment(true, &large));
        stream.extend(fragment(true, b"after"));
        let mut d = Deframer::new(1 << 20);
        let mut records = Vec::new();
        // Reads of uneven sizes, each as much of what `spare` offers as is left.
        let mut sent = 0;
        for step in 0.. {
            while let Some(record) = d.next_record().unwrap() {
                records.push(record);
            }
            if sent == stream.len() {
                break;
            }
            let spare = d.spare();
            let n = spare.len().min(stream.len() - sent).min(1000 + step * 997 % 30_000);
            spare[..n].copy_from_slice(&stream[sent..sent + n]);
            d.filled(n);
            sent += n;
        }
        assert_eq!(records, vec![b"before".to_vec(), large, b"after".to_vec()]);
        assert_eq!(d.buffered_bytes(), 0);
    }

    /// Feeds `stream` in reads of uneven sizes; returns the records.
    fn feed_unevenly(d: &mut Deframer, stream: &[u8]) -> Vec<Record> {
        let mut records = Vec::new();
        let mut sent = 0;
        for step in 0.. {
            while let Some(record) = d.next_split_record().unwrap() {
                records.push(record);
            }
            if sent == stream.len() {
                break;
            }
            let spare = d.spare();
            let n = spare.len().min(stream.len() - sent).min(1000 + step * 997 % 30_000);
            spare[..n].copy_from_slice(&stream[sent..sent + n]);
            d.filled(n);
            sent += n;
        }
        records
    }

    #[test]
    fn a_payload_the_splitter_names_is_handed_out_apart_and_the_rest_whole() {
        let pool = keel_drivers::DmaPool::for_tests(4 << 20);
        // Records starting with b'S' have their payload from byte 10.
        let splitter: Splitter = Box::new(move |prefix, len| {
            if prefix.first() != Some(&b'S') || prefix.len() < 10 {
                return None;
            }
            let mut buf = pool.try_alloc(len - 10).ok()?;
            buf.set_len(len - 10);
            Some((10, buf))
        });
        let split: Vec<u8> = b"S123456789".iter().copied().chain((0..70_000u32).map(|i| (i % 253) as u8)).collect();
        let whole: Vec<u8> = (0..40_000u32).map(|i| (i % 13) as u8).collect();
        let mut stream = fragment(true, b"small");
        stream.extend(fragment(true, &split));
        stream.extend(fragment(true, &whole));
        stream.extend(fragment(true, &split));
        let mut d = Deframer::with_splitter(1 << 20, splitter);
        let records = feed_unevenly(&mut d, &stream);
        assert_eq!(records.len(), 4);
        assert!(records[0].payload.is_none() && records[2].payload.is_none());
        for r in [&records[1], &records[3]] {
            assert_eq!(r.head, b"S123456789");
            assert_eq!(r.payload.as_deref(), Some(&split[10..]));
        }
        let bytes: Vec<Vec<u8>> = records.into_iter().map(Record::into_bytes).collect();
        assert_eq!(bytes, vec![b"small".to_vec(), split.clone(), whole, split]);
        assert_eq!(d.buffered_bytes(), 0);
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
