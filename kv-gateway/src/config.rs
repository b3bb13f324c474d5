//! The gateway's settings (the binary fills them from keel.toml's `[kv]`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::resp::DecodeLimits;

/// When a write is acknowledged, in Redis's `appendfsync` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the write's journal record is durable (group commit shares the flush).
    #[default]
    Always,
    /// At once; the journal is made durable about once a second.
    Everysec,
    /// At once; durability is left to the engine's checkpoints.
    No,
}

impl Durability {
    pub fn name(self) -> &'static str {
        match self {
            Durability::Always => "always",
            Durability::Everysec => "everysec",
            Durability::No => "no",
        }
    }
}

/// Settings of one gateway.
#[derive(Debug, Clone)]
pub struct KvConfig {
    /// 127.0.0.1:6379 by default: the appliance is not exposed unless asked.
    pub listen: SocketAddr,
    pub requirepass: Option<String>,
    pub max_clients: u32,
    pub durability: Durability,
    pub decode: DecodeLimits,
    /// Bytes of unparsed input one connection may hold (a pipeline's worth).
    pub query_buffer_bytes_max: usize,
    /// Largest reply one connection may be sent: a reply over it closes the
    /// connection instead. A pipeline's replies together may exceed it; they
    /// are written out as the pipeline runs.
    pub output_buffer_bytes_max: usize,
    /// Connections idle this long are closed; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Pending connections the kernel queues per listener.
    pub backlog: u32,
    /// How often each reactor sweeps its shards' expired keys.
    pub expiry_sweep_interval: Duration,
    /// Most keys one sweep of one shard removes (bounds each tick's work).
    pub expiry_sweep_keys_max: usize,
    /// Memory for cached meta records (strings' values included), over all
    /// shards; 0 turns the cache off.
    pub meta_cache_bytes: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        let decode = DecodeLimits::default();
        KvConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6379)),
            requirepass: None,
            max_clients: 10_000,
            durability: Durability::Always,
            decode,
            query_buffer_bytes_max: decode.request_bytes_max + (64 << 10),
            output_buffer_bytes_max: 256 << 20,
            idle_timeout: None,
            backlog: 1024,
            expiry_sweep_interval: Duration::from_millis(100),
            expiry_sweep_keys_max: 200,
            meta_cache_bytes: 64 << 20,
        }
    }
}
