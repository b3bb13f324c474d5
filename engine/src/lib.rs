//! Keel's storage engine: shards, transactions, checkpoints and recovery over
//! the journal and the Bε-tree. It knows no protocol; the gateways sit on its
//! API ([`Engine`], [`Transaction`]).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod engine;
mod error;
pub mod layout;
mod limits;
mod locks;
pub mod merge;
pub mod record;
pub mod route;
mod shard;
mod store;
pub mod superblock;
mod txn;
pub mod volume;
mod wal;

pub use engine::{Engine, Lsn};
pub use error::EngineError;
pub use limits::Limits;
pub use merge::MergeOp;
pub use store::Message;
pub use txn::Transaction;
