//! Gets that read one page of a leaf through the page map a whole read of
//! it left in the cache (`pages.rs`): the answers stay right, most such
//! gets read one 4 KiB page, maps of rewritten leaves are not used, and a
//! damaged page is never returned (the get reads the leaf whole and
//! reports the fault).

#![allow(clippy::unwrap_used)]

mod common;

use std::rc::Rc;
use std::sync::Arc;

use common::{memory_device, memory_device_over, run, Oracle, DEV, REGION_FIRST_PAGE};
use keel_drivers::test_devices::{Fault, FaultInjector, FaultRule, Trigger};
use keel_drivers::BlockDevice;
use keel_reactor::{io, spawn};
use keel_tree::{Admission, Message, Tree, TreeConfig, Value};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DEVICE_BYTES: u64 = 64 << 20;
const REGION_PAGES: u64 = 8192;
const KEYS: u32 = 12_000;

/// Leaves of two to three pages, a cache several times smaller than the data.
fn config() -> TreeConfig {
    TreeConfig {
        leaf_bytes: 8 << 10,
        internal_bytes: 16 << 10,
        fanout_max: 16,
        cache_bytes: 512 << 10,
        inline_value_max_bytes: 2048,
        reserve_pages: Some(64),
        write_depth: 8,
        background_maintenance: true,
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("key{:08}", i * 2).into_bytes()
}

fn value(rng: &mut ChaCha8Rng, i: u32, round: u8) -> Vec<u8> {
    let mut v = vec![b'a' + (i % 26) as u8; rng.gen_range(60..140)];
    v[0] = round;
    v
}

async fn put(tree: &Tree, lsn: &mut u64, oracle: &mut Oracle, k: &[u8], v: Vec<u8>) {
    *lsn += 1;
    let m = Message::Put(Value::Inline(v));
    tree.make_room(k.len() + 256, Admission::Write).await.unwrap();
    tree.apply(*lsn, k, m.clone()).unwrap();
    oracle.apply(k, &m, None);
}

/// Fills a tree in random order and checkpoints it: the durable state.
async fn fill(oracle: &mut Oracle) -> [u8; 96] {
    let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &[0u8; 96], config()).await.unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut order: Vec<u32> = (0..KEYS).collect();
    order.shuffle(&mut rng);
    let mut lsn = 0;
    for i in order {
        let v = value(&mut rng, i, 0);
        put(&tree, &mut lsn, oracle, &key(i), v).await;
    }
    let state = tree.write_checkpoint(tree.freeze(lsn)).await.unwrap();
    io::flush(DEV).await.unwrap();
    tree.checkpoint_durable();
    state
}

/// Gets every key (and a missing neighbour of each) in random order;
/// returns how many gets failed (a wrong answer fails the test).
async fn get_all(tree: &Tree, oracle: &Oracle, seed: u64) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<u32> = (0..KEYS).collect();
    order.shuffle(&mut rng);
    let mut failed = 0;
    for i in order {
        let k = key(i);
        let mut missing = k.clone();
        missing.push(b'x');
        for k in [k, missing] {
            match tree.get(&k).await {
                Ok(v) => assert_eq!(v.as_ref(), oracle.map.get(&k), "{}", String::from_utf8_lossy(&k)),
                Err(e) => {
                    assert!(e.is_media_error(), "{e}");
                    failed += 1;
                }
            }
        }
    }
    failed
}

#[test]
fn gets_read_one_page_of_a_leaf_and_answer_right() {
    let devices = vec![memory_device(DEVICE_BYTES, 3) as Arc<dyn BlockDevice>];
    run(&devices, async {
        let mut oracle = Oracle::default();
        let state = fill(&mut oracle).await;
        let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &state, config()).await.unwrap();
        assert_eq!(get_all(&tree, &oracle, 1).await, 0);
        let first = tree.stats().counters;
        assert_eq!(get_all(&tree, &oracle, 2).await, 0);
        let second = tree.stats().counters;
        let page_reads = second.leaf_page_reads - first.leaf_page_reads;
        let whole_reads = second.leaf_reads - first.leaf_reads;
        assert!(page_reads > 4 * whole_reads, "second pass: {page_reads} page reads, {whole_reads} whole leaves");
        let page_bytes = second.leaf_page_read_bytes - first.leaf_page_read_bytes;
        assert!(page_bytes < page_reads * 4096 * 11 / 10, "mostly one page: {page_bytes} B in {page_reads} reads");
        assert_eq!(second.leaf_page_mismatches, 0);
        // Every present key is asked for with one absent neighbour: the
        // maps' filters answer most of those without a read.
        let skips = second.leaf_filter_skips - first.leaf_filter_skips;
        assert!(skips * 2 > page_reads, "{skips} absent keys ruled out against {page_reads} page reads");
        assert!(tree.stats().cache_page_map_bytes <= config().cache_bytes / 4);

        // Rewrite a third of the keys: their leaves move, their maps must
        // not be used for the new versions.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut lsn = tree.stats().lsn_applied;
        for i in (0..KEYS).step_by(3) {
            let v = value(&mut rng, i, 1);
            put(&tree, &mut lsn, &mut oracle, &key(i), v).await;
        }
        let state = tree.write_checkpoint(tree.freeze(lsn)).await.unwrap();
        io::flush(DEV).await.unwrap();
        tree.checkpoint_durable();
        assert_eq!(get_all(&tree, &oracle, 3).await, 0);
        assert_eq!(tree.stats().counters.leaf_page_mismatches, 0);
        drop(tree);
        let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &state, config()).await.unwrap();
        assert_eq!(get_all(&tree, &oracle, 4).await, 0);
    });
}

/// Pages read through page maps stay cached (inside the budget): gets of
/// a hot set of keys are answered from them, without device reads, and
/// right, also after their leaves were rewritten.
#[test]
fn hot_pages_are_answered_from_the_cache() {
    let devices = vec![memory_device(DEVICE_BYTES, 5) as Arc<dyn BlockDevice>];
    run(&devices, async {
        let mut oracle = Oracle::default();
        let state = fill(&mut oracle).await;
        let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &state, config()).await.unwrap();
        assert_eq!(get_all(&tree, &oracle, 1).await, 0);
        // ~25 pages: what the cache has room for next to the internal nodes.
        let hot: Vec<Vec<u8>> = (0..KEYS).step_by(500).map(key).collect();
        let get_hot = |tree: Tree, oracle: Oracle| {
            let hot = hot.clone();
            async move {
                let before = tree.stats().counters;
                for k in &hot {
                    assert_eq!(tree.get(k).await.unwrap().as_ref(), oracle.map.get(k));
                }
                let after = tree.stats().counters;
                (
                    after.leaf_page_reads - before.leaf_page_reads,
                    after.leaf_page_cache_hits - before.leaf_page_cache_hits,
                )
            }
        };
        get_hot(tree.clone(), oracle.clone()).await;
        let (reads, hits) = get_hot(tree.clone(), oracle.clone()).await;
        // (The others are answered from buffered messages.)
        let n = hot.len() as u64;
        assert!(reads * 10 <= n && hits * 2 >= n, "{hits} of {n} gets from cached pages, {reads} page reads");
        let stats = tree.stats();
        assert!(stats.cache_leaf_page_bytes > 0 && stats.cache_bytes_used <= config().cache_bytes);

        // Rewrite the hot keys: the pages cached for the old leaves must not answer.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut lsn = stats.lsn_applied;
        for i in (0..KEYS).step_by(500) {
            let v = value(&mut rng, i, 2);
            put(&tree, &mut lsn, &mut oracle, &key(i), v).await;
        }
        tree.write_checkpoint(tree.freeze(lsn)).await.unwrap();
        io::flush(DEV).await.unwrap();
        tree.checkpoint_durable();
        get_hot(tree.clone(), oracle.clone()).await;
        assert_eq!(get_all(&tree, &oracle, 6).await, 0);
        get_hot(tree.clone(), oracle.clone()).await;
    });
}

#[test]
fn a_damaged_page_is_reported_never_returned() {
    let memory = memory_device(DEVICE_BYTES, 3);
    let devices = vec![Arc::clone(&memory) as Arc<dyn BlockDevice>];
    let (state, oracle) = run(&devices, async {
        let mut oracle = Oracle::default();
        let state = fill(&mut oracle).await;
        (state, oracle)
    });
    for fault in [Fault::FlipBits { bits: 3 }, Fault::Zero] {
        let copy = memory_device_over(DEVICE_BYTES, 0, Arc::new(memory.store().deep_clone()));
        let injector = Arc::new(FaultInjector::new(copy as Arc<dyn BlockDevice>));
        let devices = vec![Arc::clone(&injector) as Arc<dyn BlockDevice>];
        let oracle = oracle.clone();
        let (failed, mismatches) = run(&devices, async move {
            let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &state, config()).await.unwrap();
            assert_eq!(get_all(&tree, &oracle, 1).await, 0, "no fault yet");
            let mut rule = FaultRule::reads(0..u64::MAX, fault);
            rule.trigger = Trigger::Probability(0.05);
            injector.add(rule).unwrap();
            let failed = get_all(&tree, &oracle, 2).await;
            injector.clear();
            assert_eq!(get_all(&tree, &oracle, 3).await, 0, "the device is whole again");
            (failed, tree.stats().counters.leaf_page_mismatches)
        });
        assert!(failed > 0, "{fault}: no get failed");
        assert!(mismatches > 0, "{fault}: no page read caught it");
    }
}

/// Gets of random keys, checked against the oracle.
async fn reader(tree: Tree, oracle: Rc<Oracle>, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..1500 {
        let k = key(rng.gen_range(0..KEYS));
        assert_eq!(tree.get(&k).await.unwrap().as_ref(), oracle.map.get(&k));
    }
}

#[test]
fn concurrent_gets_through_page_maps_match_every_page() {
    let devices = vec![memory_device(DEVICE_BYTES, 9) as Arc<dyn BlockDevice>];
    run(&devices, async {
        let mut oracle = Oracle::default();
        let state = fill(&mut oracle).await;
        let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &state, config()).await.unwrap();
        let oracle = Rc::new(oracle);
        let tasks: Vec<_> = (0..32u64).map(|seed| spawn(reader(tree.clone(), Rc::clone(&oracle), seed))).collect();
        for t in tasks {
            t.await;
        }
        let c = tree.stats().counters;
        assert!(c.leaf_page_reads > 10_000, "{} page reads", c.leaf_page_reads);
        assert_eq!(c.leaf_page_mismatches, 0, "of {} page reads", c.leaf_page_reads);
    });
}
