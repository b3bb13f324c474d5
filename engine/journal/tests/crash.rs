//! Crash-state tests through the crash recorder.
//!
//! A workload of concurrent transactions — some tasks wait for durability
//! after every commit, some now and then, some never — runs on a crash
//! recorder while a checkpoint stand-in moves the head (so the ring wraps).
//! Then, for every flush point (or, with FUA, every write completion), every
//! acknowledgement and the end, and for many sampled post-crash images per
//! point (writes present, absent or torn at 512-byte sectors, in any order),
//! recovery must yield exactly a prefix of the committed transactions, from
//! the head recorded at that point: each byte-identical to what was
//! committed, each a whole transaction, and every transaction acknowledged
//! durable before the crash point among them. Recovery must never report
//! corruption for a crash: only damage is corruption.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::txn::Txn;
use common::*;
use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};
use keel_drivers::test_devices::{
    CrashLog, CrashMarker, CrashPoint, CrashRecorder, Event, Fault, FaultInjector, FaultRule,
};
use keel_drivers::{BlockDevice, DmaPool};
use keel_journal::{DurabilityMode, Journal, JournalConfig, JournalPosition, Lsn};
use keel_reactor::{spawn, Runtime, RuntimeConfig};

const RING_PAGES: u64 = 48;

type Committed = Arc<Mutex<BTreeMap<Lsn, Vec<u8>>>>;

#[derive(Debug, Clone, Copy)]
struct Workload {
    tasks: u64,
    txns_per_task: u64,
    durability: DurabilityMode,
    seed: u64,
    /// Held-back flush completions (0: none), so that flushes overlap.
    flush_delay_us: u64,
    /// The device's largest transfer: the journal's batch piece size.
    transfer_bytes: u32,
    /// Waiting tasks sleep this long (past the batch delay) between a commit
    /// and every other wait, so that the batch is sealed while nobody waits
    /// (written without FUA in FUA mode) and the wait needs a flush.
    pause_before_wait_us: u64,
    /// The journal's (`writes_in_flight_max`, `waiter_seal_writes_max`).
    write_slots: (usize, usize),
    /// Held-back write completions (0: none), so that writes pile up.
    write_delay_us: u64,
}

/// The slots of `small_config`: the waiters may use all of them.
const SLOTS_ALL_FOR_WAITERS: (usize, usize) = (4, 4);

/// The memory device's default largest transfer (pieces hold a whole batch).
const WHOLE_BATCH: u32 = 1 << 20;

fn crash_config(w: &Workload) -> JournalConfig {
    let (writes_in_flight_max, waiter_seal_writes_max) = w.write_slots;
    JournalConfig {
        durability: w.durability,
        batch_delay_us: 100,
        writes_in_flight_max,
        waiter_seal_writes_max,
        ..small_config()
    }
}

fn recorder(w: &Workload) -> Arc<CrashRecorder> {
    let (seed, flush_delay_us, write_delay_us) = (w.seed, w.flush_delay_us, w.write_delay_us);
    let pool = Arc::new(DmaPool::for_tests(8 << 20));
    let config = MemoryDeviceConfig {
        capacity_bytes: 1 << 20,
        reorder_seed: Some(seed),
        max_transfer_bytes: w.transfer_bytes,
        ..Default::default()
    };
    let inner = Arc::new(MemoryDevice::with_store(&config, pool, Arc::new(MemoryStore::new())));
    if flush_delay_us == 0 && write_delay_us == 0 {
        return Arc::new(CrashRecorder::over_memory(inner));
    }
    let initial = Arc::new(inner.store().deep_clone());
    let injector = FaultInjector::new(inner);
    if flush_delay_us > 0 {
        // Every flush is held back; some far longer, so a later flush can
        // complete while an earlier one is still in flight.
        injector.add(FaultRule::flushes(Fault::Delay(Duration::from_micros(flush_delay_us)))).unwrap();
        let long =
            FaultRule::flushes(Fault::Delay(Duration::from_micros(8 * flush_delay_us))).probability(0.3).seed(seed);
        injector.add(long).unwrap();
    }
    if write_delay_us > 0 {
        injector.add(FaultRule::writes(0..u64::MAX, Fault::Delay(Duration::from_micros(write_delay_us)))).unwrap();
    }
    Arc::new(CrashRecorder::new(Arc::new(injector), initial))
}

/// One committer: its transactions, acknowledged as its policy says.
async fn committer(journal: Journal, marker: CrashMarker, committed: Committed, task: u64, w: (u64, u64, u64)) {
    let (txns, seed, pause_us) = w;
    for i in 0..txns {
        let payload = Txn::generate(task * 1000 + i, seed ^ task).encode();
        let reservation = journal.reserve(payload.len()).await.unwrap();
        let lsn = reservation.commit(&payload).unwrap();
        committed.lock().unwrap().insert(lsn, payload);
        let wait = match task % 3 {
            0 => false,
            1 => true,
            _ => i % 4 == 3,
        };
        if wait {
            if pause_us > 0 && i % 2 == 0 {
                keel_reactor::time::sleep(Duration::from_micros(pause_us)).await;
            }
            journal.wait_durable(lsn).await.unwrap();
            marker.mark(&format!("ack {lsn}"));
        } else if i % 5 == 0 {
            keel_reactor::yield_now().await;
        }
    }
}

/// The checkpoint's stand-in: records the new head (as a durable superblock
/// would) before it frees the space behind it.
async fn checkpointer(journal: Journal, marker: CrashMarker, done: Arc<Mutex<u64>>, tasks: u64) {
    while *done.lock().unwrap() < tasks {
        keel_reactor::time::sleep(Duration::from_micros(300)).await;
        let durable = journal.lsn_durable();
        if durable <= 6 {
            continue;
        }
        let (head_lsn, head_offset) = journal.head_for(durable - 6).unwrap();
        if head_lsn > journal.usage().head_lsn {
            marker.mark(&format!("head {head_lsn} {head_offset}"));
            journal.advance_head(durable - 6).unwrap();
        }
    }
}

/// Runs the committers of `w` on the calling reactor; each counts itself
/// into `done` when it finishes.
async fn run_committers(
    journal: Journal,
    marker: CrashMarker,
    committed: Committed,
    w: &Workload,
    reactor: u64,
    done: Arc<Mutex<u64>>,
) {
    let mut handles = Vec::new();
    for t in 0..w.tasks {
        let (journal, marker, committed, done) = (journal.clone(), marker.clone(), committed.clone(), done.clone());
        let args = (w.txns_per_task, w.seed, w.pause_before_wait_us);
        handles.push(spawn(async move {
            committer(journal, marker, committed, reactor * 100 + t, args).await;
            *done.lock().unwrap() += 1;
        }));
    }
    for h in handles {
        h.await;
    }
}

/// Runs `w` on one reactor.
fn record_one_reactor(w: &Workload) -> (CrashLog, BTreeMap<Lsn, Vec<u8>>) {
    let rec = recorder(w);
    let committed: Committed = Arc::default();
    let config = crash_config(w);
    let (marker, c) = (rec.marker(), committed.clone());
    let device: Arc<dyn BlockDevice> = rec.clone();
    let w2 = *w;
    run(&[device], async move {
        let journal = Journal::open(region(RING_PAGES), &config, identity(1), JournalPosition::FRESH).await.unwrap();
        let done = Arc::new(Mutex::new(0u64));
        let checkpoint = spawn(checkpointer(journal.clone(), marker.clone(), done.clone(), w2.tasks));
        run_committers(journal, marker, c, &w2, 0, done).await;
        checkpoint.await;
    });
    let committed = committed.lock().unwrap().clone();
    (rec.log(), committed)
}

/// Runs `w` on each of two reactors at once, sharing one journal.
fn record_two_reactors(w: &Workload) -> (CrashLog, BTreeMap<Lsn, Vec<u8>>) {
    let rec = recorder(w);
    let committed: Committed = Arc::default();
    let config = crash_config(w);
    let device: Arc<dyn BlockDevice> = rec.clone();
    let runtime = Runtime::start(&RuntimeConfig { reactors: 2, ..RuntimeConfig::default() }, &[device]).unwrap();
    let journal = runtime
        .call_blocking(0, move || async move {
            Journal::open(region(RING_PAGES), &config, identity(1), JournalPosition::FRESH).await.unwrap()
        })
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // One checkpointer for the volume, as the engine will have.
    let done = Arc::new(Mutex::new(0u64));
    {
        let (journal, marker, done, tx, tasks) = (journal.clone(), rec.marker(), done.clone(), tx.clone(), 2 * w.tasks);
        runtime
            .spawn_on(0, move || async move {
                checkpointer(journal, marker, done, tasks).await;
                tx.send(()).unwrap();
            })
            .unwrap();
    }
    for reactor in 0..2u64 {
        let (journal, marker, committed, tx, done) =
            (journal.clone(), rec.marker(), committed.clone(), tx.clone(), done.clone());
        let w2 = *w;
        runtime
            .spawn_on(reactor as usize, move || async move {
                run_committers(journal, marker, committed, &w2, reactor, done).await;
                tx.send(()).unwrap();
            })
            .unwrap();
    }
    for _ in 0..3 {
        rx.recv().unwrap();
    }
    drop(journal);
    runtime.stop();
    let committed = committed.lock().unwrap().clone();
    (rec.log(), committed)
}

/// The points to crash at: after every flush completion, every write
/// completion (with FUA that is when writes become durable), every
/// acknowledgement, and the end.
fn crash_points(log: &CrashLog) -> Vec<CrashPoint> {
    let mut points: Vec<CrashPoint> = log
        .events()
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::FlushCompleted { .. } | Event::WriteCompleted { .. } | Event::Mark { .. }))
        .map(|(seq, _)| CrashPoint(seq as u64 + 1))
        .collect();
    points.push(log.end());
    points.dedup();
    points
}

/// What the harness knew at `point`: the head the "superblock" recorded and
/// the highest LSN acknowledged durable.
fn known_at(log: &CrashLog, point: CrashPoint) -> ((Lsn, u64), Lsn) {
    let mut head = (1, 0);
    let mut acked = 0;
    for label in log.marks_before(point) {
        let words: Vec<&str> = label.split(' ').collect();
        match words.as_slice() {
            ["head", lsn, offset] => head = (lsn.parse().unwrap(), offset.parse().unwrap()),
            ["ack", lsn] => acked = acked.max(lsn.parse().unwrap()),
            _ => panic!("unknown mark {label}"),
        }
    }
    (head, acked)
}

/// Recovers every chosen image of every crash point and checks it. Returns
/// the number of post-crash images checked.
fn check_crash_states(log: &CrashLog, committed: &BTreeMap<Lsn, Vec<u8>>, w: &Workload, per_point: u64) -> u64 {
    assert!(!log.overflowed());
    let config = crash_config(w);
    let pool = Arc::new(DmaPool::for_tests(4 << 20));
    let points = crash_points(log);
    let mut checked = 0u64;
    for state in log.states(points) {
        let point = state.point();
        let (head, acked) = known_at(log, point);
        for image in state.sampled_images(per_point, w.seed) {
            let id = image.id();
            let device: Arc<dyn BlockDevice> = Arc::new(image.to_device(Arc::clone(&pool)));
            let config = config.clone();
            let result = run(&[device], async move { replay(region(RING_PAGES), &config, 1, head).await });
            let (records, outcome) = result.unwrap_or_else(|e| panic!("{id}: recovery failed after a crash: {e}"));
            for (i, (lsn, payload)) in records.iter().enumerate() {
                assert_eq!(*lsn, head.0 + i as u64, "{id}: not a prefix");
                assert_eq!(Some(payload), committed.get(lsn), "{id}: LSN {lsn} is not what was committed");
                assert!(Txn::decode(payload).is_some(), "{id}: LSN {lsn} is a partial transaction");
            }
            assert!(
                outcome.next_lsn > acked,
                "{id}: LSN {acked} was acknowledged durable but recovery ended at {} ({})",
                outcome.next_lsn,
                outcome.end_reason
            );
            checked += 1;
        }
    }
    checked
}

fn report(name: &str, log: &CrashLog, committed: usize, checked: u64) {
    let line = format!(
        "crash states [{name}]: {checked} post-crash images checked over {} writes, {} flushes, {committed} transactions\n",
        log.writes().len(),
        log.flushes().len()
    );
    // Straight to stderr, past the test harness's capture: CI logs show it.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[test]
fn one_reactor_write_then_flush_recovers_a_prefix_with_every_acknowledged_transaction() {
    let w = Workload {
        tasks: 9,
        txns_per_task: 40,
        durability: DurabilityMode::WriteThenFlush,
        seed: 11,
        flush_delay_us: 0,
        transfer_bytes: WHOLE_BATCH,
        pause_before_wait_us: 0,
        write_slots: SLOTS_ALL_FOR_WAITERS,
        write_delay_us: 0,
    };
    let (log, committed) = record_one_reactor(&w);
    let checked = check_crash_states(&log, &committed, &w, 40);
    report("one reactor, write+flush", &log, committed.len(), checked);
    assert!(log.flushes().len() > 10 && checked >= 4000, "{checked} states");
}

#[test]
fn two_reactors_write_then_flush_recover_a_prefix_with_every_acknowledged_transaction() {
    let w = Workload {
        tasks: 5,
        txns_per_task: 40,
        durability: DurabilityMode::WriteThenFlush,
        seed: 23,
        flush_delay_us: 0,
        transfer_bytes: WHOLE_BATCH,
        pause_before_wait_us: 0,
        write_slots: SLOTS_ALL_FOR_WAITERS,
        write_delay_us: 0,
    };
    let (log, committed) = record_two_reactors(&w);
    let checked = check_crash_states(&log, &committed, &w, 40);
    report("two reactors, write+flush", &log, committed.len(), checked);
    assert!(checked >= 3000, "{checked} states");
}

#[test]
fn fua_writes_recover_a_prefix_with_every_acknowledged_transaction() {
    let w = Workload {
        tasks: 9,
        txns_per_task: 30,
        durability: DurabilityMode::Fua,
        seed: 37,
        flush_delay_us: 0,
        transfer_bytes: WHOLE_BATCH,
        pause_before_wait_us: 0,
        write_slots: SLOTS_ALL_FOR_WAITERS,
        write_delay_us: 0,
    };
    let (log, committed) = record_one_reactor(&w);
    let checked = check_crash_states(&log, &committed, &w, 40);
    report("one reactor, FUA", &log, committed.len(), checked);
    assert!(log.flushes().is_empty() && checked >= 3000, "{checked} states");
}

#[test]
fn fua_batches_nobody_waited_for_recover_a_prefix_with_every_acknowledged_transaction() {
    // Waiters sleep past the batch delay before every other wait: those
    // batches are sealed while nobody waits, written without FUA, and made
    // durable by a flush once the wait comes.
    let w = Workload {
        tasks: 6,
        txns_per_task: 30,
        durability: DurabilityMode::Fua,
        seed: 41,
        flush_delay_us: 0,
        transfer_bytes: WHOLE_BATCH,
        pause_before_wait_us: 400,
        write_slots: SLOTS_ALL_FOR_WAITERS,
        write_delay_us: 0,
    };
    let (log, committed) = record_one_reactor(&w);
    let checked = check_crash_states(&log, &committed, &w, 40);
    report("one reactor, FUA, batches sealed while nobody waits", &log, committed.len(), checked);
    let fua_writes = log.writes().iter().filter(|write| write.fua).count();
    let cached_writes = log.writes().len() - fua_writes;
    assert!(fua_writes > 0 && cached_writes > 0, "{fua_writes} FUA writes, {cached_writes} cached ones");
    assert!(!log.flushes().is_empty() && checked >= 3000, "{checked} states");
}

#[test]
fn overlapping_flushes_recover_a_prefix_with_every_acknowledged_transaction() {
    // Flush completions held back, so the journal issues a flush while an
    // earlier one is still in flight: each may only make durable what
    // completed before its own issue.
    let w = Workload {
        tasks: 9,
        txns_per_task: 30,
        durability: DurabilityMode::WriteThenFlush,
        seed: 41,
        flush_delay_us: 300,
        transfer_bytes: WHOLE_BATCH,
        pause_before_wait_us: 0,
        write_slots: SLOTS_ALL_FOR_WAITERS,
        write_delay_us: 0,
    };
    let (log, committed) = record_one_reactor(&w);
    let overlapping =
        log.flushes().windows(2).filter(|f| f[0].complete_seq.is_some_and(|done| f[1].submit_seq < done)).count();
    let checked = check_crash_states(&log, &committed, &w, 40);
    report("one reactor, write+flush, overlapping flushes", &log, committed.len(), checked);
    assert!(overlapping > 0 && checked >= 3000, "{overlapping} overlapping flushes, {checked} states");
}

#[test]
fn batches_in_pieces_recover_a_prefix_with_every_acknowledged_transaction() {
    // Pieces of one page: a batch is several device writes that complete in
    // any order, and a crash may keep any subset of them (records cross the
    // pieces' boundaries).
    for (durability, seed, name) in
        [(DurabilityMode::WriteThenFlush, 53, "write+flush"), (DurabilityMode::Fua, 59, "FUA")]
    {
        let w = Workload {
            tasks: 9,
            txns_per_task: 30,
            durability,
            seed,
            flush_delay_us: 0,
            transfer_bytes: 4096,
            pause_before_wait_us: 0,
            write_slots: SLOTS_ALL_FOR_WAITERS,
            write_delay_us: 0,
        };
        let (log, committed) = record_one_reactor(&w);
        let checked = check_crash_states(&log, &committed, &w, 20);
        report(&format!("one reactor, {name}, batches in one-page pieces"), &log, committed.len(), checked);
        assert!(checked >= 1500, "{checked} states");
    }
}

#[test]
fn full_batches_past_the_waiters_slots_recover_a_prefix_with_every_acknowledged_transaction() {
    // Eight write slots of which waiters may use two, in one-page pieces,
    // writes held back so that batches fill: full batches put up to eight
    // pieces of two or more batches in flight at once, completing in any
    // order, while waiters' batches wait for the first two slots.
    for (durability, seed, name) in
        [(DurabilityMode::WriteThenFlush, 61, "write+flush"), (DurabilityMode::Fua, 67, "FUA")]
    {
        let w = Workload {
            tasks: 9,
            txns_per_task: 30,
            durability,
            seed,
            flush_delay_us: 0,
            transfer_bytes: 4096,
            pause_before_wait_us: 0,
            write_slots: (8, 2),
            write_delay_us: 300,
        };
        let (log, committed) = record_one_reactor(&w);
        let depth_max = writes_in_flight_max(&log);
        let checked = check_crash_states(&log, &committed, &w, 20);
        report(&format!("one reactor, {name}, 8 slots, 2 for waiters"), &log, committed.len(), checked);
        // The slots past the waiters' were used.
        assert!(depth_max > 2 && checked >= 1500, "{depth_max} writes in flight at most, {checked} states");
    }
}

/// The most writes the log shows in flight at once.
fn writes_in_flight_max(log: &CrashLog) -> usize {
    let (mut depth, mut depth_max) = (0usize, 0usize);
    for event in log.events() {
        match event {
            Event::WriteSubmitted { .. } => depth += 1,
            Event::WriteCompleted { .. } => depth -= 1,
            _ => {}
        }
        depth_max = depth_max.max(depth);
    }
    depth_max
}
