//! Space accounting: bytes of file data and inodes in use, persisted per
//! shard as add-merges inside the transactions that change them (a blind
//! merge: no read, no lock, no contention), mirrored in memory for FSSTAT
//! and the NOSPC check.

use std::sync::atomic::{AtomicI64, Ordering};

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
}

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
    /// NOSPC unless `more_bytes` more fit in the capacity.
    pub fn check_space(&self, more_bytes: u64) -> FsResult<()> {
        if self.space.in_use_bytes().saturating_add(more_bytes) > self.options.capacity_bytes {
            return Err(FsError::NoSpace);
        }
        Ok(())
    }
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
