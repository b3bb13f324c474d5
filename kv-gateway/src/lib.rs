//! Keel's Redis-protocol (RESP2/RESP3) key-value gateway.
//!
//! It owns the translation of Redis commands onto the engine's keys and
//! transactions (see `keys.rs` for the layout) and the client connections on
//! the reactors. It must never reach below the engine API, and never reply
//! that a write succeeded before the configured durability holds.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod cmd;
pub mod config;
mod conn;
pub mod db;
mod duplex;
pub mod expiry;
pub mod glob;
mod input;
pub mod keys;
pub mod meta;
pub mod meta_cache;
pub mod resp;
mod server;
mod session;
mod stats;

pub use config::{Durability, KvConfig};
pub use server::{KvError, KvServer};

/// The Redis version whose commands and replies the gateway follows; clients
/// read it from HELLO and INFO.
pub const REDIS_VERSION: &str = "7.2.0";
