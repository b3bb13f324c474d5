//! File data: READ, WRITE, COMMIT and truncation.
//!
//! A file's bytes live in chunks of `CHUNK_BYTES` under its inode prefix.
//! A chunk may be absent (a hole) or shorter than `CHUNK_BYTES` (the rest
//! reads as zeros). Invariant: no chunk exists at or past
//! `ceil(size / CHUNK_BYTES)`, so writing past the end never uncovers old
//! bytes. A write of a whole chunk is a put (the tree stores such values out
//! of line, written once, before the inode is locked); a partial write is a
//! `PatchAt` merge, which needs no read of the chunk. Every WRITE is one
//! transaction: its chunks and the new size land together or not at all.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use keel_engine::{DmaBuf, Engine, MergeOp, Transaction};

use crate::fs::error::{FsError, FsResult};
use crate::fs::inode::{FileType, Inode, Time, FLAG_SPARSE};
use crate::fs::keys::{self, CHUNK_BYTES};
use crate::fs::local::with_unstable;
use crate::fs::perm::{self, Cred};
use crate::fs::space::SpaceDelta;
use crate::fs::{behind, write_behind};
use crate::fs::{txn_load_ref, txn_store, Fs, InodeRef, Wcc, FILE_BYTES_MAX};

/// How durable a WRITE must be before its reply (NFS `stable_how`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StableHow {
    Unstable = 0,
    DataSync = 1,
    FileSync = 2,
}

/// The bytes of a WRITE: in memory, or already in DMA memory of the
/// engine's device (see `server::bulk`), from where a whole chunk is
/// written out of line without another copy.
#[derive(Debug)]
pub enum WriteData {
    Bytes(Vec<u8>),
    Dma(DmaBuf),
}

impl WriteData {
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            WriteData::Bytes(v) => v,
            WriteData::Dma(buf) => buf,
        }
    }
}

impl From<Vec<u8>> for WriteData {
    fn from(v: Vec<u8>) -> Self {
        WriteData::Bytes(v)
    }
}

impl From<DmaBuf> for WriteData {
    fn from(buf: DmaBuf) -> Self {
        WriteData::Dma(buf)
    }
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

/// Who writes a WRITE's data: the WRITE before its reply, or a write
/// behind (`write_behind.rs`), whose access was checked when it was
/// answered (a permission change since then is ordered after it) and whose
/// space is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    Reply,
    /// A write behind: its space reservation, its order among the file's
    /// writes behind (it commits after the ones before it) and the time it
    /// sets, chosen at its reply (`behind.rs`).
    Behind {
        reserved_bytes: u64,
        seq: u64,
        time: Time,
    },
}

impl Writer {
    fn check_access(self, cred: &Cred, inode: &Inode) -> FsResult<()> {
        match self {
            Writer::Reply => check_data_access(cred, inode, perm::MAY_WRITE),
            Writer::Behind { .. } if inode.ftype == FileType::Regular => Ok(()),
            Writer::Behind { .. } => Err(FsError::Inval),
        }
    }

    fn reserved_bytes(self) -> u64 {
        match self {
            Writer::Reply => 0,
            Writer::Behind { reserved_bytes, .. } => reserved_bytes,
        }
    }

    /// The mtime and ctime a write sets on top of `before`: now, or a write
    /// behind's time, with ctime kept from going back (a LINK or RENAME on
    /// another reactor is not ordered with writes behind).
    fn times(self, before: &Inode) -> (Time, Time) {
        match self {
            Writer::Reply => {
                let now = Time::now();
                (now, now)
            }
            Writer::Behind { time, .. } => (time, time.max(before.ctime)),
        }
    }
}

fn round_up_4k(n: u64) -> u64 {
    n.div_ceil(4096) * 4096
}

fn chunks_for(size: u64) -> u64 {
    size.div_ceil(CHUNK_BYTES)
}

pub(crate) fn check_data_access(cred: &Cred, inode: &Inode, want: u32) -> FsResult<()> {
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
    /// The write verifier: changes when the file system is reopened and
    /// when a write answered before its commit fails (`write_behind.rs`),
    /// the only times unstable writes can be lost. The failure count goes
    /// into the top 16 bits, so it is the boot counter alone until a
    /// failure, and never a value of another boot (boot counters stay far
    /// below 2^48); a boot has fewer than 2^16 failures
    /// (`write_behind::WRITE_FAILURES_BITS`), so each one changes it.
    pub fn write_verifier(&self) -> [u8; 8] {
        let failures = self.shared.write_failures.load(Ordering::SeqCst);
        let bits = write_behind::WRITE_FAILURES_BITS;
        let counted = failures & ((1 << bits) - 1);
        (self.shared.boot_counter ^ (counted << (64 - bits))).to_be_bytes()
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
        data: impl Into<WriteData>,
        stable: StableHow,
    ) -> FsResult<WriteResult> {
        let data = data.into();
        self.on_home(r.ino, move |fs| async move { fs.write_here(&cred, r, offset, data, stable).await }).await
    }

    async fn write_here(
        &self,
        cred: &Cred,
        r: InodeRef,
        offset: u64,
        data: WriteData,
        stable: StableHow,
    ) -> FsResult<WriteResult> {
        let len = data.len();
        let end = offset.checked_add(len as u64).filter(|&e| e <= FILE_BYTES_MAX).ok_or(FsError::FBig)?;
        let data = if stable == StableHow::Unstable && self.may_write_behind(offset, len) {
            match self.write_behind(cred, r, offset, data).await? {
                Ok(answered) => return Ok(answered),
                Err(data) => data,
            }
        } else {
            data
        };
        // Earlier WRITEs answered before their commit come first, and none
        // is answered until this one committed (not until it is durable).
        let changing = behind::changing(self.shared.uid, r.ino);
        behind::settle(self.shared.uid, r.ino).await;
        let (wcc, lsn) = self.write_committed(cred, r, offset, end, data, Writer::Reply).await?;
        drop(changing);
        let committed = if stable == StableHow::Unstable {
            self.note_unstable(r.ino, lsn);
            StableHow::Unstable
        } else {
            self.wait_durable(lsn).await?;
            StableHow::FileSync
        };
        Ok(WriteResult { wcc, count: len as u32, committed, verifier: self.write_verifier() })
    }

    pub(crate) fn note_unstable(&self, ino: u64, lsn: keel_engine::Lsn) {
        let files_max = self.shared.options.unstable_files_max;
        with_unstable(self.shared.uid, |u| u.note(ino, lsn, files_max));
    }

    /// Writes `data` at `offset` (ending at `end`) as one transaction and
    /// commits it; returns the attributes around it and its LSN.
    pub(crate) async fn write_committed(
        &self,
        cred: &Cred,
        r: InodeRef,
        offset: u64,
        end: u64,
        mut data: WriteData,
        writer: Writer,
    ) -> FsResult<(Wcc, keel_engine::Lsn)> {
        let len = data.len();
        let mut txn = self.shared.engine.transaction();
        let whole = whole_chunks(offset, len);
        if !whole.is_empty() {
            // Whole chunks do not depend on the file's state: their data is
            // written (out of line) before the inode is locked, so that
            // concurrent WRITEs to one file overlap their device writes and
            // queue on the lock only for the metadata. A refused or failed
            // write gives the space back when `txn` drops. (Checked first so
            // that a client without permission costs no device write.)
            let inode = self.load_unsettled(r.ino).await?.filter(|i| i.generation == r.generation);
            writer.check_access(cred, &inode.ok_or(FsError::Stale)?)?;
            let exactly_whole = offset.is_multiple_of(CHUNK_BYTES) && len as u64 == whole.len() as u64 * CHUNK_BYTES;
            // Nothing below reads the bytes of whole chunks again.
            match std::mem::replace(&mut data, WriteData::Bytes(Vec::new())) {
                // Whole chunks in DMA memory (64 KiB and 1 MiB WRITEs): the
                // buffer is cut per chunk, each piece becomes its value
                // without a copy, and the chunks' device writes go out
                // together.
                WriteData::Dma(buf) if exactly_whole => txn.put_bufs(chunk_values(r.ino, whole[0], buf)?).await?,
                // Exactly one chunk in memory: it becomes the value as it is.
                WriteData::Bytes(v) if exactly_whole && whole.len() == 1 => {
                    txn.put(&keys::chunk(r.ino, whole[0]), v)?
                }
                other => {
                    data = other;
                    for &index in &whole {
                        let at = (index * CHUNK_BYTES - offset) as usize;
                        let bytes = data.as_slice()[at..at + CHUNK_BYTES as usize].to_vec();
                        txn.put(&keys::chunk(r.ino, index), bytes)?;
                    }
                }
            }
            txn.write_values_now().await?;
        }
        if let Writer::Behind { seq, .. } = writer {
            behind::wait_earlier(self.shared.uid, r.ino, seq).await;
        }
        txn.lock(&[&keys::attr(r.ino)]).await?;
        let before = txn_load_ref(&mut txn, r).await?;
        writer.check_access(cred, &before)?;
        let mut after = before.clone();
        let used_delta = write_chunks(&self.shared.engine, &mut txn, &before, offset, len, data.as_slice()).await?;
        if used_delta > 0 {
            self.shared.check_space_reserved(used_delta as u64, writer.reserved_bytes())?;
        }
        if offset > before.size && offset / CHUNK_BYTES > before.size / CHUNK_BYTES {
            after.flags |= FLAG_SPARSE;
        }
        after.size = before.size.max(end);
        after.used_bytes = (after.used_bytes as i64 + used_delta).max(0) as u64;
        (after.mtime, after.ctime) = writer.times(&before);
        if !cred.is_root() && after.mode & 0o6000 != 0 {
            after.mode &= !0o6000;
        }
        txn_store(&mut txn, &after)?;
        let delta = SpaceDelta { used_bytes: used_delta, inodes: 0 };
        self.record_space(&mut txn, self.shard_of(r.ino), delta)?;
        let lsn = txn.commit().await?;
        self.applied_space(delta);
        Ok((Wcc::around(&before, &after), lsn))
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

/// The stored length of chunk `index` of `inode` before a change; from the
/// store rather than through `txn` when `txn` already writes the chunk.
async fn chunk_len(engine: &Engine, txn: &mut Transaction, inode: &Inode, index: u64, written: bool) -> FsResult<u64> {
    let start = index * CHUNK_BYTES;
    if start >= inode.size {
        return Ok(0);
    }
    if inode.flags & FLAG_SPARSE == 0 {
        return Ok((inode.size - start).min(CHUNK_BYTES));
    }
    let key = keys::chunk(inode.ino, index);
    let stored = if written { engine.get(&key).await? } else { txn.get(&key).await? };
    Ok(stored.map_or(0, |v| v.len() as u64))
}

/// `buf`, whole chunks from chunk `first` of `ino`, cut per chunk (no copy)
/// with the key of each.
fn chunk_values(ino: u64, first: u64, mut buf: DmaBuf) -> FsResult<Vec<(Vec<u8>, DmaBuf)>> {
    let mut out = Vec::with_capacity(buf.len() / CHUNK_BYTES as usize);
    let mut index = first;
    while buf.len() > CHUNK_BYTES as usize {
        let (head, tail) =
            buf.split_at(CHUNK_BYTES as usize).map_err(|_| FsError::Io("a DMA buffer cut off its pages".into()))?;
        out.push((keys::chunk(ino, index), head));
        (buf, index) = (tail, index + 1);
    }
    out.push((keys::chunk(ino, index), buf));
    Ok(out)
}

/// Indices of the chunks a write of `len` bytes at `offset` covers whole.
fn whole_chunks(offset: u64, len: usize) -> Vec<u64> {
    let first = offset.div_ceil(CHUNK_BYTES);
    let end = (offset + len as u64) / CHUNK_BYTES;
    (first..end.max(first)).collect()
}

/// Adds the chunk writes of a write of `len` bytes at `offset` to `txn`
/// (whole chunks are already in it, see [`whole_chunks`]); returns the
/// change in used bytes. `data` holds the written bytes; it may be empty
/// when the write is exactly whole chunks, whose bytes are not read here.
async fn write_chunks(
    engine: &Engine,
    txn: &mut Transaction,
    inode: &Inode,
    offset: u64,
    len: usize,
    data: &[u8],
) -> FsResult<i64> {
    let mut used_delta = 0i64;
    let mut pos = 0usize;
    while pos < len {
        let at = offset + pos as u64;
        let index = at / CHUNK_BYTES;
        let in_chunk = at % CHUNK_BYTES;
        let n = ((CHUNK_BYTES - in_chunk) as usize).min(len - pos);
        let whole = in_chunk == 0 && n as u64 == CHUNK_BYTES;
        // A whole chunk's key is already written in `txn`: its old length
        // comes from the store (the inode's lock keeps it from changing).
        let old_len = chunk_len(engine, txn, inode, index, whole).await?;
        let key = keys::chunk(inode.ino, index);
        let new_len = if whole {
            CHUNK_BYTES
        } else if index * CHUNK_BYTES >= inode.size {
            let piece = data.get(pos..pos + n).ok_or(FsError::Inval)?;
            // Past the end: the chunk does not exist (see the invariant).
            let mut value = vec![0u8; in_chunk as usize];
            value.extend_from_slice(piece);
            txn.put(&key, value)?;
            in_chunk + n as u64
        } else {
            let piece = data.get(pos..pos + n).ok_or(FsError::Inval)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_chunks_are_the_aligned_full_ones() {
        let c = CHUNK_BYTES;
        assert_eq!(whole_chunks(0, 100), Vec::<u64>::new());
        assert_eq!(whole_chunks(0, c as usize), vec![0]);
        assert_eq!(whole_chunks(1, c as usize), Vec::<u64>::new());
        assert_eq!(whole_chunks(1, 2 * c as usize), vec![1]);
        assert_eq!(whole_chunks(c, 3 * c as usize), vec![1, 2, 3]);
        assert_eq!(whole_chunks(c - 1, 2), Vec::<u64>::new());
    }
}
