//! The engine handle and its single-key operations.
//!
//! `Engine` is cheap to clone and may be used from any reactor. Every
//! operation on a key runs on the reactor that hosts the key's shard: the call
//! travels there as a message and the result comes back (no shared state on
//! the data path except the journal). A write's LSN is assigned and the write
//! applied to the shard's tree in one synchronous step, so each shard applies
//! writes in LSN order; durability is asked for separately with
//! [`Engine::wait_durable`].

use std::future::Future;
use std::ops::Bound;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use keel_drivers::DmaBuf;
use keel_journal::Journal;
use keel_reactor::call_on;
use keel_reactor::io::{self, DeviceId};
use keel_tree::{MergeOp, Message, Value};

use crate::claim::externalize_claimed;
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::layout::PAGE_BYTES;
use crate::limits::Limits;
use crate::record::{self, Op};
use crate::route;
use crate::shard::{self, Shard};
use crate::superblock::Superblock;
use crate::sync::LocalMutex;
use crate::txn::Transaction;

/// A log sequence number: the position of a committed change in the journal.
pub type Lsn = u64;

pub(crate) static NEXT_ENGINE_UID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct EngineShared {
    pub uid: u64,
    pub device: DeviceId,
    pub shard_count: u32,
    pub reactor_count: usize,
    pub config: EngineConfig,
    pub next_txn: AtomicU64,
    pub journal: Journal,
    /// The superblock in force; replaced by each checkpoint.
    pub superblock: Mutex<Superblock>,
    pub stopping: AtomicBool,
    pub checkpoints: AtomicU64,
}

thread_local! {
    /// One checkpoint at a time; checkpoints run on reactor 0.
    pub(crate) static CHECKPOINT_LOCK: Rc<LocalMutex> = Rc::new(LocalMutex::default());
}

/// A handle to an open engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<EngineShared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("shards", &self.shared.shard_count).finish()
    }
}

impl Engine {
    pub fn shard_count(&self) -> u32 {
        self.shared.shard_count
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.config.limits
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    pub fn shard_of(&self, key: &[u8]) -> u32 {
        route::shard_of(key, self.shared.shard_count)
    }

    /// A DMA buffer of `len_bytes` (contents unspecified) on the engine's
    /// device, with room for whole pages, for [`Transaction::put_buf`]; `None`
    /// when the pool has no free buffer now (callers fall back to memory of
    /// their own rather than wait). Call on a reactor.
    pub fn value_buf(&self, len_bytes: usize) -> Option<DmaBuf> {
        let padded = len_bytes.div_ceil(PAGE_BYTES).max(1) * PAGE_BYTES;
        let mut buf = io::dma_pool(self.shared.device).try_alloc(padded).ok()?;
        buf.set_len(len_bytes);
        Some(buf)
    }

    /// Bytes of the DMA pool every device request of the engine draws on
    /// (`[dma] pool_size`): callers that hold buffers for long (answered
    /// writes not yet written) size their share of it from this. Call on a
    /// reactor.
    pub fn dma_pool_bytes(&self) -> usize {
        io::dma_pool(self.shared.device).size_bytes()
    }

    /// The superblock now in force.
    pub fn superblock(&self) -> Superblock {
        self.superblock_lock().clone()
    }

    pub(crate) fn superblock_lock(&self) -> MutexGuard<'_, Superblock> {
        self.shared.superblock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Incremented every time the volume is opened; a value that changes
    /// whenever unacknowledged writes could have been lost (NFS's write
    /// verifier derives from it).
    pub fn boot_counter(&self) -> u64 {
        self.superblock_lock().boot_counter
    }

    /// Runs `f` with shard `id` on the reactor that hosts it.
    pub(crate) async fn on_shard<F, Fut, T>(&self, id: u32, f: F) -> Result<T, EngineError>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let uid = self.shared.uid;
        let reactor = route::reactor_of(id, self.shared.reactor_count);
        let out = call_on(reactor, move || async move {
            let shard = shard::local(uid, id).expect("shard registered on its reactor");
            f(shard).await
        })
        .await?;
        Ok(out)
    }

    /// The highest LSN known durable.
    pub fn lsn_durable(&self) -> Lsn {
        self.shared.journal.lsn_durable()
    }

    /// Waits until every change up to `lsn` is durable.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<(), EngineError> {
        Ok(self.shared.journal.wait_durable(lsn).await?)
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.limits().check_key(key)?;
        let key = key.to_vec();
        self.on_shard(self.shard_of(&key), move |shard| async move {
            shard.tree.get(&key).await.map_err(|e| EngineError::from_tree(shard.id, e))
        })
        .await?
    }

    /// `len` bytes of `key`'s value from `offset` (fewer at the end of the
    /// value), without reading the rest of a large value.
    pub async fn read_range(&self, key: &[u8], offset: u64, len: usize) -> Result<Option<Vec<u8>>, EngineError> {
        self.limits().check_key(key)?;
        self.limits().check_value(len)?;
        let key = key.to_vec();
        self.on_shard(self.shard_of(&key), move |shard| async move {
            shard.tree.read_range(&key, offset, len).await.map_err(|e| EngineError::from_tree(shard.id, e))
        })
        .await?
    }

    /// Stores `value` under `key`. Values above the tree's inline limit are
    /// written once, out of line, before the journal record that names them.
    pub async fn put(&self, key: &[u8], value: Vec<u8>) -> Result<Lsn, EngineError> {
        self.limits().check_key(key)?;
        self.limits().check_value(value.len())?;
        self.write(key, Message::Put(Value::Inline(value))).await
    }

    pub async fn delete(&self, key: &[u8]) -> Result<Lsn, EngineError> {
        self.limits().check_key(key)?;
        self.write(key, Message::Delete).await
    }

    pub async fn merge(&self, key: &[u8], op: MergeOp) -> Result<Lsn, EngineError> {
        self.limits().check_key(key)?;
        self.limits().check_merge(&op)?;
        self.write(key, Message::Merge(op)).await
    }

    async fn write(&self, key: &[u8], message: Message) -> Result<Lsn, EngineError> {
        let op = Op::Write { shard: self.shard_of(key), key: key.to_vec(), message };
        let engine = self.clone();
        self.on_shard(op.shard(), move |shard| async move {
            // The claim gives the value's pages back unless the record that
            // names them is committed: on an error, and when this future is
            // dropped while it waits (its caller went away).
            let (op, claim) = externalize_claimed(engine.clone(), Rc::clone(&shard), op).await?;
            let lsn = engine.write_on_shard(&shard, op).await?;
            if let Some(claim) = claim {
                claim.committed();
            }
            Ok(lsn)
        })
        .await?
    }

    /// Whether [`Engine::externalize`] writes `op`'s value out of line.
    pub(crate) fn goes_out_of_line(&self, op: &Op) -> bool {
        let inline_max = self.shared.config.tree.inline_value_max_bytes;
        matches!(op, Op::Write { message: Message::Put(Value::Inline(v)), .. } if v.len() > inline_max)
    }

    /// Moves a put's value out of line when it is above the inline limit
    /// (on the shard's own reactor), and checks the op against the tree.
    pub(crate) async fn externalize(&self, shard: &Shard, op: Op) -> Result<Op, EngineError> {
        let inline_max = self.shared.config.tree.inline_value_max_bytes;
        let op = match op {
            Op::Write { shard: s, key, message: Message::Put(Value::Inline(v)) } if v.len() > inline_max => {
                let extent = shard.tree.write_extent(&v).await.map_err(|e| EngineError::from_tree(shard.id, e))?;
                Op::Write { shard: s, key, message: Message::Put(Value::Extent(extent)) }
            }
            other => other,
        };
        if let Op::Write { key, message, .. } = &op {
            if let Err(e) = shard.tree.check_message(key, message) {
                if let Some(extent) = op.extent() {
                    shard.tree.forget_extent(extent);
                }
                return Err(EngineError::from_tree(shard.id, e));
            }
        }
        Ok(op)
    }

    /// Commits one single-key op on its own shard: reserves journal space,
    /// waits until neither a transaction's key lock nor a gate is in the way
    /// and the tree has room, then assigns the LSN and applies in one
    /// synchronous step.
    async fn write_on_shard(&self, shard: &Shard, op: Op) -> Result<Lsn, EngineError> {
        let Op::Write { key, .. } = &op else { unreachable!("single-key writes only") };
        let ops = std::slice::from_ref(&op);
        let payload = record::encode(ops);
        // Journal space first: waiting for it must never happen while holding
        // anything a checkpoint (which frees journal space) waits for.
        let reservation = self.shared.journal.reserve(payload.len()).await?;
        loop {
            shard.locks.wait_unlocked(key).await;
            shard.gate.wait_free().await;
            // Room found without waiting still holds at the commit below:
            // nothing awaits in between. Only after `make_room` waited must
            // the budget be checked again (the lock and the gate always are:
            // `wait_free` may have waited after `wait_unlocked` returned).
            let waited = !shard.room_now(ops);
            if waited {
                shard.make_room(ops).await?;
            }
            if !shard.gate.is_free() || shard.locks.locked_by_other(key, None) || (waited && !shard.has_room(ops)) {
                continue;
            }
            let lsn = commit_record(reservation, &payload, op.extent().is_some())?;
            shard.apply_op(lsn, op);
            return Ok(lsn);
        }
    }

    /// Starts a transaction on the calling reactor.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.clone(), self.shared.next_txn.fetch_add(1, Ordering::Relaxed))
    }

    /// Deletes every key in `[start, end)` (`end: None` = to the end), as one
    /// atomic transaction over every shard the range can touch.
    pub async fn delete_range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Lsn, EngineError> {
        let mut txn = self.transaction();
        txn.delete_range(start, end)?;
        txn.commit().await
    }
}

/// Appends a reserved record. A record that names an out-of-line value is
/// durable only after a flush that follows the value's write (FUA on the
/// record's own write would not cover the value).
pub(crate) fn commit_record(
    reservation: keel_journal::Reservation<'_>,
    payload: &[u8],
    after_data: bool,
) -> Result<Lsn, EngineError> {
    let lsn = if after_data { reservation.commit_after_data(payload)? } else { reservation.commit(payload)? };
    Ok(lsn)
}

pub(crate) fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
