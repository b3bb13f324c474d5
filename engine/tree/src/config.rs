//! Tree configuration: node sizes, fanout, cache budget, inline value limit.
//! The defaults are the ones chosen by measurement (see BENCHMARKS.md, "Tree").

use crate::limits::{PAGE_BYTES, VALUE_BYTES_MAX};
use crate::TreeError;

/// How a tree shapes its nodes and how much memory it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeConfig {
    /// Target size of a serialized leaf. Leaves are split above it and merged
    /// with a neighbour below a quarter of it. Small leaves keep point reads
    /// to one small I/O when the data set is larger than the cache.
    pub leaf_bytes: usize,
    /// Target size of a serialized internal node (pivots, child ids and
    /// message buffers); a node whose buffers grow past it is flushed.
    pub internal_bytes: usize,
    /// The most children an internal node has before it splits.
    pub fanout_max: usize,
    /// Hard budget of the node cache in bytes (decoded nodes, and node copies
    /// held for a checkpoint in progress).
    pub cache_bytes: usize,
    /// Values longer than this are stored out of line (the engine writes them
    /// with `write_extent`); merges that grow a value past it move it out of line.
    pub inline_value_max_bytes: usize,
    /// Pages kept free for deletes and checkpoints once ordinary writes get
    /// `NoSpace`; `None` = 1/32 of the region, at least 64 pages.
    pub reserve_pages: Option<u64>,
    /// Writes a checkpoint or an eviction keeps in flight at once.
    pub write_depth: usize,
    /// Run maintenance (flushes, evictions) in a background task per tree
    /// (`background.rs`), so writers seldom wait for it. Off: writers do all
    /// of it themselves, flushing every over-full node before they are
    /// admitted (the behaviour before the task existed); kept as a switch
    /// for A/B measurements.
    pub background_maintenance: bool,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig {
            // Measured (BENCHMARKS.md, "Tree node size", 2026-12-03 evening
            // sweep): 16 KiB leaves under 64 KiB internal nodes filled
            // fastest with a cache 7x smaller than the data (half the leaf
            // I/Os of 8 KiB leaves for the same bytes, and the same internal
            // bytes per leaf as 8/32, so point reads did not suffer) and
            // wrote 0.9x the bytes of 8/32.
            leaf_bytes: 16 << 10,
            internal_bytes: 64 << 10,
            fanout_max: 64,
            cache_bytes: 64 << 20,
            inline_value_max_bytes: 2048,
            reserve_pages: None,
            write_depth: 32,
            background_maintenance: true,
        }
    }
}

impl TreeConfig {
    /// A configuration with tiny nodes, to force deep trees, splits, merges
    /// and evictions in tests.
    pub fn tiny_for_tests() -> Self {
        TreeConfig {
            leaf_bytes: 512,
            internal_bytes: 1024,
            fanout_max: 4,
            cache_bytes: 40 << 10,
            inline_value_max_bytes: 96,
            reserve_pages: Some(16),
            write_depth: 8,
            background_maintenance: true,
        }
    }

    pub fn validate(&self) -> Result<(), TreeError> {
        let bad = |m: String| Err(TreeError::Config(m));
        if !(256..=(1 << 20)).contains(&self.leaf_bytes) {
            return bad(format!("leaf_bytes {} is outside 256..=1MiB", self.leaf_bytes));
        }
        if !(512..=(4 << 20)).contains(&self.internal_bytes) {
            return bad(format!("internal_bytes {} is outside 512..=4MiB", self.internal_bytes));
        }
        if !(3..=4096).contains(&self.fanout_max) {
            return bad(format!("fanout_max {} is outside 3..=4096", self.fanout_max));
        }
        if self.inline_value_max_bytes == 0 || self.inline_value_max_bytes > VALUE_BYTES_MAX {
            return bad(format!(
                "inline_value_max_bytes {} is outside 1..={VALUE_BYTES_MAX}",
                self.inline_value_max_bytes
            ));
        }
        let cache_min = 8 * (self.internal_bytes + self.leaf_bytes) + 4 * PAGE_BYTES;
        if self.cache_bytes < cache_min {
            return bad(format!(
                "cache_bytes {} is below the minimum of {cache_min} for these node sizes",
                self.cache_bytes
            ));
        }
        if self.write_depth == 0 || self.write_depth > 1024 {
            return bad(format!("write_depth {} is outside 1..=1024", self.write_depth));
        }
        Ok(())
    }

    /// Pages reserved for deletes and checkpoints in a region of `pages`.
    pub fn reserve_pages_for(&self, pages: u64) -> u64 {
        self.reserve_pages.unwrap_or((pages / 32).max(64)).min(pages / 2)
    }
}
