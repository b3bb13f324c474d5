//! Size limits every engine operation is checked against before anything
//! changes.

use crate::error::EngineError;
use keel_tree::MergeOp;

/// Limits of one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
    /// Keys one transaction may lock.
    pub txn_locks_max: usize,
    /// Encoded size of one transaction (it is one journal record).
    pub txn_bytes_max: usize,
    /// Entries one scan returns at most.
    pub scan_entries_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_bytes_max: keel_tree::limits::KEY_BYTES_MAX,
            value_bytes_max: keel_tree::limits::VALUE_BYTES_MAX,
            txn_locks_max: 4096,
            // One transaction is one journal record.
            txn_bytes_max: 1 << 20,
            scan_entries_max: 100_000,
        }
    }
}

impl Limits {
    pub fn check_key(&self, key: &[u8]) -> Result<(), EngineError> {
        if key.is_empty() {
            return Err(EngineError::EmptyKey);
        }
        if key.len() > self.key_bytes_max {
            return Err(EngineError::KeyTooLarge { len_bytes: key.len(), max_bytes: self.key_bytes_max });
        }
        Ok(())
    }

    pub fn check_value(&self, len_bytes: usize) -> Result<(), EngineError> {
        if len_bytes > self.value_bytes_max {
            return Err(EngineError::ValueTooLarge { len_bytes, max_bytes: self.value_bytes_max });
        }
        Ok(())
    }

    /// A merge must not be able to grow a value past the value limit.
    pub fn check_merge(&self, op: &MergeOp) -> Result<(), EngineError> {
        let reach = match op {
            MergeOp::Append(b) => b.len() as u64,
            MergeOp::PatchAt { offset, bytes } => offset.saturating_add(bytes.len() as u64),
            MergeOp::AddI64(_) => 8,
            MergeOp::FieldSet { field, value } => (field.len() + value.len()) as u64,
            MergeOp::FieldDelete { field } => field.len() as u64,
        };
        if reach > self.value_bytes_max as u64 {
            return Err(EngineError::ValueTooLarge {
                len_bytes: usize::try_from(reach).unwrap_or(usize::MAX),
                max_bytes: self.value_bytes_max,
            });
        }
        Ok(())
    }
}
