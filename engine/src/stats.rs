//! What an engine can say about its work: every shard's tree counters summed,
//! and the journal's (for benchmarks and `keel inspect`-style reports).

use keel_journal::JournalStats;
use keel_tree::{Counters, TreeStats};

use crate::engine::Engine;
use crate::error::EngineError;

/// Running totals of an engine since it was opened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineStats {
    /// Every shard's tree counters, summed.
    pub trees: Counters,
    /// Each shard's tree as it is now (shape, cache use).
    pub shards: Vec<TreeStats>,
    pub journal: JournalStats,
}

impl Engine {
    /// Asks every shard for its counters (one message per shard).
    pub async fn stats(&self) -> Result<EngineStats, EngineError> {
        let mut trees = Counters::default();
        let mut shards = Vec::new();
        for id in 0..self.shard_count() {
            let s = self.on_shard(id, |shard| async move { shard.tree.stats() }).await?;
            trees.add(&s.counters);
            shards.push(s);
        }
        Ok(EngineStats { trees, shards, journal: self.shared.journal.stats() })
    }
}
