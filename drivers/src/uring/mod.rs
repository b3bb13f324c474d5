//! The io_uring backend: a regular file or a block device, opened with
//! O_DIRECT, driven through one io_uring per queue pair (per reactor).
//!
//! - Opening ([`open`]): block devices report their logical block size and
//!   capacity through ioctls and their write cache through sysfs; a regular
//!   file is addressed in 4 KiB blocks, its size is the capacity, and it is
//!   created and reserved with fallocate when a size is given. A file system
//!   that refuses O_DIRECT is an error, or, with `buffered_fallback`, a logged
//!   buffered open.
//! - Rings ([`ring`]): built with the best setup the kernel accepts
//!   (DEFER_TASKRUN, else COOP_TASKRUN, else none), the file registered as a
//!   fixed file and the DMA pool's regions as fixed buffers (a buffer's region
//!   index is its fixed-buffer index; if registration fails, plain READ/WRITE
//!   with one log line), and an eventfd for idle reactors.
//! - I/O ([`queue_pair`]): `submit` fills an SQE, and enters the kernel once
//!   `submit_batch_max` SQEs wait, or `submit_write_batch_max` writes
//!   (defaults 4 and 2: the kernel hands a burst of three or more to the
//!   block driver only when it has prepared all of it, so small bursts keep
//!   the device busier, and a write takes longest to prepare); `poll` makes at most one io_uring_enter for the rest
//!   (none when there is nothing to submit and the kernel has raised no
//!   task-run flag) and reaps CQEs. Flush is
//!   IORING_OP_FSYNC with DATASYNC; FUA is RWF_DSYNC on the write. A negative
//!   CQE result becomes `IoErrorKind::Io { errno }`; a short transfer is
//!   resubmitted for its remainder, and one that makes no progress fails with
//!   EIO.
//! - Soundness: the kernel writes into buffers asynchronously, so a request's
//!   buffer stays in the queue pair until its CQE is reaped; a queue pair
//!   dropped with requests in flight waits for them (and, if they never come,
//!   leaks the buffers rather than free memory the kernel may still write).

mod config;
mod geometry;
mod holes;
mod open;
mod queue_pair;
mod ring;
mod slots;
mod sqe;

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use self::config::{
    UringConfig, UringSetup, QUEUE_DEPTH_MAX, SUBMIT_BATCH_MAX_DEFAULT, SUBMIT_WRITE_BATCH_MAX_DEFAULT,
};
pub use self::geometry::FILE_BLOCK_BYTES;
pub use self::holes::first_unwritten_offset;
pub use self::queue_pair::UringQueuePair;
use crate::device::{BlockDevice, DeviceInfo, QueuePair};
use crate::dma::{DmaPool, REGION_BYTES};
use crate::error::DeviceError;

/// A file or block device served through io_uring.
#[derive(Debug)]
pub struct UringDevice {
    info: DeviceInfo,
    pool: Arc<DmaPool>,
    file: Arc<File>,
    setup: UringSetup,
    fixed_buffers: bool,
    submit_batch_max: u32,
    submit_write_batch_max: u32,
    direct: bool,
    is_block_device: bool,
    /// Each fallback is logged once per device, not once per reactor.
    fixed_buffers_warned: AtomicBool,
    setup_logged: AtomicBool,
}

impl UringDevice {
    /// Opens (creating when asked) the store `config` names. Request buffers
    /// must come from `pool`.
    pub fn open(config: &UringConfig, pool: Arc<DmaPool>) -> Result<Self, DeviceError> {
        let backing = open::open_backing(config)?;
        let geometry = backing.geometry;
        let info = DeviceInfo {
            name: format!("uring:{}", config.path.display()),
            block_size_bytes: geometry.block_size_bytes,
            capacity_blocks: geometry.capacity_bytes / u64::from(geometry.block_size_bytes),
            volatile_write_cache: geometry.volatile_write_cache,
            fua: true,
            max_transfer_bytes: REGION_BYTES as u32,
            queue_depth_max: config.queue_depth_max.clamp(1, QUEUE_DEPTH_MAX),
            atomic_write_blocks: 1,
        };
        if geometry.capacity_bytes % u64::from(geometry.block_size_bytes) != 0 {
            tracing::warn!(device = %info.name, size_bytes = geometry.capacity_bytes, "size is not a whole number of blocks; the tail is unused");
        }
        tracing::info!(
            device = %info.name,
            block_size_bytes = info.block_size_bytes,
            capacity_bytes = info.capacity_bytes(),
            volatile_write_cache = info.volatile_write_cache,
            direct = backing.direct,
            "opened io_uring device"
        );
        Ok(UringDevice {
            info,
            pool,
            file: Arc::new(backing.file),
            setup: config.setup,
            fixed_buffers: config.fixed_buffers,
            submit_batch_max: config.submit_batch_max,
            submit_write_batch_max: config.submit_write_batch_max,
            direct: backing.direct,
            is_block_device: backing.is_block_device,
            fixed_buffers_warned: AtomicBool::new(false),
            setup_logged: AtomicBool::new(false),
        })
    }

    /// False when the device runs buffered after a configured fallback.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    pub fn is_block_device(&self) -> bool {
        self.is_block_device
    }

    /// Opens a queue pair with its concrete type (benchmarks ask it which
    /// setup the kernel accepted).
    pub fn open_uring_queue_pair(&self, queue_depth: u32) -> Result<UringQueuePair, DeviceError> {
        use std::os::fd::AsRawFd;
        if queue_depth == 0 {
            return Err(DeviceError::Queue("queue depth must be at least 1".into()));
        }
        let queue_depth = queue_depth.min(self.info.queue_depth_max);
        let entries = queue_depth.next_power_of_two();
        let (ring, fixed_off) =
            ring::build(entries, self.setup, self.file.as_raw_fd(), &self.pool, self.fixed_buffers)?;
        if let Some(ring::FixedBuffersOff::RegisterFailed(e)) = fixed_off {
            if !self.fixed_buffers_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(device = %self.info.name, error = %e, "cannot register the DMA pool as fixed buffers (raise RLIMIT_MEMLOCK, e.g. LimitMEMLOCK=infinity); using plain reads and writes");
            }
        }
        if !self.setup_logged.swap(true, Ordering::Relaxed) {
            tracing::info!(device = %self.info.name, setup = %ring.setup, fixed_buffers = ring.fixed_buffers, "io_uring queue pairs ready");
        }
        let mut qp =
            UringQueuePair::new(ring, self.info.clone(), queue_depth, Arc::clone(&self.pool), Arc::clone(&self.file));
        qp.set_submit_batch_max(self.submit_batch_max, self.submit_write_batch_max);
        Ok(qp)
    }
}

impl BlockDevice for UringDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn dma_pool(&self) -> &Arc<DmaPool> {
        &self.pool
    }

    fn open_queue_pair(&self, queue_depth: u32) -> Result<Box<dyn QueuePair>, DeviceError> {
        Ok(Box::new(self.open_uring_queue_pair(queue_depth)?))
    }
}
