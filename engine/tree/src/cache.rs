//! The node cache of one shard: decoded nodes by id, with a byte budget that
//! the tree enforces (see `maintenance.rs`), dirty-node accounting, and a
//! clock (second-chance) order for eviction that prefers leaves: internal
//! nodes are few and on every path, so they leave the cache last.

use std::collections::{HashMap, VecDeque};

use crate::internal::NodeId;
use crate::node::Node;
use crate::pages::LeafPages;
use crate::table::Location;

/// Bookkeeping of one cached leaf page beyond its bytes (map entry, ring
/// entry, allocation).
pub(crate) const LEAF_PAGE_MEM_OVERHEAD: usize = 96;

/// One cached node and its state.
#[derive(Debug)]
pub(crate) struct Slot {
    pub node: Node,
    /// Changed since it was last written; its table entry is NONE.
    pub dirty: bool,
    /// Dirty when the checkpoint in progress was frozen, and not yet
    /// serialized for it: the next change must copy it first.
    pub frozen: bool,
    /// A checkpoint write of this node is in flight.
    pub ckpt_writing: bool,
    /// An eviction write of this node is in flight.
    pub evicting: bool,
    /// Bumped at every change (to notice changes across a write).
    pub version: u64,
    referenced: bool,
    mem_bytes: usize,
    encoded_bytes: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    map: HashMap<NodeId, Slot>,
    leaves: VecDeque<NodeId>,
    internals: VecDeque<NodeId>,
    used_bytes: usize,
    dirty_encoded_bytes: usize,
    dirty_count: usize,
    /// Bytes held outside the map but inside the budget (node copies kept
    /// for the checkpoint in progress).
    pub extra_bytes: usize,
    /// Page maps of leaves (see `pages.rs`), inside the budget, oldest
    /// dropped first.
    page_maps: HashMap<NodeId, LeafPages>,
    page_map_order: VecDeque<NodeId>,
    page_map_bytes: usize,
    /// Pages of leaves that gets read through page maps, by leaf and first
    /// page: inside the budget, always clean, so the first thing to go.
    leaf_pages: HashMap<(NodeId, u32), CachedPages>,
    /// Clock order of `leaf_pages` (entries may be stale).
    leaf_page_ring: VecDeque<(NodeId, u32)>,
    leaf_page_bytes: usize,
}

/// Consecutive pages of one leaf version, verified when read.
#[derive(Debug)]
struct CachedPages {
    at: Location,
    bytes: Vec<u8>,
    referenced: bool,
}

impl CachedPages {
    fn mem_bytes(&self) -> usize {
        self.bytes.capacity() + LEAF_PAGE_MEM_OVERHEAD
    }
}

impl Cache {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes + self.extra_bytes + self.page_map_bytes + self.leaf_page_bytes
    }

    pub fn leaf_page_bytes(&self) -> usize {
        self.leaf_page_bytes
    }

    /// The first `len` bytes of the cached pages of leaf `id` from page
    /// `first_page` on, if they were read from the version `at`; marks them used.
    pub fn leaf_pages(&mut self, id: NodeId, first_page: u32, at: Location, len: usize) -> Option<&[u8]> {
        let cached = self.leaf_pages.get_mut(&(id, first_page))?;
        if cached.at != at || cached.bytes.len() < len {
            return None;
        }
        cached.referenced = true;
        Some(&cached.bytes[..len])
    }

    /// Keeps `bytes`, pages of leaf `id` from `first_page` on as the
    /// version `at` holds them, replacing what was kept there before. The
    /// caller makes room first.
    pub fn keep_leaf_pages(&mut self, id: NodeId, first_page: u32, at: Location, bytes: Vec<u8>) {
        let cached = CachedPages { at, bytes, referenced: false };
        self.leaf_page_bytes += cached.mem_bytes();
        match self.leaf_pages.insert((id, first_page), cached) {
            Some(old) => self.leaf_page_bytes -= old.mem_bytes(),
            None => self.leaf_page_ring.push_back((id, first_page)),
        }
    }

    /// Drops the cached pages of leaf `id` (cached whole now), up to page `pages`.
    pub fn forget_leaf_pages(&mut self, id: NodeId, pages: u32) {
        if self.leaf_pages.is_empty() {
            return;
        }
        for p in 0..pages {
            if let Some(old) = self.leaf_pages.remove(&(id, p)) {
                self.leaf_page_bytes -= old.mem_bytes();
            }
        }
    }

    /// Drops cached leaf pages in clock order (a used one gets a second
    /// chance) until `need_bytes` are freed or none is left; returns the
    /// bytes freed.
    pub fn drop_leaf_pages(&mut self, need_bytes: usize) -> usize {
        let mut freed = 0usize;
        let mut budget = self.leaf_page_ring.len() * 2;
        while freed < need_bytes && budget > 0 {
            budget -= 1;
            let Some(key) = self.leaf_page_ring.pop_front() else { break };
            let Some(cached) = self.leaf_pages.get_mut(&key) else { continue };
            if cached.referenced {
                cached.referenced = false;
                self.leaf_page_ring.push_back(key);
                continue;
            }
            let mem = cached.mem_bytes();
            self.leaf_pages.remove(&key);
            self.leaf_page_bytes -= mem;
            freed += mem;
        }
        if self.leaf_page_ring.len() > 2 * self.leaf_pages.len() + 64 {
            let pages = &self.leaf_pages;
            self.leaf_page_ring.retain(|k| pages.contains_key(k));
        }
        freed
    }

    /// Gives up read aids (cached leaf pages, then page maps) until
    /// `need_bytes` are freed or none is left: they only save device reads.
    pub fn drop_read_aids(&mut self, need_bytes: usize) -> usize {
        let freed = self.drop_leaf_pages(need_bytes);
        if freed >= need_bytes {
            return freed;
        }
        let maps_before = self.page_map_bytes;
        self.drop_page_maps(maps_before.saturating_sub(need_bytes - freed));
        freed + (maps_before - self.page_map_bytes)
    }

    /// Picks clean leaves to evict with about `need_bytes` between them
    /// (clock order, like [`Cache::pick_victims`]), never internal nodes.
    pub fn pick_leaf_victims(&mut self, need_bytes: usize, excluded: impl Fn(NodeId, &Slot) -> bool) -> Vec<NodeId> {
        let mut victims = Vec::new();
        let mut found = 0usize;
        let mut budget = self.leaves.len() * 2;
        while found < need_bytes && budget > 0 {
            budget -= 1;
            let Some(id) = self.leaves.pop_front() else { break };
            let Some(slot) = self.map.get_mut(&id) else { continue };
            self.leaves.push_back(id);
            if !slot.node.is_leaf() || slot.dirty || victims.contains(&id) || excluded(id, slot) {
                continue;
            }
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            found += slot.mem_bytes;
            victims.push(id);
        }
        victims
    }

    pub fn page_map_bytes(&self) -> usize {
        self.page_map_bytes
    }

    pub fn page_map_count(&self) -> usize {
        self.page_maps.len()
    }

    /// The page map of leaf `id`, if one was kept for the version `id` has now.
    pub fn page_map(&self, id: NodeId, now: crate::table::Location) -> Option<&LeafPages> {
        self.page_maps.get(&id).filter(|m| m.at == now)
    }

    /// Keeps `map` for leaf `id` (replacing an older one), then drops the
    /// oldest maps while they hold more than `cap_bytes`.
    pub fn keep_page_map(&mut self, id: NodeId, map: LeafPages, cap_bytes: usize) {
        self.page_map_bytes += map.mem_bytes();
        if let Some(old) = self.page_maps.insert(id, map) {
            self.page_map_bytes -= old.mem_bytes();
        } else {
            self.page_map_order.push_back(id);
        }
        self.drop_page_maps(cap_bytes);
    }

    /// Drops the oldest page maps until they hold at most `cap_bytes`.
    pub fn drop_page_maps(&mut self, cap_bytes: usize) {
        while self.page_map_bytes > cap_bytes {
            let Some(id) = self.page_map_order.pop_front() else { break };
            if let Some(old) = self.page_maps.remove(&id) {
                self.page_map_bytes -= old.mem_bytes();
            }
        }
    }

    pub fn dirty_encoded_bytes(&self) -> usize {
        self.dirty_encoded_bytes
    }

    pub fn dirty_count(&self) -> usize {
        self.dirty_count
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.map.contains_key(&id)
    }

    pub fn get(&self, id: NodeId) -> Option<&Slot> {
        self.map.get(&id)
    }

    /// The node, marked as recently used.
    pub fn touch(&mut self, id: NodeId) -> Option<&Node> {
        self.map.get_mut(&id).map(|s| {
            s.referenced = true;
            &s.node
        })
    }

    /// Direct access to a slot's flags. Changing the node through it must be
    /// followed by [`Cache::refresh`].
    pub fn slot_mut(&mut self, id: NodeId) -> Option<&mut Slot> {
        self.map.get_mut(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &Slot)> {
        self.map.iter().map(|(id, s)| (*id, s))
    }

    pub fn insert(&mut self, id: NodeId, node: Node, dirty: bool) {
        let leaf = node.is_leaf();
        let slot = Slot {
            node,
            dirty: false,
            frozen: false,
            ckpt_writing: false,
            evicting: false,
            version: 0,
            referenced: true,
            mem_bytes: 0,
            encoded_bytes: 0,
        };
        let old = self.map.insert(id, slot);
        assert!(old.is_none(), "node {id:?} inserted twice into the cache");
        self.refresh(id);
        if dirty {
            self.set_dirty(id, true);
        }
        if leaf {
            self.leaves.push_back(id);
        } else {
            self.internals.push_back(id);
        }
        self.compact_rings();
    }

    pub fn remove(&mut self, id: NodeId) -> Option<Slot> {
        let slot = self.map.remove(&id)?;
        self.used_bytes -= slot.mem_bytes;
        if slot.dirty {
            self.dirty_count -= 1;
            self.dirty_encoded_bytes -= slot.encoded_bytes;
        }
        Some(slot)
    }

    /// Recomputes a slot's sizes after its node changed.
    pub fn refresh(&mut self, id: NodeId) {
        let Some(slot) = self.map.get_mut(&id) else { return };
        let (mem, enc) = (slot.node.mem_bytes(), slot.node.encoded_bytes());
        self.used_bytes = self.used_bytes - slot.mem_bytes + mem;
        if slot.dirty {
            self.dirty_encoded_bytes = self.dirty_encoded_bytes - slot.encoded_bytes + enc;
        }
        slot.mem_bytes = mem;
        slot.encoded_bytes = enc;
    }

    pub fn set_dirty(&mut self, id: NodeId, dirty: bool) {
        let Some(slot) = self.map.get_mut(&id) else { return };
        if slot.dirty == dirty {
            return;
        }
        slot.dirty = dirty;
        if dirty {
            self.dirty_count += 1;
            self.dirty_encoded_bytes += slot.encoded_bytes;
        } else {
            self.dirty_count -= 1;
            self.dirty_encoded_bytes -= slot.encoded_bytes;
        }
    }

    /// Picks nodes to evict with about `need_bytes` between them, leaves
    /// first, skipping those `excluded` says must stay.
    pub fn pick_victims(&mut self, need_bytes: usize, excluded: impl Fn(NodeId, &Slot) -> bool) -> Vec<NodeId> {
        let mut victims = Vec::new();
        let mut found = 0usize;
        for internal in [false, true] {
            let ring = if internal { &mut self.internals } else { &mut self.leaves };
            let mut budget = ring.len() * 2;
            while found < need_bytes && budget > 0 {
                budget -= 1;
                let Some(id) = ring.pop_front() else { break };
                let Some(slot) = self.map.get_mut(&id) else { continue };
                ring.push_back(id);
                if slot.node.is_leaf() == internal || victims.contains(&id) || excluded(id, slot) {
                    continue;
                }
                if slot.referenced {
                    slot.referenced = false;
                    continue;
                }
                found += slot.mem_bytes;
                victims.push(id);
            }
        }
        victims
    }

    /// Drops stale ring entries once they outnumber live ones.
    fn compact_rings(&mut self) {
        let live = self.map.len();
        if self.leaves.len() + self.internals.len() <= 2 * live + 64 {
            return;
        }
        let map = &self.map;
        let mut seen = std::collections::HashSet::new();
        self.leaves.retain(|id| map.get(id).is_some_and(|s| s.node.is_leaf()) && seen.insert(*id));
        self.internals.retain(|id| map.get(id).is_some_and(|s| !s.node.is_leaf()) && seen.insert(*id));
        for (id, slot) in map {
            if !seen.contains(id) {
                if slot.node.is_leaf() {
                    self.leaves.push_back(*id);
                } else {
                    self.internals.push_back(*id);
                }
            }
        }
    }
}
