//! What a tree can say about itself: shape, cache and space use, and
//! counters of the work it did (for `keel inspect`, benchmarks and tests).

use crate::node::Node;
use crate::tree::Tree;

/// Running totals since the tree was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub applied: u64,
    pub gets: u64,
    /// Gets answered without reading a node from the device.
    pub gets_cached: u64,
    pub scans: u64,
    pub node_reads: u64,
    /// Device bytes (whole pages) of `node_reads`.
    pub node_read_bytes: u64,
    /// The leaves among `node_reads` (the rest are internal nodes), and
    /// their device bytes.
    pub leaf_reads: u64,
    pub leaf_read_bytes: u64,
    /// Reads of one page (rarely two) of a leaf by a get, through the page
    /// map of a leaf read whole before (`pages.rs`), and their device bytes.
    pub leaf_page_reads: u64,
    pub leaf_page_read_bytes: u64,
    /// Page reads whose bytes did not match the page map (the get then read
    /// the leaf whole).
    pub leaf_page_mismatches: u64,
    /// Gets whose leaf page was answered from pages cached by an earlier
    /// read (no device read).
    pub leaf_page_cache_hits: u64,
    /// Gets of a key an uncached leaf's page-map filter ruled out (no
    /// device read: the leaf does not hold the key).
    pub leaf_filter_skips: u64,
    /// Leaf page reads (from the device) that found the key absent: the
    /// page-map filter's false "maybe"s.
    pub leaf_page_reads_absent: u64,
    /// Gets answered by a message buffer of an internal node (a put,
    /// delete or range delete newer than anything below).
    pub gets_from_buffers: u64,
    pub node_writes: u64,
    pub node_write_bytes: u64,
    /// Device bytes (whole pages) of node writes, by node kind and by who
    /// wrote them: an eviction (a dirty node leaving the cache) or a checkpoint.
    pub evict_leaf_write_bytes: u64,
    pub evict_internal_write_bytes: u64,
    pub ckpt_leaf_write_bytes: u64,
    pub ckpt_internal_write_bytes: u64,
    pub extent_reads: u64,
    pub extent_read_bytes: u64,
    pub extent_writes: u64,
    pub extent_write_bytes: u64,
    /// Table pages, space-map pages and directories written.
    pub meta_writes: u64,
    pub meta_write_bytes: u64,
    pub flushes: u64,
    pub leaf_splits: u64,
    pub internal_splits: u64,
    pub root_splits: u64,
    pub merges: u64,
    pub root_collapses: u64,
    pub evictions_clean: u64,
    pub evictions_dirty: u64,
    pub materializations: u64,
    pub checkpoints: u64,
    /// Passes that pushed buffered deletes down to free space.
    pub reclaims: u64,
    /// Times a get or scan found a node it meant to load merged away (it
    /// walked again from the root).
    pub reads_restarted: u64,
}

impl Counters {
    /// Counts one node write of `len_bytes` (padded to whole pages).
    pub(crate) fn count_node_write(&mut self, leaf: bool, checkpoint: bool, len_bytes: usize) {
        let bytes = crate::limits::pages_for(len_bytes).max(1) * crate::limits::PAGE_BYTES as u64;
        let slot = match (leaf, checkpoint) {
            (true, false) => &mut self.evict_leaf_write_bytes,
            (false, false) => &mut self.evict_internal_write_bytes,
            (true, true) => &mut self.ckpt_leaf_write_bytes,
            (false, true) => &mut self.ckpt_internal_write_bytes,
        };
        *slot += bytes;
    }

    /// Sums the counters of several trees (one per shard).
    pub fn add(&mut self, o: &Counters) {
        macro_rules! sum {
            ($($f:ident),*) => { $(self.$f += o.$f;)* };
        }
        sum!(
            applied,
            gets,
            gets_cached,
            scans,
            node_reads,
            node_read_bytes,
            leaf_reads,
            leaf_read_bytes,
            leaf_page_reads,
            leaf_page_read_bytes,
            leaf_page_mismatches,
            leaf_page_cache_hits,
            leaf_filter_skips,
            leaf_page_reads_absent,
            gets_from_buffers,
            node_writes,
            node_write_bytes,
            evict_leaf_write_bytes,
            evict_internal_write_bytes,
            ckpt_leaf_write_bytes,
            ckpt_internal_write_bytes,
            extent_reads,
            extent_read_bytes,
            extent_writes,
            extent_write_bytes,
            meta_writes,
            meta_write_bytes,
            flushes,
            leaf_splits,
            internal_splits,
            root_splits,
            merges,
            root_collapses,
            evictions_clean,
            evictions_dirty,
            materializations,
            checkpoints,
            reclaims,
            reads_restarted
        );
    }

    /// Every byte the tree wrote to the device.
    pub fn device_write_bytes(&self) -> u64 {
        self.node_write_bytes + self.extent_write_bytes + self.meta_write_bytes
    }
}

/// A snapshot of a tree's shape and resources.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeStats {
    pub height: u8,
    pub lsn_applied: u64,
    pub nodes_cached: usize,
    pub leaves_cached: usize,
    pub dirty_nodes: usize,
    /// Mean serialized size of the cached leaves over the leaf target.
    pub leaf_fill: f64,
    /// Mean buffer fill of the cached internal nodes over the node target.
    pub internal_fill: f64,
    pub cache_bytes_used: usize,
    /// Memory of the cached leaves and of the cached internal nodes.
    pub cache_leaf_mem_bytes: usize,
    pub cache_internal_mem_bytes: usize,
    /// Memory of the leaves' page maps (`pages.rs`).
    pub cache_page_map_bytes: usize,
    /// Leaves with a page map in the cache.
    pub page_maps: usize,
    /// Memory of leaf pages cached for gets.
    pub cache_leaf_page_bytes: usize,
    pub cache_bytes_budget: usize,
    pub region_pages: u64,
    pub pages_free: u64,
    /// Freed pages waiting for a durable checkpoint before reuse.
    pub pages_pending_free: u64,
    pub counters: Counters,
}

impl Tree {
    pub fn stats(&self) -> TreeStats {
        let st = self.sh.st.borrow();
        let cfg = &self.sh.config;
        let (mut leaves, mut leaf_bytes, mut internals, mut internal_bytes) = (0usize, 0usize, 0usize, 0usize);
        let (mut leaf_mem, mut internal_mem) = (0usize, 0usize);
        for (_, slot) in st.cache.iter() {
            match &slot.node {
                Node::Leaf(l) => {
                    leaves += 1;
                    leaf_bytes += l.encoded_bytes();
                    leaf_mem += slot.node.mem_bytes();
                }
                Node::Internal(n) => {
                    internals += 1;
                    internal_bytes += n.encoded_bytes();
                    internal_mem += slot.node.mem_bytes();
                }
            }
        }
        let ratio =
            |bytes: usize, n: usize, target: usize| if n == 0 { 0.0 } else { bytes as f64 / (n * target) as f64 };
        TreeStats {
            height: st.height,
            lsn_applied: st.lsn_applied,
            nodes_cached: st.cache.len(),
            leaves_cached: leaves,
            dirty_nodes: st.cache.dirty_count(),
            leaf_fill: ratio(leaf_bytes, leaves, cfg.leaf_bytes),
            internal_fill: ratio(internal_bytes, internals, cfg.internal_bytes),
            cache_bytes_used: st.cache.used_bytes(),
            cache_leaf_mem_bytes: leaf_mem,
            cache_internal_mem_bytes: internal_mem,
            cache_page_map_bytes: st.cache.page_map_bytes(),
            page_maps: st.cache.page_map_count(),
            cache_leaf_page_bytes: st.cache.leaf_page_bytes(),
            cache_bytes_budget: cfg.cache_bytes,
            region_pages: st.space.map.pages(),
            pages_free: st.space.map.free_pages(),
            pages_pending_free: st.space.pending_pages(),
            counters: st.counters.clone(),
        }
    }

    /// True when a checkpoint would give back a good share of the region
    /// (space freed by copy-on-write waits for one) or of the cache.
    pub fn checkpoint_advised(&self) -> bool {
        let st = self.sh.st.borrow();
        let pending = st.space.pending_pages();
        let free = st.space.map.free_pages();
        pending > free / 4 || st.cache.dirty_encoded_bytes() > self.sh.config.cache_bytes / 2
    }
}
