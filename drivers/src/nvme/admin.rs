//! The admin queue: one command at a time, under the controller's admin
//! lock, waited for by polling with a deadline. Used at start-up (identify,
//! queue count), when reactors open and close queue pairs, and to abort a
//! timed-out command: never on the I/O path.

use std::time::{Duration, Instant};

use super::bar::{csts, reg, Bar, Cap};
use super::command::{Cqe, Sqe};
use super::iova::IovaWindow;
use super::ring::{CompletionRing, RingAllocError, SubmissionRing};
use super::status::Status;
use crate::dma::{DmaBuf, DmaPool};

/// Entries in the admin submission and completion queues.
pub const ADMIN_ENTRIES: u32 = 32;

/// Why an admin command produced no useful answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("no completion within {0:?}")]
    Timeout(Duration),
    #[error("{}", .0.describe())]
    Status(Status),
    #[error("the controller is gone or failed (CSTS {0:#x})")]
    ControllerDown(u32),
}

/// The admin submission/completion queue pair and a 4 KiB data page.
#[derive(Debug)]
pub struct AdminQueue {
    sq: SubmissionRing,
    cq: CompletionRing,
    data: DmaBuf,
    data_iova: u64,
    cid_next: u16,
}

impl AdminQueue {
    pub fn new(pool: &DmaPool, window: &IovaWindow) -> Result<Self, RingAllocError> {
        let sq = SubmissionRing::new(pool, window, ADMIN_ENTRIES)?;
        let cq = CompletionRing::new(pool, window, ADMIN_ENTRIES)?;
        let data = pool.try_alloc_zeroed(4096).map_err(RingAllocError::data_page)?;
        let data_iova = window.iova(data.addr());
        Ok(AdminQueue { sq, cq, data, data_iova, cid_next: 0 })
    }

    /// Points the controller's admin registers at these rings. Only while
    /// the controller is disabled.
    pub fn program(&mut self, bar: &Bar) {
        self.sq.reset();
        self.cq.reset();
        let size = ADMIN_ENTRIES - 1;
        bar.write32(reg::AQA, (size << 16) | size);
        bar.write64(reg::ASQ, self.sq.iova());
        bar.write64(reg::ACQ, self.cq.iova());
    }

    /// IOVA of the data page, for commands that transfer 4 KiB or less.
    pub fn data_iova(&self) -> u64 {
        self.data_iova
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Sends `sqe` and waits for its completion or `timeout`. A completion
    /// carrying a failure status is an error.
    pub fn execute(&mut self, bar: &Bar, cap: &Cap, sqe: Sqe, timeout: Duration) -> Result<Cqe, AdminError> {
        let cid = self.cid_next;
        self.cid_next = self.cid_next.wrapping_add(1);
        self.sq.push(&sqe.with_cid(cid));
        bar.write32(cap.doorbell_offset(0, false), self.sq.tail());
        let deadline = Instant::now() + timeout;
        let mut spins: u32 = 0;
        loop {
            if let Some(cqe) = self.cq.peek() {
                self.cq.advance();
                bar.write32(cap.doorbell_offset(0, true), self.cq.head());
                if cqe.cid != cid {
                    // The late answer to a command that timed out earlier.
                    tracing::warn!(cid = cqe.cid, "stale admin completion dropped");
                    continue;
                }
                let status = Status::from_field(cqe.status_field());
                return if status.is_success() { Ok(cqe) } else { Err(AdminError::Status(status)) };
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                let status = bar.read32(reg::CSTS);
                if status == csts::GONE || status & csts::CFS != 0 {
                    return Err(AdminError::ControllerDown(status));
                }
                if Instant::now() >= deadline {
                    return Err(AdminError::Timeout(timeout));
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

impl RingAllocError {
    fn data_page(source: crate::dma::DmaError) -> RingAllocError {
        RingAllocError::new(1, source)
    }
}
