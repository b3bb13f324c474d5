//! Inode numbers, allocated per shard without a global counter.
//!
//! Shard `s` owns the numbers `(s + 1) << 48 | k` that route to `s`. Its
//! reactor hands them out from a *lease*: a block of `k` values reserved by
//! a durable update of the shard's lease key, so one engine write serves
//! `LEASE_K` candidates. Numbers of a lease not used before a crash are
//! skipped, never reused: an inode number names one inode forever, and the
//! generation (the lease's sequence number) is a second guard in handles.

use crate::fs::error::{FsError, FsResult};
use crate::fs::keys;
use crate::fs::local::{with_lease, Lease};
use crate::fs::Fs;

/// Candidates per lease (about LEASE_K / shard_count numbers).
const LEASE_K: u64 = 8192;
const LEASE_BYTES: usize = 12;

fn decode_lease(b: Option<Vec<u8>>) -> FsResult<(u64, u32)> {
    let Some(b) = b else { return Ok((0, 0)) };
    if b.len() != LEASE_BYTES {
        return Err(FsError::Io(format!("inode lease record of {} bytes", b.len())));
    }
    let end = u64::from_le_bytes(b[0..8].try_into().map_err(|_| FsError::Io("lease".into()))?);
    let generation = u32::from_le_bytes(b[8..12].try_into().map_err(|_| FsError::Io("lease".into()))?);
    Ok((end, generation))
}

impl Fs {
    /// A new inode number on `shard` and its generation. Must run on the
    /// shard's reactor.
    pub(crate) async fn alloc_ino_here(&self, shard: u32) -> FsResult<(u64, u32)> {
        let uid = self.shared.uid;
        let shard_count = self.shared.shard_count;
        loop {
            let picked = with_lease(uid, shard, |slot| {
                let lease = slot.as_mut()?;
                while lease.next_k < lease.end_k {
                    let ino = keys::ino_candidate(shard, lease.next_k);
                    lease.next_k += 1;
                    if keys::shard_of_ino(ino, shard_count) == shard {
                        return Some((ino, lease.generation));
                    }
                }
                None
            });
            if let Some(found) = picked {
                return Ok(found);
            }
            self.renew_lease(shard).await?;
        }
    }

    async fn renew_lease(&self, shard: u32) -> FsResult<()> {
        let key = keys::shard_lease(self.anchor(shard));
        let mut txn = self.shared.engine.transaction();
        txn.lock(&[&key]).await?;
        let (end, generation) = decode_lease(txn.get(&key).await?)?;
        let new_end = end + LEASE_K;
        if new_end >= 1 << keys::INO_SHARD_SHIFT {
            return Err(FsError::NoSpace);
        }
        let mut value = new_end.to_le_bytes().to_vec();
        value.extend_from_slice(&(generation + 1).to_le_bytes());
        txn.put(&key, value)?;
        let lsn = txn.commit().await?;
        // Durable before use: a number handed out must never be handed out
        // again after a crash.
        self.wait_durable(lsn).await?;
        let fresh = Lease { next_k: end, end_k: new_end, generation: generation + 1 };
        with_lease(self.shared.uid, shard, |slot| {
            if slot.is_none_or(|old| old.end_k < fresh.end_k) {
                *slot = Some(fresh);
            }
        });
        Ok(())
    }

    /// A new inode number on `shard`, from any reactor.
    pub(crate) async fn alloc_ino(&self, shard: u32) -> FsResult<(u64, u32)> {
        self.on_shard(shard, move |fs| async move { fs.alloc_ino_here(shard).await }).await
    }
}
