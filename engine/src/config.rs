//! How an engine is opened: limits, tree and journal settings, checkpoint policy.

use std::time::Duration;

use keel_journal::JournalConfig;
use keel_tree::TreeConfig;

use crate::limits::Limits;

/// Everything [`crate::Engine::open`] needs besides the device.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub limits: Limits,
    /// Settings of every shard's tree; `cache_bytes` is per shard.
    pub tree: TreeConfig,
    pub journal: JournalConfig,
    /// A checkpoint is taken at least this often while there are changes.
    pub checkpoint_interval: Duration,
    /// ... and as soon as the journal is this full (percent of the ring), so
    /// that appenders never wait for space in normal operation and recovery
    /// replays a bounded log.
    pub checkpoint_journal_percent: u8,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: Limits::default(),
            tree: TreeConfig::default(),
            // Half a megabyte per record: a transaction's large values go out
            // of line. Batches of 2 MiB (not the journal's default 8 MiB):
            // the journal keeps `writes_in_flight_max + pieces per batch + 1`
            // DMA buffers for good, and with 8 MiB batches that is 18 MiB of
            // a pool that may be as small as 32 MiB (`dma.pool_size`), which
            // checkpoint and eviction writes need too. For the same reason 4
            // writes in flight, not the journal's 8 (each is a 2 MiB buffer).
            journal: JournalConfig {
                record_payload_bytes_max: 512 << 10,
                batch_bytes_max: 2 << 20,
                writes_in_flight_max: 4,
                ..JournalConfig::default()
            },
            checkpoint_interval: Duration::from_secs(30),
            // Every checkpoint rewrites each dirty internal node whole: at 25%
            // of the ring they were 16% of the device bytes of a random fill
            // (BENCHMARKS.md, "Tree against RocksDB"); half the ring halves
            // that, and recovery still replays a bounded log.
            checkpoint_journal_percent: 50,
        }
    }
}

impl EngineConfig {
    /// Small nodes, cache and journal settings for tests that want deep trees,
    /// evictions and frequent checkpoints.
    pub fn tiny_for_tests() -> Self {
        EngineConfig {
            tree: TreeConfig::tiny_for_tests(),
            checkpoint_interval: Duration::from_millis(200),
            ..EngineConfig::default()
        }
    }
}
