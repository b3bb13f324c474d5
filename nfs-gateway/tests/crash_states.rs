//! Crash states of the file system: a seeded sequence of CREATE, unstable
//! and FILE_SYNC WRITEs, COMMIT, RENAME (onto new and existing names), LINK,
//! REMOVE, truncation, SYMLINK and chmod, with engine checkpoints in between,
//! runs on an engine over the crash recorder. Every operation is one
//! transaction, and the journal makes a prefix of them durable, so after a
//! crash at any point the recovered file system must look exactly like the
//! one after some operation `j`, where `j` is at least the last operation
//! acknowledged durable (a metadata change waited for, a FILE_SYNC write, a
//! COMMIT) and at most the last one started. At crash points across the run
//! (every flush and points between), device images a power loss could leave
//! (unflushed writes present, absent or torn by sector) are recovered: the
//! engine reopens, `Fs::open` runs, the background freer finishes, fs fsck
//! must be clean, and the tree of names, types, modes, link counts, sizes
//! and contents must be one of those allowed.
//!
//! `KEEL_NFS_CRASH_IMAGES` sets the images tried per crash point (default 8).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use keel_drivers::test_devices::{CrashMarker, CrashRecorder};
use keel_drivers::{BlockDevice, DmaPool};
use keel_engine::testing::{start_on, TestEngineSpec};
use keel_engine::{EngineConfig, TreeConfig};
use keel_nfs::fs::perm::Cred;
use keel_nfs::fs::{CreateMode, FileType, InodeRef, NodeSpec, SetAttrs, StableHow};
use keel_nfs::{Fs, FsOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEEDS: u64 = 4;
const OPS_PER_SEED: usize = 90;
const DIRS: [&str; 3] = ["", "a", "b"];
/// The mark set once the recorded run's `Fs::open` returned: from then on
/// its write verifier was handed out, so a recovery must change it.
const OPENED: &str = "opened";

fn spec() -> TestEngineSpec {
    TestEngineSpec {
        reactors: 1,
        shards: 3,
        capacity_bytes: 64 << 20,
        dma_pool_bytes: 16 << 20,
        // Small nodes, so that the trees have a few levels and checkpoints
        // write several nodes; a cache that holds a whole chunk's messages.
        config: EngineConfig {
            tree: TreeConfig {
                leaf_bytes: 2048,
                internal_bytes: 4096,
                fanout_max: 8,
                cache_bytes: 4 << 20,
                ..TreeConfig::default()
            },
            ..EngineConfig::default()
        },
    }
}

/// What a client can see of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    ino: u64,
    ftype: FileType,
    mode: u32,
    nlink: u32,
    size: u64,
    /// A hash of the file's bytes or the symlink's target.
    content: u64,
}

/// Every name under the root, by path.
type Tree = BTreeMap<String, Node>;

fn hash_of(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// The tree of names below the root, read through the file system.
async fn walk(fs: &Fs) -> Tree {
    let mut tree = Tree::new();
    let mut pending = vec![(String::new(), fs.root())];
    while let Some((dir_path, dir)) = pending.pop() {
        let mut cookie = 0;
        loop {
            let listing = fs.readdir(Cred::root(), dir, cookie, 4096, true).await.unwrap();
            for e in &listing.entries {
                cookie = e.cookie;
                if e.name == b"." || e.name == b".." {
                    continue;
                }
                let attr = e.attr.clone().unwrap();
                let path = join(&dir_path, std::str::from_utf8(&e.name).unwrap());
                let r = InodeRef { ino: attr.ino, generation: attr.generation };
                let content = match attr.ftype {
                    FileType::Regular => {
                        let got = fs.read(Cred::root(), r, 0, attr.size as u32).await.unwrap();
                        assert_eq!(got.data.len() as u64, attr.size, "{path}: short read");
                        hash_of(&got.data)
                    }
                    FileType::Symlink => hash_of(&attr.target),
                    FileType::Directory => {
                        pending.push((path.clone(), r));
                        0
                    }
                    _ => 0,
                };
                let node = Node {
                    ino: attr.ino,
                    ftype: attr.ftype,
                    mode: attr.mode,
                    nlink: attr.nlink,
                    size: attr.size,
                    content,
                };
                tree.insert(path, node);
            }
            if listing.eof {
                break;
            }
        }
    }
    tree
}

async fn resolve(fs: &Fs, path: &str) -> InodeRef {
    let mut at = fs.root();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let (child, _) = fs.lookup(Cred::root(), at, part.as_bytes().to_vec()).await.unwrap();
        at = InodeRef { ino: child.ino, generation: child.generation };
    }
    at
}

/// The run's record: the tree after each operation (index 0: before any).
struct Run {
    trees: Vec<Tree>,
    operations: Vec<String>,
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &'a [String]) -> Option<&'a String> {
    (!items.is_empty()).then(|| &items[rng.gen_range(0..items.len())])
}

fn bytes(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.gen()).collect()
}

/// One operation chosen from the current tree; returns its description and
/// the last operation it acknowledges durable when it returns (with the ones
/// before it, the journal being a prefix): itself for metadata changes and
/// FILE_SYNC writes, the file's last unstable write for a COMMIT (a COMMIT
/// promises nothing about other files). `unstable` maps inodes to their
/// last unstable write.
async fn step(
    fs: &Fs,
    rng: &mut ChaCha8Rng,
    tree: &Tree,
    n: usize,
    unstable: &mut HashMap<u64, usize>,
) -> (String, Option<usize>) {
    let files: Vec<String> =
        tree.iter().filter(|(_, node)| node.ftype == FileType::Regular).map(|(p, _)| p.clone()).collect();
    let dir = DIRS[rng.gen_range(0..DIRS.len())];
    let fresh = join(dir, &format!("n{n}"));
    let roll = if files.len() < 2 { 0 } else { rng.gen_range(0..100) };
    let root = Cred::root();
    match roll {
        0..=14 => {
            let d = resolve(fs, dir).await;
            let attrs = SetAttrs { mode: Some(0o644), ..SetAttrs::default() };
            let spec = NodeSpec::of(FileType::Regular, attrs);
            let done = fs.make(root, d, split(&fresh).1.as_bytes().to_vec(), spec, CreateMode::Guarded).await.unwrap();
            fs.wait_durable(done.lsn).await.unwrap();
            (format!("create {fresh}"), Some(n))
        }
        15..=44 => {
            let path = pick(rng, &files).unwrap();
            let r = resolve(fs, path).await;
            let (offset, len) = if rng.gen_bool(0.2) {
                (rng.gen_range(0..4u64) * 65_536, 65_536)
            } else {
                (rng.gen_range(0..200_000u64), rng.gen_range(1..20_000usize))
            };
            let sync = rng.gen_bool(0.3);
            let how = if sync { StableHow::FileSync } else { StableHow::Unstable };
            fs.write(root, r, offset, bytes(rng, len), how).await.unwrap();
            if !sync {
                unstable.insert(r.ino, n);
            }
            (format!("write {path} {offset}+{len} {how:?}"), sync.then_some(n))
        }
        45..=59 => {
            let path = pick(rng, &files).unwrap();
            let r = resolve(fs, path).await;
            fs.commit(r).await.unwrap();
            (format!("commit {path}"), unstable.get(&r.ino).copied())
        }
        60..=69 => {
            let from = pick(rng, &files).unwrap().clone();
            // A third of renames replace an existing file.
            let to = if rng.gen_bool(0.33) { pick(rng, &files).unwrap().clone() } else { fresh };
            let (fd, fname) = split(&from);
            let (td, tname) = split(&to);
            let (fd_ref, td_ref) = (resolve(fs, fd).await, resolve(fs, td).await);
            let done =
                fs.rename(root, fd_ref, fname.as_bytes().to_vec(), td_ref, tname.as_bytes().to_vec()).await.unwrap();
            fs.wait_durable(done.lsn).await.unwrap();
            // A rename onto itself changes nothing, so it makes nothing
            // before it durable either.
            (format!("rename {from} {to}"), (from != to).then_some(n))
        }
        70..=77 => {
            let path = pick(rng, &files).unwrap();
            let (file, d) = (resolve(fs, path).await, resolve(fs, dir).await);
            let done = fs.link(root, file, d, split(&fresh).1.as_bytes().to_vec()).await.unwrap();
            fs.wait_durable(done.lsn).await.unwrap();
            (format!("link {path} {fresh}"), Some(n))
        }
        78..=85 => {
            let path = pick(rng, &files).unwrap();
            let (d, name) = split(path);
            let done = fs.remove(root, resolve(fs, d).await, name.as_bytes().to_vec(), false).await.unwrap();
            fs.wait_durable(done.lsn).await.unwrap();
            (format!("remove {path}"), Some(n))
        }
        86..=93 => {
            let path = pick(rng, &files).unwrap();
            let size = rng.gen_range(0..150_000u64);
            let set = SetAttrs { size: Some(size), ..SetAttrs::default() };
            let done = fs.setattr(root, resolve(fs, path).await, set, None).await.unwrap();
            fs.wait_durable(done.lsn).await.unwrap();
            (format!("truncate {path} {size}"), Some(n))
        }
        94..=96 => {
            let target = pick(rng, &files).unwrap().as_bytes().to_vec();
            let spec = NodeSpec { target, ..NodeSpec::of(FileType::Symlink, SetAttrs::default()) };
            let d = resolve(fs, dir).await;
            let done = fs.make(root, d, split(&fresh).1.as_bytes().to_vec(), spec, CreateMode::Guarded).await.unwrap();
            fs.wait_durable(done.lsn).await.unwrap();
            (format!("symlink {fresh}"), Some(n))
        }
        _ => {
            let path = pick(rng, &files).unwrap();
            let mode = rng.gen_range(0o400..0o1000u32);
            let set = SetAttrs { mode: Some(mode), ..SetAttrs::default() };
            let done = fs.setattr(root, resolve(fs, path).await, set, None).await.unwrap();
            fs.wait_durable(done.lsn).await.unwrap();
            (format!("chmod {path} {mode:o}"), Some(n))
        }
    }
}

async fn workload(fs: Fs, seed: u64, marker: CrashMarker) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut unstable = HashMap::new();
    let mut run = Run { trees: vec![walk(&fs).await], operations: vec![String::from("(open)")] };
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let n = i + 1;
        marker.mark(&format!("start {n}"));
        let spec = NodeSpec::of(FileType::Directory, SetAttrs { mode: Some(0o755), ..SetAttrs::default() });
        let done = fs.make(Cred::root(), fs.root(), name.into(), spec, CreateMode::Guarded).await.unwrap();
        fs.wait_durable(done.lsn).await.unwrap();
        marker.mark(&format!("durable {n}"));
        run.trees.push(walk(&fs).await);
        run.operations.push(format!("mkdir {name}"));
    }
    for n in 3..OPS_PER_SEED + 3 {
        if n % 25 == 0 {
            fs.engine().checkpoint().await.unwrap();
        }
        marker.mark(&format!("start {n}"));
        let tree = run.trees.last().unwrap().clone();
        let (what, durable) = step(&fs, &mut rng, &tree, n, &mut unstable).await;
        if let Some(upto) = durable {
            marker.mark(&format!("durable {upto}"));
        }
        run.trees.push(walk(&fs).await);
        run.operations.push(what);
    }
    run
}

/// Operations that may be in the state at a crash just before the mark
/// sequence `marks` ends: from the last durable one to the last started.
fn allowed(marks: &[&str]) -> (usize, usize) {
    let (mut lo, mut hi) = (0, 0);
    for m in marks.iter().filter(|m| **m != OPENED) {
        let (kind, n) = m.split_once(' ').unwrap();
        let n: usize = n.parse().unwrap();
        match kind {
            "start" => hi = hi.max(n),
            "durable" => lo = lo.max(n),
            _ => unreachable!("mark {m}"),
        }
    }
    (lo, hi)
}

/// One line per name that differs between `want` and `got`.
fn differences(want: &Tree, got: &Tree) -> String {
    let mut out = String::new();
    for (path, node) in want {
        match got.get(path) {
            None => out += &format!("  {path}: missing (want {node:?})\n"),
            Some(g) if g != node => out += &format!("  {path}: {g:?}, want {node:?}\n"),
            _ => {}
        }
    }
    for (path, node) in got {
        if !want.contains_key(path) {
            out += &format!("  {path}: unexpected {node:?}\n");
        }
    }
    out
}

/// Recovers the file system on `device` and returns fsck's problems, the
/// tree, and the boot counter.
fn recover(device: Arc<dyn BlockDevice>) -> (Vec<String>, Tree, u64) {
    let (runtime, engine) = start_on(device, &spec(), false).unwrap();
    let got = runtime
        .call_blocking(0, move || async move {
            let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
            // The freer resumes removed files' work; fsck wants it quiescent.
            while fs.orphans_pending().await.unwrap() > 0 {
                keel_reactor::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            let report = fs.fsck().await.unwrap();
            (report.problems, walk(&fs).await, fs.boot_counter())
        })
        .unwrap();
    runtime.stop();
    got
}

#[test]
fn after_a_crash_anywhere_the_file_system_is_a_durable_prefix_and_fsck_clean() {
    let per_point: u64 = std::env::var("KEEL_NFS_CRASH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let started = Instant::now();
    let (mut images_checked, mut points_checked) = (0u64, 0u64);
    for seed in 0..SEEDS {
        let memory = common::formatted_memory(&spec());

        let rec = Arc::new(CrashRecorder::over_memory(memory));
        let marker = rec.marker();
        let (runtime, engine) = start_on(Arc::clone(&rec) as Arc<dyn BlockDevice>, &spec(), false).unwrap();
        let (run, run_boot) = runtime
            .call_blocking(0, move || async move {
                let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
                marker.mark(OPENED);
                let boot = fs.boot_counter();
                (workload(fs, seed, marker).await, boot)
            })
            .unwrap();
        runtime.stop();

        let log = rec.log();
        assert!(!log.overflowed());
        let mut points = log.flush_points_and_end();
        let every = log.every_point();
        points.extend(every.iter().step_by((every.len() / 360).max(1)).copied());
        points.sort_unstable();
        points.dedup();
        let pool = Arc::new(DmaPool::for_tests(16 << 20));
        for state in log.states(points) {
            let marks = log.marks_before(state.point());
            let opened = marks.contains(&OPENED);
            let (lo, hi) = allowed(&marks);
            for image in state.images(per_point) {
                let device = Arc::new(image.to_device(Arc::clone(&pool))) as Arc<dyn BlockDevice>;
                let (problems, tree, boot) = recover(device);
                let context = format!("seed {seed}, crash point {:?}, image {:?}", state.point(), image.id());
                assert!(problems.is_empty(), "{context}: fsck: {problems:#?}");
                assert!(!opened || boot > run_boot, "{context}: boot counter {boot} after a run that had {run_boot}");
                let matched = (lo..=hi).rev().find(|&j| run.trees[j] == tree);
                if matched.is_none() {
                    for (i, op) in run.operations.iter().enumerate() {
                        eprintln!("op {i}: {op}");
                    }
                    eprintln!("marks: {:?}", log.marks());
                }
                assert!(
                    matched.is_some(),
                    "{context}: the recovered tree is none of the states after operations {lo}..={hi} ({})\n\
                     differences from the state after {lo}:\n{}",
                    run.operations[lo + 1..=hi].join(", "),
                    differences(&run.trees[lo], &tree)
                );
                images_checked += 1;
            }
            points_checked += 1;
        }
    }
    println!(
        "nfs crash states: {points_checked} crash points, {images_checked} images recovered, fsck'd and matched in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(images_checked >= 10_000, "{images_checked} crash states checked");
}
