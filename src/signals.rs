//! SIGINT and SIGTERM: the first asks for a clean shutdown, a second one
//! exits at once (for a shutdown that hangs).

use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Exit status after a second signal: the conventional 128 + SIGINT.
const EXIT_ON_SECOND_SIGNAL: i32 = 130;

/// Installs the handlers; the receiver gets each shutdown signal's number.
pub fn install() -> std::io::Result<mpsc::Receiver<i32>> {
    let asked = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Order matters: the exit check runs before the flag is set, so only
        // a second signal finds it set.
        signal_hook::flag::register_conditional_shutdown(signal, EXIT_ON_SECOND_SIGNAL, Arc::clone(&asked))?;
        signal_hook::flag::register(signal, Arc::clone(&asked))?;
    }
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let (tx, rx) = mpsc::sync_channel(4);
    std::thread::Builder::new().name("keel-signals".into()).spawn(move || {
        for signal in signals.forever() {
            if tx.try_send(signal).is_err() {
                // Nobody listens any more, or the shutdown is already queued.
            }
        }
    })?;
    Ok(rx)
}

/// "SIGINT", "SIGTERM".
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
