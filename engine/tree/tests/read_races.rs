//! A get or a scan that decided to read a leaf, and waits for that read
//! while maintenance merges the leaf away, must walk again from the root and
//! answer, not report the leaf it no longer needs as corrupt. Reads take no
//! maintenance lock, so this happens whenever deletes shrink the tree under
//! them. The leaf's read is held back by the fault injector (its completion
//! delayed, or its bytes damaged as a reused place's would be) while the
//! test deletes the keys around it and lets maintenance merge.

#![allow(clippy::unwrap_used)]

mod common;

use std::cell::Cell;
use std::future::Future;
use std::ops::Bound;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::{memory_device, run, DEV, REGION_FIRST_PAGE};
use keel_drivers::test_devices::{Fault, FaultInjector, FaultRule};
use keel_drivers::BlockDevice;
use keel_reactor::{io, spawn};
use keel_tree::{Admission, BlockInfo, BlockKind, Message, Tree, TreeConfig, Value};

const KEYS: u32 = 600;
/// Long enough that the deletes and merges finish first (about 1 ms on a
/// memory device, measured); the test checks that they did.
const LEAF_READ_HELD: Duration = Duration::from_secs(1);
/// How long the test lets the read walk down to the leaf (a few device
/// reads of internal nodes) before it gives up on it.
const YIELDS_TO_REACH_LEAF_MAX: usize = 100_000;

/// No background task: merges happen only when the test drives them.
fn config() -> TreeConfig {
    TreeConfig { background_maintenance: false, ..TreeConfig::tiny_for_tests() }
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value{i:06}-padding").into_bytes()
}

async fn apply(tree: &Tree, lsn: &mut u64, k: &[u8], m: Message, admission: Admission) {
    tree.make_room(k.len() + 64, admission).await.unwrap();
    *lsn += 1;
    tree.apply(*lsn, k, m).unwrap();
}

async fn checkpoint(tree: &Tree, lsn: u64) -> [u8; 96] {
    let state = tree.write_checkpoint(tree.freeze(lsn)).await.unwrap();
    io::flush(DEV).await.unwrap();
    tree.checkpoint_durable();
    state
}

/// Fills a tree and checkpoints it: reopened, its cache is cold and every
/// leaf a read needs comes from the device.
fn fill(devices: &[Arc<dyn BlockDevice>]) -> ([u8; 96], u64) {
    run(devices, async {
        let tree = Tree::open(DEV, REGION_FIRST_PAGE, 8192, &[0u8; 96], config()).await.unwrap();
        let mut lsn = 0;
        for i in 0..KEYS {
            apply(&tree, &mut lsn, &key(i), Message::Put(Value::Inline(value(i))), Admission::Write).await;
        }
        (checkpoint(&tree, lsn).await, lsn)
    })
}

/// The leaves of the durable checkpoint in key order.
async fn leaves(tree: &Tree) -> Vec<BlockInfo> {
    let mut leaves: Vec<BlockInfo> =
        tree.block_map().await.unwrap().into_iter().filter(|b| b.kind == BlockKind::Leaf).collect();
    leaves.sort_by(|a, b| a.key.cmp(&b.key));
    leaves
}

/// Deletes every key in `[low, high)` and lets maintenance push the deletes
/// down and merge the leaves they empty. Returns how many merges it made.
async fn delete_and_merge(tree: &Tree, lsn: &mut u64, low: &[u8], high: &[u8]) -> u64 {
    let merges_before = tree.stats().counters.merges;
    for i in 0..KEYS {
        let k = key(i);
        if low <= k.as_slice() && k.as_slice() < high {
            apply(tree, lsn, &k, Message::Delete, Admission::Reclaim).await;
        }
    }
    tree.reclaim().await.unwrap();
    // Merges are queued by the flushes that empty leaves; this runs them.
    tree.make_room(64, Admission::Write).await.unwrap();
    tree.stats().counters.merges - merges_before
}

/// How the read under test is held at the raced leaf.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// Its completion is delayed: the device returns the leaf's old bytes.
    Delayed,
    /// Delayed and zeroed: the bytes are not the leaf's any more, as when
    /// its old place was reused while the read was in flight.
    DelayedAndDamaged,
}

/// Opens the filled tree cold, starts `read` (given the tree and a key of
/// the middle leaf) with that leaf's device read held, and while it waits
/// deletes the keys of every leaf but the first and the last, so that
/// merges join the middle leaf away. Returns what `read` returned.
fn race<R, F>(hold: Hold, read: R) -> F::Output
where
    R: FnOnce(Tree, Vec<u8>) -> F + 'static,
    F: Future + 'static,
    F::Output: 'static,
{
    let memory = memory_device(64 << 20, 5);
    let injector = Arc::new(FaultInjector::new(memory as Arc<dyn BlockDevice>));
    let devices = vec![Arc::clone(&injector) as Arc<dyn BlockDevice>];
    let (state, mut lsn) = fill(&devices);
    run(&devices, async move {
        let tree = Tree::open(DEV, REGION_FIRST_PAGE, 8192, &state, config()).await.unwrap();
        let leaves = leaves(&tree).await;
        let middle = leaves.len() / 2;
        assert!(middle >= 2, "{} leaves", leaves.len());
        let raced = leaves[middle].clone();
        let raced_id = raced.node.unwrap();
        let raced_key = raced.key.clone().unwrap();
        let first = REGION_FIRST_PAGE + raced.address;
        let held =
            injector.add(FaultRule::reads(first..first + raced.pages, Fault::Delay(LEAF_READ_HELD)).nth(1)).unwrap();
        if let Hold::DelayedAndDamaged = hold {
            injector.add(FaultRule::reads(first..first + raced.pages, Fault::Zero).nth(1)).unwrap();
        }
        let done = Rc::new(Cell::new(false));
        let reading = {
            let (tree, done) = (tree.clone(), Rc::clone(&done));
            spawn(async move {
                let out = read(tree, raced_key).await;
                done.set(true);
                out
            })
        };
        // The read walks down the (undelayed) internal nodes first.
        for _ in 0..YIELDS_TO_REACH_LEAF_MAX {
            if injector.fired(held) > 0 {
                break;
            }
            keel_reactor::yield_now().await;
        }
        assert_eq!(injector.fired(held), 1, "the read never read the leaf: the race was not run");
        // A join keeps the left leaf: emptying every leaf but the first and
        // the last joins each one between into the first.
        let low = leaves[1].key.clone().unwrap();
        let high = leaves[leaves.len() - 1].key.clone().unwrap();
        let merges = delete_and_merge(&tree, &mut lsn, &low, &high).await;
        assert!(merges > 0, "no merge: {:?}", tree.stats());
        assert!(!done.get(), "the read finished before the merges: the race was not run");
        let out = reading.await;
        let restarted = tree.stats().counters.reads_restarted;
        println!("{merges} merges while the read of leaf {raced_id} waited; {restarted} walks restarted");
        assert!(restarted > 0, "the read never found its leaf gone");
        checkpoint(&tree, lsn).await;
        let gone = leaves_named(&tree, raced_id).await == 0;
        assert!(gone, "leaf {raced_id} was not merged away: the race was not run");
        out
    })
}

async fn leaves_named(tree: &Tree, id: u64) -> usize {
    leaves(tree).await.iter().filter(|b| b.node == Some(id)).count()
}

/// The key's value before the deletes (the read may see it) or none.
fn check_get(k: &[u8], got: keel_tree::Result<Option<Vec<u8>>>) {
    let got = got.unwrap_or_else(|e| panic!("get of {}: {e}", String::from_utf8_lossy(k)));
    let i: u32 = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
    assert!(got.is_none() || got == Some(value(i)), "get: {got:?}");
}

/// A get raced against the merge, its leaf's read held as `hold` says.
fn get_race(hold: Hold) {
    let (k, got) = race(hold, |tree, k| async move {
        let got = tree.get(&k).await;
        (k, got)
    });
    check_get(&k, got);
}

#[test]
fn a_get_whose_leaf_is_merged_away_while_it_reads_walks_again() {
    get_race(Hold::Delayed);
}

#[test]
fn a_get_whose_leaf_read_returns_other_bytes_after_a_merge_walks_again() {
    get_race(Hold::DelayedAndDamaged);
}

#[test]
fn a_scan_whose_leaf_is_merged_away_while_it_reads_walks_again() {
    let out = race(Hold::Delayed, |tree, k| async move {
        let got = tree.scan(Bound::Included(&k), Bound::Unbounded, 20).await;
        (k, got)
    });
    let (k, got) = out;
    let got = got.unwrap_or_else(|e| panic!("scan from {}: {e}", String::from_utf8_lossy(&k)));
    assert!(!got.is_empty(), "keys past the deleted ones remain");
    for w in got.windows(2) {
        assert!(w[0].0 < w[1].0, "scan out of order");
    }
    for (k, v) in &got {
        let i: u32 = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
        assert_eq!(v, &value(i), "scan: a wrong value");
    }
}
