//! How a uring device is opened: which file, whether to create it, and which
//! io_uring features to use.

use std::path::PathBuf;

/// The io_uring setup flags a queue pair asks for. Each level falls back to the
/// next when the kernel refuses it (older kernels answer EINVAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UringSetup {
    /// Try `DeferTaskrun`, then `CoopTaskrun`, then `Plain`.
    #[default]
    Auto,
    /// SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG (Linux 6.1+): completions
    /// are posted only when the owner thread enters the kernel, so they never
    /// interrupt it; the ring must stay on the thread that first used it.
    DeferTaskrun,
    /// COOP_TASKRUN | TASKRUN_FLAG (Linux 5.19+): no inter-processor interrupt
    /// to post completions; the kernel raises a flag and the owner enters.
    CoopTaskrun,
    /// No flags: completions are posted by interrupting the owner thread.
    Plain,
}

impl UringSetup {
    /// The levels to try, best first.
    pub(crate) fn candidates(self) -> &'static [UringSetup] {
        match self {
            UringSetup::Auto => &[UringSetup::DeferTaskrun, UringSetup::CoopTaskrun, UringSetup::Plain],
            UringSetup::DeferTaskrun => &[UringSetup::DeferTaskrun],
            UringSetup::CoopTaskrun => &[UringSetup::CoopTaskrun],
            UringSetup::Plain => &[UringSetup::Plain],
        }
    }
}

impl std::str::FromStr for UringSetup {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(UringSetup::Auto),
            "defer" | "defer-taskrun" => Ok(UringSetup::DeferTaskrun),
            "coop" | "coop-taskrun" => Ok(UringSetup::CoopTaskrun),
            "plain" => Ok(UringSetup::Plain),
            other => Err(format!("unknown io_uring setup {other:?}: expected auto, defer, coop or plain")),
        }
    }
}

impl std::fmt::Display for UringSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UringSetup::Auto => "auto",
            UringSetup::DeferTaskrun => "defer",
            UringSetup::CoopTaskrun => "coop",
            UringSetup::Plain => "plain",
        })
    }
}

/// Everything needed to open a [`super::UringDevice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UringConfig {
    /// A regular file or a block device.
    pub path: PathBuf,
    /// When set and `path` does not exist (or is a smaller regular file), the
    /// file is created and its space reserved with fallocate up to this size.
    /// Ignored for block devices.
    pub create_size_bytes: Option<u64>,
    /// When the file system refuses O_DIRECT, open without it (one warning in
    /// the log) instead of failing. Flushes stay fdatasync, so durability is
    /// unchanged; only the page cache sits in the data path.
    pub buffered_fallback: bool,
    pub setup: UringSetup,
    /// Register the DMA pool's regions as fixed buffers (READ_FIXED /
    /// WRITE_FIXED). When registration fails (RLIMIT_MEMLOCK), or when this is
    /// false, plain READ / WRITE are used.
    pub fixed_buffers: bool,
    /// The most requests one queue pair may have in flight.
    pub queue_depth_max: u32,
    /// Send queued requests to the kernel as soon as this many wait in the
    /// submission queue, as well as at every poll. 0: only at the poll, one
    /// `io_uring_enter` per reactor turn. Smaller bursts let a device that
    /// works through requests in turn start on the first ones sooner, at one
    /// system call per burst (BENCHMARKS.md, "Device").
    /// Default: [`SUBMIT_BATCH_MAX_DEFAULT`].
    pub submit_batch_max: u32,
    /// Send queued requests to the kernel as soon as this many of them are
    /// writes, whatever `submit_batch_max` says. 0: no separate limit. The
    /// kernel holds a burst of three or more SQEs under a block plug until it
    /// has prepared all of them, and a write through a file system takes
    /// several times longer to prepare than a read, so a burst of writes
    /// keeps the first ones from the device longest.
    /// Default: [`SUBMIT_WRITE_BATCH_MAX_DEFAULT`].
    pub submit_write_batch_max: u32,
}

impl UringConfig {
    /// A configuration with the defaults for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        UringConfig {
            path: path.into(),
            create_size_bytes: None,
            buffered_fallback: false,
            setup: UringSetup::Auto,
            fixed_buffers: true,
            queue_depth_max: QUEUE_DEPTH_MAX,
            submit_batch_max: SUBMIT_BATCH_MAX_DEFAULT,
            submit_write_batch_max: SUBMIT_WRITE_BATCH_MAX_DEFAULT,
        }
    }
}

/// Requests queued before a queue pair enters the kernel without waiting for
/// the end of the reactor turn (`UringConfig::submit_batch_max`); chosen by
/// measurement (BENCHMARKS.md, "Device"). 0: once per turn only.
pub const SUBMIT_BATCH_MAX_DEFAULT: u32 = 4;

/// Queued writes that make a queue pair enter the kernel
/// (`UringConfig::submit_write_batch_max`): 2, the largest burst io_uring
/// submits without a block plug (it plugs bursts of three or more). Chosen
/// by measurement (BENCHMARKS.md, "Device"). 0: no separate limit.
pub const SUBMIT_WRITE_BATCH_MAX_DEFAULT: u32 = 2;

/// The largest queue depth a uring queue pair accepts. io_uring takes up to
/// 32768 entries; beyond a few thousand requests per core nothing gets faster.
pub const QUEUE_DEPTH_MAX: u32 = 4096;
