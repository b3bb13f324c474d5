//! The engine handle and its single-key operations.
//!
//! `Engine` is cheap to clone and may be used from any reactor. Every
//! operation on a key runs on the reactor that hosts the key's shard: the call
//! travels there as a message and the result comes back (no shared state on
//! the data path). A write's LSN is assigned and the write applied to the
//! shard's store in one synchronous step, so each shard applies writes in LSN
//! order; durability is asked for separately with [`Engine::wait_durable`].

use std::future::Future;
use std::ops::Bound;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use keel_reactor::{call_on, Runtime};

use crate::error::EngineError;
use crate::limits::Limits;
use crate::merge::MergeOp;
use crate::record::{self, Op};
use crate::route;
use crate::shard::{self, Shard};
use crate::store::Message;
use crate::txn::Transaction;
use crate::wal::Wal;

/// A log sequence number: the position of a committed change in the journal.
pub type Lsn = u64;

static NEXT_ENGINE_UID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct EngineShared {
    pub uid: u64,
    pub shard_count: u32,
    pub reactor_count: usize,
    pub limits: Limits,
    pub next_txn: AtomicU64,
    pub wal: Wal,
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
    /// Creates the engine's shards on the reactors of `runtime` (shard `i` on
    /// reactor `i % reactors`). Call from a thread that is not a reactor.
    pub fn open(runtime: &Runtime, shard_count: u32, limits: Limits) -> Result<Engine, EngineError> {
        let shared = Arc::new(EngineShared {
            uid: NEXT_ENGINE_UID.fetch_add(1, Ordering::Relaxed),
            shard_count,
            reactor_count: runtime.reactor_count(),
            limits,
            next_txn: AtomicU64::new(1),
            wal: Wal::default(),
        });
        for reactor in 0..shared.reactor_count {
            let uid = shared.uid;
            let reactors = shared.reactor_count;
            runtime.call_blocking(reactor, move || async move {
                for id in (0..shard_count).filter(|&s| route::reactor_of(s, reactors) == reactor) {
                    shard::register(uid, Shard::new(id));
                }
            })?;
        }
        Ok(Engine { shared })
    }

    /// Drops the engine's shards from their reactors.
    pub fn close(self, runtime: &Runtime) -> Result<(), EngineError> {
        for reactor in 0..self.shared.reactor_count {
            let uid = self.shared.uid;
            runtime.call_blocking(reactor, move || async move { shard::unregister_all(uid) })?;
        }
        Ok(())
    }

    pub fn shard_count(&self) -> u32 {
        self.shared.shard_count
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    pub fn shard_of(&self, key: &[u8]) -> u32 {
        route::shard_of(key, self.shared.shard_count)
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
        self.shared.wal.lsn_durable()
    }

    /// Waits until every change up to `lsn` is durable.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<(), EngineError> {
        self.shared.wal.wait_durable(lsn).await
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.shared.limits.check_key(key)?;
        let key = key.to_vec();
        self.on_shard(self.shard_of(&key), move |shard| async move { shard.store.get(&key).await }).await?
    }

    pub async fn put(&self, key: &[u8], value: Vec<u8>) -> Result<Lsn, EngineError> {
        self.shared.limits.check_value(value.len())?;
        self.write(key, Message::Put(value)).await
    }

    pub async fn delete(&self, key: &[u8]) -> Result<Lsn, EngineError> {
        self.write(key, Message::Delete).await
    }

    pub async fn merge(&self, key: &[u8], op: MergeOp) -> Result<Lsn, EngineError> {
        self.shared.limits.check_merge(&op)?;
        self.write(key, Message::Merge(op)).await
    }

    async fn write(&self, key: &[u8], message: Message) -> Result<Lsn, EngineError> {
        self.shared.limits.check_key(key)?;
        let op = Op::Write { shard: self.shard_of(key), key: key.to_vec(), message };
        let engine = self.clone();
        self.on_shard(op.shard(), move |shard| async move { engine.write_on_shard(&shard, op).await }).await?
    }

    /// Commits one single-key op on its own shard: reserves journal space,
    /// waits until neither a transaction's key lock nor a gate is in the way
    /// and the store has room, then assigns the LSN and applies in one
    /// synchronous step.
    async fn write_on_shard(&self, shard: &Shard, op: Op) -> Result<Lsn, EngineError> {
        let Op::Write { key, .. } = &op else { unreachable!("single-key writes only") };
        let payload = record::encode(std::slice::from_ref(&op));
        let size_bytes = op.size_bytes();
        // Journal space first: waiting for it must never happen while holding
        // anything a checkpoint (which frees journal space) waits for.
        let reservation = self.shared.wal.reserve(payload.len()).await?;
        loop {
            shard.locks.wait_unlocked(key).await;
            shard.gate.wait_free().await;
            shard.store.make_room(size_bytes).await?;
            if !shard.gate.is_free() || shard.locks.locked_by_other(key, None) || !shard.store.has_room(size_bytes) {
                continue;
            }
            let lsn = reservation.commit(&payload);
            shard.apply_ops(lsn, std::slice::from_ref(&op));
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

    /// Up to `limit` entries with keys in `(start, end)`, in key order across
    /// all shards. Each shard is read at its own moment: a scan is not a
    /// snapshot across shards.
    pub async fn scan(
        &self,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, EngineError> {
        let limit = limit.min(self.shared.limits.scan_entries_max);
        let shards = self.shards_for_range(&start, &end);
        let mut handles = Vec::with_capacity(shards.len());
        for id in shards {
            let engine = self.clone();
            let (start, end) = (start.clone(), end.clone());
            handles.push(keel_reactor::spawn(async move {
                engine
                    .on_shard(id, move |shard| async move {
                        shard.store.scan(as_ref_bound(&start), as_ref_bound(&end), limit).await
                    })
                    .await
            }));
        }
        let mut merged = Vec::new();
        for handle in handles {
            merged.extend(handle.await??);
        }
        merged.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        merged.truncate(limit);
        Ok(merged)
    }

    /// The shards a range may touch: one when the range lies inside one
    /// prefix-routed identifier, else all.
    pub(crate) fn shards_for_range(&self, start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> Vec<u32> {
        let single = match start {
            Bound::Included(s) | Bound::Excluded(s) => {
                route::single_shard_of_range(s, as_ref_bound(end), self.shared.shard_count)
            }
            Bound::Unbounded => None,
        };
        match single {
            Some(id) => vec![id],
            None => (0..self.shared.shard_count).collect(),
        }
    }
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
