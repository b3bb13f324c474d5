//! Crash states of WRITEs answered before their commit (writes behind,
//! `fs/behind.rs`). Rounds of eight UNSTABLE 64 KiB WRITEs to one file
//! (chunks chosen at random, so rounds overwrite each other's chunks and
//! extend the file), each answered before its data is written, then a
//! COMMIT, run on an engine over the crash recorder, with checkpoints
//! between some rounds. After a crash at any point, the recovered file
//! must be fsck clean and:
//! - every chunk holds a content that chunk really had: its content at the
//!   last COMMIT answered before the crash, or one written to it after that
//!   COMMIT (so no chunk names data that was never written there);
//! - once a round's COMMIT was answered, every chunk holds what that round
//!   or a later one wrote (nothing acknowledged durable is lost);
//! - the size is at least the size at that COMMIT and covers every chunk
//!   holding data.
//!
//! `KEEL_NFS_CRASH_IMAGES` sets the images tried per crash point (default 8).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_drivers::test_devices::{CrashMarker, CrashRecorder};
use keel_drivers::{BlockDevice, DmaPool};
use keel_engine::testing::{start_on, TestEngineSpec};
use keel_engine::{EngineConfig, TreeConfig};
use keel_nfs::fs::perm::Cred;
use keel_nfs::fs::{CreateMode, FileType, InodeRef, NodeSpec, SetAttrs, StableHow, WriteData};
use keel_nfs::{Fs, FsOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEEDS: u64 = 3;
const ROUNDS: usize = 12;
const WRITES_PER_ROUND: usize = 8;
const CHUNK: usize = 65_536;
const CHUNKS: u64 = 12;

fn spec() -> TestEngineSpec {
    TestEngineSpec {
        reactors: 1,
        shards: 2,
        capacity_bytes: 64 << 20,
        dma_pool_bytes: 16 << 20,
        config: EngineConfig {
            tree: TreeConfig { leaf_bytes: 2048, internal_bytes: 4096, fanout_max: 8, ..TreeConfig::default() },
            ..EngineConfig::default()
        },
    }
}

/// The byte a chunk written by `tag` is filled with (0 is a hole's).
fn fill(tag: usize) -> u8 {
    (tag % 255 + 1) as u8
}

/// What the run wrote: per round, the chunks written (with their tags),
/// and the contents and size once that round was committed.
struct Run {
    rounds: Vec<Vec<(u64, usize)>>,
    committed: Vec<(BTreeMap<u64, usize>, u64)>,
    file: InodeRef,
}

async fn workload(fs: Fs, seed: u64, marker: CrashMarker) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let spec = NodeSpec::of(FileType::Regular, SetAttrs { mode: Some(0o644), ..SetAttrs::default() });
    let done = fs.make(Cred::root(), fs.root(), b"f".to_vec(), spec, CreateMode::Guarded).await.unwrap();
    fs.wait_durable(done.lsn).await.unwrap();
    let file = InodeRef { ino: done.value.0.ino, generation: done.value.0.generation };
    let (mut contents, mut size) = (BTreeMap::new(), 0u64);
    let mut run = Run { rounds: Vec::new(), committed: Vec::new(), file };
    for round in 0..ROUNDS {
        if round % 5 == 4 {
            fs.engine().checkpoint().await.unwrap();
        }
        marker.mark(&format!("start {round}"));
        let mut written = Vec::new();
        for i in 0..WRITES_PER_ROUND {
            let (chunk, tag) = (rng.gen_range(0..CHUNKS), round * WRITES_PER_ROUND + i + 1);
            // Half from DMA memory (as the connection hands 64 KiB WRITEs
            // over), half from the heap.
            let data = match fs.engine().value_buf(CHUNK).filter(|_| i % 2 == 0) {
                Some(mut buf) => {
                    buf.fill(fill(tag));
                    WriteData::Dma(buf)
                }
                None => WriteData::Bytes(vec![fill(tag); CHUNK]),
            };
            let w = fs.write(Cred::root(), file, chunk * CHUNK as u64, data, StableHow::Unstable).await.unwrap();
            assert!(w.wcc.after.is_none(), "answered before its commit (a reply with attributes waited for it)");
            written.push((chunk, tag));
            contents.insert(chunk, tag);
            size = size.max((chunk + 1) * CHUNK as u64);
        }
        fs.commit(file).await.unwrap();
        marker.mark(&format!("committed {round}"));
        run.rounds.push(written);
        run.committed.push((contents.clone(), size));
    }
    run
}

/// What recovery left of the file: its size and, per chunk, the tag it
/// holds (`None` for a hole or zeros; a chunk of mixed bytes fails the test).
type Recovered = Option<(u64, BTreeMap<u64, Option<usize>>)>;

/// Recovers the file system on `device`: fsck's problems and the file
/// (`None` if it does not exist).
fn recover(device: Arc<dyn BlockDevice>, file: InodeRef) -> (Vec<String>, Recovered) {
    let (runtime, engine) = start_on(device, &spec(), false).unwrap();
    let got = runtime
        .call_blocking(0, move || async move {
            let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
            let report = fs.fsck().await.unwrap();
            let Ok(attr) = fs.getattr(file).await else { return (report.problems, None) };
            let size = attr.size;
            let mut chunks = BTreeMap::new();
            for chunk in 0..CHUNKS {
                let got = fs.read(Cred::root(), file, chunk * CHUNK as u64, CHUNK as u32).await.unwrap().data;
                let first = got.first().copied().unwrap_or(0);
                assert!(got.iter().all(|&b| b == first), "chunk {chunk} holds mixed bytes");
                let tag = (first != 0).then(|| (1..=ROUNDS * WRITES_PER_ROUND).find(|&t| fill(t) == first).unwrap());
                chunks.insert(chunk, tag);
            }
            (report.problems, Some((size, chunks)))
        })
        .unwrap();
    runtime.stop();
    got
}

/// Checks one recovered file against the run, given the marks before the
/// crash point; panics with `context` on a violation.
fn check(run: &Run, marks: &[&str], size: u64, chunks: &BTreeMap<u64, Option<usize>>, context: &str) {
    let last = |kind: &str| marks.iter().filter_map(|m| m.strip_prefix(kind)?.trim().parse::<usize>().ok()).max();
    let committed = last("committed ");
    let started = last("start ").unwrap_or(0);
    let empty = (BTreeMap::new(), 0);
    let (base, base_size) = committed.map_or(&empty, |r| &run.committed[r]);
    let later = committed.map_or(0, |r| r + 1);
    for (&chunk, &got) in chunks {
        // Tags this chunk may hold: its committed one, or any written to it
        // in a round not yet committed that had started.
        let mut allowed: Vec<Option<usize>> = vec![base.get(&chunk).copied()];
        for round in later..=started.min(ROUNDS - 1) {
            allowed.extend(run.rounds[round].iter().filter(|(c, _)| *c == chunk).map(|(_, t)| Some(*t)));
        }
        assert!(allowed.contains(&got), "{context}: chunk {chunk} holds {got:?}, allowed {allowed:?}");
        if got.is_some() {
            assert!(size >= (chunk + 1) * CHUNK as u64, "{context}: size {size} does not cover chunk {chunk}");
        }
    }
    assert!(size >= *base_size, "{context}: size {size} below the committed {base_size}");
}

#[test]
fn writes_answered_before_their_commit_lose_nothing_committed_and_name_only_written_data() {
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
        points.extend(every.iter().step_by((every.len() / 300).max(1)).copied());
        points.sort_unstable();
        points.dedup();
        let pool = Arc::new(DmaPool::for_tests(16 << 20));
        for state in log.states(points) {
            let marks = log.marks_before(state.point());
            for image in state.images(per_point) {
                let device = Arc::new(image.to_device(Arc::clone(&pool))) as Arc<dyn BlockDevice>;
                let (problems, file) = recover(device, run.file);
                let context = format!("seed {seed}, crash point {:?}, image {:?}", state.point(), image.id());
                assert!(problems.is_empty(), "{context}: fsck: {problems:#?}");
                match file {
                    Some((size, chunks)) => check(&run, &marks, size, &chunks, &context),
                    // The file's creation was waited for before round 0.
                    None => assert!(!marks.iter().any(|m| m.starts_with("start ")), "{context}: the file is gone"),
                }
                images_checked += 1;
            }
        }
    }
    println!("writes behind: {images_checked} crash images recovered, fsck'd and checked");
    assert!(images_checked >= 2_000, "{images_checked} crash states checked");
}
