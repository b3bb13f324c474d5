//! Building one io_uring for a queue pair: setup flags with fallback, the
//! file registered as fixed file 0, the DMA pool's regions as fixed buffers,
//! and an eventfd that signals completions.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::IoUring;

use super::config::UringSetup;
use crate::dma::DmaPool;
use crate::error::DeviceError;

/// A ring ready for I/O on one file.
pub struct Ring {
    pub uring: IoUring,
    /// The setup level the kernel accepted.
    pub setup: UringSetup,
    /// True when the pool's regions are registered (READ_FIXED/WRITE_FIXED).
    pub fixed_buffers: bool,
    pub eventfd: OwnedFd,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("sq_entries", &self.uring.params().sq_entries())
            .field("setup", &self.setup)
            .field("fixed_buffers", &self.fixed_buffers)
            .finish()
    }
}

/// Why fixed buffers are off, for the one log line that says so.
#[derive(Debug)]
pub enum FixedBuffersOff {
    NotRequested,
    RegisterFailed(std::io::Error),
}

/// Builds a ring of at least `entries` entries on `fd`. The ring starts
/// disabled (IORING_SETUP_R_DISABLED) so that the thread that first uses it,
/// not the one that built it, becomes its single issuer: see [`enable`].
pub fn build(
    entries: u32,
    setup: UringSetup,
    fd: RawFd,
    pool: &DmaPool,
    want_fixed_buffers: bool,
) -> Result<(Ring, Option<FixedBuffersOff>), DeviceError> {
    let (uring, setup) = build_with_fallback(entries, setup)?;
    uring.submitter().register_files(&[fd]).map_err(DeviceError::Uring)?;
    let eventfd = new_eventfd().map_err(DeviceError::Uring)?;
    uring.submitter().register_eventfd(eventfd.as_raw_fd()).map_err(DeviceError::Uring)?;
    let off = if want_fixed_buffers { register_pool(&uring, pool).err() } else { Some(FixedBuffersOff::NotRequested) };
    Ok((Ring { uring, setup, fixed_buffers: off.is_none(), eventfd }, off))
}

/// Enables a ring built disabled; the calling thread becomes its issuer.
pub fn enable(ring: &Ring) -> std::io::Result<()> {
    ring.uring.submitter().register_enable_rings()
}

fn build_with_fallback(entries: u32, setup: UringSetup) -> Result<(IoUring, UringSetup), DeviceError> {
    let mut last_error = None;
    for &candidate in setup.candidates() {
        let mut builder = IoUring::builder();
        builder.setup_r_disabled();
        match candidate {
            UringSetup::DeferTaskrun => {
                builder.setup_single_issuer().setup_defer_taskrun().setup_taskrun_flag().setup_submit_all();
            }
            UringSetup::CoopTaskrun => {
                builder.setup_coop_taskrun().setup_taskrun_flag().setup_submit_all();
            }
            UringSetup::Plain | UringSetup::Auto => {}
        }
        match builder.build(entries) {
            Ok(uring) => return Ok((uring, candidate)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(setup = %candidate, "the kernel refuses this io_uring setup; trying the next");
                last_error = Some(e);
            }
            Err(e) => return Err(DeviceError::Uring(e)),
        }
    }
    Err(DeviceError::Uring(last_error.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))))
}

fn register_pool(uring: &IoUring, pool: &DmaPool) -> Result<(), FixedBuffersOff> {
    let iovecs: Vec<libc::iovec> = pool
        .regions()
        .iter()
        .map(|region| libc::iovec { iov_base: region.addr as *mut libc::c_void, iov_len: region.len_bytes })
        .collect();
    if iovecs.len() > usize::from(u16::MAX) {
        // An SQE's buffer index is 16 bits.
        return Err(FixedBuffersOff::RegisterFailed(std::io::Error::other("more pool regions than buffer indices")));
    }
    // SAFETY: every iovec describes one region of the pool's live mapping. The
    // queue pair that owns this ring also holds an `Arc` of the pool and drops
    // the ring first, so the memory outlives the registration; the kernel only
    // touches it for requests whose buffers the queue pair owns until their
    // completions are reaped.
    unsafe { uring.submitter().register_buffers(&iovecs) }.map_err(FixedBuffersOff::RegisterFailed)
}

fn new_eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads the eventfd's counter to zero so that the next completion makes it
/// readable again.
pub fn drain_eventfd(eventfd: &OwnedFd) {
    let mut counter = 0u64;
    // SAFETY: reads 8 bytes into a live local `u64`; the descriptor is ours
    // and non-blocking, so an empty counter answers EAGAIN at once.
    let _ = unsafe { libc::read(eventfd.as_raw_fd(), (&mut counter as *mut u64).cast(), 8) };
}
