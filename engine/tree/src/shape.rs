//! Keeping the tree's shape: flushing a buffer into a child, splitting nodes
//! that grew past their size or fanout, and merging nodes that shrank below
//! a quarter of it. Everything here is synchronous and runs on nodes that
//! are already cached; the async callers in `maintenance.rs` load what a
//! step says it needs and run the step again.

use crate::buffer::ChildBuffer;
use crate::config::TreeConfig;
use crate::internal::{Internal, NodeId};
use crate::leaf::Leaf;
use crate::lookup::Step;
use crate::node::Node;
use crate::tree::State;

/// A node on the way down from the root, with the lower bound of its key
/// range (empty for the leftmost nodes): a key that routes to it again.
#[derive(Debug, Clone)]
pub(crate) struct PathElem {
    pub id: NodeId,
    pub low: Vec<u8>,
}

/// The path from the root to `target`, following `key`. `Done(None)` when
/// `target` is not on that path (it was merged away).
pub(crate) fn find_path(st: &mut State, key: &[u8], target: NodeId) -> Step<Option<Vec<PathElem>>> {
    let mut path = Vec::new();
    let mut id = st.root;
    let mut low = Vec::new();
    loop {
        path.push(PathElem { id, low: low.clone() });
        let Some(node) = st.cache.touch(id) else { return Step::Load(id) };
        if id == target {
            return Step::Done(Some(path));
        }
        match node {
            Node::Leaf(_) => return Step::Done(None),
            Node::Internal(n) => {
                let i = n.child_index(key);
                if let Some(l) = n.child_low(i) {
                    low = l.to_vec();
                }
                id = n.children[i];
            }
        }
    }
}

fn internal(st: &State, id: NodeId) -> &Internal {
    st.cache.get(id).and_then(|s| s.node.as_internal()).expect("an internal node on a walked path")
}

pub(crate) fn is_overfull(st: &State, cfg: &TreeConfig, id: NodeId) -> bool {
    st.cache.get(id).and_then(|s| s.node.as_internal()).is_some_and(|n| n.encoded_bytes() > cfg.internal_bytes)
}

pub(crate) fn is_underfull(st: &State, cfg: &TreeConfig, id: NodeId) -> bool {
    match st.cache.get(id).map(|s| &s.node) {
        Some(Node::Leaf(l)) => l.encoded_bytes() < cfg.leaf_bytes / 4,
        Some(Node::Internal(n)) => n.children.len() < (cfg.fanout_max / 4).max(2),
        None => false,
    }
}

/// Which buffer of a node a flush empties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// The one with the most bytes, when the node's encoding is over
    /// `above_bytes` (0: whenever a buffer holds anything).
    Heaviest { above_bytes: usize },
    /// The first one holding deletes (space reclamation).
    Deletes,
}

/// Flushes one buffer of `id` into its child, as `pick` says; splits what
/// grew too big on the way. `Done(false)` when there was nothing to flush.
pub(crate) fn flush_step(st: &mut State, cfg: &TreeConfig, id: NodeId, key: &[u8], pick: Pick) -> Step<bool> {
    let mut path = match find_path(st, key, id) {
        Step::Load(n) => return Step::Load(n),
        Step::Done(None) => {
            st.work.overfull.retain(|(i, _)| *i != id);
            return Step::Done(false);
        }
        Step::Done(Some(path)) => path,
    };
    let n = internal(st, id);
    let i = match pick {
        Pick::Heaviest { above_bytes } => {
            let (i, bytes) = n.heaviest_child();
            if bytes == 0 || n.encoded_bytes() <= above_bytes {
                st.work.overfull.retain(|(w, _)| *w != id);
                return Step::Done(false);
            }
            i
        }
        Pick::Deletes => match n.buffers.iter().position(ChildBuffer::has_deletes) {
            Some(i) => i,
            None => return Step::Done(false),
        },
    };
    let child = n.children[i];
    let child_low = n.child_low(i).map_or_else(|| path.last().expect("non-empty").low.clone(), <[u8]>::to_vec);
    if !st.cache.contains(child) {
        return Step::Load(child);
    }
    let inline_max = cfg.inline_value_max_bytes;
    let Node::Internal(n) = st.node_mut(id) else { unreachable!("checked internal") };
    let buffer = n.buffers[i].take();
    st.changed(id, Vec::new());
    let mut garbage = Vec::new();
    match st.node_mut(child) {
        Node::Internal(c) => c.absorb(buffer, inline_max, &mut garbage),
        Node::Leaf(l) => {
            let applied = l.apply(buffer, inline_max, &mut garbage);
            *l = applied.leaf;
            if applied.needs_materialize {
                st.work.push_materialize(child);
            }
        }
    }
    st.changed(child, garbage);
    st.counters.flushes += 1;
    if is_overfull(st, cfg, child) {
        st.work.push_overfull(child, child_low.clone());
    }
    path.push(PathElem { id: child, low: child_low.clone() });
    split_up(st, cfg, &path);
    if is_underfull(st, cfg, child) && st.cache.contains(child) {
        st.work.push_underfull(child, child_low);
    }
    if !is_overfull(st, cfg, id) {
        st.work.overfull.retain(|(w, _)| *w != id);
    }
    Step::Done(true)
}

/// Splits the last node of `path` if it is too big, and its ancestors in
/// turn; a split root gets a new root above it.
pub(crate) fn split_up(st: &mut State, cfg: &TreeConfig, path: &[PathElem]) {
    for k in (0..path.len()).rev() {
        let elem = &path[k];
        let Some((ids, pivots)) = split_node(st, cfg, elem) else { return };
        if k == 0 {
            let height = st.cache.get(elem.id).map_or(0, |s| s.node.height()) + 1;
            let n = ids.len();
            let root = Internal::new(height, pivots, ids, vec![Default::default(); n]);
            st.root = st.create_node(Node::Internal(root));
            st.height = height;
            st.counters.root_splits += 1;
            return;
        }
        let parent = path[k - 1].id;
        let i = internal(st, parent).children.iter().position(|c| *c == elem.id).expect("child of its parent");
        let Node::Internal(p) = st.node_mut(parent) else { unreachable!("parents are internal") };
        p.replace_child(i, &ids, pivots);
        st.changed(parent, Vec::new());
    }
}

/// Splits one node that is over its size or fanout; returns the ids of the
/// pieces (the first is the node itself) and the pivots between them.
fn split_node(st: &mut State, cfg: &TreeConfig, elem: &PathElem) -> Option<(Vec<NodeId>, Vec<Vec<u8>>)> {
    let id = elem.id;
    match &st.cache.get(id)?.node {
        Node::Leaf(l) if l.encoded_bytes() > cfg.leaf_bytes => {
            let (pieces, pivots) = l.split(cfg.leaf_bytes);
            if pieces.len() < 2 {
                return None;
            }
            let inline_max = cfg.inline_value_max_bytes;
            let mut pieces = pieces.into_iter();
            let first = pieces.next().expect("two pieces");
            let mut ids = vec![id];
            for piece in pieces {
                let needs = piece.needs_materialize(inline_max);
                let new = st.create_node(Node::Leaf(piece));
                if needs {
                    st.work.push_materialize(new);
                }
                ids.push(new);
            }
            *st.node_mut(id) = Node::Leaf(first);
            st.changed(id, Vec::new());
            st.counters.leaf_splits += 1;
            Some((ids, pivots))
        }
        Node::Internal(n) if n.children.len() > cfg.fanout_max => {
            let mut ids = vec![id];
            let mut pivots = Vec::new();
            let Node::Internal(n) = st.node_mut(id) else { unreachable!() };
            let mut rights = Vec::new();
            while n.children.len() > cfg.fanout_max {
                let (right, pivot) = n.split();
                rights.push((right, pivot));
            }
            st.changed(id, Vec::new());
            // The halves came off the right end; give them ids left to right.
            for (right, pivot) in rights.into_iter().rev() {
                let new = st.create_node(Node::Internal(right));
                if is_overfull(st, cfg, new) {
                    st.work.push_overfull(new, pivot.clone());
                }
                ids.push(new);
                pivots.push(pivot);
            }
            st.counters.internal_splits += 1;
            Some((ids, pivots))
        }
        _ => None,
    }
}

/// Merges an underfull node with a neighbour, or collapses a root with a
/// single internal child.
pub(crate) fn underflow_step(st: &mut State, cfg: &TreeConfig, id: NodeId, key: &[u8]) -> Step<()> {
    let done = |st: &mut State| {
        st.work.underfull.retain(|(w, _)| *w != id);
        Step::Done(())
    };
    let path = match find_path(st, key, id) {
        Step::Load(n) => return Step::Load(n),
        Step::Done(None) => return done(st),
        Step::Done(Some(path)) => path,
    };
    if path.len() == 1 {
        return collapse_root(st, cfg, id).map_or_else(Step::Load, |()| done(st));
    }
    let parent = path[path.len() - 2].clone();
    let p = internal(st, parent.id);
    if !is_underfull(st, cfg, id) || p.children.len() < 2 {
        return done(st);
    }
    let i = p.children.iter().position(|c| *c == id).expect("child of its parent");
    let l = if i + 1 < p.children.len() { i } else { i - 1 };
    let (left, right) = (p.children[l], p.children[l + 1]);
    let left_low = p.child_low(l).map_or_else(|| parent.low.clone(), <[u8]>::to_vec);
    for n in [left, right] {
        if !st.cache.contains(n) {
            return Step::Load(n);
        }
    }
    enum Join {
        Leaves(Leaf),
        Internals(Vec<u8>, Internal),
        No,
    }
    let join_kind = match (&st.cache.get(left).expect("loaded").node, &st.cache.get(right).expect("loaded").node) {
        (Node::Leaf(a), Node::Leaf(b)) => Join::Leaves(Leaf::concat(a, b)),
        (Node::Internal(a), Node::Internal(b)) if a.children.len() + b.children.len() <= cfg.fanout_max => {
            Join::Internals(internal(st, parent.id).pivots()[l].clone(), b.clone())
        }
        _ => Join::No,
    };
    let merged = match join_kind {
        Join::Leaves(leaf) => merge_leaves(st, cfg, parent.id, l, leaf),
        Join::Internals(pivot, right_node) => {
            let Node::Internal(a) = st.node_mut(left) else { unreachable!() };
            a.concat(pivot, right_node);
            st.changed(left, Vec::new());
            join(st, parent.id, l);
            if is_overfull(st, cfg, left) {
                st.work.push_overfull(left, left_low.clone());
            }
            true
        }
        Join::No => false,
    };
    if merged {
        st.counters.merges += 1;
        if is_underfull(st, cfg, parent.id) {
            st.work.push_underfull(parent.id, parent.low.clone());
        }
        if is_underfull(st, cfg, left) {
            st.work.push_underfull(left, left_low);
        }
    }
    done(st)
}

/// Replaces children `l` and `l + 1` of `parent` by the concatenation of the
/// two leaves (split again in two when it is too big).
fn merge_leaves(st: &mut State, cfg: &TreeConfig, parent: NodeId, l: usize, merged: Leaf) -> bool {
    let left = internal(st, parent).children[l];
    let needs = merged.needs_materialize(cfg.inline_value_max_bytes);
    if merged.encoded_bytes() <= cfg.leaf_bytes {
        *st.node_mut(left) = Node::Leaf(merged);
        st.changed(left, Vec::new());
        join(st, parent, l);
    } else {
        let (pieces, pivots) = merged.split(cfg.leaf_bytes);
        let mut pieces = pieces.into_iter();
        *st.node_mut(left) = Node::Leaf(pieces.next().expect("at least one piece"));
        st.changed(left, Vec::new());
        join(st, parent, l);
        let mut ids = vec![left];
        for piece in pieces {
            let piece_needs = piece.needs_materialize(cfg.inline_value_max_bytes);
            let new = st.create_node(Node::Leaf(piece));
            if piece_needs {
                st.work.push_materialize(new);
            }
            ids.push(new);
        }
        let Node::Internal(p) = st.node_mut(parent) else { unreachable!() };
        p.replace_child(l, &ids, pivots);
        st.changed(parent, Vec::new());
    }
    if needs {
        st.work.push_materialize(left);
    }
    true
}

/// Joins children `l` and `l + 1` of `parent` and deletes the right one.
fn join(st: &mut State, parent: NodeId, l: usize) {
    let Node::Internal(p) = st.node_mut(parent) else { unreachable!() };
    let gone = p.join_children(l);
    st.changed(parent, Vec::new());
    st.delete_node(gone);
}

/// A root with one internal child hands its buffer down and steps aside.
/// `Err(id)`: that node must be loaded first.
fn collapse_root(st: &mut State, cfg: &TreeConfig, root: NodeId) -> Result<(), NodeId> {
    let r = internal(st, root);
    if r.children.len() != 1 || r.height < 2 {
        return Ok(());
    }
    let child = r.children[0];
    if !st.cache.contains(child) {
        return Err(child);
    }
    let Node::Internal(r) = st.node_mut(root) else { unreachable!() };
    let buffer = r.buffers[0].take();
    st.changed(root, Vec::new());
    let mut garbage = Vec::new();
    let Node::Internal(c) = st.node_mut(child) else { unreachable!("height >= 2") };
    c.absorb(buffer, cfg.inline_value_max_bytes, &mut garbage);
    st.changed(child, garbage);
    st.delete_node(root);
    st.root = child;
    st.height -= 1;
    st.counters.root_collapses += 1;
    if is_overfull(st, cfg, child) {
        st.work.push_overfull(child, Vec::new());
    }
    if is_underfull(st, cfg, child) {
        st.work.push_underfull(child, Vec::new());
    }
    Ok(())
}
