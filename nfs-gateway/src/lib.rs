//! Keel's NFSv3 gateway: ONC RPC over TCP, MOUNT v3, NFS v3, an optional
//! portmapper, and the file system they serve, built on the engine.
//!
//! What it owns: the wire protocols (XDR, record marking, RPC headers,
//! credentials), the duplicate-request cache, exports and their access
//! rules, file handles, and the file system's schema on the engine's keys
//! (inodes, directory entries, data chunks; `fs`). What it must never do:
//! panic on anything a client sends, hold unbounded memory for a client,
//! answer a change before it is durable unless the export says `async` or
//! the client asked for an UNSTABLE write, or reach the device other than
//! through the engine.
//!
//! Layers, bottom up: `xdr` -> `rpc` -> (`mount`, `nfs3`, `portmap`) ->
//! `server` (connections on the reactors). `fs` sits apart, on the engine;
//! `nfs3` translates between the two. `client` is a small blocking NFSv3
//! client used by the tests and by `keel-perf nfs`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod client;
pub mod export;
pub mod fs;
pub mod handle;
pub mod mount;
pub mod nfs3;
pub mod portmap;
pub mod rpc;
pub mod server;
pub mod service;
pub mod xdr;

pub use export::{ClientMatch, ExportConfig, Squash};
pub use fs::{Fs, FsOptions};
pub use server::{Gateway, GatewayConfig, GatewayError, Limits};
pub use service::Ports;
