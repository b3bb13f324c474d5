//! The systemd watchdog: a ping (WATCHDOG=1) every half period, sent only
//! when every reactor has answered a liveness call within that half period.
//! A wedged reactor (a task that never yields, a deadlock) therefore stops
//! the pings, and systemd restarts the service.
//!
//! A liveness call is a task sent through the reactor's mailbox — the path
//! every cross-core request takes — that replies on a channel. The thread
//! waits for the replies with a deadline; `Runtime::call_blocking` has no
//! deadline, so a wedged reactor would block the watchdog thread itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use keel_reactor::RuntimeHandle;

use crate::systemd::Notifier;

/// Sends the liveness call to every reactor and waits until `deadline` for
/// the answers. Returns the reactors that did not answer (empty: all alive).
pub fn probe_reactors(handle: &RuntimeHandle, deadline: Instant) -> Vec<usize> {
    let reactors = handle.reactor_count();
    let (tx, rx) = mpsc::channel::<usize>();
    let mut answered = vec![false; reactors];
    for reactor in 0..reactors {
        let tx = tx.clone();
        // A reactor that stopped cannot answer: it stays unanswered.
        let _ = handle.spawn_on(reactor, move || async move {
            let _ = tx.send(reactor);
        });
    }
    drop(tx);
    while answered.iter().any(|a| !a) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(reactor) => answered[reactor] = true,
            Err(_) => break,
        }
    }
    (0..reactors).filter(|&r| !answered[r]).collect()
}

/// The running watchdog thread.
#[derive(Debug)]
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    /// Starts pinging every `timeout / 2` while the reactors answer.
    pub fn start(handle: RuntimeHandle, notifier: Arc<Notifier>, timeout: Duration) -> std::io::Result<Watchdog> {
        let period = timeout / 2;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("keel-watchdog".into()).spawn({
            let stop = Arc::clone(&stop);
            move || run(&handle, &notifier, period, &stop)
        })?;
        tracing::info!(period_ms = period.as_millis() as u64, "systemd watchdog enabled");
        Ok(Watchdog { stop, thread })
    }

    /// Stops the pings. Waits for the thread unless it is stuck on a wedged
    /// reactor's full mailbox, in which case it is left behind: it checks the
    /// flag before every ping, so it never pings again.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.thread().unpark();
        let give_up = Instant::now() + Duration::from_secs(1);
        while !self.thread.is_finished() && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
    }
}

fn run(handle: &RuntimeHandle, notifier: &Notifier, period: Duration, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let deadline = started + period;
        let silent = probe_reactors(handle, deadline);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if silent.is_empty() {
            notifier.notify("WATCHDOG=1");
        } else {
            tracing::error!(reactors = ?silent, period_ms = period.as_millis() as u64, "reactors did not answer a liveness call in time; withholding the watchdog ping");
        }
        // Sleep out the rest of the period (unpark ends it early on stop).
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_reactor::{Runtime, RuntimeConfig};

    #[test]
    fn every_live_reactor_answers_the_liveness_call() {
        let runtime = Runtime::start(&RuntimeConfig { reactors: 2, ..RuntimeConfig::default() }, &[]).unwrap();
        let silent = probe_reactors(&runtime.handle(), Instant::now() + Duration::from_secs(5));
        assert!(silent.is_empty(), "{silent:?}");
        runtime.stop();
    }

    #[test]
    fn a_wedged_reactor_is_reported_and_recovers() {
        let runtime = Runtime::start(&RuntimeConfig { reactors: 2, ..RuntimeConfig::default() }, &[]).unwrap();
        // A task that blocks its reactor's thread: the reactor cannot run anything else.
        runtime.spawn_on(1, || async { std::thread::sleep(Duration::from_millis(600)) }).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let silent = probe_reactors(&runtime.handle(), Instant::now() + Duration::from_millis(200));
        assert_eq!(silent, vec![1]);
        std::thread::sleep(Duration::from_millis(500));
        let silent = probe_reactors(&runtime.handle(), Instant::now() + Duration::from_secs(5));
        assert!(silent.is_empty(), "{silent:?}");
        runtime.stop();
    }

    #[test]
    fn pings_stop_while_a_reactor_is_wedged_and_resume_after() {
        // Periods are long enough that a loaded shared machine still answers
        // in time: a 1 s timeout gives 500 ms for every reactor to reply.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        receiver.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let notifier = Arc::new(Notifier::for_socket(&path));
        let runtime = Runtime::start(&RuntimeConfig { reactors: 2, ..RuntimeConfig::default() }, &[]).unwrap();
        let watchdog = Watchdog::start(runtime.handle(), notifier, Duration::from_secs(1)).unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1", "a healthy runtime is pinged for");

        runtime.spawn_on(0, || async { std::thread::sleep(Duration::from_millis(4000)) }).unwrap();
        // A ping already decided before the wedge may still arrive: let it, then drop it.
        std::thread::sleep(Duration::from_millis(700));
        receiver.set_nonblocking(true).unwrap();
        while receiver.recv(&mut buf).is_ok() {}
        std::thread::sleep(Duration::from_millis(1500));
        assert!(receiver.recv(&mut buf).is_err(), "no ping while reactor 0 is wedged");

        receiver.set_nonblocking(false).unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1", "pings resume once the reactor answers again");
        watchdog.stop();
        runtime.stop();
    }
}
