//! Transactions: lock keys (in the global order), read them, write any keys on
//! any shards, commit as one journal record.
//!
//! Commit protocol for a transaction whose writes touch shards S1 < S2 < ...:
//!
//! 1. wait, holding nothing, until no other transaction holds a key we write;
//! 2. take the apply gate of each shard in order (and make room in its
//!    store); if a key we write was locked meanwhile, give every gate back
//!    and start again — never wait for a key lock while holding a gate, so a
//!    key holder that wants one of our gates cannot deadlock with us;
//! 3. assign the LSN (the record goes to the journal);
//! 4. apply on every shard, releasing its gate and our key locks there. This
//!    step runs in a detached task: once the LSN exists the changes must reach
//!    the shards even if the caller stops waiting.
//!
//! A transaction whose writes touch only shards of the calling reactor skips
//! the gates: steps 2-4 happen in one synchronous step, on all its shards.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::rc::Rc;

use keel_drivers::DmaBuf;
use keel_tree::merge::apply_merge;
use keel_tree::{ExtentRef, MergeOp, Message, Value};

use crate::claim::{externalize_claimed, forget_extents, Claim, Detaching};
use crate::engine::{commit_record, Engine, Lsn};
use crate::error::EngineError;
use crate::locks::TxnId;
use crate::record::{self, Op};
use crate::route;
use crate::shard::{self, Shard};

/// An open transaction. Dropping it without committing releases its locks.
pub struct Transaction {
    engine: Engine,
    id: TxnId,
    /// Keys held, by shard, each list in key order.
    locked: BTreeMap<u32, Vec<Vec<u8>>>,
    ops: Vec<Op>,
    /// Out-of-line values already written by [`Transaction::write_values_now`];
    /// given back if the transaction does not commit.
    extents: Vec<(u32, ExtentRef)>,
    finished: bool,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction").field("id", &self.id).field("ops", &self.ops.len()).finish()
    }
}

impl Transaction {
    pub(crate) fn new(engine: Engine, id: TxnId) -> Self {
        Transaction { engine, id, locked: BTreeMap::new(), ops: Vec::new(), extents: Vec::new(), finished: false }
    }

    pub fn id(&self) -> TxnId {
        self.id
    }

    fn locked_count(&self) -> usize {
        self.locked.values().map(Vec::len).sum()
    }

    fn last_locked(&self) -> Option<(u32, &[u8])> {
        self.locked.iter().next_back().and_then(|(s, keys)| keys.last().map(|k| (*s, k.as_slice())))
    }

    /// Locks `keys`. Keys may be locked in several calls only if each call's
    /// keys all sort after every key already held, in the global order
    /// (shard, key); otherwise `LockOrder`. Waits while others hold them.
    pub async fn lock(&mut self, keys: &[&[u8]]) -> Result<(), EngineError> {
        let limits = self.engine.limits().clone();
        let mut wanted: Vec<(u32, Vec<u8>)> = Vec::with_capacity(keys.len());
        for key in keys {
            limits.check_key(key)?;
            wanted.push((self.engine.shard_of(key), key.to_vec()));
        }
        wanted.sort();
        wanted.dedup();
        wanted.retain(|(s, k)| self.locked.get(s).is_none_or(|held| held.binary_search(k).is_err()));
        if let (Some(last), Some(first)) = (self.last_locked(), wanted.first()) {
            if (first.0, first.1.as_slice()) <= last {
                return Err(EngineError::LockOrder);
            }
        }
        if self.locked_count() + wanted.len() > limits.txn_locks_max {
            return Err(EngineError::TooManyLocks { max: limits.txn_locks_max });
        }
        let mut by_shard: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
        for (s, k) in wanted {
            by_shard.entry(s).or_default().push(k);
        }
        let id = self.id;
        let here = keel_reactor::reactor_id();
        for (s, keys) in by_shard {
            if route::reactor_of(s, self.engine.shared.reactor_count) == here {
                self.lock_local(s, keys).await?;
                continue;
            }
            // Record before waiting, so that a drop mid-wait releases them.
            self.locked.entry(s).or_default().extend(keys.iter().cloned());
            self.engine.on_shard(s, move |shard| async move { shard.lock_all(&keys, id).await }).await?;
        }
        Ok(())
    }

    /// Locks `keys` of shard `s`, which lives on this reactor: the keys are
    /// recorded (a drop mid-wait releases them) and locked from the record,
    /// with no copy for the call.
    async fn lock_local(&mut self, s: u32, keys: Vec<Vec<u8>>) -> Result<(), EngineError> {
        let shard = shard::local(self.engine.shared.uid, s)
            .ok_or_else(|| EngineError::Invalid(format!("shard {s} is not registered on its reactor")))?;
        let held = self.locked.entry(s).or_default();
        let from = held.len();
        held.extend(keys);
        shard.lock_all(&held[from..], self.id).await;
        Ok(())
    }

    /// The value of `key` as this transaction sees it: the store's, with this
    /// transaction's own writes applied.
    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let mut value = self.engine.get(key).await?;
        for op in &self.ops {
            match op {
                Op::Write { key: k, message, .. } if k.as_slice() == key => {
                    value = match message {
                        Message::Put(Value::Inline(v)) => Some(v.clone()),
                        Message::Put(Value::Extent(_)) => {
                            return Err(EngineError::Invalid(
                                "reading a key whose value this transaction already wrote out of line".into(),
                            ))
                        }
                        Message::Delete => None,
                        Message::Merge(m) => apply_merge(value, m),
                    };
                }
                Op::DeleteRange { start, end, .. } => {
                    if key >= start.as_slice() && end.as_deref().is_none_or(|e| key < e) {
                        value = None;
                    }
                }
                Op::Write { .. } => {}
            }
        }
        Ok(value)
    }

    fn push_write(&mut self, key: &[u8], message: Message) -> Result<(), EngineError> {
        self.engine.limits().check_key(key)?;
        self.ops.push(Op::Write { shard: self.engine.shard_of(key), key: key.to_vec(), message });
        Ok(())
    }

    pub fn put(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), EngineError> {
        self.engine.limits().check_value(value.len())?;
        self.push_write(key, Message::Put(Value::Inline(value)))
    }

    /// Puts a value whose bytes are already in DMA memory (from
    /// [`Engine::value_buf`]) and writes it out of line now, as
    /// [`Transaction::write_values_now`] does, without copying it again. A
    /// value small enough to live in its node is put inline instead.
    pub async fn put_buf(&mut self, key: &[u8], buf: DmaBuf) -> Result<(), EngineError> {
        self.put_bufs(vec![(key.to_vec(), buf)]).await
    }

    /// [`Transaction::put_buf`] for several values, whose device writes are
    /// in flight together (one task each on their shard's reactor) rather
    /// than one after the other: a 1 MiB NFS WRITE is 16 chunks. On an
    /// error the values already written are given back when the transaction
    /// drops; the first error is returned. Every value written is either
    /// recorded in the transaction or given back, also when this future is
    /// dropped midway ([`Claim`]).
    pub async fn put_bufs(&mut self, values: Vec<(Vec<u8>, DmaBuf)>) -> Result<(), EngineError> {
        let inline_max = self.engine.shared.config.tree.inline_value_max_bytes;
        let mut by_shard: BTreeMap<u32, Vec<(Vec<u8>, DmaBuf)>> = BTreeMap::new();
        for (key, buf) in values {
            self.engine.limits().check_value(buf.len())?;
            self.engine.limits().check_key(&key)?;
            if buf.len() <= inline_max {
                self.put(&key, buf.to_vec())?;
            } else {
                by_shard.entry(self.engine.shard_of(&key)).or_default().push((key, buf));
            }
        }
        let mut first_error = None;
        for (s, items) in by_shard {
            let engine = self.engine.clone();
            let written = self.engine.on_shard(s, move |shard| write_extents_together(engine, shard, items)).await;
            let results = match written {
                Ok(results) => results,
                Err(e) => vec![Err(e)],
            };
            // Every extent is recorded before anything fallible: one
            // recorded is given back if the transaction does not commit.
            let mut claimed = Vec::with_capacity(results.len());
            for result in results {
                match result {
                    Ok((key, claim)) => claimed.push((key, claim.take(&mut self.extents))),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            for (key, extent) in claimed {
                self.ops.push(Op::Write { shard: s, key, message: Message::Put(Value::Extent(extent)) });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub fn delete(&mut self, key: &[u8]) -> Result<(), EngineError> {
        self.push_write(key, Message::Delete)
    }

    pub fn merge(&mut self, key: &[u8], op: MergeOp) -> Result<(), EngineError> {
        self.engine.limits().check_merge(&op)?;
        self.push_write(key, Message::Merge(op))
    }

    /// Deletes every key in `[start, end)` (`None`: to the end of the key space).
    pub fn delete_range(&mut self, start: &[u8], end: Option<&[u8]>) -> Result<(), EngineError> {
        let end_bound = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
        for shard in self.engine.shards_for_range(&Bound::Included(start.to_vec()), &end_bound) {
            self.ops.push(Op::DeleteRange { shard, start: start.to_vec(), end: end.map(<[u8]>::to_vec) });
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Commits every write as one journal record and applies it on every
    /// shard it touches. Returns the LSN to wait on for durability.
    pub async fn commit(mut self) -> Result<Lsn, EngineError> {
        if self.ops.is_empty() {
            self.release_locks();
            self.finished = true;
            return Ok(self.engine.lsn_durable());
        }
        self.externalize().await?;
        let result = self.commit_prepared(!self.extents.is_empty()).await;
        if result.is_err() {
            forget_extents(&self.engine, std::mem::take(&mut self.extents)).await;
        }
        let lsn = result?;
        debug_assert!(self.extents.is_empty(), "a commit leaves no extent to give back");
        self.finished = true;
        Ok(lsn)
    }

    /// Writes the large values of the writes added so far out of line now,
    /// instead of at commit. A caller that writes large values before it
    /// locks keys lets other transactions on those keys wait only for the
    /// commit, not for the data's device writes (concurrent writers of one
    /// file then overlap their data I/O). The values are given back if the
    /// transaction does not commit; reading such a key through this
    /// transaction afterwards is an error.
    pub async fn write_values_now(&mut self) -> Result<(), EngineError> {
        self.externalize().await
    }

    async fn commit_prepared(&mut self, after_data: bool) -> Result<Lsn, EngineError> {
        let payload = record::encode(&self.ops);
        let max = self.engine.limits().txn_bytes_max;
        if payload.len() > max {
            return Err(EngineError::TransactionTooLarge { len_bytes: payload.len(), max_bytes: max });
        }
        let shards: BTreeSet<u32> = self.ops.iter().map(Op::shard).collect();
        let here = keel_reactor::reactor_id();
        let local_only = shards.iter().all(|&s| route::reactor_of(s, self.engine.shared.reactor_count) == here);
        if local_only {
            self.commit_local(&payload, &shards, after_data).await
        } else {
            self.commit_gated(&payload, &shards, after_data).await
        }
    }

    /// Writes large values out of line on their shards and checks every write
    /// against the tree's limits. Each extent is recorded in `self.extents`
    /// as soon as it is written (so that a drop of this future midway gives
    /// back what was written); on an error the ones written here are given
    /// back at once.
    async fn externalize(&mut self) -> Result<(), EngineError> {
        let ops = std::mem::take(&mut self.ops);
        let mut out = Vec::with_capacity(ops.len());
        let first_new = self.extents.len();
        let mut failure = None;
        for op in ops {
            // Values written earlier (write_values_now) were checked then.
            if failure.is_some() || !matches!(op, Op::Write { .. }) || op.extent().is_some() {
                out.push(op);
                continue;
            }
            let engine = self.engine.clone();
            let s = op.shard();
            match self.engine.on_shard(s, move |shard| externalize_claimed(engine, shard, op)).await {
                Ok(Ok((op, claim))) => {
                    if let Some(claim) = claim {
                        claim.take(&mut self.extents);
                    }
                    out.push(op);
                }
                Ok(Err(e)) | Err(e) => failure = Some(e),
            }
        }
        self.ops = out;
        match failure {
            Some(e) => {
                let written = self.extents.split_off(first_new);
                forget_extents(&self.engine, written).await;
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Keys this transaction writes on `shard`.
    fn write_keys(ops: &[Op], shard: u32) -> Vec<Vec<u8>> {
        Self::write_key_refs(ops, shard).into_iter().map(<[u8]>::to_vec).collect()
    }

    /// [`Transaction::write_keys`], borrowed from `ops` (no copy of each key
    /// for a commit that stays on this reactor).
    fn write_key_refs(ops: &[Op], shard: u32) -> Vec<&[u8]> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Write { shard: s, key, .. } if *s == shard => Some(key.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// Commits a transaction whose shards all live on the calling reactor:
    /// waits (holding nothing) until no other transaction holds a key we
    /// write, no gate is taken and every tree has room, then writes the
    /// record and applies it on every shard in one synchronous step. No gate
    /// is needed: nothing else runs on this reactor during that step, so
    /// readers here see all of the transaction or none of it (a pipeline's
    /// SETs committed together become visible together).
    async fn commit_local(
        &mut self,
        payload: &[u8],
        shard_ids: &BTreeSet<u32>,
        after_data: bool,
    ) -> Result<Lsn, EngineError> {
        let uid = self.engine.shared.uid;
        let mut shards = Vec::with_capacity(shard_ids.len());
        for &id in shard_ids {
            let shard = shard::local(uid, id).expect("local shard registered");
            shards.push((Self::write_key_refs(&self.ops, id), shard));
        }
        let reservation = self.engine.shared.journal.reserve(payload.len()).await?;
        loop {
            for (keys, shard) in &shards {
                for key in keys {
                    if shard.locks.locked_by_other(key, Some(self.id)) {
                        shard.locks.wait_unlocked(key).await;
                    }
                }
                shard.gate.wait_free().await;
                shard.make_room(&self.ops).await?;
            }
            let blocked = shards.iter().any(|(keys, shard)| {
                keys.iter().any(|k| shard.locks.locked_by_other(k, Some(self.id)))
                    || !shard.gate.is_free()
                    || !shard.has_room(&self.ops)
            });
            if blocked {
                continue;
            }
            let lsn = commit_record(reservation, payload, after_data)?;
            // The record names the extents: no longer ours to give back.
            self.extents.clear();
            let shards: Vec<Rc<Shard>> = shards.into_iter().map(|(_, shard)| shard).collect();
            // The record is written: the ops go to the trees, taken, in order.
            for op in std::mem::take(&mut self.ops) {
                let id = op.shard();
                if let Some(shard) = shards.iter().find(|s| s.id == id) {
                    shard.apply_op(lsn, op);
                }
            }
            for shard in &shards {
                if let Some(keys) = self.locked.remove(&shard.id) {
                    shard.unlock_all(&keys, self.id);
                }
            }
            self.release_locks();
            return Ok(lsn);
        }
    }

    async fn commit_gated(
        &mut self,
        payload: &[u8],
        shards: &BTreeSet<u32>,
        after_data: bool,
    ) -> Result<Lsn, EngineError> {
        // Journal space before any gate: a checkpoint, which frees journal
        // space, waits for gates to be free.
        let reservation = self.engine.shared.journal.reserve(payload.len()).await?;
        let gates = GateSet::acquire(&self.engine, self.id, &self.ops, shards).await?;
        let lsn = commit_record(reservation, payload, after_data)?;
        // The record names the extents: no longer ours to give back, and
        // before the next await, or a commit dropped while it waits for the
        // apply below would give back (`Drop`) pages a committed record
        // names, racing the apply that attaches them.
        self.extents.clear();
        // From here the changes must reach every shard whatever happens to us.
        let ops = std::mem::take(&mut self.ops);
        let locked = std::mem::take(&mut self.locked);
        let (done_tx, done_rx) = keel_reactor::oneshot();
        let engine = self.engine.clone();
        let id = self.id;
        let shard_list: Vec<u32> = shards.iter().copied().collect();
        gates.disarm();
        keel_reactor::spawn(async move {
            apply_everywhere(&engine, id, lsn, ops, locked, &shard_list).await;
            done_tx.send(());
        })
        .detach();
        done_rx.await.map_err(|_| EngineError::Unavailable(keel_reactor::CallError::Cancelled))?;
        Ok(lsn)
    }

    /// Releases every key lock still held (fire and forget).
    fn release_locks(&mut self) {
        let locked = std::mem::take(&mut self.locked);
        if locked.is_empty() {
            return;
        }
        let engine = self.engine.clone();
        let id = self.id;
        keel_reactor::spawn(async move {
            for (s, keys) in locked {
                let _ = engine.on_shard(s, move |shard| async move { shard.unlock_all(&keys, id) }).await;
            }
        })
        .detach();
    }
}

/// Writes each buffer out of line on `shard` (whose reactor this runs on),
/// all in flight together; returns each key with its extent, or the error.
async fn write_extents_together(
    engine: Engine,
    shard: Rc<Shard>,
    items: Vec<(Vec<u8>, DmaBuf)>,
) -> Vec<Result<(Vec<u8>, Claim), EngineError>> {
    let tasks = items
        .into_iter()
        .map(|(key, buf)| {
            let (shard, engine) = (Rc::clone(&shard), engine.clone());
            Some(keel_reactor::spawn(async move {
                let tree_error = |e| EngineError::from_tree(shard.id, e);
                let extent = shard.tree.write_extent_buf(buf).await.map_err(tree_error)?;
                if let Err(e) = shard.tree.check_message(&key, &Message::Put(Value::Extent(extent))) {
                    shard.tree.forget_extent(extent);
                    return Err(tree_error(e));
                }
                Ok((key, Claim::new(engine, shard.id, extent)))
            }))
        })
        .collect();
    let mut tasks = Detaching(tasks);
    let mut out = Vec::with_capacity(tasks.0.len());
    for task in &mut tasks.0 {
        if let Some(handle) = task.as_mut() {
            let result = handle.await;
            *task = None;
            out.push(result);
        }
    }
    out
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.finished && keel_reactor::on_reactor() {
            self.release_locks();
            let extents = std::mem::take(&mut self.extents);
            if !extents.is_empty() {
                let engine = self.engine.clone();
                keel_reactor::spawn(async move { forget_extents(&engine, extents).await }).detach();
            }
        }
    }
}

async fn apply_everywhere(
    engine: &Engine,
    id: TxnId,
    lsn: Lsn,
    ops: Vec<Op>,
    mut locked: BTreeMap<u32, Vec<Vec<u8>>>,
    shards: &[u32],
) {
    let ops = std::sync::Arc::new(ops);
    for &s in shards {
        let ops = std::sync::Arc::clone(&ops);
        let keys = locked.remove(&s).unwrap_or_default();
        let applied = engine
            .on_shard(s, move |shard| async move {
                shard.apply_ops(lsn, &ops);
                shard.gate.release(id);
                shard.unlock_all(&keys, id);
            })
            .await;
        if let Err(e) = applied {
            tracing::error!(shard = s, lsn, error = %e, "could not apply a committed transaction; the journal holds it for recovery");
        }
    }
    for (s, keys) in locked {
        let _ = engine.on_shard(s, move |shard| async move { shard.unlock_all(&keys, id) }).await;
    }
}

/// The gates a committing transaction holds; released on drop unless the
/// commit went through (then the apply step releases them).
struct GateSet {
    engine: Engine,
    id: TxnId,
    held: Vec<u32>,
    armed: bool,
}

impl GateSet {
    async fn acquire(engine: &Engine, id: TxnId, ops: &[Op], shards: &BTreeSet<u32>) -> Result<GateSet, EngineError> {
        'retry: loop {
            for &s in shards {
                let keys = Transaction::write_keys(ops, s);
                engine
                    .on_shard(s, move |shard| async move {
                        for key in &keys {
                            if shard.locks.locked_by_other(key, Some(id)) {
                                shard.locks.wait_unlocked(key).await;
                            }
                        }
                    })
                    .await?;
            }
            let mut set = GateSet { engine: engine.clone(), id, held: Vec::new(), armed: true };
            for &s in shards {
                let keys = Transaction::write_keys(ops, s);
                let mine: Vec<Op> = ops.iter().filter(|op| op.shard() == s).cloned().collect();
                set.held.push(s);
                let clear = engine
                    .on_shard(s, move |shard| async move {
                        shard.gate.acquire(id).await;
                        shard.make_room(&mine).await?;
                        Ok::<bool, EngineError>(!keys.iter().any(|k| shard.locks.locked_by_other(k, Some(id))))
                    })
                    .await??;
                if !clear {
                    drop(set);
                    continue 'retry;
                }
            }
            return Ok(set);
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for GateSet {
    fn drop(&mut self) {
        if !self.armed || self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let engine = self.engine.clone();
        let id = self.id;
        keel_reactor::spawn(async move {
            for s in held {
                let _ = engine.on_shard(s, move |shard| async move { shard.gate.release(id) }).await;
            }
        })
        .detach();
    }
}
