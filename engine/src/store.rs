//! The per-shard key-value store the engine applies transactions to.
//!
//! TRANSITIONAL: an in-memory ordered map with the method set of `keel-tree`'s
//! `Tree`, so that the engine layer (routing, locks, transactions, scans) and
//! the gateways can be built while the Bε-tree is written. It is replaced by
//! `keel_tree::Tree` when that lands; nothing outside the engine sees it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::merge::{apply_merge, MergeOp};

/// A change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Put(Vec<u8>),
    Delete,
    Merge(MergeOp),
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    map: RefCell<BTreeMap<Vec<u8>, Vec<u8>>>,
    lsn_applied: Cell<u64>,
}

impl Store {
    fn note_lsn(&self, lsn: u64) {
        debug_assert!(lsn >= self.lsn_applied.get(), "shard applies out of LSN order");
        self.lsn_applied.set(lsn);
    }

    pub fn apply(&self, lsn: u64, key: &[u8], message: &Message) {
        self.note_lsn(lsn);
        let mut map = self.map.borrow_mut();
        match message {
            Message::Put(value) => {
                map.insert(key.to_vec(), value.clone());
            }
            Message::Delete => {
                map.remove(key);
            }
            Message::Merge(op) => match apply_merge(map.get(key).map(Vec::as_slice), op) {
                Some(v) => {
                    map.insert(key.to_vec(), v);
                }
                None => {
                    map.remove(key);
                }
            },
        }
    }

    pub fn apply_delete_range(&self, lsn: u64, start: &[u8], end: Option<&[u8]>) {
        self.note_lsn(lsn);
        let mut map = self.map.borrow_mut();
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let doomed: Vec<Vec<u8>> =
            map.range::<[u8], _>((Bound::Included(start), upper)).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            map.remove(&k);
        }
    }

    pub async fn make_room(&self, _bytes: usize) -> Result<(), crate::EngineError> {
        Ok(())
    }

    pub fn has_room(&self, _bytes: usize) -> bool {
        true
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, crate::EngineError> {
        Ok(self.map.borrow().get(key).cloned())
    }

    pub async fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, crate::EngineError> {
        let map = self.map.borrow();
        Ok(map.range::<[u8], _>((start, end)).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}
