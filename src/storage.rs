//! Opening the configured device: the DMA pool, then the backend.

use std::path::Path;
use std::sync::Arc;

use keel_config::{Backend, Config, Hugepages};
use keel_drivers::aggregate::{format_set_id, probe_label, LabelPolicy, LabelState, SetConfig, SetDevice};
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
    /// `mkfs --force`: like `IfMissing`, and several devices are labelled as
    /// a new set whatever they held.
    Anew,
}

impl Create {
    fn label_policy(self) -> LabelPolicy {
        match self {
            Create::IfMissing => LabelPolicy::CreateIfBlank,
            Create::Never => LabelPolicy::Existing,
            Create::Anew => LabelPolicy::Relabel,
        }
    }
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
        Backend::Nvme => open_nvme(config, pool, create),
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
    let paths = config.device.image_paths();
    let mut members: Vec<Arc<dyn BlockDevice>> = Vec::with_capacity(paths.len());
    let mut words = Vec::with_capacity(paths.len());
    for path in &paths {
        let device = open_uring_file(config, path, Arc::clone(&pool), create)?;
        let kind = if device.is_block_device() { "block device" } else { "file" };
        let mode = if device.is_direct() { "O_DIRECT" } else { "buffered fallback" };
        words.push((format!("{kind} {}", path.display()), mode));
        members.push(Arc::new(device));
    }
    if let ([device], [(what, mode)]) = (members.as_slice(), words.as_slice()) {
        refuse_a_lone_member(device.as_ref(), create)?;
        let location = format!("{what} (io_uring, {mode})");
        return Ok(Storage { device: Arc::clone(device), pool, location, is_memory: false });
    }
    let what: Vec<String> = words.iter().map(|(what, mode)| format!("{what} ({mode})")).collect();
    open_set(members, create, pool, &format!("{} (io_uring)", what.join(", ")))
}

fn open_uring_file(config: &Config, path: &Path, pool: Arc<DmaPool>, create: Create) -> Result<UringDevice, CliError> {
    let size_bytes = config.device.size.bytes();
    let mut uring = UringConfig::new(path);
    uring.buffered_fallback = config.device.buffered_fallback;
    uring.queue_depth_max = config.reactors.queue_depth.min(keel_drivers::uring::QUEUE_DEPTH_MAX);
    uring.submit_batch_max = config.device.submit_batch_max;
    uring.submit_write_batch_max = config.device.submit_write_batch_max;
    let mut spinner = None;
    if create != Create::Never {
        ensure_dir(&config.device.data_dir)?;
        if needs_sizing(path, size_bytes) {
            spinner = Some(progress::spinner(format!("reserving {} for {}", human_bytes(size_bytes), path.display())));
        }
        uring.create_size_bytes = Some(size_bytes);
    }
    let opened = UringDevice::open(&uring, pool);
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    Ok(opened?)
}

/// Several devices: one striped set, its members checked (or labelled).
fn open_set(
    members: Vec<Arc<dyn BlockDevice>>,
    create: Create,
    pool: Arc<DmaPool>,
    what: &str,
) -> Result<Storage, CliError> {
    let count = members.len();
    let set = SetDevice::open(members, &SetConfig { labels: create.label_policy(), ..SetConfig::default() })?;
    if set.created() {
        println!("Labelled {count} devices as a new striped set {}.", format_set_id(&set.label().set_id));
    }
    let location = format!(
        "striped set {} of {count} ({} KiB stripes): {what}",
        format_set_id(&set.label().set_id),
        set.label().stripe_bytes / 1024
    );
    Ok(Storage { device: Arc::new(set), pool, location, is_memory: false })
}

fn open_nvme(config: &Config, pool: Arc<DmaPool>, create: Create) -> Result<Storage, CliError> {
    let addresses = &config.device.pci_addresses;
    let mut members: Vec<Arc<dyn BlockDevice>> = Vec::with_capacity(addresses.len());
    let mut nsid = 0;
    for address in addresses {
        let mut nvme = NvmeConfig::new(address);
        nvme.io_queue_pairs_max = u16::try_from(config.reactors.effective_count()).unwrap_or(u16::MAX);
        nvme.queue_depth_max = config.reactors.queue_depth.min(nvme.queue_depth_max);
        nvme.interrupts = config.reactors.idle == keel_config::IdleMode::Adaptive;
        nvme.command_timeout_ms =
            u64::try_from(config.device.nvme_command_timeout.get().as_millis()).unwrap_or(u64::MAX);
        nvme.resets_max = config.device.nvme_resets_max;
        nvme.reset_window_ms = u64::try_from(config.device.nvme_reset_window.get().as_millis()).unwrap_or(u64::MAX);
        nsid = nvme.nsid;
        let device =
            NvmeDevice::open(&nvme, Arc::clone(&pool)).map_err(|e| CliError::Nvme(format!("{address}: {e}")))?;
        members.push(Arc::new(device));
    }
    if let ([device], [address]) = (members.as_slice(), addresses.as_slice()) {
        refuse_a_lone_member(device.as_ref(), create)?;
        let location = format!("NVMe controller {address}, namespace {nsid} (VFIO)");
        return Ok(Storage { device: Arc::clone(device), pool, location, is_memory: false });
    }
    open_set(members, create, pool, &format!("NVMe controllers {}, namespace {nsid} (VFIO)", addresses.join(", ")))
}

/// A single device that carries a set label is one member of a striped set:
/// its pages are every other stripe of a volume, and page 1 may even hold a
/// valid superblock of that volume. Refused, unless `mkfs --force` makes it
/// a volume of its own.
fn refuse_a_lone_member(device: &dyn BlockDevice, create: Create) -> Result<(), CliError> {
    if create == Create::Anew {
        return Ok(());
    }
    if let LabelState::Labelled(label) = probe_label(device)? {
        return Err(CliError::Usage(format!(
            "{} is member {} of the striped set {} of {} devices, not a volume of its own: list all {} members, \
             in order, in device.pci_addresses or device.paths (or `keel mkfs --force` to make it a volume alone)",
            device.info().name,
            label.member_index,
            format_set_id(&label.set_id),
            label.member_count,
            label.member_count
        )));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_configured_submit_burst_defaults_to_the_drivers_default() {
        // Two crates, one measured figure: keel-perf's device and journal
        // benchmarks open uring devices with the drivers' default.
        assert_eq!(keel_config::device::SUBMIT_BATCH_MAX_DEFAULT, keel_drivers::uring::SUBMIT_BATCH_MAX_DEFAULT);
        assert_eq!(
            keel_config::device::SUBMIT_WRITE_BATCH_MAX_DEFAULT,
            keel_drivers::uring::SUBMIT_WRITE_BATCH_MAX_DEFAULT
        );
    }
}
