//! The systemd notification protocol (sd_notify): datagrams such as
//! "READY=1" sent to the socket named by NOTIFY_SOCKET, and the watchdog
//! period in WATCHDOG_USEC.
//!
//! Written here rather than taken from the `sd-notify` crate because that
//! crate (0.4) neither reaches abstract-namespace sockets ("@name"), which
//! systemd and test harnesses use, nor accepts WATCHDOG_USEC without
//! WATCHDOG_PID, which sd_watchdog_enabled(3) allows.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends state changes to the service manager; does nothing when Keel was
/// not started by one.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

/// Longest notification sent: a few lines of state.
const MESSAGE_BYTES_MAX: usize = 4096;

impl Notifier {
    /// From NOTIFY_SOCKET; a missing or unusable socket gives a notifier that
    /// sends nothing (with a warning for an unusable one).
    pub fn from_env() -> Notifier {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        match connect(&name.to_string_lossy()) {
            Ok(target) => Notifier { target: Some(target) },
            Err(e) => {
                tracing::warn!(socket = ?name, error = %e, "NOTIFY_SOCKET is set but unusable; not notifying systemd");
                Notifier { target: None }
            }
        }
    }

    /// A notifier for the socket at `path` (tests).
    #[cfg(test)]
    pub fn for_socket(path: &std::path::Path) -> Notifier {
        Notifier { target: Some(connect(path.to_str().expect("a UTF-8 test path")).expect("a test socket")) }
    }

    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` ("READY=1", "STATUS=...", several separated by newlines).
    pub fn notify(&self, state: &str) {
        let Some((socket, address)) = &self.target else {
            return;
        };
        debug_assert!(state.len() <= MESSAGE_BYTES_MAX, "notification too long");
        if let Err(e) = socket.send_to_addr(state.as_bytes(), address) {
            tracing::warn!(error = %e, state, "cannot notify systemd");
        }
    }
}

fn connect(name: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let address = match name.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes())?
        }
        None => SocketAddr::from_pathname(name)?,
    };
    Ok((UnixDatagram::unbound()?, address))
}

/// The watchdog period systemd expects pings within, when it expects them:
/// WATCHDOG_USEC is set and WATCHDOG_PID, if set, is this process.
pub fn watchdog_timeout() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier { target: Some(connect(path.to_str().unwrap()).unwrap()) };
        notifier.notify("READY=1");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("keel-test-{}", std::process::id());
        let abstract_address = {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
        };
        let receiver = UnixDatagram::bind_addr(&abstract_address).unwrap();
        let notifier = Notifier { target: Some(connect(&format!("@{name}")).unwrap()) };
        notifier.notify("STOPPING=1");
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
