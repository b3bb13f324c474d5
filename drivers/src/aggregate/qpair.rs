//! A set's queue pair: one queue pair on every member, owned by the same
//! thread. A request becomes one child request per piece (its buffer cut
//! without copying); it completes when every child has, with its buffer
//! joined whole again and the first error any child met.

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;

use super::stripe::Stripes;
use super::wake::Sleeper;
use crate::device::{Completion, DeviceInfo, Op, OpKind, QueuePair, Request, SubmitError};
use crate::dma::DmaBuf;
use crate::error::{IoError, IoErrorKind};

/// Child tags carry the parent's slot and the piece's index.
const PIECE_BITS: u32 = 16;

/// One member's queue pair and the children it has not accepted yet.
#[derive(Debug)]
pub(super) struct Member {
    pub qp: Box<dyn QueuePair>,
    pub block_bytes: u64,
    pub volatile_write_cache: bool,
    /// Children refused with `QueueFull`, sent again at the next poll.
    pub backlog: VecDeque<Request>,
}

/// A request of the set's caller, waiting for its children.
#[derive(Debug)]
struct Parent {
    tag: u64,
    kind: OpKind,
    lba: u64,
    /// Each child's buffer once it is back, in buffer order (none for a flush).
    pieces: Vec<Option<DmaBuf>>,
    outstanding: u32,
    error: Option<IoError>,
}

#[derive(Debug)]
pub struct SetQueuePair {
    info: DeviceInfo,
    stripes: Stripes,
    members: Vec<Member>,
    slots: Vec<Option<Parent>>,
    free_slots: Vec<u32>,
    ready: VecDeque<Completion>,
    scratch: Vec<Completion>,
    queue_depth: u32,
    sleeper: Option<Sleeper>,
}

impl SetQueuePair {
    pub(super) fn new(info: DeviceInfo, stripes: Stripes, members: Vec<Member>, queue_depth: u32) -> Self {
        let fds: Option<Vec<_>> =
            members.iter().map(|m| m.qp.completion_fd().map(|fd| std::os::fd::AsRawFd::as_raw_fd(&fd))).collect();
        let sleeper = fds.and_then(|fds| match Sleeper::new(&fds) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, device = %info.name, "no completion descriptor for the set: its reactor polls");
                None
            }
        });
        SetQueuePair {
            info,
            stripes,
            members,
            slots: (0..queue_depth).map(|_| None).collect(),
            free_slots: (0..queue_depth).rev().collect(),
            ready: VecDeque::new(),
            scratch: Vec::new(),
            queue_depth,
            sleeper,
        }
    }

    fn start(&mut self, request: Request) -> Result<(), SubmitError> {
        let kind = request.op.kind();
        let lba = request.op.lba();
        if kind != OpKind::Flush {
            let len = match &request.op {
                Op::Read { buf, .. } | Op::Write { buf, .. } => buf.len(),
                Op::Flush => 0,
            };
            if let Err(e) = self.info.check_transfer(lba, len) {
                let error = IoError::new(e, kind, lba, &self.info.name);
                return Err(SubmitError::Invalid(request, error));
            }
        }
        if self.in_flight() >= self.queue_depth {
            return Err(SubmitError::QueueFull(request));
        }
        let Some(slot) = self.free_slots.pop() else {
            return Err(SubmitError::QueueFull(request));
        };
        match request.op {
            Op::Flush => self.start_flush(slot, request.tag),
            Op::Read { lba, buf } => self.start_transfer(slot, request.tag, lba, buf, None),
            Op::Write { lba, buf, fua } => self.start_transfer(slot, request.tag, lba, buf, Some(fua)),
        }
        Ok(())
    }

    /// A flush goes to every member with a volatile cache (none: done at once).
    fn start_flush(&mut self, slot: u32, tag: u64) {
        let targets: Vec<usize> = (0..self.members.len()).filter(|&m| self.members[m].volatile_write_cache).collect();
        let outstanding = targets.len() as u32;
        let parent = Parent { tag, kind: OpKind::Flush, lba: 0, pieces: Vec::new(), outstanding, error: None };
        self.slots[slot as usize] = Some(parent);
        for (index, member) in targets.into_iter().enumerate() {
            self.send(member, Request { tag: child_tag(slot, index), op: Op::Flush });
        }
        self.finish_if_done(slot);
    }

    /// `fua` is `None` for a read.
    fn start_transfer(&mut self, slot: u32, tag: u64, lba: u64, buf: DmaBuf, fua: Option<bool>) {
        let kind = if fua.is_some() { OpKind::Write } else { OpKind::Read };
        let plan: Vec<_> = self.stripes.pieces(lba, buf.len()).collect();
        let mut parent = Parent { tag, kind, lba, pieces: Vec::with_capacity(plan.len()), outstanding: 0, error: None };
        let mut children = Vec::with_capacity(plan.len());
        let mut rest = Some(buf);
        for (index, piece) in plan.iter().enumerate() {
            let Some(whole) = rest.take() else { break };
            let (mine, after) = if index + 1 == plan.len() {
                (whole, None)
            } else {
                match whole.split_at(piece.len_bytes) {
                    Ok((mine, after)) => (mine, Some(after)),
                    // Not reachable for a checked transfer (pieces are whole
                    // 4 KiB pages); the request fails rather than misplace data.
                    Err(whole) => {
                        parent.pieces.push(Some(whole));
                        parent.error = Some(IoError::new(IoErrorKind::BadLength, kind, lba, &self.info.name));
                        break;
                    }
                }
            };
            rest = after;
            let member_lba = piece.member_offset_bytes / self.members[piece.member].block_bytes;
            let op = match fua {
                None => Op::Read { lba: member_lba, buf: mine },
                Some(fua) => Op::Write { lba: member_lba, buf: mine, fua },
            };
            parent.pieces.push(None);
            children.push((piece.member, Request { tag: child_tag(slot, index), op }));
        }
        parent.outstanding = children.len() as u32;
        self.slots[slot as usize] = Some(parent);
        for (member, child) in children {
            self.send(member, child);
        }
        self.finish_if_done(slot);
    }

    /// Hands a child to its member, or keeps it for the next poll when the
    /// member's queue is full.
    fn send(&mut self, member: usize, child: Request) {
        let m = &mut self.members[member];
        if !m.backlog.is_empty() {
            m.backlog.push_back(child);
            return;
        }
        match m.qp.submit(child) {
            Ok(()) => {}
            Err(SubmitError::QueueFull(child)) => m.backlog.push_back(child),
            Err(refused) => self.child_refused(refused),
        }
    }

    fn child_refused(&mut self, refused: SubmitError) {
        let (child, error_kind, device) = match refused {
            SubmitError::Invalid(child, e) => (child, e.kind, e.device),
            SubmitError::Gone(child) => (child, IoErrorKind::DeviceGone, String::new()),
            SubmitError::QueueFull(child) => (child, IoErrorKind::Io { errno: libc::EAGAIN }, String::new()),
        };
        let tag = child.tag;
        let kind = child.op.kind();
        let done =
            Completion { tag, kind, buf: child.op.into_buf(), result: Err(IoError::new(error_kind, kind, 0, &device)) };
        self.child_done(done);
    }

    fn child_done(&mut self, child: Completion) {
        let (slot, index) = ((child.tag >> PIECE_BITS) as u32, (child.tag & ((1 << PIECE_BITS) - 1)) as usize);
        let name = &self.info.name;
        let Some(Some(parent)) = self.slots.get_mut(slot as usize) else {
            tracing::error!(tag = child.tag, device = %name, "a member completed a request the set does not know");
            return;
        };
        if let Some(place) = parent.pieces.get_mut(index) {
            *place = child.buf;
        }
        if let (Err(e), None) = (child.result, &parent.error) {
            let member = if e.device.is_empty() { "a member".to_owned() } else { e.device };
            parent.error = Some(IoError::new(e.kind, parent.kind, parent.lba, &format!("{name} ({member})")));
        }
        parent.outstanding = parent.outstanding.saturating_sub(1);
        self.finish_if_done(slot);
    }

    fn finish_if_done(&mut self, slot: u32) {
        let Some(parent) = self.slots[slot as usize].take_if(|p| p.outstanding == 0) else {
            return;
        };
        self.free_slots.push(slot);
        let (buf, joined) = join_pieces(parent.pieces);
        let result = match (parent.error, joined) {
            (Some(e), _) => Err(e),
            (None, Err(kind)) => Err(IoError::new(kind, parent.kind, parent.lba, &self.info.name)),
            (None, Ok(())) => Ok(()),
        };
        self.ready.push_back(Completion { tag: parent.tag, kind: parent.kind, buf, result });
    }

    fn drain_backlogs(&mut self) {
        for member in 0..self.members.len() {
            while let Some(child) = self.members[member].backlog.pop_front() {
                match self.members[member].qp.submit(child) {
                    Ok(()) => {}
                    Err(SubmitError::QueueFull(child)) => {
                        self.members[member].backlog.push_front(child);
                        break;
                    }
                    Err(refused) => self.child_refused(refused),
                }
            }
        }
    }
}

fn child_tag(slot: u32, index: usize) -> u64 {
    (u64::from(slot) << PIECE_BITS) | index as u64
}

/// The request's buffer, whole again. A piece that did not come back or
/// would not join means the buffer cannot be returned whole: the request
/// fails (`Io`) and the first piece is returned.
fn join_pieces(pieces: Vec<Option<DmaBuf>>) -> (Option<DmaBuf>, Result<(), IoErrorKind>) {
    let mut joined: Option<DmaBuf> = None;
    let mut whole = true;
    for piece in pieces {
        let Some(piece) = piece else {
            whole = false;
            continue;
        };
        joined = Some(match joined {
            None => piece,
            Some(head) if whole => match head.join(piece) {
                Ok(j) => j,
                Err((head, _)) => {
                    whole = false;
                    head
                }
            },
            Some(head) => head,
        });
    }
    let result = if whole { Ok(()) } else { Err(IoErrorKind::Io { errno: libc::EIO }) };
    (joined, result)
}

impl QueuePair for SetQueuePair {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&mut self, request: Request) -> Result<(), SubmitError> {
        self.start(request)
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        self.drain_backlogs();
        let mut scratch = std::mem::take(&mut self.scratch);
        for member in 0..self.members.len() {
            scratch.clear();
            self.members[member].qp.poll(&mut scratch, usize::MAX);
            for child in scratch.drain(..) {
                self.child_done(child);
            }
        }
        self.scratch = scratch;
        self.drain_backlogs();
        let n = max.min(self.ready.len());
        out.extend(self.ready.drain(..n));
        n
    }

    fn in_flight(&self) -> u32 {
        self.queue_depth - self.free_slots.len() as u32 + self.ready.len() as u32
    }

    fn queue_depth(&self) -> u32 {
        self.queue_depth
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        self.sleeper.as_ref().map(Sleeper::fd)
    }

    fn prepare_to_sleep(&mut self) -> bool {
        if !self.ready.is_empty() || self.members.iter().any(|m| !m.backlog.is_empty()) {
            return false;
        }
        // Every member arms its wake-up, even after one has refused.
        let mut all = true;
        for m in &mut self.members {
            all &= m.qp.prepare_to_sleep();
        }
        all
    }
}
