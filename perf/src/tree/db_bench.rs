//! RocksDB's side of `keel-perf tree`: Debian's db_bench (rocksdb-tools),
//! with the same key and value sizes, record count, cache size and
//! durability mode (sync=0: the WAL is written, never synced per write),
//! direct I/O for reads, flushes and compactions so that reads reach the
//! device, and no compression (Keel compresses nothing).
//!
//! Memory is matched as a total ([`DbMemory::Total`], the default): Keel's
//! node cache holds its buffered messages (its write buffers), its index
//! (internal nodes) and its data, so RocksDB gets the same number of bytes
//! for its memtables, its block cache and its index and filter blocks
//! (`--cache_index_and_filter_blocks`). During the fill half goes to two
//! memtables of a quarter each and half to the block cache; the reads run
//! on a reopened database whose memtables are empty, so the whole budget is
//! block cache there. RocksDB keeps Bloom filters of `--db-bloom-bits` (10
//! by default, partitioned) per key, as Keel keeps a filter per leaf it read
//! (its filter blocks count against the same budget). [`DbMemory::BlockCache`] is the earlier match (only
//! the block cache sized; RocksDB's 64 MiB memtables and its index outside).

use std::collections::HashMap;
use std::process::Command;

use super::cpu::{us_per_op, CpuTimes};

use super::TreeArgs;

/// How RocksDB's memory is matched to Keel's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DbMemory {
    /// Memtables + block cache + index and filter blocks = Keel's cache.
    Total,
    /// Block cache = Keel's cache; memtables (64 MiB) and index outside.
    BlockCache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fill,
    Read,
}

fn memory(args: &TreeArgs, phase: Phase) -> Vec<String> {
    let budget_bytes = args.cache_mib << 20;
    match (args.db_memory, phase) {
        (DbMemory::BlockCache, _) => vec![format!("--cache_size={budget_bytes}")],
        (DbMemory::Total, Phase::Fill) => vec![
            format!("--cache_size={}", budget_bytes / 2),
            format!("--write_buffer_size={}", budget_bytes / 4),
            "--max_write_buffer_number=2".into(),
            "--cache_index_and_filter_blocks=true".into(),
        ],
        (DbMemory::Total, Phase::Read) => {
            vec![format!("--cache_size={budget_bytes}"), "--cache_index_and_filter_blocks=true".into()]
        }
    }
}

/// One run of db_bench: fill, then reads.
#[derive(Debug, Clone)]
pub struct DbBenchSample {
    pub fill_ops_per_sec: f64,
    /// WAL, flush and compaction bytes from the fill to the end of its
    /// flush and compactions (db_bench's statistics tickers).
    pub fill_device_write_bytes: u64,
    pub read_ops_per_sec: f64,
    /// CPU of db_bench's read invocation per read (a waited-for child's
    /// user + system time: opening the database, the reads, closing it).
    pub read_cpu_us_per_op: f64,
    /// Share of the reads that found their key (db_bench prints one
    /// reader thread's count).
    pub reads_found_fraction: f64,
    /// What the reads did, from db_bench's statistics.
    pub read_io: ReadIo,
}

/// How db_bench's reads used the block cache and the device (statistics
/// tickers of the read invocation).
#[derive(Debug, Clone, Default)]
pub struct ReadIo {
    pub gets: u64,
    /// Blocks read from the SST files (`rocksdb.sst.read.micros` COUNT).
    pub block_reads: u64,
    /// Bytes those reads transferred (`rocksdb.{non.,}last.level.read.bytes`).
    pub block_read_bytes: u64,
    pub data_hits: u64,
    pub data_misses: u64,
    pub index_hits: u64,
    pub index_misses: u64,
}

impl ReadIo {
    fn from_output(text: &str) -> ReadIo {
        let t = tickers(text);
        let n = |name: &str| t.get(name).copied().unwrap_or(0);
        ReadIo {
            gets: histogram_count(text, "rocksdb.db.get.micros").unwrap_or(0),
            block_reads: histogram_count(text, "rocksdb.sst.read.micros").unwrap_or(0),
            block_read_bytes: n("rocksdb.last.level.read.bytes") + n("rocksdb.non.last.level.read.bytes"),
            data_hits: n("rocksdb.block.cache.data.hit"),
            data_misses: n("rocksdb.block.cache.data.miss"),
            index_hits: n("rocksdb.block.cache.index.hit"),
            index_misses: n("rocksdb.block.cache.index.miss"),
        }
    }

    /// One line, in the terms of Keel's read breakdown.
    pub fn line(&self) -> String {
        let gets = self.gets.max(1) as f64;
        let data = (self.data_hits + self.data_misses).max(1) as f64;
        let index = (self.index_hits + self.index_misses).max(1) as f64;
        format!(
            "gets {}; device reads per get {:.3} of {:.0} B each; block cache hits: data {:.1}%, index {:.1}%",
            self.gets,
            self.block_reads as f64 / gets,
            self.block_read_bytes as f64 / self.block_reads.max(1) as f64,
            100.0 * self.data_hits as f64 / data,
            100.0 * self.index_hits as f64 / index,
        )
    }
}

fn common(args: &TreeArgs) -> Vec<String> {
    let mut a = vec![
        format!("--db={}", args.db_path.display()),
        format!("--num={}", args.records),
        format!("--key_size={}", args.key_bytes),
        format!("--value_size={}", args.value_bytes),
        "--compression_type=none".into(),
        "--use_direct_reads=true".into(),
        "--use_direct_io_for_flush_and_compaction=true".into(),
        "--sync=false".into(),
        "--disable_wal=false".into(),
        "--statistics".into(),
    ];
    if args.db_bloom_bits > 0 {
        // Partitioned (4 KiB pieces, the top level pinned): a whole filter
        // block of one 64 MiB table (~440 KB) is larger than a block cache
        // shard (16 MiB / 64 shards), is never kept, and was read whole at
        // every get (1.39 reads of 436 KB per get, 2026-12-04).
        a.extend([
            format!("--bloom_bits={}", args.db_bloom_bits),
            "--partition_index_and_filters=true".into(),
            "--pin_top_level_index_and_filter=true".into(),
        ]);
    }
    a
}

/// The exact commands, for the record.
pub fn commands(args: &TreeArgs) -> [String; 2] {
    let (fill, read) = (fill_args(args, 0), read_args(args, 0));
    [format!("{} {}", args.db_bench, fill.join(" ")), format!("{} {}", args.db_bench, read.join(" "))]
}

fn fill_args(args: &TreeArgs, run_index: u64) -> Vec<String> {
    let mut a = common(args);
    a.extend(memory(args, Phase::Fill));
    a.extend([
        "--benchmarks=fillrandom,flush,waitforcompaction".to_owned(),
        "--use_existing_db=false".to_owned(),
        "--threads=1".to_owned(),
        format!("--seed={}", args.seed + run_index * 1000),
    ]);
    a
}

fn read_args(args: &TreeArgs, run_index: u64) -> Vec<String> {
    let threads = args.clients.max(1) as u64;
    let mut a = common(args);
    a.extend(memory(args, Phase::Read));
    a.extend([
        "--benchmarks=readrandom".to_owned(),
        "--use_existing_db=true".to_owned(),
        format!("--threads={threads}"),
        format!("--reads={}", args.reads / threads),
        format!("--seed={}", args.seed + run_index * 1000 + 500),
    ]);
    a
}

pub fn run(args: &TreeArgs, run_index: u64) -> Result<DbBenchSample, String> {
    if args.db_path.exists() {
        std::fs::remove_dir_all(&args.db_path).map_err(|e| format!("{}: {e}", args.db_path.display()))?;
    }
    let fill = invoke(&args.db_bench, &fill_args(args, run_index))?;
    let fill_ops_per_sec = ops_per_sec(&fill, "fillrandom")?;
    let tickers = tickers(&fill);
    let ticker = |name: &str| tickers.get(name).copied().ok_or_else(|| format!("db_bench printed no {name}"));
    let fill_device_write_bytes =
        ticker("rocksdb.wal.bytes")? + ticker("rocksdb.flush.write.bytes")? + ticker("rocksdb.compact.write.bytes")?;
    let cpu_before = CpuTimes::now();
    let read = invoke(&args.db_bench, &read_args(args, run_index))?;
    let read_cpu_us_per_op = us_per_op(CpuTimes::now().children_s - cpu_before.children_s, args.reads);
    let read_ops_per_sec = ops_per_sec(&read, "readrandom")?;
    let reads_found_fraction = found(&read).map_or(0.0, |(found, of)| found as f64 / of.max(1) as f64);
    let read_io = ReadIo::from_output(&read);
    Ok(DbBenchSample {
        fill_ops_per_sec,
        fill_device_write_bytes,
        read_ops_per_sec,
        read_cpu_us_per_op,
        reads_found_fraction,
        read_io,
    })
}

fn invoke(db_bench: &str, args: &[String]) -> Result<String, String> {
    let output = Command::new(db_bench).args(args).output().map_err(|e| {
        format!("cannot run {db_bench}: {e} (install Debian's rocksdb-tools, or use perf/scripts/tree-vs-db_bench.sh)")
    })?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "{db_bench} failed ({}): {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(text)
}

/// "fillrandom   :       6.848 micros/op 146022 ops/sec 6.848 seconds ..."
pub fn ops_per_sec(text: &str, benchmark: &str) -> Result<f64, String> {
    text.lines()
        .filter(|l| l.split_whitespace().next() == Some(benchmark))
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "ops/sec")?;
            words.get(at.checked_sub(1)?)?.parse().ok()
        })
        .ok_or_else(|| format!("no ops/sec line for {benchmark} in db_bench's output:\n{text}"))
}

/// "(632121 of 1000000 found)"
fn found(text: &str) -> Option<(u64, u64)> {
    let start = text.find(" found)")?;
    let head = &text[..start];
    let open = head.rfind('(')?;
    let words: Vec<&str> = head[open + 1..].split_whitespace().collect();
    match words.as_slice() {
        [found, "of", of] => Some((found.parse().ok()?, of.parse().ok()?)),
        _ => None,
    }
}

/// "rocksdb.wal.bytes COUNT : 123"
pub fn tickers(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.as_slice() {
                [name, "COUNT", ":", n] => Some((name.to_string(), n.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

/// "rocksdb.sst.read.micros P50 : 610.9 P95 : ... COUNT : 27907 SUM : 37487761"
fn histogram_count(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "COUNT")?;
    words.get(at + 2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_bench_output_is_parsed() {
        let text = "fillrandom   :       6.848 micros/op 146022 ops/sec 6.848 seconds 1000000 operations;\n\
                    readrandom   :      20.1 micros/op 49751 ops/sec 2.0 seconds 100000 operations; (63212 of 100000 found)\n\
                    rocksdb.wal.bytes COUNT : 123456\n\
                    rocksdb.sst.read.micros P50 : 610.960920 P95 : 2747.674419 P99 : 24560.250000 P100 : 115798.000000 COUNT : 27907 SUM : 37487761\n";
        assert_eq!(ops_per_sec(text, "fillrandom").unwrap(), 146022.0);
        assert_eq!(ops_per_sec(text, "readrandom").unwrap(), 49751.0);
        assert_eq!(found(text), Some((63212, 100000)));
        assert_eq!(tickers(text)["rocksdb.wal.bytes"], 123456);
        assert_eq!(histogram_count(text, "rocksdb.sst.read.micros"), Some(27907));
    }
}
