//! The background freer: deletes the data of removed files, a bounded
//! window of chunks per transaction, from each shard's orphan list.
//!
//! Each orphan record says how far freeing got, so the work resumes after a
//! crash exactly where it stopped; the inode number is never reused, so
//! nothing can see the chunks meanwhile. The space is returned to the
//! accounting when the last window is gone.

use std::ops::Bound;
use std::sync::Weak;
use std::time::Duration;

use keel_engine::route;

use crate::fs::error::{FsError, FsResult};
use crate::fs::space::SpaceDelta;
use crate::fs::{keys, Fs, FsShared};

/// Chunks deleted per transaction (64 MiB of data).
const FREE_WINDOW_CHUNKS: u64 = 1024;
/// Orphans looked at per pass over a shard.
const ORPHANS_PER_PASS: usize = 64;
/// Pause between passes that found nothing to do.
const IDLE_POLL: Duration = Duration::from_millis(200);
const ORPHAN_BYTES: usize = 24;

/// Progress of freeing one removed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Orphan {
    pub next_chunk: u64,
    pub end_chunk: u64,
    pub used_bytes: u64,
}

impl Orphan {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(ORPHAN_BYTES);
        for v in [self.next_chunk, self.end_chunk, self.used_bytes] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Orphan> {
        if b.len() != ORPHAN_BYTES {
            return None;
        }
        let at = |o: usize| b[o..o + 8].try_into().ok().map(u64::from_le_bytes);
        Some(Orphan { next_chunk: at(0)?, end_chunk: at(8)?, used_bytes: at(16)? })
    }
}

/// Starts one freer task per reactor, for the shards it hosts.
pub(crate) async fn start(fs: &Fs) -> FsResult<()> {
    for reactor in 0..keel_reactor::reactor_count() {
        let weak = std::sync::Arc::downgrade(&fs.shared);
        keel_reactor::send_to(reactor, move || keel_reactor::spawn(run(weak, reactor)).detach()).await?;
    }
    Ok(())
}

async fn run(weak: Weak<FsShared>, reactor: usize) {
    loop {
        if keel_reactor::stopping() {
            return;
        }
        let Some(shared) = weak.upgrade() else { return };
        let fs = Fs { shared };
        let worked = match fs.free_pass(reactor).await {
            Ok(worked) => worked,
            Err(e) => {
                tracing::warn!(error = %e, "background freeing failed; will retry");
                false
            }
        };
        drop(fs);
        if !worked {
            keel_reactor::time::sleep(IDLE_POLL).await;
        }
    }
}

impl Fs {
    /// One pass over the orphans of the shards on `reactor`; true if it
    /// freed anything.
    async fn free_pass(&self, reactor: usize) -> FsResult<bool> {
        let mut worked = false;
        for shard in 0..self.shared.shard_count {
            if route::reactor_of(shard, keel_reactor::reactor_count()) != reactor {
                continue;
            }
            let (start, end) = keys::orphan_range(self.anchor(shard));
            let found = self.shared.engine.scan(Bound::Included(start), Bound::Excluded(end), ORPHANS_PER_PASS).await?;
            for (key, _) in found {
                let ino = keys::orphan_ino_of(&key).ok_or_else(|| FsError::Io("bad orphan key".into()))?;
                self.free_step(shard, ino).await?;
                worked = true;
            }
        }
        Ok(worked)
    }

    /// Frees one window of `ino`'s chunks.
    async fn free_step(&self, shard: u32, ino: u64) -> FsResult<()> {
        let key = keys::orphan(self.anchor(shard), ino);
        let mut txn = self.shared.engine.transaction();
        txn.lock(&[&key]).await?;
        let Some(orphan) = txn.get(&key).await?.as_deref().and_then(Orphan::decode) else {
            txn.delete(&key)?;
            txn.commit().await?;
            return Ok(());
        };
        let stop = orphan.end_chunk.min(orphan.next_chunk.saturating_add(FREE_WINDOW_CHUNKS));
        if stop > orphan.next_chunk {
            txn.delete_range(&keys::chunk(ino, orphan.next_chunk), Some(&keys::chunk(ino, stop)))?;
        }
        let mut delta = SpaceDelta::default();
        if stop >= orphan.end_chunk {
            txn.delete(&key)?;
            delta.used_bytes = -(orphan.used_bytes as i64);
            self.record_space(&mut txn, shard, delta)?;
        } else {
            txn.put(&key, Orphan { next_chunk: stop, ..orphan }.encode())?;
        }
        txn.commit().await?;
        self.applied_space(delta);
        Ok(())
    }

    /// Removed files whose data is not freed yet.
    pub async fn orphans_pending(&self) -> FsResult<usize> {
        let mut n = 0;
        for shard in 0..self.shared.shard_count {
            let (start, end) = keys::orphan_range(self.anchor(shard));
            n += self.shared.engine.scan(Bound::Included(start), Bound::Excluded(end), usize::MAX).await?.len();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphan_round_trips() {
        let o = Orphan { next_chunk: 3, end_chunk: 4000, used_bytes: 1 << 30 };
        assert_eq!(Orphan::decode(&o.encode()), Some(o));
        assert_eq!(Orphan::decode(&[0; 23]), None);
    }
}
