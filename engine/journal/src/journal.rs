//! The journal handle: open, reserve and commit, wait for durability, advance
//! the head. One journal per volume is shared by every reactor; its state sits
//! behind one mutex (the documented exception to "no shared mutable state"),
//! held only for a few copies and decisions. Device I/O is done by tasks
//! spawned on whichever reactor made the decision, on that reactor's queue
//! pair; completions wake waiters on any reactor through their wakers.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use keel_drivers::{checksum, Op};
use keel_reactor::io;

use crate::batch::{claim_bytes, stamp};
use crate::config::{JournalConfig, JournalIdentity, JournalPosition, JournalRegion, Limits};
use crate::error::JournalError;
use crate::format::{crc_seed, PAGE_BYTES};
use crate::state::{Action, JournalStats, State, WriteJob};
use crate::Lsn;

/// A handle to a volume's journal. Clones share it.
#[derive(Clone, Debug)]
pub struct Journal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    region: JournalRegion,
    seed: u32,
    batch_delay: Duration,
    state: Mutex<State>,
}

/// How full the ring is, for deciding when to checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalUsage {
    pub used_bytes: u64,
    pub ring_bytes: u64,
    pub head_lsn: Lsn,
    pub next_lsn: Lsn,
    pub lsn_durable: Lsn,
}

impl Journal {
    /// Opens a journal that appends with `identity.epoch` from `position`.
    /// Runs on a reactor: it takes its batch buffers from the device's DMA
    /// pool (waiting if the pool is exhausted).
    pub async fn open(
        region: JournalRegion,
        config: &JournalConfig,
        identity: JournalIdentity,
        position: JournalPosition,
    ) -> Result<Journal, JournalError> {
        let limits = Limits::derive(config, &region, &io::device_info(region.device))?;
        check_position(&position, limits.ring_bytes)?;
        let mut free_bufs = Vec::with_capacity(limits.batch_buffers);
        let pool = io::dma_pool(region.device);
        for _ in 0..limits.batch_buffers {
            // Fail rather than wait: at open nothing else will return buffers,
            // so a pool too small for the journal would wait forever.
            let mut buf = pool.try_alloc(limits.piece_bytes).map_err(|e| {
                JournalError::Config(format!(
                    "the DMA pool ({} bytes) cannot hold the journal's {} batch buffers of {} bytes ({e}); raise dma.pool_size",
                    pool.size_bytes(),
                    limits.batch_buffers,
                    limits.piece_bytes
                ))
            })?;
            buf.set_len(limits.piece_bytes);
            free_bufs.push(buf);
        }
        let mut state = State {
            limits,
            first_byte: region.first_page * PAGE_BYTES as u64,
            epoch: identity.epoch,
            next_lsn: position.next_lsn,
            head_lsn: position.head_lsn,
            head_offset: position.head_offset,
            open: None,
            next_batch_offset: position.next_offset,
            next_seq: 0,
            free_bufs,
            batches: Default::default(),
            writes_in_flight: 0,
            writes_pending: 0,
            batches_unsent: 0,
            written_seq: 0,
            lsn_written: position.next_lsn - 1,
            lsn_durable: position.next_lsn - 1,
            flushes_in_flight: 0,
            lsn_flush_issued: position.next_lsn - 1,
            durable_waiters: Default::default(),
            space_waiters: Vec::new(),
            next_waiter_id: 0,
            failed: None,
            to_wake: Vec::new(),
            stats: JournalStats::default(),
            hint_sealed: position.next_lsn - 1,
            vouch_armed: None,
            after_data: Default::default(),
        };
        state.pump(&mut Vec::new());
        tracing::info!(
            ring_bytes = limits.ring_bytes,
            batch_bytes = limits.batch_bytes,
            piece_bytes = limits.piece_bytes,
            durability = ?limits.durable,
            next_lsn = position.next_lsn,
            epoch = identity.epoch,
            "journal open"
        );
        let inner = Inner {
            region,
            seed: crc_seed(&identity.volume_uuid, identity.epoch),
            batch_delay: Duration::from_micros(config.batch_delay_us),
            state: Mutex::new(state),
        };
        Ok(Journal { inner: Arc::new(inner) })
    }

    /// Waits until a record of `payload_bytes` is guaranteed room in the ring
    /// and in the open batch (back-pressure: a full ring waits for
    /// [`Journal::advance_head`]). Hold a reservation briefly: the batch it
    /// sits in cannot be sealed until it is committed or dropped.
    pub async fn reserve(&self, payload_bytes: usize) -> Result<Reservation<'_>, JournalError> {
        let payload_bytes_max = self.lock().limits.payload_bytes_max;
        if payload_bytes > payload_bytes_max {
            return Err(JournalError::RecordTooLarge { payload_bytes, payload_bytes_max });
        }
        let claim = claim_bytes(payload_bytes);
        std::future::poll_fn(|cx| {
            self.with_state(|state, actions| match state.try_claim(claim) {
                Ok(true) => Poll::Ready(Ok(())),
                Ok(false) => {
                    state.space_waiters.push(cx.waker().clone());
                    state.pump(actions);
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(e)),
            })
        })
        .await?;
        Ok(Reservation { journal: self, payload_bytes, claim, live: true })
    }

    /// Waits until every record up to `lsn` is durable.
    pub fn wait_durable(&self, lsn: Lsn) -> DurableWait<'_> {
        DurableWait { journal: self, lsn, key: None }
    }

    /// The highest LSN up to which everything is durable.
    pub fn lsn_durable(&self) -> Lsn {
        self.lock().lsn_durable
    }

    /// The (head LSN, head offset) the superblock must record before
    /// [`Journal::advance_head`]`(lsn)` may free the space: the start of the
    /// batch holding `lsn` and that batch's first LSN. The head LSN may be
    /// lower than `lsn`, so replay skips what the checkpoint already holds.
    pub fn head_for(&self, lsn: Lsn) -> Result<(Lsn, u64), JournalError> {
        self.lock().head_for(lsn)
    }

    /// Frees the ring space before the batch that holds `lsn`, and returns
    /// the new head (as [`Journal::head_for`] gave it). Call it only once a
    /// superblock recording that head is durable: until then, recovery would
    /// start from the old head, whose records must not be overwritten.
    pub fn advance_head(&self, lsn: Lsn) -> Result<(Lsn, u64), JournalError> {
        self.with_state(|state, actions| {
            let head = state.advance_head(lsn)?;
            state.pump(actions);
            Ok(head)
        })
    }

    /// Stops the journal and waits for the writes and flushes in flight.
    /// Nothing is written after it returns (timers of the journal find it
    /// closed), so the region may be handed to another journal. Records not
    /// yet durable stay so: wait for durability first for a clean shutdown.
    pub async fn close(&self) {
        self.with_state(|state, _| state.stop(JournalError::Closed));
        while !self.lock().quiet() {
            keel_reactor::time::sleep(Duration::from_micros(50)).await;
        }
    }

    pub fn usage(&self) -> JournalUsage {
        let state = self.lock();
        JournalUsage {
            used_bytes: state.used_bytes(),
            ring_bytes: state.limits.ring_bytes,
            head_lsn: state.head_lsn,
            next_lsn: state.next_lsn,
            lsn_durable: state.lsn_durable,
        }
    }

    pub fn stats(&self) -> JournalStats {
        self.lock().stats
    }

    /// Where appending would go on now (for a clean shutdown's superblock).
    pub fn position(&self) -> JournalPosition {
        let state = self.lock();
        let next_offset = match &state.open {
            Some(batch) if batch.used_bytes == 0 => batch.start,
            Some(batch) => batch.start + batch.used_bytes.next_multiple_of(PAGE_BYTES) as u64,
            None => state.next_batch_offset,
        };
        JournalPosition {
            head_lsn: state.head_lsn,
            head_offset: state.head_offset,
            next_lsn: state.next_lsn,
            next_offset,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; keep serving the others.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` under the lock, then performs its actions and wakes its
    /// wakers after the lock is released.
    fn with_state<R>(&self, f: impl FnOnce(&mut State, &mut Vec<Action>) -> R) -> R {
        let mut actions = Vec::new();
        let (result, wakers) = {
            let mut state = self.lock();
            let result = f(&mut state, &mut actions);
            (result, std::mem::take(&mut state.to_wake))
        };
        self.perform(actions);
        for waker in wakers {
            waker.wake();
        }
        result
    }

    /// Performs decisions taken under the lock. Batch writes and flushes are
    /// queued on the device at once and sent before this returns, not at the
    /// end of the reactor's turn: the turn may go on for milliseconds while
    /// committers copy records into the next batch, and the device would sit
    /// idle meanwhile (BENCHMARKS.md, "Journal").
    fn perform(&self, actions: Vec<Action>) {
        let mut queued = false;
        for action in actions {
            let journal = self.clone();
            match action {
                Action::Write(job) => {
                    let seq = job.seq;
                    let write = self.start_write(job);
                    keel_reactor::spawn(journal.write_done(seq, write)).detach();
                    queued = true;
                }
                Action::Flush { lsn_covered } => {
                    let flush = io::start(self.inner.region.device, Op::Flush);
                    keel_reactor::spawn(journal.flush_done(lsn_covered, flush)).detach();
                    queued = true;
                }
                Action::ArmTimer { seq } if !self.inner.batch_delay.is_zero() => {
                    keel_reactor::spawn(journal.batch_timer(seq)).detach();
                }
                Action::ArmTimer { .. } => {}
                Action::ArmVouch { seq } => keel_reactor::spawn(journal.vouch_timer(seq)).detach(),
            }
        }
        if queued {
            io::send_queued();
        }
    }

    /// Stamps a piece of a sealed batch and queues its write.
    fn start_write(&self, job: WriteJob) -> io::IoFuture {
        let WriteJob { seq: _, lba, mut buf, fua, headers, pad_at, lsn_durable_hint } = job;
        stamp(&mut buf, headers, pad_at, self.inner.seed, lsn_durable_hint);
        io::start(self.inner.region.device, Op::Write { lba, buf, fua })
    }

    async fn write_done(self, seq: u64, write: io::IoFuture) {
        let completion = write.await;
        let buf = completion.buf.expect("a write completion carries its buffer");
        self.with_state(|state, actions| {
            state.write_done(seq, buf, completion.result);
            state.pump(actions);
        });
    }

    async fn flush_done(self, lsn_covered: Lsn, flush: io::IoFuture) {
        let result = flush.await.result;
        self.with_state(|state, actions| {
            state.flush_done(lsn_covered, result);
            state.pump(actions);
        });
    }

    async fn vouch_timer(self, seq: u64) {
        keel_reactor::time::sleep(self.inner.batch_delay.max(Duration::from_micros(100))).await;
        self.with_state(|state, actions| {
            state.vouch_timer_fired(seq);
            state.pump(actions);
        });
    }

    async fn batch_timer(self, seq: u64) {
        keel_reactor::time::sleep(self.inner.batch_delay).await;
        self.with_state(|state, actions| {
            state.timer_fired(seq);
            state.pump(actions);
        });
    }
}

fn check_position(position: &JournalPosition, ring_bytes: u64) -> Result<(), JournalError> {
    let page = PAGE_BYTES as u64;
    let ok = position.next_lsn >= 1
        && position.head_lsn <= position.next_lsn
        && position.head_offset <= position.next_offset
        && position.next_offset.is_multiple_of(page)
        && position.next_offset - position.head_offset / page * page <= ring_bytes;
    if ok {
        Ok(())
    } else {
        Err(JournalError::Config(format!(
            "inconsistent journal position {position:?} for a ring of {ring_bytes} bytes"
        )))
    }
}

/// Room for one record, promised by [`Journal::reserve`].
#[derive(Debug)]
#[must_use = "a reservation holds ring space until committed or dropped"]
pub struct Reservation<'a> {
    journal: &'a Journal,
    payload_bytes: usize,
    claim: usize,
    live: bool,
}

impl Reservation<'_> {
    /// Assigns the next LSN to `payload` and places the record in the open
    /// batch. Synchronous, so the caller can apply the transaction to its
    /// in-memory state in the same step, in LSN order.
    pub fn commit(self, payload: &[u8]) -> Result<Lsn, JournalError> {
        self.commit_with(payload, false)
    }

    /// Like [`Reservation::commit`], for a record that names data written
    /// before it (an out-of-line value): the record is durable only once a
    /// flush issued after its batch write completes, so that the data is
    /// durable too. (Recovery checks such data by its checksum: a record whose
    /// data did not survive was never acknowledged and ends the log.)
    pub fn commit_after_data(self, payload: &[u8]) -> Result<Lsn, JournalError> {
        self.commit_with(payload, true)
    }

    fn commit_with(mut self, payload: &[u8], after_data: bool) -> Result<Lsn, JournalError> {
        if payload.len() > self.payload_bytes {
            return Err(JournalError::ReservationExceeded {
                payload_bytes: payload.len(),
                reserved_bytes: self.payload_bytes,
            });
        }
        self.live = false;
        let claim = self.claim;
        // Checksummed before the lock, while the caller's payload is hot
        // (folded with carry-less multiplies where the CPU can: `checksum`).
        let payload_crc = checksum::crc32c(payload);
        self.journal.with_state(|state, actions| {
            let lsn = state.commit(claim, (payload, payload_crc), after_data, actions);
            state.pump(actions);
            Ok(lsn)
        })
    }

    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.live {
            let claim = self.claim;
            self.journal.with_state(|state, actions| {
                state.release(claim);
                state.pump(actions);
            });
        }
    }
}

/// A durability waiter's place in the queue: (LSN waited for, waiter id).
type WaiterKey = (Lsn, u64);

/// The future of [`Journal::wait_durable`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct DurableWait<'a> {
    journal: &'a Journal,
    lsn: Lsn,
    key: Option<WaiterKey>,
}

impl Future for DurableWait<'_> {
    type Output = Result<(), JournalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let lsn = self.lsn;
        let key = self.key;
        let waker = cx.waker();
        let (poll, key) = self.journal.with_state(|state, actions| poll_durable(state, actions, lsn, key, waker));
        self.key = key;
        poll
    }
}

fn poll_durable(
    state: &mut State,
    actions: &mut Vec<Action>,
    lsn: Lsn,
    key: Option<WaiterKey>,
    waker: &Waker,
) -> (Poll<Result<(), JournalError>>, Option<WaiterKey>) {
    if state.lsn_durable >= lsn {
        if let Some(key) = key {
            state.durable_waiters.remove(&key);
        }
        return (Poll::Ready(Ok(())), None);
    }
    if let Some(e) = &state.failed {
        return (Poll::Ready(Err(e.clone())), None);
    }
    if lsn >= state.next_lsn {
        return (Poll::Ready(Err(JournalError::NotCommitted { lsn, lsn_next: state.next_lsn })), None);
    }
    let key = key.unwrap_or_else(|| {
        state.next_waiter_id += 1;
        (lsn, state.next_waiter_id)
    });
    state.durable_waiters.insert(key, waker.clone());
    state.pump(actions);
    (Poll::Pending, Some(key))
}

impl Drop for DurableWait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.journal.lock().durable_waiters.remove(&key);
        }
    }
}
