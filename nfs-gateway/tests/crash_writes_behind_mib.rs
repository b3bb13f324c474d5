//! Crash states of 1 MiB writes behind (the Linux client's WRITE size, cut
//! per chunk and written together) on two reactors and four shards, with a
//! FILE_SYNC WRITE to a second file (on the other reactor) and, every other
//! round, a checkpoint while the writes behind's data is still in flight.
//! Rounds of four UNSTABLE 1 MiB WRITEs from DMA memory to file A (slots
//! chosen at random), then the FILE_SYNC WRITE of one 64 KiB chunk of file
//! B, then a COMMIT of A. After a crash at any point, recovery must be fsck
//! clean and:
//! - each 1 MiB slot of A holds one WRITE's data whole (a WRITE is one
//!   transaction) or its committed content, never data not written there;
//! - once a round's COMMIT was answered, every slot holds that round's or
//!   a later round's data (every COMMITted byte survives);
//! - once the FILE_SYNC reply of a round was given, B's chunk holds it.
//!
//! `KEEL_NFS_CRASH_IMAGES` sets the images tried per crash point (default 8).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_drivers::test_devices::{CrashMarker, CrashRecorder};
use keel_drivers::{BlockDevice, DmaPool};
use keel_engine::testing::{start_on, TestEngineSpec};
use keel_engine::{route, EngineConfig, TreeConfig};
use keel_nfs::fs::perm::Cred;
use keel_nfs::fs::{CreateMode, FileType, InodeRef, NodeSpec, SetAttrs, StableHow, WriteData};
use keel_nfs::{Fs, FsOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEEDS: u64 = 2;
const ROUNDS: usize = 8;
const WRITES_PER_ROUND: usize = 4;
const CHUNK: usize = 65_536;
const MIB: usize = 16 * CHUNK;
const SLOTS: u64 = 5;
const REACTORS: usize = 2;
const POOL_BYTES: usize = 64 << 20;

fn spec() -> TestEngineSpec {
    TestEngineSpec {
        reactors: REACTORS,
        shards: 4,
        capacity_bytes: 128 << 20,
        dma_pool_bytes: POOL_BYTES,
        config: EngineConfig {
            tree: TreeConfig { leaf_bytes: 2048, internal_bytes: 4096, fanout_max: 8, ..TreeConfig::default() },
            ..EngineConfig::default()
        },
    }
}

/// The byte data written by `tag` is filled with (0 is a hole's).
fn fill(tag: usize) -> u8 {
    (tag % 255 + 1) as u8
}

struct Run {
    rounds: Vec<Vec<(u64, usize)>>,
    committed: Vec<BTreeMap<u64, usize>>,
    a: InodeRef,
    b: InodeRef,
}

async fn make(fs: &Fs, dir: InodeRef, name: &str, ftype: FileType) -> InodeRef {
    let spec = NodeSpec::of(ftype, SetAttrs { mode: Some(0o755), ..SetAttrs::default() });
    let done = fs.make(Cred::root(), dir, name.into(), spec, CreateMode::Guarded).await.unwrap();
    fs.wait_durable(done.lsn).await.unwrap();
    InodeRef { ino: done.value.0.ino, generation: done.value.0.generation }
}

fn reactor(fs: &Fs, f: InodeRef) -> usize {
    route::reactor_of(fs.shard_of(f.ino), REACTORS)
}

/// File B's tag in round `round` (after every tag of A).
fn b_tag(round: usize) -> usize {
    ROUNDS * WRITES_PER_ROUND + round + 1
}

async fn workload(fs: Fs, seed: u64, marker: CrashMarker) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let a = make(&fs, fs.root(), "a", FileType::Regular).await;
    // A file's inode is on its directory's shard; new directories go round
    // the shards: B goes in the first one on the other reactor.
    let mut dir = make(&fs, fs.root(), "d0", FileType::Directory).await;
    for i in 1..8 {
        if reactor(&fs, dir) != reactor(&fs, a) {
            break;
        }
        dir = make(&fs, fs.root(), &format!("d{i}"), FileType::Directory).await;
    }
    let b = make(&fs, dir, "b", FileType::Regular).await;
    assert_ne!(reactor(&fs, a), reactor(&fs, b), "B is on the other reactor");
    let mut contents = BTreeMap::new();
    let mut run = Run { rounds: Vec::new(), committed: Vec::new(), a, b };
    for round in 0..ROUNDS {
        marker.mark(&format!("start {round}"));
        let mut written = Vec::new();
        for i in 0..WRITES_PER_ROUND {
            let (slot, tag) = (rng.gen_range(0..SLOTS), round * WRITES_PER_ROUND + i + 1);
            let mut buf = fs.engine().value_buf(MIB).unwrap();
            buf.fill(fill(tag));
            let at = slot * MIB as u64;
            let w = fs.write(Cred::root(), a, at, WriteData::Dma(buf), StableHow::Unstable).await.unwrap();
            // Within the budget (8 MiB per reactor): answered before its commit.
            assert!(w.wcc.after.is_none(), "went behind");
            written.push((slot, tag));
            contents.insert(slot, tag);
        }
        // While A's writes behind are in flight: a FILE_SYNC WRITE of B,
        // and every other round a checkpoint.
        let sync = vec![fill(b_tag(round)); CHUNK];
        let w = fs.write(Cred::root(), b, (round * CHUNK) as u64, sync, StableHow::FileSync).await.unwrap();
        assert_eq!(w.committed, StableHow::FileSync);
        marker.mark(&format!("synced {round}"));
        if round % 2 == 1 {
            fs.engine().checkpoint().await.unwrap();
        }
        fs.commit(a).await.unwrap();
        marker.mark(&format!("committed {round}"));
        run.rounds.push(written);
        run.committed.push(contents.clone());
    }
    run
}

/// Per slot of A, the tag it holds (`None`: zeros); per chunk of B, too.
type Recovered = Option<(BTreeMap<u64, Option<usize>>, Vec<Option<usize>>)>;

/// The tag `got` is uniformly filled with; panics on mixed bytes.
fn tag_of(got: &[u8], what: &str) -> Option<usize> {
    let first = got.first().copied().unwrap_or(0);
    assert!(got.iter().all(|&x| x == first), "{what} holds mixed bytes");
    (first != 0).then(|| (1..=b_tag(ROUNDS)).find(|&t| fill(t) == first).unwrap())
}

fn recover(device: Arc<dyn BlockDevice>, a: InodeRef, b: InodeRef) -> (Vec<String>, Recovered) {
    let (runtime, engine) = start_on(device, &spec(), false).unwrap();
    let got = runtime
        .call_blocking(0, move || async move {
            let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
            let report = fs.fsck().await.unwrap();
            if fs.getattr(a).await.is_err() || fs.getattr(b).await.is_err() {
                return (report.problems, None);
            }
            let mut slots = BTreeMap::new();
            for slot in 0..SLOTS {
                let got = fs.read(Cred::root(), a, slot * MIB as u64, MIB as u32).await.unwrap().data;
                slots.insert(slot, tag_of(&got, &format!("slot {slot}")));
            }
            let mut chunks = Vec::new();
            for round in 0..ROUNDS {
                let got = fs.read(Cred::root(), b, (round * CHUNK) as u64, CHUNK as u32).await.unwrap().data;
                chunks.push(tag_of(&got, &format!("B's chunk {round}")));
            }
            (report.problems, Some((slots, chunks)))
        })
        .unwrap();
    runtime.stop();
    got
}

fn check(run: &Run, marks: &[&str], slots: &BTreeMap<u64, Option<usize>>, b: &[Option<usize>], context: &str) {
    let last = |kind: &str| marks.iter().filter_map(|m| m.strip_prefix(kind)?.trim().parse::<usize>().ok()).max();
    let committed = last("committed ");
    let started = last("start ").unwrap_or(0);
    let empty = BTreeMap::new();
    let base = committed.map_or(&empty, |r| &run.committed[r]);
    let later = committed.map_or(0, |r| r + 1);
    for (&slot, &got) in slots {
        let mut allowed: Vec<Option<usize>> = vec![base.get(&slot).copied()];
        for round in later..=started.min(ROUNDS - 1) {
            allowed.extend(run.rounds[round].iter().filter(|(s, _)| *s == slot).map(|(_, t)| Some(*t)));
        }
        assert!(allowed.contains(&got), "{context}: slot {slot} holds {got:?}, allowed {allowed:?}");
    }
    let synced = last("synced ");
    for (round, &got) in b.iter().enumerate() {
        if synced.is_some_and(|s| round <= s) {
            assert_eq!(got, Some(b_tag(round)), "{context}: B's FILE_SYNC chunk {round} lost");
        } else {
            assert!(got.is_none() || got == Some(b_tag(round)), "{context}: B's chunk {round} holds {got:?}");
        }
    }
}

#[test]
fn mib_writes_behind_with_file_sync_and_checkpoints_in_flight_lose_nothing_acknowledged() {
    let per_point: u64 = std::env::var("KEEL_NFS_CRASH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let mut images_checked = 0u64;
    for seed in 0..SEEDS {
        let memory = common::formatted_memory(&spec());

        let rec = Arc::new(CrashRecorder::over_memory(memory));
        let marker = rec.marker();
        let (runtime, engine) = start_on(Arc::clone(&rec) as Arc<dyn BlockDevice>, &spec(), false).unwrap();
        let run = runtime
            .call_blocking(0, move || async move {
                let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
                workload(fs, seed, marker).await
            })
            .unwrap();
        runtime.stop();

        let log = rec.log();
        assert!(!log.overflowed());
        let mut points = log.flush_points_and_end();
        let every = log.every_point();
        points.extend(every.iter().step_by((every.len() / 200).max(1)).copied());
        points.sort_unstable();
        points.dedup();
        let pool = Arc::new(DmaPool::for_tests(POOL_BYTES));
        for state in log.states(points) {
            let marks = log.marks_before(state.point());
            for image in state.images(per_point) {
                let device = Arc::new(image.to_device(Arc::clone(&pool))) as Arc<dyn BlockDevice>;
                let (problems, files) = recover(device, run.a, run.b);
                let context = format!("seed {seed}, crash point {:?}, image {:?}", state.point(), image.id());
                assert!(problems.is_empty(), "{context}: fsck: {problems:#?}");
                match files {
                    Some((slots, b)) => check(&run, &marks, &slots, &b, &context),
                    None => assert!(!marks.iter().any(|m| m.starts_with("start ")), "{context}: a file is gone"),
                }
                images_checked += 1;
            }
        }
    }
    println!("1 MiB writes behind: {images_checked} crash images recovered, fsck'd and checked");
    assert!(images_checked >= 3_000, "{images_checked} crash images checked");
}
