//! Opening the configured device: the DMA pool, then the backend.

use std::path::Path;
use std::sync::Arc;

use keel_config::{Backend, Config, Hugepages};
use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig};
use keel_drivers::nvme::{NvmeConfig, NvmeDevice};
use keel_drivers::uring::{UringConfig, UringDevice};
use keel_drivers::{BlockDevice, DmaPool, DmaPoolConfig, HugepagePolicy};

use crate::error::CliError;
use crate::format::human_bytes;
use crate::progress;

/// Whether opening may create (or grow) the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// `serve` and `mkfs`: create the data directory and file, sized per `device.size`.
    IfMissing,
    /// `inspect`: open what exists, change nothing.
    Never,
}

/// An opened device and what to tell the user about it.
#[derive(Debug)]
pub struct Storage {
    pub device: Arc<dyn BlockDevice>,
    pub pool: Arc<DmaPool>,
    /// Where the data lives, in words ("file ./keel-data/keel.img (io_uring, O_DIRECT)").
    pub location: String,
    /// A memory device reads as zeros when opened and keeps nothing at exit.
    pub is_memory: bool,
}

impl Storage {
    pub fn devices(&self) -> Vec<Arc<dyn BlockDevice>> {
        vec![Arc::clone(&self.device)]
    }
}

pub fn open(config: &Config, create: Create) -> Result<Storage, CliError> {
    let pool = Arc::new(DmaPool::new(&DmaPoolConfig {
        size_bytes: usize::try_from(config.dma.pool_size.bytes()).unwrap_or(usize::MAX),
        hugepages: match config.dma.hugepages {
            Hugepages::Auto => HugepagePolicy::Auto,
            Hugepages::Require => HugepagePolicy::Require,
            Hugepages::Never => HugepagePolicy::Never,
        },
    })?);
    match config.device.backend {
        Backend::Memory => Ok(open_memory(config, pool)),
        Backend::Uring => open_uring(config, pool, create),
        Backend::Nvme => open_nvme(config, pool),
    }
}

fn open_memory(config: &Config, pool: Arc<DmaPool>) -> Storage {
    let device_config = MemoryDeviceConfig {
        capacity_bytes: config.device.size.bytes(),
        queue_depth_max: config.reactors.queue_depth,
        ..MemoryDeviceConfig::default()
    };
    let device: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(&device_config, Arc::clone(&pool)));
    Storage {
        device,
        pool,
        location: "in memory (backend = \"memory\": nothing is kept after exit)".into(),
        is_memory: true,
    }
}

fn open_uring(config: &Config, pool: Arc<DmaPool>, create: Create) -> Result<Storage, CliError> {
    let path = config.device.image_path();
    let size_bytes = config.device.size.bytes();
    let mut uring = UringConfig::new(&path);
    uring.buffered_fallback = config.device.buffered_fallback;
    uring.queue_depth_max = config.reactors.queue_depth.min(keel_drivers::uring::QUEUE_DEPTH_MAX);
    let mut spinner = None;
    if create == Create::IfMissing {
        ensure_dir(&config.device.data_dir)?;
        if needs_sizing(&path, size_bytes) {
            spinner = Some(progress::spinner(format!("reserving {} for {}", human_bytes(size_bytes), path.display())));
        }
        uring.create_size_bytes = Some(size_bytes);
    }
    let opened = UringDevice::open(&uring, Arc::clone(&pool));
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let device = opened?;
    let kind = if device.is_block_device() { "block device" } else { "file" };
    let mode = if device.is_direct() { "O_DIRECT" } else { "buffered fallback" };
    let location = format!("{kind} {} (io_uring, {mode})", path.display());
    Ok(Storage { device: Arc::new(device), pool, location, is_memory: false })
}

fn open_nvme(config: &Config, pool: Arc<DmaPool>) -> Result<Storage, CliError> {
    let [address] = config.device.pci_addresses.as_slice() else {
        return Err(CliError::Usage(format!(
            "device.pci_addresses lists {} controllers; this version puts a volume on exactly one",
            config.device.pci_addresses.len()
        )));
    };
    let mut nvme = NvmeConfig::new(address);
    nvme.io_queue_pairs_max = u16::try_from(config.reactors.effective_count()).unwrap_or(u16::MAX);
    nvme.queue_depth_max = config.reactors.queue_depth.min(nvme.queue_depth_max);
    nvme.interrupts = config.reactors.idle == keel_config::IdleMode::Adaptive;
    nvme.command_timeout_ms = u64::try_from(config.device.nvme_command_timeout.get().as_millis()).unwrap_or(u64::MAX);
    let device = NvmeDevice::open(&nvme, Arc::clone(&pool)).map_err(|e| CliError::Nvme(e.to_string()))?;
    let location = format!("NVMe controller {address}, namespace {} (VFIO)", nvme.nsid);
    Ok(Storage { device: Arc::new(device), pool, location, is_memory: false })
}

fn ensure_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|source| CliError::DataDir { path: dir.to_owned(), source })
}

/// True when opening will create the file or grow it (fallocate can take a
/// moment on a large size, so the user gets a spinner).
fn needs_sizing(path: &Path, size_bytes: u64) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file() && meta.len() < size_bytes,
        Err(_) => true,
    }
}
