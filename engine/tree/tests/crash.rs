//! Crash states at the tree's level: a workload of writes, extents, evictions
//! and checkpoints runs on the crash recorder; at crash points across the
//! run (every flush, and points in between), images the device could hold
//! after a power loss — every write after the last completed flush present,
//! absent or torn at sector granularity — are rebuilt, and the tree is opened
//! from the last checkpoint made durable before that point. It must hold
//! exactly what that checkpoint holds, and fsck must be clean.
//!
//! `KEEL_TREE_CRASH_IMAGES` sets the images tried per crash point (default 8).

#![allow(clippy::unwrap_used)]

mod common;

use std::ops::Bound;
use std::sync::Arc;

use common::{memory_device, run, Oracle, DEV, REGION_FIRST_PAGE};
use keel_drivers::test_devices::CrashRecorder;
use keel_drivers::{BlockDevice, DmaPool};
use keel_reactor::io;
use keel_tree::{Admission, MergeOp, Message, Tree, TreeConfig, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DEVICE_BYTES: u64 = 32 << 20;
const REGION_PAGES: u64 = 4096;

/// A checkpoint made durable at the mark `label`.
struct Durable {
    label: String,
    state: [u8; 96],
    oracle: Oracle,
}

async fn workload(seed: u64, marker: keel_drivers::test_devices::CrashMarker) -> Vec<Durable> {
    let config = TreeConfig::tiny_for_tests();
    let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &[0u8; 96], config).await.unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut oracle = Oracle::default();
    let mut durable = Vec::new();
    let mut lsn = 0;
    for round in 0..8 {
        for _ in 0..120 {
            let k = format!("k{:04}", rng.gen_range(0..600)).into_bytes();
            let (m, bytes) = match rng.gen_range(0..100) {
                0..=9 => {
                    let v: Vec<u8> = (0..rng.gen_range(100..2500)).map(|_| rng.gen()).collect();
                    (Message::Put(Value::Extent(tree.write_extent(&v).await.unwrap())), Some(v))
                }
                10..=24 => (Message::Delete, None),
                25..=39 => (Message::Merge(MergeOp::Append(vec![b'+'; rng.gen_range(1..30)])), None),
                40..=42 => {
                    let end = format!("k{:04}", rng.gen_range(0..600)).into_bytes();
                    tree.make_room(64, Admission::Reclaim).await.unwrap();
                    lsn += 1;
                    tree.apply_delete_range(lsn, &k, Some(&end)).unwrap();
                    oracle.delete_range(&k, &end);
                    continue;
                }
                _ => (Message::Put(Value::Inline(vec![b'a' + rng.gen_range(0..26); rng.gen_range(1..90)])), None),
            };
            tree.make_room(k.len() + 128, Admission::Write).await.unwrap();
            lsn += 1;
            tree.apply(lsn, &k, m.clone()).unwrap();
            oracle.apply(&k, &m, bytes.as_deref());
        }
        let frozen = tree.freeze(lsn);
        let snapshot = oracle.clone();
        let state = tree.write_checkpoint(frozen).await.unwrap();
        io::flush(DEV).await.unwrap();
        // The engine would write and flush the superblock here.
        let label = format!("durable {round}");
        marker.mark(&label);
        tree.checkpoint_durable();
        durable.push(Durable { label, state, oracle: snapshot });
    }
    durable
}

async fn check(state: [u8; 96], oracle: Oracle) {
    let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &state, TreeConfig::tiny_for_tests()).await.unwrap();
    let all = tree.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).await.unwrap();
    let want: Vec<_> = oracle.map.into_iter().collect();
    assert_eq!(all, want);
    let report = tree.fsck(&mut |_| {}).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn after_a_crash_anywhere_the_last_durable_checkpoint_is_intact() {
    let per_point: u64 = std::env::var("KEEL_TREE_CRASH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let mut images_checked = 0u64;
    let mut points_checked = 0u64;
    for seed in 0..4u64 {
        let memory = memory_device(DEVICE_BYTES, seed);
        let rec = Arc::new(CrashRecorder::over_memory(memory));
        let marker = rec.marker();
        let devices = vec![Arc::clone(&rec) as Arc<dyn BlockDevice>];
        let durable = run(&devices, workload(seed, marker));
        let log = rec.log();
        let marks: Vec<_> = durable.iter().map(|d| log.mark_point(&d.label).unwrap()).collect();
        let mut points = log.flush_points_and_end();
        let every = log.every_point();
        points.extend(every.iter().step_by((every.len() / 200).max(1)).copied());
        points.sort_unstable();
        points.dedup();
        let pool = Arc::new(DmaPool::for_tests(32 << 20));
        for state in log.states(points) {
            let p = state.point();
            let last = marks.iter().rposition(|m| *m < p);
            let (st, oracle) = match last {
                Some(i) => (durable[i].state, durable[i].oracle.clone()),
                None => ([0u8; 96], Oracle::default()),
            };
            for image in state.images(per_point) {
                let dev = Arc::new(image.to_device(Arc::clone(&pool))) as Arc<dyn BlockDevice>;
                run(&[dev], check(st, oracle.clone()));
                images_checked += 1;
            }
            points_checked += 1;
        }
    }
    println!("tree crash states: {points_checked} crash points, {images_checked} images recovered and checked");
    assert!(images_checked >= 5000, "{images_checked}");
}
