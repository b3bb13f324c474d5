//! The device conformance suite, run against every backend this machine has:
//! memory (in order and reordered), io_uring on a temporary file in each
//! setup, without fixed buffers, and with a hugepage-backed DMA pool.

#![allow(clippy::unwrap_used)] // a test's unwrap is its assertion

use std::sync::Arc;

use keel_drivers::conformance::{self, ConformanceOptions};
use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig};
use keel_drivers::uring::{UringConfig, UringDevice, UringSetup};
use keel_drivers::{DmaPool, DmaPoolConfig, HugepagePolicy};

fn memory(reorder_seed: Option<u64>) -> MemoryDevice {
    let config = MemoryDeviceConfig { reorder_seed, capacity_bytes: 64 << 20, ..MemoryDeviceConfig::default() };
    MemoryDevice::new(&config, Arc::new(DmaPool::for_tests(16 << 20)))
}

fn uring_on_temp_file(
    config: impl FnOnce(UringConfig) -> UringConfig,
    pool: DmaPool,
) -> (tempfile::TempDir, UringDevice) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut base = UringConfig::new(dir.path().join("keel.img"));
    base.create_size_bytes = Some(32 << 20);
    let device = UringDevice::open(&config(base), Arc::new(pool)).expect("opening a uring device on a temp file");
    (dir, device)
}

#[test]
fn the_memory_device_conforms() {
    conformance::run(&memory(None), &ConformanceOptions::default()).assert_passed();
}

#[test]
fn the_memory_device_conforms_with_completions_reordered() {
    for seed in [1, 2, 3] {
        conformance::run(&memory(Some(seed)), &ConformanceOptions::default()).assert_passed();
    }
}

#[test]
fn the_uring_device_conforms_on_a_file_in_every_setup() {
    for setup in [UringSetup::Auto, UringSetup::DeferTaskrun, UringSetup::CoopTaskrun, UringSetup::Plain] {
        let (_dir, device) = uring_on_temp_file(|c| UringConfig { setup, ..c }, DmaPool::for_tests(16 << 20));
        let report = conformance::run(&device, &ConformanceOptions::default());
        println!("setup {setup}: {report}");
        report.assert_passed();
    }
}

#[test]
fn the_uring_device_conforms_without_fixed_buffers() {
    let (_dir, device) =
        uring_on_temp_file(|c| UringConfig { fixed_buffers: false, ..c }, DmaPool::for_tests(16 << 20));
    conformance::run(&device, &ConformanceOptions::default()).assert_passed();
}

#[test]
fn the_uring_device_conforms_at_every_submission_burst_size() {
    // 0: once per poll; 1: every request at once; others: mid-turn bursts,
    // including one larger than the queue depth (never reached).
    for submit_batch_max in [0, 1, 2, 4, 8, 4096] {
        let (_dir, device) =
            uring_on_temp_file(|c| UringConfig { submit_batch_max, ..c }, DmaPool::for_tests(16 << 20));
        let report = conformance::run(&device, &ConformanceOptions::default());
        println!("submit_batch_max {submit_batch_max}: {report}");
        report.assert_passed();
    }
}

#[test]
fn the_uring_device_conforms_at_every_write_burst_size() {
    // Writes entering the kernel on their own limit, with and without the
    // limit for all requests beside it.
    for (submit_batch_max, submit_write_batch_max) in [(0, 1), (0, 2), (4, 2), (2, 4), (4, 0), (4096, 3)] {
        let (_dir, device) = uring_on_temp_file(
            |c| UringConfig { submit_batch_max, submit_write_batch_max, ..c },
            DmaPool::for_tests(16 << 20),
        );
        let report = conformance::run(&device, &ConformanceOptions::default());
        println!("submit_batch_max {submit_batch_max}, submit_write_batch_max {submit_write_batch_max}: {report}");
        report.assert_passed();
    }
}

#[test]
fn the_uring_device_conforms_at_queue_depth_one_and_at_256() {
    for queue_depth in [1, 256] {
        let (_dir, device) = uring_on_temp_file(|c| c, DmaPool::for_tests(16 << 20));
        let options = ConformanceOptions { queue_depth, ..ConformanceOptions::default() };
        conformance::run(&device, &options).assert_passed();
    }
}

/// Needs 2 MiB hugepages reserved (scripts/test-all reserves them). Fails,
/// rather than skips, when they are not: a pool that silently fell back to
/// ordinary pages would prove nothing about hugepages.
#[test]
fn the_uring_device_conforms_with_a_hugepage_dma_pool() {
    let config = DmaPoolConfig { size_bytes: 8 << 20, hugepages: HugepagePolicy::Require };
    let pool = DmaPool::new(&config).unwrap_or_else(|e| {
        panic!("{e}\nreserve hugepages first (scripts/test-all does: echo 16 > /proc/sys/vm/nr_hugepages)")
    });
    assert!(pool.is_hugepage_backed());
    let (_dir, device) = uring_on_temp_file(|c| c, pool);
    conformance::run(&device, &ConformanceOptions::default()).assert_passed();
}
