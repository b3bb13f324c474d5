//! The fault injector: each fault's effect, seen through a real queue pair of
//! the injector and checked against the bytes that reached the memory device
//! underneath; triggers, counters, and rules changed while running.

// In a test, a failed unwrap is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_drivers::memory::MemoryDevice;
use keel_drivers::test_devices::{Fault, FaultInjector, FaultRule, FaultRuleError, Misdirect};
use keel_drivers::{BlockDevice, IoErrorKind, OpKind};
use support::{filled, memory, Driver};

const BLOCK: usize = 4096;

/// An injector over a 4 KiB-block memory device whose blocks 0..16 hold
/// `0x10 + lba` in every byte.
fn setup() -> (Arc<FaultInjector>, Arc<MemoryDevice>) {
    setup_with_block(BLOCK)
}

fn setup_with_block(block_bytes: usize) -> (Arc<FaultInjector>, Arc<MemoryDevice>) {
    let device = memory(block_bytes as u32, true);
    let mut raw = Driver::new(&*device);
    for lba in 0..16u64 {
        raw.write(lba, &vec![0x10 + lba as u8; block_bytes], false).unwrap();
    }
    (Arc::new(FaultInjector::new(device.clone())), device)
}

/// What the medium holds, read past the injector.
fn stored(device: &MemoryDevice, lba: u64, len_bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; len_bytes];
    device.store().read(lba * u64::from(device.info().block_size_bytes), &mut out);
    out
}

fn original(lba: u64, blocks: usize) -> Vec<u8> {
    (lba..lba + blocks as u64).flat_map(|l| vec![0x10 + l as u8; BLOCK]).collect()
}

fn differing_bits(a: &[u8], b: &[u8]) -> Vec<usize> {
    let bytes = a.iter().zip(b).enumerate();
    bytes
        .flat_map(|(i, (x, y))| (0..8).filter(move |bit| (x ^ y) >> bit & 1 == 1).map(move |bit| i * 8 + bit))
        .collect()
}

#[test]
fn flipped_read_bits_differ_in_exactly_that_many_bits_inside_the_rule_range() {
    let (inj, device) = setup();
    let rule = inj.add(FaultRule::reads(5..6, Fault::FlipBits { bits: 3 }).seed(7)).unwrap();
    let mut io = Driver::new(&*inj);
    let got = io.read(4, 3 * BLOCK).unwrap();
    let flipped = differing_bits(&got, &original(4, 3));
    assert_eq!(flipped.len(), 3);
    assert!(flipped.iter().all(|&bit| (BLOCK * 8..2 * BLOCK * 8).contains(&bit)), "only block 5 is hit: {flipped:?}");
    assert_eq!(stored(&device, 4, 3 * BLOCK), original(4, 3), "the medium is untouched");
    assert_eq!(io.read(8, BLOCK).unwrap(), original(8, 1), "reads outside the range are clean");
    assert_eq!(inj.stats(rule).map(|s| (s.matched, s.fired)), Some((1, 1)));
}

#[test]
fn zeroed_reads_return_zeros_only_in_the_rule_blocks() {
    let (inj, _device) = setup();
    inj.add(FaultRule::reads(2..4, Fault::Zero)).unwrap();
    let mut io = Driver::new(&*inj);
    let got = io.read(1, 4 * BLOCK).unwrap();
    let mut expected = original(1, 4);
    expected[BLOCK..3 * BLOCK].fill(0);
    assert_eq!(got, expected);
}

#[test]
fn an_eio_read_fails_with_a_typed_error() {
    let (inj, _device) = setup();
    inj.add(FaultRule::reads(3..4, Fault::eio())).unwrap();
    let mut io = Driver::new(&*inj);
    let error = io.read(3, BLOCK).unwrap_err();
    assert_eq!(error.kind, IoErrorKind::Io { errno: libc::EIO });
    assert_eq!((error.op, error.lba), (OpKind::Read, 3));
    assert_eq!(io.read(2, BLOCK).unwrap(), original(2, 1));
}

#[test]
fn a_lost_write_reports_success_and_stores_nothing() {
    let (inj, device) = setup();
    inj.add(FaultRule::writes(6..7, Fault::Lose)).unwrap();
    let mut io = Driver::new(&*inj);
    io.write(6, &filled(8, 0xAB), false).unwrap();
    io.flush().unwrap();
    assert_eq!(stored(&device, 6, BLOCK), original(6, 1));
    assert_eq!(io.read(6, BLOCK).unwrap(), original(6, 1));
}

#[test]
fn a_misdirected_write_lands_on_the_target_block_instead() {
    let (inj, device) = setup();
    inj.add(FaultRule::writes(2..3, Fault::Misdirect(Misdirect::ToLba(9)))).unwrap();
    inj.add(FaultRule::writes(3..4, Fault::Misdirect(Misdirect::Offset(-3)))).unwrap();
    let mut io = Driver::new(&*inj);
    io.write(2, &filled(8, 0xA2), false).unwrap();
    io.write(3, &filled(8, 0xA3), false).unwrap();
    assert_eq!(stored(&device, 2, BLOCK), original(2, 1), "not written where asked");
    assert_eq!(stored(&device, 3, BLOCK), original(3, 1), "not written where asked");
    assert_eq!(stored(&device, 9, BLOCK), filled(8, 0xA2));
    assert_eq!(stored(&device, 0, BLOCK), filled(8, 0xA3));
}

#[test]
fn a_misdirection_past_the_end_wraps_onto_the_device() {
    let (inj, device) = setup();
    let capacity = device.info().capacity_blocks;
    inj.add(FaultRule::writes(0..1, Fault::Misdirect(Misdirect::ToLba(capacity + 1)))).unwrap();
    let mut io = Driver::new(&*inj);
    io.write(0, &filled(8, 0xA0), false).unwrap();
    assert_eq!(stored(&device, 1, BLOCK), filled(8, 0xA0));
}

#[test]
fn a_torn_write_on_block_boundaries_stores_only_its_leading_sectors() {
    let (inj, device) = setup_with_block(512);
    inj.add(FaultRule::writes(0..1, Fault::Tear { sectors: 3 })).unwrap();
    let mut io = Driver::new(&*inj);
    let tag = io.submit_write(0, &filled(8, 0xCC), false);
    let completion = io.wait(tag);
    completion.result.unwrap();
    assert_eq!(completion.buf.unwrap().len(), 8 * 512, "the caller's buffer comes back whole");
    let expected: Vec<u8> = [filled(3, 0xCC), (3..8u8).flat_map(|l| filled(1, 0x10 + l)).collect()].concat();
    assert_eq!(stored(&device, 0, 8 * 512), expected);
}

#[test]
fn a_torn_write_inside_a_block_patches_the_block_and_keeps_the_rest() {
    let (inj, device) = setup();
    inj.add(FaultRule::writes(4..5, Fault::Tear { sectors: 11 })).unwrap();
    let mut io = Driver::new(&*inj);
    let data: Vec<u8> = (0..16u8).flat_map(|s| filled(1, 0x80 + s)).collect(); // two blocks
    let tag = io.submit_write(4, &data, false);
    let completion = io.wait(tag);
    completion.result.unwrap();
    assert_eq!(&completion.buf.unwrap()[..], &data[..], "the caller's buffer comes back unchanged");
    let mut expected = original(4, 2);
    expected[..11 * 512].copy_from_slice(&data[..11 * 512]);
    assert_eq!(stored(&device, 4, 2 * BLOCK), expected);
}

#[test]
fn flipped_write_bits_corrupt_the_stored_data_but_not_the_callers_buffer() {
    let (inj, device) = setup();
    inj.add(FaultRule::writes(7..8, Fault::FlipBits { bits: 1 })).unwrap();
    let mut io = Driver::new(&*inj);
    let tag = io.submit_write(7, &filled(8, 0x55), false);
    let completion = io.wait(tag);
    completion.result.unwrap();
    assert_eq!(&completion.buf.unwrap()[..], &filled(8, 0x55)[..]);
    assert_eq!(differing_bits(&stored(&device, 7, BLOCK), &filled(8, 0x55)).len(), 1);
}

#[test]
fn a_zeroed_write_stores_zeros_but_returns_the_callers_data() {
    let (inj, device) = setup();
    inj.add(FaultRule::writes(1..2, Fault::Zero)).unwrap();
    let mut io = Driver::new(&*inj);
    let tag = io.submit_write(0, &filled(16, 0x66), false);
    let completion = io.wait(tag);
    completion.result.unwrap();
    assert_eq!(&completion.buf.unwrap()[..], &filled(16, 0x66)[..]);
    assert_eq!(stored(&device, 0, 2 * BLOCK), [filled(8, 0x66), vec![0; BLOCK]].concat());
}

#[test]
fn an_eio_write_fails_and_stores_nothing_and_an_eio_flush_fails() {
    let (inj, device) = setup();
    inj.add(FaultRule::writes(0..16, Fault::eio())).unwrap();
    inj.add(FaultRule::flushes(Fault::eio())).unwrap();
    let mut io = Driver::new(&*inj);
    let error = io.write(3, &filled(8, 0x99), false).unwrap_err();
    assert_eq!((error.kind, error.op), (IoErrorKind::Io { errno: libc::EIO }, OpKind::Write));
    assert_eq!(stored(&device, 3, BLOCK), original(3, 1));
    assert_eq!(io.flush().unwrap_err().op, OpKind::Flush);
}

#[test]
fn a_delayed_completion_is_delivered_by_a_later_poll_after_the_delay() {
    let (inj, device) = setup();
    let delay = Duration::from_millis(50);
    inj.add(FaultRule::writes(0..16, Fault::Delay(delay))).unwrap();
    let mut io = Driver::new(&*inj);
    let started = Instant::now();
    let tag = io.submit_write(2, &filled(8, 0x42), false);
    assert_eq!(io.poll(), 0, "held back");
    assert_eq!(stored(&device, 2, BLOCK), filled(8, 0x42), "the device did the write");
    assert_eq!(io.qp.in_flight(), 1, "still in flight, so the reactor keeps polling");
    assert!(!io.qp.prepare_to_sleep(), "no descriptor would wake a sleeping reactor");
    io.wait(tag).result.unwrap();
    assert!(started.elapsed() >= delay);
    assert_eq!(io.qp.in_flight(), 0);
    assert!(io.qp.prepare_to_sleep());
}

#[test]
fn a_delay_combines_with_a_data_fault() {
    let (inj, _device) = setup();
    let delay = Duration::from_millis(20);
    inj.add(FaultRule::reads(0..16, Fault::Delay(delay))).unwrap();
    inj.add(FaultRule::reads(0..16, Fault::eio())).unwrap();
    let mut io = Driver::new(&*inj);
    let started = Instant::now();
    assert!(io.read(0, BLOCK).is_err());
    assert!(started.elapsed() >= delay);
}

fn starts_with_cd(data: &[u8]) -> bool {
    data.first() == Some(&0xCD)
}

#[test]
fn a_write_filter_picks_writes_by_their_data_and_only_those_count() {
    let (inj, device) = setup();
    let rule = inj.add(FaultRule::writes(0..16, Fault::Lose).when_written(starts_with_cd).nth(2)).unwrap();
    let mut io = Driver::new(&*inj);
    // Writes of 0xAB are not matched; of the 0xCD writes, the second is lost.
    for (lba, byte) in [(1u64, 0xAB), (2, 0xCD), (3, 0xAB), (4, 0xCD), (5, 0xCD)] {
        io.write(lba, &filled(8, byte), false).unwrap();
    }
    io.flush().unwrap();
    assert_eq!(stored(&device, 2, BLOCK), filled(8, 0xCD));
    assert_eq!(stored(&device, 4, BLOCK), original(4, 1), "the second matching write was lost");
    assert_eq!(stored(&device, 5, BLOCK), filled(8, 0xCD));
    assert_eq!(inj.stats(rule).map(|s| (s.matched, s.fired)), Some((3, 1)));
    let refused = inj.add(FaultRule::reads(0..1, Fault::eio()).when_written(starts_with_cd)).unwrap_err();
    assert!(matches!(refused, FaultRuleError::Invalid(_)), "{refused:?}");
}

#[test]
fn an_nth_rule_fires_on_the_nth_matching_request_only() {
    let (inj, _device) = setup();
    let rule = inj.add(FaultRule::reads(0..4, Fault::eio()).nth(3)).unwrap();
    let mut io = Driver::new(&*inj);
    let results: Vec<bool> = (0..6).map(|i| io.read(i % 8, BLOCK).is_ok()).collect();
    // Reads of blocks 0, 1, 2, 3 match; 4 and 5 do not.
    assert_eq!(results, [true, true, false, true, true, true]);
    let stats = inj.stats(rule).unwrap();
    assert_eq!((stats.matched, stats.fired), (4, 1));
}

#[test]
fn a_first_k_rule_fires_on_the_first_k_matching_requests() {
    let (inj, _device) = setup();
    let rule = inj.add(FaultRule::writes(0..16, Fault::eio()).first(2)).unwrap();
    let mut io = Driver::new(&*inj);
    let results: Vec<bool> = (0..4).map(|i| io.write(i, &filled(8, 1), false).is_ok()).collect();
    assert_eq!(results, [false, false, true, true]);
    assert_eq!(inj.fired(rule), 2);
}

#[test]
fn a_probability_rule_is_deterministic_for_its_seed() {
    let outcomes = |seed: u64| {
        let (inj, _device) = setup();
        let rule = inj.add(FaultRule::reads(0..16, Fault::eio()).probability(0.5).seed(seed)).unwrap();
        let mut io = Driver::new(&*inj);
        let results: Vec<bool> = (0..400).map(|i| io.read(i % 16, BLOCK).is_err()).collect();
        assert_eq!(results.iter().filter(|&&e| e).count() as u64, inj.fired(rule));
        results
    };
    let first = outcomes(11);
    assert_eq!(first, outcomes(11), "same seed, same faults");
    assert_ne!(first, outcomes(12), "another seed, other faults");
    let fired = first.iter().filter(|&&e| e).count();
    assert!((120..=280).contains(&fired), "p = 0.5 over 400 requests fired {fired} times");
}

#[test]
fn rules_added_and_removed_mid_workload_apply_only_while_installed() {
    let (inj, _device) = setup();
    let mut io = Driver::new(&*inj);
    assert!(io.read(0, BLOCK).is_ok());
    let rule = inj.add(FaultRule::reads(0..16, Fault::eio())).unwrap();
    assert!(io.read(0, BLOCK).is_err());
    assert!(io.read(1, BLOCK).is_err());
    let stats = inj.remove(rule).unwrap();
    assert_eq!((stats.matched, stats.fired), (2, 2));
    assert!(io.read(0, BLOCK).is_ok());
    assert_eq!(inj.stats(rule), None);
    assert_eq!(inj.remove(rule), None);
}

#[test]
fn the_first_firing_rule_decides_and_every_matching_rule_counts() {
    let (inj, _device) = setup();
    let zero = inj.add(FaultRule::reads(0..16, Fault::Zero).first(1)).unwrap();
    let fail = inj.add(FaultRule::reads(0..16, Fault::eio())).unwrap();
    let mut io = Driver::new(&*inj);
    assert_eq!(io.read(0, BLOCK).unwrap(), vec![0; BLOCK], "first rule wins");
    assert!(io.read(0, BLOCK).is_err(), "then the second");
    assert_eq!(inj.stats(zero).map(|s| (s.matched, s.fired)), Some((2, 1)));
    assert_eq!(inj.stats(fail).map(|s| (s.matched, s.fired)), Some((2, 1)));
}

#[test]
fn rules_that_cannot_apply_are_refused_with_a_reason() {
    let (inj, _device) = setup();
    let refused = |rule| inj.add(rule).unwrap_err();
    assert!(matches!(refused(FaultRule::reads(0..1, Fault::Lose)), FaultRuleError::WrongOp { .. }));
    assert!(matches!(refused(FaultRule::flushes(Fault::Zero)), FaultRuleError::WrongOp { .. }));
    assert!(matches!(refused(FaultRule::reads(0..1, Fault::FlipBits { bits: 0 })), FaultRuleError::Invalid(_)));
    assert!(matches!(refused(FaultRule::reads(0..1, Fault::eio()).nth(0)), FaultRuleError::Invalid(_)));
    assert!(matches!(refused(FaultRule::reads(0..1, Fault::eio()).probability(1.5)), FaultRuleError::Invalid(_)));
    assert!(matches!(refused(FaultRule::reads(3..3, Fault::eio())), FaultRuleError::Invalid(_)));
    let message = refused(FaultRule::reads(0..1, Fault::Tear { sectors: 1 })).to_string();
    assert!(message.contains("cannot apply to a read"), "{message}");
}

#[test]
fn malformed_requests_pass_through_to_the_device_error() {
    let (inj, device) = setup();
    inj.add(FaultRule::reads(0..u64::MAX, Fault::Zero)).unwrap();
    let mut io = Driver::new(&*inj);
    let capacity = device.info().capacity_blocks;
    assert_eq!(io.read(capacity, BLOCK).unwrap_err().kind, IoErrorKind::OutOfRange);
}

#[test]
fn an_injector_whose_rules_do_not_fire_keeps_the_device_contract() {
    use keel_drivers::conformance::{self, ConformanceOptions};
    use keel_drivers::uring::{UringConfig, UringDevice};

    let config = keel_drivers::memory::MemoryDeviceConfig { capacity_bytes: 64 << 20, ..Default::default() };
    let device = Arc::new(MemoryDevice::new(&config, Arc::new(keel_drivers::DmaPool::for_tests(16 << 20))));
    let inj = FaultInjector::new(device);
    let rule = inj.add(FaultRule::writes(0..u64::MAX, Fault::Lose).probability(0.0)).unwrap();
    conformance::run(&inj, &ConformanceOptions::default()).assert_passed();
    assert!(inj.stats(rule).unwrap().matched > 0 && inj.fired(rule) == 0);

    let dir = tempfile::tempdir().unwrap();
    let mut uring = UringConfig::new(dir.path().join("keel.img"));
    uring.create_size_bytes = Some(32 << 20);
    let device = UringDevice::open(&uring, Arc::new(keel_drivers::DmaPool::for_tests(16 << 20))).unwrap();
    conformance::run(&FaultInjector::new(Arc::new(device)), &ConformanceOptions::default()).assert_passed();
}
