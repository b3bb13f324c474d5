//! Model-based tests: random sequences of puts (inline and out of line),
//! deletes, range deletes, merges, gets, scans, checkpoints and crashes,
//! checked against a BTreeMap oracle. Tiny nodes and a tiny cache force deep
//! trees, splits, merges, flushes and evictions. A crash reopens the tree
//! from the last durable checkpoint on a copy of the device as it is at the
//! crash (every later write present: the hardest case for space reuse),
//! after which the tree must equal the oracle as of that checkpoint, and
//! fsck must be clean.

#![allow(clippy::unwrap_used)]

mod common;

use std::ops::Bound;
use std::sync::Arc;

use common::{as_dyn, memory_device, memory_device_over, run, Oracle, DEV, REGION_FIRST_PAGE};
use keel_drivers::memory::MemoryDevice;
use keel_reactor::io;
use keel_tree::{Admission, MergeOp, Message, Tree, TreeConfig, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DEVICE_BYTES: u64 = 64 << 20;
const REGION_PAGES: u64 = 8192;

/// A checkpoint that was made durable: its state and what it must contain.
#[derive(Clone)]
struct Durable {
    state: [u8; 96],
    oracle: Oracle,
}

struct Run {
    rng: ChaCha8Rng,
    oracle: Oracle,
    lsn: u64,
    durable: Durable,
    /// A checkpoint being written while operations go on, and what it holds.
    writing: Option<(keel_reactor::JoinHandle<keel_tree::Result<[u8; 96]>>, Oracle)>,
    keys: u32,
    stats: RunStats,
}

#[derive(Debug, Default)]
struct RunStats {
    ops: u64,
    checkpoints: u64,
    crashes: u64,
    max_height: u8,
    splits: u64,
    merges: u64,
    evictions: u64,
    materializations: u64,
}

fn key(rng: &mut ChaCha8Rng, keys: u32) -> Vec<u8> {
    format!("k{:05}", rng.gen_range(0..keys)).into_bytes()
}

fn value(rng: &mut ChaCha8Rng, max: usize) -> Vec<u8> {
    let len = rng.gen_range(0..=max);
    (0..len).map(|_| rng.gen_range(b'a'..=b'z')).collect()
}

fn merge_op(rng: &mut ChaCha8Rng) -> MergeOp {
    match rng.gen_range(0..5) {
        0 => MergeOp::Append(value(rng, 40)),
        1 => MergeOp::PatchAt { offset: rng.gen_range(0..120), bytes: value(rng, 30) },
        2 => MergeOp::AddI64(rng.gen_range(-1000..1000)),
        3 => MergeOp::FieldSet { field: vec![b'f', rng.gen_range(b'0'..b'5')], value: value(rng, 20) },
        _ => MergeOp::FieldDelete { field: vec![b'f', rng.gen_range(b'0'..b'5')] },
    }
}

impl Run {
    /// One session on an open tree: random operations until a crash (or
    /// `ops` operations). Returns true when it ended in a crash.
    async fn session(&mut self, tree: &Tree, ops: u64) -> bool {
        let inline_max = tree.config().inline_value_max_bytes;
        for _ in 0..ops {
            self.stats.ops += 1;
            // Phases of growth and shrinkage, so merges happen too.
            let shrinking = (self.stats.ops / 700) % 2 == 1;
            let roll = self.rng.gen_range(0..1000);
            match roll {
                0..=349 if !shrinking => self.put(tree, inline_max).await,
                0..=49 => self.delete_range(tree).await,
                50..=349 => {
                    self.delete(tree).await;
                    self.churn(tree).await;
                }
                350..=449 => self.delete(tree).await,
                450..=469 => self.delete_range(tree).await,
                470..=599 => self.merge(tree).await,
                600..=799 => self.check_get(tree).await,
                800..=899 => self.check_scan(tree).await,
                900..=997 => {
                    if self.rng.gen_ratio(1, 4) {
                        self.checkpoint(tree).await;
                    } else {
                        self.check_get(tree).await;
                    }
                }
                _ => return true,
            }
        }
        false
    }

    async fn admit(&mut self, tree: &Tree, bytes: usize, admission: Admission) {
        tree.make_room(bytes, admission).await.expect("make_room");
        self.lsn += 1;
    }

    async fn put(&mut self, tree: &Tree, inline_max: usize) {
        let k = key(&mut self.rng, self.keys);
        let out_of_line = self.rng.gen_bool(0.1);
        let v = value(&mut self.rng, if out_of_line { 5000 } else { inline_max });
        if out_of_line && v.len() > inline_max {
            let e = tree.write_extent(&v).await.expect("write_extent");
            let m = Message::Put(Value::Extent(e));
            self.admit(tree, k.len() + 32, Admission::Write).await;
            tree.apply(self.lsn, &k, m.clone()).unwrap();
            self.oracle.apply(&k, &m, Some(&v));
        } else {
            let m = Message::Put(Value::Inline(v));
            self.admit(tree, k.len() + 64 + inline_max, Admission::Write).await;
            tree.apply(self.lsn, &k, m.clone()).unwrap();
            self.oracle.apply(&k, &m, None);
        }
    }

    /// Puts and deletes a filler key next to a random key: pushes buffered
    /// messages down to the leaves without growing the tree.
    async fn churn(&mut self, tree: &Tree) {
        let mut k = key(&mut self.rng, self.keys);
        k.push(b'~');
        let m = Message::Put(Value::Inline(vec![b'x'; 16]));
        self.admit(tree, k.len() + 64, Admission::Write).await;
        tree.apply(self.lsn, &k, m.clone()).unwrap();
        self.oracle.apply(&k, &m, None);
        self.admit(tree, k.len() + 8, Admission::Reclaim).await;
        tree.apply(self.lsn, &k, Message::Delete).unwrap();
        self.oracle.apply(&k, &Message::Delete, None);
    }

    async fn delete(&mut self, tree: &Tree) {
        let k = key(&mut self.rng, self.keys);
        self.admit(tree, k.len() + 8, Admission::Reclaim).await;
        tree.apply(self.lsn, &k, Message::Delete).unwrap();
        self.oracle.apply(&k, &Message::Delete, None);
    }

    async fn delete_range(&mut self, tree: &Tree) {
        let a = key(&mut self.rng, self.keys);
        let width = self.rng.gen_range(1..self.keys / 8 + 2);
        let b = format!("k{:05}", (String::from_utf8_lossy(&a[1..]).parse::<u32>().unwrap() + width)).into_bytes();
        self.admit(tree, a.len() + b.len() + 8, Admission::Reclaim).await;
        tree.apply_delete_range(self.lsn, &a, Some(&b)).unwrap();
        self.oracle.delete_range(&a, &b);
    }

    async fn merge(&mut self, tree: &Tree) {
        let k = key(&mut self.rng, self.keys);
        let m = Message::Merge(merge_op(&mut self.rng));
        self.admit(tree, k.len() + 128, Admission::Write).await;
        tree.apply(self.lsn, &k, m.clone()).unwrap();
        self.oracle.apply(&k, &m, None);
    }

    async fn check_get(&mut self, tree: &Tree) {
        let k = key(&mut self.rng, self.keys);
        let got = tree.get(&k).await.expect("get");
        assert_eq!(got.as_deref(), self.oracle.map.get(&k).map(Vec::as_slice), "get {}", String::from_utf8_lossy(&k));
    }

    async fn check_scan(&mut self, tree: &Tree) {
        let a = key(&mut self.rng, self.keys);
        let b = key(&mut self.rng, self.keys);
        let limit = self.rng.gen_range(1..60);
        let start = match self.rng.gen_range(0..3) {
            0 => Bound::Included(a.as_slice()),
            1 => Bound::Excluded(a.as_slice()),
            _ => Bound::Unbounded,
        };
        let end = match self.rng.gen_range(0..3) {
            0 => Bound::Included(b.as_slice()),
            1 => Bound::Excluded(b.as_slice()),
            _ => Bound::Unbounded,
        };
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) = (start, end) {
            if s > e || (s == e && !matches!((start, end), (Bound::Included(_), Bound::Included(_)))) {
                return;
            }
        }
        let got = tree.scan(start, end, limit).await.expect("scan");
        assert_eq!(got, self.oracle.scan(start, end, limit), "scan {start:?}..{end:?} limit {limit}");
    }

    /// Finishes the checkpoint in flight (if any) and starts the next one,
    /// whose writing overlaps the operations that follow.
    async fn checkpoint(&mut self, tree: &Tree) {
        self.finish_checkpoint(tree).await;
        let frozen = tree.freeze(self.lsn);
        let writer = {
            let tree = tree.clone();
            keel_reactor::spawn(async move { tree.write_checkpoint(frozen).await })
        };
        self.writing = Some((writer, self.oracle.clone()));
        if self.rng.gen_bool(0.3) {
            self.finish_checkpoint(tree).await;
        }
    }

    async fn finish_checkpoint(&mut self, tree: &Tree) {
        let Some((writer, oracle)) = self.writing.take() else { return };
        let state = writer.await.expect("write_checkpoint");
        io::flush(DEV).await.expect("flush");
        tree.checkpoint_durable();
        self.durable = Durable { state, oracle };
        self.stats.checkpoints += 1;
    }

    fn note(&mut self, tree: &Tree) {
        let s = tree.stats();
        self.stats.max_height = self.stats.max_height.max(s.height);
        self.stats.splits += s.counters.leaf_splits + s.counters.internal_splits;
        self.stats.merges += s.counters.merges;
        self.stats.evictions += s.counters.evictions_dirty;
        self.stats.materializations += s.counters.materializations;
    }
}

/// Checks that the tree holds exactly `oracle` (full scan and point gets),
/// and that fsck finds the durable checkpoint clean.
async fn check_all(tree: &Tree, oracle: &Oracle) {
    let all = tree.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).await.expect("full scan");
    let want: Vec<_> = oracle.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(all.len(), want.len(), "number of keys after recovery");
    assert_eq!(all, want);
    for (k, v) in oracle.map.iter().take(50) {
        assert_eq!(tree.get(k).await.unwrap().as_ref(), Some(v));
    }
    let report = tree.fsck(&mut |_| {}).await.expect("fsck");
    assert!(report.is_clean(), "fsck: {:?}", report.problems);
}

fn run_seed(seed: u64, config: TreeConfig, ops_per_session: u64, sessions: u32) -> RunStats {
    let mut r = Run {
        rng: ChaCha8Rng::seed_from_u64(seed),
        oracle: Oracle::default(),
        lsn: 0,
        durable: Durable { state: [0u8; 96], oracle: Oracle::default() },
        writing: None,
        keys: 400 + (seed % 5) as u32 * 300,
        stats: RunStats::default(),
    };
    let mut device: Arc<MemoryDevice> = memory_device(DEVICE_BYTES, seed);
    for _ in 0..sessions {
        let durable = r.durable.clone();
        let cfg = config.clone();
        let devices = as_dyn(&device);
        let (crashed, back) = run(&devices, async move {
            let mut run = r;
            let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &durable.state, cfg).await.expect("open");
            check_all(&tree, &durable.oracle).await;
            assert_eq!(tree.lsn_applied(), run.lsn_durable());
            run.oracle = durable.oracle.clone();
            let crashed = run.session(&tree, ops_per_session).await;
            if !crashed {
                run.finish_checkpoint(&tree).await;
            }
            // A crash abandons a checkpoint still being written.
            run.writing = None;
            run.note(&tree);
            (crashed, run)
        });
        r = back;
        r.stats.crashes += u64::from(crashed);
        // The crash (or end of session): everything written so far is on the
        // copy; recovery must see only the durable checkpoint.
        let image = Arc::new(device.store().deep_clone());
        device = memory_device_over(DEVICE_BYTES, seed.wrapping_add(r.stats.crashes), image);
        r.lsn = r.lsn_durable();
    }
    r.stats
}

impl Run {
    fn lsn_durable(&self) -> u64 {
        keel_tree_state_lsn(&self.durable.state)
    }
}

/// The LSN in a shard state (bytes 8..16, little-endian; 0 for all-zero).
fn keel_tree_state_lsn(state: &[u8; 96]) -> u64 {
    u64::from_le_bytes(state[8..16].try_into().unwrap())
}

#[test]
fn random_operations_match_the_oracle_across_checkpoints_and_crashes() {
    let mut totals = RunStats::default();
    for seed in 0..24 {
        let mut config = TreeConfig::tiny_for_tests();
        // Near the smallest cache these node sizes allow, so that dirty
        // nodes are evicted (compact buffers fit the tiny default).
        config.cache_bytes = 32 << 10;
        if seed % 2 == 1 {
            // Leaves larger than internal nodes: flushes reach them often.
            config.leaf_bytes = 1024;
            config.internal_bytes = 640;
            config.fanout_max = 6;
        }
        // Half the seeds without the background task: writers do all of
        // the maintenance themselves (both modes keep the same answers).
        config.background_maintenance = seed % 4 < 2;
        let s = run_seed(seed, config, 400, 6);
        totals.ops += s.ops;
        totals.checkpoints += s.checkpoints;
        totals.crashes += s.crashes;
        totals.max_height = totals.max_height.max(s.max_height);
        totals.splits += s.splits;
        totals.merges += s.merges;
        totals.evictions += s.evictions;
        totals.materializations += s.materializations;
    }
    println!("model: {totals:?}");
    assert!(totals.max_height >= 3, "trees must get deep: {totals:?}");
    assert!(totals.splits > 0 && totals.merges > 0 && totals.evictions > 0, "{totals:?}");
}
