//! Helpers shared by the journal's integration tests.
#![allow(dead_code)]

pub mod txn;

use std::sync::Arc;

use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};
use keel_drivers::{BlockDevice, DmaPool};
use keel_journal::{JournalConfig, JournalIdentity, JournalRegion, Lsn};
use keel_reactor::io::DeviceId;

pub const DEV: DeviceId = DeviceId(0);
pub const UUID: [u8; 16] = *b"keel-journal-tst";

/// A small ring so that tests wrap it and fill it quickly.
pub fn region(page_count: u64) -> JournalRegion {
    JournalRegion { device: DEV, first_page: 2, page_count }
}

pub fn identity(epoch: u64) -> JournalIdentity {
    JournalIdentity { volume_uuid: UUID, epoch }
}

pub fn small_config() -> JournalConfig {
    JournalConfig {
        record_payload_bytes_max: 8 << 10,
        batch_bytes_max: 32 << 10,
        writes_in_flight_max: 4,
        batch_delay_us: 200,
        ..JournalConfig::default()
    }
}

pub fn memory_device(store: Arc<MemoryStore>, reorder_seed: Option<u64>) -> Arc<dyn BlockDevice> {
    memory_device_with_transfer(store, reorder_seed, MemoryDeviceConfig::default().max_transfer_bytes)
}

/// A memory device whose largest transfer is `max_transfer_bytes`: the
/// journal's batch pieces are that size.
pub fn memory_device_with_transfer(
    store: Arc<MemoryStore>,
    reorder_seed: Option<u64>,
    max_transfer_bytes: u32,
) -> Arc<dyn BlockDevice> {
    let pool = Arc::new(DmaPool::for_tests(16 << 20));
    let config =
        MemoryDeviceConfig { capacity_bytes: 64 << 20, reorder_seed, max_transfer_bytes, ..Default::default() };
    Arc::new(MemoryDevice::with_store(&config, pool, store))
}

/// A payload that says which LSN-independent identity it has, so recovery
/// can be checked byte for byte.
pub fn payload(task: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(16));
    v.extend_from_slice(&task.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    let mut x = task.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq;
    while v.len() < len {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        v.push((x >> 56) as u8);
    }
    v.truncate(len.max(16));
    v
}

/// Replays `region` and returns the records in LSN order.
pub async fn replay(
    region: JournalRegion,
    config: &JournalConfig,
    epoch: u64,
    head: (Lsn, u64),
) -> Result<(Vec<(Lsn, Vec<u8>)>, keel_journal::RecoveryOutcome), keel_journal::JournalError> {
    let mut records = Vec::new();
    let outcome = keel_journal::recover(region, config, identity(epoch), head.0, head.1, |lsn, p| {
        records.push((lsn, p.to_vec()));
    })
    .await?;
    Ok((records, outcome))
}

/// `block_on` that fails the test when the future panics (a panic inside a
/// reactor task would otherwise leave `block_on` waiting forever).
pub fn run<F: std::future::Future + 'static>(devices: &[Arc<dyn BlockDevice>], future: F) -> F::Output
where
    F::Output: 'static,
{
    let mut future = Box::pin(future);
    let caught = std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    });
    match keel_reactor::block_on(devices, caught).expect("starting the test reactor") {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
