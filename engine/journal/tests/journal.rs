//! Behaviour of the journal on the memory device: appending, durability,
//! back-pressure, wrap-around, the head, limits, and appenders on two reactors.

mod common;

use std::sync::Arc;

use common::*;
use keel_drivers::memory::MemoryStore;
use keel_journal::{Journal, JournalConfig, JournalError, JournalPosition};
use keel_reactor::{spawn, Runtime, RuntimeConfig};

#[test]
fn committed_records_become_durable_and_recover_in_order() {
    let store = Arc::new(MemoryStore::new());
    let device = memory_device(Arc::clone(&store), Some(3));
    let config = small_config();
    run(&[device], async move {
        let journal = Journal::open(region(64), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        let mut last = 0;
        for i in 0..100u64 {
            let p = payload(0, i, 10 + (i as usize * 37) % 500);
            let lsn = journal.reserve(p.len()).await.unwrap().commit(&p).unwrap();
            assert_eq!(lsn, i + 1, "LSNs are consecutive from 1");
            last = lsn;
        }
        journal.wait_durable(last).await.unwrap();
        assert!(journal.lsn_durable() >= last);
        // Batches of at most 32 KiB in pieces of the device's 1 MiB transfer:
        // every write is under a quarter piece, and counted so.
        let stats = journal.stats();
        assert!(stats.writes > 0 && stats.writes_under_quarter_piece == stats.writes, "{stats:?}");
        journal.close().await;
        assert!(matches!(journal.reserve(1).await, Err(JournalError::Closed)));
        let (records, outcome) = replay(region(64), &config, 1, (1, 0)).await.unwrap();
        assert_eq!(records.len(), 100);
        for (i, (lsn, p)) in records.iter().enumerate() {
            assert_eq!(*lsn, i as u64 + 1);
            assert_eq!(*p, payload(0, i as u64, 10 + (i * 37) % 500));
        }
        assert_eq!(outcome.next_lsn, 101);
        assert_eq!(outcome.next_offset % 4096, 0);
    });
}

#[test]
fn records_cross_the_pieces_of_a_batch_and_recover_byte_for_byte() {
    // Pieces of one page: a 32 KiB batch is up to 8 device writes, and most
    // records cross from one piece into the next (completions reordered).
    let store = Arc::new(MemoryStore::new());
    let device = memory_device_with_transfer(Arc::clone(&store), Some(9), 4096);
    let config = small_config();
    let len = |i: u64| 100 + (i as usize * 1_237) % 8_000;
    run(&[device], async move {
        let journal = Journal::open(region(512), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let journal = journal.clone();
            tasks.push(spawn(async move {
                let mut lsns = Vec::new();
                for i in 0..30u64 {
                    let p = payload(t, i, len(i));
                    let lsn = journal.reserve(p.len()).await.unwrap().commit(&p).unwrap();
                    lsns.push((lsn, i));
                    if i % 10 == 9 {
                        journal.wait_durable(lsn).await.unwrap();
                    }
                }
                lsns.into_iter().map(move |(lsn, i)| (lsn, t, i)).collect::<Vec<_>>()
            }));
        }
        let mut expected = Vec::new();
        for task in tasks {
            expected.extend(task.await);
        }
        expected.sort();
        let stats = journal.stats();
        assert!(stats.writes > stats.batches, "batches must span several pieces: {stats:?}");
        journal.close().await;
        let (records, outcome) = replay(region(512), &config, 1, (1, 0)).await.unwrap();
        assert_eq!(records.len(), expected.len(), "{}", outcome.end_reason);
        for ((lsn, p), (want_lsn, t, i)) in records.iter().zip(&expected) {
            assert_eq!(lsn, want_lsn);
            assert_eq!(*p, payload(*t, *i, len(*i)), "LSN {lsn}");
        }
    });
}

#[test]
fn large_records_copied_past_the_cache_recover_byte_for_byte() {
    // Payloads of 16-200 KiB are copied into batches with non-temporal
    // stores (`keel_drivers::dma::copy_streaming`), at every alignment a
    // record can start at, and across 64 KiB pieces.
    let store = Arc::new(MemoryStore::new());
    let device = memory_device_with_transfer(Arc::clone(&store), Some(5), 64 << 10);
    let config = JournalConfig { record_payload_bytes_max: 200 << 10, batch_bytes_max: 512 << 10, ..small_config() };
    let len = |i: u64| (16 << 10) + (i as usize * 37_813) % (184 << 10);
    run(&[device], async move {
        let journal = Journal::open(region(1024), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..2u64 {
            let journal = journal.clone();
            tasks.push(spawn(async move {
                let mut lsns = Vec::new();
                for i in 0..12u64 {
                    let p = payload(t, i, len(i) + t as usize * 3);
                    let lsn = journal.reserve(p.len()).await.unwrap().commit(&p).unwrap();
                    lsns.push((lsn, t, i));
                    if i % 4 == 3 {
                        journal.wait_durable(lsn).await.unwrap();
                    }
                }
                lsns
            }));
        }
        let mut expected = Vec::new();
        for task in tasks {
            expected.extend(task.await);
        }
        expected.sort();
        journal.close().await;
        let (records, outcome) = replay(region(1024), &config, 1, (1, 0)).await.unwrap();
        assert_eq!(records.len(), expected.len(), "{}", outcome.end_reason);
        for ((lsn, p), (want_lsn, t, i)) in records.iter().zip(&expected) {
            assert_eq!(lsn, want_lsn);
            assert!(*p == payload(*t, *i, len(*i) + *t as usize * 3), "LSN {lsn} differs");
        }
    });
}

#[test]
fn a_record_over_the_size_limit_is_a_typed_error() {
    let device = memory_device(Arc::new(MemoryStore::new()), None);
    let config = small_config();
    run(&[device], async move {
        let journal = Journal::open(region(64), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        let too_big = config.record_payload_bytes_max + 1;
        match journal.reserve(too_big).await {
            Err(JournalError::RecordTooLarge { payload_bytes, .. }) => assert_eq!(payload_bytes, too_big),
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
        let reservation = journal.reserve(10).await.unwrap();
        assert!(matches!(reservation.commit(&[0u8; 11]), Err(JournalError::ReservationExceeded { .. })));
        // The failed commit gave its space back: the ring is usable.
        let lsn = journal.reserve(10).await.unwrap().commit(&[1u8; 10]).unwrap();
        assert_eq!(lsn, 1);
        journal.wait_durable(lsn).await.unwrap();
        assert!(matches!(journal.wait_durable(5).await, Err(JournalError::NotCommitted { .. })));
    });
}

#[test]
fn a_configuration_whose_batch_cannot_hold_a_maximal_record_is_refused() {
    let device = memory_device(Arc::new(MemoryStore::new()), None);
    let mut config = small_config();
    config.record_payload_bytes_max = config.batch_bytes_max;
    run(&[device], async move {
        let err = Journal::open(region(64), &config, identity(1), JournalPosition::FRESH).await.unwrap_err();
        assert!(matches!(err, JournalError::Config(_)), "{err}");
    });
}

#[test]
fn a_full_ring_makes_appenders_wait_until_the_head_advances() {
    let device = memory_device(Arc::new(MemoryStore::new()), None);
    let config = small_config();
    run(&[device], async move {
        let journal = Journal::open(region(16), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        // 16 pages of 4 KiB; each 3000-byte record waits for durability, so
        // each takes a page of its own.
        let mut lsns = Vec::new();
        loop {
            let reserve = journal.reserve(3000);
            let reservation = match keel_reactor::time::timeout(std::time::Duration::from_millis(50), reserve).await {
                Ok(r) => r.unwrap(),
                Err(_) => break,
            };
            let lsn = reservation.commit(&payload(0, lsns.len() as u64, 3000)).unwrap();
            journal.wait_durable(lsn).await.unwrap();
            lsns.push(lsn);
            assert!(lsns.len() <= 16, "the ring cannot hold more than 16 one-page batches");
        }
        let usage = journal.usage();
        assert!(usage.used_bytes > usage.ring_bytes - 2 * 4096, "ring must be full: {usage:?}");
        // A waiting appender is released by the head moving.
        let waiter = {
            let journal = journal.clone();
            spawn(async move {
                let r = journal.reserve(3000).await.unwrap();
                r.commit(&[7u8; 3000]).unwrap()
            })
        };
        keel_reactor::time::sleep(std::time::Duration::from_millis(20)).await;
        let (head_lsn, head_offset) = journal.advance_head(lsns[3]).unwrap();
        assert_eq!(head_lsn, lsns[3]);
        assert_eq!(head_offset, 3 * 4096, "one batch per page: LSN 4 starts page 3");
        let lsn = waiter.await;
        assert_eq!(lsn, *lsns.last().unwrap() + 1);
        assert!(journal.usage().used_bytes < usage.used_bytes);
    });
}

#[test]
fn the_log_wraps_around_the_ring_and_recovers_across_its_end() {
    let store = Arc::new(MemoryStore::new());
    let device = memory_device(Arc::clone(&store), Some(9));
    let config = small_config();
    run(&[device], async move {
        let ring = region(32);
        let journal = Journal::open(ring, &config, identity(1), JournalPosition::FRESH).await.unwrap();
        let mut head = (1, 0);
        let mut written = 0u64;
        // Several laps of a 128 KiB ring, with a checkpoint-like head
        // advance every 10 records (never past what is durable).
        for i in 0..400u64 {
            let p = payload(1, i, 200 + (i as usize * 131) % 2500);
            let reserve = keel_reactor::time::timeout(std::time::Duration::from_secs(2), journal.reserve(p.len()));
            let reservation = reserve.await.unwrap_or_else(|_| panic!("stuck at {i}: {:?}", journal.usage())).unwrap();
            let lsn = reservation.commit(&p).unwrap();
            written += 1;
            if i % 3 == 0 {
                journal.wait_durable(lsn).await.unwrap();
            }
            if i % 10 == 9 {
                journal.wait_durable(lsn).await.unwrap();
                head = journal.advance_head(lsn - 5).unwrap();
            }
        }
        journal.wait_durable(written).await.unwrap();
        assert!(journal.stats().batch_bytes_written > 4 * ring.ring_bytes(), "must have wrapped several times");
        drop(journal);
        let (records, outcome) = replay(ring, &config, 1, head).await.unwrap();
        assert_eq!(records.first().unwrap().0, head.0);
        assert_eq!(outcome.next_lsn, written + 1);
        for (lsn, p) in &records {
            let i = lsn - 1;
            assert_eq!(*p, payload(1, i, 200 + (i as usize * 131) % 2500), "LSN {lsn}");
        }
    });
}

#[test]
fn advance_head_reports_the_batch_start_and_is_monotonic() {
    let device = memory_device(Arc::new(MemoryStore::new()), None);
    let config = small_config();
    run(&[device], async move {
        let journal = Journal::open(region(64), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        for i in 0..10u64 {
            let lsn = journal.reserve(100).await.unwrap().commit(&payload(0, i, 100)).unwrap();
            journal.wait_durable(lsn).await.unwrap();
        }
        // Each record was waited for alone: batch i holds LSN i+1 at page i.
        assert_eq!(journal.advance_head(5).unwrap(), (5, 4 * 4096));
        assert_eq!(journal.advance_head(3).unwrap(), (5, 4 * 4096), "the head never moves back");
        assert_eq!(journal.advance_head(11).unwrap(), (11, 10 * 4096), "the whole log reclaimed");
        assert!(matches!(journal.advance_head(12), Err(JournalError::HeadBeyondTail { .. })));
        assert_eq!(journal.usage().used_bytes, 0);
    });
}

#[test]
fn many_committers_share_batches_and_flushes() {
    let device = memory_device(Arc::new(MemoryStore::new()), Some(5));
    let config = small_config();
    run(&[device], async move {
        let journal = Journal::open(region(256), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let journal = journal.clone();
            tasks.push(spawn(async move {
                for i in 0..20u64 {
                    let lsn = journal.reserve(100).await.unwrap().commit(&payload(t, i, 100)).unwrap();
                    journal.wait_durable(lsn).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await;
        }
        let stats = journal.stats();
        assert_eq!(stats.records, 64 * 20);
        assert!(stats.batches * 4 < stats.records, "group commit must pack records: {stats:?}");
    });
}

#[test]
fn records_nobody_waits_for_are_written_after_the_batch_delay() {
    let store = Arc::new(MemoryStore::new());
    let device = memory_device(Arc::clone(&store), None);
    let config = small_config();
    run(&[device], async move {
        let journal = Journal::open(region(64), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        journal.reserve(50).await.unwrap().commit(&[3u8; 50]).unwrap();
        assert_eq!(journal.stats().batches, 0);
        keel_reactor::time::sleep(std::time::Duration::from_millis(20)).await;
        let stats = journal.stats();
        assert_eq!(stats.batches - stats.vouches, 1, "the delay timer must have sealed the batch");
        assert_eq!(journal.stats().flushes, 0, "nobody asked for durability");
        let (records, _) = replay(region(64), &config, 1, (1, 0)).await.unwrap();
        assert_eq!(records, vec![(1, vec![3u8; 50])]);
    });
}

#[test]
fn a_record_after_data_is_flushed_only_once_someone_waits_for_it() {
    let device = memory_device(Arc::new(MemoryStore::new()), None);
    let config = small_config();
    run(&[device], async move {
        let journal = Journal::open(region(64), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        let plain = journal.reserve(50).await.unwrap().commit(&[1u8; 50]).unwrap();
        let after_data = journal.reserve(50).await.unwrap().commit_after_data(&[2u8; 50]).unwrap();
        journal.wait_durable(plain).await.unwrap();
        assert_eq!(journal.stats().flushes, 0, "the FUA write makes the record before the data one durable");
        assert_eq!(journal.lsn_durable(), plain);
        keel_reactor::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(journal.stats().flushes, 0, "nobody waits yet: no flush");
        assert_eq!(journal.lsn_durable(), plain);
        journal.wait_durable(after_data).await.unwrap();
        assert_eq!(journal.stats().flushes, 1);
        assert_eq!(journal.lsn_durable(), after_data);
    });
}

#[test]
fn a_batch_nobody_waits_for_is_written_without_fua_and_flushed_once_someone_waits() {
    let device = memory_device(Arc::new(MemoryStore::new()), None);
    let config = small_config();
    run(&[device], async move {
        let journal = Journal::open(region(64), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        let first = journal.reserve(50).await.unwrap().commit(&[1u8; 50]).unwrap();
        let second = journal.reserve(50).await.unwrap().commit(&[2u8; 50]).unwrap();
        keel_reactor::time::sleep(std::time::Duration::from_millis(20)).await;
        let stats = journal.stats();
        assert_eq!(stats.batches - stats.vouches, 1, "the delay sealed the batch: {stats:?}");
        assert_eq!(stats.batches_without_fua, 1, "nobody waited at the seal: {stats:?}");
        assert_eq!(journal.lsn_durable(), 0, "written to the cache only: nothing durable yet");
        assert_eq!(stats.flushes, 0, "nobody waits yet: no flush");
        journal.wait_durable(first).await.unwrap();
        assert_eq!(journal.stats().flushes, 1, "one flush once someone waits");
        assert_eq!(journal.lsn_durable(), second, "the flush covers the whole batch");
        // A record someone waits for gets a FUA write and no flush.
        let third = journal.reserve(50).await.unwrap().commit(&[3u8; 50]).unwrap();
        journal.wait_durable(third).await.unwrap();
        let stats = journal.stats();
        assert_eq!((stats.flushes, stats.batches_without_fua), (1, 1), "{stats:?}");
    });
}

#[test]
fn a_reopened_log_with_a_new_epoch_never_replays_the_old_one() {
    let store = Arc::new(MemoryStore::new());
    let device = memory_device(Arc::clone(&store), None);
    let config = small_config();
    run(&[device], async move {
        let journal = Journal::open(region(64), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        for i in 0..30u64 {
            let lsn = journal.reserve(300).await.unwrap().commit(&payload(0, i, 300)).unwrap();
            journal.wait_durable(lsn).await.unwrap();
        }
        journal.close().await;
        let (_, outcome) = replay(region(64), &config, 1, (1, 0)).await.unwrap();
        // Reopen with epoch 2 where the old log ended, append a little.
        let start = JournalPosition::empty_at(outcome.next_lsn, outcome.next_offset);
        let journal = Journal::open(region(64), &config, identity(2), start).await.unwrap();
        let lsn = journal.reserve(10).await.unwrap().commit(&[9u8; 10]).unwrap();
        journal.wait_durable(lsn).await.unwrap();
        journal.close().await;
        let (records, outcome2) = replay(region(64), &config, 2, (start.head_lsn, start.head_offset)).await.unwrap();
        assert_eq!(records, vec![(31, vec![9u8; 10])]);
        assert_eq!(outcome2.next_lsn, 32);
        // Records of epoch 2 are appended only after a superblock naming
        // epoch 2 is durable; a replay that starts from a superblock still
        // at epoch 1 (the newer copy lost) must not end cleanly before them:
        // it is refused as corrupt.
        let err = replay(region(64), &config, 1, (1, 0)).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, JournalError::Corrupt { lsn: 31, .. }), "{message}");
        assert!(message.contains("later than the epoch 1"), "{message}");
    });
}

#[test]
fn appenders_on_two_reactors_get_distinct_consecutive_lsns() {
    let store = Arc::new(MemoryStore::new());
    let device = memory_device(Arc::clone(&store), Some(11));
    let config = small_config();
    let runtime = Runtime::start(&RuntimeConfig { reactors: 2, ..RuntimeConfig::default() }, &[device]).unwrap();
    let journal = {
        let config = config.clone();
        runtime
            .call_blocking(0, move || async move {
                Journal::open(region(512), &config, identity(1), JournalPosition::FRESH).await.unwrap()
            })
            .unwrap()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    for reactor in 0..2u64 {
        for t in 0..8u64 {
            let journal = journal.clone();
            let tx = tx.clone();
            runtime
                .spawn_on(reactor as usize, move || async move {
                    let task = reactor * 100 + t;
                    let mut mine = Vec::new();
                    for i in 0..50u64 {
                        let p = payload(task, i, 64 + (i as usize % 7) * 50);
                        let lsn = journal.reserve(p.len()).await.unwrap().commit(&p).unwrap();
                        if i % 4 == 0 {
                            journal.wait_durable(lsn).await.unwrap();
                        }
                        mine.push((lsn, p));
                    }
                    let last = mine.last().unwrap().0;
                    journal.wait_durable(last).await.unwrap();
                    tx.send(mine).unwrap();
                })
                .unwrap();
        }
    }
    drop(tx);
    let mut all: Vec<(u64, Vec<u8>)> = rx.iter().flatten().collect();
    all.sort();
    assert_eq!(all.len(), 800);
    assert!(all.iter().enumerate().all(|(i, (lsn, _))| *lsn == i as u64 + 1), "LSNs 1..=800, each once");
    drop(journal);
    runtime.stop();
    let device = memory_device(store, None);
    let records = run(&[device], async move { replay(region(512), &config, 1, (1, 0)).await.unwrap().0 });
    assert_eq!(records, all);
}
