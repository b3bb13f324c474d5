//! Reads: point lookups, partial reads of large values, range scans, and
//! loading nodes and extents from the device with verification.

use std::ops::Bound;

use crate::cache::LEAF_PAGE_MEM_OVERHEAD;
use crate::error::{BlockKind, Result, TreeError};
use crate::internal::NodeId;
use crate::leaf::{find_in_run, RunFind};
use crate::limits::PAGE_BYTES;
use crate::lookup::{lookup, scan_leaf, Found, PagedRead, Step};
use crate::merge::apply_all;
use crate::message::ExtentRef;
use crate::node::Node;
use crate::pages::{LeafPages, Plan};
use crate::table::Location;
use crate::tree::{PinGuard, State, Tree};

/// The most node loads one read may need before it gives up: a walk that
/// keeps finding nodes gone again (evicted as fast as they load) would
/// otherwise never end.
const LOADS_PER_READ_MAX: usize = 1024;

/// Page maps of leaves may hold up to 1/PAGE_MAP_SHARE of the cache budget
/// (writers drop them first when they need room).
const PAGE_MAP_SHARE: usize = 4;

impl Tree {
    /// The value of `key`, with pending merges applied and an out-of-line
    /// value read and verified.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Self::check_key(key)?;
        let mut pins = Vec::new();
        loop {
            let found = self.find(key, &mut pins).await?;
            match self.resolve_found(key, found).await? {
                Resolved::Value(v) => return Ok(v),
                Resolved::Moved => continue,
            }
        }
    }

    /// `len` bytes of `key`'s value from `offset` (fewer at the end of the
    /// value); `None` when the key has no value.
    pub async fn read_range(&self, key: &[u8], offset: u64, len: usize) -> Result<Option<Vec<u8>>> {
        let Some(value) = self.get(key).await? else { return Ok(None) };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(value.len());
        let end = start.saturating_add(len).min(value.len());
        Ok(Some(value[start..end].to_vec()))
    }

    /// Up to `limit` live keys in `[start, end]` (per the bounds) in key
    /// order, with their values. Each leaf's part is read atomically; a scan
    /// that waits for the device between leaves may see writes applied
    /// meanwhile in the leaves it reaches later.
    pub async fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut cursor = match start {
            Bound::Included(k) => k.to_vec(),
            Bound::Excluded(k) => [k, &[0u8][..]].concat(),
            Bound::Unbounded => Vec::new(),
        };
        let end_key: Option<Vec<u8>> = match end {
            Bound::Included(k) => Some([k, &[0u8][..]].concat()),
            Bound::Excluded(k) => Some(k.to_vec()),
            Bound::Unbounded => None,
        };
        let mut out = Vec::new();
        let mut pins = Vec::new();
        let mut loads = 0usize;
        while out.len() < limit && end_key.as_ref().is_none_or(|e| cursor < *e) {
            let step = scan_leaf(&mut self.sh.st.borrow_mut(), &cursor, end_key.as_deref());
            let part = match step {
                Step::Done(part) => part,
                Step::Load(id) => {
                    loads += 1;
                    self.check_loads(loads)?;
                    match self.load_for_read(id, false).await? {
                        Some(pin) => pins.push(pin),
                        None => self.count_restart(),
                    }
                    continue;
                }
            };
            for (key, found) in part.items {
                if out.len() >= limit {
                    break;
                }
                let value = match self.resolve_found(&key, found).await? {
                    Resolved::Value(v) => v,
                    Resolved::Moved => self.get(&key).await?,
                };
                if let Some(v) = value {
                    out.push((key, v));
                }
            }
            match part.next {
                Some(next) => cursor = next,
                None => break,
            }
            pins.clear();
        }
        self.sh.st.borrow_mut().counters.scans += 1;
        Ok(out)
    }

    /// Walks to `key`'s value, loading nodes as needed.
    async fn find(&self, key: &[u8], pins: &mut Vec<PinGuard>) -> Result<Found> {
        let (mut steps, mut device_reads) = (0usize, 0usize);
        let mut paged = None;
        loop {
            let step = lookup(&mut self.sh.st.borrow_mut(), key, &mut paged);
            match step {
                Step::Done(found) => {
                    let mut st = self.sh.st.borrow_mut();
                    st.counters.gets += 1;
                    if device_reads == 0 {
                        st.counters.gets_cached += 1;
                    }
                    return Ok(found);
                }
                Step::Load(id) => {
                    steps += 1;
                    self.check_loads(steps)?;
                    match self.read_pages(id, key).await? {
                        Some((read, from_cache)) => {
                            device_reads += usize::from(!from_cache);
                            paged = Some(read);
                        }
                        None => {
                            device_reads += 1;
                            match self.load_for_read(id, true).await? {
                                Some(pin) => pins.push(pin),
                                None => self.count_restart(),
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads the page of leaf `id` that holds `key` (and the next one when
    /// the key's entry runs on into it), when the cache keeps a page map of
    /// the leaf's current version: from the cache when it keeps those pages
    /// (true), else from the device (false), keeping what was read. A key
    /// the map's filter rules out is absent without a read (true). None
    /// when it keeps no map, or when the bytes read are not that version's:
    /// the caller then reads the leaf whole, which verifies it against its
    /// table entry and reports what is wrong.
    async fn read_pages(&self, id: NodeId, key: &[u8]) -> Result<Option<(PagedRead, bool)>> {
        let mut whole = false;
        loop {
            let (at, plan, expected) = {
                let st = self.sh.st.borrow();
                let at = st.table.get(id);
                let Some(map) = st.cache.page_map(id, at) else { return Ok(None) };
                if !map.may_hold(key) {
                    drop(st);
                    self.sh.st.borrow_mut().counters.leaf_filter_skips += 1;
                    return Ok(Some((PagedRead { id, at, entry: None }, true)));
                }
                let plan = map.plan(key, whole);
                let expected = match plan {
                    Plan::Read { first_page, pages, .. } => map.expected(first_page, pages),
                    Plan::Absent => None,
                };
                (at, plan, expected)
            };
            let Plan::Read { first_page, start, whole_end, prefix_bytes, .. } = plan else {
                return Ok(Some((PagedRead { id, at, entry: None }, true)));
            };
            let Some(expected) = expected else { return Ok(None) };
            let from = first_page * PAGE_BYTES;
            let len = expected.read_bytes();
            let run = Run { id, at, from, start, whole_end, prefix_bytes };
            {
                let mut st = self.sh.st.borrow_mut();
                let st = &mut *st;
                if let Some(bytes) = st.cache.leaf_pages(id, first_page as u32, at, len) {
                    let found = run.search(bytes, key);
                    if let RunOutcome::Found(read) = found {
                        st.counters.leaf_page_cache_hits += 1;
                        return Ok(Some((read, true)));
                    }
                    if matches!(found, RunOutcome::CutOff) && !whole {
                        whole = true;
                        continue;
                    }
                    // Cached bytes were verified when read: not reached.
                    return Ok(None);
                }
            }
            let bytes = self.sh.region.read(BlockKind::Node, at.address + first_page as u64, len).await?;
            let mut st = self.sh.st.borrow_mut();
            if !expected.verify(&bytes) {
                st.counters.leaf_page_mismatches += 1;
                return Ok(None);
            }
            st.counters.leaf_page_reads += 1;
            st.counters.leaf_page_read_bytes += crate::limits::pages_for(len) * PAGE_BYTES as u64;
            match run.search(&bytes, key) {
                RunOutcome::Found(read) => {
                    st.counters.leaf_page_reads_absent += u64::from(read.entry.is_none());
                    // Unless the leaf moved or came whole into the cache meanwhile.
                    if st.table.get(id) == at && !st.cache.contains(id) {
                        self.keep_leaf_pages(&mut st, run, first_page, bytes);
                    }
                    return Ok(Some((read, false)));
                }
                RunOutcome::CutOff if !whole => whole = true,
                // Not what the verified image held: read the leaf whole.
                RunOutcome::CutOff | RunOutcome::Bad => return Ok(None),
            }
        }
    }

    /// Keeps verified pages a get read, in room made by dropping cold clean
    /// leaves first (a page holds the same entries in less memory than the
    /// leaf it came from), then older pages; never by evicting an internal
    /// node or writing anything.
    fn keep_leaf_pages(&self, st: &mut State, run: Run, first_page: usize, bytes: Vec<u8>) {
        let budget = self.sh.config.cache_bytes;
        let mem = bytes.capacity() + LEAF_PAGE_MEM_OVERHEAD;
        let over = (st.cache.used_bytes() + mem).saturating_sub(budget);
        if over > 0 {
            let root = st.root;
            let pins = self.sh.pins.borrow();
            let victims = st.cache.pick_leaf_victims(over, |id, s| {
                id == root || s.frozen || s.ckpt_writing || s.evicting || pins.contains_key(&id)
            });
            for id in victims {
                st.cache.remove(id);
                st.counters.evictions_clean += 1;
            }
            let over = (st.cache.used_bytes() + mem).saturating_sub(budget);
            st.cache.drop_leaf_pages(over);
        }
        if st.cache.used_bytes() + mem <= budget {
            st.cache.keep_leaf_pages(run.id, first_page as u32, run.at, bytes);
        }
    }

    /// A walk found the node it meant to load merged away: it walks again
    /// from the root (bounded by [`LOADS_PER_READ_MAX`] with its loads).
    fn count_restart(&self) {
        self.sh.st.borrow_mut().counters.reads_restarted += 1;
    }

    fn check_loads(&self, loads: usize) -> Result<()> {
        if loads > LOADS_PER_READ_MAX {
            let budget_bytes = self.sh.config.cache_bytes;
            return Err(TreeError::CacheTooSmall { needed_bytes: budget_bytes, budget_bytes });
        }
        Ok(())
    }

    /// Turns a walk's result into bytes, reading an out-of-line base. When
    /// the extent fails verification, the key is looked up again: if its
    /// value moved meanwhile (flushed, replaced, freed) the read is retried,
    /// else the corruption is reported.
    async fn resolve_found(&self, key: &[u8], found: Found) -> Result<Resolved> {
        let (extent, merges) = match found {
            Found::Absent => return Ok(Resolved::Value(None)),
            Found::Inline(v) => return Ok(Resolved::Value(Some(v))),
            Found::Extent { extent, merges } => (extent, merges),
        };
        match self.read_extent(extent).await {
            Ok(data) => Ok(Resolved::Value(apply_all(Some(data), &merges))),
            Err(e) => {
                let again = self.find(key, &mut Vec::new()).await?;
                match again {
                    Found::Extent { extent: now, .. } if now == extent => Err(e),
                    _ => Ok(Resolved::Moved),
                }
            }
        }
    }

    /// Reads an extent and checks it against its reference.
    pub(crate) async fn read_extent(&self, e: ExtentRef) -> Result<Vec<u8>> {
        let bytes = self.sh.region.read(BlockKind::Extent, e.address, e.length as usize).await?;
        let found = ExtentRef::checksum(e.generation, &bytes);
        if found != e.crc32c {
            return Err(TreeError::corrupt(
                BlockKind::Extent,
                e.address,
                crate::error::CorruptReason::Checksum { expected: e.crc32c, found },
            ));
        }
        let mut st = self.sh.st.borrow_mut();
        st.counters.extent_reads += 1;
        st.counters.extent_read_bytes += bytes.len() as u64;
        Ok(bytes)
    }

    /// Makes node `id` resident and pins it. Reads and verifies it against
    /// its table entry when it is not cached. For maintenance (which holds
    /// the maintenance lock, so nothing it needs is merged away under it)
    /// and opening: a node they reach that has no location is corruption.
    pub(crate) async fn load(&self, id: NodeId) -> Result<PinGuard> {
        self.load_for_read(id, false).await?.ok_or_else(|| {
            TreeError::corrupt(
                BlockKind::Node,
                0,
                crate::error::CorruptReason::Invariant("a referenced node has no location"),
            )
        })
    }

    /// [`Tree::load`] for a walk that takes no maintenance lock: None when
    /// the node is gone (merged away since the walk named it, maybe while
    /// this read waited), and the walk must start again from the root, which
    /// no longer leads to it. `keep_map` also keeps the page map of a leaf
    /// of several pages (gets do: their later reads of it read one page).
    async fn load_for_read(&self, id: NodeId, keep_map: bool) -> Result<Option<PinGuard>> {
        loop {
            let at = {
                let st = self.sh.st.borrow();
                if st.cache.contains(id) {
                    return Ok(Some(PinGuard::new(&self.sh, id)));
                }
                st.table.get(id)
            };
            if at.is_none() {
                return Ok(None);
            }
            self.ensure_cache_room(at.length as usize * 2).await?;
            let bytes = self.sh.region.read(BlockKind::Node, at.address, at.length as usize).await?;
            let node = match Node::verify_and_decode(&bytes, id, &at) {
                Ok(node) => node,
                // The node moved while we read and its old place was reused:
                // the bytes were not its own. Only bytes at the place the
                // table still names are corrupt.
                Err(_) if self.sh.st.borrow().table.get(id) != at => continue,
                Err(e) => return Err(e),
            };
            let map = match &node {
                Node::Leaf(leaf) if keep_map => LeafPages::build(&bytes, leaf, at),
                _ => None,
            };
            let mut st = self.sh.st.borrow_mut();
            if st.cache.contains(id) || st.table.get(id) != at {
                // Loaded by another task, or rewritten or merged away while
                // we read: look again.
                continue;
            }
            self.keep_loaded(&mut st, id, at, node, &bytes, map);
            return Ok(Some(PinGuard::new(&self.sh, id)));
        }
    }

    /// Counts a verified read of node `id` from `at` and caches the node
    /// (and its page map, when one was built).
    fn keep_loaded(&self, st: &mut State, id: NodeId, at: Location, node: Node, bytes: &[u8], map: Option<LeafPages>) {
        st.counters.node_reads += 1;
        // Whole pages: what the device transferred.
        let device_bytes = crate::limits::pages_for(bytes.len()) * crate::limits::PAGE_BYTES as u64;
        st.counters.node_read_bytes += device_bytes;
        if node.is_leaf() {
            st.counters.leaf_reads += 1;
            st.counters.leaf_read_bytes += device_bytes;
        }
        st.cache.insert(id, node, false);
        st.cache.forget_leaf_pages(id, crate::limits::pages_for(at.length as usize) as u32);
        if let Some(map) = map {
            st.cache.keep_page_map(id, map, self.sh.config.cache_bytes / PAGE_MAP_SHARE);
        }
    }
}

/// Where in a leaf image a read through its page map looks for a key: the
/// bytes read start at image offset `from`; the entries from `start` up to
/// `whole_end` are complete in them; their keys are stored without the
/// `prefix_bytes` bytes all the leaf's keys (and the key sought) start with.
#[derive(Debug, Clone, Copy)]
struct Run {
    id: NodeId,
    at: Location,
    from: usize,
    start: usize,
    whole_end: usize,
    prefix_bytes: usize,
}

enum RunOutcome {
    Found(PagedRead),
    /// The key's entry goes on past the bytes read.
    CutOff,
    /// Not what the verified image held.
    Bad,
}

impl Run {
    fn search(&self, bytes: &[u8], key: &[u8]) -> RunOutcome {
        let run = bytes.get(self.start.saturating_sub(self.from)..).unwrap_or_default();
        let (id, at) = (self.id, self.at);
        let Some(suffix) = key.get(self.prefix_bytes..) else { return RunOutcome::Bad };
        match find_in_run(run, self.whole_end.saturating_sub(self.start), suffix) {
            Ok(RunFind::Found(e)) => {
                RunOutcome::Found(PagedRead { id, at, entry: Some((e.value.to_value(), e.merges)) })
            }
            Ok(RunFind::Absent) => RunOutcome::Found(PagedRead { id, at, entry: None }),
            Ok(RunFind::CutOff) => RunOutcome::CutOff,
            Err(_) => RunOutcome::Bad,
        }
    }
}

/// A resolved read: the value, or "the key's value moved while we read it".
enum Resolved {
    Value(Option<Vec<u8>>),
    Moved,
}
