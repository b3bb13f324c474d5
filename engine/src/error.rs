//! The engine's errors: what a gateway can get back from any operation.

use keel_drivers::IoError;
use keel_journal::JournalError;
use keel_reactor::CallError;
use keel_tree::TreeError;

use crate::volume::VolumeError;

/// Why an engine operation failed. Nothing was changed unless the variant says
/// otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("key of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    KeyTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("empty keys are not allowed")]
    EmptyKey,
    #[error("value of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    ValueTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("invalid operation: {0}")]
    Invalid(String),
    #[error("a transaction may lock at most {max} keys")]
    TooManyLocks { max: usize },
    #[error("a transaction of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TransactionTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("keys must be locked in one call, or later calls must lock keys that sort after every key already held")]
    LockOrder,
    #[error("shard {shard} has no space left ({detail})")]
    NoSpace { shard: u32, detail: String },
    #[error("corrupt data in shard {shard}: {detail}")]
    Corrupt { shard: u32, detail: String },
    #[error("device error in shard {shard}: {detail}")]
    Device { shard: u32, detail: String },
    #[error("device error: {0}")]
    Io(#[from] IoError),
    #[error("the engine is shutting down ({0})")]
    Unavailable(#[from] CallError),
    #[error("journal: {0}")]
    Journal(String),
    #[error("volume: {0}")]
    Volume(String),
    #[error("recovery: {0}")]
    Recovery(String),
}

impl EngineError {
    /// Maps a tree error of shard `shard`.
    pub(crate) fn from_tree(shard: u32, e: TreeError) -> EngineError {
        match e {
            TreeError::KeyTooLarge { len_bytes, max_bytes } => EngineError::KeyTooLarge { len_bytes, max_bytes },
            TreeError::ValueTooLarge { len_bytes, max_bytes } => EngineError::ValueTooLarge { len_bytes, max_bytes },
            TreeError::NoSpace { .. } => EngineError::NoSpace { shard, detail: e.to_string() },
            TreeError::Corrupt { .. } | TreeError::ExtentConflict { .. } => {
                EngineError::Corrupt { shard, detail: e.to_string() }
            }
            TreeError::Io { .. } | TreeError::Dma(_) | TreeError::CacheTooSmall { .. } => {
                EngineError::Device { shard, detail: e.to_string() }
            }
            other => EngineError::Invalid(other.to_string()),
        }
    }
}

impl From<JournalError> for EngineError {
    fn from(e: JournalError) -> Self {
        EngineError::Journal(e.to_string())
    }
}

impl From<VolumeError> for EngineError {
    fn from(e: VolumeError) -> Self {
        EngineError::Volume(e.to_string())
    }
}
