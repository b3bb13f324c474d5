//! Engines on memory devices, for tests (here and in the gateways) and for
//! CPU-path benchmarks. Real engines, real formats: only the medium is RAM.

use std::sync::Arc;

use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig};
use keel_drivers::{BlockDevice, DmaPool};
use keel_reactor::io::DeviceId;
use keel_reactor::{Runtime, RuntimeConfig};

use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::layout::LayoutParams;
use crate::volume::{self, MkfsParams};

/// The shape of a test engine.
#[derive(Debug, Clone)]
pub struct TestEngineSpec {
    pub reactors: usize,
    pub shards: u32,
    pub capacity_bytes: u64,
    pub dma_pool_bytes: usize,
    pub config: EngineConfig,
}

impl Default for TestEngineSpec {
    fn default() -> Self {
        TestEngineSpec {
            reactors: 2,
            shards: 4,
            capacity_bytes: 1 << 30,
            dma_pool_bytes: 64 << 20,
            config: EngineConfig::default(),
        }
    }
}

/// A memory device shaped for `spec`.
pub fn memory_device(spec: &TestEngineSpec) -> Arc<MemoryDevice> {
    let pool = Arc::new(DmaPool::for_tests(spec.dma_pool_bytes));
    let config = MemoryDeviceConfig { capacity_bytes: spec.capacity_bytes, ..MemoryDeviceConfig::default() };
    Arc::new(MemoryDevice::new(&config, pool))
}

/// Formats `device` (device 0 of `runtime`) with `shards` shards.
pub fn mkfs(runtime: &Runtime, shards: u32) -> Result<(), EngineError> {
    let params = MkfsParams {
        layout: LayoutParams { shard_count: shards, journal_bytes: None },
        force: true,
        zero_journal: false,
    };
    runtime.call_blocking(0, move || async move { volume::mkfs(DeviceId(0), &params, |_, _| {}).await })??;
    Ok(())
}

/// Starts reactors over `device`, formats it when `format` says so, and
/// opens an engine on it.
pub fn start_on(
    device: Arc<dyn BlockDevice>,
    spec: &TestEngineSpec,
    format: bool,
) -> Result<(Runtime, Engine), EngineError> {
    let runtime_config = RuntimeConfig { reactors: spec.reactors, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&runtime_config, &[device])
        .map_err(|e| EngineError::Invalid(format!("cannot start reactors: {e}")))?;
    if format {
        mkfs(&runtime, spec.shards)?;
    }
    let (engine, _) = Engine::open(&runtime, DeviceId(0), spec.config.clone())?;
    Ok((runtime, engine))
}

/// A fresh engine on a fresh memory device.
pub fn memory_engine(spec: &TestEngineSpec) -> (Runtime, Engine, Arc<MemoryDevice>) {
    let device = memory_device(spec);
    let (runtime, engine) =
        start_on(Arc::clone(&device) as Arc<dyn BlockDevice>, spec, true).expect("a fresh memory engine opens");
    (runtime, engine, device)
}
