//! Readers, a writer and a checkpointer run as separate tasks on one
//! reactor, interleaving at every device wait. Reads must always return a
//! value the key held at some moment during the read (never an older one,
//! never a torn or mixed one), while flushes, splits, merges, evictions and
//! checkpoints go on under them.

#![allow(clippy::unwrap_used)]

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Bound;
use std::rc::Rc;

use common::{as_dyn, memory_device, run, DEV, REGION_FIRST_PAGE};
use keel_reactor::{io, spawn};
use keel_tree::{Admission, Message, Tree, TreeConfig, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const KEYS: u32 = 600;
const WRITES: u32 = 6000;

fn key(i: u32) -> Vec<u8> {
    format!("key{i:04}").into_bytes()
}

/// The version a value carries: values are `key:version:padding`.
fn version_of(key: &[u8], value: &[u8]) -> u64 {
    let text = std::str::from_utf8(value).expect("values are text");
    let mut parts = text.splitn(3, ':');
    assert_eq!(parts.next().unwrap().as_bytes(), key, "a value of another key");
    parts.next().unwrap().parse().expect("a version")
}

#[derive(Default)]
struct Shared {
    /// The latest version applied per key.
    applied: RefCell<HashMap<Vec<u8>, u64>>,
    done: Cell<bool>,
    reads: Cell<u64>,
    scans: Cell<u64>,
    checkpoints: Cell<u64>,
}

impl Shared {
    fn applied(&self, k: &[u8]) -> u64 {
        self.applied.borrow().get(k).copied().unwrap_or(0)
    }
}

async fn writer(tree: Tree, shared: Rc<Shared>, lsn: Rc<Cell<u64>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for n in 1..=u64::from(WRITES) {
        let k = key(rng.gen_range(0..KEYS));
        let pad = if rng.gen_bool(0.1) { 2000 } else { rng.gen_range(0..60) };
        let v = format!("{}:{n}:{}", String::from_utf8_lossy(&k), "x".repeat(pad)).into_bytes();
        let m = if v.len() > tree.config().inline_value_max_bytes {
            Message::Put(Value::Extent(tree.write_extent(&v).await.unwrap()))
        } else {
            Message::Put(Value::Inline(v))
        };
        tree.make_room(k.len() + 200, Admission::Write).await.unwrap();
        lsn.set(lsn.get() + 1);
        tree.apply(lsn.get(), &k, m).unwrap();
        shared.applied.borrow_mut().insert(k, n);
    }
    shared.done.set(true);
}

async fn reader(tree: Tree, shared: Rc<Shared>, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    while !shared.done.get() {
        // A cached read completes without waiting: let the others run.
        keel_reactor::yield_now().await;
        if rng.gen_bool(0.9) {
            let k = key(rng.gen_range(0..KEYS));
            let before = shared.applied(&k);
            let got = tree.get(&k).await.unwrap();
            let after = shared.applied(&k);
            let v = got.map_or(0, |v| version_of(&k, &v));
            assert!(
                before <= v && v <= after,
                "{}: read version {v}, applied {before}..={after}",
                String::from_utf8_lossy(&k)
            );
            shared.reads.set(shared.reads.get() + 1);
        } else {
            let start = key(rng.gen_range(0..KEYS));
            let before: HashMap<Vec<u8>, u64> = shared.applied.borrow().clone();
            let items = tree.scan(Bound::Included(&start), Bound::Unbounded, 40).await.unwrap();
            for w in items.windows(2) {
                assert!(w[0].0 < w[1].0, "scan out of order");
            }
            for (k, v) in &items {
                let v = version_of(k, v);
                let lo = before.get(k).copied().unwrap_or(0);
                assert!(
                    lo <= v && v <= shared.applied(k),
                    "scan of {}: version {v} below {lo}",
                    String::from_utf8_lossy(k)
                );
            }
            shared.scans.set(shared.scans.get() + 1);
        }
    }
}

async fn checkpointer(tree: Tree, shared: Rc<Shared>, lsn: Rc<Cell<u64>>, states: Rc<RefCell<Vec<[u8; 96]>>>) {
    while !shared.done.get() {
        for _ in 0..20 {
            keel_reactor::yield_now().await;
        }
        let state = tree.write_checkpoint(tree.freeze(lsn.get())).await.unwrap();
        io::flush(DEV).await.unwrap();
        tree.checkpoint_durable();
        states.borrow_mut().push(state);
        shared.checkpoints.set(shared.checkpoints.get() + 1);
    }
}

#[test]
fn reads_see_a_value_the_key_held_during_the_read_while_everything_else_goes_on() {
    let device = memory_device(64 << 20, 11);
    let devices = as_dyn(&device);
    let (state, applied) = run(&devices, async {
        let tree = Tree::open(DEV, REGION_FIRST_PAGE, 8192, &[0u8; 96], TreeConfig::tiny_for_tests()).await.unwrap();
        let shared = Rc::new(Shared::default());
        let lsn = Rc::new(Cell::new(0));
        let states = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = vec![spawn(writer(tree.clone(), Rc::clone(&shared), Rc::clone(&lsn)))];
        for seed in 0..3 {
            tasks.push(spawn(reader(tree.clone(), Rc::clone(&shared), 100 + seed)));
        }
        tasks.push(spawn(checkpointer(tree.clone(), Rc::clone(&shared), Rc::clone(&lsn), Rc::clone(&states))));
        for t in tasks {
            t.await;
        }
        let stats = tree.stats();
        println!(
            "reads {} scans {} checkpoints {} evictions {} splits {} loads {}",
            shared.reads.get(),
            shared.scans.get(),
            shared.checkpoints.get(),
            stats.counters.evictions_dirty + stats.counters.evictions_clean,
            stats.counters.leaf_splits + stats.counters.internal_splits,
            stats.counters.node_reads
        );
        assert!(shared.reads.get() > 1000 && shared.checkpoints.get() > 5);
        let state = tree.write_checkpoint(tree.freeze(lsn.get())).await.unwrap();
        io::flush(DEV).await.unwrap();
        tree.checkpoint_durable();
        let applied = shared.applied.borrow().clone();
        (state, applied)
    });
    run(&devices, async move {
        let tree = Tree::open(DEV, REGION_FIRST_PAGE, 8192, &state, TreeConfig::tiny_for_tests()).await.unwrap();
        for (k, version) in applied {
            let v = tree.get(&k).await.unwrap().unwrap();
            assert_eq!(version_of(&k, &v), version);
        }
        let report = tree.fsck(&mut |_| {}).await.unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
    });
}
