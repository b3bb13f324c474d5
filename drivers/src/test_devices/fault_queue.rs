//! The fault injector's queue pair: applies the action the rules chose to each
//! request, on the way to the inner device and on the way back.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fault_injector::{Action, RuleTable, Target};
use super::retag;
use crate::device::{Completion, DeviceInfo, Op, OpKind, QueuePair, Request, SubmitError};
use crate::dma::{DmaBuf, DmaPool};
use crate::error::{IoError, IoErrorKind};

/// What to do when the inner device completes a request.
#[derive(Debug)]
enum After {
    Nothing,
    /// Flip these bits of the buffer: corrupts read data, and restores the
    /// caller's buffer after a write that stored flipped bits.
    FlipBits(Vec<usize>),
    /// Zero these bytes of read data.
    ZeroRead(Range<usize>),
    /// Put the caller's bytes back after a write that stored zeros there.
    Restore {
        offset: usize,
        saved: Vec<u8>,
    },
    /// Put the caller's transfer length back after a shortened write.
    RestoreLen(usize),
    /// A torn write inside a block, step 1: the old blocks are read into the
    /// request's buffer; patch in the caller's leading bytes and write them.
    TearRead {
        caller: DmaBuf,
        lba: u64,
        keep_bytes: usize,
        fua: bool,
    },
    /// Step 2: the patched blocks are written; complete with the caller's buffer.
    TearWrite {
        caller: DmaBuf,
    },
}

#[derive(Debug)]
struct Pending {
    caller_tag: u64,
    kind: OpKind,
    after: After,
    delay: Option<Duration>,
}

/// A request the inner device would not take, with what was pending on it.
#[derive(Debug)]
struct Refused {
    error: SubmitError,
    pending: Pending,
}

#[derive(Debug)]
pub(crate) struct FaultQueuePair {
    inner: Box<dyn QueuePair>,
    pool: Arc<DmaPool>,
    rules: Arc<RuleTable>,
    next_tag: u64,
    /// Requests the inner device holds, by the injector's tag.
    pending: HashMap<u64, Pending>,
    /// Completions ready for the caller (faults completed without the device).
    ready: VecDeque<Completion>,
    /// Completions held back by a delay, with their release time.
    held: Vec<(Instant, Completion)>,
    /// Second steps of torn writes waiting for an inner slot.
    deferred: VecDeque<(Op, Pending)>,
    /// Caller requests accepted and not yet returned.
    outstanding: u32,
    scratch: Vec<Completion>,
}

impl FaultQueuePair {
    pub fn new(inner: Box<dyn QueuePair>, pool: Arc<DmaPool>, rules: Arc<RuleTable>) -> Self {
        FaultQueuePair {
            inner,
            pool,
            rules,
            next_tag: 0,
            pending: HashMap::new(),
            ready: VecDeque::new(),
            held: Vec::new(),
            deferred: VecDeque::new(),
            outstanding: 0,
            scratch: Vec::new(),
        }
    }

    fn block_bytes(&self) -> usize {
        self.inner.info().block_size_bytes as usize
    }

    /// The request as the rules see it; `None` for a malformed transfer,
    /// which goes to the inner device untouched (and is rejected there).
    fn target<'a>(&self, op: &'a Op) -> Option<Target<'a>> {
        let info = self.inner.info();
        match op {
            Op::Read { lba, buf } => {
                info.check_transfer(*lba, buf.len()).ok()?;
                Some(Target { op: OpKind::Read, lba: *lba, len_bytes: buf.len(), data: None })
            }
            Op::Write { lba, buf, .. } => {
                info.check_transfer(*lba, buf.len()).ok()?;
                Some(Target { op: OpKind::Write, lba: *lba, len_bytes: buf.len(), data: Some(&buf[..]) })
            }
            Op::Flush => Some(Target { op: OpKind::Flush, lba: 0, len_bytes: 0, data: None }),
        }
    }

    /// Sends `op` to the inner device under a fresh tag.
    fn send(&mut self, op: Op, pending: Pending) -> Result<(), Box<Refused>> {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        match self.inner.submit(Request { tag, op }) {
            Ok(()) => {
                self.pending.insert(tag, pending);
                Ok(())
            }
            Err(error) => Err(Box::new(Refused { error, pending })),
        }
    }

    /// Completes a caller request without the inner device.
    fn complete_locally(&mut self, completion: Completion, delay: Option<Duration>) {
        match delay {
            Some(delay) => self.held.push((Instant::now() + delay, completion)),
            None => self.ready.push_back(completion),
        }
    }

    fn apply(&mut self, request: Request, action: Action, delay: Option<Duration>) -> Result<(), SubmitError> {
        let Request { tag: caller_tag, mut op } = request;
        let kind = op.kind();
        let pending = |after| Pending { caller_tag, kind, after, delay };
        let after = match action {
            Action::Pass => {
                return self.send(op, pending(After::Nothing)).map_err(|refused| retag(refused.error, caller_tag));
            }
            Action::Fail(error_kind) => {
                let error = IoError::new(error_kind, kind, op.lba(), &self.inner.info().name);
                let completion = Completion { tag: caller_tag, kind, buf: op.into_buf(), result: Err(error) };
                self.complete_locally(completion, delay);
                return Ok(());
            }
            Action::Lose => {
                let completion = Completion { tag: caller_tag, kind, buf: op.into_buf(), result: Ok(()) };
                self.complete_locally(completion, delay);
                return Ok(());
            }
            Action::FlipBits(bits) => {
                if let Op::Write { buf, .. } = &mut op {
                    flip_bits(buf, &bits);
                }
                After::FlipBits(bits)
            }
            Action::Zero(range) => match &mut op {
                Op::Write { buf, .. } => {
                    let saved = buf[range.clone()].to_vec();
                    buf[range.clone()].fill(0);
                    After::Restore { offset: range.start, saved }
                }
                _ => After::ZeroRead(range),
            },
            Action::Redirect(to) => {
                if let Op::Write { lba, .. } = &mut op {
                    *lba = to;
                }
                After::Nothing
            }
            Action::Tear(keep_bytes) => match self.tear(op, keep_bytes, caller_tag) {
                Ok((torn_op, after)) => {
                    op = torn_op;
                    after
                }
                Err(error) => return Err(error),
            },
        };
        if let Err(refused) = self.send(op, pending(after)) {
            self.fail_after_refusal(refused.error, refused.pending);
        }
        Ok(())
    }

    /// Prepares a torn write: shortened when the tear falls on a block
    /// boundary, else a read of the blocks to patch.
    fn tear(&mut self, op: Op, keep_bytes: usize, caller_tag: u64) -> Result<(Op, After), SubmitError> {
        let Op::Write { lba, mut buf, fua } = op else { unreachable!("tears are validated to be writes") };
        let block_bytes = self.block_bytes();
        if keep_bytes.is_multiple_of(block_bytes) {
            let len_bytes = buf.len();
            buf.set_len(keep_bytes);
            return Ok((Op::Write { lba, buf, fua }, After::RestoreLen(len_bytes)));
        }
        let patch_bytes = keep_bytes.div_ceil(block_bytes) * block_bytes;
        let Ok(mut patch) = self.pool.try_alloc(patch_bytes) else {
            // No buffer for the patch: push back like a full queue.
            let op = Op::Write { lba, buf, fua };
            return Err(SubmitError::QueueFull(Request { tag: caller_tag, op }));
        };
        patch.set_len(patch_bytes);
        Ok((Op::Read { lba, buf: patch }, After::TearRead { caller: buf, lba, keep_bytes, fua }))
    }

    /// The inner device refused a faulted request: complete the caller's
    /// request with an error, its buffer restored.
    fn fail_after_refusal(&mut self, error: SubmitError, pending: Pending) {
        let kind = pending.kind;
        let name = self.inner.info().name.clone();
        let (request, io_error) = match error {
            SubmitError::Invalid(request, io_error) => (request, io_error),
            SubmitError::Gone(request) => {
                let io_error = IoError::new(IoErrorKind::DeviceGone, kind, request.op.lba(), &name);
                (request, io_error)
            }
            SubmitError::QueueFull(request) => {
                let io_error = IoError::new(IoErrorKind::Rejected { status: 0 }, kind, request.op.lba(), &name);
                (request, io_error)
            }
        };
        let buf = request.op.into_buf();
        let completion = Completion { tag: 0, kind, buf, result: Err(io_error) };
        if let Some(done) = self.finish(completion, pending) {
            self.ready.push_back(done);
        }
    }

    /// Applies a pending request's `After` to the inner completion. Returns
    /// the caller's completion, or `None` when a further step was started.
    fn finish(&mut self, mut completion: Completion, pending: Pending) -> Option<Completion> {
        let Pending { caller_tag, kind, after, delay } = pending;
        match after {
            After::Nothing => {}
            After::FlipBits(bits) => flip_bits(buf_mut(&mut completion), &bits),
            After::ZeroRead(range) => buf_mut(&mut completion)[range].fill(0),
            After::Restore { offset, saved } => {
                buf_mut(&mut completion)[offset..offset + saved.len()].copy_from_slice(&saved)
            }
            After::RestoreLen(len_bytes) => buf_mut(&mut completion).set_len(len_bytes),
            After::TearRead { caller, lba, keep_bytes, fua } => {
                let mut patch = completion.buf.take().expect("reads carry a buffer");
                if completion.result.is_ok() {
                    patch[..keep_bytes].copy_from_slice(&caller[..keep_bytes]);
                    let next = Pending { caller_tag, kind, after: After::TearWrite { caller }, delay };
                    self.deferred.push_back((Op::Write { lba, buf: patch, fua }, next));
                    self.submit_deferred();
                    return None;
                }
                completion.buf = Some(caller);
            }
            After::TearWrite { caller } => completion.buf = Some(caller),
        }
        let done = Completion { tag: caller_tag, kind, ..completion };
        match delay {
            Some(delay) => {
                self.held.push((Instant::now() + delay, done));
                None
            }
            None => Some(done),
        }
    }

    fn submit_deferred(&mut self) {
        while let Some((op, pending)) = self.deferred.pop_front() {
            if let Err(refused) = self.send(op, pending) {
                let Refused { error, pending } = *refused;
                if let SubmitError::QueueFull(request) = error {
                    self.deferred.push_front((request.op, pending));
                    return;
                }
                self.fail_after_refusal(error, pending);
            }
        }
    }

    fn release_due(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].0 <= now {
                let (_, completion) = self.held.swap_remove(i);
                self.ready.push_back(completion);
            } else {
                i += 1;
            }
        }
    }
}

fn buf_mut(completion: &mut Completion) -> &mut DmaBuf {
    completion.buf.as_mut().expect("reads and writes carry a buffer")
}

fn flip_bits(data: &mut [u8], bits: &[usize]) {
    for &bit in bits {
        data[bit / 8] ^= 1 << (bit % 8);
    }
}

impl QueuePair for FaultQueuePair {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }

    fn submit(&mut self, request: Request) -> Result<(), SubmitError> {
        if self.outstanding >= self.queue_depth() {
            return Err(SubmitError::QueueFull(request));
        }
        let decision = self.target(&request.op).map(|target| self.rules.decide(target, self.inner.info()));
        let (action, delay) = decision.unwrap_or((Action::Pass, None));
        self.apply(request, action, delay)?;
        self.outstanding += 1;
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        let start = out.len();
        self.submit_deferred();
        self.release_due(Instant::now());
        while out.len() - start < max {
            let Some(completion) = self.ready.pop_front() else { break };
            out.push(completion);
        }
        let room = max - (out.len() - start);
        if room > 0 && self.inner.in_flight() > 0 {
            let mut completions = std::mem::take(&mut self.scratch);
            self.inner.poll(&mut completions, room);
            for completion in completions.drain(..) {
                let Some(pending) = self.pending.remove(&completion.tag) else {
                    tracing::error!(tag = completion.tag, "fault injector: completion for an unknown tag; dropped");
                    continue;
                };
                if let Some(done) = self.finish(completion, pending) {
                    out.push(done);
                }
            }
            self.scratch = completions;
        }
        let delivered = out.len() - start;
        debug_assert!(delivered as u32 <= self.outstanding);
        self.outstanding -= delivered as u32;
        delivered
    }

    fn in_flight(&self) -> u32 {
        self.outstanding
    }

    fn queue_depth(&self) -> u32 {
        self.inner.queue_depth()
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.completion_fd()
    }

    /// Held and locally completed requests have no descriptor to wake the
    /// reactor: it must keep polling while there are any.
    fn prepare_to_sleep(&mut self) -> bool {
        self.ready.is_empty() && self.held.is_empty() && self.deferred.is_empty() && self.inner.prepare_to_sleep()
    }
}
