//! The crash recorder: for small scripted runs, the set of post-crash images
//! at each crash point is exactly the set worked out by hand from the model in
//! `test_devices` (durable content fixed; every other write present, absent or
//! torn per 512-byte sector).

// In a test, a failed unwrap is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use keel_drivers::memory::MemoryStore;
use keel_drivers::test_devices::{
    CrashLog, CrashPoint, CrashRecorder, Event, Fault, FaultInjector, FaultRule, ImageChoice, RecorderConfig,
};
use keel_drivers::{BlockDevice, IoErrorKind};
use support::{filled, fills, memory, Driver};

/// The fill bytes of sectors `0..sectors` in every image at `point`, which
/// must be enumerable; asserts no image is listed twice.
fn image_set(log: &CrashLog, point: CrashPoint, sectors: u64) -> BTreeSet<Vec<u8>> {
    let state = log.state_at(point);
    let images: Vec<Vec<u8>> = state.all_images().map(|image| fills(&image.to_store(), sectors)).collect();
    let set: BTreeSet<Vec<u8>> = images.iter().cloned().collect();
    assert_eq!(set.len(), images.len(), "{point}: the same image was listed twice");
    assert_eq!(state.image_count(), images.len() as u128);
    set
}

fn set(images: &[&[u8]]) -> BTreeSet<Vec<u8>> {
    images.iter().map(|i| i.to_vec()).collect()
}

fn recorder(block_size_bytes: u32, volatile_write_cache: bool) -> Arc<CrashRecorder> {
    Arc::new(CrashRecorder::over_memory(memory(block_size_bytes, volatile_write_cache)))
}

#[test]
fn write_flush_write_keeps_the_flushed_write_and_lets_the_later_one_come_or_go() {
    let rec = recorder(512, true);
    let mut io = Driver::new(&*rec);
    io.write(0, &filled(1, 0xA1), false).unwrap(); // events 0, 1
    io.flush().unwrap(); // events 2, 3
    io.write(1, &filled(1, 0xB2), false).unwrap(); // events 4, 5
    let log = rec.log();
    assert_eq!(log.end(), CrashPoint(6));
    assert_eq!(log.flush_points(), vec![CrashPoint(4)]);

    let expected: [(u64, BTreeSet<Vec<u8>>); 7] = [
        (0, set(&[&[0, 0]])),
        (1, set(&[&[0, 0], &[0xA1, 0]])),
        (2, set(&[&[0, 0], &[0xA1, 0]])),
        // Submitted after the write completed, but not completed yet: nothing is durable.
        (3, set(&[&[0, 0], &[0xA1, 0]])),
        (4, set(&[&[0xA1, 0]])),
        (5, set(&[&[0xA1, 0], &[0xA1, 0xB2]])),
        (6, set(&[&[0xA1, 0], &[0xA1, 0xB2]])),
    ];
    for (point, images) in expected {
        assert_eq!(image_set(&log, CrashPoint(point), 2), images, "at crash point {point}");
    }
}

#[test]
fn a_write_completed_after_the_flush_was_submitted_is_not_covered_by_it() {
    let rec = recorder(512, true);
    let mut io = Driver::new(&*rec);
    // Both go out in one poll: the flush is submitted while the write is in flight.
    let write = io.submit_write(0, &filled(1, 0xA1), false);
    let flush = io.submit_flush();
    io.wait(write).result.unwrap();
    io.wait(flush).result.unwrap();
    let log = rec.log();
    assert_eq!(image_set(&log, log.end(), 1), set(&[&[0], &[0xA1]]));
    assert!(!log.state_at(log.end()).is_durable(0));

    // A flush submitted after the completion covers it.
    io.flush().unwrap();
    let log = rec.log();
    assert_eq!(image_set(&log, log.end(), 1), set(&[&[0xA1]]));
    assert!(log.state_at(log.end()).is_durable(0));
}

#[test]
fn a_fua_write_is_durable_when_it_completes_and_not_before() {
    let rec = recorder(512, true);
    let mut io = Driver::new(&*rec);
    io.write(0, &filled(1, 0xF0), true).unwrap(); // events 0, 1
    io.write(1, &filled(1, 0xB2), false).unwrap(); // events 2, 3
    let log = rec.log();
    assert_eq!(image_set(&log, CrashPoint(1), 2), set(&[&[0, 0], &[0xF0, 0]]));
    assert_eq!(image_set(&log, CrashPoint(2), 2), set(&[&[0xF0, 0]]));
    assert_eq!(image_set(&log, log.end(), 2), set(&[&[0xF0, 0], &[0xF0, 0xB2]]));
}

#[test]
fn overlapping_unflushed_writes_give_each_sector_any_of_their_contents() {
    let rec = recorder(512, true);
    let mut io = Driver::new(&*rec);
    io.write(0, &filled(2, 0xAA), false).unwrap(); // sectors 0, 1
    io.write(1, &filled(2, 0xBB), false).unwrap(); // sectors 1, 2
    let log = rec.log();
    // Sector 0: initial or A; sector 1: initial, A or B; sector 2: initial or B.
    let mut expected = BTreeSet::new();
    for s0 in [0, 0xAA] {
        for s1 in [0, 0xAA, 0xBB] {
            for s2 in [0, 0xBB] {
                expected.insert(vec![s0, s1, s2]);
            }
        }
    }
    assert_eq!(expected.len(), 12);
    assert_eq!(image_set(&log, log.end(), 3), expected);
}

#[test]
fn a_torn_4k_write_has_256_images_one_per_subset_of_its_sectors() {
    let rec = recorder(4096, true);
    let mut io = Driver::new(&*rec);
    let data: Vec<u8> = (0..8u8).flat_map(|i| filled(1, 0x10 + i)).collect();
    io.write(3, &data, false).unwrap();
    let log = rec.log();
    let state = log.state_at(log.end());
    assert_eq!(state.image_count(), 256);
    assert_eq!(state.choices().len(), 8);

    let first_sector = 3 * 8;
    let mut seen = BTreeSet::new();
    for image in state.all_images() {
        let store = image.to_store();
        let sectors: Vec<u8> = (0..8).map(|i| support::sector_fill(&store, first_sector + i)).collect();
        for (i, &fill) in sectors.iter().enumerate() {
            assert!(fill == 0 || fill == 0x10 + i as u8, "sector {i} holds {fill:#x}");
        }
        // Nothing outside the write changes.
        assert_eq!(support::sector_fill(&store, first_sector - 1), 0);
        assert_eq!(support::sector_fill(&store, first_sector + 8), 0);
        seen.insert(sectors);
    }
    assert_eq!(seen.len(), 256, "every subset of the 8 sectors appears exactly once");
}

#[test]
fn on_a_device_without_volatile_cache_every_completed_write_is_durable() {
    let rec = recorder(512, false);
    let mut io = Driver::new(&*rec);
    io.write(0, &filled(1, 0xA1), false).unwrap();
    let _in_flight = io.submit_write(1, &filled(1, 0xB2), false);
    let log = rec.log();
    assert_eq!(image_set(&log, log.end(), 2), set(&[&[0xA1, 0], &[0xA1, 0xB2]]));
}

#[test]
fn a_stale_write_overwritten_by_a_later_durable_write_cannot_reappear() {
    let rec = recorder(512, true);
    let mut io = Driver::new(&*rec);
    io.write(0, &filled(1, 0xA1), false).unwrap();
    io.write(0, &filled(1, 0xF2), true).unwrap();
    let log = rec.log();
    assert_eq!(image_set(&log, log.end(), 1), set(&[&[0xF2]]));
}

#[test]
fn overlapping_writes_in_flight_together_may_land_in_either_order() {
    let rec = recorder(512, true);
    let mut io = Driver::new(&*rec);
    let a = io.submit_write(0, &filled(1, 0xA1), false);
    let b = io.submit_write(0, &filled(1, 0xF2), true);
    io.wait(a).result.unwrap();
    io.wait(b).result.unwrap();
    io.flush().unwrap();
    let log = rec.log();
    // Both durable, neither ordered before the other: either may be last.
    assert_eq!(image_set(&log, log.end(), 1), set(&[&[0xA1], &[0xF2]]));
}

#[test]
fn a_failed_flush_makes_nothing_durable() {
    let injector = Arc::new(FaultInjector::new(memory(512, true)));
    let rule = injector.add(FaultRule::flushes(Fault::eio()).first(1)).unwrap();
    let rec = Arc::new(CrashRecorder::new(injector.clone(), Arc::new(MemoryStore::new())));
    let mut io = Driver::new(&*rec);
    io.write(0, &filled(1, 0xA1), false).unwrap();
    assert!(io.flush().is_err());
    assert_eq!(injector.fired(rule), 1);
    let log = rec.log();
    assert!(matches!(log.events().last(), Some(Event::FlushCompleted { ok: false, .. })));
    assert_eq!(image_set(&log, log.end(), 1), set(&[&[0], &[0xA1]]));
    io.flush().unwrap();
    let log = rec.log();
    assert_eq!(image_set(&log, log.end(), 1), set(&[&[0xA1]]));
}

#[test]
fn marks_sit_in_the_event_sequence_where_the_harness_put_them() {
    let rec = recorder(512, true);
    let marker = rec.marker();
    let mut io = Driver::new(&*rec);
    io.write(0, &filled(1, 0xA1), false).unwrap();
    io.flush().unwrap();
    let acked = marker.mark("txn 1 durable");
    io.write(1, &filled(1, 0xB2), false).unwrap();
    let log = rec.log();
    assert_eq!(acked, CrashPoint(5));
    assert_eq!(log.mark_point("txn 1 durable"), Some(acked));
    assert_eq!(log.marks_before(acked), vec!["txn 1 durable"]);
    assert!(log.marks_before(CrashPoint(4)).is_empty());
    for point in log.every_point().into_iter().filter(|&p| p >= acked) {
        for image in log.state_at(point).all_images() {
            assert_eq!(support::sector_fill(&image.to_store(), 0), 0xA1, "{}", image.id());
        }
    }
}

#[test]
fn events_of_all_queue_pairs_share_one_sequence() {
    let rec = recorder(512, true);
    let mut a = Driver::new(&*rec);
    let mut b = Driver::new(&*rec);
    a.write(0, &filled(1, 0xA1), false).unwrap();
    b.write(1, &filled(1, 0xB2), false).unwrap();
    b.flush().unwrap(); // Covers the write completed on queue pair a too.
    let log = rec.log();
    let writes = log.writes();
    assert_eq!((writes[0].queue, writes[1].queue), (0, 1));
    assert_eq!((writes[0].submit_seq, writes[0].complete_seq), (0, Some(1)));
    assert_eq!((writes[1].submit_seq, writes[1].complete_seq), (2, Some(3)));
    assert_eq!(log.flushes()[0].submit_seq, 4);
    assert_eq!(image_set(&log, log.end(), 2), set(&[&[0xA1, 0xB2]]));
}

#[test]
fn images_beyond_the_budget_are_sampled_and_rebuilt_from_their_ids() {
    let rec = recorder(4096, true);
    let mut io = Driver::new(&*rec);
    for lba in 0..4u64 {
        io.write(lba, &filled(8, 0x40 + lba as u8), false).unwrap();
    }
    let log = rec.log();
    let state = log.state_at(log.end());
    assert_eq!(state.image_count(), 1 << 32);
    let images = state.images(100);
    assert!(!images.is_exhaustive());
    let images: Vec<_> = images.collect();
    assert_eq!(images.len(), 100);
    assert_eq!(images[0].id().choice, ImageChoice::Index(0));
    assert_eq!(images[1].id().choice, ImageChoice::Newest);
    assert!(fills(&images[0].to_store(), 32).iter().all(|&f| f == 0), "index 0 is the durable-only image");
    let newest = fills(&images[1].to_store(), 32);
    assert!(newest.iter().enumerate().all(|(s, &f)| f == 0x40 + (s / 8) as u8), "newest has every write");

    let ids: BTreeSet<String> = images.iter().map(|i| i.id().to_string()).collect();
    assert_eq!(ids.len(), 100, "sample ids are distinct");
    let fresh = log.clone();
    for image in &images {
        let again = fresh.image(image.id());
        assert_eq!(fills(&again.to_store(), 32), fills(&image.to_store(), 32), "{}", image.id());
    }
}

#[test]
fn an_image_is_a_memory_device_recovery_can_read() {
    let rec = recorder(4096, true);
    let mut io = Driver::new(&*rec);
    io.write(2, &filled(8, 0x5A), false).unwrap();
    io.flush().unwrap();
    io.write(3, &filled(8, 0x6B), false).unwrap();
    let log = rec.log();
    let image = log.state_at(log.end()).image(ImageChoice::Newest);
    let device = image.to_device(Arc::clone(rec.dma_pool()));
    assert_eq!(device.info().block_size_bytes, 4096);
    assert_eq!(device.info().capacity_blocks, rec.info().capacity_blocks);
    let mut reader = Driver::new(&device);
    assert_eq!(reader.read(2, 8192).unwrap(), [filled(8, 0x5A), filled(8, 0x6B)].concat());
}

#[test]
fn the_initial_image_is_the_wrapped_device_contents_at_wrap_time() {
    let device = memory(512, true);
    Driver::new(&*device).write(5, &filled(1, 0x77), false).unwrap();
    let rec = Arc::new(CrashRecorder::over_memory(device));
    let mut io = Driver::new(&*rec);
    io.write(6, &filled(1, 0x88), false).unwrap();
    let log = rec.log();
    let images: BTreeSet<Vec<u8>> = log.state_at(log.end()).all_images().map(|i| fills(&i.to_store(), 8)).collect();
    assert_eq!(images, set(&[&[0, 0, 0, 0, 0, 0x77, 0, 0], &[0, 0, 0, 0, 0, 0x77, 0x88, 0]]));
}

#[test]
fn states_visited_backwards_match_states_visited_forwards() {
    let rec = recorder(512, true);
    let mut io = Driver::new(&*rec);
    for round in 0..6u8 {
        let w = io.submit_write(u64::from(round % 3), &filled(2, 0x10 + round), round % 2 == 0);
        if round % 3 == 0 {
            io.submit_flush();
        }
        io.wait(w);
        io.poll();
    }
    let log = rec.log();
    let forwards: Vec<_> =
        log.states(log.every_point()).map(|s| (s.image_count(), s.choices().to_vec(), fills(s.base(), 8))).collect();
    let backwards_log = log.clone();
    for (i, point) in log.every_point().into_iter().enumerate().rev() {
        let s = backwards_log.state_at(point);
        assert_eq!((s.image_count(), s.choices().to_vec(), fills(s.base(), 8)), forwards[i], "{point}");
    }
}

#[test]
fn a_full_log_refuses_further_writes_and_says_so() {
    let config = RecorderConfig { log_bytes_max: 1024, ..Default::default() };
    let rec = CrashRecorder::with_config(memory(512, true), Arc::new(MemoryStore::new()), config);
    let mut io = Driver::new(&rec);
    io.write(0, &filled(2, 1), false).unwrap();
    let error = io.write(2, &filled(1, 2), false).unwrap_err();
    assert!(matches!(error.kind, IoErrorKind::Rejected { .. }));
    assert!(rec.log().overflowed());
}

#[test]
fn the_crash_recorder_keeps_the_device_contract_over_memory_and_uring() {
    use keel_drivers::conformance::{self, ConformanceOptions};
    use keel_drivers::uring::{UringConfig, UringDevice};

    let config = keel_drivers::memory::MemoryDeviceConfig {
        reorder_seed: Some(5),
        capacity_bytes: 64 << 20,
        ..Default::default()
    };
    let reordered = Arc::new(keel_drivers::memory::MemoryDevice::new(
        &config,
        Arc::new(keel_drivers::DmaPool::for_tests(16 << 20)),
    ));
    conformance::run(&CrashRecorder::over_memory(reordered), &ConformanceOptions::default()).assert_passed();

    let dir = tempfile::tempdir().unwrap();
    let mut uring = UringConfig::new(dir.path().join("keel.img"));
    uring.create_size_bytes = Some(32 << 20);
    let device = UringDevice::open(&uring, Arc::new(keel_drivers::DmaPool::for_tests(16 << 20))).unwrap();
    let rec = CrashRecorder::new(Arc::new(device), Arc::new(MemoryStore::new()));
    conformance::run(&rec, &ConformanceOptions::default()).assert_passed();
    assert!(!rec.log().writes().is_empty(), "the suite's writes were recorded");
}
