//! One descriptor to sleep on for all members: an epoll instance holding
//! every member queue pair's completion descriptor, level-triggered, so it is
//! readable while any of them is.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug)]
pub struct Sleeper {
    epoll: OwnedFd,
}

impl Sleeper {
    pub fn new(member_fds: &[RawFd]) -> std::io::Result<Sleeper> {
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor this value now owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        for &member in member_fds {
            let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: member as u64 };
            // SAFETY: registers a live descriptor (owned by a member queue pair
            // that outlives this sleeper) with a live epoll instance.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, member, &mut event) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Sleeper { epoll })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}
