//! Hot-remove: when the device is unbound from vfio-pci or removed, the
//! kernel signals VFIO's "device request" interrupt and waits for the
//! process to close the device. One small thread per controller waits on
//! that eventfd (blocked in poll(2), never on the I/O path) and releases
//! the device: I/O fails with `DeviceGone`, the process goes on.
//!
//! This is the one thread the driver starts: a request can come while no
//! reactor polls the device (idle, or all asleep), and the kernel's unbind
//! blocks until it is answered.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use super::controller::Controller;
use super::irq;
use super::vfio_sys::VFIO_PCI_REQ_IRQ_INDEX;

/// The watcher of one controller. Dropping it stops the thread.
#[derive(Debug)]
pub struct RemovalWatcher {
    request: Arc<OwnedFd>,
    stop: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl RemovalWatcher {
    /// Routes the device-request interrupt to an eventfd and starts the
    /// thread. `None` when the kernel offers no such interrupt (then an
    /// unbind waits until the process closes the device by itself).
    pub fn start(controller: &Arc<Controller>) -> Option<RemovalWatcher> {
        let count = controller.with_vfio(|v| v.irq_count(VFIO_PCI_REQ_IRQ_INDEX).unwrap_or(0)).unwrap_or(0);
        if count == 0 {
            tracing::warn!(pci = %controller.pci_address, "no VFIO device-request interrupt: hot-remove cannot be noticed");
            return None;
        }
        let (request, stop) = match (irq::eventfd(), irq::eventfd()) {
            (Ok(r), Ok(s)) => (Arc::new(r), Arc::new(s)),
            _ => return None,
        };
        let routed = controller.with_vfio(|v| v.set_irq_eventfds(VFIO_PCI_REQ_IRQ_INDEX, 0, &[request.as_raw_fd()]));
        if let Some(Err(e)) = routed {
            tracing::warn!(pci = %controller.pci_address, error = %e, "cannot route the device-request interrupt");
            return None;
        }
        let weak = Arc::downgrade(controller);
        let (r, s) = (Arc::clone(&request), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name(format!("keel-nvme-rm-{}", controller.pci_address))
            .spawn(move || watch(&weak, &r, &s))
            .ok()?;
        Some(RemovalWatcher { request, stop, thread: Some(thread) })
    }
}

fn watch(controller: &Weak<Controller>, request: &OwnedFd, stop: &OwnedFd) {
    loop {
        let mut fds = [
            libc::pollfd { fd: request.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: stop.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two live pollfd entries; blocks until one is readable.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents != 0 {
            irq::drain(request.as_raw_fd());
            if let Some(controller) = controller.upgrade() {
                controller.release_to_kernel();
            }
            return;
        }
    }
}

impl Drop for RemovalWatcher {
    fn drop(&mut self) {
        irq::signal(self.stop.as_raw_fd());
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
        let _ = &self.request;
    }
}
