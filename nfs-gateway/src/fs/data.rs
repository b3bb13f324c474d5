//! File data: READ, WRITE, COMMIT and truncation.
//!
//! A file's bytes live in chunks of `CHUNK_BYTES` under its inode prefix.
//! A chunk may be absent (a hole) or shorter than `CHUNK_BYTES` (the rest
//! reads as zeros). Invariant: no chunk exists at or past
//! `ceil(size / CHUNK_BYTES)`, so writing past the end never uncovers old
//! bytes. A write of a whole chunk is a put (the tree stores such values out
//! of line, written once); a partial write is a `PatchAt` merge, which needs
//! no read of the chunk. Every WRITE is one transaction: its chunks and the
//! new size land together or not at all.

use std::ops::Bound;

use keel_engine::{MergeOp, Transaction};

use crate::fs::error::{FsError, FsResult};
use crate::fs::inode::{FileType, Inode, Time, FLAG_SPARSE};
use crate::fs::keys::{self, CHUNK_BYTES};
use crate::fs::local::with_unstable;
use crate::fs::perm::{self, Cred};
use crate::fs::space::SpaceDelta;
use crate::fs::{txn_load_ref, txn_store, Fs, InodeRef, Wcc, FILE_BYTES_MAX};

/// How durable a WRITE must be before its reply (NFS `stable_how`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StableHow {
    Unstable = 0,
    DataSync = 1,
    FileSync = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub data: Vec<u8>,
    pub eof: bool,
    pub attr: Inode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    pub wcc: Wcc,
    pub count: u32,
    pub committed: StableHow,
    pub verifier: [u8; 8],
}

fn round_up_4k(n: u64) -> u64 {
    n.div_ceil(4096) * 4096
}

fn chunks_for(size: u64) -> u64 {
    size.div_ceil(CHUNK_BYTES)
}

fn check_data_access(cred: &Cred, inode: &Inode, want: u32) -> FsResult<()> {
    match inode.ftype {
        FileType::Regular => {}
        FileType::Directory => return Err(FsError::IsDir),
        _ => return Err(FsError::Inval),
    }
    if !perm::may_io(cred, inode, want) {
        return Err(FsError::Access);
    }
    Ok(())
}

impl Fs {
    /// The write verifier: changes exactly when the file system is reopened,
    /// which is the only time unstable writes can be lost.
    pub fn write_verifier(&self) -> [u8; 8] {
        self.shared.boot_counter.to_be_bytes()
    }

    /// READ `count` bytes at `offset`.
    pub async fn read(&self, cred: Cred, r: InodeRef, offset: u64, count: u32) -> FsResult<ReadResult> {
        self.on_home(r.ino, move |fs| async move {
            let inode = fs.load_ref(r).await?;
            check_data_access(&cred, &inode, perm::MAY_READ)?;
            let data = fs.read_bytes(&inode, offset, count).await?;
            let eof = offset.saturating_add(data.len() as u64) >= inode.size;
            Ok(ReadResult { data, eof, attr: inode })
        })
        .await
    }

    async fn read_bytes(&self, inode: &Inode, offset: u64, count: u32) -> FsResult<Vec<u8>> {
        if offset >= inode.size || count == 0 {
            return Ok(Vec::new());
        }
        let end = inode.size.min(offset + u64::from(count));
        let (first, last) = (offset / CHUNK_BYTES, (end - 1) / CHUNK_BYTES);
        let chunks: Vec<(u64, Vec<u8>)> = if first == last {
            let v = self.shared.engine.get(&keys::chunk(inode.ino, first)).await?;
            v.map(|v| vec![(first, v)]).unwrap_or_default()
        } else {
            let start = Bound::Included(keys::chunk(inode.ino, first));
            let stop = Bound::Excluded(keys::chunk(inode.ino, last + 1));
            let got = self.shared.engine.scan(start, stop, (last - first + 1) as usize).await?;
            got.into_iter().filter_map(|(k, v)| Some((keys::chunk_index_of(&k)?, v))).collect()
        };
        let mut out = vec![0u8; (end - offset) as usize];
        for (index, value) in chunks {
            let chunk_start = index * CHUNK_BYTES;
            let from = offset.max(chunk_start);
            let to = end.min(chunk_start + value.len() as u64);
            if from < to {
                let src = &value[(from - chunk_start) as usize..(to - chunk_start) as usize];
                out[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
            }
        }
        Ok(out)
    }

    /// WRITE `data` at `offset`; waits for durability unless `stable` is
    /// `Unstable` (then COMMIT does).
    pub async fn write(
        &self,
        cred: Cred,
        r: InodeRef,
        offset: u64,
        data: Vec<u8>,
        stable: StableHow,
    ) -> FsResult<WriteResult> {
        self.on_home(r.ino, move |fs| async move { fs.write_here(&cred, r, offset, &data, stable).await }).await
    }

    async fn write_here(
        &self,
        cred: &Cred,
        r: InodeRef,
        offset: u64,
        data: &[u8],
        stable: StableHow,
    ) -> FsResult<WriteResult> {
        let end = offset.checked_add(data.len() as u64).filter(|&e| e <= FILE_BYTES_MAX).ok_or(FsError::FBig)?;
        let mut txn = self.shared.engine.transaction();
        txn.lock(&[&keys::attr(r.ino)]).await?;
        let before = txn_load_ref(&mut txn, r).await?;
        check_data_access(cred, &before, perm::MAY_WRITE)?;
        let mut after = before.clone();
        let used_delta = write_chunks(&mut txn, &before, offset, data).await?;
        if used_delta > 0 {
            self.shared.check_space(used_delta as u64)?;
        }
        if offset > before.size && offset / CHUNK_BYTES > before.size / CHUNK_BYTES {
            after.flags |= FLAG_SPARSE;
        }
        after.size = before.size.max(end);
        after.used_bytes = (after.used_bytes as i64 + used_delta).max(0) as u64;
        let now = Time::now();
        after.mtime = now;
        after.ctime = now;
        if !cred.is_root() && after.mode & 0o6000 != 0 {
            after.mode &= !0o6000;
        }
        txn_store(&mut txn, &after)?;
        let delta = SpaceDelta { used_bytes: used_delta, inodes: 0 };
        self.record_space(&mut txn, self.shard_of(r.ino), delta)?;
        let lsn = txn.commit().await?;
        self.applied_space(delta);
        let files_max = self.shared.options.unstable_files_max;
        let committed = if stable == StableHow::Unstable {
            with_unstable(self.shared.uid, |u| u.note(r.ino, lsn, files_max));
            StableHow::Unstable
        } else {
            self.wait_durable(lsn).await?;
            StableHow::FileSync
        };
        let count = data.len() as u32;
        Ok(WriteResult { wcc: Wcc::around(&before, &after), count, committed, verifier: self.write_verifier() })
    }

    /// COMMIT: waits until every write to `r` so far is durable.
    pub async fn commit(&self, r: InodeRef) -> FsResult<(Wcc, [u8; 8])> {
        self.on_home(r.ino, move |fs| async move {
            let inode = fs.load_ref(r).await?;
            let lsn = with_unstable(fs.shared.uid, |u| u.commit_lsn(r.ino));
            fs.wait_durable(lsn).await?;
            with_unstable(fs.shared.uid, |u| u.durable(r.ino, lsn));
            Ok((Wcc::unchanged(&inode), fs.write_verifier()))
        })
        .await
    }
}

/// The stored length of chunk `index` of `inode` before a change.
async fn chunk_len(txn: &mut Transaction, inode: &Inode, index: u64) -> FsResult<u64> {
    let start = index * CHUNK_BYTES;
    if start >= inode.size {
        return Ok(0);
    }
    if inode.flags & FLAG_SPARSE == 0 {
        return Ok((inode.size - start).min(CHUNK_BYTES));
    }
    Ok(txn.get(&keys::chunk(inode.ino, index)).await?.map_or(0, |v| v.len() as u64))
}

/// Adds the chunk writes of `data` at `offset` to `txn`; returns the change
/// in used bytes.
async fn write_chunks(txn: &mut Transaction, inode: &Inode, offset: u64, data: &[u8]) -> FsResult<i64> {
    let mut used_delta = 0i64;
    let mut pos = 0usize;
    while pos < data.len() {
        let at = offset + pos as u64;
        let index = at / CHUNK_BYTES;
        let in_chunk = at % CHUNK_BYTES;
        let n = ((CHUNK_BYTES - in_chunk) as usize).min(data.len() - pos);
        let piece = &data[pos..pos + n];
        let old_len = chunk_len(txn, inode, index).await?;
        let key = keys::chunk(inode.ino, index);
        let new_len = if in_chunk == 0 && n as u64 == CHUNK_BYTES {
            txn.put(&key, piece.to_vec())?;
            CHUNK_BYTES
        } else if index * CHUNK_BYTES >= inode.size {
            // Past the end: the chunk does not exist (see the invariant).
            let mut value = vec![0u8; in_chunk as usize];
            value.extend_from_slice(piece);
            txn.put(&key, value)?;
            in_chunk + n as u64
        } else {
            txn.merge(&key, MergeOp::PatchAt { offset: in_chunk, bytes: piece.to_vec() })?;
            old_len.max(in_chunk + n as u64)
        };
        used_delta += round_up_4k(new_len) as i64 - round_up_4k(old_len) as i64;
        pos += n;
    }
    Ok(used_delta)
}

/// Adds to `txn` what changing `inode`'s size to `size` takes, and updates
/// `inode` (size, used bytes, sparse flag). Shrinking deletes the chunks past
/// the new end with one range delete and cuts the boundary chunk; growing
/// leaves a hole.
pub(crate) async fn truncate_ops(txn: &mut Transaction, inode: &mut Inode, size: u64) -> FsResult<SpaceDelta> {
    let old_used = inode.used_bytes;
    if size < inode.size {
        let keep = chunks_for(size);
        if keep < chunks_for(inode.size) {
            txn.delete_range(&keys::chunk(inode.ino, keep), Some(&keys::chunk_end(inode.ino)))?;
        }
        let cut = size % CHUNK_BYTES;
        if cut != 0 {
            let key = keys::chunk(inode.ino, size / CHUNK_BYTES);
            if let Some(mut v) = txn.get(&key).await? {
                if v.len() as u64 > cut {
                    v.truncate(cut as usize);
                    txn.put(&key, v)?;
                }
            }
        }
        inode.used_bytes =
            if inode.flags & FLAG_SPARSE == 0 { round_up_4k(size) } else { inode.used_bytes.min(round_up_4k(size)) };
    } else {
        inode.flags |= FLAG_SPARSE;
    }
    inode.size = size;
    Ok(SpaceDelta { used_bytes: inode.used_bytes as i64 - old_used as i64, inodes: 0 })
}
