//! SIGINT and SIGTERM: the first asks for a clean shutdown; another one a
//! while later exits at once (for a shutdown that hangs).
//!
//! The same signal is often delivered twice at the same moment (a terminal
//! signals the whole process group, `timeout` signals its child and then its
//! group), so a repeat within [`REPEAT_GRACE`] of the first counts as the
//! same request, not as insistence.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Exit status after a second signal: the conventional 128 + SIGINT.
const EXIT_ON_SECOND_SIGNAL: i32 = 130;
/// Repeats closer than this to the first signal are the same request.
const REPEAT_GRACE: Duration = Duration::from_millis(500);

/// Installs the handlers; the receiver gets the first shutdown signal's number.
pub fn install() -> std::io::Result<mpsc::Receiver<i32>> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new().name("keel-signals".into()).spawn(move || {
        let mut first: Option<Instant> = None;
        for signal in signals.forever() {
            match on_signal(&mut first, Instant::now()) {
                Action::Shutdown => {
                    let _ = tx.try_send(signal);
                }
                Action::Ignore => {}
                Action::ExitNow => {
                    eprintln!("keel: {} again: exiting without a clean shutdown", name(signal));
                    std::process::exit(EXIT_ON_SECOND_SIGNAL);
                }
            }
        }
    })?;
    Ok(rx)
}

/// What a shutdown signal arriving at `now` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Shutdown,
    Ignore,
    ExitNow,
}

fn on_signal(first: &mut Option<Instant>, now: Instant) -> Action {
    match *first {
        None => {
            *first = Some(now);
            Action::Shutdown
        }
        Some(at) if now.duration_since(at) < REPEAT_GRACE => Action::Ignore,
        Some(_) => Action::ExitNow,
    }
}

/// "SIGINT", "SIGTERM".
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_at_once_is_the_same_request_and_a_later_one_exits() {
        let mut first = None;
        let t0 = Instant::now();
        assert_eq!(on_signal(&mut first, t0), Action::Shutdown);
        assert_eq!(on_signal(&mut first, t0 + Duration::from_millis(10)), Action::Ignore);
        assert_eq!(on_signal(&mut first, t0 + Duration::from_secs(2)), Action::ExitNow);
    }
}
