//! Striped sets (`keel_drivers::aggregate`): the device conformance suite on
//! sets of memory and io_uring members (and through the crash recorder), data
//! placed on the members where the stripe map says, and members that are
//! swapped, missing, blank, foreign or from another set refused at open.

#![allow(clippy::unwrap_used)] // a test's unwrap is its assertion

use std::sync::Arc;

use keel_drivers::aggregate::{LabelPolicy, SetConfig, SetDevice, SetError};
use keel_drivers::conformance::{self, ConformanceOptions};
use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};
use keel_drivers::test_devices::CrashRecorder;
use keel_drivers::uring::{UringConfig, UringDevice};
use keel_drivers::{BlockDevice, DeviceError, DmaPool, Op, Request};

fn member(pool: &Arc<DmaPool>, block_size_bytes: u32, reorder_seed: Option<u64>) -> Arc<MemoryDevice> {
    let config = MemoryDeviceConfig {
        block_size_bytes,
        reorder_seed,
        capacity_bytes: 32 << 20,
        ..MemoryDeviceConfig::default()
    };
    Arc::new(MemoryDevice::new(&config, Arc::clone(pool)))
}

fn members(list: &[&Arc<MemoryDevice>]) -> Vec<Arc<dyn BlockDevice>> {
    list.iter().map(|m| Arc::clone(*m) as Arc<dyn BlockDevice>).collect()
}

fn open(list: &[&Arc<MemoryDevice>], labels: LabelPolicy) -> Result<SetDevice, DeviceError> {
    SetDevice::open(members(list), &SetConfig { labels, ..SetConfig::default() })
}

#[test]
fn a_set_of_memory_members_conforms_in_order_and_reordered() {
    let pool = Arc::new(DmaPool::for_tests(32 << 20));
    for seed in [None, Some(1), Some(2)] {
        let (a, b) = (member(&pool, 4096, seed), member(&pool, 4096, seed.map(|s| s + 10)));
        let set = open(&[&a, &b], LabelPolicy::CreateIfBlank).unwrap();
        assert!(set.created());
        let report = conformance::run(&set, &ConformanceOptions::default());
        println!("{report}");
        report.assert_passed();
    }
}

#[test]
fn a_set_of_three_members_with_512_byte_and_4k_blocks_conforms() {
    let pool = Arc::new(DmaPool::for_tests(32 << 20));
    let (a, b, c) = (member(&pool, 512, None), member(&pool, 4096, None), member(&pool, 512, Some(3)));
    let set = open(&[&a, &b, &c], LabelPolicy::CreateIfBlank).unwrap();
    assert_eq!(set.info().block_size_bytes, 4096);
    let stripe = u64::from(set.label().stripe_bytes);
    assert_eq!(set.info().capacity_bytes(), 3 * (((32 << 20) - 4096) / stripe * stripe));
    conformance::run(&set, &ConformanceOptions::default()).assert_passed();
}

#[test]
fn a_set_of_uring_files_conforms() {
    let pool = Arc::new(DmaPool::for_tests(32 << 20));
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<Arc<dyn BlockDevice>> = (0..2)
        .map(|i| {
            let mut config = UringConfig::new(dir.path().join(format!("m{i}.img")));
            config.create_size_bytes = Some(24 << 20);
            Arc::new(UringDevice::open(&config, Arc::clone(&pool)).unwrap()) as Arc<dyn BlockDevice>
        })
        .collect();
    let set = SetDevice::open(files, &SetConfig::default()).unwrap();
    let report = conformance::run(&set, &ConformanceOptions::default());
    println!("{report}");
    report.assert_passed();
}

#[test]
fn the_crash_recorder_works_over_a_set() {
    let pool = Arc::new(DmaPool::for_tests(32 << 20));
    let (a, b) = (member(&pool, 4096, Some(7)), member(&pool, 4096, None));
    let set = Arc::new(open(&[&a, &b], LabelPolicy::CreateIfBlank).unwrap());
    let recorder = CrashRecorder::new(set, Arc::new(MemoryStore::new()));
    conformance::run(&recorder, &ConformanceOptions::default()).assert_passed();
    assert!(!recorder.log().writes().is_empty());
}

/// Writes `blocks` 4 KiB blocks of `fill(block)` at `lba` and reads them back.
fn write_then_read(set: &SetDevice, lba: u64, blocks: usize, fill: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut qp = set.open_queue_pair(4).unwrap();
    let mut buf = set.dma_pool().try_alloc(blocks * 4096).unwrap();
    for (i, chunk) in buf.chunks_mut(4096).enumerate() {
        chunk.fill(fill(i));
    }
    let mut done = Vec::new();
    qp.submit(Request { tag: 1, op: Op::Write { lba, buf, fua: false } }).unwrap();
    while done.is_empty() {
        qp.poll(&mut done, 8);
    }
    let buf = done.pop().unwrap().buf.unwrap();
    assert_eq!(buf.capacity(), blocks.next_power_of_two() * 4096, "the buffer came back whole");
    qp.submit(Request { tag: 2, op: Op::Read { lba, buf } }).unwrap();
    while done.is_empty() {
        qp.poll(&mut done, 8);
    }
    let c = done.pop().unwrap();
    c.result.unwrap();
    c.buf.unwrap().to_vec()
}

#[test]
fn stripes_land_on_the_members_round_robin_after_their_labels() {
    let pool = Arc::new(DmaPool::for_tests(32 << 20));
    let (a, b) = (member(&pool, 4096, None), member(&pool, 4096, Some(4)));
    let set = open(&[&a, &b], LabelPolicy::CreateIfBlank).unwrap();
    let stripe_blocks = set.label().stripe_bytes as usize / 4096;
    // From the last block of stripe 0 across stripe 1 into stripe 2.
    let blocks = stripe_blocks + 2;
    let back = write_then_read(&set, stripe_blocks as u64 - 1, blocks, |i| i as u8 + 1);
    assert!(back.chunks(4096).enumerate().all(|(i, c)| c.iter().all(|&x| x == i as u8 + 1)));
    let at = |m: &MemoryDevice, offset: u64| {
        let mut byte = [0u8];
        m.store().read(offset, &mut byte);
        byte[0]
    };
    let stripe = u64::from(set.label().stripe_bytes);
    // Block 0 of the set is member a's byte 4096 (after its label).
    assert_eq!(at(&a, 4096 + stripe - 4096), 1, "last block of stripe 0 on member 0");
    assert_eq!(at(&b, 4096), 2, "stripe 1 on member 1, first data block");
    assert_eq!(at(&a, 4096 + stripe), blocks as u8, "stripe 2 on member 0, its second stripe");
    assert_eq!(
        &{
            let mut magic = [0u8; 8];
            b.store().read(0, &mut magic);
            magic
        },
        b"KEELSET\0"
    );
}

#[test]
fn a_set_reopens_with_its_data_and_refuses_swapped_missing_and_foreign_members() {
    let pool = Arc::new(DmaPool::for_tests(32 << 20));
    let (a, b, c) = (member(&pool, 4096, None), member(&pool, 4096, None), member(&pool, 4096, None));
    let set = open(&[&a, &b], LabelPolicy::CreateIfBlank).unwrap();
    let id = set.label().set_id;
    write_then_read(&set, 10, 64, |i| i as u8);
    drop(set);

    let again = open(&[&a, &b], LabelPolicy::Existing).unwrap();
    assert_eq!((again.label().set_id, again.created()), (id, false));
    let mut qp = again.open_queue_pair(1).unwrap();
    let buf = again.dma_pool().try_alloc(64 * 4096).unwrap();
    qp.submit(Request { tag: 0, op: Op::Read { lba: 10, buf } }).unwrap();
    let mut done = Vec::new();
    while done.is_empty() {
        qp.poll(&mut done, 1);
    }
    let back = done.pop().unwrap().buf.unwrap();
    assert!(back.chunks(4096).enumerate().all(|(i, c)| c.iter().all(|&x| x == i as u8)), "data survives a reopen");
    drop((qp, again));

    let refusal = |list: &[&Arc<MemoryDevice>], policy| match open(list, policy) {
        Err(DeviceError::Set(e)) => e,
        other => panic!("expected a set error, got {other:?}"),
    };
    let e = refusal(&[&b, &a], LabelPolicy::CreateIfBlank);
    assert!(matches!(e, SetError::WrongPosition { position: 0, index: 1, .. }), "{e}");
    let e = refusal(&[&a], LabelPolicy::Existing);
    assert!(matches!(&e, SetError::Missing { missing, .. } if missing == &vec![1]), "{e}");
    let e = refusal(&[&a, &c], LabelPolicy::CreateIfBlank);
    assert!(matches!(e, SetError::Blank { position: 1, .. }), "a blank member is never labelled into a set: {e}");
    assert!(e.to_string().contains("position 1"), "{e}");

    // c and a fresh d make another set; c is then foreign to a's set.
    let d = member(&pool, 4096, None);
    open(&[&c, &d], LabelPolicy::CreateIfBlank).unwrap();
    let e = refusal(&[&a, &d], LabelPolicy::Existing);
    assert!(matches!(e, SetError::OtherSet { position: 1, .. }), "{e}");

    // Something that is not a label (a volume of its own) is never overwritten...
    let e2 = member(&pool, 4096, None);
    e2.store().write(0, b"KEEL-VOLUME superblock");
    let e = refusal(&[&e2, &d], LabelPolicy::CreateIfBlank);
    assert!(matches!(e, SetError::NotAMember { position: 0, .. }), "{e}");
    // ...unless relabelling is asked for (mkfs --force).
    let fresh = open(&[&e2, &d], LabelPolicy::Relabel).unwrap();
    assert!(fresh.created());
    let existing_blank = open(&[&member(&pool, 4096, None), &member(&pool, 4096, None)], LabelPolicy::Existing);
    assert!(existing_blank.unwrap_err().to_string().contains("blank"));
}

#[test]
fn members_on_another_dma_pool_are_refused() {
    let a = member(&Arc::new(DmaPool::for_tests(4 << 20)), 4096, None);
    let b = member(&Arc::new(DmaPool::for_tests(4 << 20)), 4096, None);
    let e = open(&[&a, &b], LabelPolicy::CreateIfBlank).unwrap_err();
    assert!(e.to_string().contains("DMA pool"), "{e}");
}
