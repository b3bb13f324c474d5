//! Every page of an out-of-line value whose write does not end in a commit
//! comes back: `Transaction::put_bufs` on a device error in one of its
//! writes and when the caller stops waiting while its writes are in flight
//! (a dropped future), on the caller's reactor and on another; a single
//! large `Engine::put`, a transaction's commit and `write_values_now`
//! dropped while their values are written; and commits dropped at any
//! point never give back pages a committed record names (fsck after two
//! checkpoints finds every referenced page in use).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use keel_drivers::test_devices::{Fault, FaultInjector, FaultRule};
use keel_drivers::BlockDevice;
use keel_engine::route::reactor_of;
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

/// Keys of 64 KiB values whose shards live on `reactor` (of 2).
fn keys_on(engine: &Engine, reactor: usize, count: usize) -> Vec<Vec<u8>> {
    (0u32..)
        .map(|i| format!("big-{i}").into_bytes())
        .filter(|k| reactor_of(engine.shard_of(k), 2) == reactor)
        .take(count)
        .collect()
}

/// Runs `work` in a task, drops it while the device holds its writes, lets
/// the writes finish, and checks that every page came back.
async fn drop_while_writing<F>(engine: &Engine, injector: &FaultInjector, what: &str, work: F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    let before = pages_not_in_use(engine).await;
    let rule = injector.add(FaultRule::writes(0..u64::MAX, Fault::Delay(Duration::from_millis(200)))).unwrap();
    let task = keel_reactor::spawn(work);
    sleep(Duration::from_millis(50)).await;
    assert!(pages_not_in_use(engine).await < before, "{what}: its value's write has its pages");
    drop(task);
    injector.remove(rule);
    sleep(Duration::from_millis(600)).await;
    assert_eq!(pages_not_in_use(engine).await, before, "{what}: pages leaked by a dropped write");
}

#[test]
fn a_large_put_dropped_while_its_value_is_written_gives_its_pages_back() {
    let (runtime, engine, injector) = start();
    runtime
        .call_blocking(0, move || async move {
            // A key of this reactor: the call runs inline, so dropping the
            // caller drops the write's own future.
            let key = keys_on(&engine, 0, 1).remove(0);
            let e = engine.clone();
            let k = key.clone();
            drop_while_writing(&engine, &injector, "Engine::put", async move {
                e.put(&k, vec![7; VALUE_BYTES]).await.unwrap();
                unreachable!("dropped while its write is delayed");
            })
            .await;
            assert_eq!(engine.get(&key).await.unwrap(), None, "nothing was committed");
            engine.put(&key, vec![8; VALUE_BYTES]).await.unwrap();
            assert_eq!(engine.get(&key).await.unwrap(), Some(vec![8; VALUE_BYTES]));
        })
        .unwrap();
    runtime.stop();
}

#[test]
fn a_commit_or_write_values_now_dropped_while_values_are_written_gives_every_page_back() {
    let (runtime, engine, injector) = start();
    runtime
        .call_blocking(0, move || async move {
            let mut keys = keys_on(&engine, 0, 2);
            keys.extend(keys_on(&engine, 1, 2));
            for early in [false, true] {
                let (e, ks) = (engine.clone(), keys.clone());
                let what = if early { "write_values_now" } else { "commit" };
                drop_while_writing(&engine, &injector, what, async move {
                    let mut txn = e.transaction();
                    for k in &ks {
                        txn.put(k, vec![9; VALUE_BYTES]).unwrap();
                    }
                    if early {
                        txn.write_values_now().await.unwrap();
                    }
                    txn.commit().await.unwrap();
                    unreachable!("dropped while a write is delayed");
                })
                .await;
            }
            for k in &keys {
                assert_eq!(engine.get(k).await.unwrap(), None, "nothing was committed");
            }
        })
        .unwrap();
    runtime.stop();
}

#[test]
fn commits_dropped_at_any_point_never_give_back_pages_a_committed_record_names() {
    let (runtime, engine, _injector) = start();
    runtime
        .call_blocking(0, move || async move {
            // Each transaction writes on shards 3, 1 and 0, in that order: a
            // gated commit (shards 1 and 3 live on reactor 1) whose apply
            // visits the shards in ascending order, one reply at a time,
            // while giving back would visit them in the order written.
            let keys: Vec<Vec<Vec<u8>>> = [3, 1, 0].iter().map(|&s| keys_of_shard(&engine, s, 40)).collect();
            for round in 0..40usize {
                let e = engine.clone();
                let ks: Vec<Vec<u8>> = keys.iter().map(|k| k[round].clone()).collect();
                let task = keel_reactor::spawn(async move {
                    let mut txn = e.transaction();
                    for k in &ks {
                        txn.put(k, vec![round as u8; VALUE_BYTES]).unwrap();
                    }
                    let _ = txn.commit().await;
                });
                // Drop it at a different point each time: before, during and
                // after its value writes, its record and its apply.
                for _ in 0..round % 8 {
                    keel_reactor::yield_now().await;
                }
                sleep(Duration::from_micros(20 * round as u64)).await;
                drop(task);
            }
            sleep(Duration::from_millis(500)).await;
            let mut committed = 0;
            for round in 0..40usize {
                let mut values = Vec::new();
                for k in &keys {
                    values.push(engine.get(&k[round]).await.unwrap());
                }
                assert!(values.iter().all(|v| v.is_some() == values[0].is_some()), "round {round}: all or nothing");
                if values[0].is_some() {
                    assert!(values.iter().all(|v| v.as_deref() == Some(&vec![round as u8; VALUE_BYTES][..])));
                    committed += 1;
                }
            }
            // Pages given back wrongly become free for real only after the
            // checkpoint that follows their release.
            engine.checkpoint().await.unwrap();
            engine.checkpoint().await.unwrap();
            for report in engine.fsck().await.unwrap() {
                assert!(report.problems.is_empty(), "fsck ({committed} of 40 committed): {:?}", report.problems);
            }
            assert!(committed > 0 && committed < 40, "drops before and after the commit point: {committed} of 40");
        })
        .unwrap();
    runtime.stop();
}

/// Keys of shard `shard`.
fn keys_of_shard(engine: &Engine, shard: u32, count: usize) -> Vec<Vec<u8>> {
    (0u32..).map(|i| format!("k{shard}-{i}").into_bytes()).filter(|k| engine.shard_of(k) == shard).take(count).collect()
}
