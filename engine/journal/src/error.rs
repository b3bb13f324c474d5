//! Typed errors of the journal.

use keel_drivers::IoError;

use crate::Lsn;

/// Why a journal operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// The region, device or configuration cannot hold a journal.
    #[error("journal configuration: {0}")]
    Config(String),
    /// A record larger than the configured maximum.
    #[error("a record of {payload_bytes} payload bytes exceeds the journal's limit of {payload_bytes_max}")]
    RecordTooLarge { payload_bytes: usize, payload_bytes_max: usize },
    /// `commit` was given more bytes than its reservation holds.
    #[error("a payload of {payload_bytes} bytes does not fit its reservation of {reserved_bytes}")]
    ReservationExceeded { payload_bytes: usize, reserved_bytes: usize },
    /// `wait_durable` for an LSN that has not been assigned yet.
    #[error("LSN {lsn} has not been committed (the next LSN is {lsn_next})")]
    NotCommitted { lsn: Lsn, lsn_next: Lsn },
    /// `advance_head` past the end of the log.
    #[error("cannot advance the head to LSN {lsn}: the next LSN is {lsn_next}")]
    HeadBeyondTail { lsn: Lsn, lsn_next: Lsn },
    /// A log write or flush failed. The journal stops accepting work: records
    /// after the failed write can never become durable in order.
    #[error("journal I/O failed: {0}")]
    Io(IoError),
    /// The journal was closed.
    #[error("the journal is closed")]
    Closed,
    /// Recovery found damage to records that had been acknowledged durable.
    #[error("journal corrupt at LSN {lsn} (ring offset {offset}): {evidence}")]
    Corrupt { lsn: Lsn, offset: u64, evidence: String },
}
