//! Behaviour of the io_uring backend on regular files: opening, creating and
//! sizing, geometry, short transfers, and closing with requests in flight.

#![allow(clippy::unwrap_used)] // a test's unwrap is its assertion

use std::sync::Arc;

use keel_drivers::uring::{UringConfig, UringDevice, UringSetup, FILE_BLOCK_BYTES};
use keel_drivers::{BlockDevice, Completion, DeviceError, DmaPool, IoErrorKind, Op, QueuePair, Request};

fn pool() -> Arc<DmaPool> {
    Arc::new(DmaPool::for_tests(8 << 20))
}

fn created(dir: &tempfile::TempDir, size_bytes: u64) -> UringDevice {
    let mut config = UringConfig::new(dir.path().join("keel.img"));
    config.create_size_bytes = Some(size_bytes);
    UringDevice::open(&config, pool()).expect("creating a uring device")
}

fn wait(qp: &mut dyn QueuePair, count: usize) -> Vec<Completion> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while out.len() < count {
        let want = count - out.len();
        qp.poll(&mut out, want);
        assert!(std::time::Instant::now() < deadline, "completions did not arrive");
    }
    out
}

#[test]
fn opening_a_missing_file_without_a_size_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = UringDevice::open(&UringConfig::new(dir.path().join("absent.img")), pool()).unwrap_err();
    match err {
        DeviceError::Open { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected an open error, got {other}"),
    }
}

#[test]
fn a_size_creates_the_file_with_its_space_reserved() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let device = created(&dir, 16 << 20);
    let meta = std::fs::metadata(dir.path().join("keel.img")).unwrap();
    assert_eq!(meta.len(), 16 << 20);
    // fallocate really allocated: the file is not sparse.
    assert!(meta.blocks() * 512 >= 16 << 20, "only {} bytes allocated", meta.blocks() * 512);
    let info = device.info();
    assert_eq!(info.block_size_bytes, FILE_BLOCK_BYTES);
    assert_eq!(info.capacity_blocks, (16 << 20) / u64::from(FILE_BLOCK_BYTES));
    assert!(info.volatile_write_cache, "file writes are durable only after fdatasync");
    assert!(info.fua);
    assert!(device.is_direct());
    assert!(!device.is_block_device());
}

#[test]
fn a_smaller_file_is_grown_and_a_larger_one_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.img");
    std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
    let grown = created(&dir, 4 << 20);
    assert_eq!(grown.info().capacity_bytes(), 4 << 20);
    drop(grown);
    let kept = created(&dir, 2 << 20);
    assert_eq!(kept.info().capacity_bytes(), 4 << 20, "an existing larger file must not shrink");
    assert_eq!(&std::fs::read(&path).unwrap()[..4], &[7, 7, 7, 7], "growing keeps the data");
}

#[test]
fn an_empty_file_is_refused_as_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.img");
    std::fs::write(&path, b"").unwrap();
    let err = UringDevice::open(&UringConfig::new(&path), pool()).unwrap_err();
    assert!(matches!(err, DeviceError::Invalid { .. }), "got {err}");
}

#[test]
fn every_setup_the_kernel_offers_is_used_with_fixed_buffers() {
    let dir = tempfile::tempdir().unwrap();
    for setup in [UringSetup::DeferTaskrun, UringSetup::CoopTaskrun, UringSetup::Plain] {
        let mut config = UringConfig::new(dir.path().join("keel.img"));
        config.create_size_bytes = Some(1 << 20);
        config.setup = setup;
        let device = UringDevice::open(&config, pool()).unwrap();
        let qp = device.open_uring_queue_pair(8).unwrap();
        // This machine's kernel (6.x) has all three; an older one would fall
        // back, which `Auto` covers.
        assert_eq!(qp.setup(), (setup, true));
    }
}

#[test]
fn a_read_past_a_shrunken_file_fails_instead_of_returning_short() {
    let dir = tempfile::tempdir().unwrap();
    let device = created(&dir, 1 << 20);
    // Someone truncates the file under the device: the last blocks vanish.
    let file = std::fs::OpenOptions::new().write(true).open(dir.path().join("keel.img")).unwrap();
    file.set_len(8192).unwrap();
    let mut qp = device.open_queue_pair(4).unwrap();
    let straddling = device.dma_pool().try_alloc(4 * 4096).unwrap();
    let beyond = device.dma_pool().try_alloc(4096).unwrap();
    qp.submit(Request { tag: 1, op: Op::Read { lba: 1, buf: straddling } }).unwrap();
    qp.submit(Request { tag: 2, op: Op::Read { lba: 100, buf: beyond } }).unwrap();
    for done in wait(qp.as_mut(), 2) {
        let err = done.result.expect_err("a short read must not succeed");
        assert_eq!(err.kind, IoErrorKind::Io { errno: libc::EIO });
        assert!(done.buf.is_some());
    }
}

#[test]
fn a_queue_pair_dropped_with_requests_in_flight_waits_before_freeing_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let device = created(&dir, 8 << 20);
    let pool = Arc::clone(device.dma_pool());
    let mut qp = device.open_queue_pair(64).unwrap();
    for i in 0..64u64 {
        let mut buf = pool.try_alloc(64 << 10).unwrap();
        buf.fill(i as u8);
        let op =
            if i % 2 == 0 { Op::Write { lba: i * 16, buf, fua: i % 4 == 0 } } else { Op::Read { lba: i * 16, buf } };
        qp.submit(Request { tag: i, op }).unwrap();
    }
    qp.submit(Request { tag: 99, op: Op::Flush }).unwrap_err();
    // One poll sends everything to the kernel; then the queue pair goes away.
    let mut out = Vec::new();
    qp.poll(&mut out, 0);
    assert!(qp.in_flight() > 0);
    drop(qp);
    drop(out);
    assert_eq!(pool.allocated_bytes(), 0, "every buffer came back after its request completed");
    // Every write had completed by the time drop returned.
    let image = std::fs::read(dir.path().join("keel.img")).unwrap();
    for i in (0..64usize).step_by(2) {
        let at = i * 16 * 4096;
        assert!(image[at..at + (64 << 10)].iter().all(|&b| b == i as u8), "write {i} had not landed");
    }
}

#[test]
fn a_queue_pair_dropped_before_its_first_poll_frees_its_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let device = created(&dir, 1 << 20);
    let pool = Arc::clone(device.dma_pool());
    let mut qp = device.open_queue_pair(4).unwrap();
    qp.submit(Request { tag: 1, op: Op::Read { lba: 0, buf: pool.try_alloc(4096).unwrap() } }).unwrap();
    drop(qp);
    assert_eq!(pool.allocated_bytes(), 0);
}

#[test]
fn a_queue_pair_works_from_the_thread_it_moved_to() {
    // Rings are enabled on first use, so a queue pair opened on one thread
    // and driven from another (as a reactor's may be) works in every setup.
    let dir = tempfile::tempdir().unwrap();
    let device = created(&dir, 1 << 20);
    let mut qp = device.open_queue_pair(4).unwrap();
    let pool = Arc::clone(device.dma_pool());
    std::thread::spawn(move || {
        qp.submit(Request { tag: 3, op: Op::Read { lba: 0, buf: pool.try_alloc(4096).unwrap() } }).unwrap();
        let done = wait(qp.as_mut(), 1);
        done[0].result.clone().unwrap();
    })
    .join()
    .unwrap();
}
