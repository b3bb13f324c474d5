//! Reading and writing member labels at open, before any reactor runs: a
//! short-lived queue pair on the member, polled on the calling thread.

use std::time::{Duration, Instant};

use crate::device::{BlockDevice, Completion, Op, Request};
use crate::error::DeviceError;

/// Long enough for an NVMe command that times out, is aborted and retried
/// after a controller reset.
const LABEL_IO_DEADLINE: Duration = Duration::from_secs(120);

/// Reads `len_bytes` at byte 0 of `device`.
pub fn read_head(device: &dyn BlockDevice, len_bytes: usize) -> Result<Vec<u8>, DeviceError> {
    let buf = device.dma_pool().try_alloc(len_bytes).map_err(|e| io_failed(device, "allocate", e))?;
    let done = run(device, vec![Op::Read { lba: 0, buf }])?;
    Ok(done.into_iter().next().and_then(|c| c.buf).map(|b| b.to_vec()).unwrap_or_default())
}

/// Writes `bytes` (a whole number of the device's blocks) at byte 0 with
/// FUA, then flushes: durable when this returns.
pub fn write_head(device: &dyn BlockDevice, bytes: &[u8]) -> Result<(), DeviceError> {
    let mut buf = device.dma_pool().try_alloc(bytes.len()).map_err(|e| io_failed(device, "allocate", e))?;
    buf.copy_from_slice(bytes);
    run(device, vec![Op::Write { lba: 0, buf, fua: true }])?;
    run(device, vec![Op::Flush])?;
    Ok(())
}

/// Submits `ops` and waits for all of them; any failure is an error naming
/// the device.
fn run(device: &dyn BlockDevice, ops: Vec<Op>) -> Result<Vec<Completion>, DeviceError> {
    let mut qp = device.open_queue_pair(ops.len() as u32)?;
    let count = ops.len();
    for (tag, op) in ops.into_iter().enumerate() {
        qp.submit(Request { tag: tag as u64, op })
            .map_err(|e| io_failed(device, "submit to", format!("{:?}", e.into_request().op.kind())))?;
    }
    let started = Instant::now();
    let mut done = Vec::with_capacity(count);
    while done.len() < count {
        if qp.poll(&mut done, count) == 0 {
            if started.elapsed() > LABEL_IO_DEADLINE {
                return Err(io_failed(device, "wait for", "no completion within 120 s"));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    for c in &done {
        if let Err(e) = &c.result {
            return Err(io_failed(device, "use", e));
        }
    }
    done.sort_by_key(|c| c.tag);
    Ok(done)
}

fn io_failed(device: &dyn BlockDevice, what: &str, why: impl std::fmt::Display) -> DeviceError {
    DeviceError::Other(format!("set member {}: cannot {what} its label: {why}", device.info().name))
}
