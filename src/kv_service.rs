//! The Redis-protocol gateway as a `keel serve` service: maps `[kv]` onto
//! `keel_kv`'s settings and starts it on the running reactors and engine.

use std::time::Instant;

use keel_config::{KvConfig as KvSection, KvDurability};
use keel_kv::{Durability, KvConfig, KvServer};
use keel_reactor::Runtime;

use crate::services::{Service, ServiceContext};

/// `[kv]` as the gateway's settings.
pub fn gateway_config(section: &KvSection) -> KvConfig {
    let defaults = KvConfig::default();
    let bulk_bytes_max = usize::try_from(section.max_bulk_size.0).unwrap_or(usize::MAX);
    let query_buffer_bytes_max = usize::try_from(section.max_query_buffer.0).unwrap_or(usize::MAX);
    let decode =
        keel_kv::resp::DecodeLimits { bulk_bytes_max, request_bytes_max: query_buffer_bytes_max, ..defaults.decode };
    KvConfig {
        listen: section.listen,
        requirepass: section.requirepass.clone(),
        max_clients: section.max_clients,
        durability: match section.durability {
            KvDurability::Always => Durability::Always,
            KvDurability::Everysec => Durability::Everysec,
            KvDurability::No => Durability::No,
        },
        decode,
        query_buffer_bytes_max,
        idle_timeout: section.idle_timeout.map(|d| d.0),
        meta_cache_bytes: usize::try_from(section.meta_cache.0).unwrap_or(usize::MAX),
        ..defaults
    }
}

pub fn start(context: &ServiceContext<'_>) -> Result<Box<dyn Service>, String> {
    let config = gateway_config(&context.config.kv);
    let server = KvServer::start(context.runtime, context.engine.clone(), config).map_err(|e| e.to_string())?;
    Ok(Box::new(KvService { server }))
}

#[derive(Debug)]
struct KvService {
    server: KvServer,
}

impl Service for KvService {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn endpoints(&self) -> Vec<String> {
        vec![format!("redis {}", self.server.local_addr())]
    }

    fn stop(self: Box<Self>, _runtime: &Runtime, deadline: Instant) -> Result<(), String> {
        match self.server.stop_by(deadline) {
            0 => Ok(()),
            left => Err(format!("{left} connections or tasks still open at the deadline")),
        }
    }
}
