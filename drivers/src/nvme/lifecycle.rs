//! A controller's life as its queue pairs see it: a state and a reset
//! generation, both atomics so that reactors read them on every poll
//! without a lock.
//!
//! ```text
//!   LIVE ──begin_reset──▶ RESETTING ──end_reset (generation + 1)──▶ LIVE
//!     │                        │
//!     └──────begin_fail────────┴──▶ STOPPING ──end_fail──▶ DEAD
//! ```
//!
//! A reset destroys every I/O queue, so the generation counts resets: a
//! queue pair whose queues were created in an older generation must create
//! them again before it touches the device. Failing wins over resetting: a
//! reset that ends after the controller began to fail leaves it failing.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Commands flow.
pub const STATE_LIVE: u8 = 0;
/// Being quiesced for good: no new commands; in-flight ones must not be
/// released yet (the device may still write their buffers).
pub const STATE_STOPPING: u8 = 1;
/// Quiesced or gone: no DMA can happen any more; everything fails.
pub const STATE_DEAD: u8 = 2;
/// Being reset (disabled, then enabled again): queue pairs hold their
/// commands and wait; the device no longer touches their rings.
pub const STATE_RESETTING: u8 = 3;

#[derive(Debug)]
pub struct Lifecycle {
    state: AtomicU8,
    generation: AtomicU64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { state: AtomicU8::new(STATE_LIVE), generation: AtomicU64::new(0) }
    }
}

impl Lifecycle {
    pub fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Resets completed so far. Read after `state()` returned LIVE, it is the
    /// generation the live controller is in (it is bumped before LIVE is
    /// stored again).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// LIVE → RESETTING. False when the controller is not live: another
    /// reset is under way, or it is failing or dead.
    pub fn begin_reset(&self) -> bool {
        self.state.compare_exchange(STATE_LIVE, STATE_RESETTING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// RESETTING → LIVE in a new generation, which it returns. None when the
    /// controller began to fail meanwhile (it stays failing).
    pub fn end_reset(&self) -> Option<u64> {
        if self.state() != STATE_RESETTING {
            return None;
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.state
            .compare_exchange(STATE_RESETTING, STATE_LIVE, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| generation)
    }

    /// LIVE or RESETTING → STOPPING. False when already stopping or dead
    /// (the first failure wins).
    pub fn begin_fail(&self) -> bool {
        let mut current = self.state();
        loop {
            if current != STATE_LIVE && current != STATE_RESETTING {
                return false;
            }
            match self.state.compare_exchange(current, STATE_STOPPING, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// STOPPING → DEAD: the device can no longer touch memory.
    pub fn end_fail(&self) {
        self.state.store(STATE_DEAD, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_returns_to_live_in_the_next_generation() {
        let life = Lifecycle::default();
        assert_eq!((life.state(), life.generation()), (STATE_LIVE, 0));
        assert!(life.begin_reset());
        assert_eq!(life.state(), STATE_RESETTING);
        assert!(!life.begin_reset(), "one reset at a time");
        assert_eq!(life.end_reset(), Some(1));
        assert_eq!((life.state(), life.generation()), (STATE_LIVE, 1));
        assert!(life.begin_reset());
        assert_eq!(life.end_reset(), Some(2));
    }

    #[test]
    fn failing_wins_over_a_reset_in_progress() {
        let life = Lifecycle::default();
        assert!(life.begin_reset());
        assert!(life.begin_fail());
        assert_eq!(life.end_reset(), None);
        assert_eq!(life.state(), STATE_STOPPING);
        life.end_fail();
        assert_eq!(life.state(), STATE_DEAD);
        assert!(!life.begin_reset());
        assert!(!life.begin_fail(), "the first failure wins");
    }

    #[test]
    fn end_reset_without_a_reset_changes_nothing() {
        let life = Lifecycle::default();
        assert_eq!(life.end_reset(), None);
        assert_eq!((life.state(), life.generation()), (STATE_LIVE, 0));
    }
}
