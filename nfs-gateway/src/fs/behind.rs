//! Writes behind the reply: the per-reactor table of UNSTABLE WRITEs that
//! were answered before their data reached the device.
//!
//! Why: a client keeps a window of WRITEs in flight (16 for `keel-perf nfs`),
//! and while each WRITE held its slot for its receive, its device write and
//! its commit, the device saw only part of that window. A WRITE of whole
//! chunks that asks for no durability is answered once its data is in our
//! memory; its device write and its commit (the same transaction as any
//! WRITE: data first, then the record naming it) run in a task of the file's
//! home reactor. Nothing promised is weakened: COMMIT, READ, GETATTR,
//! SETATTR and every other WRITE of the file first wait for such writes of
//! the file that were registered before them ([`settle`]), so they see the
//! file as the client left it, and a write that fails after its reply
//! changes the write verifier (`Fs::write_verifier`), which tells the client
//! at its next COMMIT to send its uncommitted data again.
//!
//! Entries live on the file's home reactor (every operation on an inode
//! runs there), so the table is thread-local and needs no lock.
//!
//! Limits: an answered write holds its data (a DMA buffer of the engine's
//! pool when the connection could get one) until its commit, so the writes
//! behind of a reactor are bounded in count and in bytes ([`Limits`]), the
//! bytes to a share of the DMA pool that leaves the rest to reads, tree I/O
//! and checkpoints. Registering never waits for room: a WRITE that finds
//! none is written before its reply instead, so no WRITE holds its data
//! while waiting for others to release theirs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// One write behind: its order of registration and the chunks it covers.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    chunk_first: u64,
    chunk_end: u64,
}

#[derive(Debug, Default)]
struct File {
    entries: Vec<Entry>,
    waiters: Vec<Waker>,
}

/// One file system's writes behind on this reactor.
#[derive(Debug, Default)]
struct Table {
    files: HashMap<u64, File>,
    writes: usize,
    bytes: u64,
    next_seq: u64,
}

/// Bounds on one reactor's writes behind of one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub writes_max: usize,
    pub bytes_max: u64,
}

thread_local! {
    static TABLES: RefCell<HashMap<u64, Table>> = RefCell::new(HashMap::new());
}

fn with_table<T>(fs_uid: u64, f: impl FnOnce(&mut Table) -> T) -> T {
    TABLES.with(|t| f(t.borrow_mut().entry(fs_uid).or_default()))
}

/// A registered write behind; dropping it (done, failed or dropped with its
/// task) removes it and wakes those waiting on it.
#[derive(Debug)]
pub(crate) struct Ticket {
    fs_uid: u64,
    ino: u64,
    seq: u64,
    bytes: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // At thread teardown the table may be gone already: nothing waits then.
        let _ = TABLES.try_with(|t| {
            let mut tables = t.borrow_mut();
            let Some(table) = tables.get_mut(&self.fs_uid) else { return };
            table.writes = table.writes.saturating_sub(1);
            table.bytes = table.bytes.saturating_sub(self.bytes);
            if let Some(file) = table.files.get_mut(&self.ino) {
                file.entries.retain(|e| e.seq != self.seq);
                std::mem::take(&mut file.waiters).into_iter().for_each(Waker::wake);
                if file.entries.is_empty() {
                    table.files.remove(&self.ino);
                }
            }
        });
    }
}

/// The registration sequence number the next write will get: writes
/// registered before now have a smaller one.
fn now_seq(fs_uid: u64) -> u64 {
    with_table(fs_uid, |t| t.next_seq)
}

/// Waits until `ino` has no write behind registered before the call whose
/// chunks meet `[chunk_first, chunk_end)`; later writes are not waited for,
/// so a stream of new writes cannot starve the caller. (A WRITE waits here
/// before [`try_register`], as one written before its reply waits in
/// [`settle`]: for writes that need nothing it holds.)
pub(crate) async fn wait_file(fs_uid: u64, ino: u64, chunk_first: u64, chunk_end: u64) {
    let before = now_seq(fs_uid);
    poll_fn(|cx| {
        with_table(fs_uid, |t| {
            let Some(file) = t.files.get_mut(&ino) else { return Poll::Ready(()) };
            let meets = |e: &Entry| e.seq < before && e.chunk_first < chunk_end && chunk_first < e.chunk_end;
            if file.entries.iter().any(meets) {
                file.waiters.push(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
    })
    .await;
}

/// Waits until every write behind of `ino` registered before the call has
/// committed (or failed). Must be called on `ino`'s home reactor and without
/// holding `ino`'s attribute lock (those writes take it to commit).
pub(crate) async fn settle(fs_uid: u64, ino: u64) {
    if with_table(fs_uid, |t| t.files.contains_key(&ino)) {
        wait_file(fs_uid, ino, 0, u64::MAX).await;
    }
}

/// Registers a write behind of `bytes` bytes covering chunks
/// `[chunk_first, chunk_end)` of `ino`, if it may go behind now: no earlier
/// write behind of the same chunks is in flight (a later write must commit
/// after them) and the reactor's writes behind stay within `limits`.
/// `None` means: write it before the reply (never waits, see the module doc).
pub(crate) fn try_register(fs_uid: u64, ino: u64, chunks: (u64, u64), bytes: u64, limits: Limits) -> Option<Ticket> {
    let (chunk_first, chunk_end) = chunks;
    with_table(fs_uid, |t| {
        let meets = |e: &Entry| e.chunk_first < chunk_end && chunk_first < e.chunk_end;
        let overlaps = t.files.get(&ino).is_some_and(|f| f.entries.iter().any(meets));
        let room = t.writes < limits.writes_max && t.bytes.saturating_add(bytes) <= limits.bytes_max;
        if overlaps || !room {
            return None;
        }
        let seq = t.next_seq;
        t.next_seq += 1;
        t.writes += 1;
        t.bytes += bytes;
        t.files.entry(ino).or_default().entries.push(Entry { seq, chunk_first, chunk_end });
        Some(Ticket { fs_uid, ino, seq, bytes })
    })
}

/// Writes behind of this file system on this reactor.
#[cfg(test)]
pub(crate) fn writes_pending(fs_uid: u64) -> usize {
    with_table(fs_uid, |t| t.writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct Flag;
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {}
    }

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(Flag));
        f.poll(&mut Context::from_waker(&waker))
    }

    const ROOMY: Limits = Limits { writes_max: 4, bytes_max: 1 << 20 };

    #[test]
    fn settle_waits_only_for_writes_registered_before_it() {
        let uid = 9_001;
        let first = try_register(uid, 5, (0, 1), 10, ROOMY).expect("an empty table admits");
        let mut settling = pin!(settle(uid, 5));
        assert!(poll_once(settling.as_mut()).is_pending());
        // A later write of other chunks does not hold the settle back.
        let later = try_register(uid, 5, (1, 2), 10, ROOMY).expect("other chunks are admitted");
        drop(first);
        assert!(poll_once(settling.as_mut()).is_ready());
        assert_eq!(writes_pending(uid), 1);
        drop(later);
        assert_eq!(writes_pending(uid), 0);
    }

    #[test]
    fn a_write_of_the_same_chunks_or_over_either_bound_is_refused_not_queued() {
        let uid = 9_002;
        let limits = Limits { writes_max: 2, bytes_max: 100 };
        let first = try_register(uid, 7, (2, 4), 40, limits).expect("an empty table admits");
        assert!(try_register(uid, 7, (3, 5), 10, limits).is_none(), "same chunks in flight");
        assert!(try_register(uid, 8, (0, 1), 61, limits).is_none(), "over the byte bound");
        let other = try_register(uid, 8, (0, 1), 60, limits).expect("another file, within both bounds");
        assert!(try_register(uid, 9, (0, 1), 0, limits).is_none(), "over the count bound");
        drop(first);
        let second = try_register(uid, 7, (3, 5), 40, limits).expect("admitted once the overlapping write is done");
        assert!(try_register(uid, 9, (0, 1), 1, limits).is_none(), "bytes are back at the bound");
        drop((other, second));
        assert_eq!(writes_pending(uid), 0);
        assert!(try_register(uid, 9, (0, 1), 100, limits).is_some(), "all bytes free again");
    }
}
