//! `[engine]`: shards, cache, tree nodes, journal and checkpoints.
//!
//! `shards` and `journal_size` are fixed by mkfs; `keel serve` maps the rest
//! onto `keel_engine::EngineConfig`. How long a write waits for durability is
//! each gateway's setting (`kv.durability`, the NFS stable_how and COMMIT).

use serde::{Deserialize, Serialize};

use crate::error::{check_range, Problem};
use crate::units::{ByteSize, HumanDuration};

/// The most shards a volume can have; equal to the superblock's limit
/// (`keel_engine::superblock::SHARDS_MAX`, checked by a test in the binary).
pub const SHARDS_MAX: u32 = 32;
/// The smallest journal a volume may have (`keel_engine::layout::JOURNAL_PAGES_MIN` pages).
pub const JOURNAL_SIZE_MIN: ByteSize = ByteSize::mib(8);

/// `[engine]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table of [engine] settings")]
pub struct EngineConfig {
    /// Shards (key-space partitions, one Bε-tree each), fixed at mkfs.
    /// Default: one per reactor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Journal ring size, fixed at mkfs. Default: 1/32 of the device, between 8MiB and 1GiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_size: Option<ByteSize>,
    /// Node cache budget, shared by all shards.
    pub cache_size: ByteSize,
    /// Bε-tree internal node size (a power of two); leaves are 16 KiB
    /// (`keel_tree::TreeConfig`'s default).
    pub node_size: ByteSize,
    /// Time between checkpoints (a checkpoint also starts when the journal fills).
    pub checkpoint_interval: HumanDuration,
    /// Each shard's tree flushes and evicts in a background task, so writers
    /// seldom wait for it; off: writers do it themselves.
    pub background_maintenance: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            shards: None,
            journal_size: None,
            cache_size: ByteSize::mib(256),
            // The measured flash default (BENCHMARKS.md, "Tree node size").
            node_size: ByteSize::kib(64),
            checkpoint_interval: HumanDuration::from_secs(30),
            background_maintenance: true,
        }
    }
}

impl EngineConfig {
    /// Shards for a new volume on `reactors` reactors.
    pub fn effective_shards(&self, reactors: usize) -> u32 {
        self.shards.unwrap_or_else(|| u32::try_from(reactors).unwrap_or(SHARDS_MAX).clamp(1, SHARDS_MAX))
    }

    pub fn validate(&self) -> Result<(), Problem> {
        if let Some(shards) = self.shards {
            check_range("engine.shards", shards, 1, SHARDS_MAX)?;
        }
        if let Some(journal) = self.journal_size {
            check_range("engine.journal_size", journal, JOURNAL_SIZE_MIN, ByteSize::gib(64))?;
            if journal.bytes() % 4096 != 0 {
                return Err(Problem::new("engine.journal_size", format!("{journal} is not a multiple of 4KiB")));
            }
        }
        check_range("engine.cache_size", self.cache_size, ByteSize::mib(1), ByteSize(1 << 50))?;
        check_range("engine.node_size", self.node_size, ByteSize::kib(4), ByteSize::mib(4))?;
        if !self.node_size.bytes().is_power_of_two() {
            return Err(Problem::new("engine.node_size", format!("{} is not a power of two", self.node_size)));
        }
        check_range(
            "engine.checkpoint_interval",
            self.checkpoint_interval,
            HumanDuration::from_secs(1),
            HumanDuration::from_secs(24 * 3600),
        )
    }
}
