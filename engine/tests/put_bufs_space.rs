//! `Transaction::put_bufs` gives back every page it allocated when it does
//! not end in a commit: on a device error in one of its writes, and when the
//! caller stops waiting while its writes are in flight (a dropped future),
//! on the caller's reactor and on another.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use keel_drivers::test_devices::{Fault, FaultInjector, FaultRule};
use keel_drivers::BlockDevice;
use keel_engine::testing::{memory_device, start_on, TestEngineSpec};
use keel_engine::{DmaBuf, Engine};
use keel_reactor::time::sleep;

const VALUE_BYTES: usize = 64 * 1024;
const VALUES: u8 = 16;

/// Pages of all shards that are free or on their way back (freed, waiting
/// for a checkpoint): a leak lowers this for good.
async fn pages_not_in_use(engine: &Engine) -> u64 {
    let stats = engine.stats().await.unwrap();
    stats.shards.iter().map(|s| s.pages_free + s.pages_pending_free).sum()
}

fn values(engine: &Engine) -> Vec<(Vec<u8>, DmaBuf)> {
    (0..VALUES)
        .map(|i| {
            let mut buf = engine.value_buf(VALUE_BYTES).expect("a free DMA buffer");
            buf.fill(i);
            (vec![b'v', i], buf)
        })
        .collect()
}

fn start() -> (keel_reactor::Runtime, Engine, Arc<FaultInjector>) {
    let spec = TestEngineSpec { reactors: 2, shards: 4, ..TestEngineSpec::default() };
    let injector = Arc::new(FaultInjector::new(memory_device(&spec) as Arc<dyn BlockDevice>));
    let (runtime, engine) = start_on(Arc::clone(&injector) as Arc<dyn BlockDevice>, &spec, true).unwrap();
    (runtime, engine, injector)
}

#[test]
fn put_bufs_dropped_while_its_writes_are_in_flight_gives_every_page_back() {
    let (runtime, engine, injector) = start();
    runtime
        .call_blocking(0, move || async move {
            let keys_shards: std::collections::BTreeSet<u32> =
                (0..VALUES).map(|i| engine.shard_of(&[b'v', i])).collect();
            assert!(keys_shards.len() > 1, "values on both reactors' shards");
            let before = pages_not_in_use(&engine).await;
            let rule = injector.add(FaultRule::writes(0..u64::MAX, Fault::Delay(Duration::from_millis(200)))).unwrap();
            let e = engine.clone();
            let writing = keel_reactor::spawn(async move {
                let mut txn = e.transaction();
                txn.put_bufs(values(&e)).await.unwrap();
                unreachable!("the test drops this task while its writes are delayed");
            });
            sleep(Duration::from_millis(50)).await;
            assert!(pages_not_in_use(&engine).await < before, "the writes have their pages");
            drop(writing);
            injector.remove(rule);
            sleep(Duration::from_millis(600)).await;
            assert_eq!(pages_not_in_use(&engine).await, before, "pages leaked by a dropped put_bufs");
        })
        .unwrap();
    runtime.stop();
}

#[test]
fn put_bufs_with_a_failed_write_gives_every_page_back() {
    let (runtime, engine, injector) = start();
    runtime
        .call_blocking(0, move || async move {
            let before = pages_not_in_use(&engine).await;
            injector.add(FaultRule::writes(0..u64::MAX, Fault::eio()).nth(5)).unwrap();
            let mut txn = engine.transaction();
            assert!(txn.put_bufs(values(&engine)).await.is_err(), "the injected EIO is returned");
            drop(txn);
            sleep(Duration::from_millis(100)).await;
            assert_eq!(pages_not_in_use(&engine).await, before, "pages leaked by a failed put_bufs");
            injector.clear();
            // The engine still works, and a commit keeps its pages.
            let mut txn = engine.transaction();
            txn.put_bufs(values(&engine)).await.unwrap();
            engine.wait_durable(txn.commit().await.unwrap()).await.unwrap();
            assert_eq!(engine.get(b"v\x03").await.unwrap(), Some(vec![3; VALUE_BYTES]));
            assert!(pages_not_in_use(&engine).await < before);
        })
        .unwrap();
    runtime.stop();
}
