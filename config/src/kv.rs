//! `[kv]`: the Redis-protocol gateway.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::{check_range, Problem};
use crate::units::{ByteSize, HumanDuration};

/// When a write is acknowledged, in Redis's `appendfsync` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDurability {
    /// After its journal record is durable; group commit shares the flush.
    #[default]
    Always,
    /// At once; the journal is made durable every second.
    Everysec,
    /// At once; durability is left to checkpoints.
    No,
}

/// Longest password accepted (Redis has no limit; a bound keeps AUTH cheap).
const REQUIREPASS_BYTES_MAX: usize = 512;

/// `[kv]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table of [kv] settings")]
pub struct KvConfig {
    pub enabled: bool,
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Password clients must give with AUTH; none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirepass: Option<String>,
    /// Connections beyond this are refused with an error.
    pub max_clients: u32,
    pub durability: KvDurability,
    /// Largest bulk string (key or value) a client may send.
    pub max_bulk_size: ByteSize,
    /// Largest unprocessed input a connection may buffer (a pipeline's worth).
    pub max_query_buffer: ByteSize,
    /// Close connections idle this long; never when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<HumanDuration>,
    /// Memory for cached meta records (key type, expiry, a string's value)
    /// so reads skip the tree; "0B" turns the cache off.
    pub meta_cache: ByteSize,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 6379)),
            requirepass: None,
            max_clients: 10_000,
            durability: KvDurability::Always,
            max_bulk_size: ByteSize::mib(64),
            max_query_buffer: ByteSize::mib(256),
            idle_timeout: None,
            meta_cache: ByteSize::mib(64),
        }
    }
}

impl KvConfig {
    pub fn validate(&self) -> Result<(), Problem> {
        if self.listen.port() == 0 {
            return Err(Problem::new("kv.listen", format!("{} has port 0; give the port to listen on", self.listen)));
        }
        if let Some(pass) = &self.requirepass {
            if pass.is_empty() || pass.len() > REQUIREPASS_BYTES_MAX {
                return Err(Problem::new(
                    "kv.requirepass",
                    format!("must be 1 to {REQUIREPASS_BYTES_MAX} bytes (leave it out for no password)"),
                ));
            }
        }
        check_range("kv.max_clients", self.max_clients, 1, 1_000_000)?;
        check_range("kv.max_bulk_size", self.max_bulk_size, ByteSize::kib(1), ByteSize::mib(512))?;
        check_range("kv.max_query_buffer", self.max_query_buffer, self.max_bulk_size, ByteSize::gib(4))
            .map_err(|p| Problem::new(p.key, format!("{} (it must hold at least one kv.max_bulk_size)", p.reason)))?;
        check_range("kv.meta_cache", self.meta_cache, ByteSize(0), ByteSize::gib(64))?;
        if let Some(timeout) = self.idle_timeout {
            check_range(
                "kv.idle_timeout",
                timeout,
                HumanDuration::from_secs(1),
                HumanDuration::from_secs(365 * 86400),
            )?;
        }
        Ok(())
    }
}
