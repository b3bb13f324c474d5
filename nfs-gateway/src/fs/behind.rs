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
//! Attributes: the time a write behind sets is chosen when it is answered,
//! and the writes behind of a file commit in the order they were answered
//! ([`wait_earlier`]), so the attributes a file will have before each of
//! them are known at its reply ([`earlier_effect`]): its WRITE reply carries
//! them as its wcc `before`. A WRITE written before its reply or a SETATTR
//! of the file marks the file ([`changing`]) from before it waits for the
//! writes behind until its commit; no write behind is answered meanwhile
//! (it is written before its reply instead), so none commits between
//! another change's attributes and its own.
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
//! while waiting for others to release theirs. There is no limit per file,
//! by choice: a file whose writes take a reactor's whole budget costs the
//! other files only their early replies (theirs are written before their
//! replies, never waiting), while one client streaming one large file
//! needs the whole budget to keep the device busy.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::task::{Poll, Waker};

use crate::fs::inode::Time;

/// What a write behind does to its file's attributes once committed: the
/// size it extends the file to (at least), and its mtime and ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Effect {
    pub end_bytes: u64,
    pub time: Time,
}

/// One write behind: its order of registration, the chunks it covers and
/// what it does to the attributes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    chunk_first: u64,
    chunk_end: u64,
    effect: Effect,
}

#[derive(Debug, Default)]
struct File {
    entries: Vec<Entry>,
    waiters: Vec<Waker>,
    /// Other changes of the file in flight ([`changing`]).
    changes: usize,
}

impl File {
    fn is_idle(&self) -> bool {
        self.entries.is_empty() && self.changes == 0
    }
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
                if file.is_idle() {
                    table.files.remove(&self.ino);
                }
            }
        });
    }
}

impl Ticket {
    /// Its order of registration among the writes behind of its file system
    /// on this reactor.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

/// The registration sequence number the next write will get: writes
/// registered before now have a smaller one.
fn now_seq(fs_uid: u64) -> u64 {
    with_table(fs_uid, |t| t.next_seq)
}

/// Another change of a file in flight on its home reactor (a WRITE written
/// before its reply, a SETATTR): while one is held, no write behind of the
/// file is registered.
#[derive(Debug)]
pub(crate) struct Changing {
    fs_uid: u64,
    ino: u64,
}

/// Marks `ino` as changing until the guard drops. Taken before the change
/// waits for the writes behind registered before it ([`settle`]).
pub(crate) fn changing(fs_uid: u64, ino: u64) -> Changing {
    with_table(fs_uid, |t| t.files.entry(ino).or_default().changes += 1);
    Changing { fs_uid, ino }
}

impl Drop for Changing {
    fn drop(&mut self) {
        let _ = TABLES.try_with(|t| {
            let mut tables = t.borrow_mut();
            let Some(table) = tables.get_mut(&self.fs_uid) else { return };
            if let Some(file) = table.files.get_mut(&self.ino) {
                file.changes = file.changes.saturating_sub(1);
                if file.is_idle() {
                    table.files.remove(&self.ino);
                }
            }
        });
    }
}

/// What the writes behind of `ino` registered before `seq` still in flight
/// will have done to its attributes once committed: the largest end they
/// write to and the time of the last one. `None` if there are none.
pub(crate) fn earlier_effect(fs_uid: u64, ino: u64, seq: u64) -> Option<Effect> {
    with_table(fs_uid, |t| {
        let earlier = t.files.get(&ino)?.entries.iter().filter(|e| e.seq < seq);
        let last = earlier.clone().max_by_key(|e| e.seq)?;
        let end_bytes = earlier.map(|e| e.effect.end_bytes).max().unwrap_or(0);
        Some(Effect { end_bytes, time: last.effect.time })
    })
}

/// Waits until every write behind of `ino` registered before `seq` has
/// committed (or failed): a write behind commits after the ones answered
/// before it, so that the attributes its reply gave as `before` are the
/// ones it finds.
pub(crate) async fn wait_earlier(fs_uid: u64, ino: u64, seq: u64) {
    wait_before(fs_uid, ino, (0, u64::MAX), seq).await;
}

/// Waits until `ino` has no write behind registered before the call whose
/// chunks meet `[chunk_first, chunk_end)`; later writes are not waited for,
/// so a stream of new writes cannot starve the caller. (A WRITE waits here
/// before [`try_register`], as one written before its reply waits in
/// [`settle`]: for writes that need nothing it holds.)
pub(crate) async fn wait_file(fs_uid: u64, ino: u64, chunk_first: u64, chunk_end: u64) {
    wait_before(fs_uid, ino, (chunk_first, chunk_end), now_seq(fs_uid)).await;
}

/// Waits until `ino` has no write behind registered before `before` whose
/// chunks meet `[chunk_first, chunk_end)`.
async fn wait_before(fs_uid: u64, ino: u64, chunks: (u64, u64), before: u64) {
    let (chunk_first, chunk_end) = chunks;
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
/// `[chunk_first, chunk_end)` of `ino` and doing `effect`, if it may go
/// behind now: no earlier write behind of the same chunks is in flight (a
/// later write must commit after them), no other change of the file is
/// ([`changing`]) and the reactor's writes behind stay within `limits`.
/// `None` means: write it before the reply (never waits, see the module doc).
pub(crate) fn try_register(
    fs_uid: u64,
    ino: u64,
    chunks: (u64, u64),
    bytes: u64,
    limits: Limits,
    effect: Effect,
) -> Option<Ticket> {
    let (chunk_first, chunk_end) = chunks;
    with_table(fs_uid, |t| {
        let meets = |e: &Entry| e.chunk_first < chunk_end && chunk_first < e.chunk_end;
        let busy = t.files.get(&ino).is_some_and(|f| f.changes > 0 || f.entries.iter().any(meets));
        let room = t.writes < limits.writes_max && t.bytes.saturating_add(bytes) <= limits.bytes_max;
        if busy || !room {
            return None;
        }
        let seq = t.next_seq;
        t.next_seq += 1;
        t.writes += 1;
        t.bytes += bytes;
        t.files.entry(ino).or_default().entries.push(Entry { seq, chunk_first, chunk_end, effect });
        Some(Ticket { fs_uid, ino, seq, bytes })
    })
}

/// Writes behind of this file system on this reactor.
pub(crate) fn writes_pending(fs_uid: u64) -> usize {
    with_table(fs_uid, |t| t.writes)
}

/// Waits until this reactor has no write behind of `fs_uid` in flight or
/// `within` has passed; returns how many are left. For stopping only, so it
/// polls (every millisecond) instead of keeping waiters in the table.
pub(crate) async fn drain(fs_uid: u64, within: std::time::Duration) -> usize {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = writes_pending(fs_uid);
        if left == 0 || std::time::Instant::now() >= deadline {
            return left;
        }
        keel_reactor::time::sleep(std::time::Duration::from_millis(1)).await;
    }
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
    const NONE: Effect = Effect { end_bytes: 0, time: Time { secs: 0, nsecs: 0 } };

    fn at(end_bytes: u64, secs: u64) -> Effect {
        Effect { end_bytes, time: Time { secs, nsecs: 0 } }
    }

    #[test]
    fn the_effect_before_a_write_is_that_of_the_ones_registered_before_it() {
        let uid = 9_003;
        let first = try_register(uid, 5, (4, 5), 10, ROOMY, at(300, 7)).unwrap();
        let second = try_register(uid, 5, (0, 1), 10, ROOMY, at(100, 8)).unwrap();
        let third = try_register(uid, 5, (1, 2), 10, ROOMY, at(200, 9)).unwrap();
        assert_eq!(earlier_effect(uid, 5, first.seq()), None);
        assert_eq!(earlier_effect(uid, 5, third.seq()), Some(at(300, 8)), "largest end, last time");
        assert_eq!(earlier_effect(uid, 6, third.seq()), None, "another file's");
        let mut in_order = pin!(wait_earlier(uid, 5, third.seq()));
        assert!(poll_once(in_order.as_mut()).is_pending());
        drop(first);
        assert!(poll_once(in_order.as_mut()).is_pending(), "the second is still in flight");
        drop(second);
        assert!(poll_once(in_order.as_mut()).is_ready());
        drop(third);
    }

    #[test]
    fn no_write_goes_behind_while_another_change_of_its_file_is_in_flight() {
        let uid = 9_004;
        let change = changing(uid, 5);
        assert!(try_register(uid, 5, (0, 1), 10, ROOMY, NONE).is_none(), "the file is changing");
        let other = try_register(uid, 6, (0, 1), 10, ROOMY, NONE).expect("another file is not");
        drop(change);
        let admitted = try_register(uid, 5, (0, 1), 10, ROOMY, NONE).expect("admitted once the change is done");
        drop((other, admitted));
        TABLES.with(|t| assert!(t.borrow()[&uid].files.is_empty(), "idle files leave the table"));
    }

    #[test]
    fn settle_waits_only_for_writes_registered_before_it() {
        let uid = 9_001;
        let first = try_register(uid, 5, (0, 1), 10, ROOMY, NONE).expect("an empty table admits");
        let mut settling = pin!(settle(uid, 5));
        assert!(poll_once(settling.as_mut()).is_pending());
        // A later write of other chunks does not hold the settle back.
        let later = try_register(uid, 5, (1, 2), 10, ROOMY, NONE).expect("other chunks are admitted");
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
        let first = try_register(uid, 7, (2, 4), 40, limits, NONE).expect("an empty table admits");
        assert!(try_register(uid, 7, (3, 5), 10, limits, NONE).is_none(), "same chunks in flight");
        assert!(try_register(uid, 8, (0, 1), 61, limits, NONE).is_none(), "over the byte bound");
        let other = try_register(uid, 8, (0, 1), 60, limits, NONE).expect("another file, within both bounds");
        assert!(try_register(uid, 9, (0, 1), 0, limits, NONE).is_none(), "over the count bound");
        drop(first);
        let second =
            try_register(uid, 7, (3, 5), 40, limits, NONE).expect("admitted once the overlapping write is done");
        assert!(try_register(uid, 9, (0, 1), 1, limits, NONE).is_none(), "bytes are back at the bound");
        drop((other, second));
        assert_eq!(writes_pending(uid), 0);
        assert!(try_register(uid, 9, (0, 1), 100, limits, NONE).is_some(), "all bytes free again");
    }
}
