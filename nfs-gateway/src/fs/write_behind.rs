//! Answering an UNSTABLE WRITE before its commit (the table of such writes
//! and why they exist: `behind.rs`): when a WRITE may go behind, the task
//! that writes and commits it, and what happens when that task fails.
//!
//! Every way a write behind can end without its commit changes the write
//! verifier before its ticket is released (so a COMMIT waiting for it
//! answers with the new verifier): an error, a panic, or the task being
//! dropped ([`Pending`]).

use std::sync::atomic::Ordering;

use crate::fs::behind::{self, Effect, Limits, Ticket};
use crate::fs::data::{check_data_access, StableHow, WriteData, WriteResult, Writer};
use crate::fs::error::{FsError, FsResult};
use crate::fs::inode::{Inode, Time};
use crate::fs::keys::CHUNK_BYTES;
use crate::fs::perm::{self, Cred};
use crate::fs::space::{self, Reservation};
use crate::fs::{Fs, InodeRef, Wcc, WccAttr};

/// Failures of writes behind one boot can have, and the bits of the write
/// verifier that count them. Writes behind stop at the first failure
/// (checked after registering, with no wait before the reply), so a boot
/// has at most as many as were in flight then: the writes bound
/// ([`limits`]) keeps that below 2^16, so the count never wraps or sticks.
pub(crate) const WRITE_FAILURES_BITS: u32 = 16;

/// A reactor's bounds on writes behind: `writes_behind_max` of them (fewer
/// if the failure count could otherwise wrap), and a quarter of the DMA
/// pool shared by all reactors, since each holds its data (in a buffer of
/// that pool when the connection got one) until its commit. The other
/// three quarters stay for reads, tree nodes, checkpoints and the WRITEs
/// being received.
pub(crate) fn limits(writes_behind_max: usize, dma_pool_bytes: usize, reactors: usize) -> Limits {
    let reactors = reactors.max(1);
    let failures_max = (1usize << WRITE_FAILURES_BITS) - 1;
    let writes_max = writes_behind_max.min(failures_max / reactors);
    Limits { writes_max, bytes_max: (dma_pool_bytes / (4 * reactors)) as u64 }
}

/// A write behind's task holds this until it finished; dropped before
/// (the task panicked or was dropped), the write verifier changes and the
/// loss is logged. Fields drop in order: the verifier changes before the
/// space and then the ticket are released.
struct Pending {
    fs: Fs,
    ino: u64,
    offset: u64,
    finished: bool,
    _reservation: Reservation,
    _ticket: Ticket,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.finished {
            let e = FsError::Io("the write behind's task ended before its commit (panicked or dropped)".into());
            self.fs.write_behind_failed(self.ino, self.offset, &e);
        }
    }
}

impl Pending {
    fn finish(mut self, written: FsResult<keel_engine::Lsn>) {
        match written {
            Ok(lsn) => self.fs.note_unstable(self.ino, lsn),
            // Removed or replaced meanwhile: nobody can read the data.
            Err(FsError::Stale) => {}
            Err(e) => self.fs.write_behind_failed(self.ino, self.offset, &e),
        }
        self.finished = true;
    }
}

impl Fs {
    /// Whether an UNSTABLE WRITE of `len` bytes at `offset` may try to go
    /// behind: whole chunks only (they do not depend on the file's bytes),
    /// and no write behind failed in this boot (so a client sending its
    /// data again gets the error in the reply).
    pub(crate) fn may_write_behind(&self, offset: u64, len: usize) -> bool {
        let whole = len > 0 && offset.is_multiple_of(CHUNK_BYTES) && (len as u64).is_multiple_of(CHUNK_BYTES);
        whole && self.shared.behind_limits.writes_max > 0 && self.shared.write_failures.load(Ordering::SeqCst) == 0
    }

    /// Answers an UNSTABLE WRITE of whole chunks once its data is held here,
    /// registered and its space reserved; its device write and commit go on
    /// in a task of this (the file's home) reactor, after earlier writes
    /// behind of the same chunks. `Ok(Err(data))` hands the data back to be
    /// written before the reply: no room now, or a failure since. The
    /// reply's wcc has the attributes before this write (those the writes
    /// behind answered before it leave, see `behind.rs`) and none after: the
    /// space it takes is known only once it is written.
    pub(crate) async fn write_behind(
        &self,
        cred: &Cred,
        r: InodeRef,
        offset: u64,
        data: WriteData,
    ) -> FsResult<Result<WriteResult, WriteData>> {
        let len = data.len() as u64;
        let chunks = (offset / CHUNK_BYTES, (offset + len) / CHUNK_BYTES);
        let limits = self.shared.behind_limits;
        // An overwrite commits after the earlier writes of its chunks.
        behind::wait_file(self.shared.uid, r.ino, chunks.0, chunks.1).await;
        let effect = Effect { end_bytes: offset + len, time: Time::now() };
        let Some(ticket) = behind::try_register(self.shared.uid, r.ino, chunks, len, limits, effect) else {
            return Ok(Err(data));
        };
        let Some(reservation) = space::reserve(&self.shared, len) else { return Ok(Err(data)) };
        // Taken before the inode is read: a write behind that commits
        // meanwhile is then in both, and one still in flight in this.
        let earlier = behind::earlier_effect(self.shared.uid, r.ino, ticket.seq());
        // The answers a WRITE can get before anything is written, checked
        // once registered: a SETATTR from now on waits for this write (and
        // the task does not check access again: a change of mode since is
        // ordered after this write); a REMOVE makes its commit STALE.
        let inode = self.load_unsettled(r.ino).await?.filter(|i| i.generation == r.generation).ok_or(FsError::Stale)?;
        check_data_access(cred, &inode, perm::MAY_WRITE)?;
        // A write behind failed while this one was being checked: this one
        // must get its errors in its reply, like every WRITE after a failure.
        if self.shared.write_failures.load(Ordering::SeqCst) != 0 {
            return Ok(Err(data));
        }
        // Read after registering, with no wait since the check above: a
        // failure of this write (or any) from now on changes it.
        let verifier = self.write_verifier();
        let before = attrs_before(&inode, earlier);
        let writer = Writer::Behind { reserved_bytes: len, seq: ticket.seq(), time: effect.time };
        let pending = Pending {
            fs: self.clone(),
            ino: r.ino,
            offset,
            finished: false,
            _reservation: reservation,
            _ticket: ticket,
        };
        let (fs, cred) = (self.clone(), cred.clone());
        keel_reactor::spawn(async move {
            let written = fs.write_committed(&cred, r, offset, offset + len, data, writer).await;
            pending.finish(written.map(|(_, lsn)| lsn));
        })
        .detach();
        let wcc = Wcc { before: Some(before), after: None };
        Ok(Ok(WriteResult { wcc, count: len as u32, committed: StableHow::Unstable, verifier }))
    }

    /// Waits until the writes behind of this file system on this reactor
    /// have committed (or failed), at most `within`; returns how many are
    /// left. A gateway that stops calls it on every reactor once it stopped
    /// taking calls, so that the WRITEs it answered reach the device before
    /// the engine closes. (One left when the engine closes is lost, but not
    /// silently: the next open changes the write verifier, and clients send
    /// their uncommitted data again.)
    pub async fn drain_writes_behind(&self, within: std::time::Duration) -> usize {
        behind::drain(self.shared.uid, within).await
    }

    /// A write behind failed after its reply: the client must send its data
    /// again, which a new write verifier tells it at COMMIT; later WRITEs
    /// are written before their replies, so they get their errors there.
    pub(crate) fn write_behind_failed(&self, ino: u64, offset: u64, e: &FsError) {
        let failures = self.shared.write_failures.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::error!(ino, offset, failures, error = %e, "a WRITE answered before its commit failed; the write verifier changes");
    }
}

/// The attributes `inode` (as stored) will have once the writes behind
/// answered before (`earlier`) have committed, in order: each extends the
/// size to its end and sets mtime and ctime to its time (ctime only
/// forward: a LINK or RENAME on another reactor may have set it later).
fn attrs_before(inode: &Inode, earlier: Option<Effect>) -> WccAttr {
    let stored = WccAttr::of(inode);
    match earlier {
        None => stored,
        Some(e) => WccAttr { size: stored.size.max(e.end_bytes), mtime: e.time, ctime: stored.ctime.max(e.time) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_of_the_pool_is_shared_by_the_reactors_and_failures_cannot_wrap() {
        let l = limits(32, 64 << 20, 2);
        assert_eq!(l, Limits { writes_max: 32, bytes_max: 8 << 20 });
        assert_eq!(limits(32, 64 << 20, 1).bytes_max, 16 << 20);
        let many = limits(100_000, 64 << 20, 64);
        assert!(many.writes_max * 64 < 1 << WRITE_FAILURES_BITS);
        assert_eq!(limits(0, 64 << 20, 0).writes_max, 0);
    }
}

#[cfg(test)]
mod engine_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::sync::Arc;

    use keel_drivers::BlockDevice;
    use keel_engine::testing::{memory_device, start_on, TestEngineSpec};

    use super::*;
    use crate::fs::FsOptions;

    #[test]
    fn a_write_behind_whose_task_panics_changes_the_verifier_and_wakes_its_waiters() {
        let spec = TestEngineSpec { reactors: 1, shards: 2, ..TestEngineSpec::default() };
        let device = memory_device(&spec) as Arc<dyn BlockDevice>;
        let (runtime, engine) = start_on(device, &spec, true).unwrap();
        runtime
            .call_blocking(0, move || async move {
                let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
                let (uid, ino, before) = (fs.shared.uid, 77, fs.write_verifier());
                let effect = Effect { end_bytes: CHUNK_BYTES, time: Time::now() };
                let ticket = behind::try_register(uid, ino, (0, 1), 10, fs.shared.behind_limits, effect).unwrap();
                let reservation = space::reserve(&fs.shared, 10).unwrap();
                let pending = Pending {
                    fs: fs.clone(),
                    ino,
                    offset: 0,
                    finished: false,
                    _reservation: reservation,
                    _ticket: ticket,
                };
                keel_reactor::spawn(async move {
                    let _held = pending;
                    panic!("a bug in a write behind's task (injected)");
                })
                .detach();
                // Woken by the ticket's release, after the verifier changed.
                behind::settle(uid, ino).await;
                assert_ne!(fs.write_verifier(), before, "COMMIT must tell the client to send its data again");
                assert!(!fs.may_write_behind(0, CHUNK_BYTES as usize), "writes behind are off after a failure");
                assert_eq!(behind::writes_pending(uid), 0);
            })
            .unwrap();
        runtime.stop();
    }

    #[test]
    fn every_failure_gives_a_new_verifier_never_another_boots() {
        let spec = TestEngineSpec { reactors: 1, shards: 2, ..TestEngineSpec::default() };
        let device = memory_device(&spec) as Arc<dyn BlockDevice>;
        let (runtime, engine) = start_on(device, &spec, true).unwrap();
        runtime
            .call_blocking(0, move || async move {
                let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
                let mut seen = std::collections::HashSet::new();
                assert!(seen.insert(fs.write_verifier()));
                let failures_max = (1u64 << WRITE_FAILURES_BITS) - 1;
                for _ in 0..failures_max {
                    fs.write_behind_failed(1, 0, &FsError::Io("injected".into()));
                    let v = fs.write_verifier();
                    assert!(seen.insert(v), "a verifier came back after {} failures", seen.len());
                    assert!(u64::from_be_bytes(v) >> 48 != 0, "looks like a boot counter alone");
                }
            })
            .unwrap();
        runtime.stop();
    }
}
