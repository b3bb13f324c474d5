//! `keel-perf tree`: the engine's Bε-tree on an io_uring data file against
//! RocksDB's db_bench, side by side in one invocation: random inserts, then
//! random point reads, with matched key and value sizes, record count, cache
//! size and durability mode (neither syncs per write), and write
//! amplification (device bytes written / user bytes) for both.
//!
//! Each run formats a fresh volume and a fresh RocksDB directory; the
//! figures are medians over `--runs` with the smallest and largest value.

mod cpu;
mod db_bench;
mod keel_side;

use std::path::PathBuf;

pub use keel_side::key;

/// Options of `keel-perf tree`.
#[derive(Debug, Clone, clap::Args)]
pub struct TreeArgs {
    /// Keel's data file (created; formatted afresh every run).
    #[arg(long, default_value = "/var/tmp/keel-perf-tree.img")]
    pub path: PathBuf,
    /// Size of Keel's data file in GiB.
    #[arg(long, default_value_t = 2)]
    pub device_gib: u64,
    /// RocksDB's directory (removed and recreated every run).
    #[arg(long, default_value = "/var/tmp/keel-perf-rocksdb")]
    pub db_path: PathBuf,
    /// The db_bench binary.
    #[arg(long, default_value = "db_bench")]
    pub db_bench: String,
    /// Records inserted (keys drawn uniformly from 0..records, as db_bench's
    /// fillrandom does, so some repeat).
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Point reads (keys drawn uniformly from 0..records).
    #[arg(long, default_value_t = 200_000)]
    pub reads: u64,
    #[arg(long, default_value_t = 16)]
    pub key_bytes: usize,
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Cache in MiB: Keel's node cache over all shards; RocksDB's memory as
    /// `--db-memory` says.
    #[arg(long, default_value_t = 16)]
    pub cache_mib: u64,
    /// What of RocksDB's memory `--cache-mib` bounds: `total` (memtables,
    /// block cache, index and filters; the fair match) or `block-cache`
    /// (the block cache only, memtables and index outside).
    #[arg(long, value_enum, default_value_t = db_bench::DbMemory::Total)]
    pub db_memory: db_bench::DbMemory,
    /// RocksDB's Bloom filter bits per key (db_bench `--bloom_bits`; 0
    /// leaves db_bench's default, no filter). 10 by default because Keel
    /// keeps a ~10-bit filter of every leaf a get read whole (inside its
    /// cache), so a get of an absent key skips the device read on both
    /// sides; RocksDB's filter blocks sit in its block cache, inside the
    /// same budget (`--cache_index_and_filter_blocks`).
    #[arg(long, default_value_t = 10)]
    pub db_bloom_bits: u32,
    /// Keel's reactors.
    #[arg(long, default_value_t = 2)]
    pub reactors: usize,
    /// Keel's shards.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Keel's leaf size in KiB (default: the tree's).
    #[arg(long)]
    pub leaf_kib: Option<usize>,
    /// Keel's internal node size in KiB (default: the tree's).
    #[arg(long)]
    pub internal_kib: Option<usize>,
    /// Turn off Keel's background maintenance task per tree: writers flush
    /// and evict themselves (for the A/B of that task).
    #[arg(long)]
    pub no_background: bool,
    /// Keel's concurrent client tasks (fill and reads); db_bench's reader
    /// threads (its fill uses one thread, as RocksDB's fillrandom usually does).
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Shard-aware fill clients: each inserts only keys whose shard its own
    /// reactor hosts (drawn uniformly among them, each reactor's clients
    /// inserting as many as it owns keys), so no put crosses reactors; all
    /// inserts together stay uniform over the keys.
    #[arg(long)]
    pub local_clients: bool,
    #[arg(long, default_value_t = 3)]
    pub runs: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Skip db_bench (Keel only).
    #[arg(long)]
    pub keel_only: bool,
}

fn median_min_max(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn line(name: &str, keel: &[f64], rocks: &[f64], unit: &str, higher_is_better: bool) {
    let (km, kmin, kmax) = median_min_max(keel.to_vec());
    if rocks.is_empty() {
        println!("{name:<26} keel {km:>12.1} {unit} (min {kmin:.1}, max {kmax:.1})");
        return;
    }
    let (rm, rmin, rmax) = median_min_max(rocks.to_vec());
    let ratios: Vec<f64> = keel.iter().zip(rocks).map(|(k, r)| if higher_is_better { k / r } else { r / k }).collect();
    let (qm, qmin, qmax) = median_min_max(ratios);
    println!(
        "{name:<26} keel {km:>12.1} (min {kmin:.1}, max {kmax:.1})  rocksdb {rm:>12.1} (min {rmin:.1}, max {rmax:.1}) {unit}  \
         keel advantage {qm:.2}x (per-run min {qmin:.2}x, max {qmax:.2}x)"
    );
}

pub fn main(args: &TreeArgs) -> Result<(), String> {
    if args.records == 0 || args.reads == 0 || args.runs == 0 {
        return Err("--records, --reads and --runs must be at least 1".into());
    }
    let user_bytes = args.records * (args.key_bytes + args.value_bytes) as u64;
    println!(
        "# keel-perf tree: {} records of {} B keys + {} B values ({:.1} MiB of user data), {} reads, cache {} MiB ({:.1}x smaller than the data), {} run(s)",
        args.records,
        args.key_bytes,
        args.value_bytes,
        user_bytes as f64 / f64::from(1u32 << 20),
        args.reads,
        args.cache_mib,
        user_bytes as f64 / (args.cache_mib << 20) as f64,
        args.runs
    );
    println!(
        "# durability: no sync per write on either side (Keel: writes return once applied, the journal is written in the background; RocksDB: sync=0, WAL on)"
    );
    let tree = keel_side::engine_config(args).tree;
    println!(
        "# keel: {} reactors, {} shards, {} client tasks{}, leaves {} KiB, internal nodes {} KiB, background maintenance {}, io_uring O_DIRECT on {}",
        args.reactors,
        args.shards,
        args.clients,
        if args.local_clients { " (shard-aware fill)" } else { "" },
        tree.leaf_bytes >> 10,
        tree.internal_bytes >> 10,
        if tree.background_maintenance { "on" } else { "off" },
        args.path.display()
    );
    if !args.keel_only {
        let [fill, read] = db_bench::commands(args);
        println!("# rocksdb fill: {fill}");
        println!("# rocksdb read: {read}");
    }
    let (mut keel, mut rocks) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let k = keel_side::run(args, run)?;
        println!(
            "run {run} keel: fill {:.0} ops/s, device writes {:.1} MiB; read {:.0} ops/s ({:.1}% found)",
            k.fill_ops_per_sec,
            k.fill_device_write_bytes as f64 / f64::from(1u32 << 20),
            k.read_ops_per_sec,
            100.0 * k.reads_found as f64 / args.reads as f64
        );
        println!("run {run} keel read CPU: {:.1} us per get (all threads, the read phase)", k.read_cpu_us_per_op);
        println!("run {run} keel fill CPU: {}", k.fill_cpu_line(args.records));
        println!("run {run} keel fill bytes: {}", k.breakdown());
        println!("run {run} keel reads: {}", k.read_breakdown());
        keel.push(k);
        if !args.keel_only {
            let r = db_bench::run(args, run)?;
            println!(
                "run {run} rocksdb: fill {:.0} ops/s, device writes {:.1} MiB; read {:.0} ops/s ({:.1}% found)",
                r.fill_ops_per_sec,
                r.fill_device_write_bytes as f64 / f64::from(1u32 << 20),
                r.read_ops_per_sec,
                100.0 * r.reads_found_fraction
            );
            println!(
                "run {run} rocksdb read CPU: {:.1} us per get (db_bench's read invocation: open, reads, close)",
                r.read_cpu_us_per_op
            );
            println!("run {run} rocksdb reads: {}", r.read_io.line());
            rocks.push(r);
        }
    }
    let _ = std::fs::remove_file(&args.path);
    let _ = std::fs::remove_dir_all(&args.db_path);
    println!("# medians over {} run(s)", args.runs);
    let wa = |bytes: u64| bytes as f64 / user_bytes as f64;
    line(
        "random insert (ops/s)",
        &keel.iter().map(|s| s.fill_ops_per_sec).collect::<Vec<_>>(),
        &rocks.iter().map(|s| s.fill_ops_per_sec).collect::<Vec<_>>(),
        "ops/s",
        true,
    );
    line(
        "random point read (ops/s)",
        &keel.iter().map(|s| s.read_ops_per_sec).collect::<Vec<_>>(),
        &rocks.iter().map(|s| s.read_ops_per_sec).collect::<Vec<_>>(),
        "ops/s",
        true,
    );
    line(
        "point read CPU (us/get)",
        &keel.iter().map(|s| s.read_cpu_us_per_op).collect::<Vec<_>>(),
        &rocks.iter().map(|s| s.read_cpu_us_per_op).collect::<Vec<_>>(),
        "us",
        false,
    );
    line(
        "write amplification (x)",
        &keel.iter().map(|s| wa(s.fill_device_write_bytes)).collect::<Vec<_>>(),
        &rocks.iter().map(|s| wa(s.fill_device_write_bytes)).collect::<Vec<_>>(),
        "x",
        false,
    );
    Ok(())
}
