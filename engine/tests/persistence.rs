//! The engine on a device: data survives a clean close and a crash (the
//! process stopping without closing), large values go out of line and come
//! back intact, checkpoints free the journal, and the boot counter moves.

use std::ops::Bound;
use std::sync::Arc;

use keel_drivers::BlockDevice;
use keel_engine::testing::{memory_device, start_on, TestEngineSpec};
use keel_engine::{EngineConfig, TreeConfig};

fn spec() -> TestEngineSpec {
    TestEngineSpec { reactors: 2, shards: 3, capacity_bytes: 256 << 20, ..TestEngineSpec::default() }
}

fn value_for(i: u32) -> Vec<u8> {
    // Every seventh value is large enough to go out of line.
    let len = if i.is_multiple_of(7) { 10_000 + i as usize } else { 20 + (i % 50) as usize };
    (0..len).map(|b| (b as u32 ^ i) as u8).collect()
}

#[test]
fn data_survives_a_clean_close_and_a_reopen() {
    let spec = spec();
    let device = memory_device(&spec);
    let (runtime, engine) = start_on(Arc::clone(&device) as Arc<dyn BlockDevice>, &spec, true).unwrap();
    let writer = engine.clone();
    runtime
        .call_blocking(0, move || async move {
            for i in 0..500u32 {
                writer.put(format!("key{i:04}").as_bytes(), value_for(i)).await.unwrap();
            }
            writer.delete(b"key0003").await.unwrap();
        })
        .unwrap();
    let boot = engine.boot_counter();
    engine.close(&runtime).unwrap();
    runtime.stop();

    let (runtime, engine) = start_on(device as Arc<dyn BlockDevice>, &spec, false).unwrap();
    assert_eq!(engine.boot_counter(), boot + 1);
    runtime
        .call_blocking(1, move || async move {
            for i in 0..500u32 {
                let got = engine.get(format!("key{i:04}").as_bytes()).await.unwrap();
                if i == 3 {
                    assert_eq!(got, None);
                } else {
                    assert_eq!(got, Some(value_for(i)), "key{i:04}");
                }
            }
            let all = engine.scan(Bound::Unbounded, Bound::Unbounded, 10_000).await.unwrap();
            assert_eq!(all.len(), 499);
            let part = engine.read_range(b"key0007", 100, 50).await.unwrap().unwrap();
            assert_eq!(part, value_for(7)[100..150].to_vec());
        })
        .unwrap();
}

#[test]
fn acknowledged_writes_survive_a_crash_across_checkpoints() {
    let mut spec = spec();
    spec.config = EngineConfig { tree: TreeConfig::tiny_for_tests(), ..EngineConfig::default() };
    let device = memory_device(&spec);
    let (runtime, engine) = start_on(Arc::clone(&device) as Arc<dyn BlockDevice>, &spec, true).unwrap();
    let writer = engine.clone();
    runtime
        .call_blocking(0, move || async move {
            for i in 0..300u32 {
                let lsn = writer.put(format!("k{i:04}").as_bytes(), value_for(i)).await.unwrap();
                if i % 100 == 50 {
                    writer.checkpoint().await.unwrap();
                }
                if i % 10 == 0 {
                    writer.wait_durable(lsn).await.unwrap();
                }
            }
            let mut txn = writer.transaction();
            txn.lock(&[b"a", b"b", b"c"]).await.unwrap();
            for k in [b"a", b"b", b"c"] {
                txn.put(k, value_for(9000)).unwrap();
            }
            let lsn = txn.commit().await.unwrap();
            writer.wait_durable(lsn).await.unwrap();
        })
        .unwrap();
    assert!(engine.checkpoints_completed() >= 3);
    // A crash: the reactors stop, nothing is closed or checkpointed.
    drop(engine);
    runtime.stop();

    let (runtime, engine) = start_on(device as Arc<dyn BlockDevice>, &spec, false).unwrap();
    runtime
        .call_blocking(0, move || async move {
            for i in 0..300u32 {
                assert_eq!(engine.get(format!("k{i:04}").as_bytes()).await.unwrap(), Some(value_for(i)), "k{i:04}");
            }
            for k in [b"a", b"b", b"c"] {
                assert_eq!(engine.get(k).await.unwrap(), Some(value_for(9000)));
            }
        })
        .unwrap();
}

#[test]
fn checkpoints_keep_the_journal_from_filling() {
    let mut spec = spec();
    spec.config = EngineConfig { checkpoint_journal_percent: 10, ..EngineConfig::default() };
    let device = memory_device(&spec);
    let (runtime, engine) = start_on(device as Arc<dyn BlockDevice>, &spec, true).unwrap();
    let writer = engine.clone();
    // 8 MiB of journal; write several times that in 200-byte records.
    runtime
        .call_blocking(0, move || async move {
            for i in 0..120_000u32 {
                writer.put(format!("fill{:06}", i % 5000).as_bytes(), vec![i as u8; 200]).await.unwrap();
            }
        })
        .unwrap();
    assert!(engine.checkpoints_completed() >= 2, "checkpoints: {}", engine.checkpoints_completed());
}
