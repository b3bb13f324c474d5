//! The tree of one shard: its state, how it is opened, and how messages are
//! applied. Reads are in `read.rs`, flushing and eviction in
//! `maintenance.rs`, checkpoints in `checkpoint.rs`.
//!
//! A `Tree` lives on one reactor and is shared by that reactor's tasks. Every
//! method borrows the state only between await points; async methods that
//! need a node from the device load it and then start their walk again from
//! the root, so a flush, split, merge or eviction that happened while they
//! waited is never half-seen.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use keel_reactor::io::DeviceId;

use crate::buffer::Pending;
use crate::cache::Cache;
use crate::checkpoint::CkptState;
use crate::config::TreeConfig;
use crate::error::{Result, TreeError};
use crate::internal::{Internal, NodeId};
use crate::leaf::Leaf;
use crate::limits::{KEY_BYTES_MAX, RANGE_END_BYTES_MAX, STATE_BYTES, VALUE_BYTES_MAX};
use crate::message::{ExtentRef, Message, Value};
use crate::node::Node;
use crate::region::Region;
use crate::space::{Space, SpaceMap};
use crate::state::ShardState;
use crate::stats::Counters;
use crate::sync::{AsyncMutex, Event};
use crate::table::{Location, Table};

/// A copy-on-write Bε-tree over one shard's region. Cheap to clone (a
/// handle); `!Send`: it lives on the reactor that opened it.
#[derive(Debug, Clone)]
pub struct Tree {
    pub(crate) sh: Rc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub region: Region,
    pub config: TreeConfig,
    pub st: RefCell<State>,
    /// Nodes a task loaded and is about to use: not evicted meanwhile.
    pub pins: RefCell<HashMap<NodeId, u32>>,
    /// One task at a time flushes, splits, merges, evicts dirty nodes.
    pub maintenance: AsyncMutex,
    /// The background maintenance task is running (`background.rs`).
    pub background: Cell<bool>,
    /// Notified when a checkpoint write finishes nodes (room may appear).
    pub progress: Event,
}

/// Ids of nodes: the next never-used one and the ones free for reuse.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    pub next: u64,
    pub free: Vec<u64>,
}

impl Ids {
    fn alloc(&mut self) -> NodeId {
        match self.free.pop() {
            Some(id) => NodeId(id),
            None => {
                self.next += 1;
                NodeId(self.next - 1)
            }
        }
    }
}

/// Work that flushes and merges left for the maintenance task.
#[derive(Debug, Default)]
pub(crate) struct Work {
    /// Internal nodes whose buffers exceed the node size, with a key that
    /// routes to them (their lower bound, which never changes).
    pub overfull: Vec<(NodeId, Vec<u8>)>,
    /// Nodes below a quarter of their size, with a routing key.
    pub underfull: Vec<(NodeId, Vec<u8>)>,
    /// Leaves with entries to move out of line or merges to resolve.
    pub materialize: Vec<NodeId>,
}

impl Work {
    pub fn push_overfull(&mut self, id: NodeId, key: Vec<u8>) {
        if !self.overfull.iter().any(|(i, _)| *i == id) {
            self.overfull.push((id, key));
        }
    }

    pub fn push_underfull(&mut self, id: NodeId, key: Vec<u8>) {
        if !self.underfull.iter().any(|(i, _)| *i == id) {
            self.underfull.push((id, key));
        }
    }

    pub fn push_materialize(&mut self, id: NodeId) {
        if !self.materialize.contains(&id) {
            self.materialize.push(id);
        }
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub root: NodeId,
    pub height: u8,
    pub lsn_applied: u64,
    pub next_generation: u64,
    pub ids: Ids,
    pub table: Table,
    pub space: Space,
    pub cache: Cache,
    /// Extents written by `write_extent` and not yet applied.
    pub unattached: HashSet<ExtentRef>,
    /// Extents adopted during recovery (adoption is idempotent).
    pub adopted: HashSet<ExtentRef>,
    pub work: Work,
    pub ckpt: CkptState,
    pub counters: Counters,
}

impl State {
    pub fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation - 1
    }

    /// Readies a cached node for a change: copies it for the checkpoint in
    /// progress if it is frozen, marks it dirty (freeing its old place once
    /// a later checkpoint is durable) and bumps its version.
    fn prepare_change(&mut self, id: NodeId) {
        let slot = self.cache.get(id).unwrap_or_else(|| panic!("node {id:?} changed while not cached"));
        let (frozen, dirty) = (slot.frozen, slot.dirty);
        if frozen {
            let copy = slot.node.clone();
            self.cache.extra_bytes += copy.mem_bytes();
            self.ckpt.captures.insert(id, copy);
            self.cache.slot_mut(id).expect("checked above").frozen = false;
        }
        if !dirty {
            let at = self.table.get(id);
            if !at.is_none() {
                self.space.free_deferred(at.address, at.pages());
                self.table.set(id, Location::NONE);
            }
            self.cache.set_dirty(id, true);
        }
        self.cache.slot_mut(id).expect("checked above").version += 1;
    }

    /// The node, ready to be changed. Call [`State::changed`] afterwards.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.prepare_change(id);
        &mut self.cache.slot_mut(id).expect("prepared above").node
    }

    /// Accounts for a change made through [`State::node_mut`] and frees the
    /// extents it dropped.
    pub fn changed(&mut self, id: NodeId, garbage: Vec<ExtentRef>) {
        self.cache.refresh(id);
        for e in garbage {
            self.free_extent(e);
        }
    }

    pub fn free_extent(&mut self, e: ExtentRef) {
        if e.address.checked_add(e.pages()).is_some_and(|end| end <= self.space.map.pages()) {
            self.space.free_deferred(e.address, e.pages());
        }
    }

    /// A new dirty node.
    pub fn create_node(&mut self, node: Node) -> NodeId {
        let id = self.ids.alloc();
        debug_assert!(self.table.get(id).is_none() && !self.cache.contains(id));
        self.cache.insert(id, node, true);
        id
    }

    /// Removes a node from the tree (after a merge or a root collapse).
    pub fn delete_node(&mut self, id: NodeId) {
        if self.cache.get(id).is_some_and(|s| s.frozen) {
            self.prepare_change(id);
        }
        self.cache.remove(id);
        let at = self.table.get(id);
        if !at.is_none() {
            self.space.free_deferred(at.address, at.pages());
            self.table.set(id, Location::NONE);
        }
        self.ids.free.push(id.0);
    }

    pub fn root_internal(&self) -> &Internal {
        match self.cache.get(self.root).map(|s| &s.node) {
            Some(Node::Internal(n)) => n,
            _ => panic!("the root is always a cached internal node"),
        }
    }
}

impl Tree {
    /// Opens the tree of a shard: `pages` pages from `first_page` of
    /// `device`, at the checkpoint described by `state` (all zero: a new,
    /// empty tree). Must run on the reactor that will own the tree.
    pub async fn open(
        device: DeviceId,
        first_page: u64,
        pages: u64,
        state: &[u8; STATE_BYTES],
        config: TreeConfig,
    ) -> Result<Tree> {
        config.validate()?;
        let region = Region::new(device, first_page, pages)?;
        let decoded = ShardState::decode(state)?;
        let st = match decoded {
            None => fresh_state(pages),
            Some(s) => crate::checkpoint::load(&region, &s).await?,
        };
        let tree = Tree {
            sh: Rc::new(Shared {
                region,
                config,
                st: RefCell::new(st),
                pins: RefCell::new(HashMap::new()),
                maintenance: AsyncMutex::default(),
                background: Cell::new(false),
                progress: Event::default(),
            }),
        };
        let root = tree.sh.st.borrow().root;
        let _pin = tree.load(root).await?;
        let st = tree.sh.st.borrow();
        if st.root_internal().height != st.height {
            return Err(TreeError::corrupt(
                crate::error::BlockKind::Internal,
                st.table.get(root).address,
                crate::error::CorruptReason::Invariant("root height differs from the checkpoint's"),
            ));
        }
        drop(st);
        tracing::debug!(first_page, pages, "tree opened");
        Ok(tree)
    }

    pub fn config(&self) -> &TreeConfig {
        &self.sh.config
    }

    /// The highest LSN applied (from the checkpoint the tree was opened
    /// from, or the last call to `apply`).
    pub fn lsn_applied(&self) -> u64 {
        self.sh.st.borrow().lsn_applied
    }

    /// Checks a key against the limits.
    pub fn check_key(key: &[u8]) -> Result<()> {
        if key.len() > KEY_BYTES_MAX {
            return Err(TreeError::KeyTooLarge { len_bytes: key.len(), max_bytes: KEY_BYTES_MAX });
        }
        Ok(())
    }

    /// Checks a message against the limits and this tree's inline maximum,
    /// so the engine can refuse it before journaling it.
    pub fn check_message(&self, key: &[u8], message: &Message) -> Result<()> {
        Self::check_key(key)?;
        match message {
            Message::Put(Value::Inline(v)) if v.len() > self.sh.config.inline_value_max_bytes => {
                Err(TreeError::InlineTooLarge { len_bytes: v.len(), max_bytes: self.sh.config.inline_value_max_bytes })
            }
            Message::Put(Value::Extent(e)) if e.length as usize > VALUE_BYTES_MAX => {
                Err(TreeError::ValueTooLarge { len_bytes: e.length as usize, max_bytes: VALUE_BYTES_MAX })
            }
            Message::Merge(op) => op.check(),
            _ => Ok(()),
        }
    }

    /// Applies one message in memory, in LSN order (several messages of one
    /// transaction share an LSN). Never waits: the engine made room first
    /// (see [`Tree::make_room`]). Fails only for a message over the limits,
    /// changing nothing.
    pub fn apply(&self, lsn: u64, key: &[u8], message: Message) -> Result<()> {
        self.check_message(key, &message)?;
        let inline_max = self.sh.config.inline_value_max_bytes;
        let mut st = self.sh.st.borrow_mut();
        debug_assert!(lsn >= st.lsn_applied, "LSN {lsn} applied after {}", st.lsn_applied);
        if let Message::Put(Value::Extent(e)) = &message {
            if st.unattached.remove(e) {
                st.space.commit(e.address);
            }
        }
        let root = st.root;
        let mut garbage = Vec::new();
        let Node::Internal(n) = st.node_mut(root) else { unreachable!("the root is internal") };
        n.insert_point(key, Pending::from_message(message), inline_max, &mut garbage);
        st.changed(root, garbage);
        st.lsn_applied = st.lsn_applied.max(lsn);
        st.counters.applied += 1;
        Ok(())
    }

    /// Deletes every key in `[start, end)` (`end` `None`: every key from
    /// `start` on), in memory, like [`Tree::apply`].
    pub fn apply_delete_range(&self, lsn: u64, start: &[u8], end: Option<&[u8]>) -> Result<()> {
        Self::check_key(start)?;
        // Keys are at most KEY_BYTES_MAX bytes, so all of them sort below this.
        let unbounded = [0xFFu8; RANGE_END_BYTES_MAX];
        let end = end.unwrap_or(&unbounded);
        if end.len() > RANGE_END_BYTES_MAX {
            return Err(TreeError::RangeEndTooLarge { len_bytes: end.len(), max_bytes: RANGE_END_BYTES_MAX });
        }
        let mut st = self.sh.st.borrow_mut();
        debug_assert!(lsn >= st.lsn_applied);
        let root = st.root;
        let mut garbage = Vec::new();
        let Node::Internal(n) = st.node_mut(root) else { unreachable!("the root is internal") };
        n.insert_tombstone(start, end, &mut garbage);
        st.changed(root, garbage);
        st.lsn_applied = st.lsn_applied.max(lsn);
        st.counters.applied += 1;
        Ok(())
    }
}

/// The state of a tree that was never checkpointed: a root over one empty leaf.
fn fresh_state(pages: u64) -> State {
    let mut st = State {
        root: NodeId(0),
        height: 1,
        lsn_applied: 0,
        next_generation: 1,
        ids: Ids { next: 1, free: Vec::new() },
        table: Table::default(),
        space: Space::new(SpaceMap::new(pages)),
        cache: Cache::default(),
        unattached: HashSet::new(),
        adopted: HashSet::new(),
        work: Work::default(),
        ckpt: CkptState::default(),
        counters: Counters::default(),
    };
    let leaf = st.create_node(Node::Leaf(Leaf::default()));
    st.root = st.create_node(Node::Internal(Internal::with_child(1, leaf)));
    st
}

/// Keeps a loaded node in the cache until dropped.
#[derive(Debug)]
pub(crate) struct PinGuard {
    sh: Rc<Shared>,
    id: NodeId,
}

impl PinGuard {
    pub fn new(sh: &Rc<Shared>, id: NodeId) -> PinGuard {
        *sh.pins.borrow_mut().entry(id).or_insert(0) += 1;
        PinGuard { sh: Rc::clone(sh), id }
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut pins = self.sh.pins.borrow_mut();
        if let Some(n) = pins.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.id);
            }
        }
    }
}
