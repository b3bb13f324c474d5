//! Submission and completion rings in DMA memory.
//!
//! The driver writes submission entries and reads completion entries; the
//! controller does the opposite. Completion entries are read with volatile
//! loads (the device writes them behind the compiler's back), status word
//! first: only once its phase tag matches is the rest of the entry valid.

use std::sync::atomic::{fence, Ordering};

use super::command::{Cqe, Sqe};
use super::iova::IovaWindow;
use crate::dma::{DmaBuf, DmaPool};

/// Why a ring could not be had.
#[derive(Debug, thiserror::Error)]
#[error("cannot allocate a {entries}-entry queue ring from the DMA pool: {source}")]
pub struct RingAllocError {
    entries: u32,
    source: crate::dma::DmaError,
}

impl RingAllocError {
    pub fn new(entries: u32, source: crate::dma::DmaError) -> Self {
        RingAllocError { entries, source }
    }
}

fn alloc(pool: &DmaPool, bytes: usize, entries: u32) -> Result<DmaBuf, RingAllocError> {
    pool.try_alloc_zeroed(bytes).map_err(|source| RingAllocError { entries, source })
}

/// A submission queue ring.
#[derive(Debug)]
pub struct SubmissionRing {
    mem: DmaBuf,
    base: *mut Sqe,
    entries: u32,
    tail: u32,
    iova: u64,
}

// SAFETY: the ring memory is owned by `mem`; the raw pointer into it moves
// with it, and only the owner of `&mut self` writes entries.
unsafe impl Send for SubmissionRing {}

impl SubmissionRing {
    pub fn new(pool: &DmaPool, window: &IovaWindow, entries: u32) -> Result<Self, RingAllocError> {
        let mut mem = alloc(pool, entries as usize * std::mem::size_of::<Sqe>(), entries)?;
        let base = mem.as_mut_ptr().cast::<Sqe>();
        let iova = window.iova(mem.addr());
        Ok(SubmissionRing { mem, base, entries, tail: 0, iova })
    }

    pub fn iova(&self) -> u64 {
        self.iova
    }

    pub fn entries(&self) -> u32 {
        self.entries
    }

    pub fn tail(&self) -> u32 {
        self.tail
    }

    /// Writes `sqe` at the tail and advances it. The caller guarantees a
    /// free slot (it never has more than `entries - 1` commands in flight).
    pub fn push(&mut self, sqe: &Sqe) {
        debug_assert!(self.tail < self.entries);
        // SAFETY: `tail < entries`, so the slot lies inside `mem`, which is
        // 64-byte aligned (pool buffers are page aligned); the controller
        // does not read this slot until the doorbell passes it.
        unsafe { self.base.add(self.tail as usize).write_volatile(*sqe) };
        self.tail = (self.tail + 1) % self.entries;
    }

    /// Back to the state of a freshly created queue.
    pub fn reset(&mut self) {
        self.mem.fill(0);
        self.tail = 0;
    }
}

/// A completion queue ring.
#[derive(Debug)]
pub struct CompletionRing {
    mem: DmaBuf,
    base: *const Cqe,
    entries: u32,
    head: u32,
    phase: bool,
    iova: u64,
}

// SAFETY: as for `SubmissionRing`; the device writes entries, the owner of
// `&mut self` reads them with volatile loads.
unsafe impl Send for CompletionRing {}

impl CompletionRing {
    pub fn new(pool: &DmaPool, window: &IovaWindow, entries: u32) -> Result<Self, RingAllocError> {
        let mem = alloc(pool, entries as usize * std::mem::size_of::<Cqe>(), entries)?;
        let base = mem.as_ptr().cast::<Cqe>();
        let iova = window.iova(mem.addr());
        Ok(CompletionRing { mem, base, entries, head: 0, phase: true, iova })
    }

    pub fn iova(&self) -> u64 {
        self.iova
    }

    pub fn head(&self) -> u32 {
        self.head
    }

    /// The entry at the head, if the controller has posted it.
    pub fn peek(&self) -> Option<Cqe> {
        // SAFETY: `head < entries`, so the entry lies inside `mem`; the
        // status word is read alone first (volatile, the device may be
        // writing the entry right now).
        let slot = unsafe { self.base.add(self.head as usize) };
        // SAFETY: `slot` is valid and 16-byte aligned; `status` is its last u16.
        let status = unsafe { std::ptr::addr_of!((*slot).status).read_volatile() };
        if (status & 1 == 1) != self.phase {
            return None;
        }
        // The rest of the entry is valid once the phase matched: order the
        // loads after the status load.
        fence(Ordering::Acquire);
        // SAFETY: as above.
        Some(unsafe { slot.read_volatile() })
    }

    /// Consumes the head entry.
    pub fn advance(&mut self) {
        self.head += 1;
        if self.head == self.entries {
            self.head = 0;
            self.phase = !self.phase;
        }
    }

    /// Back to the state of a freshly created queue.
    pub fn reset(&mut self) {
        self.mem.fill(0);
        self.head = 0;
        self.phase = true;
    }
}
