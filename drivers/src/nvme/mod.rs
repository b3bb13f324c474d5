//! The NVMe backend: a userspace driver for NVMe controllers handed to
//! vfio-pci, in the manner of SPDK's: a passive library that the reactors
//! poll, one I/O queue pair per reactor, no locks on the I/O path.
//!
//! Layers, bottom up:
//! - [`vfio`] (over [`vfio_sys`]): container, group and device descriptors,
//!   DMA mappings, interrupts; [`pci`]: sysfs (driver binding, IOMMU groups);
//! - [`bar`]: the controller's registers; [`command`], [`status`],
//!   [`identify`], [`prp`]: the NVMe data structures;
//! - [`ring`], [`admin`]: queues in DMA memory, and the admin queue;
//! - [`controller`]: bring-up, reset, failure, removal and shutdown of one
//!   controller ([`lifecycle`]: its states); [`qpair`]: the I/O queue pairs
//!   the engine uses; [`recovery`]: timeouts, abort, reset, resubmission;
//! - [`irq`], [`removal`]: MSI-X to eventfds for sleeping reactors, and the
//!   device-request interrupt that announces an unbind or hot-remove.
//!
//! The DMA pool is mapped into the controller's IOMMU domain once; the pool's
//! buffers, the queue rings and the PRP lists all live in it.

pub mod admin;
pub mod bar;
pub mod command;
pub mod controller;
pub mod error;
pub mod identify;
pub mod iova;
pub mod irq;
pub mod lifecycle;
pub mod pci;
pub mod prp;
pub mod qpair;
pub mod recovery;
pub mod removal;
pub mod reset_budget;
pub mod ring;
pub mod status;
pub mod vfio;
pub mod vfio_sys;

use std::sync::Arc;

use crate::device::{BlockDevice, DeviceInfo, QueuePair};
use crate::dma::{DmaPool, REGION_BYTES};
use crate::error::DeviceError;

pub use controller::Controller;
pub use error::NvmeError;
pub use qpair::NvmeQueuePair;

/// How to open one controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeConfig {
    /// PCI address, e.g. "0000:00:04.0"; the device must be bound to vfio-pci.
    pub pci_address: String,
    /// Namespace to use.
    pub nsid: u32,
    /// MSI-X interrupts to eventfds, so an idle reactor can sleep; without
    /// them the queue pairs are polled only (lowest overhead).
    pub interrupts: bool,
    /// I/O queue pairs to ask the controller for (one per reactor).
    pub io_queue_pairs_max: u16,
    /// Most commands in flight per queue pair.
    pub queue_depth_max: u32,
    /// After this long a command is aborted; after twice this long the
    /// controller is reset (and failed if the reset does not work).
    pub command_timeout_ms: u64,
    /// Limit for each admin command.
    pub admin_timeout_ms: u64,
    /// Resets allowed within `reset_window_ms`; the next one fails the
    /// controller for good (`DeviceGone`) instead of resetting it again.
    pub resets_max: u32,
    pub reset_window_ms: u64,
}

impl NvmeConfig {
    pub fn new(pci_address: &str) -> Self {
        NvmeConfig {
            pci_address: pci_address.to_owned(),
            nsid: 1,
            interrupts: true,
            io_queue_pairs_max: 16,
            queue_depth_max: 1023,
            command_timeout_ms: 30_000,
            admin_timeout_ms: 5_000,
            resets_max: 3,
            reset_window_ms: 600_000,
        }
    }
}

/// An NVMe namespace on a controller driven from user space.
#[derive(Debug)]
pub struct NvmeDevice {
    info: DeviceInfo,
    pool: Arc<DmaPool>,
    // The watcher holds only a weak reference; it stops before the
    // controller shuts down.
    _watcher: Option<removal::RemovalWatcher>,
    controller: Arc<Controller>,
}

impl NvmeDevice {
    /// Opens the controller at `config.pci_address` (bound to vfio-pci),
    /// with request buffers from `pool`, which is mapped into its IOMMU domain.
    pub fn open(config: &NvmeConfig, pool: Arc<DmaPool>) -> Result<NvmeDevice, NvmeError> {
        let controller = Arc::new(Controller::open(config, Arc::clone(&pool))?);
        let info = device_info(&controller);
        let watcher = removal::RemovalWatcher::start(&controller);
        Ok(NvmeDevice { info, pool, _watcher: watcher, controller })
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// True once the controller failed or was taken away (not while it is
    /// being reset).
    pub fn is_gone(&self) -> bool {
        self.controller.is_gone()
    }
}

fn device_info(controller: &Controller) -> DeviceInfo {
    let identity = &controller.identity;
    let namespace = &controller.namespace;
    let mdts_bytes = if identity.mdts == 0 || identity.mdts > 20 {
        REGION_BYTES as u64
    } else {
        controller.cap.page_bytes_min << identity.mdts
    };
    let queue_depth_max = controller
        .config
        .queue_depth_max
        .clamp(1, controller::IO_QUEUE_ENTRIES_MAX - 1)
        .min(controller.cap.queue_entries_max - 1);
    DeviceInfo {
        name: format!("nvme:{}", controller.pci_address),
        block_size_bytes: namespace.block_size_bytes,
        capacity_blocks: namespace.size_blocks,
        volatile_write_cache: identity.volatile_write_cache,
        fua: true,
        max_transfer_bytes: mdts_bytes.min(REGION_BYTES as u64) as u32,
        queue_depth_max,
        atomic_write_blocks: namespace.atomic_write_blocks.unwrap_or(identity.atomic_write_blocks).max(1),
    }
}

impl BlockDevice for NvmeDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn dma_pool(&self) -> &Arc<DmaPool> {
        &self.pool
    }

    fn open_queue_pair(&self, queue_depth: u32) -> Result<Box<dyn QueuePair>, DeviceError> {
        if queue_depth == 0 {
            return Err(DeviceError::Queue("queue depth must be at least 1".into()));
        }
        let depth = queue_depth.min(self.info.queue_depth_max);
        let qp = NvmeQueuePair::open(Arc::clone(&self.controller), self.info.clone(), depth)?;
        Ok(Box::new(qp))
    }
}
