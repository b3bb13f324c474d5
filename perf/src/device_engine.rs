//! An engine on an io_uring data file (O_DIRECT), for the benchmarks whose
//! reads must reach the device: `ycsb --device` and `tree`.

use std::path::PathBuf;
use std::sync::Arc;

use keel_drivers::uring::{UringConfig, UringDevice};
use keel_drivers::{BlockDevice, DmaPool, DmaPoolConfig};
use keel_engine::testing::{start_on, TestEngineSpec};
use keel_engine::{Engine, EngineConfig};
use keel_reactor::Runtime;

/// Where and how the engine runs.
#[derive(Debug, Clone)]
pub struct DeviceEngineSpec {
    /// Data file (created and sized when missing) or block device.
    pub path: PathBuf,
    pub size_bytes: u64,
    pub reactors: usize,
    pub shards: u32,
    /// Node cache of all shards together (split evenly); `None`: the tree's default per shard.
    pub cache_bytes_total: Option<u64>,
    /// Leaf and internal node sizes (`None`: the tree's defaults).
    pub leaf_bytes: Option<usize>,
    pub internal_bytes: Option<usize>,
    /// Each tree's background maintenance task (`TreeConfig::background_maintenance`).
    pub background_maintenance: bool,
}

impl DeviceEngineSpec {
    /// The engine configuration: the defaults with the cache split over the shards.
    pub fn engine_config(&self) -> EngineConfig {
        let mut config = EngineConfig::default();
        if let Some(total) = self.cache_bytes_total {
            config.tree.cache_bytes = (total / u64::from(self.shards.max(1))) as usize;
        }
        if let Some(bytes) = self.leaf_bytes {
            config.tree.leaf_bytes = bytes;
        }
        if let Some(bytes) = self.internal_bytes {
            config.tree.internal_bytes = bytes;
        }
        config.tree.background_maintenance = self.background_maintenance;
        config
    }
}

/// Opens the device and starts reactors and an engine on it: a fresh volume
/// when `format` (erasing what the file held), else the volume it holds.
pub fn start(spec: &DeviceEngineSpec, format: bool) -> Result<(Runtime, Engine), String> {
    let pool =
        DmaPool::new(&DmaPoolConfig { size_bytes: 64 << 20, ..Default::default() }).map_err(|e| e.to_string())?;
    let mut uring = UringConfig::new(&spec.path);
    uring.create_size_bytes = Some(spec.size_bytes);
    let device = UringDevice::open(&uring, Arc::new(pool)).map_err(|e| format!("{}: {e}", spec.path.display()))?;
    if !device.is_direct() {
        return Err(format!("{}: opened without O_DIRECT; reads would not reach the device", spec.path.display()));
    }
    let device: Arc<dyn BlockDevice> = Arc::new(device);
    let test_spec = TestEngineSpec {
        reactors: spec.reactors.max(1),
        shards: spec.shards.max(1),
        config: spec.engine_config(),
        ..TestEngineSpec::default()
    };
    start_on(device, &test_spec, format).map_err(|e| e.to_string())
}

/// Bytes this process has caused to be written to storage so far
/// (`write_bytes` of /proc/self/io: O_DIRECT writes, io_uring's included).
pub fn process_write_bytes() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/self/io").map_err(|e| format!("/proc/self/io: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "/proc/self/io has no write_bytes line".to_owned())
}
