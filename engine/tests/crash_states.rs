//! Crash states at the engine's level: journal, per-shard trees, superblocks,
//! checkpoints and recovery together.
//!
//! A volume is first filled (unrecorded) until its journal ring is close to
//! its end, and closed. It is then reopened on the crash recorder and a
//! workload runs on two reactors: concurrent puts (inline and out of line),
//! deletes, merges, range deletes and multi-shard transactions, some waiting
//! for durability, with checkpoints taken while the writers go on; the
//! journal wraps around its ring during it. For every flush point (and the
//! point just before each flush completes, when the most is unflushed), images
//! the device could hold after a power loss are rebuilt — exhaustively when
//! few, else the durable-only one, the newest one and seeded samples in which
//! each unflushed write is present, absent or torn at sector granularity. Each
//! image is recovered by a real `Engine::open`, and:
//!
//! - the recovered state equals the oracle after some prefix of the committed
//!   operations in LSN order (so no transaction is partly there);
//! - that prefix holds every operation acknowledged durable before the crash;
//! - fsck is clean on every shard.
//!
//! For one image in `RECOVERY_CRASH_EVERY`, the recovery itself runs on the
//! crash recorder and is interrupted at each of its flush points: recovering
//! again must find exactly the same prefix.
//!
//! The number of states checked is printed. `KEEL_ENGINE_CRASH_STATES` sets
//! the target (default 10,000).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{describe_difference, state_hash, Change, Committed, Oracle};
use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig};
use keel_drivers::test_devices::{CrashImage, CrashLog, CrashMarker, CrashPoint, CrashRecorder, Event};
use keel_drivers::{BlockDevice, DmaPool};
use keel_engine::layout::PAGE_BYTES;
use keel_engine::testing::{start_on, TestEngineSpec};
use keel_engine::{Engine, EngineConfig, Lsn, MergeOp};
use keel_reactor::Runtime;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SHARDS: u32 = 3;
const CAPACITY_BYTES: u64 = 32 << 20;
const WRITERS: usize = 4;
const OPS_PER_WRITER: usize = 150;
/// Writer 0 takes a checkpoint every this many of its operations.
const CHECKPOINT_EVERY_OPS: usize = 25;
/// Keys of the recorded workload: `k0000` .. `k0299`.
const KEYS: u32 = 300;
/// The unrecorded fill leaves the journal's next write this far before the
/// ring's end, so the recorded workload wraps around it.
const FILL_LEFT_BYTES: u64 = 128 << 10;
/// Every this many images, a crash during its recovery is checked too.
const RECOVERY_CRASH_EVERY: usize = 200;
/// Every this many images, every key is also read with a get.
const POINT_READS_EVERY: usize = 25;
/// Images per flush point of an interrupted recovery.
const RECOVERY_CRASH_IMAGES: u64 = 4;
/// States checked per run unless `KEEL_ENGINE_CRASH_STATES` says otherwise.
const STATES_DEFAULT: u64 = 10_000;

fn config() -> EngineConfig {
    let mut config = EngineConfig::tiny_for_tests();
    // Checkpoints come from the workload (and from the journal filling up),
    // not from a clock: the run stays the same on a slow machine.
    config.checkpoint_interval = std::time::Duration::from_secs(3600);
    config
}

fn spec(reactors: usize) -> TestEngineSpec {
    TestEngineSpec {
        reactors,
        shards: SHARDS,
        capacity_bytes: CAPACITY_BYTES,
        dma_pool_bytes: 48 << 20,
        config: config(),
    }
}

fn device_config() -> MemoryDeviceConfig {
    MemoryDeviceConfig { capacity_bytes: CAPACITY_BYTES, ..MemoryDeviceConfig::default() }
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

/// Fills the journal of a fresh volume up to `FILL_LEFT_BYTES` before the end
/// of its ring, then closes it. Returns the device and what it holds.
fn fill(pool: &Arc<DmaPool>) -> (Arc<MemoryDevice>, Oracle, Lsn) {
    let device = Arc::new(MemoryDevice::new(&device_config(), Arc::clone(pool)));
    let (runtime, engine) = start_on(Arc::clone(&device) as Arc<dyn BlockDevice>, &spec(2), true).unwrap();
    let ring_bytes = engine.superblock().layout.journal_pages * PAGE_BYTES as u64;
    let writer = engine.clone();
    let (oracle, lsn) = runtime
        .call_blocking(0, move || async move {
            let mut oracle = Oracle::default();
            let mut lsn = 0;
            for round in 0u32.. {
                // One small durable put per round: each takes a journal page
                // of its own, and the trees stay small.
                let k = format!("fill{:02}", round % 60).into_bytes();
                let v = vec![b'a' + (round % 26) as u8; 90];
                lsn = writer.put(&k, v.clone()).await.unwrap();
                writer.wait_durable(lsn).await.unwrap();
                oracle.apply(&Change::Put(k, v));
                if round % 64 == 63 {
                    writer.checkpoint().await.unwrap();
                    let head = writer.superblock().journal_head_offset % ring_bytes;
                    if head + FILL_LEFT_BYTES + (256 << 10) >= ring_bytes {
                        break;
                    }
                }
            }
            (oracle, lsn)
        })
        .unwrap();
    engine.close(&runtime).unwrap();
    runtime.stop();
    (device, oracle, lsn)
}

/// What the workload's tasks share.
#[derive(Clone)]
struct Shared {
    engine: Engine,
    marker: CrashMarker,
    committed: Arc<Mutex<Vec<Committed>>>,
}

impl Shared {
    fn record(&self, lsn: Lsn, changes: Vec<Change>) {
        self.committed.lock().unwrap().push(Committed { lsn, changes });
    }
}

fn small_value(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.gen_range(1..90);
    let b = rng.gen_range(b'a'..=b'z');
    vec![b; len]
}

fn large_value(rng: &mut StdRng) -> Vec<u8> {
    (0..rng.gen_range(200..3000)).map(|_| rng.gen()).collect()
}

fn merge_op(rng: &mut StdRng) -> MergeOp {
    match rng.gen_range(0..4) {
        0 => MergeOp::Append(vec![b'+'; rng.gen_range(1..20)]),
        1 => MergeOp::AddI64(rng.gen_range(-50..50)),
        2 => MergeOp::FieldSet { field: vec![b'f', rng.gen_range(b'0'..b'4')], value: small_value(rng) },
        _ => MergeOp::PatchAt { offset: rng.gen_range(0..40), bytes: vec![b'#'; rng.gen_range(1..8)] },
    }
}

/// One writer: random operations, a third of them waited on for durability
/// (a mark records the acknowledgement), and, for writer 0, checkpoints.
async fn writer(shared: Shared, id: usize, seed: u64) {
    let engine = &shared.engine;
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..OPS_PER_WRITER {
        let k = key(rng.gen_range(0..KEYS));
        let (lsn, changes) = match rng.gen_range(0..100) {
            0..=29 => {
                let v = small_value(&mut rng);
                (engine.put(&k, v.clone()).await.unwrap(), vec![Change::Put(k, v)])
            }
            30..=39 => {
                let v = large_value(&mut rng);
                (engine.put(&k, v.clone()).await.unwrap(), vec![Change::Put(k, v)])
            }
            40..=52 => (engine.delete(&k).await.unwrap(), vec![Change::Delete(k)]),
            53..=69 => {
                let op = merge_op(&mut rng);
                (engine.merge(&k, op.clone()).await.unwrap(), vec![Change::Merge(k, op)])
            }
            70..=74 => {
                let start = rng.gen_range(0..KEYS);
                let end = key((start + rng.gen_range(1..12)).min(KEYS));
                let start = key(start);
                let lsn = engine.delete_range(&start, Some(&end)).await.unwrap();
                (lsn, vec![Change::DeleteRange(start, end)])
            }
            _ => transaction(engine, &mut rng).await,
        };
        shared.record(lsn, changes);
        if rng.gen_ratio(1, 3) {
            engine.wait_durable(lsn).await.unwrap();
            shared.marker.mark(&format!("acked {lsn}"));
        }
        if id == 0 && i % CHECKPOINT_EVERY_OPS == CHECKPOINT_EVERY_OPS / 2 {
            shared.marker.mark("checkpoint begin");
            engine.checkpoint().await.unwrap();
            shared.marker.mark("checkpoint end");
        }
    }
}

/// A transaction over 2-6 distinct keys (usually on several shards): puts,
/// out-of-line puts, deletes and merges, committed as one record.
async fn transaction(engine: &Engine, rng: &mut StdRng) -> (Lsn, Vec<Change>) {
    let mut keys: Vec<u32> = (0..rng.gen_range(2..=6)).map(|_| rng.gen_range(0..KEYS)).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut txn = engine.transaction();
    let mut changes = Vec::new();
    for k in keys.into_iter().map(key) {
        match rng.gen_range(0..10) {
            0..=4 => {
                let v = small_value(rng);
                txn.put(&k, v.clone()).unwrap();
                changes.push(Change::Put(k, v));
            }
            5 => {
                let v = large_value(rng);
                txn.put(&k, v.clone()).unwrap();
                changes.push(Change::Put(k, v));
            }
            6 | 7 => {
                txn.delete(&k).unwrap();
                changes.push(Change::Delete(k));
            }
            _ => {
                let op = merge_op(rng);
                txn.merge(&k, op.clone()).unwrap();
                changes.push(Change::Merge(k, op));
            }
        }
    }
    (txn.commit().await.unwrap(), changes)
}

/// Runs the recorded workload: `WRITERS` writers, half on each reactor.
fn run_workload(runtime: &Runtime, shared: Shared, seed: u64) {
    runtime
        .call_blocking(0, move || async move {
            let mut handles = Vec::new();
            for id in 0..WRITERS {
                let shared = shared.clone();
                let seed = seed * 100 + id as u64;
                handles.push(keel_reactor::spawn(async move {
                    if id % 2 == 0 {
                        writer(shared, id, seed).await;
                    } else {
                        keel_reactor::call_on(1, move || writer(shared, id, seed)).await.unwrap();
                    }
                }));
            }
            for h in handles {
                h.await;
            }
        })
        .unwrap();
}

/// The committed history: the state before the recorded run, then every
/// operation in LSN order, with the state's hash after each prefix.
struct History {
    base: Oracle,
    /// Every key the base or an operation put, deleted or merged.
    keys: std::collections::BTreeSet<Vec<u8>>,

    ops: Vec<Committed>,
    /// `(lsn, hash of the state after every op up to lsn)`, base first.
    prefix_hashes: Vec<(Lsn, u64)>,
}

impl History {
    fn new(base: Oracle, base_lsn: Lsn, mut ops: Vec<Committed>) -> Self {
        ops.sort_by_key(|c| c.lsn);
        let mut oracle = base.clone();
        let mut prefix_hashes = vec![(base_lsn, oracle.hash)];
        for c in &ops {
            oracle.apply_all(c);
            prefix_hashes.push((c.lsn, oracle.hash));
        }
        let mut keys: std::collections::BTreeSet<Vec<u8>> = base.map.keys().cloned().collect();
        keys.extend((0..KEYS).map(key));
        History { base, keys, ops, prefix_hashes }
    }

    fn state_at(&self, lsn: Lsn) -> Oracle {
        let mut oracle = self.base.clone();
        for c in self.ops.iter().take_while(|c| c.lsn <= lsn) {
            oracle.apply_all(c);
        }
        oracle
    }
}

/// Per crash point: the highest LSN acknowledged durable before it, from the
/// "acked" marks.
fn acked_before(log: &CrashLog, point: CrashPoint, base_lsn: Lsn) -> Lsn {
    let marks = log.marks();
    marks
        .iter()
        .filter(|(p, _)| *p <= point)
        .filter_map(|(_, label)| label.strip_prefix("acked ").map(|n| n.parse::<Lsn>().unwrap()))
        .max()
        .unwrap_or(base_lsn)
        .max(base_lsn)
}

/// Where a crash point falls with respect to checkpoints and the wrap.
#[derive(Debug, Default)]
struct Coverage {
    outside_checkpoint: u64,
    during_checkpoint: u64,
    after_wrap: u64,
    exhaustive_points: u64,
    sampled_points: u64,
}

/// The crash points to check, and for each whether a checkpoint was running
/// and whether the journal had wrapped by then.
fn crash_points(log: &CrashLog, journal_lbas: std::ops::Range<u64>) -> Vec<(CrashPoint, bool, bool)> {
    let mut points: Vec<CrashPoint> = Vec::new();
    for p in log.flush_points() {
        points.push(CrashPoint(p.0 - 1));
        points.push(p);
    }
    points.push(log.end());
    points.sort_unstable();
    points.dedup();
    let mut in_checkpoint = Vec::new();
    let mut wrapped = Vec::new();
    let (mut running, mut wrap, mut last_journal_lba) = (false, false, None::<u64>);
    let events = log.events();
    let mut next = points.iter().peekable();
    for seq in 0..=events.len() {
        while next.peek().is_some_and(|p| p.0 as usize == seq) {
            in_checkpoint.push(running);
            wrapped.push(wrap);
            next.next();
        }
        let Some(event) = events.get(seq) else { break };
        match event {
            Event::Mark { label } if &**label == "checkpoint begin" => running = true,
            Event::Mark { label } if &**label == "checkpoint end" => running = false,
            Event::WriteSubmitted { write } => {
                let lba = log.writes()[*write].lba;
                if journal_lbas.contains(&lba) {
                    wrap |= last_journal_lba.is_some_and(|last| lba < last);
                    last_journal_lba = Some(lba);
                }
            }
            _ => {}
        }
    }
    points.into_iter().zip(in_checkpoint).zip(wrapped).map(|((p, c), w)| (p, c, w)).collect()
}

/// Recovers `image` and checks it against the history. Returns the recovered
/// prefix's LSN.
fn check_image(image: &CrashImage, pool: &Arc<DmaPool>, history: &History, acked: Lsn, job: usize) -> Lsn {
    let device = Arc::new(image.to_device(Arc::clone(pool))) as Arc<dyn BlockDevice>;
    // Mostly one reactor (cheaper); every eighth image on two, so shards
    // recover on reactors other than the one that wrote them.
    let reactors = if job % 8 == 7 { 2 } else { 1 };
    recover_and_check(device, &image.id().to_string(), history, acked, reactors, job.is_multiple_of(POINT_READS_EVERY))
}

/// Recovers the volume on `device` and checks it; `id` names the image in
/// failure messages. Returns the LSN of the recovered prefix.
fn recover_and_check(
    device: Arc<dyn BlockDevice>,
    id: &str,
    history: &History,
    acked: Lsn,
    reactors: usize,
    point_reads: bool,
) -> Lsn {
    let (runtime, engine) =
        start_on(device, &spec(reactors), false).unwrap_or_else(|e| panic!("{id}: recovery failed: {e}"));
    let reader = engine.clone();
    let (entries, reports) = runtime
        .call_blocking(0, move || async move {
            let entries = reader.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).await;
            (entries, reader.fsck().await)
        })
        .unwrap();
    let entries = entries.unwrap_or_else(|e| panic!("{id}: scan after recovery failed: {e}"));
    let reports = reports.unwrap_or_else(|e| panic!("{id}: fsck after recovery failed: {e}"));
    for (shard, report) in reports.iter().enumerate() {
        assert!(report.is_clean(), "{id}: fsck of shard {shard}: {:?}", report.problems);
    }
    let lsn = recovered_prefix(&entries, id, history, acked);
    if point_reads {
        // Gets walk the tree from the root, not leaf ranges as scans do:
        // every key the run ever touched must read as the prefix says.
        let want = history.state_at(lsn).map;
        let keys: Vec<Vec<u8>> = history.keys.iter().cloned().collect();
        let reader = engine.clone();
        let got = runtime
            .call_blocking(0, move || async move {
                let mut got = Vec::with_capacity(keys.len());
                for k in keys {
                    let v = reader.get(&k).await;
                    got.push((k, v));
                }
                got
            })
            .unwrap();
        for (k, v) in got {
            let v = v.unwrap_or_else(|e| panic!("{id}: get after recovery failed: {e}"));
            assert_eq!(v.as_ref(), want.get(&k), "{id}: get {}", String::from_utf8_lossy(&k));
        }
    }
    drop(engine);
    runtime.stop();
    lsn
}

/// The LSN of the prefix of the history whose state `entries` is, at or
/// after `acked`; panics when there is none.
fn recovered_prefix(entries: &[(Vec<u8>, Vec<u8>)], id: &str, history: &History, acked: Lsn) -> Lsn {
    let hash = state_hash(entries.iter().map(|(k, v)| (k, v)));
    let candidates = history.prefix_hashes.iter().filter(|(lsn, h)| *h == hash && *lsn >= acked);
    for &(lsn, _) in candidates {
        let want = history.state_at(lsn);
        if want.entries() == entries {
            return lsn;
        }
    }
    let nearest = history.state_at(acked);
    panic!(
        "{id}: the recovered state is no prefix of the operations that includes every acknowledged one \
         (acknowledged up to LSN {acked}; against that prefix: {})",
        describe_difference(entries, &nearest)
    );
}

/// A crash during recovery: `image` is recovered on the crash recorder, and
/// at every flush point of that recovery and just before it (its checkpoint
/// after open writes nodes, tables and a superblock of the next epoch) a few
/// images are recovered again. Recovery writes nothing the next one depends on, so
/// each must come back to exactly the prefix the first one found.
fn check_crash_during_recovery(image: &CrashImage, pool: &Arc<DmaPool>, history: &History, acked: Lsn) -> u64 {
    let id = image.id();
    let recorder = Arc::new(CrashRecorder::over_memory(Arc::new(image.to_device(Arc::clone(pool)))));
    let first =
        recover_and_check(Arc::clone(&recorder) as Arc<dyn BlockDevice>, &id.to_string(), history, acked, 1, false);
    let log = recorder.log();
    let mut points: Vec<CrashPoint> = log.flush_points().iter().flat_map(|p| [CrashPoint(p.0 - 1), *p]).collect();
    points.push(log.end());
    points.dedup();
    let mut checked = 0;
    for state in log.states(points) {
        for nested in state.images(RECOVERY_CRASH_IMAGES) {
            let device = Arc::new(nested.to_device(Arc::clone(pool))) as Arc<dyn BlockDevice>;
            let name = format!("{id}, then a crash during its recovery at {}", nested.id());
            let again = recover_and_check(device, &name, history, acked, 1, false);
            let (a, b) = (history.state_at(first), history.state_at(again));
            assert!(a == b, "{name}: recovered LSN {again}, not the {first} of the recovery it interrupted");
            checked += 1;
        }
    }
    checked
}

/// Recovers and checks every image, on as many threads as there are cores
/// (at most two); returns how often each prefix was recovered.
fn check_all_images(jobs: &[(CrashImage, Lsn)], history: &History) -> (BTreeMap<Lsn, u64>, u64) {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let recovered = Mutex::new(BTreeMap::new());
    let nested = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let pool = Arc::new(DmaPool::for_tests(64 << 20));
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((image, acked)) = jobs.get(i) else { break };
                    let lsn = check_image(image, &pool, history, *acked, i);
                    *recovered.lock().unwrap().entry(lsn).or_default() += 1;
                    if i % RECOVERY_CRASH_EVERY == RECOVERY_CRASH_EVERY / 2 {
                        let n = check_crash_during_recovery(image, &pool, history, *acked);
                        nested.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (recovered.into_inner().unwrap(), nested.into_inner())
}

/// The fewest images per point such that every point gets that many (or all
/// it has) and the total reaches `target`.
fn per_point_budget(counts: &[u128], target: u64) -> u64 {
    let total = |b: u64| counts.iter().map(|&c| c.min(u128::from(b))).sum::<u128>();
    let (mut low, mut high) = (1u64, target.max(1));
    while low < high {
        let mid = low + (high - low) / 2;
        if total(mid) >= u128::from(target) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

#[test]
fn every_crash_state_recovers_a_durable_prefix_with_clean_trees() {
    let started = Instant::now();
    let target: u64 =
        std::env::var("KEEL_ENGINE_CRASH_STATES").ok().and_then(|v| v.parse().ok()).unwrap_or(STATES_DEFAULT);
    let pool = Arc::new(DmaPool::for_tests(64 << 20));
    let (device, base, base_lsn) = fill(&pool);
    let filled = started.elapsed();

    let recorder = Arc::new(CrashRecorder::over_memory(device));
    let (runtime, engine) = start_on(Arc::clone(&recorder) as Arc<dyn BlockDevice>, &spec(2), false).unwrap();
    let sb = engine.superblock();
    let journal_lbas = {
        let per_page = PAGE_BYTES as u64 / u64::from(recorder.info().block_size_bytes);
        sb.layout.journal_start_page * per_page..(sb.layout.journal_start_page + sb.layout.journal_pages) * per_page
    };
    let committed = Arc::new(Mutex::new(Vec::new()));
    let shared = Shared { engine: engine.clone(), marker: recorder.marker(), committed: Arc::clone(&committed) };
    run_workload(&runtime, shared, 1);
    drop(engine);
    runtime.stop();
    let ops = std::mem::take(&mut *committed.lock().unwrap());
    let op_count = ops.len();
    let history = History::new(base, base_lsn, ops);
    let log = recorder.log();
    assert!(!log.overflowed());
    let worked = started.elapsed();

    let points = crash_points(&log, journal_lbas);
    assert!(points.iter().any(|p| p.1), "some crash points fall inside a checkpoint");
    assert!(points.iter().any(|p| p.2), "the journal wrapped around its ring during the run");
    // Analyse every point first, then share the target out: points with
    // fewer images than their share give the rest to the others.
    let analysed: Vec<_> = points.iter().map(|p| (log.state_at(p.0), p.1, p.2)).collect();
    let counts: Vec<u128> = analysed.iter().map(|(s, _, _)| s.image_count()).collect();
    let budget = per_point_budget(&counts, target);
    let mut coverage = Coverage::default();
    let mut jobs = Vec::new();
    let mut per_point_max = 0u64;
    for (state, in_checkpoint, wrapped) in analysed {
        let acked = acked_before(&log, state.point(), base_lsn);
        let images = state.images(budget);
        if images.is_exhaustive() {
            coverage.exhaustive_points += 1;
        } else {
            coverage.sampled_points += 1;
        }
        let here = images.size_hint().0 as u64;
        per_point_max = per_point_max.max(here);
        if in_checkpoint {
            coverage.during_checkpoint += here;
        } else {
            coverage.outside_checkpoint += here;
        }
        if wrapped {
            coverage.after_wrap += here;
        }
        jobs.extend(images.map(|image| (image, acked)));
    }
    let states = jobs.len() as u64;
    let (recovered_lsns, nested) = check_all_images(&jobs, &history);
    let elapsed = started.elapsed();
    println!(
        "engine crash states: {states} images recovered and checked ({} of them also key by key) at {} crash points \
         ({} exhaustive, {} sampled, up to {per_point_max} per point); {} during a checkpoint, {} outside one, \
         {} after the journal wrapped; {op_count} operations, {} distinct recovered prefixes; \
         {nested} more images of crashes during the recovery of {} of them; \
         fill {:.1}s, workload {:.1}s, total {:.1}s",
        jobs.len().div_ceil(POINT_READS_EVERY),
        points.len(),
        coverage.exhaustive_points,
        coverage.sampled_points,
        coverage.during_checkpoint,
        coverage.outside_checkpoint,
        coverage.after_wrap,
        recovered_lsns.len(),
        jobs.iter().enumerate().filter(|(i, _)| i % RECOVERY_CRASH_EVERY == RECOVERY_CRASH_EVERY / 2).count(),
        filled.as_secs_f64(),
        (worked - filled).as_secs_f64(),
        elapsed.as_secs_f64()
    );
    assert!(states >= target, "{states} states checked, fewer than {target}");
}
