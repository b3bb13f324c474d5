//! `keel-perf journal`: durable commits per second and large-record bandwidth
//! of the journal on an io_uring file, each as a ratio to fio on the same file
//! system in the same run.
//!
//! Small records: `committers` tasks each loop reserve + commit + wait_durable
//! of `record_bytes`; the peer is fio's 4 KiB write + fdatasync rate (the cost
//! of one durable write without group commit). Large records: tasks stream
//! records of `large_record_bytes` and wait for durability every
//! `large_wait_every` records (counting only records known durable); the peers
//! are fio's sequential O_DIRECT io_uring writes of the journal's device write
//! size (one batch piece, 2 MiB) at its writes in flight, once plain (not
//! durable) and once as durable as the journal's batches (`peer.rs`), from the
//! same kind of pages as the journal's DMA pool (`hugepages.rs`), on a file
//! laid out as the journal's (`file.rs`); `--fio-sweep` adds fio's best block
//! size and depth (`sweep.rs`). A background task plays the checkpoint:
//! it advances the head to the durable LSN every millisecond, so the ring
//! never fills.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_drivers::uring::{UringConfig, UringDevice};
use keel_drivers::{BlockDevice, DmaPool, DmaPoolConfig, HugepagePolicy};
use keel_journal::{
    DurabilityMode, Journal, JournalConfig, JournalIdentity, JournalPosition, JournalRegion, JournalStats,
};
use keel_reactor::io::DeviceId;
use keel_reactor::{IdlePolicy, Runtime, RuntimeConfig};

use self::file::prewrite;
use self::hugepages::Reservation;
use self::peer::{DurablePeer, Fio, Shape};
use self::report::{cpu_line, journal_line, peer_line, Sample};
use crate::device::cpu::CpuClock;
use crate::device::Idle;

mod file;
mod hugepages;
mod peer;
mod report;
mod sweep;

/// The byte every benchmark record's payload (and fio's buffers) is filled with.
const PAYLOAD_BYTE: u8 = 0xA5;

/// The pages the journal's DMA pool and fio's buffers come from (the same on
/// both sides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pages {
    /// 2 MiB hugepages (reserved for the run): a 2 MiB write is one segment.
    Huge,
    /// Ordinary 4 KiB pages: the block layer splits a 2 MiB write.
    Small,
}

/// Options of `keel-perf journal`.
#[derive(Debug, Clone, clap::Args)]
pub struct JournalArgs {
    /// File the journal is written to (created; on the file system to measure).
    #[arg(long, default_value = "/var/tmp/keel-perf-journal.img")]
    pub path: PathBuf,
    /// Journal ring size in MiB.
    #[arg(long, default_value_t = 256)]
    pub ring_mib: u64,
    /// Committer counts to measure with small records ("none": skip them).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64", value_parser = committers)]
    pub committers: Vec<Option<usize>>,
    /// Payload bytes of a small record.
    #[arg(long, default_value_t = 100)]
    pub record_bytes: usize,
    /// Payload bytes of a large record.
    #[arg(long, default_value_t = 256 * 1024)]
    pub large_record_bytes: usize,
    /// Concurrent committers of large records.
    #[arg(long, default_value_t = 4)]
    pub large_committers: usize,
    /// A large-record committer waits for durability after this many records
    /// (a writer streaming a file, then committing it), so several batches
    /// are in flight; 1 waits after every record.
    #[arg(long, default_value_t = 16)]
    pub large_wait_every: u64,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Repetitions of every measurement (the median and spread are printed).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// auto, fua or flush (write, then fdatasync).
    #[arg(long, default_value = "auto")]
    pub durability: String,
    /// Device writes (batch pieces) in flight at once (the journal's
    /// `writes_in_flight_max`; fio's `--iodepth`).
    #[arg(long, default_value_t = JournalConfig::default().writes_in_flight_max)]
    pub writes_in_flight: usize,
    /// The journal's `waiter_seal_writes_max`: a batch is sealed for a
    /// durability waiter only when its pieces and the busy writes fit in this
    /// many slots (the rest take full batches).
    #[arg(long, default_value_t = JournalConfig::default().waiter_seal_writes_max)]
    pub waiter_seal_writes: usize,
    /// The journal's `batch_bytes_max` in KiB. A batch is written in pieces
    /// of one DMA region (2 MiB, fio's `--bs`); 2048 is one piece per batch.
    #[arg(long, default_value_t = JournalConfig::default().batch_bytes_max >> 10)]
    pub batch_kib: usize,
    /// The journal's `batch_delay_us` (0: no delay timer).
    #[arg(long, default_value_t = JournalConfig::default().batch_delay_us)]
    pub batch_delay_us: u64,
    /// Reactors (threads) the committers are spread over.
    #[arg(long, default_value_t = 1)]
    pub reactors: usize,
    /// How idle reactors wait. `adaptive` (the runtime's default) sleeps in
    /// the kernel as fio does; `poll` spins a core per reactor, which on a
    /// shared machine gets preempted and answers completions late.
    #[arg(long, value_enum, default_value_t = Idle::Adaptive)]
    pub idle: Idle,
    /// With `--idle adaptive`: microseconds to spin before sleeping.
    #[arg(long, default_value_t = 200)]
    pub spin_us: u32,
    /// Skip the fio peers (only the journal's own figures).
    #[arg(long)]
    pub no_fio: bool,
    /// Pages of the journal's DMA pool and of fio's buffers (both alike).
    #[arg(long, value_enum, default_value_t = Pages::Huge)]
    pub pages: Pages,
    /// After the large records, run fio once at each block size of 1, 2 and
    /// 4 MiB and depth of 4, 8 and 16 (plain and durable) and print its best
    /// against the journal's median (about a minute).
    #[arg(long)]
    pub fio_sweep: bool,
    /// The uring device's `submit_batch_max` (`device.submit_batch_max`):
    /// enter the kernel once this many requests are queued (0: once per
    /// reactor turn only).
    #[arg(long, default_value_t = keel_drivers::uring::SUBMIT_BATCH_MAX_DEFAULT)]
    pub submit_batch: u32,
    /// io_uring setup flags of the journal's device: auto, defer, coop or plain.
    #[arg(long, default_value = "auto")]
    pub setup: keel_drivers::uring::UringSetup,
    /// The uring device's `submit_write_batch_max`
    /// (`device.submit_write_batch_max`): enter the kernel once this many
    /// writes are queued (0: no separate limit).
    #[arg(long, default_value_t = keel_drivers::uring::SUBMIT_WRITE_BATCH_MAX_DEFAULT)]
    pub submit_write_batch: u32,
}

fn committers(text: &str) -> Result<Option<usize>, String> {
    match text {
        "none" => Ok(None),
        n => n.parse().map(Some).map_err(|e| format!("{n:?}: {e}")),
    }
}

fn durability(name: &str) -> Result<DurabilityMode, String> {
    match name {
        "auto" => Ok(DurabilityMode::Auto),
        "fua" => Ok(DurabilityMode::Fua),
        "flush" => Ok(DurabilityMode::WriteThenFlush),
        other => Err(format!("unknown durability mode {other:?}: expected auto, fua or flush")),
    }
}

/// The fio job as durable as the journal's batches in `mode` on `device`.
fn durable_peer(mode: DurabilityMode, device: &keel_drivers::DeviceInfo) -> DurablePeer {
    match mode {
        DurabilityMode::Fua => DurablePeer::Dsync,
        DurabilityMode::Auto if device.fua => DurablePeer::Dsync,
        // The journal flushes as soon as a waiter's batch is written, which
        // under this load is after every batch.
        DurabilityMode::Auto | DurabilityMode::WriteThenFlush => DurablePeer::Fdatasync { every_writes: 1 },
    }
}

/// DMA pool bytes the journal needs: its batch buffers (writes in flight,
/// an open batch, one more; `keel_journal` config) of at most one region
/// each, and one region of slack.
fn pool_bytes(args: &JournalArgs) -> usize {
    let region = keel_drivers::dma::REGION_BYTES;
    (args.writes_in_flight + (args.batch_kib << 10).div_ceil(region) + 2) * region
}

/// Hugepage bytes this run needs: the journal's pool and fio's largest buffers.
fn hugepage_bytes(args: &JournalArgs, matched: Shape) -> u64 {
    let mut bytes = pool_bytes(args) as u64;
    if !args.no_fio {
        let largest = if args.fio_sweep { sweep::largest() } else { matched };
        bytes += Fio::buffer_bytes(largest);
    }
    bytes
}

pub fn run(args: &JournalArgs) -> Result<(), String> {
    let mode = durability(&args.durability)?;
    let ring_bytes = args.ring_mib << 20;
    let file_bytes = ring_bytes + (16 << 20);
    // Sized before the device is open: the journal's device writes are at
    // most one region (checked below against the device's transfer limit).
    let region_shape = Shape { write_bytes: keel_drivers::dma::REGION_BYTES, writes_in_flight: args.writes_in_flight };
    let _hugepages = match args.pages {
        Pages::Huge => Some(Reservation::add(hugepage_bytes(args, region_shape))?),
        Pages::Small => None,
    };
    let hugepages = if args.pages == Pages::Huge { HugepagePolicy::Require } else { HugepagePolicy::Never };
    let pool =
        Arc::new(DmaPool::new(&DmaPoolConfig { size_bytes: pool_bytes(args), hugepages }).map_err(|e| e.to_string())?);
    println!("pages: {:?} (journal DMA pool hugepage-backed: {})", args.pages, pool.is_hugepage_backed());
    prewrite(&args.path, file_bytes)?;
    let mut uring = UringConfig::new(&args.path);
    uring.create_size_bytes = Some(file_bytes);
    uring.submit_batch_max = args.submit_batch;
    uring.setup = args.setup;
    uring.submit_write_batch_max = args.submit_write_batch;
    let device: Arc<dyn BlockDevice> = Arc::new(UringDevice::open(&uring, pool).map_err(|e| e.to_string())?);
    println!("device: {:?}", device.info());
    println!(
        "durability: {} ; reactors: {} ; idle: {:?} (spin {} us) ; submit batch: {} (writes {}) ; io_uring setup: {} ; machine: shared 2-core VM",
        args.durability, args.reactors, args.idle, args.spin_us, args.submit_batch, args.submit_write_batch, args.setup
    );
    // fio writes blocks of the journal's device write size (one batch piece)
    // at its device writes in flight: the same writes, full ones.
    let write_bytes = (device.info().max_transfer_bytes as usize).min(keel_drivers::dma::REGION_BYTES);
    println!("journal: batches up to {} KiB, written in pieces of {} KiB", args.batch_kib, write_bytes >> 10);
    let matched = Shape { write_bytes, writes_in_flight: args.writes_in_flight };
    let durable = durable_peer(mode, device.info());
    let fio = Fio::new(&args.path, (file_bytes, ring_bytes), args.seconds, matched, durable, args.pages)?;
    if !args.no_fio {
        println!("fio: {}", Fio::ensure_installed()?);
        for line in fio.describe() {
            println!("peer: {line}");
        }
    }
    let mut epoch = 1u64;
    for &committers in args.committers.iter().flatten() {
        let mut journal_samples = Vec::new();
        let mut fio_iops = Vec::new();
        for _ in 0..args.runs {
            journal_samples.push(measure(args, &device, mode, committers, (args.record_bytes, 1), epoch)?);
            epoch += 1;
            if !args.no_fio {
                fio_iops.push(fio.fdatasync_iops()?);
            }
        }
        let name = format!("{committers} committers x {} B, commits/s", args.record_bytes);
        journal_line(&name, &journal_samples, |s| s.commits_per_sec);
        if !args.no_fio {
            let journal: Vec<f64> = journal_samples.iter().map(|s| s.commits_per_sec).collect();
            peer_line("fio 4 KiB write+fdatasync IOPS", &journal, &fio_iops);
        }
    }
    let journal_mb_per_sec = large_records(args, &device, mode, &fio, epoch)?;
    if args.fio_sweep && !args.no_fio {
        sweep::run(&fio, &journal_mb_per_sec);
    }
    let _ = std::fs::remove_file(&args.path);
    Ok(())
}

/// Large records against fio's plain and durability-matched sequential
/// writes: journal, plain fio, durable fio, run after run. Returns the
/// journal's MB/s of every run.
fn large_records(
    args: &JournalArgs,
    device: &Arc<dyn BlockDevice>,
    mode: DurabilityMode,
    fio: &Fio,
    mut epoch: u64,
) -> Result<Vec<f64>, String> {
    let mut journal_samples = Vec::new();
    let (mut plain, mut durable) = (Vec::new(), Vec::new());
    let (mut plain_cpu, mut durable_cpu) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let shape = (args.large_record_bytes, args.large_wait_every.max(1));
        journal_samples.push(measure(args, device, mode, args.large_committers, shape, epoch)?);
        epoch += 1;
        if !args.no_fio {
            let peer = fio.seq_write()?;
            plain.push(peer.plain_bytes_per_sec / 1e6);
            durable.push(peer.durable_bytes_per_sec / 1e6);
            plain_cpu.push((peer.plain_cpu_cores, peer.plain_bytes_per_sec));
            durable_cpu.push((peer.durable_cpu_cores, peer.durable_bytes_per_sec));
        }
    }
    let name = format!(
        "{} committers x {} KiB, durable every {} records, MB/s",
        args.large_committers,
        args.large_record_bytes >> 10,
        args.large_wait_every
    );
    journal_line(&name, &journal_samples, |s| s.bytes_per_sec / 1e6);
    let journal: Vec<f64> = journal_samples.iter().map(|s| s.bytes_per_sec / 1e6).collect();
    if !args.no_fio {
        peer_line("fio sequential write, plain (not durable), MB/s", &journal, &plain);
        peer_line("fio sequential write, durability-matched, MB/s", &journal, &durable);
    }
    cpu_line(&journal_samples, &[("fio plain", &plain_cpu), ("fio durable", &durable_cpu)]);
    Ok(journal)
}

const DEV: DeviceId = DeviceId(0);

fn measure(
    args: &JournalArgs,
    device: &Arc<dyn BlockDevice>,
    mode: DurabilityMode,
    committers: usize,
    (record_bytes, wait_every): (usize, u64),
    epoch: u64,
) -> Result<Sample, String> {
    let idle = match args.idle {
        Idle::Poll => IdlePolicy::Poll,
        Idle::Adaptive => IdlePolicy::Adaptive { spin_us: args.spin_us },
    };
    let config = RuntimeConfig { reactors: args.reactors, idle, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, std::slice::from_ref(device)).map_err(|e| e.to_string())?;
    let region = JournalRegion { device: DEV, first_page: 0, page_count: (args.ring_mib << 20) / 4096 };
    let journal_config = JournalConfig {
        durability: mode,
        writes_in_flight_max: args.writes_in_flight,
        waiter_seal_writes_max: args.waiter_seal_writes,
        batch_bytes_max: args.batch_kib << 10,
        batch_delay_us: args.batch_delay_us,
        ..JournalConfig::default()
    };
    let identity = JournalIdentity { volume_uuid: *b"keel-perf-journl", epoch };
    let journal = runtime
        .call_blocking(0, move || async move {
            Journal::open(region, &journal_config, identity, JournalPosition::FRESH).await
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicU64::new(0));
    spawn_checkpointer(&runtime, &journal, &stop, &running)?;
    for c in 0..committers {
        let (journal, stop, commits, running) = (journal.clone(), stop.clone(), commits.clone(), running.clone());
        running.fetch_add(1, Ordering::SeqCst);
        runtime
            .spawn_on(c % args.reactors, move || async move {
                let payload = vec![PAYLOAD_BYTE; record_bytes];
                let mut unacknowledged = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let lsn = journal.reserve(record_bytes).await.expect("reserve").commit(&payload).expect("commit");
                    unacknowledged += 1;
                    if unacknowledged == wait_every {
                        journal.wait_durable(lsn).await.expect("durable");
                        // Only records known durable are counted.
                        commits.fetch_add(unacknowledged, Ordering::Relaxed);
                        unacknowledged = 0;
                    }
                }
                running.fetch_sub(1, Ordering::SeqCst);
            })
            .map_err(|e| e.to_string())?;
    }
    // Warm up, then count over the measured window only.
    std::thread::sleep(Duration::from_millis(300));
    let (start_commits, start_stats, started) = (commits.load(Ordering::SeqCst), journal.stats(), Instant::now());
    let cpu = CpuClock::start();
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    let (end_commits, end_stats, elapsed) = (commits.load(Ordering::SeqCst), journal.stats(), started.elapsed());
    let cpu_cores = cpu.cores_since();
    stop.store(true, Ordering::SeqCst);
    while running.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(journal);
    runtime.stop();
    let n = (end_commits - start_commits) as f64;
    let secs = elapsed.as_secs_f64();
    let stats = JournalStats {
        records: end_stats.records - start_stats.records,
        batches: end_stats.batches - start_stats.batches,
        vouches: end_stats.vouches - start_stats.vouches,
        batch_bytes_written: end_stats.batch_bytes_written - start_stats.batch_bytes_written,
        writes: end_stats.writes - start_stats.writes,
        flushes: end_stats.flushes - start_stats.flushes,
        batches_without_fua: end_stats.batches_without_fua - start_stats.batches_without_fua,
        reserve_waits: end_stats.reserve_waits - start_stats.reserve_waits,
        writes_under_quarter_piece: end_stats.writes_under_quarter_piece - start_stats.writes_under_quarter_piece,
    };
    Ok(Sample { commits_per_sec: n / secs, bytes_per_sec: n * record_bytes as f64 / secs, cpu_cores, stats })
}

/// The checkpoint's stand-in: frees everything durable, every millisecond.
fn spawn_checkpointer(
    runtime: &Runtime,
    journal: &Journal,
    stop: &Arc<AtomicBool>,
    running: &Arc<AtomicU64>,
) -> Result<(), String> {
    let (journal, stop, running) = (journal.clone(), stop.clone(), running.clone());
    running.fetch_add(1, Ordering::SeqCst);
    runtime
        .spawn_on(0, move || async move {
            while !stop.load(Ordering::Relaxed) {
                keel_reactor::time::sleep(Duration::from_millis(1)).await;
                let _ = journal.advance_head(journal.lsn_durable() + 1);
            }
            running.fetch_sub(1, Ordering::SeqCst);
        })
        .map_err(|e| e.to_string())
}
