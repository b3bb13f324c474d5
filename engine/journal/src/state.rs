//! The journal's shared state and every decision made under its lock: who
//! may claim space, when a batch is sealed, which writes and flushes go out,
//! and how far the durable LSN advances. No I/O happens here: decisions come
//! out as [`Action`]s that the caller performs after releasing the lock, and
//! wakers to wake are collected in `to_wake`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::task::Waker;

use keel_drivers::{DmaBuf, IoError};

use crate::batch::{close, OpenBatch, PieceHeaders};
use crate::config::{Durable, Limits};
use crate::error::JournalError;
use crate::format::PAGE_BYTES;
use crate::Lsn;

/// Where a sealed batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchState {
    /// Sealed, no piece written yet: waiting for a write slot.
    Pending,
    /// Some pieces sent (others may still wait for a slot).
    InFlight,
    /// Every piece's write completed (durable only per `lsn_durable`).
    Written,
}

/// A sealed batch, kept until its space is reclaimed by the head.
#[derive(Debug)]
pub(crate) struct SealedBatch {
    pub seq: u64,
    pub start: u64,
    pub end: u64,
    pub first_lsn: Lsn,
    /// One past the last LSN in the batch (== `first_lsn` for a pad-only batch).
    pub next_lsn: Lsn,
    pub state: BatchState,
    /// Piece writes not yet sent, in order.
    pub unsent: VecDeque<WriteJob>,
    /// Piece writes sent and not yet completed.
    pub pieces_in_flight: usize,
}

/// One piece of a batch to write, for the caller to perform.
#[derive(Debug)]
pub(crate) struct WriteJob {
    pub seq: u64,
    pub lba: u64,
    pub buf: DmaBuf,
    pub fua: bool,
    /// Where its record headers are, for stamping.
    pub headers: PieceHeaders,
    /// The batch's closing pad, when it is in this piece (piece offset).
    pub pad_at: Option<usize>,
    pub lsn_durable_hint: Lsn,
}

/// Work decided under the lock, performed after it is released.
#[derive(Debug)]
pub(crate) enum Action {
    Write(WriteJob),
    Flush {
        lsn_covered: Lsn,
    },
    ArmTimer {
        seq: u64,
    },
    /// Wait a batch delay, then call `State::vouch_timer_fired`.
    ArmVouch {
        seq: u64,
    },
}

/// Counters for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub records: u64,
    pub batches: u64,
    /// Pad-only batches written to vouch for the last durable batch.
    pub vouches: u64,
    pub batch_bytes_written: u64,
    /// Device writes: a batch of several pieces is several writes.
    pub writes: u64,
    pub flushes: u64,
    /// Batches written without FUA (FUA mode, nobody waiting at the seal).
    pub batches_without_fua: u64,
    pub reserve_waits: u64,
    /// Piece writes of less than a quarter of a piece: the tails of batches
    /// that end just past a piece boundary (8 records of 256 KiB with their
    /// headers are 320 bytes more than 2 MiB), and small batches. Each takes
    /// a write slot (and in FUA mode a FUA write) like a whole piece.
    pub writes_under_quarter_piece: u64,
}

#[derive(Debug)]
pub(crate) struct State {
    pub limits: Limits,
    pub first_byte: u64,
    pub epoch: u64,
    pub next_lsn: Lsn,
    pub head_lsn: Lsn,
    pub head_offset: u64,
    pub open: Option<OpenBatch>,
    /// Where the next batch starts while no batch is open.
    pub next_batch_offset: u64,
    pub next_seq: u64,
    pub free_bufs: Vec<DmaBuf>,
    pub batches: VecDeque<SealedBatch>,
    /// Piece writes sent and not completed, over all batches.
    pub writes_in_flight: usize,
    /// Piece writes sealed and not yet sent, over all batches.
    pub writes_pending: usize,
    /// Batches (the last ones) with piece writes not yet sent.
    pub batches_unsent: usize,
    /// The first batch whose write has not completed in order.
    pub written_seq: u64,
    pub lsn_written: Lsn,
    pub lsn_durable: Lsn,
    /// Flushes issued and not yet completed. Several may be in flight: each
    /// covers the writes completed before it was issued, so a flush need not
    /// wait for the previous one (which would make a write completing just
    /// after a flush's issue wait for two flush latencies).
    pub flushes_in_flight: usize,
    /// The highest LSN an issued flush covers.
    pub lsn_flush_issued: Lsn,
    pub durable_waiters: BTreeMap<(Lsn, u64), Waker>,
    pub space_waiters: Vec<Waker>,
    pub next_waiter_id: u64,
    pub failed: Option<JournalError>,
    pub to_wake: Vec<Waker>,
    pub stats: JournalStats,
    /// The highest durable-LSN hint sealed into any batch so far.
    pub hint_sealed: Lsn,
    /// A vouch timer is pending for the open batch of this sequence number.
    pub vouch_armed: Option<u64>,
    /// Records (by LSN) that become durable only after a flush that follows
    /// their batch's write: records that name data written before them
    /// (out-of-line values; FUA covers the batch write alone), and the first
    /// record of every batch written without FUA because nobody waited for
    /// it when it was sealed.
    pub after_data: BTreeSet<Lsn>,
}

fn floor_page(offset: u64) -> u64 {
    offset / PAGE_BYTES as u64 * PAGE_BYTES as u64
}

impl State {
    /// Everything at or after this offset, one ring ahead, holds records that
    /// may not be overwritten: the head's page, or an older batch whose write
    /// is still in flight (a second write over it could land first).
    fn space_floor(&self) -> u64 {
        let head_page = floor_page(self.head_offset);
        match self.batch_index(self.written_seq) {
            Some(index) => head_page.min(self.batches[index].start),
            None => head_page,
        }
    }

    /// Bytes the open batch may grow to: bounded by the buffer, the ring's end
    /// and the unreclaimed records ahead (never overwritten).
    fn capacity(&self, batch: &OpenBatch) -> usize {
        let ring = self.limits.ring_bytes;
        let to_ring_end = ring - batch.start % ring;
        let to_free_end = (self.space_floor() + ring).saturating_sub(batch.start);
        (self.limits.batch_bytes as u64).min(to_ring_end).min(to_free_end) as usize
    }

    /// Claims `claim` bytes in the open batch. `Ok(false)`: wait for space (the
    /// batch may have been marked for sealing to make room).
    pub fn try_claim(&mut self, claim: usize) -> Result<bool, JournalError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(batch) = self.open.as_ref() else { return Ok(false) };
        if batch.closing {
            return Ok(false);
        }
        let capacity = self.capacity(batch);
        let ring = self.limits.ring_bytes;
        let to_ring_end = ring - batch.start % ring;
        let to_free_end = (self.space_floor() + ring).saturating_sub(batch.start);
        let batch_bytes = self.limits.batch_bytes as u64;
        let batch = self.open.as_mut().expect("checked above");
        let wanted = batch.used_bytes + batch.claimed_bytes + claim;
        if wanted <= capacity {
            // Pieces to hold it; when none is free, wait for a write to
            // return one (one is in flight: the open batch never holds all
            // the buffers, see `Limits::batch_buffers`).
            while batch.held_bytes() < wanted {
                let Some(buf) = self.free_bufs.pop() else {
                    self.stats.reserve_waits += 1;
                    return Ok(false);
                };
                batch.add_piece(buf);
            }
            batch.claimed_bytes += claim;
            return Ok(true);
        }
        // The ring's end is what stops it: close this batch with a pad to the
        // end so the next one starts at the ring's beginning.
        let end_binds = to_ring_end <= batch_bytes && to_ring_end <= to_free_end && wanted as u64 > to_ring_end;
        if batch.used_bytes + batch.claimed_bytes > 0 || end_binds {
            batch.closing = true;
            batch.skip_to_ring_end = end_binds;
        }
        self.stats.reserve_waits += 1;
        Ok(false)
    }

    /// Gives back an unused claim (a dropped reservation).
    pub fn release(&mut self, claim: usize) {
        let batch = self.open.as_mut().expect("a live claim keeps its batch open");
        assert!(batch.claimed_bytes >= claim);
        batch.claimed_bytes -= claim;
        self.wake_space_waiters();
    }

    /// Assigns the next LSN to `payload` (whose CRC-32C is `payload_crc`) and
    /// places it in the open batch, in place of a claim of `claim` bytes.
    pub fn commit(
        &mut self,
        claim: usize,
        (payload, payload_crc): (&[u8], u32),
        after_data: bool,
        actions: &mut Vec<Action>,
    ) -> Lsn {
        let lsn = self.next_lsn;
        if after_data && self.limits.durable == Durable::Fua {
            self.after_data.insert(lsn);
        }
        let epoch = self.epoch;
        let batch = self.open.as_mut().expect("a live claim keeps its batch open");
        assert!(batch.claimed_bytes >= claim);
        let was_empty = batch.used_bytes == 0;
        let placed = batch.place(lsn, epoch, payload, payload_crc);
        assert!(placed <= claim, "record of {placed} bytes exceeds its claim of {claim}");
        batch.claimed_bytes -= claim;
        self.next_lsn += 1;
        self.stats.records += 1;
        if was_empty {
            actions.push(Action::ArmTimer { seq: batch.seq });
        }
        lsn
    }

    /// The batch-delay timer of batch `seq` fired.
    pub fn timer_fired(&mut self, seq: u64) {
        if let Some(batch) = self.open.as_mut() {
            if batch.seq == seq && batch.used_bytes > 0 {
                batch.delay_expired = true;
            }
        }
    }

    /// Takes every decision the current state allows.
    pub fn pump(&mut self, actions: &mut Vec<Action>) {
        loop {
            self.open_batch_if_possible();
            let sealed = self.seal_if_ready();
            let submitted = self.submit_pending(actions);
            if !sealed && !submitted {
                break;
            }
        }
        self.flush_if_needed(actions);
        self.vouch_if_idle(actions);
    }

    /// When the log goes idle with durable records that no sealed batch
    /// vouches for, arms a timer that writes a pad-only batch carrying the
    /// durable LSN. Without it, damage to the last durable batch could not be
    /// told from the log's end until some later batch is written (see
    /// docs/FORMAT.md). Under load later batches vouch anyway, and the timer
    /// finds the log busy and does nothing: the cost is one page write per
    /// idle period.
    fn vouch_if_idle(&mut self, actions: &mut Vec<Action>) {
        let idle = self.writes_in_flight == 0 && self.writes_pending == 0 && self.flushes_in_flight == 0;
        let Some(batch) = self.open.as_ref() else { return };
        if !idle || self.failed.is_some() || batch.used_bytes + batch.claimed_bytes > 0 || batch.closing {
            return;
        }
        if self.lsn_durable > self.hint_sealed && self.vouch_armed != Some(batch.seq) {
            self.vouch_armed = Some(batch.seq);
            actions.push(Action::ArmVouch { seq: batch.seq });
        }
    }

    /// The vouch timer of open batch `seq` fired: seal it as a pad page if the
    /// log is still idle and the ring has the page to spare.
    pub fn vouch_timer_fired(&mut self, seq: u64) {
        let idle = self.writes_in_flight == 0 && self.writes_pending == 0;
        let Some(batch) = self.open.as_ref() else { return };
        let fits = self.capacity(batch) >= PAGE_BYTES;
        let empty = batch.used_bytes + batch.claimed_bytes == 0 && !batch.closing;
        if batch.seq == seq && idle && empty && fits && self.lsn_durable > self.hint_sealed {
            let batch = self.open.as_mut().expect("checked above");
            batch.vouch = true;
            batch.closing = true;
            self.stats.vouches += 1;
        }
    }

    fn open_batch_if_possible(&mut self) {
        if self.open.is_some() || self.failed.is_some() {
            return;
        }
        let Some(buf) = self.free_bufs.pop() else { return };
        let mut batch = OpenBatch {
            seq: self.next_seq,
            pieces: Vec::new(),
            piece_bytes: self.limits.piece_bytes,
            first_header_at: Vec::new(),
            start: self.next_batch_offset,
            used_bytes: 0,
            claimed_bytes: 0,
            first_lsn: self.next_lsn,
            closing: false,
            delay_expired: false,
            skip_to_ring_end: false,
            vouch: false,
        };
        batch.add_piece(buf);
        self.open = Some(batch);
        self.next_seq += 1;
        self.wake_space_waiters();
    }

    fn durability_needs(&self, lsn: Lsn) -> bool {
        self.durable_waiters.last_key_value().is_some_and(|((wanted, _), _)| *wanted >= lsn)
    }

    fn seal_if_ready(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let writes_busy = self.writes_in_flight + self.writes_pending;
        let Some(batch) = self.open.as_ref() else { return false };
        let needed = batch.used_bytes > 0 && (batch.delay_expired || self.durability_needs(batch.first_lsn));
        let batch = self.open.as_mut().expect("checked above");
        // Sealed for a waiter (or the delay) only when every piece it would
        // write gets one of the waiters' slots now: pieces that would wait
        // for a slot anyway are better left open to fill up, so that the
        // device gets whole pieces and not a partial one per batch; the slots
        // above `waiter_seal_writes_max` are for batches sealed full. With
        // nothing in flight it is sealed whatever its size, so a waiter never
        // waits for a write that is not coming.
        let pieces = batch.used_bytes.div_ceil(batch.piece_bytes);
        if needed && (writes_busy == 0 || writes_busy + pieces <= self.limits.waiter_seal_writes_max) {
            batch.closing = true;
        }
        if !batch.closing || batch.claimed_bytes > 0 {
            return false;
        }
        if batch.used_bytes == 0 && !batch.skip_to_ring_end && !batch.vouch {
            batch.closing = false;
            return false;
        }
        self.seal();
        true
    }

    fn seal(&mut self) {
        let mut batch = self.open.take().expect("sealing needs an open batch");
        let shape = close(&mut batch, self.limits.ring_bytes, self.next_lsn, self.epoch);
        let ring = self.limits.ring_bytes;
        // The pages written must not hold unreclaimed records.
        assert!(batch.start + shape.write_bytes as u64 <= self.space_floor() + ring);
        assert!(batch.start % ring + shape.write_bytes as u64 <= ring, "a batch never straddles the ring's end");
        let fua = self.batch_fua(&batch);
        let unsent = self.piece_jobs(&mut batch, shape.write_bytes, shape.pad_at, fua);
        self.hint_sealed = self.hint_sealed.max(self.lsn_durable);
        self.writes_pending += unsent.len();
        self.stats.writes += unsent.len() as u64;
        self.batches_unsent += 1;
        self.batches.push_back(SealedBatch {
            seq: batch.seq,
            start: batch.start,
            end: shape.end,
            first_lsn: batch.first_lsn,
            next_lsn: self.next_lsn,
            state: BatchState::Pending,
            unsent,
            pieces_in_flight: 0,
        });
        self.next_batch_offset = shape.end;
        self.stats.batches += 1;
        self.stats.batch_bytes_written += shape.write_bytes as u64;
    }

    /// Whether the sealed `batch` is written with FUA. In FUA mode, only when
    /// someone waits for one of its records (or it vouches for the log):
    /// a batch sealed by the batch delay alone goes to the device's cache,
    /// and its first record joins `after_data`, so that it and everything
    /// after it become durable only after a flush, issued once someone waits
    /// (a stream of NFS UNSTABLE WRITEs would otherwise pay a FUA write, on
    /// many devices a write plus a flush, every batch delay; BENCHMARKS.md,
    /// "NFS gateway").
    fn batch_fua(&mut self, batch: &OpenBatch) -> bool {
        if self.limits.durable != Durable::Fua {
            return false;
        }
        let has_records = batch.first_lsn < self.next_lsn;
        if batch.vouch || !has_records || self.durability_needs(batch.first_lsn) {
            return true;
        }
        self.after_data.insert(batch.first_lsn);
        self.stats.batches_without_fua += 1;
        false
    }

    /// One write per piece the sealed batch's `write_bytes` cover; the
    /// pieces past them go back to the free list.
    fn piece_jobs(
        &mut self,
        batch: &mut OpenBatch,
        write_bytes: usize,
        pad_at: Option<usize>,
        fua: bool,
    ) -> VecDeque<WriteJob> {
        let piece_bytes = batch.piece_bytes;
        let ring = self.limits.ring_bytes;
        let pieces_written = write_bytes.div_ceil(piece_bytes);
        self.free_bufs.extend(batch.pieces.drain(pieces_written..));
        let mut jobs = VecDeque::with_capacity(pieces_written);
        for (i, mut buf) in batch.pieces.drain(..).enumerate() {
            let from = i * piece_bytes;
            let len = piece_bytes.min(write_bytes - from);
            if len < piece_bytes / 4 {
                self.stats.writes_under_quarter_piece += 1;
            }
            buf.set_len(len);
            let byte = self.first_byte + batch.start % ring + from as u64;
            jobs.push_back(WriteJob {
                seq: batch.seq,
                lba: byte / self.limits.block_bytes,
                fua,
                headers: PieceHeaders {
                    first_at: batch.first_header_at[i],
                    records_end: batch.used_bytes.saturating_sub(from),
                },
                pad_at: pad_at.filter(|&pad| pad / piece_bytes == i).map(|pad| pad - from),
                lsn_durable_hint: self.lsn_durable,
                buf,
            });
        }
        jobs
    }

    fn submit_pending(&mut self, actions: &mut Vec<Action>) -> bool {
        let mut submitted = false;
        while self.failed.is_none()
            && self.writes_pending > 0
            && self.writes_in_flight < self.limits.writes_in_flight_max
        {
            let index = self.batches.len() - self.batches_unsent;
            let batch = &mut self.batches[index];
            assert_ne!(batch.state, BatchState::Written);
            batch.state = BatchState::InFlight;
            let job = batch.unsent.pop_front().expect("an unsent batch has a piece to send");
            batch.pieces_in_flight += 1;
            if batch.unsent.is_empty() {
                self.batches_unsent -= 1;
            }
            actions.push(Action::Write(job));
            self.writes_pending -= 1;
            self.writes_in_flight += 1;
            submitted = true;
        }
        submitted
    }

    fn flush_if_needed(&mut self, actions: &mut Vec<Action>) {
        // Flushes are for waiters: as many in flight as waiters' batch writes.
        if self.flushes_in_flight >= self.limits.waiter_seal_writes_max || self.failed.is_some() {
            return;
        }
        let needed = match self.limits.durable {
            Durable::Flush => {
                self.durable_waiters.first_key_value().is_some_and(|((lsn, _), _)| *lsn <= self.lsn_written)
            }
            // A written record that names earlier data, or one of a batch
            // written without FUA, holds durability back until a flush,
            // issued once someone waits for it (or for a later record). Not
            // before: a stream of unstable writes (NFS WRITEs before COMMIT)
            // would otherwise pay a device flush per batch for durability
            // nobody asked for yet (BENCHMARKS.md, "NFS gateway").
            Durable::Fua => {
                self.after_data.first().is_some_and(|&lsn| lsn <= self.lsn_written && self.durability_needs(lsn))
            }
            Durable::AtCompletion => false,
        };
        if needed && self.lsn_written > self.lsn_durable.max(self.lsn_flush_issued) {
            self.flushes_in_flight += 1;
            self.lsn_flush_issued = self.lsn_written;
            self.stats.flushes += 1;
            actions.push(Action::Flush { lsn_covered: self.lsn_written });
        }
    }

    fn batch_index(&self, seq: u64) -> Option<usize> {
        let front = self.batches.front()?.seq;
        let index = seq.checked_sub(front)? as usize;
        (index < self.batches.len()).then_some(index)
    }

    /// A piece write of batch `seq` completed; its buffer comes back.
    pub fn write_done(&mut self, seq: u64, mut buf: DmaBuf, result: Result<(), IoError>) {
        self.writes_in_flight -= 1;
        buf.set_len(self.limits.piece_bytes);
        self.free_bufs.push(buf);
        if let Err(e) = result {
            self.fail(e);
            return;
        }
        let index = self.batch_index(seq).expect("an in-flight batch is never reclaimed");
        let batch = &mut self.batches[index];
        assert_eq!(batch.state, BatchState::InFlight);
        batch.pieces_in_flight -= 1;
        if batch.pieces_in_flight > 0 || !batch.unsent.is_empty() {
            // The batch's other pieces are still to come; their buffer and
            // slot are free for others meanwhile.
            self.wake_space_waiters();
            return;
        }
        batch.state = BatchState::Written;
        while let Some(index) = self.batch_index(self.written_seq) {
            let batch = &self.batches[index];
            if batch.state != BatchState::Written {
                break;
            }
            self.lsn_written = self.lsn_written.max(batch.next_lsn - 1);
            self.written_seq += 1;
        }
        if self.limits.durable != Durable::Flush {
            // Up to the first record still waiting for a flush after its data.
            let cap = self.after_data.first().map_or(self.lsn_written, |&lsn| lsn - 1);
            self.set_durable(self.lsn_written.min(cap));
        }
        self.reclaim();
        // A completed write may have freed ring space and a buffer.
        self.wake_space_waiters();
    }

    /// A flush that covered every LSN up to `lsn_covered` completed. (An
    /// earlier flush may still be in flight: what it covers is covered here
    /// too, so durability may jump past it.)
    pub fn flush_done(&mut self, lsn_covered: Lsn, result: Result<(), IoError>) {
        self.flushes_in_flight -= 1;
        match result {
            Ok(()) => self.set_durable(lsn_covered),
            Err(e) => self.fail(e),
        }
    }

    fn set_durable(&mut self, lsn: Lsn) {
        if lsn <= self.lsn_durable {
            return;
        }
        assert!(lsn <= self.lsn_written, "durable beyond the written prefix");
        self.lsn_durable = lsn;
        self.after_data = self.after_data.split_off(&(lsn + 1));
        let later = self.durable_waiters.split_off(&(lsn + 1, 0));
        let ready = std::mem::replace(&mut self.durable_waiters, later);
        self.to_wake.extend(ready.into_values());
    }

    fn fail(&mut self, error: IoError) {
        tracing::error!(%error, "journal write failed; the journal stops accepting work");
        self.stop(JournalError::Io(error));
    }

    /// Stops all work: nothing more is sealed, written or flushed, and every
    /// waiter gets `error`.
    pub fn stop(&mut self, error: JournalError) {
        if self.failed.is_none() {
            self.failed = Some(error);
        }
        let waiters = std::mem::take(&mut self.durable_waiters);
        self.to_wake.extend(waiters.into_values());
        self.wake_space_waiters();
    }

    /// True when no write or flush is in flight.
    pub fn quiet(&self) -> bool {
        self.writes_in_flight == 0 && self.flushes_in_flight == 0
    }

    pub fn wake_space_waiters(&mut self) {
        self.to_wake.append(&mut self.space_waiters);
    }

    /// The head position that freeing everything before `lsn` would give:
    /// the start of the batch holding `lsn`, and that batch's first LSN.
    pub fn head_for(&self, lsn: Lsn) -> Result<(Lsn, u64), JournalError> {
        if lsn > self.next_lsn {
            return Err(JournalError::HeadBeyondTail { lsn, lsn_next: self.next_lsn });
        }
        if lsn <= self.head_lsn {
            return Ok((self.head_lsn, self.head_offset));
        }
        let index = self.batches.partition_point(|b| b.next_lsn <= lsn);
        let head = match self.batches.get(index) {
            Some(batch) => (batch.first_lsn, batch.start),
            None => match &self.open {
                Some(batch) => (batch.first_lsn, batch.start),
                None => (self.next_lsn, self.next_batch_offset),
            },
        };
        // Batches only move forward, so neither does the head.
        Ok(if head.1 > self.head_offset { head } else { (self.head_lsn, self.head_offset) })
    }

    /// Moves the head as [`State::head_for`] says and frees the space before it.
    pub fn advance_head(&mut self, lsn: Lsn) -> Result<(Lsn, u64), JournalError> {
        let (head_lsn, head_offset) = self.head_for(lsn)?;
        if head_offset > self.head_offset {
            self.head_lsn = head_lsn;
            self.head_offset = head_offset;
            self.reclaim();
            self.wake_space_waiters();
        }
        Ok((self.head_lsn, self.head_offset))
    }

    fn reclaim(&mut self) {
        while let Some(front) = self.batches.front() {
            if front.state != BatchState::Written || front.seq >= self.written_seq || front.end > self.head_offset {
                break;
            }
            self.batches.pop_front();
        }
    }

    /// Bytes of the ring between the head and the end of the last batch.
    pub fn used_bytes(&self) -> u64 {
        let tail = match &self.open {
            Some(batch) => batch.start + batch.used_bytes.next_multiple_of(PAGE_BYTES) as u64,
            None => self.next_batch_offset,
        };
        (tail - floor_page(self.head_offset)).min(self.limits.ring_bytes)
    }
}
