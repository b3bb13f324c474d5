//! The engine's view of the journal: reserve space, then commit a record and
//! get its LSN in one synchronous step, and wait for durability.
//!
//! TRANSITIONAL: LSNs come from a counter and everything is "durable" at once,
//! until `keel-journal` is integrated behind this same interface.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::Lsn;
use crate::error::EngineError;

#[derive(Debug, Default)]
pub(crate) struct Wal {
    next_lsn: AtomicU64,
}

/// Journal space set aside for one record; committing it assigns the LSN.
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    wal: &'a Wal,
    len_bytes: usize,
}

impl Wal {
    /// Waits until the journal has room for a record of `len_bytes`.
    pub async fn reserve(&self, len_bytes: usize) -> Result<Reservation<'_>, EngineError> {
        Ok(Reservation { wal: self, len_bytes })
    }

    pub fn lsn_durable(&self) -> Lsn {
        self.next_lsn.load(Ordering::SeqCst)
    }

    pub async fn wait_durable(&self, _lsn: Lsn) -> Result<(), EngineError> {
        Ok(())
    }
}

impl Reservation<'_> {
    /// Appends the record and returns its LSN. Synchronous by design: the
    /// caller applies the record to its shards in the same step.
    pub fn commit(self, payload: &[u8]) -> Lsn {
        debug_assert!(payload.len() <= self.len_bytes);
        self.wal.next_lsn.fetch_add(1, Ordering::SeqCst) + 1
    }
}
