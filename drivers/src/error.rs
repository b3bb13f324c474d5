//! Typed errors of the device layer.
//!
//! Two families: [`DeviceError`] for opening and configuring a device (these
//! stop start-up with a message a user can act on), and [`IoError`] for a single
//! request that failed (these travel back to whoever submitted the request and
//! never take the process down).

use std::fmt;
use std::path::PathBuf;

use crate::device::OpKind;

/// Why one read, write or flush failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoErrorKind {
    /// The operating system or the controller reported an I/O error (`errno`
    /// when the backend has one, else 0).
    Io { errno: i32 },
    /// The medium could not return the data (unrecovered read error, NVMe
    /// media and data integrity errors).
    Media,
    /// The request addressed blocks past the end of the device.
    OutOfRange,
    /// The buffer length is zero, not a multiple of the logical block size, or
    /// larger than the device's maximum transfer.
    BadLength,
    /// The device is gone (hot-removed, unbound, controller dead).
    DeviceGone,
    /// The command did not complete within the driver's timeout and was
    /// aborted.
    Timeout,
    /// The device refused the command for a reason the driver did not expect
    /// (the raw status is in the context).
    Rejected { status: u32 },
}

/// A failed request: what failed, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoError {
    pub kind: IoErrorKind,
    pub op: OpKind,
    /// First logical block of the request (0 for flush).
    pub lba: u64,
    /// Name of the device, for messages.
    pub device: String,
}

impl IoError {
    pub fn new(kind: IoErrorKind, op: OpKind, lba: u64, device: &str) -> Self {
        Self { kind, op, lba, device: device.to_owned() }
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed on {} at block {}: ", self.op, self.device, self.lba)?;
        match self.kind {
            IoErrorKind::Io { errno } if errno != 0 => {
                write!(f, "I/O error ({})", std::io::Error::from_raw_os_error(errno))
            }
            IoErrorKind::Io { .. } => write!(f, "I/O error"),
            IoErrorKind::Media => write!(f, "medium error"),
            IoErrorKind::OutOfRange => write!(f, "past the end of the device"),
            IoErrorKind::BadLength => {
                write!(f, "length is not a non-zero multiple of the block size within the maximum transfer")
            }
            IoErrorKind::DeviceGone => write!(f, "the device is gone"),
            IoErrorKind::Timeout => write!(f, "timed out and was aborted"),
            IoErrorKind::Rejected { status } => {
                write!(f, "rejected by the device (status {status:#x})")
            }
        }
    }
}

impl std::error::Error for IoError {}

/// Why a device could not be opened or set up.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} is on a file system that refuses O_DIRECT ({source}); use a file system that supports it (ext4, xfs), a block device, or set device.buffered_fallback = true")]
    DirectIoRefused { path: PathBuf, source: std::io::Error },
    #[error("cannot size {path} to {size_bytes} bytes: {source}")]
    Resize { path: PathBuf, size_bytes: u64, source: std::io::Error },
    #[error(
        "cannot reserve {size_bytes} bytes for {path}: the file system is full ({available_bytes} bytes available)"
    )]
    NoSpace { path: PathBuf, size_bytes: u64, available_bytes: u64 },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("io_uring setup failed: {0}; io_uring may be disabled (see /proc/sys/kernel/io_uring_disabled) or blocked by a seccomp profile")]
    Uring(std::io::Error),
    #[error("DMA buffer pool: {0}")]
    Dma(String),
    #[error("queue pair: {0}")]
    Queue(String),
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    Set(#[from] crate::aggregate::SetError),
    #[error(transparent)]
    Nvme(#[from] crate::nvme::NvmeError),
}
