//! Keel's side of `keel-perf tree`: the engine on an io_uring data file,
//! random inserts (no wait for durability: the journal is written in the
//! background, like RocksDB's WAL with sync=0), then random point reads on
//! the reopened volume (a cold cache, like db_bench's second invocation).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use keel_engine::{route, Engine, EngineStats};
use keel_reactor::{ReactorStats, Runtime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cpu::{us_per_op, CpuTimes};
use super::TreeArgs;
use crate::device_engine::{self, process_write_bytes, DeviceEngineSpec};

/// One run of Keel: fill, then reads.
#[derive(Debug, Clone)]
pub struct KeelSample {
    pub fill_ops_per_sec: f64,
    /// CPU of the whole process (all threads) per insert over the fill
    /// (without the closing checkpoint).
    pub fill_cpu_us_per_op: f64,
    /// The reactors' counters summed at the end of the fill (they start
    /// with the runtime, just before it).
    pub fill_reactors: ReactorStats,
    /// Bytes written to the device from the first insert to the end of the
    /// final checkpoint (journal, nodes, metadata).
    pub fill_device_write_bytes: u64,
    pub read_ops_per_sec: f64,
    /// CPU of the whole process (all threads) per get over the read phase.
    pub read_cpu_us_per_op: f64,
    pub reads_found: u64,
    /// Where the fill's time and bytes went, as the engine counted them up
    /// to the end of the fill (before the closing checkpoint).
    pub fill_stats: EngineStats,
    /// The read phase's counters (from the reopen to the last get) and the
    /// cache as the reads left it.
    pub read_stats: EngineStats,
}

impl KeelSample {
    /// One line: device bytes by kind and the tree work behind them.
    pub fn breakdown(&self) -> String {
        let (t, j) = (&self.fill_stats.trees, &self.fill_stats.journal);
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        let counted = j.batch_bytes_written
            + t.evict_leaf_write_bytes
            + t.evict_internal_write_bytes
            + t.ckpt_leaf_write_bytes
            + t.ckpt_internal_write_bytes
            + t.meta_write_bytes
            + t.extent_write_bytes;
        format!(
            "journal {:.1} MiB ({} records in {} batches); leaves evicted {:.1} MiB, checkpointed {:.1} MiB; internal evicted {:.1} MiB, \
             checkpointed {:.1} MiB; metadata {:.1} MiB; closing checkpoint {:.1} MiB; node reads {} ({:.1} MiB); \
             flushes {}, dirty evictions {}, checkpoints {}; cache now: leaves {:.1} MiB, internal {:.1} MiB, \
             height {}",
            mib(j.batch_bytes_written),
            j.records,
            j.batches,
            mib(t.evict_leaf_write_bytes),
            mib(t.ckpt_leaf_write_bytes),
            mib(t.evict_internal_write_bytes),
            mib(t.ckpt_internal_write_bytes),
            mib(t.meta_write_bytes),
            mib(self.fill_device_write_bytes.saturating_sub(counted)),
            t.node_reads,
            mib(t.node_read_bytes),
            t.flushes,
            t.evictions_dirty,
            t.checkpoints,
            mib(self.fill_stats.shards.iter().map(|s| s.cache_leaf_mem_bytes as u64).sum()),
            mib(self.fill_stats.shards.iter().map(|s| s.cache_internal_mem_bytes as u64).sum()),
            self.fill_stats.shards.iter().map(|s| s.height).max().unwrap_or(0),
        )
    }

    /// One line: the fill's CPU and the reactors' cross-thread traffic per insert.
    pub fn fill_cpu_line(&self, inserts: u64) -> String {
        let r = &self.fill_reactors;
        let per = |n: u64| n as f64 / inserts.max(1) as f64;
        format!(
            "{:.2} us CPU per insert (all threads); per insert: {:.3} mailbox messages in {:.3} mailbox entries, \
             {:.3} reactor sleeps, {:.3} waker writes, {:.3} device requests",
            self.fill_cpu_us_per_op,
            per(r.messages),
            per(r.mailbox_entries),
            per(r.sleeps),
            per(r.wakes_written),
            per(r.io_submitted),
        )
    }

    /// One line: how the reads used the cache and the device.
    pub fn read_breakdown(&self) -> String {
        let t = &self.read_stats.trees;
        let gets = t.gets.max(1) as f64;
        let internal_reads = t.node_reads - t.leaf_reads;
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        let shards = &self.read_stats.shards;
        let per = |n: u64, of: u64| n as f64 / of.max(1) as f64;
        format!(
            "gets {}, answered from the cache {:.1}%; device reads per get {:.3}, {:.0} B per get: whole leaves {:.3} \
             of {:.0} B each, leaf pages {:.3} of {:.0} B each ({} mismatched), internal nodes {:.4} of {:.0} B each; \
             leaf pages from the cache {:.3} per get, absent by a leaf filter {:.3} per get, leaf page reads finding the key \
             absent (filter false maybes) {:.4} per get, answered by a buffer {:.3} per get; cache now: leaves {:.1} MiB, internal {:.1} MiB, page maps {:.2} MiB \
             ({} maps), leaf pages {:.1} MiB",
            t.gets,
            100.0 * per(t.gets_cached, t.gets),
            (t.node_reads + t.leaf_page_reads) as f64 / gets,
            (t.node_read_bytes + t.leaf_page_read_bytes) as f64 / gets,
            per(t.leaf_reads, t.gets),
            per(t.leaf_read_bytes, t.leaf_reads),
            per(t.leaf_page_reads, t.gets),
            per(t.leaf_page_read_bytes, t.leaf_page_reads),
            t.leaf_page_mismatches,
            per(internal_reads, t.gets),
            per(t.node_read_bytes.saturating_sub(t.leaf_read_bytes), internal_reads),
            per(t.leaf_page_cache_hits, t.gets),
            per(t.leaf_filter_skips, t.gets),
            per(t.leaf_page_reads_absent, t.gets),
            per(t.gets_from_buffers, t.gets),
            mib(shards.iter().map(|s| s.cache_leaf_mem_bytes as u64).sum()),
            mib(shards.iter().map(|s| s.cache_internal_mem_bytes as u64).sum()),
            mib(shards.iter().map(|s| s.cache_page_map_bytes as u64).sum()),
            shards.iter().map(|s| s.page_maps).sum::<usize>(),
            mib(shards.iter().map(|s| s.cache_leaf_page_bytes as u64).sum()),
        )
    }
}

/// The key of record `k`: 16 ASCII digits, so keys sort as numbers.
pub fn key(k: u64, key_bytes: usize) -> Vec<u8> {
    let mut key = format!("{k:0width$}", width = key_bytes).into_bytes();
    key.truncate(key_bytes);
    key
}

pub fn engine_config(args: &TreeArgs) -> keel_engine::EngineConfig {
    spec(args).engine_config()
}

fn spec(args: &TreeArgs) -> DeviceEngineSpec {
    DeviceEngineSpec {
        path: args.path.clone(),
        size_bytes: args.device_gib << 30,
        reactors: args.reactors,
        shards: args.shards,
        cache_bytes_total: Some(args.cache_mib << 20),
        leaf_bytes: args.leaf_kib.map(|k| k << 10),
        internal_bytes: args.internal_kib.map(|k| k << 10),
        background_maintenance: !args.no_background,
    }
}

pub fn run(args: &TreeArgs, run_index: u64) -> Result<KeelSample, String> {
    let (runtime, engine) = device_engine::start(&spec(args), true)?;
    // Before the clock starts: counting each reactor's keys takes a while.
    let fill_ops = if args.local_clients {
        local_client_ops(args, runtime.reactor_count(), engine.shard_count())
    } else {
        even_client_ops(args, args.records)
    };
    let written_before = process_write_bytes()?;
    let started = Instant::now();
    let cpu_before = CpuTimes::now();
    let filled = on_clients(
        &runtime,
        &engine,
        args,
        |engine, client, args| async move {
            let local = args.local_clients.then_some(client.reactor);
            fill(&engine, client, local, &args).await
        },
        args.seed + run_index * 1000,
        fill_ops,
    );
    let fill_elapsed = started.elapsed();
    let fill_cpu_s = CpuTimes::now().own_s - cpu_before.own_s;
    let fill_reactors = reactor_stats(&runtime)?;
    let fill_stats = stats_of(&runtime, &engine)?;
    engine.close(&runtime).map_err(|e| format!("close after the fill: {e}"))?;
    runtime.stop();
    filled?;
    let fill_device_write_bytes = process_write_bytes()? - written_before;

    let (runtime, engine) = device_engine::start(&spec(args), false)?;
    let started = Instant::now();
    let cpu_before = CpuTimes::now();
    let found = on_clients(
        &runtime,
        &engine,
        args,
        |engine, client, args| async move { read(&engine, client.ops, client.seed, args.records, args.key_bytes).await },
        args.seed + run_index * 1000 + 500,
        even_client_ops(args, args.reads),
    );
    let read_elapsed = started.elapsed();
    let read_cpu_s = CpuTimes::now().own_s - cpu_before.own_s;
    let read_stats = stats_of(&runtime, &engine)?;
    engine.close(&runtime).map_err(|e| format!("close after the reads: {e}"))?;
    runtime.stop();
    Ok(KeelSample {
        fill_ops_per_sec: per_sec(args.records, fill_elapsed),
        fill_cpu_us_per_op: us_per_op(fill_cpu_s, args.records),
        fill_reactors,
        fill_device_write_bytes,
        read_ops_per_sec: per_sec(args.reads, read_elapsed),
        read_cpu_us_per_op: us_per_op(read_cpu_s, args.reads),
        reads_found: found?,
        fill_stats,
        read_stats,
    })
}

fn stats_of(runtime: &Runtime, engine: &Engine) -> Result<EngineStats, String> {
    let (tx, rx) = mpsc::channel();
    let engine = engine.clone();
    runtime
        .spawn_on(0, move || async move {
            let _ = tx.send(engine.stats().await.map_err(|e| format!("stats: {e}")));
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|_| "the stats task died".to_string())?
}

/// Every reactor's counters, summed.
fn reactor_stats(runtime: &Runtime) -> Result<ReactorStats, String> {
    let mut sum = ReactorStats::default();
    for r in 0..runtime.reactor_count() {
        let s = runtime.call_blocking(r, || async { keel_reactor::stats() }).map_err(|e| e.to_string())?;
        sum.turns += s.turns;
        sum.sleeps += s.sleeps;
        sum.messages += s.messages;
        sum.mailbox_entries += s.mailbox_entries;
        sum.wakes_written += s.wakes_written;
        sum.io_submitted += s.io_submitted;
    }
    Ok(sum)
}

fn per_sec(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// What one client task does: how many operations, from which seed, on
/// which reactor.
#[derive(Debug, Clone, Copy)]
struct Client {
    ops: u64,
    seed: u64,
    reactor: usize,
}

/// `total_ops` split evenly over `args.clients` tasks.
fn even_client_ops(args: &TreeArgs, total_ops: u64) -> Vec<u64> {
    let clients = args.clients.max(1) as u64;
    (0..clients).map(|c| total_ops / clients + u64::from(c < total_ops % clients)).collect()
}

/// `args.records` inserts split so that each reactor's clients make as many
/// as its shards own keys of 0..records: with every client drawing uniformly
/// among its own reactor's keys, the inserts of all clients together stay
/// uniform over 0..records, as without `--local-clients`.
fn local_client_ops(args: &TreeArgs, reactors: usize, shards: u32) -> Vec<u64> {
    let reactors = reactors.max(1);
    let mut owned = vec![0u64; reactors];
    for k in 0..args.records {
        let shard = route::shard_of(&key(k, args.key_bytes), shards);
        owned[route::reactor_of(shard, reactors)] += 1;
    }
    let clients = args.clients.max(1);
    (0..clients)
        .map(|c| {
            let r = c % reactors;
            // Clients c, c + reactors, ... share reactor r's inserts.
            let mine = (clients - r).div_ceil(reactors) as u64;
            let index = (c / reactors) as u64;
            owned[r] / mine + u64::from(index < owned[r] % mine)
        })
        .collect()
}

/// Runs one task per entry of `ops_per_client`, client `c` on reactor
/// `c % reactors`, and sums what they return.
fn on_clients<F, Fut>(
    runtime: &Runtime,
    engine: &Engine,
    args: &TreeArgs,
    task: F,
    seed: u64,
    ops_per_client: Vec<u64>,
) -> Result<u64, String>
where
    F: Fn(Engine, Client, TreeArgs) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<u64, String>> + 'static,
{
    let mut results = Vec::new();
    for (c, ops) in ops_per_client.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel();
        let client = Client { ops, seed: seed + c as u64, reactor: c % runtime.reactor_count() };
        let (engine, task, args) = (engine.clone(), task.clone(), args.clone());
        runtime
            .spawn_on(client.reactor, move || async move {
                let _ = tx.send(task(engine, client, args).await);
            })
            .map_err(|e| e.to_string())?;
        results.push(rx);
    }
    let mut sum = 0;
    for rx in results {
        sum += rx.recv().map_err(|_| "a client task died".to_string())??;
    }
    Ok(sum)
}

/// Random inserts; with `local`, only keys whose shard that reactor hosts
/// (drawn uniformly among them, so each put runs where the client runs).
async fn fill(engine: &Engine, client: Client, local: Option<usize>, args: &TreeArgs) -> Result<u64, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(client.seed);
    let mut value = vec![0u8; args.value_bytes];
    rng.fill(&mut value[..]);
    let reactors = args.reactors.max(1);
    for i in 0..client.ops {
        let k = loop {
            let k = rng.gen_range(0..args.records);
            let here = local.is_none_or(|r| route::reactor_of(engine.shard_of(&key(k, args.key_bytes)), reactors) == r);
            if here {
                break key(k, args.key_bytes);
            }
        };
        // Every value differs a little, as db_bench's do.
        let n = args.value_bytes.min(8);
        value[..n].copy_from_slice(&i.to_le_bytes()[..n]);
        engine.put(&k, value.clone()).await.map_err(|e| format!("put: {e}"))?;
    }
    Ok(client.ops)
}

async fn read(engine: &Engine, ops: u64, seed: u64, records: u64, key_bytes: usize) -> Result<u64, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut found = 0;
    for _ in 0..ops {
        let k = rng.gen_range(0..records);
        if engine.get(&key(k, key_bytes)).await.map_err(|e| format!("get: {e}"))?.is_some() {
            found += 1;
        }
    }
    Ok(found)
}
