//! Shared by the engine's crash and fault tests: a record of committed
//! changes by LSN and a `BTreeMap` oracle that applies them the way the
//! engine must.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::Bound;

use keel_engine::merge::apply_merge;
use keel_engine::MergeOp;

/// One change of a committed operation.
#[derive(Debug, Clone)]
pub enum Change {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Merge(Vec<u8>, MergeOp),
    /// `[start, end)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// An operation the engine acknowledged with `lsn`: all its changes share it.
#[derive(Debug, Clone)]
pub struct Committed {
    pub lsn: u64,
    pub changes: Vec<Change>,
}

/// What the engine must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Oracle {
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Order-independent hash of every entry (a wrapping sum of entry hashes),
    /// kept up to date so prefixes can be compared cheaply.
    pub hash: u64,
}

pub fn entry_hash(key: &[u8], value: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

/// The order-independent hash of a whole state.
pub fn state_hash<'a>(entries: impl IntoIterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>) -> u64 {
    entries.into_iter().fold(0u64, |h, (k, v)| h.wrapping_add(entry_hash(k, v)))
}

impl Oracle {
    fn set(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        if let Some(old) = self.map.remove(key) {
            self.hash = self.hash.wrapping_sub(entry_hash(key, &old));
        }
        if let Some(v) = value {
            self.hash = self.hash.wrapping_add(entry_hash(key, &v));
            self.map.insert(key.to_vec(), v);
        }
    }

    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Put(k, v) => self.set(k, Some(v.clone())),
            Change::Delete(k) => self.set(k, None),
            Change::Merge(k, op) => {
                let base = self.map.get(k).cloned();
                self.set(k, apply_merge(base, op));
            }
            Change::DeleteRange(start, end) => {
                if start >= end {
                    return;
                }
                let doomed: Vec<Vec<u8>> = self
                    .map
                    .range::<[u8], _>((Bound::Included(start.as_slice()), Bound::Excluded(end.as_slice())))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    self.set(&k, None);
                }
            }
        }
    }

    pub fn apply_all(&mut self, committed: &Committed) {
        for change in &committed.changes {
            self.apply(change);
        }
    }

    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// A short description of how two states differ, for failure messages.
pub fn describe_difference(got: &[(Vec<u8>, Vec<u8>)], want: &Oracle) -> String {
    let got_map: BTreeMap<&Vec<u8>, &Vec<u8>> = got.iter().map(|(k, v)| (k, v)).collect();
    let mut lines = Vec::new();
    for (k, v) in &want.map {
        match got_map.get(k) {
            None => lines.push(format!("missing {}", String::from_utf8_lossy(k))),
            Some(g) if *g != v => lines.push(format!("different value for {}", String::from_utf8_lossy(k))),
            Some(_) => {}
        }
    }
    for (k, _) in got {
        if !want.map.contains_key(k) {
            lines.push(format!("unexpected {}", String::from_utf8_lossy(k)));
        }
    }
    let total = lines.len();
    lines.truncate(8);
    format!("{total} differences: {}", lines.join(", "))
}
