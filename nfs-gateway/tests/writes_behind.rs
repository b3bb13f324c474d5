//! Writes behind (`fs/behind.rs`): UNSTABLE whole-chunk WRITEs answered
//! before their commit. What a client may rely on: it reads its writes
//! back, a truncation after them wins, and a write behind that fails after
//! its reply changes the write verifier (so the client sends its data
//! again) and is answered with its error when sent again.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use keel_drivers::test_devices::{Fault, FaultInjector, FaultRule};
use keel_drivers::BlockDevice;
use keel_engine::testing::{memory_device, start_on, TestEngineSpec};
use keel_nfs::fs::perm::Cred;
use keel_nfs::fs::{CreateMode, FileType, InodeRef, NodeSpec, SetAttrs, StableHow, WriteData};
use keel_nfs::{Fs, FsOptions};

const CHUNK: usize = 65_536;

fn spec() -> TestEngineSpec {
    TestEngineSpec { reactors: 1, shards: 2, ..TestEngineSpec::default() }
}

async fn new_file(fs: &Fs, name: &str) -> InodeRef {
    let spec = NodeSpec::of(FileType::Regular, SetAttrs { mode: Some(0o644), ..SetAttrs::default() });
    let made = fs.make(Cred::root(), fs.root(), name.into(), spec, CreateMode::Guarded).await.unwrap();
    InodeRef { ino: made.value.0.ino, generation: made.value.0.generation }
}

async fn write(fs: &Fs, f: InodeRef, chunk: u64, byte: u8) -> keel_nfs::fs::FsResult<keel_nfs::fs::WriteResult> {
    fs.write(Cred::root(), f, chunk * CHUNK as u64, vec![byte; CHUNK], StableHow::Unstable).await
}

#[test]
fn a_client_reads_back_what_it_was_answered_and_a_later_truncation_wins() {
    let device = memory_device(&spec());
    let (runtime, _engine) = start_on(device as Arc<dyn BlockDevice>, &spec(), true).unwrap();
    let engine = _engine.clone();
    runtime
        .call_blocking(0, move || async move {
            let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
            let f = new_file(&fs, "f").await;
            for chunk in 0..8 {
                let w = write(&fs, f, chunk, chunk as u8 + 1).await.unwrap();
                assert!(w.wcc.after.is_none(), "answered before its commit");
            }
            // An overwrite of a chunk still being written comes after it.
            write(&fs, f, 3, 0xAA).await.unwrap();
            assert_eq!(fs.getattr(f).await.unwrap().size, 8 * CHUNK as u64);
            let got = fs.read(Cred::root(), f, 3 * CHUNK as u64, CHUNK as u32).await.unwrap().data;
            assert!(got.iter().all(|&b| b == 0xAA));
            // 1 MiB from DMA memory (the Linux client's WRITE): cut per
            // chunk, written together, read back whole.
            let mut big = fs.engine().value_buf(16 * CHUNK).unwrap();
            big.iter_mut().enumerate().for_each(|(i, b)| *b = (i / CHUNK) as u8 + 0x30);
            let at = 16 * CHUNK as u64;
            let w = fs.write(Cred::root(), f, at, WriteData::Dma(big), StableHow::Unstable).await.unwrap();
            assert!(w.wcc.after.is_none());
            let got = fs.read(Cred::root(), f, at, 16 * CHUNK as u32).await.unwrap().data;
            assert!(got.iter().enumerate().all(|(i, &b)| b == (i / CHUNK) as u8 + 0x30));
            write(&fs, f, 9, 9).await.unwrap();
            let set = SetAttrs { size: Some(CHUNK as u64), ..SetAttrs::default() };
            fs.setattr(Cred::root(), f, set, None).await.unwrap();
            assert_eq!(fs.getattr(f).await.unwrap().size, CHUNK as u64, "the truncation came after the write");
            let (_, verifier) = fs.commit(f).await.unwrap();
            assert_eq!(verifier, fs.write_verifier());
        })
        .unwrap();
    runtime.stop();
}

/// Accepts a written chunk of 0xEE bytes (the extent of such a WRITE).
fn doomed(data: &[u8]) -> bool {
    data.len() >= CHUNK && data[..CHUNK].iter().all(|&b| b == 0xEE)
}

#[test]
fn a_write_behind_that_fails_changes_the_verifier_and_its_resend_gets_the_error() {
    let memory = memory_device(&spec());
    let injector = Arc::new(FaultInjector::new(memory as Arc<dyn BlockDevice>));
    let (runtime, engine) = start_on(Arc::clone(&injector) as Arc<dyn BlockDevice>, &spec(), true).unwrap();
    let rule = injector.add(FaultRule::writes(0..u64::MAX, Fault::eio()).when_written(doomed)).unwrap();
    let inj = Arc::clone(&injector);
    runtime
        .call_blocking(0, move || async move {
            let fs = Fs::open(engine, FsOptions::default()).await.unwrap();
            let f = new_file(&fs, "f").await;
            let good = write(&fs, f, 0, 0x11).await.unwrap();
            let (_, committed) = fs.commit(f).await.unwrap();
            assert_eq!(good.verifier, committed);
            // Answered at once: the device error comes after the reply.
            let lost = write(&fs, f, 1, 0xEE).await.unwrap();
            assert!(lost.wcc.after.is_none());
            assert_eq!(lost.verifier, committed);
            let (_, after) = fs.commit(f).await.unwrap();
            assert_ne!(after, lost.verifier, "COMMIT tells the client to send its data again");
            assert_eq!(fs.read(Cred::root(), f, 0, CHUNK as u32).await.unwrap().data, vec![0x11; CHUNK]);
            // Sent again: now it waits for its commit and gets the error.
            assert!(write(&fs, f, 1, 0xEE).await.is_err());
            inj.remove(rule).unwrap();
            let again = write(&fs, f, 1, 0xEE).await.unwrap();
            assert!(again.wcc.after.is_some(), "answered after its commit");
            assert_eq!(again.verifier, after);
            let got = fs.read(Cred::root(), f, CHUNK as u64, CHUNK as u32).await.unwrap().data;
            assert_eq!(got, vec![0xEE; CHUNK]);
        })
        .unwrap();
    runtime.stop();
}

/// Runs `f` on a fresh file system over an engine with `pool_bytes` of DMA
/// pool and one reactor.
fn with_fs<F, Fut>(pool_bytes: usize, options: FsOptions, f: F)
where
    F: FnOnce(Fs) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let spec = TestEngineSpec { dma_pool_bytes: pool_bytes, ..spec() };
    let device = memory_device(&spec);
    let (runtime, engine) = start_on(device as Arc<dyn BlockDevice>, &spec, true).unwrap();
    runtime
        .call_blocking(0, move || async move {
            let fs = Fs::open(engine, options).await.unwrap();
            f(fs).await
        })
        .unwrap();
    runtime.stop();
}

#[test]
fn writes_past_the_byte_budget_are_written_before_their_reply_instead_of_waiting() {
    // 8 MiB of pool, one reactor: writes behind may hold 2 MiB.
    let options = FsOptions { writes_behind_max: 1_000, ..FsOptions::default() };
    with_fs(8 << 20, options, |fs| async move {
        let f = new_file(&fs, "f").await;
        let mib = 16 * CHUNK;
        let mut behind = Vec::new();
        for i in 0..4u64 {
            let data = vec![i as u8 + 1; mib];
            let w = fs.write(Cred::root(), f, i * mib as u64, data, StableHow::Unstable).await.unwrap();
            behind.push(w.wcc.after.is_none());
        }
        assert_eq!(behind[..3], [true, true, false], "the third 1 MiB is over the 2 MiB budget");
        let (_, verifier) = fs.commit(f).await.unwrap();
        assert_eq!(verifier, fs.write_verifier());
        for i in 0..4u64 {
            let got = fs.read(Cred::root(), f, i * mib as u64, mib as u32).await.unwrap().data;
            assert!(got.iter().all(|&b| b == i as u8 + 1), "MiB {i} reads back");
        }
    });
}

#[test]
fn nospc_is_answered_by_a_write_and_never_found_after_its_reply() {
    let options = FsOptions { capacity_bytes: 2 << 20, writes_behind_max: 1_000, ..FsOptions::default() };
    with_fs(64 << 20, options, |fs| async move {
        let f = new_file(&fs, "f").await;
        let first = fs.write_verifier();
        let mut answered = 0u64;
        let refused = loop {
            assert!(answered < 64, "2 MiB cannot hold {answered} chunks");
            match write(&fs, f, answered, 0x40 + answered as u8).await {
                Ok(w) => assert_eq!(w.verifier, first),
                Err(e) => break e,
            }
            answered += 1;
        };
        assert!(matches!(refused, keel_nfs::fs::FsError::NoSpace), "{refused:?}");
        let (_, verifier) = fs.commit(f).await.unwrap();
        assert_eq!(verifier, first, "no write failed after its reply");
        for chunk in 0..answered {
            let got = fs.read(Cred::root(), f, chunk * CHUNK as u64, CHUNK as u32).await.unwrap().data;
            assert!(got.iter().all(|&b| b == 0x40 + chunk as u8), "chunk {chunk} of {answered} reads back");
        }
    });
}

#[test]
fn a_file_removed_during_its_writes_behind_leaves_a_clean_file_system_and_its_space() {
    with_fs(64 << 20, FsOptions::default(), |fs| async move {
        let (free_before, verifier) = (fs.space().free_bytes, fs.write_verifier());
        for round in 0..4u64 {
            let name = format!("f{round}");
            let f = new_file(&fs, &name).await;
            for chunk in 0..8 {
                let mut buf = fs.engine().value_buf(2 * CHUNK).unwrap();
                buf.fill(0x70 + chunk as u8);
                let w = fs.write(Cred::root(), f, chunk * 2 * CHUNK as u64, WriteData::Dma(buf), StableHow::Unstable);
                assert!(w.await.unwrap().wcc.after.is_none(), "answered before its commit");
            }
            // Each round removes at a later point of the tasks' progress.
            for _ in 0..round {
                keel_reactor::time::sleep(std::time::Duration::from_micros(200)).await;
            }
            fs.remove(Cred::root(), fs.root(), name.into_bytes(), false).await.unwrap();
            assert!(fs.getattr(f).await.is_err(), "gone");
        }
        // Let the tasks end (STALE, or committed and then freed).
        let f = new_file(&fs, "settled").await;
        fs.commit(f).await.unwrap();
        fs.remove(Cred::root(), fs.root(), b"settled".to_vec(), false).await.unwrap();
        for _ in 0..5_000 {
            if fs.orphans_pending().await.unwrap() == 0 && fs.space().free_bytes == free_before {
                break;
            }
            keel_reactor::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert_eq!(fs.orphans_pending().await.unwrap(), 0);
        let report = fs.fsck().await.unwrap();
        assert!(report.problems.is_empty(), "{:#?}", report.problems);
        assert_eq!(fs.space().free_bytes, free_before, "the removed files' space came back");
        assert_eq!(fs.write_verifier(), verifier, "a write behind of a removed file is no failure");
    });
}
