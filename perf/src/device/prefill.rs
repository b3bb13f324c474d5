//! Writing the whole device once before it is measured, so every run meets
//! written extents: holes and fallocated-but-unwritten extents read as zeros
//! without touching the disk, which would flatter any reader, and the file
//! system converts an unwritten extent on its first write, which costs
//! whichever writer (Keel or fio) reaches it first.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use keel_drivers::BlockDevice;
use keel_reactor::io::{self, DeviceId};
use keel_reactor::{block_on, spawn};

use super::args::{Backend, DeviceArgs, Prefill};
use super::PerfError;

const DEV: DeviceId = DeviceId(0);
const CHUNK_BYTES: u64 = 1 << 20;
const WRITERS: usize = 16;

/// Whether this run must fill the device first, and why (for the log).
pub fn needed(args: &DeviceArgs, device_is_new: bool) -> Result<Option<&'static str>, PerfError> {
    let why = match args.prefill {
        Prefill::Never => None,
        Prefill::Always => Some("--prefill always"),
        // Only a file can have holes; memory and NVMe namespaces cannot say.
        Prefill::Auto if args.backend != Backend::Uring => None,
        Prefill::Auto if device_is_new => Some("the file was just created"),
        Prefill::Auto => has_unwritten_space(args)?.then_some("the file has holes or unwritten extents"),
    };
    Ok(why)
}

fn has_unwritten_space(args: &DeviceArgs) -> Result<bool, PerfError> {
    let file =
        std::fs::File::open(&args.path).map_err(|e| PerfError::Config(format!("{}: {e}", args.path.display())))?;
    if file.metadata().map(|m| !m.is_file()).unwrap_or(true) {
        // Block devices have no holes to speak of.
        return Ok(false);
    }
    let hole = keel_drivers::uring::first_unwritten_offset(&file)
        .map_err(|e| PerfError::Config(format!("{}: cannot look for holes: {e}", args.path.display())))?;
    Ok(hole.is_some())
}

/// Writes every block of `device` with non-zero data in 1 MiB sequential
/// writes, 16 in flight, then flushes.
pub fn fill(device: &Arc<dyn BlockDevice>) -> Result<f64, PerfError> {
    let info = device.info().clone();
    let capacity_bytes = info.capacity_bytes();
    let block_bytes = u64::from(info.block_size_bytes);
    let started = Instant::now();
    let result = block_on(std::slice::from_ref(device), async move {
        let next = Rc::new(Cell::new(0u64));
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let next = Rc::clone(&next);
            tasks.push(spawn(async move {
                let mut buf = io::alloc_buf(DEV, CHUNK_BYTES as usize).await.map_err(|e| e.to_string())?;
                buf.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u8) ^ 0x5A ^ writer as u8);
                loop {
                    let offset = next.get();
                    if offset >= capacity_bytes {
                        return Ok::<(), String>(());
                    }
                    let len = CHUNK_BYTES.min(capacity_bytes - offset);
                    next.set(offset + len);
                    buf.set_len(len as usize);
                    let (back, result) = io::write(DEV, offset / block_bytes, buf, false).await;
                    buf = back;
                    result.map_err(|e| e.to_string())?;
                }
            }));
        }
        for task in tasks {
            task.await?;
        }
        io::flush(DEV).await.map_err(|e| e.to_string())
    })?;
    result.map_err(PerfError::Io)?;
    Ok(started.elapsed().as_secs_f64())
}
