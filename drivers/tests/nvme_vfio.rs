//! The NVMe backend against a real (emulated) controller handed to vfio-pci.
//!
//! These tests need a machine with VFIO and an NVMe controller bound to
//! vfio-pci, named by KEEL_NVME_PCI (several, comma-separated, for the
//! multi-controller test). The development machine has neither, so they are
//! ignored by a plain `cargo test` and run inside the QEMU guest by
//! `scripts/vm/nvme-tests.sh` (`--ignored`), which `scripts/test-all` calls.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_drivers::conformance::{self, ConformanceOptions};
use keel_drivers::nvme::{NvmeConfig, NvmeDevice, NvmeQueuePair};
use keel_drivers::{
    BlockDevice, Completion, DmaPool, DmaPoolConfig, HugepagePolicy, IoErrorKind, Op, OpKind, QueuePair, Request,
    SubmitError,
};

fn pci_addresses() -> Vec<String> {
    let list = std::env::var("KEEL_NVME_PCI").expect("KEEL_NVME_PCI names the controller(s) bound to vfio-pci");
    list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

fn pool() -> Arc<DmaPool> {
    let config = DmaPoolConfig { size_bytes: 32 << 20, hugepages: HugepagePolicy::Auto };
    Arc::new(DmaPool::new(&config).expect("DMA pool"))
}

fn open(interrupts: bool) -> NvmeDevice {
    let mut config = NvmeConfig::new(&pci_addresses()[0]);
    config.interrupts = interrupts;
    config.command_timeout_ms = 5_000;
    NvmeDevice::open(&config, pool()).expect("open the NVMe controller")
}

/// Polls until `n` completions arrived, or fails the test after 20 s: a
/// test must never hang on a device.
fn reap(qp: &mut dyn QueuePair, n: usize) -> Vec<Completion> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n {
        qp.poll(&mut out, 64);
        assert!(Instant::now() < deadline, "only {} of {n} completions within 20 s", out.len());
    }
    out
}

fn pattern(buf: &mut [u8], seed: u64) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let v = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

#[test]
#[ignore = "needs an NVMe controller on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn conformance_suite_passes_polled() {
    let device = open(false);
    let report = conformance::run(&device, &ConformanceOptions::default());
    println!("{report}");
    report.assert_passed();
}

#[test]
#[ignore = "needs an NVMe controller on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn conformance_suite_passes_with_interrupts() {
    let device = open(true);
    let report = conformance::run(&device, &ConformanceOptions::default());
    println!("{report}");
    report.assert_passed();
    let woke = report.outcomes.iter().find(|(name, _)| name.contains("completion_fd"));
    assert!(
        matches!(woke, Some((_, conformance::Verdict::Passed))),
        "with interrupts the completion-fd check must run and pass: {woke:?}"
    );
}

#[test]
#[ignore = "needs an NVMe controller on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn identify_reports_the_namespace_shape() {
    let device = open(false);
    let info = device.info();
    println!("{info:?}");
    assert!(info.name.starts_with("nvme:"));
    assert!(info.block_size_bytes == 512 || info.block_size_bytes == 4096);
    assert!(info.capacity_blocks > 0);
    assert!(info.fua);
    assert!(info.max_transfer_bytes >= 4096 && info.max_transfer_bytes <= 2 << 20);
    assert!(info.queue_depth_max >= 1);
}

#[test]
#[ignore = "needs an NVMe controller on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn writes_read_back_at_every_transfer_size_and_out_of_order() {
    let device = open(false);
    let info = device.info().clone();
    let mut qp = device.open_queue_pair(64).expect("queue pair");
    let block = info.block_size_bytes as usize;
    let mut sizes = vec![block, 4096, 8192, 12288, 64 * 1024, 128 * 1024 + block, info.max_transfer_bytes as usize];
    sizes.retain(|s| s % block == 0 && *s <= info.max_transfer_bytes as usize);
    // Write every size at its own place, all in flight at once.
    let mut lba = 0u64;
    let mut placed = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let mut buf = device.dma_pool().try_alloc(size).expect("buffer");
        pattern(&mut buf, i as u64 + 1);
        qp.submit(Request { tag: i as u64, op: Op::Write { lba, buf, fua: i % 2 == 0 } }).expect("submit");
        placed.push((lba, size));
        lba += (size / block) as u64 + 7;
    }
    for c in reap(qp.as_mut(), sizes.len()) {
        assert_eq!(c.kind, OpKind::Write);
        c.result.expect("write");
    }
    for (i, &(lba, size)) in placed.iter().enumerate() {
        let buf = device.dma_pool().try_alloc_zeroed(size).expect("buffer");
        qp.submit(Request { tag: 100 + i as u64, op: Op::Read { lba, buf } }).expect("submit");
    }
    let mut seen = 0;
    for c in reap(qp.as_mut(), placed.len()) {
        c.result.expect("read");
        let i = (c.tag - 100) as usize;
        let mut want = vec![0u8; placed[i].1];
        pattern(&mut want, i as u64 + 1);
        assert!(c.buf.expect("buffer back")[..] == want[..], "size {} read back different bytes", placed[i].1);
        seen += 1;
    }
    assert_eq!(seen, placed.len());
}

#[test]
#[ignore = "needs an NVMe controller on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn queue_full_is_back_pressure_and_flush_completes() {
    let device = open(false);
    let mut qp = device.open_queue_pair(4).expect("queue pair");
    assert_eq!(qp.queue_depth(), 4);
    let block = device.info().block_size_bytes as usize;
    for tag in 0..4 {
        let buf = device.dma_pool().try_alloc(block).expect("buffer");
        qp.submit(Request { tag, op: Op::Write { lba: tag, buf, fua: false } }).expect("room for 4");
    }
    let extra = Request { tag: 9, op: Op::Flush };
    assert!(matches!(qp.submit(extra), Err(SubmitError::QueueFull(_))));
    assert_eq!(qp.in_flight(), 4);
    reap(qp.as_mut(), 4).into_iter().for_each(|c| c.result.expect("write"));
    qp.submit(Request { tag: 10, op: Op::Flush }).expect("flush");
    let done = reap(qp.as_mut(), 1);
    assert_eq!(done[0].kind, OpKind::Flush);
    done.into_iter().for_each(|c| c.result.expect("flush"));
    assert_eq!(qp.in_flight(), 0);
}

#[test]
#[ignore = "needs an NVMe controller on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn invalid_requests_are_refused_with_typed_errors() {
    let device = open(false);
    let info = device.info().clone();
    let mut qp = device.open_queue_pair(8).expect("queue pair");
    let block = info.block_size_bytes as usize;
    let buf = device.dma_pool().try_alloc(block).expect("buffer");
    let past_end = Request { tag: 1, op: Op::Read { lba: info.capacity_blocks, buf } };
    match qp.submit(past_end) {
        Err(SubmitError::Invalid(_, e)) => assert_eq!(e.kind, IoErrorKind::OutOfRange),
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    let mut odd = device.dma_pool().try_alloc(block).expect("buffer");
    odd.set_len(block - 1);
    match qp.submit(Request { tag: 2, op: Op::Write { lba: 0, buf: odd, fua: false } }) {
        Err(SubmitError::Invalid(_, e)) => assert_eq!(e.kind, IoErrorKind::BadLength),
        other => panic!("expected BadLength, got {other:?}"),
    }
    let foreign = DmaPool::for_tests(2 << 20).try_alloc(block).expect("buffer");
    match qp.submit(Request { tag: 3, op: Op::Read { lba: 0, buf: foreign } }) {
        Err(SubmitError::Invalid(_, e)) => assert_eq!(e.kind, IoErrorKind::Io { errno: libc::EFAULT }),
        other => panic!("expected a refusal of an unmapped buffer, got {other:?}"),
    }
    assert_eq!(qp.in_flight(), 0);
}

#[test]
#[ignore = "needs an NVMe controller on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn one_queue_pair_per_thread_runs_concurrently() {
    let device = Arc::new(open(false));
    let threads: Vec<_> = (0..3u64)
        .map(|t| {
            let device = Arc::clone(&device);
            std::thread::spawn(move || {
                let mut qp = device.open_queue_pair(16).expect("queue pair");
                let block = device.info().block_size_bytes as usize;
                for round in 0..20u64 {
                    let lba = 10_000 + t * 1000 + round * 8;
                    let mut buf = device.dma_pool().try_alloc(4096.max(block)).expect("buffer");
                    pattern(&mut buf, lba);
                    qp.submit(Request { tag: round, op: Op::Write { lba, buf, fua: false } }).expect("submit");
                    reap(qp.as_mut(), 1).into_iter().for_each(|c| c.result.expect("write"));
                    let buf = device.dma_pool().try_alloc_zeroed(4096.max(block)).expect("buffer");
                    qp.submit(Request { tag: round, op: Op::Read { lba, buf } }).expect("submit");
                    let c = reap(qp.as_mut(), 1).pop().expect("one completion");
                    let mut want = vec![0u8; 4096.max(block)];
                    pattern(&mut want, lba);
                    assert!(c.buf.expect("buffer")[..] == want[..]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
}

#[test]
#[ignore = "needs an NVMe controller on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn an_interrupt_wakes_a_sleeping_queue_pair() {
    let device = open(true);
    let mut qp = device.open_queue_pair(8).expect("queue pair");
    let fd = qp.completion_fd().expect("interrupt mode gives a completion fd").as_raw_fd();
    let block = device.info().block_size_bytes as usize;
    for round in 0..5u64 {
        let buf = device.dma_pool().try_alloc(block).expect("buffer");
        qp.submit(Request { tag: round, op: Op::Read { lba: round, buf } }).expect("submit");
        let mut out = Vec::new();
        // prepare_to_sleep rings the doorbell; false means it already completed.
        if qp.prepare_to_sleep() {
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one live pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
            assert_eq!(n, 1, "no interrupt within 10 s");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.is_empty() {
            qp.poll(&mut out, 8);
            assert!(Instant::now() < deadline);
        }
        out.pop().expect("completion").result.expect("read");
    }
    // Idle with nothing in flight: sleeping is allowed.
    assert!(qp.prepare_to_sleep());
}

#[test]
#[ignore = "needs two NVMe controllers on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn two_controllers_are_driven_at_once() {
    let addresses = pci_addresses();
    assert!(addresses.len() >= 2, "KEEL_NVME_PCI must name two controllers");
    let pool = pool();
    let devices: Vec<NvmeDevice> = addresses[..2]
        .iter()
        .map(|a| NvmeDevice::open(&NvmeConfig::new(a), Arc::clone(&pool)).expect("open"))
        .collect();
    let mut qps: Vec<Box<dyn QueuePair>> = devices.iter().map(|d| d.open_queue_pair(8).expect("qp")).collect();
    let block = devices[0].info().block_size_bytes as usize;
    for (i, qp) in qps.iter_mut().enumerate() {
        let mut buf = pool.try_alloc(block).expect("buffer");
        pattern(&mut buf, 77 + i as u64);
        qp.submit(Request { tag: 0, op: Op::Write { lba: 5, buf, fua: true } }).expect("submit");
    }
    for qp in qps.iter_mut() {
        reap(qp.as_mut(), 1).into_iter().for_each(|c| c.result.expect("write"));
    }
    for (i, qp) in qps.iter_mut().enumerate() {
        let buf = pool.try_alloc_zeroed(block).expect("buffer");
        qp.submit(Request { tag: 1, op: Op::Read { lba: 5, buf } }).expect("submit");
        let c = reap(qp.as_mut(), 1).pop().expect("completion");
        let mut want = vec![0u8; block];
        pattern(&mut want, 77 + i as u64);
        assert!(c.buf.expect("buffer")[..] == want[..], "controller {i} holds its own data");
    }
}

/// Unbinds the controller from vfio-pci while I/O runs. The kernel asks the
/// process for the device; in-flight and later requests fail with
/// `DeviceGone`, nothing hangs, and the process goes on. Leaves the
/// controller unbound (the script rebinds it).
#[test]
#[ignore = "unbinds the NVMe controller: run in the VM by scripts/vm/nvme-tests.sh"]
fn unbind_mid_io_fails_requests_and_the_process_survives() {
    let pci = pci_addresses()[0].clone();
    let device = open(false);
    let mut qp = device.open_queue_pair(32).expect("queue pair");
    let block = device.info().block_size_bytes as usize;
    let unbinder = {
        let pci = pci.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            // Blocks until the driver has released the device.
            std::fs::write("/sys/bus/pci/drivers/vfio-pci/unbind", &pci).map_err(|e| e.to_string())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut ok, mut gone, mut tag) = (0u64, 0u64, 0u64);
    let mut out = Vec::new();
    while !(device.is_gone() && qp.in_flight() == 0) {
        assert!(Instant::now() < deadline, "the device was not released within 30 s");
        while qp.in_flight() < 32 && !device.is_gone() {
            let buf = device.dma_pool().try_alloc(block).expect("buffer");
            let op = if tag % 2 == 0 {
                Op::Write { lba: tag % 1024, buf, fua: false }
            } else {
                Op::Read { lba: tag % 1024, buf }
            };
            tag += 1;
            match qp.submit(Request { tag, op }) {
                Ok(()) => {}
                Err(SubmitError::Gone(_)) => gone += 1,
                Err(e) => panic!("unexpected refusal {e:?}"),
            }
        }
        out.clear();
        qp.poll(&mut out, 64);
        for c in out.drain(..) {
            match c.result {
                Ok(()) => ok += 1,
                Err(e) => {
                    assert_eq!(e.kind, IoErrorKind::DeviceGone, "{e}");
                    gone += 1;
                }
            }
        }
    }
    unbinder.join().expect("unbinder thread").expect("unbind succeeded");
    let buf = device.dma_pool().try_alloc(block).expect("buffer");
    assert!(matches!(qp.submit(Request { tag: 0, op: Op::Read { lba: 0, buf } }), Err(SubmitError::Gone(_))));
    assert!(ok > 0, "some I/O completed before the unbind");
    println!("unbind mid-I/O: {ok} requests completed, {gone} failed with DeviceGone; process alive");
    drop(qp);
    drop(device);
    let driver = std::fs::read_link(format!("/sys/bus/pci/devices/{pci}/driver"));
    assert!(driver.is_err(), "the controller is unbound after the test");
}

/// Turns bus mastering off under the controller while reads are in flight:
/// the controller can no longer reach memory and reports a fatal status.
/// The driver notices at its next timeout check, fails the controller, and
/// every request comes back with an error: nothing hangs.
#[test]
#[ignore = "needs an NVMe controller on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn a_fatal_controller_fails_every_request_instead_of_hanging() {
    let mut config = NvmeConfig::new(&pci_addresses()[0]);
    config.interrupts = false;
    config.command_timeout_ms = 300;
    let device = NvmeDevice::open(&config, pool()).expect("open");
    let mut qp = device.open_queue_pair(16).expect("queue pair");
    let block = device.info().block_size_bytes as usize;
    const PCI_COMMAND: u64 = 4;
    const BUS_MASTER: u16 = 1 << 2;
    device
        .controller()
        .with_vfio(|v| {
            let command = v.config_read_u16(PCI_COMMAND).expect("read PCI command");
            v.config_write_u16(PCI_COMMAND, command & !BUS_MASTER).expect("write PCI command");
        })
        .expect("device open");
    for tag in 0..8 {
        let buf = device.dma_pool().try_alloc(block).expect("buffer");
        qp.submit(Request { tag, op: Op::Read { lba: tag, buf } }).expect("submit");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while qp.in_flight() > 0 {
        qp.poll(&mut out, 64);
        assert!(Instant::now() < deadline, "requests still in flight after 20 s: the driver hung");
    }
    assert_eq!(out.len(), 8);
    for c in &out {
        let e = c.result.as_ref().expect_err("no read can succeed without bus mastering");
        assert!(matches!(e.kind, IoErrorKind::DeviceGone | IoErrorKind::Timeout), "{e}");
        assert!(c.buf.is_some(), "the buffer comes back");
    }
    assert!(device.is_gone());
    let buf = device.dma_pool().try_alloc(block).expect("buffer");
    assert!(matches!(qp.submit(Request { tag: 99, op: Op::Read { lba: 0, buf } }), Err(SubmitError::Gone(_))));
}

/// Polls `qp` until `n` completions arrived (20 s at most), handing each to `seen`.
fn reap_nvme(qp: &mut NvmeQueuePair, n: usize) -> Vec<Completion> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n {
        qp.poll(&mut out, 64);
        assert!(Instant::now() < deadline, "only {} of {n} completions within 20 s: the driver hung", out.len());
    }
    out
}

/// A command whose completion never arrives: after the command timeout the
/// driver sends an Abort (QEMU's controller declines to abort anything),
/// after a second timeout it resets the controller (CC.EN = 0, CSTS.RDY = 0
/// within CAP.TO, enable, queues created again). The lost command fails
/// with `Timeout`; two commands that were in flight but not yet late are
/// resubmitted and succeed; new I/O after the reset works and the data is
/// right. The completions are lost by the driver's test hook (the emulated
/// controller never loses one by itself); the abort, the reset and the
/// re-created queues are the controller's own.
#[test]
#[ignore = "needs an NVMe controller on vfio-pci: run in the VM by scripts/vm/nvme-tests.sh"]
fn a_lost_completion_is_aborted_then_the_controller_reset_and_io_goes_on() {
    let mut config = NvmeConfig::new(&pci_addresses()[0]);
    config.interrupts = false;
    config.command_timeout_ms = 1_000;
    let device = NvmeDevice::open(&config, pool()).expect("open");
    let info = device.info().clone();
    let block = info.block_size_bytes as usize;
    let mut qp = NvmeQueuePair::open(Arc::clone(device.controller()), info.clone(), 16).expect("queue pair");
    // Known data at blocks 0..4, then a fresh pattern for block 40.
    for lba in 0..4u64 {
        let mut buf = device.dma_pool().try_alloc(block).expect("buffer");
        pattern(&mut buf, 1000 + lba);
        qp.submit(Request { tag: lba, op: Op::Write { lba, buf, fua: false } }).expect("submit");
    }
    reap_nvme(&mut qp, 4).into_iter().for_each(|c| c.result.expect("write"));

    // A: its completion is lost.
    qp.lose_completions(1);
    let buf = device.dma_pool().try_alloc(block).expect("buffer");
    qp.submit(Request { tag: 100, op: Op::Read { lba: 0, buf } }).expect("submit A");
    let a_submitted = Instant::now();
    let mut out = Vec::new();
    // Past A's first deadline (1 s: abort), before its second (2 s: reset).
    while a_submitted.elapsed() < Duration::from_millis(1_400) {
        qp.poll(&mut out, 8);
    }
    assert!(out.is_empty(), "A completed although its completion was lost: {out:?}");
    assert_eq!(device.controller().resets(), 0, "one timeout aborts; it does not reset yet");
    // B (a write) and C (a read): on the device when the reset comes, not
    // late (a longer timeout for them keeps a slow guest from making them late).
    qp.set_command_timeout(Duration::from_secs(5));
    qp.lose_completions(2);
    let mut buf = device.dma_pool().try_alloc(block).expect("buffer");
    pattern(&mut buf, 4040);
    qp.submit(Request { tag: 101, op: Op::Write { lba: 40, buf, fua: true } }).expect("submit B");
    let buf = device.dma_pool().try_alloc(block).expect("buffer");
    qp.submit(Request { tag: 102, op: Op::Read { lba: 1, buf } }).expect("submit C");
    let done = reap_nvme(&mut qp, 3);
    let elapsed_ms = a_submitted.elapsed().as_millis();
    assert_eq!(device.controller().resets(), 1, "the second timeout of A reset the controller");
    assert!(!device.is_gone());
    for c in &done {
        match c.tag {
            100 => {
                let e = c.result.as_ref().expect_err("A timed out");
                assert_eq!(e.kind, IoErrorKind::Timeout, "{e}");
                assert!(c.buf.is_some(), "A's buffer comes back");
            }
            101 => c.result.clone().expect("B resubmitted after the reset"),
            102 => {
                c.result.clone().expect("C resubmitted after the reset");
                let mut want = vec![0u8; block];
                pattern(&mut want, 1001);
                assert!(c.buf.as_ref().expect("buffer")[..] == want[..], "C read block 1");
            }
            tag => panic!("unexpected completion {tag}"),
        }
    }
    // New I/O on the same queue pair, and on a new one.
    let buf = device.dma_pool().try_alloc_zeroed(block).expect("buffer");
    qp.submit(Request { tag: 200, op: Op::Read { lba: 40, buf } }).expect("submit");
    let c = reap_nvme(&mut qp, 1).pop().expect("completion");
    let mut want = vec![0u8; block];
    pattern(&mut want, 4040);
    assert!(c.buf.expect("buffer")[..] == want[..], "B's write reached the medium");
    let mut other = device.open_queue_pair(8).expect("a new queue pair after the reset");
    other.submit(Request { tag: 300, op: Op::Flush }).expect("flush");
    reap(other.as_mut(), 1).into_iter().for_each(|c| c.result.expect("flush"));
    println!(
        "lost completion: abort, reset after {elapsed_ms} ms; A failed with Timeout, B and C resubmitted and succeeded; new I/O ok"
    );
}

/// A controller that is really slower than the command timeout: QEMU's
/// controller over a null block driver that answers every command after
/// 1.5 s (scripts/vm/nvme-tests.sh adds it as the third controller), with a
/// 400 ms timeout. Every command is aborted (QEMU declines), then the
/// controller is reset (QEMU's reset waits for the slow requests), and the
/// commands fail with `Timeout`: nothing hangs, the process survives. With a
/// timeout the device can meet, the same queue pair serves I/O again.
#[test]
#[ignore = "needs the slow NVMe controller of scripts/vm/nvme-tests.sh on vfio-pci"]
fn a_controller_slower_than_the_timeout_is_reset_and_serves_again() {
    let mut config = NvmeConfig::new(&pci_addresses()[0]);
    config.interrupts = false;
    config.command_timeout_ms = 400;
    let device = NvmeDevice::open(&config, pool()).expect("open");
    let block = device.info().block_size_bytes as usize;
    let mut qp = NvmeQueuePair::open(Arc::clone(device.controller()), device.info().clone(), 8).expect("queue pair");
    let started = Instant::now();
    for lba in 0..4u64 {
        let buf = device.dma_pool().try_alloc(block).expect("buffer");
        qp.submit(Request { tag: lba, op: Op::Read { lba, buf } }).expect("submit");
    }
    let done = reap_nvme(&mut qp, 4);
    let failed_after_ms = started.elapsed().as_millis();
    for c in &done {
        let e = c.result.as_ref().expect_err("a 1.5 s command cannot meet a 400 ms timeout");
        assert_eq!(e.kind, IoErrorKind::Timeout, "{e}");
        assert!(c.buf.is_some(), "the buffer comes back");
    }
    assert_eq!(device.controller().resets(), 1, "one reset for the batch");
    assert!(!device.is_gone());
    qp.set_command_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let buf = device.dma_pool().try_alloc(block).expect("buffer");
    qp.submit(Request { tag: 10, op: Op::Read { lba: 7, buf } }).expect("submit");
    qp.submit(Request { tag: 11, op: Op::Flush }).expect("submit");
    reap_nvme(&mut qp, 2).into_iter().for_each(|c| c.result.expect("I/O after the reset"));
    println!(
        "slow controller: 4 reads failed with Timeout after {failed_after_ms} ms (abort, reset); after the reset a read and a flush took {} ms",
        started.elapsed().as_millis()
    );
}

/// The reset cap on a device that keeps hanging: the slow controller with a
/// 400 ms timeout and `resets_max = 1`. The first batch of late reads costs
/// the one reset allowed; the next late batch would need another, so the
/// controller is failed for good instead: its commands fail, new ones are
/// refused as gone, and the process goes on.
#[test]
#[ignore = "needs the slow NVMe controller of scripts/vm/nvme-tests.sh on vfio-pci"]
fn a_controller_past_its_reset_cap_is_failed_for_good() {
    let mut config = NvmeConfig::new(&pci_addresses()[0]);
    config.interrupts = false;
    config.command_timeout_ms = 400;
    config.resets_max = 1;
    config.reset_window_ms = 600_000;
    let device = NvmeDevice::open(&config, pool()).expect("open");
    let block = device.info().block_size_bytes as usize;
    let mut qp = NvmeQueuePair::open(Arc::clone(device.controller()), device.info().clone(), 8).expect("queue pair");
    let started = Instant::now();
    for round in 0..2u64 {
        for lba in 0..2u64 {
            let buf = device.dma_pool().try_alloc(block).expect("buffer");
            qp.submit(Request { tag: round * 10 + lba, op: Op::Read { lba, buf } }).expect("submit");
        }
        for c in reap_nvme(&mut qp, 2) {
            let e = c.result.expect_err("a 1.5 s command cannot meet a 400 ms timeout");
            assert!(matches!(e.kind, IoErrorKind::Timeout | IoErrorKind::DeviceGone), "{e}");
        }
        assert_eq!(device.controller().resets(), 1, "round {round}: one reset allowed, and only one");
    }
    assert!(device.is_gone(), "the second reset was refused: the controller is failed");
    let buf = device.dma_pool().try_alloc(block).expect("buffer");
    let refused = qp.submit(Request { tag: 99, op: Op::Read { lba: 0, buf } });
    let late = match refused {
        Err(SubmitError::Gone(_)) => None,
        Ok(()) => reap_nvme(&mut qp, 1).pop().and_then(|c| c.result.err()).map(|e| e.kind),
        Err(other) => panic!("a failed controller refuses I/O as gone, not {other:?}"),
    };
    assert!(matches!(late, None | Some(IoErrorKind::DeviceGone)), "{late:?}");
    println!(
        "reset cap: 1 reset, then the controller failed for good after {} ms; new I/O refused as gone",
        started.elapsed().as_millis()
    );
}

/// Polls like a reactor that sleeps: whenever `prepare_to_sleep` allows it,
/// waits on the completion descriptor (at most 5 s: the driver's timer must
/// wake it for a deadline, an interrupt for a completion). Returns the
/// completions and how many times it slept.
fn reap_sleeping(qp: &mut NvmeQueuePair, n: usize) -> (Vec<Completion>, u32) {
    let fd = qp.completion_fd().expect("interrupt mode gives a completion fd").as_raw_fd();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut out, mut sleeps) = (Vec::new(), 0);
    while out.len() < n {
        if qp.prepare_to_sleep() {
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one live pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, 5_000) };
            assert_eq!(ready, 1, "asleep for 5 s with commands in flight: nothing woke the queue pair");
            sleeps += 1;
        }
        qp.poll(&mut out, 64);
        assert!(Instant::now() < deadline, "only {} of {n} completions within 20 s: the driver hung", out.len());
    }
    (out, sleeps)
}

/// The slow controller again, with a queue pair that sleeps on its
/// interrupt descriptor between polls: the driver's timer wakes it at each
/// deadline (abort, then reset), the commands fail with `Timeout`, and
/// after the reset the re-created completion queue's interrupt wakes it for
/// a command that completes.
#[test]
#[ignore = "needs the slow NVMe controller of scripts/vm/nvme-tests.sh on vfio-pci"]
fn a_sleeping_queue_pair_is_woken_for_timeouts_and_by_interrupts_after_the_reset() {
    let mut config = NvmeConfig::new(&pci_addresses()[0]);
    config.interrupts = true;
    config.command_timeout_ms = 400;
    let device = NvmeDevice::open(&config, pool()).expect("open");
    let block = device.info().block_size_bytes as usize;
    let mut qp = NvmeQueuePair::open(Arc::clone(device.controller()), device.info().clone(), 8).expect("queue pair");
    for lba in 0..2u64 {
        let buf = device.dma_pool().try_alloc(block).expect("buffer");
        qp.submit(Request { tag: lba, op: Op::Read { lba, buf } }).expect("submit");
    }
    let (done, slept_timing_out) = reap_sleeping(&mut qp, 2);
    for c in &done {
        assert_eq!(c.result.as_ref().expect_err("too slow").kind, IoErrorKind::Timeout);
    }
    assert_eq!(device.controller().resets(), 1);
    qp.set_command_timeout(Duration::from_secs(10));
    let buf = device.dma_pool().try_alloc(block).expect("buffer");
    qp.submit(Request { tag: 9, op: Op::Read { lba: 9, buf } }).expect("submit");
    let (done, slept_after) = reap_sleeping(&mut qp, 1);
    done.into_iter().for_each(|c| c.result.expect("read after the reset"));
    assert!(slept_after >= 1, "the read after the reset was waited for asleep");
    println!("sleeping queue pair: slept {slept_timing_out} times through abort and reset, {slept_after} for the read after it");
}
