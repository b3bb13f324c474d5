//! Synchronous walks over the cached part of the tree: a point lookup and
//! one leaf's worth of a range scan. A walk either finishes or names the
//! first node it needs from the device; the async caller loads that node and
//! walks again from the root, so every finished walk saw one consistent tree.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::buffer::{BaseRef, ChildBuffer};
use crate::filter::key_hash;
use crate::internal::NodeId;
use crate::leaf::Leaf;
use crate::merge::apply_all;
use crate::message::{ExtentRef, MergeOp, Value};
use crate::node::Node;
use crate::table::Location;
use crate::tree::State;

/// What a key's value is, once the walk found everything above its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    Absent,
    Inline(Vec<u8>),
    /// The base is out of line: read it, then apply `merges` (oldest first).
    Extent {
        extent: ExtentRef,
        merges: Vec<MergeOp>,
    },
}

/// A walk's outcome.
#[derive(Debug)]
pub(crate) enum Step<T> {
    Done(T),
    Load(NodeId),
}

/// Resolves a base and the merges found above it (`levels` newest first).
fn resolve(base: Option<Value>, levels: Vec<Vec<MergeOp>>) -> Found {
    let merges: Vec<MergeOp> = levels.into_iter().rev().flatten().collect();
    match base {
        Some(Value::Extent(extent)) => Found::Extent { extent, merges },
        Some(Value::Inline(v)) => apply_all(Some(v), &merges).map_or(Found::Absent, Found::Inline),
        None => apply_all(None, &merges).map_or(Found::Absent, Found::Inline),
    }
}

/// What a get read of an uncached leaf's pages (see `pages.rs`): the
/// leaf's entry for the key in the version `at` names, if it has one.
#[derive(Debug)]
pub(crate) struct PagedRead {
    pub id: NodeId,
    pub at: Location,
    pub entry: Option<(Value, Vec<MergeOp>)>,
}

/// Looks `key` up in the cached tree; `paged` (taken when used) stands in
/// for its leaf when that leaf is not cached and still has the version read.
pub(crate) fn lookup(st: &mut State, key: &[u8], paged: &mut Option<PagedRead>) -> Step<Found> {
    let mut levels: Vec<Vec<MergeOp>> = Vec::new();
    let hash = key_hash(key);
    let mut id = st.root;
    loop {
        let Some(node) = st.cache.touch(id) else {
            let current = st.table.get(id);
            return match paged.take_if(|p| p.id == id && p.at == current) {
                Some(PagedRead { entry: Some((value, merges)), .. }) => {
                    if !merges.is_empty() {
                        levels.push(merges);
                    }
                    Step::Done(resolve(Some(value), levels))
                }
                Some(PagedRead { entry: None, .. }) => Step::Done(resolve(None, levels)),
                None => Step::Load(id),
            };
        };
        match node {
            Node::Internal(n) => {
                let i = n.child_index(key);
                let b = &n.buffers[i];
                let base = match b.get_hashed(key, hash) {
                    Some(p) => {
                        if p.has_merges() {
                            levels.push(p.merges());
                        }
                        match p.base {
                            BaseRef::Put(v) => Some(Some(v.to_value())),
                            BaseRef::Delete => Some(None),
                            BaseRef::Below => None,
                        }
                    }
                    None => b.covers(key).then_some(None),
                };
                if let Some(base) = base {
                    st.counters.gets_from_buffers += 1;
                    return Step::Done(resolve(base, levels));
                }
                id = n.children[i];
            }
            Node::Leaf(l) => {
                let base = match l.get(key) {
                    Some(e) => {
                        if !e.merges.is_empty() {
                            levels.push(e.merges.clone());
                        }
                        Some(e.value.to_value())
                    }
                    None => None,
                };
                return Step::Done(resolve(base, levels));
            }
        }
    }
}

/// One leaf's part of a scan: the live keys in `[cursor, end)` that the leaf
/// holding `cursor` covers, and where the next leaf starts (None: done).
pub(crate) struct LeafScan {
    pub items: Vec<(Vec<u8>, Found)>,
    pub next: Option<Vec<u8>>,
}

pub(crate) fn scan_leaf(st: &mut State, cursor: &[u8], end: Option<&[u8]>) -> Step<LeafScan> {
    // First pass: find the path, loading what is missing.
    let mut path: Vec<(NodeId, usize)> = Vec::new();
    let mut high: Option<Vec<u8>> = None;
    let mut id = st.root;
    let leaf_id = loop {
        let Some(node) = st.cache.touch(id) else { return Step::Load(id) };
        match node {
            Node::Internal(n) => {
                let i = n.child_index(cursor);
                if let Some(h) = n.child_high(i) {
                    if high.as_ref().is_none_or(|cur| h < cur.as_slice()) {
                        high = Some(h.to_vec());
                    }
                }
                path.push((id, i));
                id = n.children[i];
            }
            Node::Leaf(_) => break id,
        }
    };
    let stop: Option<Vec<u8>> = match (&high, end) {
        (Some(h), Some(e)) => Some(if h.as_slice() < e { h.clone() } else { e.to_vec() }),
        (Some(h), None) => Some(h.clone()),
        (None, e) => e.map(<[u8]>::to_vec),
    };
    // Second pass: merge the leaf and every buffer on the path, bottom up.
    let leaf = st.cache.get(leaf_id).and_then(|s| s.node.as_leaf()).expect("found in the first pass");
    let mut acc = leaf_range(leaf, cursor, stop.as_deref());
    for &(nid, i) in path.iter().rev() {
        let n = st.cache.get(nid).and_then(|s| s.node.as_internal()).expect("found in the first pass");
        apply_buffer(&mut acc, &n.buffers[i], cursor, stop.as_deref());
    }
    let items = acc
        .into_iter()
        .filter_map(|(k, (base, merges))| match resolve(base, vec![merges]) {
            Found::Absent => None,
            f => Some((k, f)),
        })
        .collect();
    let next = match (high, end) {
        (Some(h), Some(e)) if h.as_slice() < e => Some(h),
        (Some(h), None) => Some(h),
        _ => None,
    };
    Step::Done(LeafScan { items, next })
}

type Acc = BTreeMap<Vec<u8>, (Option<Value>, Vec<MergeOp>)>;

fn in_stop(k: &[u8], stop: Option<&[u8]>) -> bool {
    stop.is_none_or(|s| k < s)
}

fn leaf_range(leaf: &Leaf, cursor: &[u8], stop: Option<&[u8]>) -> Acc {
    let mut acc = Acc::new();
    let start = leaf.find(cursor).unwrap_or_else(|i| i);
    for i in start..leaf.len() {
        let e = leaf.entry(i);
        if !in_stop(e.key, stop) {
            break;
        }
        acc.insert(e.key.to_vec(), (Some(e.value.to_value()), e.merges));
    }
    acc
}

fn apply_buffer(acc: &mut Acc, b: &ChildBuffer, cursor: &[u8], stop: Option<&[u8]>) {
    for (s, e) in b.tombstones() {
        let lo = if s.as_slice() > cursor { s.as_slice() } else { cursor };
        let hi = match stop {
            Some(st) if st < e.as_slice() => st,
            _ => e.as_slice(),
        };
        if lo >= hi {
            continue;
        }
        let doomed: Vec<Vec<u8>> =
            acc.range::<[u8], _>((Bound::Included(lo), Bound::Excluded(hi))).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            acc.remove(&k);
        }
    }
    for (k, p) in b.range(cursor, stop) {
        match p.base {
            BaseRef::Put(v) => {
                acc.insert(k.to_vec(), (Some(v.to_value()), p.merges()));
            }
            BaseRef::Delete => {
                acc.insert(k.to_vec(), (None, p.merges()));
            }
            BaseRef::Below => acc.entry(k.to_vec()).or_insert((None, Vec::new())).1.extend(p.merges()),
        }
    }
}
