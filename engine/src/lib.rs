//! Keel's storage engine: shards, transactions, checkpoints and recovery over
//! the journal and the Bε-tree. It knows no protocol; the gateways sit on its
//! API.
#![forbid(unsafe_code)]

pub mod layout;
pub mod superblock;
