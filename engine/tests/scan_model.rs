//! Ordered scans across shards against a BTreeMap oracle: random puts (inline
//! and out of line), deletes, merges and range deletes on an engine with tiny
//! nodes (deep trees, messages buffered at every level, evictions), with
//! checkpoints running while scans go on. Scans use random bounds (included,
//! excluded, unbounded, reversed, empty) and limits (0, 1, small, around the
//! per-shard batch, unlimited). Some keys are prefix-routed, so one shard can
//! hold a whole run of the range while the others hold nothing.

use std::collections::BTreeMap;
use std::ops::Bound;

use keel_engine::testing::{memory_engine, TestEngineSpec};
use keel_engine::{Engine, EngineConfig, MergeOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Oracle = BTreeMap<Vec<u8>, Vec<u8>>;

fn key(rng: &mut StdRng) -> Vec<u8> {
    if rng.gen_bool(0.3) {
        // Prefix-routed: every key of one identifier lives on one shard.
        let mut k = vec![0x90u8];
        k.extend_from_slice(&rng.gen_range(0..3u64).to_be_bytes());
        k.extend_from_slice(format!("{:03}", rng.gen_range(0..150)).as_bytes());
        k
    } else {
        format!("k{:04}", rng.gen_range(0..500)).into_bytes()
    }
}

fn bound(rng: &mut StdRng) -> Bound<Vec<u8>> {
    match rng.gen_range(0..5) {
        0 | 1 => Bound::Included(key(rng)),
        2 | 3 => Bound::Excluded(key(rng)),
        _ => Bound::Unbounded,
    }
}

fn in_bounds(k: &[u8], start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    let above = match start {
        Bound::Included(s) => k >= s.as_slice(),
        Bound::Excluded(s) => k > s.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match end {
        Bound::Included(e) => k <= e.as_slice(),
        Bound::Excluded(e) => k < e.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

fn expected(oracle: &Oracle, start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    oracle.iter().filter(|(k, _)| in_bounds(k, start, end)).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// What one run checked.
#[derive(Debug, Default)]
struct Counts {
    scans: u64,
    scans_during_checkpoint: u64,
    entries_compared: u64,
    empty_ranges: u64,
}

async fn check_scan(engine: &Engine, oracle: &Oracle, rng: &mut StdRng, counts: &mut Counts, checkpointing: bool) {
    let (start, end) = (bound(rng), bound(rng));
    let limit = match rng.gen_range(0..6) {
        0 => 0,
        1 => 1,
        2 => rng.gen_range(2..12),
        3 => rng.gen_range(12..40),
        4 => rng.gen_range(40..200),
        _ => usize::MAX,
    };
    let got = engine.scan(start.clone(), end.clone(), limit).await.expect("scan");
    let want = expected(oracle, &start, &end, limit);
    assert_eq!(got, want, "scan {start:?}..{end:?} limit {limit}");
    counts.scans += 1;
    counts.scans_during_checkpoint += u64::from(checkpointing);
    counts.entries_compared += got.len() as u64;
    counts.empty_ranges += u64::from(want.is_empty());
}

async fn run(engine: Engine, seed: u64) -> Counts {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut oracle = Oracle::new();
    let mut counts = Counts::default();
    let mut checkpoint: Option<keel_reactor::JoinHandle<Result<(), keel_engine::EngineError>>> = None;
    let inline_max = engine.config().tree.inline_value_max_bytes;
    for i in 0..2500u32 {
        let k = key(&mut rng);
        match rng.gen_range(0..100) {
            0..=39 => {
                let len = if rng.gen_bool(0.1) { inline_max + rng.gen_range(1..400) } else { rng.gen_range(0..40) };
                let v: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
                engine.put(&k, v.clone()).await.unwrap();
                oracle.insert(k, v);
            }
            40..=49 => {
                engine.delete(&k).await.unwrap();
                oracle.remove(&k);
            }
            50..=61 => {
                engine.merge(&k, MergeOp::Append(vec![b'+'; 3])).await.unwrap();
                oracle.entry(k).or_default().extend_from_slice(b"+++");
            }
            62..=64 => {
                let other = key(&mut rng);
                let (a, b) = if k <= other { (k, other) } else { (other, k) };
                engine.delete_range(&a, Some(&b)).await.unwrap();
                oracle.retain(|key, _| key < &a || key >= &b);
            }
            65..=67 => {
                if checkpoint.as_ref().is_none_or(|c| c.is_finished()) {
                    if let Some(done) = checkpoint.take() {
                        done.await.expect("checkpoint");
                    }
                    let e = engine.clone();
                    checkpoint = Some(keel_reactor::spawn(async move { e.checkpoint().await }));
                }
            }
            _ => {
                let checkpointing = checkpoint.as_ref().is_some_and(|c| !c.is_finished());
                check_scan(&engine, &oracle, &mut rng, &mut counts, checkpointing).await;
            }
        }
    }
    if let Some(done) = checkpoint.take() {
        done.await.expect("checkpoint");
    }
    let all = engine.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).await.unwrap();
    assert_eq!(all, oracle.into_iter().collect::<Vec<_>>());
    counts
}

#[test]
fn scans_across_shards_match_a_btreemap() {
    for (seed, shards) in [(1u64, 5u32), (2, 1), (3, 8)] {
        let spec = TestEngineSpec { reactors: 2, shards, config: EngineConfig::tiny_for_tests(), ..Default::default() };
        let (runtime, engine, _) = memory_engine(&spec);
        let worker = engine.clone();
        let counts = runtime.call_blocking(1, move || run(worker, seed)).unwrap();
        println!("scan model, seed {seed}, {shards} shards: {counts:?}");
        assert!(counts.scans > 400 && counts.scans_during_checkpoint > 0 && counts.empty_ranges > 0, "{counts:?}");
        engine.close(&runtime).unwrap();
        runtime.stop();
    }
}
