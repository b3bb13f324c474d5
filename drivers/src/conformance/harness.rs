//! Driving one queue pair synchronously for the checks: submit, poll until
//! the expected completions arrive (or a deadline passes), and the data
//! patterns that make a misplaced or stale block visible.

use std::time::{Duration, Instant};

use crate::device::{BlockDevice, Completion, Op, QueuePair, Request, SubmitError};
use crate::dma::DmaBuf;

/// Why a check failed, in words.
pub type Failure = String;

/// Fails the check with a formatted reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}
pub(crate) use ensure;

/// A queue pair and the deadline rule for waiting on it.
pub struct Driver<'d> {
    pub device: &'d dyn BlockDevice,
    pub qp: Box<dyn QueuePair>,
    wait_max: Duration,
}

impl<'d> Driver<'d> {
    pub fn open(device: &'d dyn BlockDevice, queue_depth: u32, wait_max: Duration) -> Result<Self, Failure> {
        let qp = device.open_queue_pair(queue_depth).map_err(|e| format!("cannot open a queue pair: {e}"))?;
        ensure!(qp.queue_depth() >= 1, "queue pair reports queue depth 0");
        ensure!(qp.in_flight() == 0, "a fresh queue pair reports {} requests in flight", qp.in_flight());
        Ok(Driver { device, qp, wait_max })
    }

    pub fn block_bytes(&self) -> usize {
        self.device.info().block_size_bytes as usize
    }

    pub fn capacity_blocks(&self) -> u64 {
        self.device.info().capacity_blocks
    }

    /// A buffer of `blocks` blocks from the device's pool.
    pub fn alloc(&self, blocks: usize) -> Result<DmaBuf, Failure> {
        let len = blocks * self.block_bytes();
        self.device.dma_pool().try_alloc(len).map_err(|e| format!("cannot get a {len}-byte buffer: {e}"))
    }

    /// Submits a request the device must accept.
    pub fn submit(&mut self, tag: u64, op: Op) -> Result<(), Failure> {
        let what = format!("{} at block {}", op.kind(), op.lba());
        match self.qp.submit(Request { tag, op }) {
            Ok(()) => Ok(()),
            Err(SubmitError::QueueFull(_)) => Err(format!("{what}: queue full with {} in flight", self.qp.in_flight())),
            Err(SubmitError::Invalid(_, e)) => Err(format!("{what}: refused as invalid: {e}")),
            Err(SubmitError::Gone(_)) => Err(format!("{what}: device gone")),
        }
    }

    /// Polls until `count` completions have arrived.
    pub fn wait(&mut self, count: usize) -> Result<Vec<Completion>, Failure> {
        let deadline = Instant::now() + self.wait_max;
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let want = count - out.len();
            if self.qp.poll(&mut out, want) == 0 {
                ensure!(
                    Instant::now() < deadline,
                    "only {} of {count} completions after {:?} ({} in flight)",
                    out.len(),
                    self.wait_max,
                    self.qp.in_flight()
                );
                std::thread::yield_now();
            }
        }
        ensure!(out.len() == count, "poll returned {} completions when at most {count} were asked", out.len());
        Ok(out)
    }

    /// Submits one request and waits for its completion.
    pub fn run(&mut self, tag: u64, op: Op) -> Result<Completion, Failure> {
        self.submit(tag, op)?;
        let mut done = self.wait(1)?;
        let completion = done.pop().expect("wait(1) returns one completion");
        ensure!(completion.tag == tag, "completion carries tag {} instead of {tag}", completion.tag);
        Ok(completion)
    }

    /// Writes `blocks` blocks of `pattern(seed)` at `lba` and expects success.
    pub fn write(&mut self, lba: u64, blocks: usize, seed: u64, fua: bool) -> Result<(), Failure> {
        let mut buf = self.alloc(blocks)?;
        fill(&mut buf, self.block_bytes(), lba, seed);
        let done = self.run(lba ^ seed, Op::Write { lba, buf, fua })?;
        ensure!(done.buf.is_some(), "a write completion came back without its buffer");
        done.result.map_err(|e| format!("write of {blocks} blocks at {lba} failed: {e}"))
    }

    /// Reads `blocks` blocks at `lba` and expects success.
    pub fn read(&mut self, lba: u64, blocks: usize) -> Result<DmaBuf, Failure> {
        let buf = self.alloc(blocks)?;
        let done = self.run(lba, Op::Read { lba, buf })?;
        done.result.map_err(|e| format!("read of {blocks} blocks at {lba} failed: {e}"))?;
        done.buf.ok_or_else(|| "a read completion came back without its buffer".to_owned())
    }
}

/// Fills `buf` (blocks starting at `lba`) with a pattern unique to each
/// block's address and `seed`, so a block read from the wrong place, or an
/// older write, does not match.
pub fn fill(buf: &mut [u8], block_bytes: usize, lba: u64, seed: u64) {
    for (i, block) in buf.chunks_mut(block_bytes).enumerate() {
        let mut state = mix(seed ^ mix(lba + i as u64));
        for word in block.chunks_mut(8) {
            state = mix(state);
            let bytes = state.to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
    }
}

/// Checks that `buf` holds what [`fill`] wrote for `lba` and `seed`.
pub fn expect(buf: &[u8], block_bytes: usize, lba: u64, seed: u64, what: &str) -> Result<(), Failure> {
    let mut want = vec![0u8; buf.len()];
    fill(&mut want, block_bytes, lba, seed);
    for (i, (got, want)) in buf.chunks(block_bytes).zip(want.chunks(block_bytes)).enumerate() {
        ensure!(got == want, "{what}: block {} does not hold the data last written there", lba + i as u64);
    }
    Ok(())
}

/// splitmix64's finaliser: a cheap, well-spread hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
