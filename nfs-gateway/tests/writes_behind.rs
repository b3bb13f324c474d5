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
