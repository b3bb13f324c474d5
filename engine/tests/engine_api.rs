//! The engine API across reactors: single-key operations against a BTreeMap
//! oracle, atomic multi-shard transactions under concurrency, ordered scans
//! across shards, range deletes, limits and lock discipline.

use std::collections::BTreeMap;
use std::ops::Bound;

use keel_engine::testing::{memory_engine, TestEngineSpec};
use keel_engine::{Engine, EngineConfig, EngineError, Limits, MergeOp};
use keel_reactor::Runtime;
use rand::{Rng, SeedableRng};

fn start(reactors: usize, shards: u32) -> (Runtime, Engine) {
    let (runtime, engine, _) = memory_engine(&TestEngineSpec { reactors, shards, ..TestEngineSpec::default() });
    (runtime, engine)
}

#[test]
fn single_key_operations_match_a_btreemap() {
    let (runtime, engine) = start(2, 5);
    let oracle = runtime
        .call_blocking(0, move || async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(11);
            let mut oracle: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for i in 0..3000u32 {
                let key = format!("k{:03}", rng.gen_range(0..200)).into_bytes();
                match rng.gen_range(0..5) {
                    0 | 1 => {
                        let v = i.to_le_bytes().to_vec();
                        engine.put(&key, v.clone()).await.unwrap();
                        oracle.insert(key, v);
                    }
                    2 => {
                        engine.delete(&key).await.unwrap();
                        oracle.remove(&key);
                    }
                    3 => {
                        engine.merge(&key, MergeOp::Append(b"+".to_vec())).await.unwrap();
                        oracle.entry(key).or_default().push(b'+');
                    }
                    _ => assert_eq!(engine.get(&key).await.unwrap(), oracle.get(&key).cloned()),
                }
            }
            let all = engine.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).await.unwrap();
            assert_eq!(all, oracle.clone().into_iter().collect::<Vec<_>>());
            oracle.len()
        })
        .unwrap();
    assert!(oracle > 50);
}

#[test]
fn concurrent_transfers_across_shards_preserve_the_total() {
    let (runtime, engine) = start(2, 4);
    const ACCOUNTS: u32 = 16;
    let setup = engine.clone();
    runtime
        .call_blocking(0, move || async move {
            for a in 0..ACCOUNTS {
                setup.put(format!("acct{a}").as_bytes(), 1000i64.to_le_bytes().to_vec()).await.unwrap();
            }
        })
        .unwrap();
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let engine = engine.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        runtime
            .spawn_on((w % 2) as usize, move || async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(w);
                for _ in 0..150 {
                    let a = rng.gen_range(0..ACCOUNTS);
                    let b = (a + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                    let (ka, kb) = (format!("acct{a}"), format!("acct{b}"));
                    let mut txn = engine.transaction();
                    txn.lock(&[ka.as_bytes(), kb.as_bytes()]).await.unwrap();
                    let va = i64::from_le_bytes(txn.get(ka.as_bytes()).await.unwrap().unwrap().try_into().unwrap());
                    let vb = i64::from_le_bytes(txn.get(kb.as_bytes()).await.unwrap().unwrap().try_into().unwrap());
                    let amount = rng.gen_range(1..50);
                    txn.put(ka.as_bytes(), (va - amount).to_le_bytes().to_vec()).unwrap();
                    txn.put(kb.as_bytes(), (vb + amount).to_le_bytes().to_vec()).unwrap();
                    txn.commit().await.unwrap();
                }
                tx.send(()).unwrap();
            })
            .unwrap();
        workers.push(rx);
    }
    for rx in workers {
        rx.recv().unwrap();
    }
    let total = runtime
        .call_blocking(1, move || async move {
            let all = engine.scan(Bound::Unbounded, Bound::Unbounded, 1000).await.unwrap();
            assert_eq!(all.len(), ACCOUNTS as usize);
            all.iter().map(|(_, v)| i64::from_le_bytes(v.as_slice().try_into().unwrap())).sum::<i64>()
        })
        .unwrap();
    assert_eq!(total, 1000 * i64::from(ACCOUNTS));
}

/// On one reactor every shard is local: a multi-shard transaction commits
/// and applies on all its shards in one synchronous step, without gates.
/// Concurrent transfers (some between keys of one shard) must still keep the
/// total, and a transaction's keys must wait for each other's locks.
#[test]
fn transfers_across_shards_of_one_reactor_preserve_the_total() {
    let (runtime, engine) = start(1, 4);
    const ACCOUNTS: u32 = 12;
    let (tx, rx) = std::sync::mpsc::channel();
    runtime
        .spawn_on(0, move || async move {
            for a in 0..ACCOUNTS {
                engine.put(format!("acct{a}").as_bytes(), 1000i64.to_le_bytes().to_vec()).await.unwrap();
            }
            let mut workers = Vec::new();
            for w in 0..6u64 {
                let engine = engine.clone();
                workers.push(keel_reactor::spawn(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(w);
                    for _ in 0..200 {
                        let a = rng.gen_range(0..ACCOUNTS);
                        let b = (a + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                        let (ka, kb) = (format!("acct{a}"), format!("acct{b}"));
                        let mut txn = engine.transaction();
                        txn.lock(&[ka.as_bytes(), kb.as_bytes()]).await.unwrap();
                        let get = |v: Option<Vec<u8>>| i64::from_le_bytes(v.unwrap().try_into().unwrap());
                        let va = get(txn.get(ka.as_bytes()).await.unwrap());
                        // Let other workers run while the locks are held.
                        keel_reactor::yield_now().await;
                        let vb = get(txn.get(kb.as_bytes()).await.unwrap());
                        let amount = rng.gen_range(1..50);
                        txn.put(ka.as_bytes(), (va - amount).to_le_bytes().to_vec()).unwrap();
                        txn.put(kb.as_bytes(), (vb + amount).to_le_bytes().to_vec()).unwrap();
                        let lsn = txn.commit().await.unwrap();
                        engine.wait_durable(lsn).await.unwrap();
                    }
                }));
            }
            for w in workers {
                w.await;
            }
            let all = engine.scan(Bound::Unbounded, Bound::Unbounded, 1000).await.unwrap();
            assert_eq!(all.len(), ACCOUNTS as usize);
            let shards: std::collections::BTreeSet<u32> = all.iter().map(|(k, _)| engine.shard_of(k)).collect();
            assert!(shards.len() > 1, "the accounts must span several shards");
            let total: i64 = all.iter().map(|(_, v)| i64::from_le_bytes(v.as_slice().try_into().unwrap())).sum();
            tx.send(total).unwrap();
        })
        .unwrap();
    assert_eq!(rx.recv().unwrap(), 1000 * i64::from(ACCOUNTS));
}

#[test]
fn locked_read_modify_write_loses_no_update() {
    let (runtime, engine) = start(2, 3);
    let mut done = Vec::new();
    for r in 0..2usize {
        let engine = engine.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        runtime
            .spawn_on(r, move || async move {
                for _ in 0..300 {
                    let mut txn = engine.transaction();
                    txn.lock(&[b"counter"]).await.unwrap();
                    let v = txn.get(b"counter").await.unwrap().map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()));
                    txn.put(b"counter", (v + 1).to_le_bytes().to_vec()).unwrap();
                    txn.commit().await.unwrap();
                }
                tx.send(()).unwrap();
            })
            .unwrap();
        done.push(rx);
    }
    // Blind writes to other keys meanwhile must not disturb anything.
    for rx in done {
        rx.recv().unwrap();
    }
    let v = runtime.call_blocking(0, move || async move { engine.get(b"counter").await.unwrap() }).unwrap();
    assert_eq!(v, Some(600u64.to_le_bytes().to_vec()));
}

#[test]
fn scans_are_ordered_across_shards_and_respect_bounds_and_limits() {
    let (runtime, engine) = start(2, 7);
    runtime
        .call_blocking(1, move || async move {
            for i in 0..500u32 {
                engine.put(format!("s{i:04}").as_bytes(), vec![1]).await.unwrap();
            }
            let got =
                engine.scan(Bound::Included(b"s0100".to_vec()), Bound::Excluded(b"s0200".to_vec()), 30).await.unwrap();
            let keys: Vec<String> = got.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect();
            let expect: Vec<String> = (100..130).map(|i| format!("s{i:04}")).collect();
            assert_eq!(keys, expect);
        })
        .unwrap();
}

#[test]
fn delete_range_is_atomic_over_all_shards() {
    let (runtime, engine) = start(2, 4);
    runtime
        .call_blocking(0, move || async move {
            for i in 0..100u32 {
                engine.put(format!("r{i:03}").as_bytes(), vec![0]).await.unwrap();
            }
            engine.delete_range(b"r020", Some(b"r080")).await.unwrap();
            let left = engine.scan(Bound::Unbounded, Bound::Unbounded, 1000).await.unwrap();
            assert_eq!(left.len(), 40);
            assert!(left.iter().all(|(k, _)| k.as_slice() < b"r020".as_slice() || k.as_slice() >= b"r080".as_slice()));
        })
        .unwrap();
}

#[test]
fn prefix_routed_keys_scan_one_shard() {
    let (runtime, engine) = start(2, 8);
    runtime
        .call_blocking(0, move || async move {
            let mut prefix = vec![0x90u8];
            prefix.extend_from_slice(&77u64.to_be_bytes());
            for name in ["b", "a", "c"] {
                let mut key = prefix.clone();
                key.extend_from_slice(name.as_bytes());
                engine.put(&key, name.as_bytes().to_vec()).await.unwrap();
            }
            let end = keel_engine::route::prefix_successor(&prefix).unwrap();
            let got = engine.scan(Bound::Included(prefix.clone()), Bound::Excluded(end), 10).await.unwrap();
            let values: Vec<&[u8]> = got.iter().map(|(_, v)| v.as_slice()).collect();
            assert_eq!(values, vec![b"a".as_slice(), b"b", b"c"]);
        })
        .unwrap();
}

#[test]
fn limits_are_typed_errors_and_change_nothing() {
    let limits = Limits { key_bytes_max: 8, value_bytes_max: 16, txn_locks_max: 2, ..Limits::default() };
    let config = EngineConfig { limits, ..EngineConfig::default() };
    let (runtime, engine, _) =
        memory_engine(&TestEngineSpec { reactors: 1, shards: 2, config, ..TestEngineSpec::default() });
    runtime
        .call_blocking(0, move || async move {
            assert!(matches!(engine.put(b"123456789", vec![]).await, Err(EngineError::KeyTooLarge { .. })));
            assert!(matches!(engine.put(b"k", vec![0; 17]).await, Err(EngineError::ValueTooLarge { .. })));
            assert!(matches!(engine.put(b"", vec![]).await, Err(EngineError::EmptyKey)));
            let patch = MergeOp::PatchAt { offset: u64::MAX - 1, bytes: vec![1, 2, 3] };
            assert!(matches!(engine.merge(b"k", patch).await, Err(EngineError::ValueTooLarge { .. })));
            let mut txn = engine.transaction();
            assert!(matches!(txn.lock(&[b"a", b"b", b"c"]).await, Err(EngineError::TooManyLocks { .. })));
            assert_eq!(engine.get(b"k").await.unwrap(), None);
        })
        .unwrap();
}

#[test]
fn locks_out_of_order_are_refused_and_dropped_transactions_release_theirs() {
    let (runtime, engine) = start(2, 2);
    runtime
        .call_blocking(0, move || async move {
            let mut keys: Vec<(u32, &[u8])> =
                [b"x".as_slice(), b"y", b"z", b"w"].iter().map(|k| (engine.shard_of(k), *k)).collect();
            keys.sort();
            let mut txn = engine.transaction();
            txn.lock(&[keys[2].1]).await.unwrap();
            assert_eq!(txn.lock(&[keys[0].1]).await, Err(EngineError::LockOrder));
            drop(txn);
            // The dropped transaction's lock is released: this would hang otherwise.
            let mut other = engine.transaction();
            keel_reactor::time::timeout(std::time::Duration::from_secs(5), other.lock(&[keys[2].1]))
                .await
                .expect("lock released")
                .unwrap();
            other.put(keys[2].1, b"v".to_vec()).unwrap();
            other.commit().await.unwrap();
            assert_eq!(engine.get(keys[2].1).await.unwrap(), Some(b"v".to_vec()));
        })
        .unwrap();
}

/// A device whose largest transfer is smaller than the default journal record
/// limit (NVMe controllers often allow only 128 or 512 KiB per command) still
/// opens with the default configuration: the journal writes its batches in
/// pieces of one transfer, large values still go out of line, and a
/// transaction over the record limit is a typed error that changes nothing.
#[test]
fn a_device_with_a_small_transfer_limit_opens_with_the_default_configuration() {
    use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig};
    use keel_drivers::{BlockDevice, DmaPool};
    use std::sync::Arc;
    let spec = TestEngineSpec { reactors: 1, shards: 2, ..TestEngineSpec::default() };
    let pool = Arc::new(DmaPool::for_tests(spec.dma_pool_bytes));
    let transfer_bytes = 128 << 10;
    let config = MemoryDeviceConfig {
        capacity_bytes: spec.capacity_bytes,
        max_transfer_bytes: transfer_bytes,
        ..MemoryDeviceConfig::default()
    };
    let device: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(&config, pool));
    let (runtime, engine) = keel_engine::testing::start_on(device, &spec, true).expect("opens");
    let txn_bytes_max = engine.limits().txn_bytes_max;
    assert!(txn_bytes_max <= engine.config().journal.record_payload_bytes_max);
    runtime
        .call_blocking(0, move || async move {
            let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
            engine.put(b"big", big.clone()).await.unwrap();
            assert_eq!(engine.get(b"big").await.unwrap(), Some(big));
            let mut txn = engine.transaction();
            let inline_max = engine.config().tree.inline_value_max_bytes;
            for i in 0..(txn_bytes_max / inline_max.max(1) + 2) {
                txn.put(format!("k{i:06}").as_bytes(), vec![7; inline_max]).unwrap();
            }
            let committed = txn.commit().await;
            assert!(matches!(committed, Err(EngineError::TransactionTooLarge { .. })), "got {committed:?}");
            assert_eq!(engine.get(b"k000000").await.unwrap(), None);
        })
        .unwrap();
}

#[test]
fn values_written_before_the_locks_commit_or_are_given_back() {
    let (runtime, engine) = start(2, 3);
    runtime
        .call_blocking(0, move || async move {
            let big = engine.config().tree.inline_value_max_bytes + 1000;
            // Written out of line before the lock, then committed.
            let mut txn = engine.transaction();
            txn.put(b"big-a", vec![1; big]).unwrap();
            txn.write_values_now().await.unwrap();
            txn.lock(&[b"meta"]).await.unwrap();
            txn.put(b"meta", b"m".to_vec()).unwrap();
            // The transaction cannot read back what it already wrote out of line.
            assert!(matches!(txn.get(b"big-a").await, Err(EngineError::Invalid(_))));
            let lsn = txn.commit().await.unwrap();
            engine.wait_durable(lsn).await.unwrap();
            assert_eq!(engine.get(b"big-a").await.unwrap(), Some(vec![1; big]));
            assert_eq!(engine.get(b"meta").await.unwrap(), Some(b"m".to_vec()));
            // Written, then dropped (the extents are given back by a task
            // the drop spawns): nothing appears.
            for _ in 0..50 {
                let mut txn = engine.transaction();
                txn.put(b"big-b", vec![2; big]).unwrap();
                txn.write_values_now().await.unwrap();
                drop(txn);
            }
            keel_reactor::time::sleep(std::time::Duration::from_millis(10)).await;
            assert_eq!(engine.get(b"big-b").await.unwrap(), None);
        })
        .unwrap();
}

#[test]
fn values_put_from_dma_buffers_read_back_whole_from_any_pool() {
    let (runtime, engine) = start(2, 3);
    runtime
        .call_blocking(0, move || async move {
            let big = engine.config().tree.inline_value_max_bytes + 5000;
            let pattern =
                |seed: u8, len: usize| (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect::<Vec<u8>>();
            // From the engine's own pool (written as it is), from another
            // pool (copied), and small enough to be put inline.
            let mut own = engine.value_buf(big).expect("a free DMA buffer");
            own.copy_from_slice(&pattern(1, big));
            let foreign_pool = keel_drivers::dma::DmaPool::for_tests(4 << 20);
            let mut foreign = foreign_pool.try_alloc(big).unwrap();
            foreign.copy_from_slice(&pattern(2, big));
            let mut small = engine.value_buf(10).unwrap();
            small.copy_from_slice(&pattern(3, 10));
            let mut txn = engine.transaction();
            txn.put_buf(b"own", own).await.unwrap();
            txn.put_buf(b"foreign", foreign).await.unwrap();
            txn.put_buf(b"small", small).await.unwrap();
            let lsn = txn.commit().await.unwrap();
            engine.wait_durable(lsn).await.unwrap();
            assert_eq!(engine.get(b"own").await.unwrap(), Some(pattern(1, big)));
            assert_eq!(engine.get(b"foreign").await.unwrap(), Some(pattern(2, big)));
            assert_eq!(engine.get(b"small").await.unwrap(), Some(pattern(3, 10)));
            // Several at once, their writes in flight together.
            let mut txn = engine.transaction();
            let mut values = Vec::new();
            for i in 0..5u8 {
                let mut buf = engine.value_buf(big).expect("a free DMA buffer");
                buf.copy_from_slice(&pattern(10 + i, big));
                values.push((vec![b'm', i], buf));
            }
            txn.put_bufs(values).await.unwrap();
            let lsn = txn.commit().await.unwrap();
            engine.wait_durable(lsn).await.unwrap();
            for i in 0..5u8 {
                assert_eq!(engine.get(&[b'm', i]).await.unwrap(), Some(pattern(10 + i, big)));
            }
            // Written, then dropped: given back, nothing appears.
            let mut txn = engine.transaction();
            txn.put_buf(b"dropped", engine.value_buf(big).unwrap()).await.unwrap();
            drop(txn);
            keel_reactor::time::sleep(std::time::Duration::from_millis(10)).await;
            assert_eq!(engine.get(b"dropped").await.unwrap(), None);
        })
        .unwrap();
}
