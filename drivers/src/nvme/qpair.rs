//! An I/O queue pair: one submission and one completion queue owned by one
//! reactor, with a tracker per command id so completions may come back in
//! any order.
//!
//! `submit` only writes the submission entry; `poll` rings the submission
//! doorbell once for everything queued since the last poll, reaps up to
//! `max` completions, and writes the completion-head doorbell once. Timeouts
//! are checked from `poll` (and the sleeper's timer wakes a sleeping reactor
//! for them) and escalate as [`super::recovery`] says: abort, then reset the
//! controller. After a reset (by this or another queue pair) the queue pair
//! creates its queues again, fails the commands that timed out and
//! resubmits the others. Nothing waits forever.

use std::mem::ManuallyDrop;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::command::{io_op, Sqe};
use super::controller::Controller;
use super::error::NvmeError;
use super::irq::Sleeper;
use super::lifecycle::{STATE_DEAD, STATE_LIVE};
use super::prp::{self, Prp2};
use super::recovery::{escalate, Escalation, Phase};
use super::ring::{CompletionRing, SubmissionRing};
use super::status::Status;
use crate::device::{Completion, DeviceInfo, Op, OpKind, QueuePair, Request, SubmitError};
use crate::dma::DmaBuf;
use crate::error::{IoError, IoErrorKind};

/// How many polls may pass between two looks at the clock for timeouts.
const POLLS_PER_TIMEOUT_CHECK: u32 = 512;
/// How often in-flight commands are scanned for timeouts at most.
const TIMEOUT_SCAN_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct Tracker {
    tag: u64,
    kind: OpKind,
    lba: u64,
    buf: Option<DmaBuf>,
    /// The entry as submitted, kept to resubmit it after a reset.
    sqe: Sqe,
    /// This command's PRP list page, allocated once when the queue opens.
    prp_list: DmaBuf,
    deadline: Instant,
    phase: Phase,
}

/// The NVMe backend's queue pair.
#[derive(Debug)]
pub struct NvmeQueuePair {
    controller: Arc<Controller>,
    info: DeviceInfo,
    qid: u16,
    // Dropped by hand: only once the device can no longer write them.
    sq: ManuallyDrop<SubmissionRing>,
    cq: ManuallyDrop<CompletionRing>,
    entries: u32,
    vector: Option<u16>,
    sq_doorbell: usize,
    cq_doorbell: usize,
    sq_tail_rung: u32,
    trackers: Vec<Tracker>,
    cids_free: Vec<u16>,
    /// Commands finished without the device, to report at the next poll.
    failed: Vec<u16>,
    in_flight: u32,
    timeout: Duration,
    polls_since_clock: u32,
    scanned_at: Instant,
    sleeper: Option<Sleeper>,
    /// The controller's reset generation the queues were created in.
    generation: u64,
    created: bool,
    /// Test hook: completions still to be thrown away (see `lose_completions`).
    completions_to_lose: u32,
}

impl NvmeQueuePair {
    /// Creates I/O completion and submission queue `qid` with room for
    /// `queue_depth` commands in flight.
    pub fn open(controller: Arc<Controller>, info: DeviceInfo, queue_depth: u32) -> Result<Self, NvmeError> {
        assert!(queue_depth >= 1 && queue_depth <= info.queue_depth_max);
        let qid = controller.alloc_qid()?;
        let pci = controller.pci_address.clone();
        let entries = queue_depth + 1;
        let ring_error =
            |e: super::ring::RingAllocError| NvmeError::Controller { pci_address: pci.clone(), reason: e.to_string() };
        let result = (|| {
            let sq = SubmissionRing::new(&controller.pool, &controller.window, entries).map_err(ring_error)?;
            let cq = CompletionRing::new(&controller.pool, &controller.window, entries).map_err(ring_error)?;
            let mut trackers = Vec::with_capacity(queue_depth as usize);
            for _ in 0..queue_depth {
                let prp_list =
                    controller.pool.try_alloc(prp::MEMORY_PAGE_BYTES).map_err(|e| NvmeError::Controller {
                        pci_address: pci.clone(),
                        reason: format!("PRP list pages for a queue of depth {queue_depth}: {e}"),
                    })?;
                trackers.push(Tracker {
                    tag: 0,
                    kind: OpKind::Flush,
                    lba: 0,
                    buf: None,
                    sqe: Sqe::default(),
                    prp_list,
                    deadline: Instant::now(),
                    phase: Phase::Free,
                });
            }
            let vector = controller.vectors.as_ref().and_then(|v| v.get(qid).map(|fd| (qid, fd)));
            let sleeper = match &vector {
                Some((_, fd)) => Some(Sleeper::new(Arc::clone(fd)).map_err(|source| NvmeError::Vfio {
                    pci_address: pci.clone(),
                    what: "epoll/timerfd for interrupts",
                    source,
                })?),
                None => None,
            };
            let vector = vector.map(|(v, _)| v);
            let generation = controller.create_io_queues(qid, entries, cq.iova(), sq.iova(), vector)?;
            Ok((sq, cq, trackers, sleeper, vector, generation))
        })();
        let (sq, cq, trackers, sleeper, vector, generation) = match result {
            Ok(parts) => parts,
            Err(e) => {
                controller.free_qid(qid);
                return Err(e);
            }
        };
        let cap = controller.cap;
        let timeout = Duration::from_millis(controller.config.command_timeout_ms);
        tracing::debug!(pci = %controller.pci_address, qid, queue_depth, interrupts = sleeper.is_some(), "I/O queue pair created");
        Ok(NvmeQueuePair {
            info,
            qid,
            sq_doorbell: cap.doorbell_offset(qid, false),
            cq_doorbell: cap.doorbell_offset(qid, true),
            sq: ManuallyDrop::new(sq),
            cq: ManuallyDrop::new(cq),
            entries,
            vector,
            sq_tail_rung: 0,
            cids_free: (0..queue_depth as u16).rev().collect(),
            failed: Vec::new(),
            trackers,
            in_flight: 0,
            timeout,
            polls_since_clock: 0,
            scanned_at: Instant::now(),
            sleeper,
            generation,
            created: true,
            completions_to_lose: 0,
            controller,
        })
    }

    fn error(&self, kind: IoErrorKind, op: OpKind, lba: u64) -> IoError {
        IoError::new(kind, op, lba, &self.info.name)
    }

    /// Builds the submission entry for `op`, or says why it is invalid.
    fn build(&mut self, cid: u16, op: &Op) -> Result<Sqe, IoErrorKind> {
        let nsid = self.controller.config.nsid;
        let (opcode, lba, buf, fua) = match op {
            Op::Flush => return Ok(Sqe::flush(nsid).with_cid(cid)),
            Op::Read { lba, buf } => (io_op::READ, *lba, buf, false),
            Op::Write { lba, buf, fua } => (io_op::WRITE, *lba, buf, *fua),
        };
        self.info.check_transfer(lba, buf.len())?;
        if !buf.is_from(&self.controller.pool) || !self.controller.window.contains(buf.addr()) {
            // Memory the IOMMU does not map would make the device fault.
            return Err(IoErrorKind::Io { errno: libc::EFAULT });
        }
        let blocks = (buf.len() / self.info.block_size_bytes as usize) as u32;
        let data_iova = self.controller.window.iova(buf.addr());
        let tracker = &mut self.trackers[usize::from(cid)];
        let mut sqe = Sqe::read_write(opcode, nsid, lba, blocks, fua).with_cid(cid);
        sqe.prp1 = data_iova;
        sqe.prp2 = match prp::layout(data_iova, buf.len(), &mut tracker.prp_list) {
            Prp2::None => 0,
            Prp2::Page(iova) => iova,
            Prp2::List { .. } => self.controller.window.iova(tracker.prp_list.addr()),
        };
        Ok(sqe)
    }

    /// Rings the submission doorbell if entries were queued since last time.
    fn ring_submissions(&mut self) {
        let tail = self.sq.tail();
        if tail != self.sq_tail_rung {
            self.controller.bar.write32(self.sq_doorbell, tail);
            self.sq_tail_rung = tail;
        }
    }

    fn complete(&mut self, cid: u16, result: Result<(), IoErrorKind>) -> Completion {
        let tracker = &mut self.trackers[usize::from(cid)];
        debug_assert!(tracker.phase.is_busy());
        tracker.phase = Phase::Free;
        let (tag, kind, lba, buf) = (tracker.tag, tracker.kind, tracker.lba, tracker.buf.take());
        self.cids_free.push(cid);
        self.in_flight -= 1;
        let result = result.map_err(|k| self.error(k, kind, lba));
        Completion { tag, kind, buf, result }
    }

    fn reap(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        let mut reaped = 0;
        let mut consumed = false;
        while reaped < max {
            let Some(cqe) = self.cq.peek() else { break };
            self.cq.advance();
            consumed = true;
            let cid = cqe.cid;
            let on_device = self.trackers.get(usize::from(cid)).map(|t| matches!(t.phase, Phase::OnDevice { .. }));
            if on_device != Some(true) {
                // Only a misbehaving controller does this; never panic on it.
                tracing::error!(pci = %self.controller.pci_address, qid = self.qid, cid, "completion for a command not in flight; ignored");
                continue;
            }
            if self.completions_to_lose > 0 {
                self.completions_to_lose -= 1;
                tracing::warn!(pci = %self.controller.pci_address, qid = self.qid, cid, "test hook: completion thrown away");
                continue;
            }
            let status = Status::from_field(cqe.status_field());
            let result = if status.is_success() {
                Ok(())
            } else {
                let tracker = &self.trackers[usize::from(cid)];
                tracing::warn!(pci = %self.controller.pci_address, qid = self.qid, op = %tracker.kind, lba = tracker.lba, status = %status.describe(), "NVMe command failed");
                Err(status.to_error_kind())
            };
            out.push(self.complete(cid, result));
            reaped += 1;
        }
        if consumed {
            self.controller.bar.write32(self.cq_doorbell, self.cq.head());
        }
        reaped
    }

    /// Reports commands that finished without the device, up to `max`.
    fn deliver_failed(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        let mut delivered = 0;
        while delivered < max {
            let Some(cid) = self.failed.pop() else { break };
            let Phase::Failed(kind) = self.trackers[usize::from(cid)].phase else { continue };
            out.push(self.complete(cid, Err(kind)));
            delivered += 1;
        }
        delivered
    }

    /// The controller is dead: its DMA is stopped, so every command in
    /// flight fails and gives its buffer back.
    fn fail_in_flight(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        for cid in 0..self.trackers.len() as u16 {
            let tracker = &mut self.trackers[usize::from(cid)];
            if tracker.phase.is_busy() && !matches!(tracker.phase, Phase::Failed(_)) {
                tracker.phase = tracker.phase.after_death();
                self.failed.push(cid);
            }
        }
        self.deliver_failed(out, max)
    }

    /// Makes sure the queues exist in the controller's current generation.
    /// After a reset they do not: the rings start over empty, the queues are
    /// created again, commands that timed out fail and the others go to the
    /// device again. False when the queues cannot be used (the controller
    /// is not live, or creating them failed, which resets or fails it).
    fn sync_with_controller(&mut self) -> bool {
        if !self.controller.is_live() {
            return false;
        }
        if self.controller.generation() == self.generation {
            return true;
        }
        // The reset disabled the controller: it no longer reads or writes
        // these rings, and every command on them is lost.
        self.sq.reset();
        self.cq.reset();
        self.sq_tail_rung = 0;
        let attempted = self.controller.generation();
        let created =
            self.controller.create_io_queues(self.qid, self.entries, self.cq.iova(), self.sq.iova(), self.vector);
        let generation = match created {
            Ok(generation) => generation,
            Err(e) => {
                // Retrying on every poll would hold its commands forever; a
                // timeout has reset the controller again, which earns a retry.
                if self.controller.is_live() && self.controller.generation() == attempted {
                    self.controller
                        .fail(&format!("queue pair {} could not be re-created after a reset: {e}", self.qid));
                }
                return false;
            }
        };
        self.generation = generation;
        let deadline = Instant::now() + self.timeout;
        let (mut resubmitted, mut timed_out) = (0u32, 0u32);
        for cid in 0..self.trackers.len() as u16 {
            let tracker = &mut self.trackers[usize::from(cid)];
            let before = tracker.phase;
            tracker.phase = before.after_reset();
            match tracker.phase {
                Phase::OnDevice { .. } => {
                    tracker.deadline = deadline;
                    self.sq.push(&tracker.sqe);
                    resubmitted += 1;
                }
                Phase::Failed(_) if before != tracker.phase => {
                    self.failed.push(cid);
                    timed_out += 1;
                }
                _ => {}
            }
        }
        tracing::info!(pci = %self.controller.pci_address, qid = self.qid, generation, resubmitted, timed_out, "queue pair re-created after a controller reset");
        true
    }

    fn check_timeouts(&mut self, force: bool) {
        self.polls_since_clock += 1;
        if !force && self.polls_since_clock < POLLS_PER_TIMEOUT_CHECK {
            return;
        }
        self.polls_since_clock = 0;
        let now = Instant::now();
        if !force && now.duration_since(self.scanned_at) < TIMEOUT_SCAN_INTERVAL {
            return;
        }
        self.scanned_at = now;
        let expired: Vec<u16> = (0..self.trackers.len() as u16)
            .filter(|&cid| {
                let t = &self.trackers[usize::from(cid)];
                matches!(t.phase, Phase::OnDevice { .. }) && t.deadline <= now
            })
            .collect();
        let generation = self.generation;
        for cid in expired {
            self.on_timeout(cid, now);
            if !self.controller.is_live() || self.controller.generation() != generation {
                return;
            }
        }
    }

    /// One command passed its deadline: abort it, or reset or fail the
    /// controller (see [`super::recovery`]).
    fn on_timeout(&mut self, cid: u16, now: Instant) {
        let status = self.controller.bar.read32(super::bar::reg::CSTS);
        let tracker = &mut self.trackers[usize::from(cid)];
        let late = matches!(tracker.phase, Phase::OnDevice { late: true });
        let (kind, lba) = (tracker.kind, tracker.lba);
        match escalate(status, late) {
            Escalation::Fail(reason) => self.controller.fail(&reason),
            Escalation::Reset(reason) => {
                let what = format!("{reason} ({kind} at block {lba}, qid {}, cid {cid})", self.qid);
                self.controller.reset(&what);
            }
            Escalation::Abort => {
                tracker.phase = Phase::OnDevice { late: true };
                tracker.deadline = now + self.timeout;
                tracing::warn!(pci = %self.controller.pci_address, qid = self.qid, cid, op = %kind, lba, "command timed out; aborting it");
                let abort_timeout = self.timeout.min(self.controller.admin_timeout());
                match self.controller.admin_timed(Sqe::abort(self.qid, cid), "abort", abort_timeout) {
                    // Bit 0 of dw0 set: the controller did not abort it (QEMU never does).
                    Ok(cqe) => {
                        tracing::info!(pci = %self.controller.pci_address, qid = self.qid, cid, aborted = cqe.dw0 & 1 == 0, "abort answered")
                    }
                    // A timed-out abort has already reset the controller.
                    Err(e) => {
                        tracing::warn!(pci = %self.controller.pci_address, qid = self.qid, cid, error = %e, "abort failed")
                    }
                }
            }
        }
    }

    /// Test hook: the next `count` completions this queue pair reaps are
    /// thrown away as if the controller had never posted them, so their
    /// commands time out. For the guest tests of the timeout, abort and
    /// reset path on a controller that does not lose completions by itself.
    #[doc(hidden)]
    pub fn lose_completions(&mut self, count: u32) {
        self.completions_to_lose = count;
    }

    /// Changes the command timeout for commands submitted from now on.
    pub fn set_command_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Deletes the queues. Returns true when the device can no longer touch
    /// the buffers of commands still in flight (queues deleted, destroyed by
    /// a reset, or the controller dead).
    fn delete_queues(&mut self) -> bool {
        if !self.created {
            return true;
        }
        // A reset or failure under way in another thread ends within CAP.TO
        // and the admin timeout; until then the device may still use the rings.
        while !matches!(self.controller.state(), STATE_LIVE | STATE_DEAD) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if self.controller.state() == STATE_DEAD {
            return true;
        }
        self.created = false;
        if self.controller.generation() != self.generation {
            return true;
        }
        let deleted = self
            .controller
            .admin(Sqe::delete_io_sq(self.qid), "delete I/O submission queue")
            .and_then(|_| self.controller.admin(Sqe::delete_io_cq(self.qid), "delete I/O completion queue"));
        match deleted {
            Ok(_) => true,
            // A reset in between destroyed the queues already.
            Err(_) if self.controller.generation() != self.generation => true,
            Err(e) if self.in_flight > 0 => {
                self.controller.fail(&format!("queue {} could not be deleted with commands in flight: {e}", self.qid));
                self.controller.state() == STATE_DEAD
            }
            Err(e) => {
                tracing::warn!(pci = %self.controller.pci_address, qid = self.qid, error = %e, "deleting an idle queue pair");
                true
            }
        }
    }
}

impl QueuePair for NvmeQueuePair {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&mut self, request: Request) -> Result<(), SubmitError> {
        if self.controller.is_gone() {
            return Err(SubmitError::Gone(request));
        }
        let Some(&cid) = self.cids_free.last() else {
            return Err(SubmitError::QueueFull(request));
        };
        let sqe = match self.build(cid, &request.op) {
            Ok(sqe) => sqe,
            Err(kind) => {
                let error = self.error(kind, request.op.kind(), request.op.lba());
                return Err(SubmitError::Invalid(request, error));
            }
        };
        // While the controller is being reset (or the queues are not yet
        // created again) the command waits in its tracker and goes to the
        // device with the resubmissions.
        let on_device = self.sync_with_controller();
        self.cids_free.pop();
        if on_device {
            self.sq.push(&sqe);
        }
        let tracker = &mut self.trackers[usize::from(cid)];
        tracker.tag = request.tag;
        tracker.kind = request.op.kind();
        tracker.lba = request.op.lba();
        tracker.buf = request.op.into_buf();
        tracker.sqe = sqe;
        tracker.deadline = Instant::now() + self.timeout;
        tracker.phase = if on_device { Phase::OnDevice { late: false } } else { Phase::Held };
        self.in_flight += 1;
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        match self.controller.state() {
            STATE_LIVE => {}
            STATE_DEAD => return self.fail_in_flight(out, max),
            // Being quiesced or reset: buffers on the device stay with it a
            // moment longer; what already failed can be reported.
            _ => return self.deliver_failed(out, max),
        }
        if !self.sync_with_controller() {
            return self.deliver_failed(out, max);
        }
        let mut done = self.deliver_failed(out, max);
        self.ring_submissions();
        done += self.reap(out, max - done);
        if self.in_flight > 0 {
            self.check_timeouts(false);
        }
        done
    }

    fn in_flight(&self) -> u32 {
        self.in_flight
    }

    fn queue_depth(&self) -> u32 {
        self.trackers.len() as u32
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        self.sleeper.as_ref().map(|s| s.fd())
    }

    fn prepare_to_sleep(&mut self) -> bool {
        let Some(sleeper) = self.sleeper.as_ref() else { return self.in_flight == 0 };
        sleeper.drain();
        if !self.failed.is_empty() {
            return false;
        }
        if self.controller.state() != STATE_LIVE || self.controller.generation() != self.generation {
            return self.in_flight == 0;
        }
        // Submissions not yet rung would never complete while we sleep.
        self.ring_submissions();
        if self.cq.peek().is_some() {
            return false;
        }
        let now = Instant::now();
        let earliest = self.trackers.iter().filter(|t| t.phase.is_busy()).map(|t| t.deadline).min();
        let sleeper = self.sleeper.as_ref().expect("checked above");
        match earliest {
            Some(deadline) if deadline <= now => {
                self.check_timeouts(true);
                return false;
            }
            Some(deadline) => sleeper.arm(Some(deadline - now)),
            None => sleeper.arm(None),
        }
        // Wake up, scan: the next poll after the timer fires checks at once.
        self.polls_since_clock = POLLS_PER_TIMEOUT_CHECK;
        self.scanned_at = now - TIMEOUT_SCAN_INTERVAL;
        true
    }
}

impl Drop for NvmeQueuePair {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            tracing::warn!(pci = %self.controller.pci_address, qid = self.qid, in_flight = self.in_flight, "queue pair dropped with commands in flight");
        }
        let safe = self.delete_queues();
        if !safe {
            // The device may still write into the rings and these buffers:
            // leak them rather than hand them to someone else.
            tracing::error!(pci = %self.controller.pci_address, qid = self.qid, "leaking the DMA memory of a queue pair that could not be stopped");
            for tracker in &mut self.trackers {
                if let Some(buf) = tracker.buf.take() {
                    std::mem::forget(buf);
                }
            }
            self.controller.free_qid(self.qid);
            return;
        }
        // SAFETY: the rings are dropped exactly once, here, and not used
        // after: `self` is being dropped.
        unsafe {
            ManuallyDrop::drop(&mut self.sq);
            ManuallyDrop::drop(&mut self.cq);
        }
        self.controller.free_qid(self.qid);
    }
}
