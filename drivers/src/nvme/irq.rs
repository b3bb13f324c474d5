//! Interrupts as file descriptors: MSI-X vectors routed to eventfds by VFIO,
//! and the per-queue-pair sleeper an idle reactor waits on.
//!
//! The sleeper is a small epoll instance holding the queue pair's MSI-X
//! eventfd and a timerfd. The reactor registers the sleeper's descriptor
//! with its own poller; before it sleeps, the queue pair drains both, checks
//! for completions already posted, and arms the timer at the earliest
//! command deadline, so a command that never completes still wakes the
//! reactor to time it out: no hang, even asleep.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// A non-blocking eventfd.
pub fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: eventfd(2) with flags only; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads and discards an eventfd's or timerfd's counter; false when it was zero.
pub fn drain(fd: RawFd) -> bool {
    let mut count = 0u64;
    // SAFETY: reads 8 bytes into a live u64; the descriptor is non-blocking.
    let n = unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
    n == 8
}

/// Adds 1 to an eventfd's counter (wakes whoever waits on it).
pub fn signal(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64.
    let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// The MSI-X eventfds of a controller, vector `i` at index `i`.
#[derive(Debug)]
pub struct Vectors {
    fds: Vec<Arc<OwnedFd>>,
}

impl Vectors {
    pub fn new(count: u32) -> std::io::Result<Vectors> {
        let fds = (0..count).map(|_| eventfd().map(Arc::new)).collect::<std::io::Result<_>>()?;
        Ok(Vectors { fds })
    }

    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.fds.iter().map(|fd| fd.as_raw_fd()).collect()
    }

    pub fn get(&self, vector: u16) -> Option<Arc<OwnedFd>> {
        self.fds.get(usize::from(vector)).cloned()
    }

    pub fn count(&self) -> u32 {
        self.fds.len() as u32
    }
}

/// An epoll fd over one interrupt eventfd and one timerfd.
#[derive(Debug)]
pub struct Sleeper {
    epoll: OwnedFd,
    interrupt: Arc<OwnedFd>,
    timer: OwnedFd,
}

impl Sleeper {
    pub fn new(interrupt: Arc<OwnedFd>) -> std::io::Result<Sleeper> {
        // SAFETY: plain system calls with flags only; results are checked.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: as above.
        let timer = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if timer < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let timer = unsafe { OwnedFd::from_raw_fd(timer) };
        for fd in [interrupt.as_raw_fd(), timer.as_raw_fd()] {
            let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
            // SAFETY: registers a live descriptor with a live epoll instance.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Sleeper { epoll, interrupt, timer })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }

    /// Clears pending interrupts and timer expirations.
    pub fn drain(&self) {
        drain(self.interrupt.as_raw_fd());
        drain(self.timer.as_raw_fd());
    }

    /// Arms the timer to fire once after `after` (`None`: disarm).
    pub fn arm(&self, after: Option<Duration>) {
        let value = match after {
            // A zero it_value disarms; wake at least 1 µs later.
            Some(d) => libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(d.subsec_nanos().max(if d.as_secs() == 0 { 1000 } else { 0 }) as i32),
            },
            None => libc::timespec { tv_sec: 0, tv_nsec: 0 },
        };
        let spec = libc::itimerspec { it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 }, it_value: value };
        // SAFETY: a live timerfd and a live, initialized itimerspec.
        let rc = unsafe { libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            tracing::error!(error = %std::io::Error::last_os_error(), "timerfd_settime failed");
        }
    }
}
