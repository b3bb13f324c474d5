//! What the driver does about a command that is late, and about the
//! commands a controller reset took away. Pure decisions, so that the whole
//! escalation can be tested without a controller:
//!
//! 1. a command passes its deadline: send an Abort (admin) for it, and give
//!    it one more timeout;
//! 2. it passes that deadline too (or the Abort itself times out, or the
//!    controller reports fatal status): reset the controller: CC.EN = 0,
//!    wait for CSTS.RDY = 0 within CAP.TO, enable it again, and every queue
//!    pair creates its queues again;
//! 3. after the reset, each queue pair fails the commands that timed out
//!    with `Timeout` and resubmits the others (their completions died with
//!    the reset; reads, writes and flushes may be repeated);
//! 4. the reset fails, or the registers read all-ones (the device left the
//!    bus): the controller is failed for good, every command fails with
//!    `DeviceGone`, and the process goes on.

use super::bar::csts;
use crate::error::IoErrorKind;

/// Where a command is, from the queue pair's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its command id is free.
    Free,
    /// Accepted while the controller was being reset: written to the ring
    /// once the queue pair's queues exist again.
    Held,
    /// In the submission ring, owned by the device. `late` once it passed a
    /// deadline (and an Abort was sent).
    OnDevice { late: bool },
    /// Finished without the device (the reset took it away, or the
    /// controller died): reported by the next poll with this error.
    Failed(IoErrorKind),
}

impl Phase {
    pub fn is_busy(self) -> bool {
        self != Phase::Free
    }

    /// What becomes of this command once the controller was reset and the
    /// queue pair's queues exist again.
    pub fn after_reset(self) -> Phase {
        match self {
            Phase::OnDevice { late: true } => Phase::Failed(IoErrorKind::Timeout),
            Phase::OnDevice { late: false } | Phase::Held => Phase::OnDevice { late: false },
            other => other,
        }
    }

    /// What becomes of this command once the controller is dead.
    pub fn after_death(self) -> Phase {
        match self {
            Phase::OnDevice { late: true } => Phase::Failed(IoErrorKind::Timeout),
            Phase::OnDevice { late: false } | Phase::Held => Phase::Failed(IoErrorKind::DeviceGone),
            other => other,
        }
    }
}

/// The next step for a command past its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escalation {
    /// First deadline: abort it and wait one more timeout.
    Abort,
    /// Reset the controller.
    Reset(String),
    /// Fail the controller for good.
    Fail(String),
}

/// Decides from the controller status register (`csts`, read just now) and
/// whether the command was already aborted once.
pub fn escalate(csts_value: u32, already_late: bool) -> Escalation {
    if csts_value == csts::GONE {
        return Escalation::Fail("registers read all-ones: the device left the bus".into());
    }
    if csts_value & csts::CFS != 0 {
        return Escalation::Reset(format!("controller fatal status (CSTS {csts_value:#x})"));
    }
    if already_late {
        return Escalation::Reset("a command did not complete after an abort".into());
    }
    Escalation::Abort
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_command_is_aborted_then_the_controller_reset() {
        assert_eq!(escalate(csts::RDY, false), Escalation::Abort);
        assert!(matches!(escalate(csts::RDY, true), Escalation::Reset(_)));
    }

    #[test]
    fn fatal_status_resets_at_once_and_a_vanished_device_fails() {
        assert!(matches!(escalate(csts::RDY | csts::CFS, false), Escalation::Reset(r) if r.contains("fatal")));
        assert!(matches!(escalate(csts::GONE, false), Escalation::Fail(_)));
        assert!(matches!(escalate(csts::GONE, true), Escalation::Fail(_)));
    }

    #[test]
    fn a_reset_fails_late_commands_and_resubmits_the_rest() {
        assert_eq!(Phase::OnDevice { late: true }.after_reset(), Phase::Failed(IoErrorKind::Timeout));
        assert_eq!(Phase::OnDevice { late: false }.after_reset(), Phase::OnDevice { late: false });
        assert_eq!(Phase::Held.after_reset(), Phase::OnDevice { late: false });
        assert_eq!(Phase::Free.after_reset(), Phase::Free);
        let failed = Phase::Failed(IoErrorKind::Timeout);
        assert_eq!(failed.after_reset(), failed, "a second reset does not resubmit what already failed");
    }

    #[test]
    fn a_dead_controller_fails_everything_busy() {
        assert_eq!(Phase::OnDevice { late: false }.after_death(), Phase::Failed(IoErrorKind::DeviceGone));
        assert_eq!(Phase::Held.after_death(), Phase::Failed(IoErrorKind::DeviceGone));
        assert_eq!(Phase::OnDevice { late: true }.after_death(), Phase::Failed(IoErrorKind::Timeout));
        assert_eq!(Phase::Free.after_death(), Phase::Free);
        assert!(!Phase::Free.is_busy() && Phase::Held.is_busy());
    }
}
