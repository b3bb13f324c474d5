//! A cap on controller resets. A reset cures a controller that lost a
//! command or hit a fatal status once; one that keeps needing resets (a
//! hung device, a firmware fault) would otherwise be reset every two command
//! timeouts forever, each reset stalling the reactor that runs it. After
//! `resets_max` resets within `window`, the next one fails the controller
//! for good instead: its I/O fails with `DeviceGone`, as after a hot-remove.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct ResetBudget {
    resets_max: u32,
    window: Duration,
    /// When the resets still inside the window started, oldest first.
    recent: VecDeque<Instant>,
}

impl ResetBudget {
    pub fn new(resets_max: u32, window: Duration) -> Self {
        ResetBudget { resets_max, window, recent: VecDeque::new() }
    }

    /// Called when a reset is about to start at `now`: counts it, or, when
    /// the budget is spent, says why the controller must fail instead.
    pub fn admit(&mut self, now: Instant) -> Result<(), String> {
        while self.recent.front().is_some_and(|&t| now.saturating_duration_since(t) >= self.window) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.resets_max as usize {
            return Err(format!(
                "{} resets within {} s already: the controller keeps failing, so it is failed for good",
                self.recent.len(),
                self.window.as_secs()
            ));
        }
        self.recent.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_beyond_the_cap_within_the_window_are_refused() {
        let mut budget = ResetBudget::new(3, Duration::from_secs(600));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(budget.admit(t0 + Duration::from_secs(60 * i)), Ok(()));
        }
        let refused = budget.admit(t0 + Duration::from_secs(200)).unwrap_err();
        assert!(refused.contains("3 resets within 600 s"), "{refused}");
        // A refusal is not counted: it stays refused until the oldest ages out.
        assert!(budget.admit(t0 + Duration::from_secs(599)).is_err());
        assert_eq!(budget.admit(t0 + Duration::from_secs(600)), Ok(()), "the first reset left the window");
        assert!(budget.admit(t0 + Duration::from_secs(601)).is_err());
    }

    #[test]
    fn a_hung_device_reset_every_two_timeouts_fails_on_the_fourth() {
        // Default settings (3 per 10 minutes), a 30 s command timeout: a
        // reset every 60 s.
        let mut budget = ResetBudget::new(3, Duration::from_secs(600));
        let t0 = Instant::now();
        let admitted = (1..=10).take_while(|i| budget.admit(t0 + Duration::from_secs(60 * i)).is_ok()).count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn zero_resets_allowed_fails_at_the_first() {
        let mut budget = ResetBudget::new(0, Duration::from_secs(1));
        assert!(budget.admit(Instant::now()).is_err());
    }
}
