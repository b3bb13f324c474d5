//! A shard: its store, key locks and apply gate, living on one reactor.
//!
//! Each reactor keeps the shards it hosts in a thread-local registry keyed by
//! (engine, shard), so that tests can run several engines in one process.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::locks::{Gate, LockTable, TxnId};
use crate::record::Op;
use crate::store::Store;

pub(crate) struct Shard {
    pub id: u32,
    pub store: Store,
    pub locks: LockTable,
    pub gate: Gate,
}

thread_local! {
    static LOCAL_SHARDS: RefCell<HashMap<(u64, u32), Rc<Shard>>> = RefCell::new(HashMap::new());
}

pub(crate) fn register(engine_uid: u64, shard: Shard) {
    LOCAL_SHARDS.with(|s| s.borrow_mut().insert((engine_uid, shard.id), Rc::new(shard)));
}

pub(crate) fn unregister_all(engine_uid: u64) {
    LOCAL_SHARDS.with(|s| s.borrow_mut().retain(|(uid, _), _| *uid != engine_uid));
}

/// The shard `id` of engine `engine_uid`, which must live on this reactor.
pub(crate) fn local(engine_uid: u64, id: u32) -> Option<Rc<Shard>> {
    LOCAL_SHARDS.with(|s| s.borrow().get(&(engine_uid, id)).cloned())
}

impl Shard {
    pub fn new(id: u32) -> Shard {
        Shard { id, store: Store::default(), locks: LockTable::default(), gate: Gate::default() }
    }

    /// Applies this shard's part of a committed transaction. Synchronous: the
    /// caller holds the order (see `locks`).
    pub fn apply_ops(&self, lsn: u64, ops: &[Op]) {
        for op in ops.iter().filter(|op| op.shard() == self.id) {
            match op {
                Op::Write { key, message, .. } => self.store.apply(lsn, key, message),
                Op::DeleteRange { start, end, .. } => self.store.apply_delete_range(lsn, start, end.as_deref()),
            }
        }
    }

    /// Locks `keys` (already in order) for `txn`.
    pub async fn lock_all(&self, keys: &[Vec<u8>], txn: TxnId) {
        for key in keys {
            self.locks.lock(key, txn).await;
        }
    }

    pub fn unlock_all(&self, keys: &[Vec<u8>], txn: TxnId) {
        for key in keys {
            self.locks.unlock(key, txn);
        }
    }
}
