//! Keel's journal: one redo log per volume, shared by every reactor.
//!
//! Any reactor appends. A record is reserved (`reserve(len).await`, which
//! waits for room: back-pressure) and then committed synchronously
//! (`commit(payload) -> Lsn`), so the engine can apply a transaction to its
//! in-memory tree in the same step that orders it. Records are packed into
//! batches (group commit), each written as one device write per piece of at
//! most 2 MiB; several writes may be in flight, and one flush covers many
//! batches. Each record's
//! CRC-32C, seeded with the volume and epoch, is its commit mark: there is no
//! flush between a record and its commit.
//!
//! Durability is asked for, never implied: `wait_durable(lsn).await` returns
//! once every record up to `lsn` is durable. Callers that do not wait do not
//! pay; their records go out with the next batch someone needs, or after a
//! short delay.
//!
//! The ring's head is moved by checkpoints (`advance_head`); `recover` replays
//! from the head, stops at the first missing, torn or out-of-sequence record,
//! and reports damage to acknowledged records as [`JournalError::Corrupt`].
//!
//! The byte format is in `docs/FORMAT.md` ("Journal") and in [`format`].
//! This crate owns the journal region and nothing else: it never touches the
//! superblock or the tree.

#![forbid(unsafe_code)]

mod batch;
pub mod config;
mod crc_join;
pub mod error;
pub mod format;
mod journal;
mod reader;
mod recover;
mod state;

/// A log sequence number. Records get consecutive LSNs from 1; 0 means none.
pub type Lsn = u64;

pub use config::{DurabilityMode, JournalConfig, JournalIdentity, JournalPosition, JournalRegion};
pub use error::JournalError;
pub use journal::{DurableWait, Journal, JournalUsage, Reservation};
pub use recover::{recover, RecoveryOutcome};
pub use state::JournalStats;
