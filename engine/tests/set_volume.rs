//! The engine on a striped set of two members (`keel_drivers::aggregate`):
//! a volume that closes and reopens from the members' contents, and the
//! crash recorder over the set: post-crash images across the run recover
//! every acknowledged write with clean trees.

#![allow(clippy::unwrap_used)] // a test's unwrap is its assertion

use std::sync::Arc;

use keel_drivers::aggregate::{LabelPolicy, SetConfig, SetDevice};
use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};
use keel_drivers::test_devices::{CrashRecorder, ImageChoice, ImageId};
use keel_drivers::{BlockDevice, DmaPool};
use keel_engine::testing::{start_on, TestEngineSpec};

const KEYS: u32 = 240;
/// Crash points checked (evenly spread over every event of the run: with
/// FUA journal writes most acknowledgements need no flush).
const POINTS: usize = 24;

fn spec() -> TestEngineSpec {
    TestEngineSpec { reactors: 2, shards: 2, ..TestEngineSpec::default() }
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// Some values out of line (larger than a tree's inline limit), so extents
/// cross stripes too.
fn value(i: u32) -> Vec<u8> {
    let len = if i.is_multiple_of(20) { 300_000 } else { 100 };
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

fn members(pool: &Arc<DmaPool>) -> Vec<Arc<MemoryDevice>> {
    let config = MemoryDeviceConfig { capacity_bytes: 64 << 20, ..MemoryDeviceConfig::default() };
    (0..2).map(|_| Arc::new(MemoryDevice::new(&config, Arc::clone(pool)))).collect()
}

fn set_of(members: &[Arc<MemoryDevice>], labels: LabelPolicy) -> Arc<dyn BlockDevice> {
    let list = members.iter().map(|m| Arc::clone(m) as Arc<dyn BlockDevice>).collect();
    Arc::new(SetDevice::open(list, &SetConfig { labels, ..SetConfig::default() }).unwrap())
}

#[test]
fn a_volume_on_a_set_reopens_from_its_members() {
    let pool = Arc::new(DmaPool::for_tests(64 << 20));
    let m = members(&pool);
    let (runtime, engine) = start_on(set_of(&m, LabelPolicy::CreateIfBlank), &spec(), true).unwrap();
    let writer = engine.clone();
    runtime
        .call_blocking(0, move || async move {
            for i in 0..KEYS {
                writer.put(&key(i), value(i)).await.unwrap();
            }
        })
        .unwrap();
    engine.close(&runtime).unwrap();
    runtime.stop();
    assert!(m.iter().all(|m| m.store().resident_bytes() > 1 << 20), "both members hold data");

    let (runtime, engine) = start_on(set_of(&m, LabelPolicy::Existing), &spec(), false).unwrap();
    runtime
        .call_blocking(1, move || async move {
            for i in 0..KEYS {
                assert_eq!(engine.get(&key(i)).await.unwrap(), Some(value(i)), "key {i}");
            }
        })
        .unwrap();
    runtime.stop();
}

#[test]
fn crash_images_of_a_set_recover_every_acknowledged_write() {
    let pool = Arc::new(DmaPool::for_tests(64 << 20));
    let m = members(&pool);
    let recorder = Arc::new(CrashRecorder::new(set_of(&m, LabelPolicy::CreateIfBlank), Arc::new(MemoryStore::new())));
    let (runtime, engine) = start_on(Arc::clone(&recorder) as Arc<dyn BlockDevice>, &spec(), true).unwrap();
    let (writer, marker) = (engine.clone(), recorder.marker());
    runtime
        .call_blocking(0, move || async move {
            for i in 0..KEYS {
                let lsn = writer.put(&key(i), value(i)).await.unwrap();
                writer.wait_durable(lsn).await.unwrap();
                marker.mark(&format!("acked {i}"));
            }
        })
        .unwrap();
    drop(engine);
    runtime.stop();

    let log = recorder.log();
    let points = log.every_point();
    let step = points.len().div_ceil(POINTS).max(1);
    let mut checked_with_acked = 0;
    for &point in points.iter().step_by(step) {
        let acked = log.marks_before(point).len() as u32;
        for choice in [ImageChoice::Index(0), ImageChoice::Newest] {
            let image = log.image(ImageId { point, choice });
            let device = Arc::new(image.to_device(Arc::clone(&pool))) as Arc<dyn BlockDevice>;
            let Ok((runtime, engine)) = start_on(device, &spec(), false) else {
                assert_eq!(acked, 0, "{}: no volume to recover after {acked} acknowledged writes", image.id());
                continue;
            };
            let (reader, id) = (engine.clone(), image.id().to_string());
            runtime
                .call_blocking(0, move || async move {
                    for i in 0..acked {
                        assert_eq!(reader.get(&key(i)).await.unwrap(), Some(value(i)), "{id}: acked key {i}");
                    }
                    for (shard, report) in reader.fsck().await.unwrap().iter().enumerate() {
                        assert!(report.is_clean(), "{id}: fsck of shard {shard}: {:?}", report.problems);
                    }
                })
                .unwrap();
            drop(engine);
            runtime.stop();
            checked_with_acked += u32::from(acked > 0);
        }
    }
    assert!(checked_with_acked >= POINTS as u32, "{checked_with_acked} images with acknowledged writes checked");
}
