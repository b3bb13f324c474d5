//! An I/O queue pair: one submission and one completion queue owned by one
//! reactor, with a tracker per command id so completions may come back in
//! any order.
//!
//! `submit` only writes the submission entry; `poll` rings the submission
//! doorbell once for everything queued since the last poll, reaps up to
//! `max` completions, and writes the completion-head doorbell once. Timeouts
//! are checked from `poll` (and the sleeper's timer wakes a sleeping reactor
//! for them): a command past its deadline is aborted through the admin
//! queue; one that still does not complete fails the controller, which
//! stops its DMA and fails everything in flight. Nothing waits forever.

use std::mem::ManuallyDrop;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::command::{io_op, Sqe};
use super::controller::{Controller, STATE_DEAD, STATE_LIVE};
use super::error::NvmeError;
use super::irq::Sleeper;
use super::prp::{self, Prp2};
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
    /// This command's PRP list page, allocated once when the queue opens.
    prp_list: DmaBuf,
    deadline: Instant,
    busy: bool,
    aborted: bool,
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
    sq_doorbell: usize,
    cq_doorbell: usize,
    sq_tail_rung: u32,
    trackers: Vec<Tracker>,
    cids_free: Vec<u16>,
    in_flight: u32,
    timeout: Duration,
    polls_since_clock: u32,
    scanned_at: Instant,
    sleeper: Option<Sleeper>,
    created: bool,
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
                    prp_list,
                    deadline: Instant::now(),
                    busy: false,
                    aborted: false,
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
            controller.admin(
                Sqe::create_io_cq(qid, entries, cq.iova(), vector.map(|(v, _)| v)),
                "create I/O completion queue",
            )?;
            if let Err(e) =
                controller.admin(Sqe::create_io_sq(qid, entries, sq.iova(), qid), "create I/O submission queue")
            {
                let _ = controller.admin(Sqe::delete_io_cq(qid), "delete I/O completion queue");
                return Err(e);
            }
            Ok((sq, cq, trackers, sleeper))
        })();
        let (sq, cq, trackers, sleeper) = match result {
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
            sq_tail_rung: 0,
            cids_free: (0..queue_depth as u16).rev().collect(),
            trackers,
            in_flight: 0,
            timeout,
            polls_since_clock: 0,
            scanned_at: Instant::now(),
            sleeper,
            created: true,
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
        debug_assert!(tracker.busy);
        tracker.busy = false;
        let (tag, kind, lba, buf) = (tracker.tag, tracker.kind, tracker.lba, tracker.buf.take());
        self.cids_free.push(cid);
        self.in_flight -= 1;
        let result = result.map_err(|k| self.error(k, kind, lba));
        Completion { tag, kind, buf, result }
    }

    fn reap(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        let mut reaped = 0;
        while reaped < max {
            let Some(cqe) = self.cq.peek() else { break };
            self.cq.advance();
            let cid = cqe.cid;
            if usize::from(cid) >= self.trackers.len() || !self.trackers[usize::from(cid)].busy {
                // Only a misbehaving controller does this; never panic on it.
                tracing::error!(pci = %self.controller.pci_address, qid = self.qid, cid, "completion for a command not in flight; ignored");
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
        if reaped > 0 {
            self.controller.bar.write32(self.cq_doorbell, self.cq.head());
        }
        reaped
    }

    /// The controller is dead: its DMA is stopped, so every command in
    /// flight fails and gives its buffer back.
    fn fail_in_flight(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        let mut failed = 0;
        for cid in 0..self.trackers.len() as u16 {
            if failed == max {
                break;
            }
            let tracker = &self.trackers[usize::from(cid)];
            if !tracker.busy {
                continue;
            }
            let kind = if tracker.aborted { IoErrorKind::Timeout } else { IoErrorKind::DeviceGone };
            out.push(self.complete(cid, Err(kind)));
            failed += 1;
        }
        failed
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
                t.busy && t.deadline <= now
            })
            .collect();
        for cid in expired {
            self.on_timeout(cid, now);
            if !self.controller.is_live() {
                return;
            }
        }
    }

    /// First deadline: abort the command. Second: fail the controller.
    fn on_timeout(&mut self, cid: u16, now: Instant) {
        let status = self.controller.bar.read32(super::bar::reg::CSTS);
        if status == super::bar::csts::GONE {
            self.controller.fail("registers read all-ones: the device left the bus");
            return;
        }
        if status & super::bar::csts::CFS != 0 {
            self.controller.fail(&format!("controller fatal status (CSTS {status:#x})"));
            return;
        }
        let tracker = &mut self.trackers[usize::from(cid)];
        let (kind, lba) = (tracker.kind, tracker.lba);
        if tracker.aborted {
            tracker.deadline = now + self.timeout;
            self.controller
                .fail(&format!("{kind} at block {lba} (qid {}, cid {cid}) did not complete after an abort", self.qid));
            return;
        }
        tracker.aborted = true;
        tracker.deadline = now + self.timeout;
        tracing::warn!(pci = %self.controller.pci_address, qid = self.qid, cid, op = %kind, lba, "command timed out; aborting it");
        let abort_timeout = self.timeout.min(self.controller.admin_timeout());
        if let Err(e) = self.controller.admin_timed(Sqe::abort(self.qid, cid), "abort", abort_timeout) {
            self.controller.fail(&format!("abort of a timed-out {kind} failed: {e}"));
        }
    }

    /// Deletes the queues. Returns true when the device can no longer touch
    /// the buffers of commands still in flight (queues deleted, or the
    /// controller dead).
    fn delete_queues(&mut self) -> bool {
        if !self.created || !self.controller.is_live() {
            return self.controller.state() == STATE_DEAD || !self.created;
        }
        self.created = false;
        let deleted = self
            .controller
            .admin(Sqe::delete_io_sq(self.qid), "delete I/O submission queue")
            .and_then(|_| self.controller.admin(Sqe::delete_io_cq(self.qid), "delete I/O completion queue"));
        match deleted {
            Ok(_) => true,
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
        if self.controller.state() != STATE_LIVE {
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
        self.cids_free.pop();
        self.sq.push(&sqe);
        let tracker = &mut self.trackers[usize::from(cid)];
        tracker.tag = request.tag;
        tracker.kind = request.op.kind();
        tracker.lba = request.op.lba();
        tracker.buf = request.op.into_buf();
        tracker.deadline = Instant::now() + self.timeout;
        tracker.busy = true;
        tracker.aborted = false;
        self.in_flight += 1;
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        match self.controller.state() {
            STATE_LIVE => {}
            STATE_DEAD => return self.fail_in_flight(out, max),
            // Being quiesced: buffers must stay with the device a moment longer.
            _ => return 0,
        }
        self.ring_submissions();
        let reaped = self.reap(out, max);
        if self.in_flight > 0 {
            self.check_timeouts(false);
        }
        reaped
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
        if self.controller.state() != STATE_LIVE {
            return self.in_flight == 0;
        }
        // Submissions not yet rung would never complete while we sleep.
        self.ring_submissions();
        if self.cq.peek().is_some() {
            return false;
        }
        let now = Instant::now();
        let earliest = self.trackers.iter().filter(|t| t.busy).map(|t| t.deadline).min();
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
