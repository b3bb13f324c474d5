//! The checks. Blocks they write, by check:
//!
//! - data: blocks 8..16 and 16..94, plus one largest transfer at 1024;
//! - in flight: blocks 256..256+queue depth;
//! - flush: blocks 96..104;
//! - refusals: block 0 and the last two blocks;
//! - queue full, completion descriptor: reads only.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::task::{Context, Waker};

use super::harness::{ensure, expect, fill, Driver, Failure};
use super::{Check, ConformanceOptions, Verdict};
use crate::device::{BlockDevice, Op, OpKind, Request, SubmitError};
use crate::dma::{DmaError, REGION_BYTES};
use crate::error::IoErrorKind;

pub(super) const ALL: &[Check] = &[
    Check {
        name: "read_returns_the_last_completed_write",
        proves: "a read returns the data of the last completed write to each block, for transfers of many sizes",
        run: |d, o| verdict(read_returns_the_last_completed_write(d, o)),
    },
    Check {
        name: "requests_in_flight_complete_with_their_own_tag_and_buffer",
        proves: "a full queue of requests to distinct blocks completes, in any order, each with its tag, kind and buffer",
        run: |d, o| verdict(requests_in_flight_complete_with_their_own_tag_and_buffer(d, o)),
    },
    Check {
        name: "flush_completes_and_fua_writes_are_accepted",
        proves: "flushes complete (alone and among writes) without a buffer, and FUA writes complete and read back",
        run: |d, o| verdict(flush_completes_and_fua_writes_are_accepted(d, o)),
    },
    Check {
        name: "malformed_requests_are_refused_and_change_nothing",
        proves: "out-of-range, zero-length, misaligned-length and oversized requests fail with typed errors, hand their buffers back and write nothing",
        run: |d, o| verdict(malformed_requests_are_refused_and_change_nothing(d, o)),
    },
    Check {
        name: "a_full_queue_hands_the_request_back",
        proves: "submitting beyond the queue depth returns QueueFull with the same request, which goes through once slots free up",
        run: |d, o| verdict(a_full_queue_hands_the_request_back(d, o)),
    },
    Check {
        name: "an_exhausted_dma_pool_is_an_error",
        proves: "allocating from an exhausted DMA pool fails (or waits) without a panic, and I/O works again once buffers return",
        run: |d, o| verdict(an_exhausted_dma_pool_is_an_error(d, o)),
    },
    Check {
        name: "the_completion_fd_wakes_a_sleeper",
        proves: "after prepare_to_sleep, the completion descriptor becomes readable when a request completes, and prepare_to_sleep refuses while a completion waits",
        run: |d, o| verdict(the_completion_fd_wakes_a_sleeper(d, o)),
    },
];

const DATA_BASE: u64 = 8;
const SIZES_BASE: u64 = 16;
const SIZES_BLOCKS: [usize; 5] = [1, 2, 3, 8, 64];
const FLUSH_BASE: u64 = 96;
const INFLIGHT_BASE: u64 = 256;
const LARGEST_BASE: u64 = 1024;

fn verdict(result: Result<Verdict, Failure>) -> Verdict {
    result.unwrap_or_else(Verdict::Failed)
}

fn need_blocks(driver: &Driver<'_>, blocks: u64) -> Result<(), Failure> {
    ensure!(
        driver.capacity_blocks() >= blocks,
        "the device has {} blocks; the suite needs at least {blocks}",
        driver.capacity_blocks()
    );
    Ok(())
}

fn read_returns_the_last_completed_write(device: &dyn BlockDevice, o: &ConformanceOptions) -> Result<Verdict, Failure> {
    let mut d = Driver::open(device, o.queue_depth, o.wait_max)?;
    let block = d.block_bytes();
    let largest_blocks = (device.info().max_transfer_bytes as usize).min(REGION_BYTES) / block;
    need_blocks(&d, LARGEST_BASE + largest_blocks as u64 + 2)?;
    d.write(DATA_BASE, 8, 1, false)?;
    d.write(DATA_BASE + 3, 1, 2, false)?;
    let got = d.read(DATA_BASE, 8)?;
    expect(&got[..3 * block], block, DATA_BASE, 1, "after an overwrite of one block")?;
    expect(&got[3 * block..4 * block], block, DATA_BASE + 3, 2, "the overwritten block")?;
    expect(&got[4 * block..], block, DATA_BASE + 4, 1, "after an overwrite of one block")?;
    let one = d.read(DATA_BASE + 5, 1)?;
    expect(&one, block, DATA_BASE + 5, 1, "a one-block read inside a larger write")?;
    let mut lba = SIZES_BASE;
    for (i, blocks) in SIZES_BLOCKS.into_iter().enumerate() {
        let seed = 10 + i as u64;
        d.write(lba, blocks, seed, false)?;
        let got = d.read(lba, blocks)?;
        expect(&got, block, lba, seed, &format!("a {blocks}-block transfer"))?;
        lba += blocks as u64;
    }
    d.write(LARGEST_BASE, largest_blocks, 20, false)?;
    let got = d.read(LARGEST_BASE, largest_blocks)?;
    expect(&got, block, LARGEST_BASE, 20, "the largest transfer")?;
    Ok(Verdict::Passed)
}

fn requests_in_flight_complete_with_their_own_tag_and_buffer(
    device: &dyn BlockDevice,
    o: &ConformanceOptions,
) -> Result<Verdict, Failure> {
    let mut d = Driver::open(device, o.queue_depth, o.wait_max)?;
    let depth = u64::from(d.qp.queue_depth());
    need_blocks(&d, INFLIGHT_BASE + depth)?;
    let block = d.block_bytes();
    // Writes, then reads in the opposite order, each batch a full queue.
    for (round, kind) in [(0u64, OpKind::Write), (1, OpKind::Read)] {
        let mut expected: HashMap<u64, (u64, usize)> = HashMap::new();
        for i in 0..depth {
            let lba = if round == 0 { INFLIGHT_BASE + i } else { INFLIGHT_BASE + depth - 1 - i };
            let tag = 0x5EED_0000 + round * 10_000 + i * 7 + 1;
            let mut buf = d.alloc(1)?;
            let op = if kind == OpKind::Write {
                fill(&mut buf, block, lba, 30);
                Op::Write { lba, buf, fua: false }
            } else {
                buf.fill(0);
                Op::Read { lba, buf }
            };
            let addr = op_addr(&op);
            d.submit(tag, op)?;
            expected.insert(tag, (lba, addr));
        }
        ensure!(
            u64::from(d.qp.in_flight()) == depth,
            "{} requests in flight after {depth} submissions",
            d.qp.in_flight()
        );
        for done in d.wait(depth as usize)? {
            let Some((lba, addr)) = expected.remove(&done.tag) else {
                return Err(format!("a completion carries tag {:#x}, unknown or seen twice", done.tag));
            };
            ensure!(done.kind == kind, "tag {:#x} completed as a {} instead of a {kind}", done.tag, done.kind);
            let buf = done.buf.ok_or_else(|| format!("tag {:#x} completed without its buffer", done.tag))?;
            ensure!(buf.addr() == addr, "tag {:#x} came back with another request's buffer", done.tag);
            done.result.map_err(|e| format!("{kind} of block {lba} failed: {e}"))?;
            if kind == OpKind::Read {
                expect(&buf, block, lba, 30, "a read among many in flight")?;
            }
        }
        ensure!(d.qp.in_flight() == 0, "{} requests still in flight after every completion", d.qp.in_flight());
    }
    Ok(Verdict::Passed)
}

fn op_addr(op: &Op) -> usize {
    match op {
        Op::Read { buf, .. } | Op::Write { buf, .. } => buf.addr(),
        Op::Flush => 0,
    }
}

fn flush_completes_and_fua_writes_are_accepted(
    device: &dyn BlockDevice,
    o: &ConformanceOptions,
) -> Result<Verdict, Failure> {
    let mut d = Driver::open(device, o.queue_depth.max(8), o.wait_max)?;
    need_blocks(&d, FLUSH_BASE + 8)?;
    let block = d.block_bytes();
    let done = d.run(1, Op::Flush)?;
    ensure!(done.kind == OpKind::Flush, "a flush completed as a {}", done.kind);
    ensure!(done.buf.is_none(), "a flush completion carries a buffer");
    done.result.map_err(|e| format!("a flush with nothing written failed: {e}"))?;
    if device.info().fua {
        d.write(FLUSH_BASE, 2, 40, true)?;
        expect(&d.read(FLUSH_BASE, 2)?, block, FLUSH_BASE, 40, "a FUA write")?;
    }
    // Writes and a flush in one batch: all complete, in any order.
    let batch = (u64::from(d.qp.queue_depth()) - 1).min(4);
    for i in 0..batch {
        let lba = FLUSH_BASE + 2 + i;
        let mut buf = d.alloc(1)?;
        fill(&mut buf, block, lba, 41);
        d.submit(100 + i, Op::Write { lba, buf, fua: false })?;
    }
    d.submit(200, Op::Flush)?;
    for done in d.wait(batch as usize + 1)? {
        done.result.map_err(|e| format!("{} (tag {}) in a batch with a flush failed: {e}", done.kind, done.tag))?;
    }
    let done = d.run(2, Op::Flush)?;
    done.result.map_err(|e| format!("a flush after completed writes failed: {e}"))?;
    expect(&d.read(FLUSH_BASE + 2, batch as usize)?, block, FLUSH_BASE + 2, 41, "writes flushed in a batch")?;
    Ok(Verdict::Passed)
}

fn malformed_requests_are_refused_and_change_nothing(
    device: &dyn BlockDevice,
    o: &ConformanceOptions,
) -> Result<Verdict, Failure> {
    let mut d = Driver::open(device, o.queue_depth.max(2), o.wait_max)?;
    need_blocks(&d, 4)?;
    let info = device.info().clone();
    let (block, last) = (d.block_bytes(), info.capacity_blocks - 1);
    d.write(0, 1, 50, false)?;
    d.write(last - 1, 2, 51, false)?;
    let mut cases: Vec<(&str, Op, IoErrorKind)> = vec![
        ("a read past the end", Op::Read { lba: last + 1, buf: d.alloc(1)? }, IoErrorKind::OutOfRange),
        ("a read across the end", Op::Read { lba: last, buf: d.alloc(2)? }, IoErrorKind::OutOfRange),
        ("a write across the end", pattern_write(&d, last, 2, 52)?, IoErrorKind::OutOfRange),
        ("a write at block u64::MAX", pattern_write(&d, u64::MAX, 1, 52)?, IoErrorKind::OutOfRange),
        ("a zero-length write", sized_write(&d, 0, 0)?, IoErrorKind::BadLength),
        ("a write of a block and a half", sized_write(&d, 0, block + block / 2)?, IoErrorKind::BadLength),
    ];
    let oversize = info.max_transfer_bytes as usize + block;
    if oversize <= REGION_BYTES {
        cases.push((
            "a read beyond the maximum transfer",
            Op::Read { lba: 0, buf: d.alloc(oversize / block)? },
            IoErrorKind::BadLength,
        ));
    }
    for (i, (what, op, kind)) in cases.into_iter().enumerate() {
        expect_refused(&mut d, 900 + i as u64, op, kind, what)?;
    }
    ensure!(d.qp.in_flight() == 0, "{} requests in flight after the refusals", d.qp.in_flight());
    expect(&d.read(0, 1)?, block, 0, 50, "block 0 after refused writes")?;
    expect(&d.read(last - 1, 2)?, block, last - 1, 51, "the last blocks after refused writes")?;
    Ok(Verdict::Passed)
}

fn pattern_write(d: &Driver<'_>, lba: u64, blocks: usize, seed: u64) -> Result<Op, Failure> {
    let mut buf = d.alloc(blocks)?;
    fill(&mut buf, d.block_bytes(), lba, seed);
    Ok(Op::Write { lba, buf, fua: false })
}

fn sized_write(d: &Driver<'_>, lba: u64, len_bytes: usize) -> Result<Op, Failure> {
    let mut buf = d.alloc(len_bytes.div_ceil(d.block_bytes()).max(1))?;
    buf.fill(0xEE);
    buf.set_len(len_bytes);
    Ok(Op::Write { lba, buf, fua: false })
}

/// A malformed request may be refused at submission (`Invalid`, request
/// handed back) or accepted and failed on completion; either way with
/// `kind`, and with its buffer returned.
fn expect_refused(d: &mut Driver<'_>, tag: u64, op: Op, kind: IoErrorKind, what: &str) -> Result<(), Failure> {
    let addr = op_addr(&op);
    match d.qp.submit(Request { tag, op }) {
        Err(SubmitError::Invalid(request, error)) => {
            ensure!(error.kind == kind, "{what}: refused with {:?} instead of {kind:?}", error.kind);
            ensure!(request.tag == tag, "{what}: the refused request came back with another tag");
            let buf = request.op.into_buf();
            ensure!(buf.map(|b| b.addr()) == Some(addr), "{what}: the refused request lost its buffer");
            Ok(())
        }
        Err(SubmitError::QueueFull(_)) => Err(format!("{what}: QueueFull with {} in flight", d.qp.in_flight())),
        Err(SubmitError::Gone(_)) => Err(format!("{what}: device gone")),
        Ok(()) => {
            let done = d.wait(1)?.pop().expect("wait(1) returns one completion");
            ensure!(done.tag == tag, "{what}: completion carries tag {} instead of {tag}", done.tag);
            let buf_addr = done.buf.as_ref().map(|b| b.addr());
            ensure!(buf_addr == Some(addr), "{what}: the completion lost its buffer");
            match done.result {
                Err(e) if e.kind == kind => Ok(()),
                Err(e) => Err(format!("{what}: failed with {:?} instead of {kind:?}", e.kind)),
                Ok(()) => Err(format!("{what}: accepted and completed successfully")),
            }
        }
    }
}

fn a_full_queue_hands_the_request_back(device: &dyn BlockDevice, o: &ConformanceOptions) -> Result<Verdict, Failure> {
    let mut d = Driver::open(device, o.queue_depth.min(4), o.wait_max)?;
    let depth = u64::from(d.qp.queue_depth());
    need_blocks(&d, depth + 1)?;
    for i in 0..depth {
        let buf = d.alloc(1)?;
        d.submit(i, Op::Read { lba: i, buf })?;
    }
    let buf = d.alloc(1)?;
    let addr = buf.addr();
    let extra = match d.qp.submit(Request { tag: 77, op: Op::Read { lba: depth, buf } }) {
        Err(SubmitError::QueueFull(request)) => request,
        Err(e) => return Err(format!("the request beyond the queue depth failed otherwise: {e:?}")),
        Ok(()) => return Err(format!("a request beyond the queue depth of {depth} was accepted")),
    };
    ensure!(extra.tag == 77 && op_addr(&extra.op) == addr, "QueueFull handed back a different request");
    ensure!(u64::from(d.qp.in_flight()) == depth, "QueueFull changed the number in flight");
    for done in d.wait(depth as usize)? {
        done.result.map_err(|e| format!("a read filling the queue failed: {e}"))?;
    }
    let done = d.run(77, extra.op)?;
    done.result.map_err(|e| format!("the handed-back request failed on resubmission: {e}"))?;
    Ok(Verdict::Passed)
}

fn an_exhausted_dma_pool_is_an_error(device: &dyn BlockDevice, o: &ConformanceOptions) -> Result<Verdict, Failure> {
    let pool = device.dma_pool();
    let page = crate::dma::PAGE_BYTES;
    let mut held = Vec::new();
    // Bounded: the pool holds at most size/page buffers.
    for _ in 0..=pool.size_bytes() / page {
        match pool.try_alloc(REGION_BYTES).or_else(|_| pool.try_alloc(page)) {
            Ok(buf) => held.push(buf),
            Err(DmaError::Exhausted) => break,
            Err(e) => return Err(format!("allocating from the pool failed with {e} before it was exhausted")),
        }
    }
    ensure!(
        pool.try_alloc(page).err() == Some(DmaError::Exhausted),
        "the pool was not exhausted after handing out every byte"
    );
    let cx = Context::from_waker(Waker::noop());
    ensure!(pool.poll_alloc(page, &cx).is_pending(), "poll_alloc on an exhausted pool did not wait");
    ensure!(
        matches!(pool.try_alloc(REGION_BYTES + 1), Err(DmaError::TooLarge { .. })),
        "a buffer larger than a region was not refused as too large"
    );
    drop(held);
    let mut d = Driver::open(device, o.queue_depth, o.wait_max)?;
    need_blocks(&d, DATA_BASE + 1)?;
    d.write(DATA_BASE, 1, 60, false)?;
    expect(&d.read(DATA_BASE, 1)?, d.block_bytes(), DATA_BASE, 60, "I/O after the pool recovered")?;
    Ok(Verdict::Passed)
}

fn the_completion_fd_wakes_a_sleeper(device: &dyn BlockDevice, o: &ConformanceOptions) -> Result<Verdict, Failure> {
    let mut d = Driver::open(device, o.queue_depth, o.wait_max)?;
    if d.qp.completion_fd().is_none() {
        return Ok(Verdict::NotApplicable("the device has no completion descriptor; callers poll".into()));
    }
    let timeout_ms = i32::try_from(o.wait_max.as_millis()).unwrap_or(i32::MAX);
    let mut out = Vec::new();
    let buf = d.alloc(1)?;
    d.qp.submit(Request { tag: 5, op: Op::Read { lba: 0, buf } }).map_err(|e| format!("read refused: {e:?}"))?;
    // The first poll sends the request; then sleep on the descriptor until
    // it says a completion is there.
    d.qp.poll(&mut out, 1);
    if out.is_empty() {
        if d.qp.prepare_to_sleep() {
            let fd = d.qp.completion_fd().expect("checked above").as_raw_fd();
            ensure!(
                wait_readable(fd, timeout_ms)?,
                "the completion descriptor stayed silent for {timeout_ms} ms with a request in flight"
            );
            ensure!(
                !d.qp.prepare_to_sleep(),
                "prepare_to_sleep allowed sleeping with a completion waiting to be reaped"
            );
        }
        out = d.wait(1)?;
    }
    ensure!(out.len() == 1 && out[0].tag == 5, "the read did not complete with its tag");
    Ok(Verdict::Passed)
}

/// Waits until `fd` is readable; false on timeout.
fn wait_readable(fd: std::os::fd::RawFd, timeout_ms: i32) -> Result<bool, Failure> {
    let mut pollfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one live, writable pollfd and a count of one.
        let rc = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
        if rc >= 0 {
            return Ok(rc == 1 && pollfd.revents & libc::POLLIN != 0);
        }
        let error = std::io::Error::last_os_error();
        ensure!(error.kind() == std::io::ErrorKind::Interrupted, "poll on the completion descriptor failed: {error}");
    }
}
