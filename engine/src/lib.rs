//! Keel's storage engine: shards, transactions, checkpoints and recovery over
//! the journal and the Bε-tree. It knows no protocol; the gateways sit on its
//! API ([`Engine`], [`Transaction`]).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod check;
mod checkpoint;
mod claim;
mod config;
mod engine;
mod error;
pub mod fsck;
pub mod layout;
mod limits;
mod locks;
mod open;
pub mod record;
mod recovery;
pub mod route;
mod scan;
mod shard;
mod stats;
pub mod superblock;
mod sync;
pub mod testing;
mod txn;
pub mod volume;

pub use config::EngineConfig;
pub use engine::{Engine, Lsn};
pub use error::EngineError;
pub use keel_drivers::DmaBuf;
pub use keel_tree::{merge, BlockInfo, BlockKind, FsckReport, MergeOp, Message, TreeConfig, Value};
pub use limits::Limits;
pub use open::OpenReport;
pub use stats::EngineStats;
pub use txn::Transaction;
