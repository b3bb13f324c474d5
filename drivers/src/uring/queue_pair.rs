//! One io_uring queue pair: `submit` fills SQEs (entering the kernel once
//! `submit_batch_max` wait, or `submit_write_batch_max` writes), `poll` makes at most one io_uring_enter for the
//! rest and reaps CQEs.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{SubmitArgs, Timespec};

use super::ring::{self, Ring};
use super::slots::{InFlight, Slots};
use super::sqe;
use crate::device::{Completion, DeviceInfo, Op, QueuePair, Request, SubmitError};
use crate::dma::DmaPool;
use crate::error::{IoError, IoErrorKind};

/// How long a dropped queue pair waits for its requests before it gives up
/// and leaks their buffers (leaking is sound; freeing them would not be).
const DROP_WAIT_MAX: Duration = Duration::from_secs(30);
const IORING_ENTER_GETEVENTS: u32 = 1;

/// A queue pair on a uring device. Used by one thread; with the
/// `DeferTaskrun` setup, by the thread that first polled it.
#[derive(Debug)]
pub struct UringQueuePair {
    // Declared first so it is dropped first: the ring's registrations refer to
    // the pool's memory and the file.
    ring: Ring,
    slots: Slots,
    /// Slots whose short transfer must be resubmitted after the CQ is released.
    resubmit: Vec<u32>,
    info: DeviceInfo,
    queue_depth: u32,
    block_size_bytes: u64,
    enabled: bool,
    enter_error_logged: bool,
    /// Enter the kernel once this many SQEs are queued (0: only at poll).
    submit_batch_max: usize,
    /// Enter the kernel once this many writes are queued (0: no own limit).
    submit_write_batch_max: usize,
    /// Writes pushed since the kernel was last entered.
    queued_writes: usize,
    pool: Arc<DmaPool>,
    _file: Arc<File>,
}

impl UringQueuePair {
    pub(crate) fn new(ring: Ring, info: DeviceInfo, queue_depth: u32, pool: Arc<DmaPool>, file: Arc<File>) -> Self {
        assert!(queue_depth > 0 && ring.uring.params().sq_entries() >= queue_depth);
        let block_size_bytes = u64::from(info.block_size_bytes);
        UringQueuePair {
            ring,
            slots: Slots::new(queue_depth),
            resubmit: Vec::with_capacity(queue_depth as usize),
            info,
            queue_depth,
            block_size_bytes,
            enabled: false,
            enter_error_logged: false,
            submit_batch_max: 0,
            submit_write_batch_max: 0,
            queued_writes: 0,
            pool,
            _file: file,
        }
    }

    /// See [`super::UringConfig::submit_batch_max`] and
    /// [`super::UringConfig::submit_write_batch_max`].
    pub(crate) fn set_submit_batch_max(&mut self, requests: u32, writes: u32) {
        self.submit_batch_max = requests as usize;
        self.submit_write_batch_max = writes as usize;
    }

    /// Whether the SQEs queued so far make a burst worth entering for now,
    /// before the end of the reactor's turn.
    fn burst_is_full(&mut self) -> bool {
        let queued = self.ring.uring.submission().len();
        (self.submit_batch_max > 0 && queued >= self.submit_batch_max)
            || (self.submit_write_batch_max > 0 && self.queued_writes >= self.submit_write_batch_max)
    }

    /// The io_uring setup the kernel accepted and whether fixed buffers are
    /// in use (for benchmarks and logs).
    pub fn setup(&self) -> (super::UringSetup, bool) {
        (self.ring.setup, self.ring.fixed_buffers)
    }

    fn check(&self, op: &Op) -> Result<(), IoErrorKind> {
        match op {
            Op::Read { lba, buf } | Op::Write { lba, buf, .. } => self.info.check_transfer(*lba, buf.len()),
            Op::Flush => Ok(()),
        }
    }

    /// Puts the SQE for (the rest of) slot `slot` on the submission queue.
    fn push(&mut self, slot: u32) {
        let inflight = self.slots.get_mut(slot).expect("pushing a slot that holds a request");
        let own_pool = match &inflight.op {
            Op::Read { buf, .. } | Op::Write { buf, .. } => buf.is_from(&self.pool),
            Op::Flush => true,
        };
        let entry = sqe::entry_for(slot, inflight, self.block_size_bytes, self.ring.fixed_buffers, own_pool);
        // SAFETY: the SQE points into the buffer owned by `self.slots[slot]`,
        // which stays there (and so alive and unaliased) until the CQE for
        // `slot` is reaped; a dropped queue pair waits for that or leaks the
        // buffer. The fixed file and fixed buffers it names are registered
        // with this ring and outlive it.
        let pushed = unsafe { self.ring.uring.submission().push(&entry) };
        // Every request holds a slot, and the ring has at least as many SQ
        // entries as slots, so the SQ cannot be full.
        assert!(pushed.is_ok(), "io_uring submission queue full with {} slots taken", self.slots.len());
    }

    /// Enables the ring on first use, making this thread its issuer.
    fn ensure_enabled(&mut self) -> bool {
        if self.enabled {
            return true;
        }
        match ring::enable(&self.ring) {
            Ok(()) => {
                self.enabled = true;
                true
            }
            Err(e) => {
                self.log_enter_error(&e);
                false
            }
        }
    }

    /// Submits the SQ and, when the kernel holds completions it only posts
    /// from inside a system call, lets it post them. Nothing to do: no call.
    fn enter_if_needed(&mut self) {
        let (to_submit, kernel_has_work) = {
            let sq = self.ring.uring.submission();
            (sq.len() as u32, sq.taskrun() || sq.cq_overflow())
        };
        if to_submit == 0 && !kernel_has_work {
            return;
        }
        // What a failed enter leaves queued goes with the next one anyway.
        self.queued_writes = 0;
        // SAFETY: no argument pointer is passed; the SQEs being submitted
        // satisfy `push`'s contract.
        let result =
            unsafe { self.ring.uring.submitter().enter::<libc::sigset_t>(to_submit, 0, IORING_ENTER_GETEVENTS, None) };
        if let Err(e) = result {
            // EINTR, EAGAIN and EBUSY are transient: what was not submitted
            // stays in the SQ for the next poll.
            if !matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) {
                self.log_enter_error(&e);
            }
        }
    }

    fn log_enter_error(&mut self, error: &std::io::Error) {
        if !self.enter_error_logged {
            self.enter_error_logged = true;
            tracing::error!(device = %self.info.name, error = %error, "io_uring_enter failed; requests stay queued (EEXIST means the queue pair left the thread that first used it)");
        }
    }

    /// Moves up to `max` CQEs into completions; short transfers go back on
    /// the SQ for their remainder.
    fn reap(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        let mut appended = 0;
        let mut cq = self.ring.uring.completion();
        while appended < max {
            let Some(cqe) = cq.next() else { break };
            let Ok(slot) = u32::try_from(cqe.user_data()) else {
                tracing::error!(user_data = cqe.user_data(), "CQE for a slot this queue pair never used; ignored");
                continue;
            };
            match settle(&mut self.slots, slot, cqe.result(), &self.info.name) {
                Settled::Done(completion) => {
                    out.push(completion);
                    appended += 1;
                }
                Settled::Resubmit => self.resubmit.push(slot),
                Settled::Unknown => {
                    tracing::error!(slot, "CQE for an empty slot; ignored");
                }
            }
        }
        drop(cq);
        let mut resubmit = std::mem::take(&mut self.resubmit);
        for slot in resubmit.drain(..) {
            self.push(slot);
        }
        self.resubmit = resubmit;
        appended
    }

    /// Waits for every request the kernel holds, so their buffers can be
    /// freed. Gives up after [`DROP_WAIT_MAX`] and leaks them instead.
    fn wait_for_in_flight(&mut self) {
        if !self.enabled {
            // Nothing reached the kernel: a disabled ring consumes no SQE.
            return;
        }
        let deadline = Instant::now() + DROP_WAIT_MAX;
        let timeout = Timespec::from(Duration::from_millis(100));
        while self.slots.len() > 0 && Instant::now() < deadline {
            let args = SubmitArgs::new().timespec(&timeout);
            match self.ring.uring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {}
                Err(e) => {
                    tracing::error!(device = %self.info.name, error = %e, "cannot wait for requests in flight");
                    break;
                }
            }
            for cqe in self.ring.uring.completion() {
                if let Ok(slot) = u32::try_from(cqe.user_data()) {
                    // The kernel is done with this buffer, short or not.
                    drop(self.slots.remove(slot));
                }
            }
        }
        if self.slots.len() > 0 {
            tracing::error!(device = %self.info.name, requests = self.slots.len(), "requests still in flight at close; leaking their buffers so the kernel cannot write into reused memory");
            for inflight in self.slots.drain() {
                std::mem::forget(inflight);
            }
        }
    }
}

enum Settled {
    Done(Completion),
    Resubmit,
    Unknown,
}

/// Applies one CQE result to its slot. A short transfer that made progress is
/// resubmitted for the rest; one that made none fails with EIO (the store
/// shrank under us), so a short transfer is never reported as success.
fn settle(slots: &mut Slots, slot: u32, res: i32, device: &str) -> Settled {
    let Some(inflight) = slots.get_mut(slot) else { return Settled::Unknown };
    let outcome: Result<(), IoErrorKind> = match &inflight.op {
        _ if res < 0 => Err(IoErrorKind::Io { errno: -res }),
        Op::Flush => Ok(()),
        Op::Read { buf, .. } | Op::Write { buf, .. } => {
            let total = buf.len();
            let moved = res as usize;
            if moved == 0 && inflight.done_bytes < total {
                tracing::warn!(
                    device,
                    slot,
                    done_bytes = inflight.done_bytes,
                    total,
                    "transfer made no progress; failing it"
                );
                Err(IoErrorKind::Io { errno: libc::EIO })
            } else if inflight.done_bytes + moved < total {
                inflight.done_bytes += moved;
                return Settled::Resubmit;
            } else {
                Ok(())
            }
        }
    };
    let InFlight { tag, op, .. } = slots.remove(slot).expect("slot checked above");
    let (kind, lba) = (op.kind(), op.lba());
    let result = outcome.map_err(|k| IoError::new(k, kind, lba, device));
    Settled::Done(Completion { tag, kind, buf: op.into_buf(), result })
}

impl QueuePair for UringQueuePair {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&mut self, request: Request) -> Result<(), SubmitError> {
        if self.slots.len() as u32 >= self.queue_depth {
            return Err(SubmitError::QueueFull(request));
        }
        if let Err(kind) = self.check(&request.op) {
            let error = IoError::new(kind, request.op.kind(), request.op.lba(), &self.info.name);
            return Err(SubmitError::Invalid(request, error));
        }
        let is_write = matches!(request.op, Op::Write { .. });
        let inflight = InFlight { tag: request.tag, op: request.op, done_bytes: 0 };
        match self.slots.insert(inflight) {
            Ok(slot) => {
                self.queued_writes += usize::from(is_write);
                self.push(slot);
                // A ring is enabled by its first poll, on its issuer thread;
                // until then requests wait for that poll.
                if self.enabled && self.burst_is_full() {
                    self.enter_if_needed();
                }
                Ok(())
            }
            Err(back) => Err(SubmitError::QueueFull(Request { tag: back.tag, op: back.op })),
        }
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        if !self.ensure_enabled() {
            return 0;
        }
        self.enter_if_needed();
        self.reap(out, max)
    }

    fn in_flight(&self) -> u32 {
        self.slots.len() as u32
    }

    fn queue_depth(&self) -> u32 {
        self.queue_depth
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.ring.eventfd.as_fd())
    }

    fn prepare_to_sleep(&mut self) -> bool {
        // Drain first, check second: a completion after the check signals the
        // eventfd again, so the sleeper wakes.
        ring::drain_eventfd(&self.ring.eventfd);
        let sq = self.ring.uring.submission();
        if !sq.is_empty() || sq.taskrun() || sq.cq_overflow() {
            return false;
        }
        drop(sq);
        self.ring.uring.completion().is_empty()
    }
}

impl Drop for UringQueuePair {
    fn drop(&mut self) {
        if self.slots.len() > 0 {
            self.wait_for_in_flight();
        }
        if self.slots.len() == 0 {
            // Closing a ring releases its registered file only later, from a
            // kernel worker; unregistering now releases it before drop
            // returns, so the file can be unmounted, or a block device opened
            // exclusively again, at once. Best effort: the ring's teardown
            // does the same later anyway.
            let submitter = self.ring.uring.submitter();
            if let Err(e) = submitter.unregister_files() {
                tracing::debug!(error = %e, "unregistering the ring's file");
            }
        }
    }
}
