//! Space accounting: bytes of file data and inodes in use, persisted per
//! shard as add-merges inside the transactions that change them (a blind
//! merge: no read, no lock, no contention), mirrored in memory for FSSTAT
//! and the NOSPC check.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use keel_engine::{Engine, MergeOp, Transaction};

use crate::fs::error::{FsError, FsResult};
use crate::fs::keys;
use crate::fs::{Fs, FsShared};

/// Space an inode's records take, counted against the capacity so that
/// creating files fills the file system too.
pub const INODE_BYTES_ESTIMATE: u64 = 512;

#[derive(Debug, Default)]
pub(crate) struct Space {
    used_bytes: AtomicI64,
    inodes: AtomicI64,
    /// Bytes held for writes behind answered but not yet committed (on
    /// every reactor), counted as in use so that NOSPC is answered by a
    /// WRITE's reply and never found after it.
    reserved_bytes: AtomicU64,
}

/// Free space a write behind must leave beyond itself: the capacity counts
/// file data only, so near full the tree's own use could still run out
/// first; the last 1/32 is written before the reply, where NOSPC is answered.
const BEHIND_HEADROOM_DIVISOR: u64 = 32;

/// What FSSTAT reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceReport {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub total_files: u64,
    pub free_files: u64,
}

fn read_i64(v: Option<Vec<u8>>) -> i64 {
    v.and_then(|b| b.try_into().ok()).map(i64::from_le_bytes).unwrap_or(0)
}

impl Space {
    pub async fn load(engine: &Engine, anchors: &[u64]) -> FsResult<Space> {
        let space = Space::default();
        for &a in anchors {
            space.used_bytes.fetch_add(read_i64(engine.get(&keys::shard_used_bytes(a)).await?), Ordering::Relaxed);
            space.inodes.fetch_add(read_i64(engine.get(&keys::shard_inodes(a)).await?), Ordering::Relaxed);
        }
        Ok(space)
    }

    fn in_use_bytes(&self) -> u64 {
        let data = self.used_bytes.load(Ordering::Relaxed).max(0) as u64;
        let inodes = self.inodes.load(Ordering::Relaxed).max(0) as u64;
        data.saturating_add(inodes.saturating_mul(INODE_BYTES_ESTIMATE))
    }
}

impl FsShared {
    /// NOSPC unless `more_bytes` more fit in the capacity beside what is
    /// in use and reserved.
    pub fn check_space(&self, more_bytes: u64) -> FsResult<()> {
        self.check_space_reserved(more_bytes, 0)
    }

    /// [`FsShared::check_space`] for a write that holds a reservation of
    /// `own_reserved_bytes` (not counted against it).
    pub fn check_space_reserved(&self, more_bytes: u64, own_reserved_bytes: u64) -> FsResult<()> {
        let reserved = self.space.reserved_bytes.load(Ordering::SeqCst).saturating_sub(own_reserved_bytes);
        let in_use = self.space.in_use_bytes().saturating_add(reserved);
        if in_use.saturating_add(more_bytes) > self.options.capacity_bytes {
            return Err(FsError::NoSpace);
        }
        Ok(())
    }
}

/// Space held for one write behind until it is dropped (after its commit
/// counted the bytes as used, or after it failed).
pub(crate) struct Reservation {
    shared: Arc<FsShared>,
    pub bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shared.space.reserved_bytes.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Reserves `bytes` for a write behind if they fit with the headroom;
/// `None` sends the WRITE down the path that answers NOSPC itself.
pub(crate) fn reserve(shared: &Arc<FsShared>, bytes: u64) -> Option<Reservation> {
    let capacity = shared.options.capacity_bytes;
    let limit = capacity - capacity / BEHIND_HEADROOM_DIVISOR;
    let fits = |reserved: u64| {
        let after = shared.space.in_use_bytes().saturating_add(reserved).saturating_add(bytes);
        (after <= limit).then_some(reserved + bytes)
    };
    shared.space.reserved_bytes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, fits).ok()?;
    Some(Reservation { shared: Arc::clone(shared), bytes })
}

/// A change in space use that a transaction records on one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpaceDelta {
    pub used_bytes: i64,
    pub inodes: i64,
}

impl Fs {
    /// Adds the persistent half of `delta` to `txn`, on `shard`.
    pub(crate) fn record_space(&self, txn: &mut Transaction, shard: u32, delta: SpaceDelta) -> FsResult<()> {
        let anchor = self.anchor(shard);
        if delta.used_bytes != 0 {
            txn.merge(&keys::shard_used_bytes(anchor), MergeOp::AddI64(delta.used_bytes))?;
        }
        if delta.inodes != 0 {
            txn.merge(&keys::shard_inodes(anchor), MergeOp::AddI64(delta.inodes))?;
        }
        Ok(())
    }

    /// Applies `delta` to the in-memory totals once its transaction committed.
    pub(crate) fn applied_space(&self, delta: SpaceDelta) {
        self.shared.space.used_bytes.fetch_add(delta.used_bytes, Ordering::Relaxed);
        self.shared.space.inodes.fetch_add(delta.inodes, Ordering::Relaxed);
    }

    pub fn space(&self) -> SpaceReport {
        let total_bytes = self.shared.options.capacity_bytes;
        let free_bytes = total_bytes.saturating_sub(self.shared.space.in_use_bytes());
        let files = self.shared.space.inodes.load(Ordering::Relaxed).max(0) as u64;
        let free_files = free_bytes / INODE_BYTES_ESTIMATE;
        SpaceReport { total_bytes, free_bytes, total_files: files + free_files, free_files }
    }
}
