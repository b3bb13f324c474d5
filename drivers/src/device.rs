//! The block-device contract. Every backend (memory, io_uring, NVMe over VFIO)
//! and every test device (crash recorder, fault injector) implements it, and the
//! engine assumes nothing beyond it.
//!
//! The contract is NVMe's:
//!
//! - A [`BlockDevice`] hands out [`QueuePair`]s, one per reactor. A queue pair is
//!   used by one thread only; no locks sit on the I/O path.
//! - [`QueuePair::submit`] queues a [`Request`]: read, write (optionally FUA) or
//!   flush. Buffers are [`DmaBuf`]s from the device's pool; their length is the
//!   transfer length. Ownership of the buffer passes to the device and comes back
//!   in the [`Completion`], so no buffer can be touched while the device uses it.
//! - [`QueuePair::poll`] makes queued submissions visible to the device (one
//!   doorbell or one `io_uring_enter` for the whole batch) and reaps completions.
//! - Completions arrive in any order. Two requests in flight at the same time
//!   that touch the same blocks have no defined order.
//! - A completed write is durable only after a flush that was submitted after the
//!   write completed has itself completed — unless the device has no volatile
//!   write cache ([`DeviceInfo::volatile_write_cache`] is false) or the write
//!   carried FUA, in which case it is durable when it completes.
//! - A write that had not completed at a crash may be present, absent, or torn
//!   at the granularity of 512-byte sectors.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use crate::dma::{DmaBuf, DmaPool};
use crate::error::{DeviceError, IoError};

/// The size of the sector at which a device may tear a write on power loss.
pub const SECTOR_BYTES: usize = 512;

/// What a device is, as far as the engine cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// A short name for messages ("uring:/var/lib/keel/keel.img", "nvme:0000:00:04.0").
    pub name: String,
    /// Logical block size: every transfer is a multiple of it and aligned to it.
    pub block_size_bytes: u32,
    /// Number of logical blocks.
    pub capacity_blocks: u64,
    /// True when completed writes may sit in a volatile cache until a flush.
    pub volatile_write_cache: bool,
    /// True when the device honours FUA on writes.
    pub fua: bool,
    /// The largest single transfer in bytes.
    pub max_transfer_bytes: u32,
    /// The most requests one queue pair can have in flight.
    pub queue_depth_max: u32,
    /// Atomic write unit on power fail, in logical blocks (1 when unknown).
    pub atomic_write_blocks: u32,
}

impl DeviceInfo {
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_blocks * u64::from(self.block_size_bytes)
    }

    /// Checks a transfer against this device's limits: the length is a non-zero
    /// multiple of the block size within the maximum transfer, and the blocks
    /// lie on the device.
    pub fn check_transfer(&self, lba: u64, len_bytes: usize) -> Result<(), crate::IoErrorKind> {
        let block = self.block_size_bytes as usize;
        if len_bytes == 0 || !len_bytes.is_multiple_of(block) || len_bytes > self.max_transfer_bytes as usize {
            return Err(crate::IoErrorKind::BadLength);
        }
        let blocks = (len_bytes / block) as u64;
        match lba.checked_add(blocks) {
            Some(end) if end <= self.capacity_blocks => Ok(()),
            _ => Err(crate::IoErrorKind::OutOfRange),
        }
    }
}

/// The kind of a request, without its payload (for errors and statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Read,
    Write,
    Flush,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Flush => "flush",
        })
    }
}

/// One operation and the buffer it carries.
#[derive(Debug)]
pub enum Op {
    /// Read `buf.len()` bytes starting at block `lba` into `buf`.
    Read { lba: u64, buf: DmaBuf },
    /// Write `buf` starting at block `lba`. With `fua`, the write is durable
    /// when it completes.
    Write { lba: u64, buf: DmaBuf, fua: bool },
    /// Make every write that completed before this flush was submitted durable.
    Flush,
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Read { .. } => OpKind::Read,
            Op::Write { .. } => OpKind::Write,
            Op::Flush => OpKind::Flush,
        }
    }

    pub fn lba(&self) -> u64 {
        match self {
            Op::Read { lba, .. } | Op::Write { lba, .. } => *lba,
            Op::Flush => 0,
        }
    }

    /// Takes the buffer out of the operation (for completions).
    pub fn into_buf(self) -> Option<DmaBuf> {
        match self {
            Op::Read { buf, .. } | Op::Write { buf, .. } => Some(buf),
            Op::Flush => None,
        }
    }
}

/// A request: an operation and the caller's tag, returned with its completion.
#[derive(Debug)]
pub struct Request {
    pub tag: u64,
    pub op: Op,
}

/// The outcome of one request. The buffer comes back whatever the result.
#[derive(Debug)]
pub struct Completion {
    pub tag: u64,
    pub kind: OpKind,
    pub buf: Option<DmaBuf>,
    pub result: Result<(), IoError>,
}

/// Why a request was not accepted. The request comes back to the caller.
#[derive(Debug)]
pub enum SubmitError {
    /// The queue pair already has `queue_depth` requests in flight: back-pressure,
    /// try again after a poll has reaped completions.
    QueueFull(Request),
    /// The request is malformed or out of range; it was not sent to the device.
    Invalid(Request, IoError),
    /// The device is gone; nothing will be accepted again.
    Gone(Request),
}

impl SubmitError {
    pub fn into_request(self) -> Request {
        match self {
            SubmitError::QueueFull(r) | SubmitError::Invalid(r, _) | SubmitError::Gone(r) => r,
        }
    }
}

/// A storage device that hands out queue pairs.
pub trait BlockDevice: Send + Sync + fmt::Debug {
    fn info(&self) -> &DeviceInfo;

    /// The pool every request buffer for this device must come from.
    fn dma_pool(&self) -> &Arc<DmaPool>;

    /// Opens a queue pair with room for `queue_depth` requests in flight
    /// (clamped to the device's maximum). Called once per reactor.
    fn open_queue_pair(&self, queue_depth: u32) -> Result<Box<dyn QueuePair>, DeviceError>;
}

/// One submission/completion queue pair, owned by one thread.
pub trait QueuePair: Send + fmt::Debug {
    fn info(&self) -> &DeviceInfo;

    /// Queues a request. It reaches the device at the next [`QueuePair::poll`].
    fn submit(&mut self, request: Request) -> Result<(), SubmitError>;

    /// Sends every queued submission to the device in one batch and appends up
    /// to `max` completions to `out`. Returns the number appended.
    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize;

    /// Requests submitted and not yet returned by `poll`.
    fn in_flight(&self) -> u32;

    /// The most requests this queue pair takes in flight.
    fn queue_depth(&self) -> u32;

    /// A file descriptor that becomes readable when completions may be
    /// available, so an idle reactor can sleep. `None` means the caller must
    /// keep polling while requests are in flight.
    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Called before the reactor sleeps on [`QueuePair::completion_fd`]; a
    /// backend that must arm an interrupt does it here. Returns false when
    /// completions are already pending and the caller must not sleep.
    fn prepare_to_sleep(&mut self) -> bool {
        true
    }
}
