//! The fault matrix at the engine's level: block type (superblock,
//! indirection table, internal node, leaf, journal block, out-of-line value)
//! x operation (get, put, scan, checkpoint, recovery) x fault (bit flip,
//! zeroed, torn, lost, misdirected, EIO), through the fault injector.
//!
//! Each case starts from the same crashed volume (a checkpoint, then a
//! journal tail to replay), aims the fault at the I/O the operation does on
//! that kind of block — reads by address (from the block map), writes by
//! their contents — runs the operation, then checks everything: every key,
//! a full scan and fsck on the live engine, then a crash and a recovery on
//! the resulting image and the same checks again. A case is:
//!
//! - *detected* when a typed error surfaced (from the operation, a read,
//!   fsck or recovery) and no read returned wrong data; a superblock copy
//!   rejected by its checksum while the other copy served the right data
//!   counts too (the open report names the rejected copy);
//! - *wrong* when any read returned data the oracle does not allow;
//! - a *panic* when anything panicked.
//!
//! Required: every case detected, no wrong answer, no panic, and every
//! fault fired (a case whose fault never fired fails the test, so no cell
//! passes without exercising what it names). Cells where the operation never
//! does I/O on that kind of block, or the fault cannot apply, are printed as
//! n/a with the reason. Bit flips, zeroing and EIO apply to the reads the
//! operation makes of that block (every read of every such block; for the
//! superblock, the first read of the newer copy), and to its writes of it when
//! it makes no reads; torn, lost and misdirected writes apply to the first
//! write of that kind the operation makes (chosen by content: a tear keeps
//! the first sector, so it aims at blocks with content past it).
//!
//! Operations: get (every key) and scan (everything) with a cache far smaller
//! than the data; put (300 puts, some out of line, then a durability wait)
//! with the same cache; checkpoint (after 400 puts, with writers going on
//! during it) and recovery (opening a volume with 1500 records to replay)
//! with a cache that holds everything, so the checkpoint writes every node.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Change, Oracle};
use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};
use keel_drivers::test_devices::{Fault, FaultInjector, FaultRule, Misdirect, WriteFilter};
use keel_drivers::{BlockDevice, DmaPool};
use keel_engine::layout::{Layout, PAGE_BYTES};
use keel_engine::superblock::Superblock;
use keel_engine::{BlockKind, Engine, EngineConfig, EngineError, OpenReport, TreeConfig};
use keel_reactor::io::DeviceId;
use keel_reactor::{Runtime, RuntimeConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SHARDS: u32 = 2;
const CAPACITY_BYTES: u64 = 32 << 20;
const BASE_KEYS: u32 = 1200;
/// Journal batches nobody waits for go out this long after their first
/// record; long enough that a put then a checkpoint find records unwritten.
const BATCH_DELAY_US: u64 = 20_000;
/// Before a crash: long enough for the journal's idle pad batch (which
/// vouches for the last durable records) to be written.
const SETTLE: Duration = Duration::from_millis(3 * BATCH_DELAY_US / 1000);
/// How long a checkpoint's first node write is held back (see `run_operation`).
const HOLD_CHECKPOINT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Block {
    Superblock,
    Table,
    Internal,
    Leaf,
    Journal,
    Extent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Get,
    Put,
    Scan,
    Checkpoint,
    Recovery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FaultKind {
    BitFlip,
    Zeroed,
    Torn,
    Lost,
    Misdirected,
    Eio,
}

const BLOCKS: [Block; 6] =
    [Block::Superblock, Block::Table, Block::Internal, Block::Leaf, Block::Journal, Block::Extent];
const OPERATIONS: [Operation; 5] =
    [Operation::Get, Operation::Put, Operation::Scan, Operation::Checkpoint, Operation::Recovery];
const FAULTS: [FaultKind; 6] =
    [FaultKind::BitFlip, FaultKind::Zeroed, FaultKind::Torn, FaultKind::Lost, FaultKind::Misdirected, FaultKind::Eio];

/// Which I/O an operation does on a kind of block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Io {
    reads: bool,
    writes: bool,
}

/// What each operation reads and writes of each kind of block, or why it
/// does neither.
fn io_of(block: Block, op: Operation) -> Result<Io, &'static str> {
    use Block::*;
    use Operation::*;
    let io = |reads, writes| Ok(Io { reads, writes });
    match (block, op) {
        (Superblock, Get | Put | Scan) => Err("only opening reads the superblock and only checkpoints write it"),
        (Superblock, Checkpoint) => io(false, true),
        (Superblock, Recovery) => io(true, true),
        (Table, Get | Put | Scan) => {
            Err("the indirection table is read whole when a tree opens and written only by checkpoints")
        }
        (Table, Checkpoint) => io(false, true),
        (Table, Recovery) => io(true, true),
        (Internal | Leaf, Get | Scan) => io(true, false),
        (Internal | Leaf, Put) => io(true, true),
        (Internal | Leaf, Checkpoint) => io(false, true),
        (Internal | Leaf, Recovery) => io(true, true),
        (Journal, Get | Scan) => Err("reads never touch the journal"),
        (Journal, Put | Checkpoint) => io(false, true),
        (Journal, Recovery) => io(true, false),
        (Extent, Get | Scan) => io(true, false),
        (Extent, Put) => io(false, true),
        (Extent, Checkpoint) => Err("a checkpoint neither reads nor writes values: each is written once by its put"),
        (Extent, Recovery) => io(true, false),
    }
}

/// Whether `fault` hits a read or a write for this cell, or why neither.
fn injection(block: Block, op: Operation, fault: FaultKind) -> Result<Direction, String> {
    let io = io_of(block, op).map_err(str::to_owned)?;
    match fault {
        FaultKind::BitFlip | FaultKind::Zeroed | FaultKind::Eio if io.reads => Ok(Direction::Read),
        FaultKind::BitFlip | FaultKind::Zeroed | FaultKind::Eio => Ok(Direction::Write),
        FaultKind::Torn | FaultKind::Lost | FaultKind::Misdirected if io.writes => Ok(Direction::Write),
        _ => Err(format!(
            "a {} writes no {} (torn, lost and misdirected are write faults)",
            op_name(op),
            block_name(block)
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

fn block_name(b: Block) -> &'static str {
    match b {
        Block::Superblock => "superblock",
        Block::Table => "indirection table",
        Block::Internal => "internal node",
        Block::Leaf => "leaf",
        Block::Journal => "journal block",
        Block::Extent => "out-of-line value",
    }
}

fn op_name(o: Operation) -> &'static str {
    match o {
        Operation::Get => "get",
        Operation::Put => "put",
        Operation::Scan => "scan",
        Operation::Checkpoint => "checkpoint",
        Operation::Recovery => "recovery",
    }
}

fn fault_name(f: FaultKind) -> &'static str {
    match f {
        FaultKind::BitFlip => "bit flip",
        FaultKind::Zeroed => "zeroed",
        FaultKind::Torn => "torn",
        FaultKind::Lost => "lost",
        FaultKind::Misdirected => "misdirected",
        FaultKind::Eio => "EIO",
    }
}

fn fault_of(f: FaultKind) -> Fault {
    match f {
        FaultKind::BitFlip => Fault::FlipBits { bits: 64 },
        FaultKind::Zeroed => Fault::Zero,
        FaultKind::Torn => Fault::Tear { sectors: 1 },
        FaultKind::Lost => Fault::Lose,
        FaultKind::Misdirected => Fault::Misdirect(Misdirect::Offset(8)),
        FaultKind::Eio => Fault::eio(),
    }
}

// Write filters: which written blocks are of a kind. A tear keeps the first
// sector, so torn cases aim at blocks whose content goes past it.
fn is_node(d: &[u8]) -> bool {
    d.starts_with(b"KTND")
}
fn is_leaf(d: &[u8]) -> bool {
    is_node(d) && d[4] == 1
}
fn is_internal(d: &[u8]) -> bool {
    is_node(d) && d[4] == 2
}
fn is_table(d: &[u8]) -> bool {
    d.starts_with(b"KTTB")
}
fn is_extent(d: &[u8]) -> bool {
    !(is_node(d) || is_table(d) || d.starts_with(b"KTSM") || d.starts_with(b"KTDR"))
}
fn past_first_sector(d: &[u8]) -> bool {
    d.len() > 512 && d[512..].iter().any(|&b| b != 0)
}
fn any(_: &[u8]) -> bool {
    true
}
/// A journal batch that starts with a data record (not the idle vouch
/// batch, a lone pad whose damage nothing needs to notice): the record
/// header's magic `KJR1` and kind 2 (data) at byte 36.
fn is_journal_data(d: &[u8]) -> bool {
    d.len() >= 40 && d.starts_with(b"KJR1") && d[36] == 2
}
fn is_journal_data_long(d: &[u8]) -> bool {
    is_journal_data(d) && past_first_sector(d)
}
fn is_leaf_long(d: &[u8]) -> bool {
    is_leaf(d) && past_first_sector(d)
}
fn is_internal_long(d: &[u8]) -> bool {
    is_internal(d) && past_first_sector(d)
}
fn is_table_long(d: &[u8]) -> bool {
    is_table(d) && past_first_sector(d)
}
fn is_extent_long(d: &[u8]) -> bool {
    is_extent(d) && past_first_sector(d)
}

fn write_filter(block: Block, torn: bool) -> WriteFilter {
    match (block, torn) {
        (Block::Leaf, false) => is_leaf,
        (Block::Leaf, true) => is_leaf_long,
        (Block::Internal, false) => is_internal,
        (Block::Internal, true) => is_internal_long,
        (Block::Table, false) => is_table,
        (Block::Table, true) => is_table_long,
        (Block::Extent, false) => is_extent,
        (Block::Extent, true) => is_extent_long,
        // The superblock's checksum sits in its last sector.
        (Block::Superblock, _) => any,
        (Block::Journal, false) => is_journal_data,
        (Block::Journal, true) => is_journal_data_long,
    }
}

/// Multi-sector nodes (so a torn write damages them) and a height of four
/// with 1200 keys.
fn tree_config(cache_bytes: usize) -> TreeConfig {
    TreeConfig {
        leaf_bytes: 2048,
        internal_bytes: 4096,
        fanout_max: 6,
        cache_bytes,
        inline_value_max_bytes: 96,
        reserve_pages: Some(16),
        write_depth: 8,
        background_maintenance: true,
    }
}

/// A cache far smaller than the data: gets, scans and puts read nodes from
/// the device and puts evict (write) them.
const CACHE_SMALL_BYTES: usize = 64 << 10;
/// A cache that holds everything: what changed stays dirty until the
/// checkpoint (a regular one, or the one after recovery) writes it.
const CACHE_LARGE_BYTES: usize = 8 << 20;
/// Puts of the put operation, per round. The put operation runs rounds
/// until its fault fired (at most `PUT_ROUNDS_MAX`): internal nodes leave
/// the cache last, so dirty ones are evicted (written) only once their
/// buffers have filled the cache, which takes more puts than a leaf does.
const PUTS_PER_ROUND: u32 = 300;
const PUT_ROUNDS_MAX: u64 = 8;

fn cache_for(op: Operation) -> usize {
    match op {
        Operation::Get | Operation::Scan | Operation::Put => CACHE_SMALL_BYTES,
        Operation::Checkpoint | Operation::Recovery => CACHE_LARGE_BYTES,
    }
}

fn engine_config(cache_bytes: usize) -> EngineConfig {
    let mut config = EngineConfig { tree: tree_config(cache_bytes), ..EngineConfig::default() };
    config.checkpoint_interval = Duration::from_secs(3600);
    config.journal.batch_delay_us = BATCH_DELAY_US;
    config
}

fn device_over(store: MemoryStore, pool: &Arc<DmaPool>) -> Arc<MemoryDevice> {
    let config = MemoryDeviceConfig { capacity_bytes: CAPACITY_BYTES, ..MemoryDeviceConfig::default() };
    Arc::new(MemoryDevice::with_store(&config, Arc::clone(pool), Arc::new(store)))
}

fn open(device: Arc<dyn BlockDevice>, cache_bytes: usize) -> (Runtime, Result<(Engine, OpenReport), EngineError>) {
    let runtime = Runtime::start(&RuntimeConfig { reactors: 1, ..RuntimeConfig::default() }, &[device]).unwrap();
    let opened = Engine::open(&runtime, DeviceId(0), engine_config(cache_bytes));
    (runtime, opened)
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value(rng: &mut StdRng) -> Vec<u8> {
    if rng.gen_ratio(1, 9) {
        (0..rng.gen_range(700..3000)).map(|_| rng.gen()).collect()
    } else {
        vec![rng.gen_range(b'a'..=b'z'); rng.gen_range(30..90)]
    }
}

/// The volumes the cases start from.
struct Base {
    /// A checkpoint holding `BASE_KEYS` keys, then a journal tail of
    /// acknowledged changes (some values out of line), then a crash: what
    /// recovery cases open.
    with_tail: MemoryStore,
    /// The same after a recovery and a checkpoint: nothing to replay, and
    /// only the root cached after opening. The other operations start here.
    checkpointed: MemoryStore,
    oracle: Oracle,
    layout: Layout,
    /// The out-of-line values the tail's records name (recovery checks them).
    tail_extents: Vec<std::ops::Range<u64>>,
}

fn make_base(pool: &Arc<DmaPool>) -> Base {
    let device = device_over(MemoryStore::new(), pool);
    let runtime = Runtime::start(
        &RuntimeConfig { reactors: 1, ..RuntimeConfig::default() },
        &[Arc::clone(&device) as Arc<dyn BlockDevice>],
    )
    .unwrap();
    keel_engine::testing::mkfs(&runtime, SHARDS).unwrap();
    let (engine, _) = Engine::open(&runtime, DeviceId(0), engine_config(CACHE_LARGE_BYTES)).unwrap();
    let layout = engine.superblock().layout;
    let writer = engine.clone();
    let oracle = runtime
        .call_blocking(0, move || async move {
            let mut rng = StdRng::seed_from_u64(11);
            let mut oracle = Oracle::default();
            let mut last = 0;
            for i in 0..BASE_KEYS {
                let v = value(&mut rng);
                last = writer.put(&key(i), v.clone()).await.unwrap();
                oracle.apply(&Change::Put(key(i), v));
            }
            writer.wait_durable(last).await.unwrap();
            writer.checkpoint().await.unwrap();
            // The tail recovery replays: enough for its flushes to reach
            // the leaves.
            for _ in 0..1500 {
                let k = key(rng.gen_range(0..BASE_KEYS));
                let v = value(&mut rng);
                last = writer.put(&k, v.clone()).await.unwrap();
                oracle.apply(&Change::Put(k, v));
            }
            writer.wait_durable(last).await.unwrap();
            keel_reactor::time::sleep(SETTLE).await;
            oracle
        })
        .unwrap();
    drop(engine);
    runtime.stop();
    let with_tail = device.store().deep_clone();
    let before = checkpoint_blocks(&with_tail, pool, &layout, BlockKind::Extent);

    let device = device_over(with_tail.deep_clone(), pool);
    let (runtime, opened) = open(Arc::clone(&device) as Arc<dyn BlockDevice>, CACHE_LARGE_BYTES);
    let (engine, _) = opened.unwrap();
    std::thread::sleep(SETTLE);
    drop(engine);
    runtime.stop();
    let checkpointed = device.store().deep_clone();
    let after = checkpoint_blocks(&checkpointed, pool, &layout, BlockKind::Extent);
    let tail_extents = after.into_iter().filter(|r| !before.contains(r)).collect();
    Base { with_tail, checkpointed, oracle, layout, tail_extents }
}

/// How one case ended.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    detected: u32,
    /// Of `detected`: a superblock copy was rejected and the other served.
    repaired: u32,
    wrong: u32,
    panicked: u32,
    /// The fault fired but nothing noticed and every answer was right.
    missed: u32,
    /// The fault never fired: the case did not exercise what it names.
    not_reached: u32,
}

impl Outcome {
    fn add(&mut self, o: Outcome) {
        self.detected += o.detected;
        self.repaired += o.repaired;
        self.wrong += o.wrong;
        self.panicked += o.panicked;
        self.missed += o.missed;
        self.not_reached += o.not_reached;
    }
}

/// What the checks saw.
#[derive(Debug, Default)]
struct Seen {
    errors: Vec<String>,
    wrong: Vec<String>,
    repaired: bool,
}

/// Keys whose value may legitimately be either of two: a change whose
/// operation failed may or may not have reached the journal.
#[derive(Debug, Clone, Default)]
struct Expect {
    oracle: Oracle,
    either: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Expect {
    fn allows(&self, k: &[u8], got: Option<&Vec<u8>>) -> bool {
        self.oracle.map.get(k) == got || self.either.get(k).is_some_and(|alt| alt.as_ref() == got)
    }
}

/// Reads every key and scans everything on `engine`, then runs fsck.
fn check_all(runtime: &Runtime, engine: &Engine, expect: &Expect, seen: &mut Seen, when: &str) {
    let engine = engine.clone();
    let expect2 = expect.clone();
    let when = when.to_owned();
    let (errors, wrong) = runtime
        .call_blocking(0, move || async move {
            let (mut errors, mut wrong) = (Vec::new(), Vec::new());
            let mut keys: Vec<&Vec<u8>> = expect2.oracle.map.keys().collect();
            keys.extend(expect2.either.keys());
            for k in keys {
                match engine.get(k).await {
                    Ok(got) if expect2.allows(k, got.as_ref()) => {}
                    Ok(_) => wrong.push(format!("{when}: get {}", String::from_utf8_lossy(k))),
                    Err(e) => errors.push(format!("{when}: get: {e}")),
                }
            }
            match engine.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).await {
                Ok(all) => {
                    let got: BTreeMap<&Vec<u8>, &Vec<u8>> = all.iter().map(|(k, v)| (k, v)).collect();
                    let mut keys: Vec<&Vec<u8>> = expect2.oracle.map.keys().chain(expect2.either.keys()).collect();
                    keys.extend(got.keys().copied());
                    if keys.iter().any(|k| !expect2.allows(k, got.get(k).copied())) {
                        wrong.push(format!("{when}: scan"));
                    }
                }
                Err(e) => errors.push(format!("{when}: scan: {e}")),
            }
            match engine.fsck().await {
                Ok(reports) => {
                    for (shard, r) in reports.iter().enumerate() {
                        if !r.is_clean() {
                            errors.push(format!("{when}: fsck of shard {shard}: {:?}", r.problems.first()));
                        }
                    }
                }
                Err(e) => errors.push(format!("{when}: fsck: {e}")),
            }
            (errors, wrong)
        })
        .unwrap();
    seen.errors.extend(errors);
    seen.wrong.extend(wrong);
}

fn kind_of(block: Block) -> BlockKind {
    match block {
        Block::Table => BlockKind::Table,
        Block::Internal => BlockKind::Internal,
        Block::Leaf => BlockKind::Leaf,
        _ => BlockKind::Extent,
    }
}

/// The LBA ranges of every block of `kind` in the checkpoint in force on
/// `store`, read straight from the trees the newest superblock names.
fn checkpoint_blocks(
    store: &MemoryStore,
    pool: &Arc<DmaPool>,
    layout: &Layout,
    kind: BlockKind,
) -> Vec<std::ops::Range<u64>> {
    let sb = newest_superblock(store);
    let device = device_over(store.deep_clone(), pool);
    let layout = *layout;
    let states = sb.shard_states.clone();
    keel_reactor::block_on(&[device as Arc<dyn BlockDevice>], async move {
        let mut out = Vec::new();
        for shard in 0..SHARDS {
            let (first_page, pages) = layout.shard_region(shard);
            let config = tree_config(CACHE_LARGE_BYTES);
            let tree =
                keel_tree::Tree::open(DeviceId(0), first_page, pages, &states[shard as usize], config).await.unwrap();
            for b in tree.block_map().await.unwrap() {
                if b.kind == kind {
                    out.push(first_page + b.address..first_page + b.address + b.pages);
                }
            }
        }
        out
    })
    .unwrap()
}

/// Where reads of `block` are aimed for `op`, on the image the case opens.
fn read_targets(base: &Base, pool: &Arc<DmaPool>, block: Block, op: Operation) -> Vec<std::ops::Range<u64>> {
    let store = if op == Operation::Recovery { &base.with_tail } else { &base.checkpointed };
    match block {
        // Recovery reads both copies; the newer one is damaged.
        Block::Superblock => {
            let page = newest_superblock(store).slot_page();
            std::iter::once(page..page + 1).collect()
        }
        // A page inside the tail recovery replays.
        Block::Journal => {
            let sb = newest_superblock(store);
            let ring = base.layout.journal_pages * PAGE_BYTES as u64;
            let first = base.layout.journal_start_page + (sb.journal_head_offset % ring) / PAGE_BYTES as u64;
            std::iter::once(first + 2..first + 3).collect()
        }
        Block::Extent if op == Operation::Recovery => base.tail_extents.clone(),
        _ => checkpoint_blocks(store, pool, &base.layout, kind_of(block)),
    }
}

fn newest_superblock(store: &MemoryStore) -> Superblock {
    let mut best: Option<Superblock> = None;
    for page in 0..2u64 {
        let mut buf = vec![0u8; PAGE_BYTES];
        store.read(page * PAGE_BYTES as u64, &mut buf);
        if let Ok(sb) = Superblock::decode(&buf) {
            if best.as_ref().is_none_or(|b| sb.generation > b.generation) {
                best = Some(sb);
            }
        }
    }
    best.unwrap()
}

/// The LBA range writes of `block` go to.
fn write_range(layout: &Layout, block: Block) -> std::ops::Range<u64> {
    match block {
        Block::Superblock => 0..2,
        Block::Journal => layout.journal_start_page..layout.journal_start_page + layout.journal_pages,
        _ => layout.data_start_page..layout.capacity_pages,
    }
}

/// Installs the fault of a case; returns the ids of its rules.
fn arm(
    injector: &FaultInjector,
    block: Block,
    fault: FaultKind,
    direction: Direction,
    read_ranges: &[std::ops::Range<u64>],
    layout: &Layout,
) -> Vec<keel_drivers::test_devices::RuleId> {
    match direction {
        Direction::Read => read_ranges
            .iter()
            .map(|r| {
                let rule = FaultRule::reads(r.clone(), fault_of(fault)).seed(7);
                // A damaged superblock copy stays damaged until it is
                // rewritten, and open reads each copy once before rewriting
                // one: only that first read is hit. Other blocks are never
                // rewritten in place, so every read of them is.
                let rule = if block == Block::Superblock { rule.first(1) } else { rule };
                injector.add(rule).unwrap()
            })
            .collect(),
        Direction::Write => {
            let rule = FaultRule::writes(write_range(layout, block), fault_of(fault))
                .when_written(write_filter(block, fault == FaultKind::Torn))
                .nth(1)
                .seed(7);
            vec![injector.add(rule).unwrap()]
        }
    }
}

/// The put operation: changes keys (some values out of line), then waits
/// for durability. Returns what it acknowledged and what may or may not be.
async fn put_op(engine: &Engine, expect: &mut Expect, count: u32, seed: u64, wait: bool) -> Result<(), EngineError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last = 0;
    for i in 0..count {
        let k = key(rng.gen_range(0..BASE_KEYS + 200));
        let v = if i % 10 == 3 { (0..2000).map(|_| rng.gen()).collect() } else { value(&mut rng) };
        match engine.put(&k, v.clone()).await {
            Ok(lsn) => {
                last = lsn;
                // Acknowledged only once durable: until then either.
                let old = expect.oracle.map.get(&k).cloned();
                expect.oracle.apply(&Change::Put(k.clone(), v));
                expect.either.entry(k).or_insert(old);
            }
            Err(e) => {
                expect.either.entry(k).or_insert(Some(v));
                return Err(e);
            }
        }
    }
    if wait {
        engine.wait_durable(last).await?;
        expect.either.clear();
    }
    Ok(())
}

/// One case: the base volume, the fault armed for the operation, then every
/// check. Panics are caught by the caller.
fn run_case(
    base: &Base,
    pool: &Arc<DmaPool>,
    block: Block,
    op: Operation,
    fault: FaultKind,
    dir: Direction,
) -> Outcome {
    let start = if op == Operation::Recovery { &base.with_tail } else { &base.checkpointed };
    let memory = device_over(start.deep_clone(), pool);
    let injector = Arc::new(FaultInjector::new(Arc::clone(&memory) as Arc<dyn BlockDevice>));
    let ranges = if dir == Direction::Read { read_targets(base, pool, block, op) } else { Vec::new() };
    assert!(dir == Direction::Write || !ranges.is_empty(), "no {} to aim at", block_name(block));
    let mut seen = Seen::default();
    let mut expect = Expect { oracle: base.oracle.clone(), either: BTreeMap::new() };
    let mut rules = Vec::new();
    if op == Operation::Recovery {
        rules = arm(&injector, block, fault, dir, &ranges, &base.layout);
    }
    let (runtime, opened) = open(Arc::clone(&injector) as Arc<dyn BlockDevice>, cache_for(op));
    let fired_count =
        |rules: &[keel_drivers::test_devices::RuleId]| rules.iter().map(|&r| injector.fired(r)).sum::<u64>();
    let fired;
    match opened {
        Err(e) => {
            fired = fired_count(&rules);
            seen.errors.push(format!("open: {e}"));
            injector.clear();
            runtime.stop();
        }
        Ok((engine, report)) => {
            if op == Operation::Recovery {
                fired = fired_count(&rules);
                injector.clear();
                seen.repaired = report.superblock_rejected.is_some();
            } else {
                if op == Operation::Checkpoint {
                    // Dirty nodes for the checkpoint to write, all durable
                    // in the journal before it starts.
                    let e = engine.clone();
                    let ex = expect.clone();
                    expect = runtime
                        .call_blocking(0, move || async move {
                            let mut ex = ex;
                            put_op(&e, &mut ex, 400, 1, true).await.unwrap();
                            ex
                        })
                        .unwrap();
                }
                rules = arm(&injector, block, fault, dir, &ranges, &base.layout);
                let (result, ex) =
                    run_operation(&runtime, &engine, &injector, &base.layout, op, expect.clone(), rules.clone());
                expect = ex;
                fired = fired_count(&rules);
                injector.clear();
                match result {
                    Err(m) if m.starts_with("WRONG") => seen.wrong.push(m),
                    Err(m) => seen.errors.push(format!("{}: {m}", op_name(op))),
                    Ok(()) => {}
                }
            }
            check_all(&runtime, &engine, &expect, &mut seen, "after the operation");
            // The system goes on: one more durable write, whose batch vouches
            // for everything acknowledged before it (so damage to the last
            // batch of the operation does not depend on the journal's idle
            // pad being written in time). A journal stopped by an error
            // refuses it: then it may or may not be there.
            let writer = engine.clone();
            let sentinel = runtime
                .call_blocking(0, move || async move {
                    let lsn = writer.put(b"sentinel", b"after".to_vec()).await?;
                    writer.wait_durable(lsn).await
                })
                .unwrap();
            match sentinel {
                Ok(()) => {
                    expect.oracle.apply(&Change::Put(b"sentinel".to_vec(), b"after".to_vec()));
                }
                Err(e) => {
                    seen.errors.push(format!("write after the operation: {e}"));
                    expect.either.insert(b"sentinel".to_vec(), Some(b"after".to_vec()));
                }
            }
            std::thread::sleep(SETTLE);
            drop(engine);
            runtime.stop();
        }
    }
    if fired == 0 {
        eprintln!("NOT REACHED {} / {} / {}", block_name(block), op_name(op), fault_name(fault));
        return Outcome { not_reached: 1, ..Outcome::default() };
    }
    // Recover what the device holds now, with no fault.
    let after = device_over(memory.store().deep_clone(), pool);
    let (runtime, reopened) = open(after as Arc<dyn BlockDevice>, CACHE_SMALL_BYTES);
    match reopened {
        Err(e) => seen.errors.push(format!("recovery after the crash: {e}")),
        Ok((engine, report)) => {
            seen.repaired |= report.superblock_rejected.is_some();
            check_all(&runtime, &engine, &expect, &mut seen, "after the crash");
            drop(engine);
        }
    }
    runtime.stop();
    if !seen.wrong.is_empty() {
        eprintln!(
            "WRONG {} / {} / {}: {:?} (errors: {:?})",
            block_name(block),
            op_name(op),
            fault_name(fault),
            seen.wrong,
            seen.errors
        );
        return Outcome { wrong: 1, ..Outcome::default() };
    }
    if !seen.errors.is_empty() {
        if std::env::var("KEEL_FAULT_VERBOSE").is_ok() {
            eprintln!("detected {} / {} / {}: {}", block_name(block), op_name(op), fault_name(fault), seen.errors[0]);
        }
        return Outcome { detected: 1, ..Outcome::default() };
    }
    if seen.repaired {
        return Outcome { detected: 1, repaired: 1, ..Outcome::default() };
    }
    eprintln!("MISSED {} / {} / {}", block_name(block), op_name(op), fault_name(fault));
    Outcome { missed: 1, ..Outcome::default() }
}

/// Runs `op` (not recovery) on `engine`; returns its error, if any (prefixed
/// "WRONG" for a wrong answer), and what may now be read.
fn run_operation(
    runtime: &Runtime,
    engine: &Engine,
    injector: &Arc<FaultInjector>,
    layout: &Layout,
    op: Operation,
    expect: Expect,
    rules: Vec<keel_drivers::test_devices::RuleId>,
) -> (Result<(), String>, Expect) {
    let e = engine.clone();
    // Checkpoints: the first write to the data region (the checkpoint's
    // first node, written after every shard froze) is held back a while,
    // so writers that start once it was submitted surely come after the
    // frozen LSNs, and their journal batch is one recovery must read.
    let frozen = (op == Operation::Checkpoint).then(|| {
        let held = FaultRule::writes(layout.data_start_page..layout.capacity_pages, Fault::Delay(HOLD_CHECKPOINT));
        injector.add(held.first(1)).unwrap()
    });
    let injector = Arc::clone(injector);
    runtime
        .call_blocking(0, move || async move {
            let mut ex = expect;
            let r: Result<(), String> = match op {
                Operation::Get => {
                    let mut failed = None;
                    for (k, v) in &ex.oracle.map {
                        match e.get(k).await {
                            Ok(got) if got.as_ref() == Some(v) => {}
                            Ok(_) => return (Err(format!("WRONG get {}", String::from_utf8_lossy(k))), ex),
                            Err(err) => failed = Some(err.to_string()),
                        }
                    }
                    failed.map_or(Ok(()), Err)
                }
                Operation::Scan => match e.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).await {
                    Ok(all) if all == ex.oracle.entries() => Ok(()),
                    Ok(_) => Err("WRONG scan".to_owned()),
                    Err(err) => Err(err.to_string()),
                },
                Operation::Put => {
                    let mut result = Ok(());
                    for round in 0..PUT_ROUNDS_MAX {
                        result = put_op(&e, &mut ex, PUTS_PER_ROUND, 2 + round, true).await;
                        if result.is_err() || rules.iter().any(|&r| injector.fired(r) > 0) {
                            break;
                        }
                    }
                    result.map_err(|err| err.to_string())
                }
                Operation::Checkpoint => {
                    // Writers go on while the checkpoint runs: their records
                    // come after its frozen LSN and the journal must keep them.
                    let checkpointer = e.clone();
                    let checkpoint = keel_reactor::spawn(async move { checkpointer.checkpoint().await });
                    let held = frozen.expect("a hold rule for checkpoints");
                    while injector.stats(held).is_some_and(|s| s.matched == 0) {
                        keel_reactor::time::sleep(Duration::from_millis(1)).await;
                    }
                    let puts = put_op(&e, &mut ex, 30, 3, true).await;
                    let done = checkpoint.await;
                    done.and(puts).map_err(|err| err.to_string())
                }
                Operation::Recovery => unreachable!("recovery cases fault the open itself"),
            };
            (r, ex)
        })
        .unwrap()
}

fn cell_text(o: &Outcome) -> String {
    format!("{}/{}/{}", o.detected, o.wrong, o.panicked)
}

#[test]
fn every_fault_on_every_block_in_every_operation_is_detected() {
    let started = Instant::now();
    let pool = Arc::new(DmaPool::for_tests(48 << 20));
    let base = make_base(&pool);
    let mut matrix: BTreeMap<(Block, Operation, FaultKind), Result<Outcome, String>> = BTreeMap::new();
    for block in BLOCKS {
        for op in OPERATIONS {
            for fault in FAULTS {
                let cell = match injection(block, op, fault) {
                    Err(reason) => Err(reason),
                    Ok(dir) => {
                        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            run_case(&base, &pool, block, op, fault, dir)
                        }))
                        .unwrap_or(Outcome { panicked: 1, ..Outcome::default() });
                        Ok(outcome)
                    }
                };
                matrix.insert((block, op, fault), cell);
            }
        }
    }
    println!("\nengine fault matrix: detected/wrong/panics per cell (n/a: see the reasons below)");
    print!("{:<18} {:<11}", "block", "operation");
    for f in FAULTS {
        print!(" {:>12}", fault_name(f));
    }
    println!();
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut total = Outcome::default();
    for block in BLOCKS {
        for op in OPERATIONS {
            print!("{:<18} {:<11}", block_name(block), op_name(op));
            for fault in FAULTS {
                match &matrix[&(block, op, fault)] {
                    Ok(o) => {
                        total.add(*o);
                        let mut text = cell_text(o);
                        if o.repaired > 0 {
                            text.push('*');
                        }
                        if o.missed > 0 {
                            text = format!("MISSED{}", o.missed);
                        } else if o.not_reached > 0 {
                            text = format!("UNREACHED{}", o.not_reached);
                        }
                        print!(" {text:>12}");
                    }
                    Err(reason) => {
                        print!(" {:>12}", "n/a");
                        reasons.entry(reason.clone()).or_default().push(format!(
                            "{}/{}/{}",
                            block_name(block),
                            op_name(op),
                            fault_name(fault)
                        ));
                    }
                }
            }
            println!();
        }
    }
    println!("* detected by the superblock checksum; the other copy served every read right");
    for (reason, cells) in &reasons {
        println!("n/a ({} cells): {reason}", cells.len());
    }
    println!(
        "cases: {} detected ({} repaired from the other superblock copy), {} wrong, {} panics, {} missed, {} not reached; {:.1}s",
        total.detected,
        total.repaired,
        total.wrong,
        total.panicked,
        total.missed,
        total.not_reached,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(total.wrong, 0, "wrong answers");
    assert_eq!(total.panicked, 0, "panics");
    assert_eq!(total.missed, 0, "faults nothing detected");
    assert_eq!(total.not_reached, 0, "cases whose fault never fired");
}
