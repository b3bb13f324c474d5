//! `[dma]`: the pool of DMA-able buffers every device request carries.

use serde::{Deserialize, Serialize};

use crate::error::{check_range, Problem};
use crate::units::ByteSize;

/// Whether the DMA pool must, may or must not use 2 MiB hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hugepages {
    /// Use hugepages when enough are reserved, else ordinary pages (one log line).
    #[default]
    Auto,
    /// Refuse to start without hugepages for the whole pool.
    Require,
    /// Ordinary pages only.
    Never,
}

/// Smallest pool: one 2 MiB region.
/// Room for the journal's batch buffers, checkpoint and eviction writes.
pub const POOL_SIZE_MIN: ByteSize = ByteSize::mib(32);
/// The DMA pool's own upper bound (drivers::dma::POOL_BYTES_MAX).
pub const POOL_SIZE_MAX: ByteSize = ByteSize::gib(64);

/// `[dma]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table of [dma] settings")]
pub struct DmaConfig {
    /// Total pool size, rounded up to whole 2 MiB regions. It bounds the I/O
    /// in flight: exhaustion makes requests wait, it never fails them.
    pub pool_size: ByteSize,
    pub hugepages: Hugepages,
}

impl Default for DmaConfig {
    fn default() -> Self {
        DmaConfig { pool_size: ByteSize::mib(64), hugepages: Hugepages::Auto }
    }
}

impl DmaConfig {
    pub fn validate(&self) -> Result<(), Problem> {
        check_range("dma.pool_size", self.pool_size, POOL_SIZE_MIN, POOL_SIZE_MAX)
    }
}
