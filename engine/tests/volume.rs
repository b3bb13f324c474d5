//! mkfs, open and close of a volume on a memory device, including damaged
//! superblock copies.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};
use keel_drivers::{BlockDevice, DmaPool};
use keel_engine::layout::{LayoutParams, PAGE_BYTES};
use keel_engine::superblock::{SuperblockError, FLAG_CLEAN};
use keel_engine::volume::{self, MkfsParams, SlotContents, VolumeError};
use keel_reactor::block_on;
use keel_reactor::io::DeviceId;

const DEV: DeviceId = DeviceId(0);

fn device(store: &Arc<MemoryStore>, capacity_bytes: u64, block_size_bytes: u32) -> Vec<Arc<dyn BlockDevice>> {
    let config = MemoryDeviceConfig { capacity_bytes, block_size_bytes, ..MemoryDeviceConfig::default() };
    let pool = Arc::new(DmaPool::for_tests(16 << 20));
    vec![Arc::new(MemoryDevice::with_store(&config, pool, Arc::clone(store)))]
}

fn params(shard_count: u32, force: bool) -> MkfsParams {
    MkfsParams { layout: LayoutParams { shard_count, journal_bytes: None }, force, zero_journal: true }
}

fn flip_byte(store: &MemoryStore, offset: u64) {
    let mut byte = [0u8];
    store.read(offset, &mut byte);
    store.write(offset, &[byte[0] ^ 0x40]);
}

#[test]
fn mkfs_then_open_and_close_round_trip() {
    let store = Arc::new(MemoryStore::new());
    let devices = device(&store, 1 << 30, 4096);
    let (made, opened, closed, reopened) = block_on(&devices, async {
        let made = volume::mkfs(DEV, &params(4, false), |_, _| {}).await.unwrap();
        let opened = volume::open(DEV).await.unwrap();
        let closed = volume::close(DEV, &opened).await.unwrap();
        let reopened = volume::open(DEV).await.unwrap();
        (made, opened, closed, reopened)
    })
    .unwrap();
    assert_eq!(made.generation, 1);
    assert_eq!(made.layout.shard_count, 4);
    assert_eq!(made.flags & FLAG_CLEAN, FLAG_CLEAN);
    assert_eq!((opened.generation, opened.boot_counter, opened.journal_epoch), (2, 1, 1));
    assert_eq!(opened.flags & FLAG_CLEAN, 0, "an open volume is not clean");
    assert_eq!((opened.volume_uuid, opened.layout), (made.volume_uuid, made.layout));
    assert_eq!((closed.generation, closed.flags & FLAG_CLEAN), (3, FLAG_CLEAN));
    assert_eq!((reopened.generation, reopened.boot_counter, reopened.journal_epoch), (4, 2, 2));
}

#[test]
fn a_volume_on_512_byte_blocks_opens() {
    let store = Arc::new(MemoryStore::new());
    let devices = device(&store, 256 << 20, 512);
    let (made, opened) = block_on(&devices, async {
        let made = volume::mkfs(DEV, &params(1, false), |_, _| {}).await.unwrap();
        (made, volume::open(DEV).await.unwrap())
    })
    .unwrap();
    assert_eq!(made.device_block_bytes, 512);
    assert_eq!(opened.volume_uuid, made.volume_uuid);
}

#[test]
fn a_corrupted_copy_is_ignored_and_rewritten_by_open() {
    let store = Arc::new(MemoryStore::new());
    let devices = device(&store, 1 << 30, 4096);
    let made = block_on(&devices, async { volume::mkfs(DEV, &params(2, false), |_, _| {}).await.unwrap() }).unwrap();
    // Generation 1 lives in page 1: damage it, leaving generation 0 in page 0.
    flip_byte(&store, PAGE_BYTES as u64 + 100);
    let (pair, opened, after) = block_on(&devices, async {
        let pair = volume::read_superblocks(DEV).await.unwrap();
        let opened = volume::open(DEV).await.unwrap();
        (pair, opened, volume::read_superblocks(DEV).await.unwrap())
    })
    .unwrap();
    assert!(matches!(pair.slots[0], SlotContents::Valid(ref sb) if sb.generation == 0));
    assert_eq!(pair.slots[1], SlotContents::Invalid(SuperblockError::BadChecksum));
    assert_eq!(opened.generation, 1, "the next generation after the surviving copy 0");
    assert_eq!(opened.volume_uuid, made.volume_uuid);
    assert!(matches!(after.slots[1], SlotContents::Valid(ref sb) if sb.generation == 1), "open repaired page 1");
}

#[test]
fn both_copies_corrupted_are_refused_with_both_reasons() {
    let store = Arc::new(MemoryStore::new());
    let devices = device(&store, 1 << 30, 4096);
    block_on(&devices, async { volume::mkfs(DEV, &params(2, false), |_, _| {}).await.unwrap() }).unwrap();
    flip_byte(&store, 200);
    store.write(PAGE_BYTES as u64, b"NOTKEEL!");
    let err = block_on(&devices, async { volume::open(DEV).await.unwrap_err() }).unwrap();
    match &err {
        VolumeError::NoValidSuperblock { first, second, .. } => {
            assert_eq!(*first, SuperblockError::BadChecksum);
            assert_eq!(*second, SuperblockError::BadMagic);
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("no valid Keel superblock") && message.contains("copy 0") && message.contains("copy 1"));
    assert!(message.contains("checksum mismatch") && message.contains("bad magic"), "{message}");
}

#[test]
fn a_blank_device_is_not_a_volume() {
    let store = Arc::new(MemoryStore::new());
    let devices = device(&store, 1 << 30, 4096);
    let (pair, err) = block_on(&devices, async {
        (volume::read_superblocks(DEV).await.unwrap(), volume::open(DEV).await.unwrap_err())
    })
    .unwrap();
    assert!(pair.is_blank());
    assert!(matches!(err, VolumeError::Blank { .. }), "{err:?}");
}

#[test]
fn mkfs_refuses_an_existing_volume_or_foreign_data_without_force() {
    let store = Arc::new(MemoryStore::new());
    let devices = device(&store, 1 << 30, 4096);
    let (first, refused, forced) = block_on(&devices, async {
        let first = volume::mkfs(DEV, &params(2, false), |_, _| {}).await.unwrap();
        let refused = volume::mkfs(DEV, &params(2, false), |_, _| {}).await.unwrap_err();
        let forced = volume::mkfs(DEV, &params(3, true), |_, _| {}).await.unwrap();
        (first, refused, forced)
    })
    .unwrap();
    assert!(matches!(refused, VolumeError::Exists { .. }), "{refused:?}");
    assert!(refused.to_string().contains("--force"));
    assert_ne!(forced.volume_uuid, first.volume_uuid);
    assert_eq!(forced.layout.shard_count, 3);

    let foreign = Arc::new(MemoryStore::new());
    foreign.write(1024, b"\x53\xef some other file system");
    let devices = device(&foreign, 1 << 30, 4096);
    let err = block_on(&devices, async { volume::mkfs(DEV, &params(1, false), |_, _| {}).await.unwrap_err() }).unwrap();
    assert!(matches!(err, VolumeError::Foreign { .. }), "{err:?}");
}

#[test]
fn mkfs_zeroes_the_journal_and_reports_progress() {
    let store = Arc::new(MemoryStore::new());
    let devices = device(&store, 1 << 30, 4096);
    // Leftovers of an earlier life in the journal ring.
    store.write(3 * PAGE_BYTES as u64, &[0xAB; 8192]);
    store.write(20 << 20, &[0xCD; 4096]);
    let last = Rc::new(Cell::new((0u64, 0u64)));
    let seen = Rc::clone(&last);
    let made = block_on(&devices, async move {
        volume::mkfs(DEV, &params(1, true), move |done, total| {
            assert!(done >= seen.get().0 && done <= total, "progress goes forward within the total");
            seen.set((done, total));
        })
        .await
        .unwrap()
    })
    .unwrap();
    let journal_bytes = made.layout.journal_pages * PAGE_BYTES as u64;
    assert_eq!(last.get(), (journal_bytes, journal_bytes));
    let mut journal = vec![1u8; journal_bytes as usize];
    store.read(made.layout.journal_start_page * PAGE_BYTES as u64, &mut journal);
    assert!(journal.iter().all(|&b| b == 0), "the journal ring is zero after mkfs");
}

#[test]
fn a_volume_on_a_shrunken_device_is_refused() {
    let store = Arc::new(MemoryStore::new());
    block_on(&device(&store, 1 << 30, 4096), async { volume::mkfs(DEV, &params(1, false), |_, _| {}).await.unwrap() })
        .unwrap();
    let err = block_on(&device(&store, 512 << 20, 4096), async { volume::open(DEV).await.unwrap_err() }).unwrap();
    assert!(matches!(err, VolumeError::DeviceTooSmall { .. }), "{err:?}");
}

#[test]
fn uuids_print_in_the_usual_groups() {
    let uuid = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    assert_eq!(volume::format_uuid(&uuid), "12345678-9abc-4def-8123-456789abcdef");
}

/// Regression: a superblock write the device drops (or sends elsewhere)
/// used to go unnoticed until the next open fell back to the older copy.
/// The read-back after the flush reports it, and the previous copy stays.
#[test]
fn a_lost_or_misdirected_superblock_write_is_caught_by_its_read_back() {
    use keel_drivers::test_devices::{Fault, FaultInjector, FaultRule, Misdirect};
    for fault in [Fault::Lose, Fault::Misdirect(Misdirect::Offset(8)), Fault::Tear { sectors: 1 }] {
        let store = Arc::new(MemoryStore::new());
        let made =
            block_on(&device(&store, 1 << 30, 4096), async { volume::mkfs(DEV, &params(1, false), |_, _| {}).await })
                .unwrap()
                .unwrap();
        let inner = device(&store, 1 << 30, 4096).remove(0);
        let injector = Arc::new(FaultInjector::new(inner));
        // Open writes generation 2, to page 0.
        injector.add(FaultRule::writes(0..1, fault).nth(1)).unwrap();
        let err = block_on(&[Arc::clone(&injector) as Arc<dyn BlockDevice>], async { volume::open(DEV).await })
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, VolumeError::ReadBack { generation: 2, .. }), "{fault}: {err:?}");
        assert!(err.to_string().contains("read back"), "{err}");
        let pair =
            block_on(&device(&store, 1 << 30, 4096), async { volume::read_superblocks(DEV).await }).unwrap().unwrap();
        assert_eq!(pair.newest().map(|(_, sb)| sb.generation), Some(made.generation), "{fault}: generation 1 in force");
    }
}
