//! Writes behind (`fs/behind.rs`) and attributes: every attribute a reply
//! carries counts the WRITEs already answered, whichever reactor serves it
//! (a hard link in a directory homed on another reactor); a write behind's
//! reply has the attributes before it, and the writes behind of a file
//! commit in the order they were answered; a change of mode racing a WRITE
//! that waits for an earlier one is ordered, never a failure after the
//! reply; a stopping gateway waits for the writes it answered.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_drivers::test_devices::{Fault, FaultInjector, FaultRule};
use keel_drivers::BlockDevice;
use keel_engine::testing::{memory_device, start_on, TestEngineSpec};
use keel_nfs::fs::perm::Cred;
use keel_nfs::fs::{CreateMode, FileType, FsError, InodeRef, NodeSpec, SetAttrs, StableHow, WccAttr};
use keel_nfs::{Fs, FsOptions, Gateway, GatewayConfig};

const CHUNK: usize = 65_536;
/// How long the device holds a chunk of [`SLOW`] bytes.
const SLOW_WRITE: Duration = Duration::from_millis(300);
const SLOW: u8 = 0x5A;

fn spec() -> TestEngineSpec {
    TestEngineSpec { reactors: 2, shards: 2, ..TestEngineSpec::default() }
}

/// Accepts a written chunk of [`SLOW`] bytes (the extent of such a WRITE).
fn slow(data: &[u8]) -> bool {
    data.len() >= CHUNK && data[..CHUNK].iter().all(|&b| b == SLOW)
}

/// An engine whose device holds writes of [`SLOW`] chunks for [`SLOW_WRITE`].
fn start() -> (keel_reactor::Runtime, keel_engine::Engine) {
    let injector = Arc::new(FaultInjector::new(memory_device(&spec()) as Arc<dyn BlockDevice>));
    injector.add(FaultRule::writes(0..u64::MAX, Fault::Delay(SLOW_WRITE)).when_written(slow)).unwrap();
    start_on(injector as Arc<dyn BlockDevice>, &spec(), true).unwrap()
}

fn node(ftype: FileType, mode: u32) -> NodeSpec {
    NodeSpec::of(ftype, SetAttrs { mode: Some(mode), ..SetAttrs::default() })
}

async fn make(fs: &Fs, dir: InodeRef, name: &str, ftype: FileType) -> InodeRef {
    let mode = if ftype == FileType::Directory { 0o777 } else { 0o666 };
    let made = fs.make(Cred::root(), dir, name.into(), node(ftype, mode), CreateMode::Guarded).await.unwrap();
    InodeRef { ino: made.value.0.ino, generation: made.value.0.generation }
}

fn reactor_of(fs: &Fs, ino: u64) -> usize {
    keel_engine::route::reactor_of(fs.shard_of(ino), spec().reactors)
}

async fn write(
    fs: &Fs,
    cred: Cred,
    f: InodeRef,
    chunk: u64,
    byte: u8,
) -> keel_nfs::fs::FsResult<keel_nfs::fs::WriteResult> {
    fs.write(cred, f, chunk * CHUNK as u64, vec![byte; CHUNK], StableHow::Unstable).await
}

#[test]
fn lookup_readdirplus_and_link_from_another_reactor_count_the_writes_answered() {
    let (runtime, engine) = start();
    runtime
        .call_blocking(0, move || async move {
            let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
            let f = make(&fs, fs.root(), "f", FileType::Regular).await;
            // New directories go to the shards in turn: one of two is homed
            // on the reactor f is not.
            let (a, b) = (
                make(&fs, fs.root(), "a", FileType::Directory).await,
                make(&fs, fs.root(), "b", FileType::Directory).await,
            );
            let d = if reactor_of(&fs, a.ino) != reactor_of(&fs, f.ino) { a } else { b };
            assert_ne!(reactor_of(&fs, d.ino), reactor_of(&fs, f.ino));
            fs.link(Cred::root(), f, d, b"l".to_vec()).await.unwrap();
            let size = 4 * CHUNK as u64;
            let answered = Instant::now();
            let w = write(&fs, Cred::root(), f, 3, SLOW).await.unwrap();
            assert!(w.wcc.after.is_none(), "answered before its commit");
            let (child, _) = fs.lookup(Cred::root(), d, b"l".to_vec()).await.unwrap();
            assert!(answered.elapsed() >= SLOW_WRITE, "LOOKUP waited for the write behind");
            assert_eq!(child.size, size, "LOOKUP through the link");
            write(&fs, Cred::root(), f, 5, SLOW).await.unwrap();
            let listing = fs.readdir(Cred::root(), d, 0, 16, true).await.unwrap();
            let entry = listing.entries.iter().find(|e| e.name == b"l").unwrap();
            assert_eq!(entry.attr.as_ref().unwrap().size, 6 * CHUNK as u64, "READDIRPLUS through the link");
            write(&fs, Cred::root(), f, 6, SLOW).await.unwrap();
            let linked = fs.link(Cred::root(), f, d, b"l2".to_vec()).await.unwrap();
            assert_eq!(linked.value.0.size, 7 * CHUNK as u64, "LINK's attributes of the file");
        })
        .unwrap();
    runtime.stop();
}

#[test]
fn a_write_behind_replies_with_the_attributes_before_it_and_commits_after_the_ones_before_it() {
    let (runtime, engine) = start();
    runtime
        .call_blocking(0, move || async move {
            let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
            let f = make(&fs, fs.root(), "f", FileType::Regular).await;
            write(&fs, Cred::root(), f, 0, 1).await.unwrap();
            let settled = fs.getattr(f).await.unwrap();
            // Nothing in flight: the stored attributes.
            let first = write(&fs, Cred::root(), f, 2, SLOW).await.unwrap();
            assert_eq!(first.wcc.before, Some(WccAttr::of(&settled)));
            // The first still in flight (its device write is held): what it
            // will leave, whose time is its answer's.
            let second = write(&fs, Cred::root(), f, 1, 2).await.unwrap();
            let before = second.wcc.before.unwrap();
            assert_eq!(before.size, 3 * CHUNK as u64, "the first's end");
            assert!(before.mtime > settled.mtime && before.ctime == before.mtime, "the first's time");
            let end = fs.getattr(f).await.unwrap();
            assert_eq!(end.size, 3 * CHUNK as u64);
            // The second's device write finished long before the first's,
            // yet its time is the one left: it committed after the first.
            assert!(end.mtime > before.mtime, "the second committed last");
            let third = write(&fs, Cred::root(), f, 3, 3).await.unwrap();
            assert_eq!(third.wcc.before, Some(WccAttr::of(&end)));
            // A write before its reply (FILE_SYNC) sees the same.
            let after_third = fs.getattr(f).await.unwrap();
            let sync = fs.write(Cred::root(), f, 0, vec![4; 10], StableHow::FileSync).await.unwrap();
            assert_eq!(sync.wcc.before, Some(WccAttr::of(&after_third)));
        })
        .unwrap();
    runtime.stop();
}

#[test]
fn a_chmod_racing_a_write_that_waits_is_ordered_not_a_failure_after_the_reply() {
    let (runtime, engine) = start();
    runtime
        .call_blocking(0, move || async move {
            let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
            let f = make(&fs, fs.root(), "f", FileType::Regular).await;
            let verifier = fs.write_verifier();
            let user = Cred { uid: 1000, gid: 1000, gids: vec![] };
            // In flight for SLOW_WRITE: the user's WRITE of the same chunk
            // waits for it, and the chmod (which takes write access away)
            // arrives while it waits.
            write(&fs, Cred::root(), f, 0, SLOW).await.unwrap();
            let (fs2, fs3) = (fs.clone(), fs.clone());
            let racing = keel_reactor::spawn(async move { write(&fs2, user, f, 0, 7).await });
            keel_reactor::time::sleep(Duration::from_millis(20)).await;
            let chmod = keel_reactor::spawn(async move {
                let set = SetAttrs { mode: Some(0o644), ..SetAttrs::default() };
                fs3.setattr(Cred::root(), f, set, None).await
            });
            let written = racing.await;
            chmod.await.unwrap();
            let data = fs.read(Cred::root(), f, 0, CHUNK as u32).await.unwrap().data;
            match written {
                // Before the chmod: its data is there.
                Ok(_) => assert_eq!(data, vec![7; CHUNK]),
                // After it: refused in its reply, nothing written.
                Err(e) => {
                    assert_eq!(e, FsError::Access);
                    assert_eq!(data, vec![SLOW; CHUNK]);
                }
            }
            assert_eq!(fs.write_verifier(), verifier, "no WRITE failed after its reply");
            let (_, committed) = fs.commit(f).await.unwrap();
            assert_eq!(committed, verifier);
        })
        .unwrap();
    runtime.stop();
}

#[test]
fn a_stopping_gateway_waits_for_the_writes_it_answered() {
    let (runtime, engine) = start();
    let gateway = Gateway::start(&runtime, engine.clone(), GatewayConfig::for_tests()).unwrap();
    let fs = gateway.fs().clone();
    let f = runtime
        .call_blocking(0, move || async move {
            let f = make(&fs, fs.root(), "f", FileType::Regular).await;
            let w = write(&fs, Cred::root(), f, 0, SLOW).await.unwrap();
            assert!(w.wcc.after.is_none(), "answered before its commit");
            f
        })
        .unwrap();
    let fs = gateway.fs().clone();
    let stopping = Instant::now();
    assert_eq!(gateway.stop_by(Instant::now() + Duration::from_secs(10)), 0);
    assert!(stopping.elapsed() >= SLOW_WRITE / 2, "stop waited for the write behind");
    runtime
        .call_blocking(0, move || async move {
            assert_eq!(fs.drain_writes_behind(Duration::ZERO).await, 0);
            let data = fs.read(Cred::root(), f, 0, CHUNK as u32).await.unwrap().data;
            assert_eq!(data, vec![SLOW; CHUNK]);
        })
        .unwrap();
    runtime.stop();
}
