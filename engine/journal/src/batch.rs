//! Batches: the unit of group commit. A batch starts at a page boundary and
//! ends at one; its records are packed back to back.
//!
//! A batch is held in pieces: DMA buffers of `piece_bytes` each (one DMA
//! region, or the device's largest transfer if smaller), taken as the batch
//! grows and written as one device write each. Records cross piece boundaries
//! freely — the bytes on the device are the same as if the batch were one
//! buffer — so a batch of several pieces is as full as one large buffer would
//! be. A piece boundary is a page boundary, so a record header (which never
//! starts in a page's last 40 bytes) never straddles two pieces.
//!
//! Records are laid out so that a reader can walk them without knowing where
//! batches end: a record never starts where fewer than a header's bytes remain
//! in the page (those bytes are zero and skipped), and a sealed batch ends with
//! a pad record (or such a short zero tail) up to the end of its last page —
//! or, when the next record would not fit before the end of the ring, up to the
//! ring's end, so that the next batch starts at the ring's beginning.

use keel_drivers::dma::copy_streaming;
use keel_drivers::DmaBuf;

use crate::format::{put_header, seal_record, RecordKind, HEADER_BYTES, PAGE_BYTES};
use crate::Lsn;

/// The batch that records are being committed into.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    pub seq: u64,
    /// The batch's bytes, `piece_bytes` per buffer, in order.
    pub pieces: Vec<DmaBuf>,
    pub piece_bytes: usize,
    /// Per piece: where (within the piece) the first record header that
    /// starts in it sits; `None` when the piece holds only the inside of a
    /// longer record (or nothing yet).
    pub first_header_at: Vec<Option<usize>>,
    /// Logical ring offset of the batch's first byte; a page boundary.
    pub start: u64,
    /// Bytes of records (and page-tail gaps) placed so far.
    pub used_bytes: usize,
    /// Bytes promised to live reservations; a batch is sealed only at zero.
    pub claimed_bytes: usize,
    /// The LSN of the first record (the next LSN while the batch is empty).
    pub first_lsn: Lsn,
    /// No new reservations join; sealed once the claims drain.
    pub closing: bool,
    /// The batch delay ran out: seal as soon as a write slot is free (while
    /// every slot is busy, sealing would only make the write smaller).
    pub delay_expired: bool,
    /// Seal with a pad that reaches the end of the ring.
    pub skip_to_ring_end: bool,
    /// Seal even while empty, as one pad page: a batch that only carries the
    /// durable-LSN hint (see `State::vouch_if_idle`).
    pub vouch: bool,
}

/// Bytes a reservation of `payload_bytes` must claim: its record, plus the
/// page-tail gap that placing it might first need.
pub(crate) fn claim_bytes(payload_bytes: usize) -> usize {
    crate::format::record_bytes(payload_bytes) + HEADER_BYTES
}

impl OpenBatch {
    /// Bytes the pieces held can take.
    pub fn held_bytes(&self) -> usize {
        self.pieces.len() * self.piece_bytes
    }

    /// Adds a piece (its contents are unspecified until written).
    pub fn add_piece(&mut self, buf: DmaBuf) {
        debug_assert_eq!(buf.len(), self.piece_bytes);
        self.pieces.push(buf);
        self.first_header_at.push(None);
    }

    /// Places a data record at the end of the batch. The caller holds a claim
    /// of at least `claim_bytes(payload.len())`, backed by pieces;
    /// `payload_crc` is `crc32c(payload)`, joined with the header's CRC when
    /// the batch is sealed.
    pub fn place(&mut self, lsn: Lsn, epoch: u64, payload: &[u8], payload_crc: u32) -> usize {
        let before = self.used_bytes;
        let page_left = PAGE_BYTES - self.used_bytes % PAGE_BYTES;
        if page_left < HEADER_BYTES {
            self.fill_zero(self.used_bytes, self.used_bytes + page_left);
            self.used_bytes += page_left;
        }
        let at = self.used_bytes;
        let len = crate::format::record_bytes(payload.len());
        put_header(self.header_mut(at), RecordKind::Data, lsn, epoch, payload.len() as u32, payload_crc);
        self.copy_in(at + HEADER_BYTES, payload);
        self.fill_zero(at + HEADER_BYTES + payload.len(), at + len);
        self.used_bytes += len;
        self.used_bytes - before
    }

    /// The header-sized bytes at batch offset `at`, noting the header for
    /// stamping. Never straddles two pieces (see the module's comment).
    fn header_mut(&mut self, at: usize) -> &mut [u8] {
        let (piece, within) = (at / self.piece_bytes, at % self.piece_bytes);
        self.first_header_at[piece].get_or_insert(within);
        &mut self.pieces[piece][within..within + HEADER_BYTES]
    }

    /// Copies `bytes` to batch offset `at`, across pieces. Large payloads go
    /// in with non-temporal stores: the device reads the batch, the CPU never
    /// does again, and an ordinary copy first read every line of the (cold)
    /// buffer into the cache (BENCHMARKS.md, "Journal").
    fn copy_in(&mut self, mut at: usize, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (piece, within) = (at / self.piece_bytes, at % self.piece_bytes);
            let n = bytes.len().min(self.piece_bytes - within);
            copy_streaming(&mut self.pieces[piece][within..within + n], &bytes[..n]);
            bytes = &bytes[n..];
            at += n;
        }
    }

    /// Zeroes batch offsets `from..to`, across pieces.
    fn fill_zero(&mut self, mut from: usize, to: usize) {
        while from < to {
            let (piece, within) = (from / self.piece_bytes, from % self.piece_bytes);
            let n = (to - from).min(self.piece_bytes - within);
            self.pieces[piece][within..within + n].fill(0);
            from += n;
        }
    }
}

/// How a sealed batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealShape {
    /// Bytes the device write covers (whole pages).
    pub write_bytes: usize,
    /// Logical ring offset where the next batch starts.
    pub end: u64,
    /// Where the closing pad record sits in the buffer, if there is one.
    pub pad_at: Option<usize>,
}

/// Writes the closing pad (or zero tail) of `batch` and says where it ends.
/// `ring_bytes` is the ring's size; `lsn_next` the LSN of the next record.
pub(crate) fn close(batch: &mut OpenBatch, ring_bytes: u64, lsn_next: Lsn, epoch: u64) -> SealShape {
    let used = batch.used_bytes;
    let target = if batch.skip_to_ring_end {
        let ring_end = (batch.start / ring_bytes + 1) * ring_bytes;
        (ring_end - batch.start) as usize
    } else {
        used.next_multiple_of(PAGE_BYTES).max(PAGE_BYTES)
    };
    // A header never starts in a page's last few bytes: the pad goes to the
    // next page when the current one has no room for it.
    let page_left = PAGE_BYTES - used % PAGE_BYTES;
    let pad_pos = if page_left < HEADER_BYTES { used + page_left } else { used };
    let pad_at = (pad_pos < target).then_some(pad_pos);
    let written_end = pad_at.map_or(used, |pad| pad + HEADER_BYTES);
    let write_bytes = written_end.next_multiple_of(PAGE_BYTES).max(PAGE_BYTES);
    // Deterministic bytes after the last record: zeros, never stale buffer
    // contents from an earlier batch.
    batch.fill_zero(used, write_bytes);
    if let Some(pad) = pad_at {
        let payload_bytes = (target - pad - HEADER_BYTES) as u32;
        put_header(batch.header_mut(pad), RecordKind::Pad, lsn_next, epoch, payload_bytes, 0);
    }
    SealShape { write_bytes, end: batch.start + target.max(write_bytes) as u64, pad_at }
}

/// What stamping one piece of a sealed batch needs: where in the piece the
/// first header starts, and where the batch's records end, relative to the
/// piece's start (at or past its end when the records go on in the next
/// piece; 0 when they ended before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PieceHeaders {
    pub first_at: Option<usize>,
    pub records_end: usize,
}

/// Stamps the durable-LSN hint and the CRC into every record header of one
/// piece of a sealed batch (and its closing pad, `pad_at`, if the pad is in
/// this piece). Runs outside the journal's lock: the piece's buffer is owned
/// by the task that writes it. Reads headers only (payload CRCs were taken at
/// commit), so it costs per record, not per byte.
pub(crate) fn stamp(buf: &mut [u8], headers: PieceHeaders, pad_at: Option<usize>, seed: u32, hint: Lsn) {
    if let Some(first) = headers.first_at {
        let end = headers.records_end.min(buf.len());
        let mut at = first;
        while at < end {
            let page_left = PAGE_BYTES - at % PAGE_BYTES;
            if page_left < HEADER_BYTES {
                at += page_left;
                continue;
            }
            at += seal_record(seed, &mut buf[at..], hint);
        }
        if headers.records_end <= buf.len() {
            assert_eq!(
                at.max(first),
                headers.records_end.max(first),
                "records of a batch must end where the batch says"
            );
        }
    }
    if let Some(pad) = pad_at {
        seal_record(seed, &mut buf[pad..pad + HEADER_BYTES], hint);
    }
}
