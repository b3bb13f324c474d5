//! A shard: its tree, key locks and apply gate, living on one reactor.
//!
//! Each reactor keeps the shards it hosts in a thread-local registry keyed by
//! (engine, shard), so that tests can run several engines in one process.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use keel_tree::{Admission, Tree};

use crate::error::EngineError;
use crate::locks::{Gate, LockTable, TxnId};
use crate::record::Op;

pub(crate) struct Shard {
    pub id: u32,
    pub tree: Tree,
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
    pub fn new(id: u32, tree: Tree) -> Shard {
        Shard { id, tree, locks: LockTable::default(), gate: Gate::default() }
    }

    /// Applies this shard's part of a committed transaction. Synchronous: the
    /// caller holds the order (see `locks`) and made room first.
    pub fn apply_ops(&self, lsn: u64, ops: &[Op]) {
        for op in ops.iter().filter(|op| op.shard() == self.id) {
            let applied = match op {
                Op::Write { key, message, .. } => self.tree.apply(lsn, key, message.clone()),
                Op::DeleteRange { start, end, .. } => self.tree.apply_delete_range(lsn, start, end.as_deref()),
            };
            self.check_applied(lsn, applied);
        }
    }

    /// [`Shard::apply_ops`] for one op of this shard, taken: a caller that
    /// owns its ops hands their values to the tree without a copy (the tree
    /// encodes them into its buffers and drops them).
    pub fn apply_op(&self, lsn: u64, op: Op) {
        debug_assert_eq!(op.shard(), self.id, "an op applied on another shard");
        let applied = match op {
            Op::Write { key, message, .. } => self.tree.apply(lsn, &key, message),
            Op::DeleteRange { start, end, .. } => self.tree.apply_delete_range(lsn, &start, end.as_deref()),
        };
        self.check_applied(lsn, applied);
    }

    /// Every op was checked against the tree's limits before its record was
    /// written, so applying cannot fail; if it did, the journal still holds
    /// the change and recovery would apply it.
    fn check_applied(&self, lsn: u64, applied: keel_tree::Result<()>) {
        if let Err(e) = applied {
            tracing::error!(shard = self.id, lsn, error = %e, "a journaled op was refused by the tree");
        }
    }

    /// Admission for this shard's part of `ops`.
    pub fn admission(ops: &[Op], shard: u32) -> (usize, Admission) {
        let mine = ops.iter().filter(|op| op.shard() == shard);
        let (mut bytes, mut reclaim) = (0usize, true);
        for op in mine {
            bytes += op.size_bytes();
            reclaim &= op.reclaims();
        }
        (bytes, if reclaim { Admission::Reclaim } else { Admission::Write })
    }

    pub async fn make_room(&self, ops: &[Op]) -> Result<(), EngineError> {
        let (bytes, admission) = Self::admission(ops, self.id);
        self.tree.make_room(bytes, admission).await.map_err(|e| EngineError::from_tree(self.id, e))
    }

    /// [`keel_tree::Tree::room_now`] for `ops`: true when they can be
    /// applied now, without waiting for maintenance.
    pub fn room_now(&self, ops: &[Op]) -> bool {
        let (bytes, admission) = Self::admission(ops, self.id);
        self.tree.room_now(bytes, admission)
    }

    pub fn has_room(&self, ops: &[Op]) -> bool {
        let (bytes, admission) = Self::admission(ops, self.id);
        self.tree.has_room(bytes, admission)
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
