//! The engine's errors: what a gateway can get back from any operation.

use keel_drivers::IoError;
use keel_reactor::CallError;

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
    #[error("a transaction may lock at most {max} keys")]
    TooManyLocks { max: usize },
    #[error("a transaction of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TransactionTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("keys must be locked in one call, or later calls must lock keys that sort after every key already held")]
    LockOrder,
    #[error("shard {shard} has no space left")]
    NoSpace { shard: u32 },
    #[error("corrupt data in shard {shard}: {detail}")]
    Corrupt { shard: u32, detail: String },
    #[error("device error: {0}")]
    Io(#[from] IoError),
    #[error("the engine is shutting down ({0})")]
    Unavailable(#[from] CallError),
    #[error("the journal failed: {0}")]
    Journal(String),
}
