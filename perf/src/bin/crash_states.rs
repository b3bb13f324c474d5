//! crash_states: how many post-crash device images per second the crash
//! recorder materialises for a journal-like workload, against the naive way
//! (copying every written byte of the device into a fresh image) in the same
//! run.
//!
//! Workload: a memory device (4 KiB blocks, volatile cache) holding
//! `--base-mib` of pre-written data, recorded while rounds of 4 concurrent log
//! writes (4-16 KiB, appended in a 16 MiB ring, the tail block rewritten) and
//! one 64 KiB data write go out, followed by a flush. At every crash point,
//! `--images` images are built (exhaustive or sampled) and two blocks of each
//! are read back, as a recovery would start.
//!
//!     cargo run --release -p keel-perf --bin crash_states -- --rounds 250 --images 4 --base-mib 64
//!
//! The naive way is timed over the first `--naive-images` images only.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};
use keel_drivers::test_devices::{CrashLog, CrashRecorder};
use keel_drivers::{BlockDevice, DmaPool, Op, QueuePair, Request};

const BLOCK: u64 = 4096;
const LOG_FIRST_BLOCK: u64 = 1 << 16; // 256 MiB in
const LOG_BLOCKS: u64 = 4096; // a 16 MiB ring
const DATA_BLOCKS: u64 = 1 << 14;

struct Args {
    rounds: u64,
    images: u64,
    base_mib: u64,
    /// The naive way is slow: it is timed over the first this many images.
    naive_images: u64,
}

fn parse_args() -> Args {
    let mut args = Args { rounds: 250, images: 4, base_mib: 64, naive_images: 50 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
        match pair[0].as_str() {
            "--rounds" => args.rounds = value,
            "--images" => args.images = value,
            "--base-mib" => args.base_mib = value,
            "--naive-images" => args.naive_images = value,
            _ => usage(),
        }
    }
    args
}

fn usage() -> ! {
    eprintln!("usage: crash_states [--rounds N] [--images N] [--base-mib N] [--naive-images N]");
    std::process::exit(2)
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn submit_write(qp: &mut dyn QueuePair, pool: &DmaPool, lba: u64, blocks: u64, fill: u8) {
    let len_bytes = (blocks * BLOCK) as usize;
    let mut buf = pool.try_alloc(len_bytes).expect("a DMA buffer");
    buf.set_len(len_bytes);
    buf.fill(fill);
    qp.submit(Request { tag: 0, op: Op::Write { lba, buf, fua: false } }).expect("room in the queue");
}

fn drain(qp: &mut dyn QueuePair) {
    let mut out = Vec::new();
    while qp.in_flight() > 0 {
        out.clear();
        qp.poll(&mut out, 64);
        assert!(out.iter().all(|c| c.result.is_ok()));
    }
}

/// Records the workload and returns its log and the written byte ranges.
fn record(args: &Args) -> (CrashLog, Vec<(u64, u64)>) {
    let pool = Arc::new(DmaPool::for_tests(16 << 20));
    let config = MemoryDeviceConfig { capacity_bytes: 1 << 30, ..Default::default() };
    let device = Arc::new(MemoryDevice::new(&config, Arc::clone(&pool)));
    let base_bytes = args.base_mib << 20;
    let chunk = vec![0x5Au8; 1 << 20];
    for mib in 0..args.base_mib {
        device.store().write(mib << 20, &chunk);
    }
    let rec = CrashRecorder::over_memory(device);
    let mut qp = rec.open_queue_pair(64).expect("a queue pair");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut log_head = 0u64;
    for round in 0..args.rounds {
        // Group commit: four appends in flight at once, on distinct blocks;
        // the next round rewrites this round's last (partly filled) block.
        for i in 0..4 {
            let blocks = 1 + rng.next() % 4;
            let lba = LOG_FIRST_BLOCK + log_head % (LOG_BLOCKS - 4);
            submit_write(&mut *qp, &pool, lba, blocks, round as u8);
            log_head += if i == 3 { blocks - 1 } else { blocks };
        }
        let data_lba = (rng.next() % (DATA_BLOCKS / 16)) * 16;
        submit_write(&mut *qp, &pool, data_lba, 16, round as u8);
        drain(&mut *qp);
        qp.submit(Request { tag: 0, op: Op::Flush }).expect("room in the queue");
        drain(&mut *qp);
    }
    let written = vec![(0, base_bytes.max(DATA_BLOCKS * BLOCK)), (LOG_FIRST_BLOCK * BLOCK, LOG_BLOCKS * BLOCK)];
    (rec.log(), written)
}

/// Builds the images of every crash point, at most `limit` in all, and reads two blocks of each; returns the number of images.
fn visit(log: &CrashLog, images: u64, limit: u64, naive_ranges: Option<&[(u64, u64)]>) -> u64 {
    let mut count = 0;
    let mut block = vec![0u8; BLOCK as usize];
    for state in log.states(log.every_point()) {
        for image in state.images(images) {
            if count == limit {
                return count;
            }
            let store = image.to_store();
            let store = match naive_ranges {
                Some(ranges) => full_copy(&store, ranges),
                None => store,
            };
            store.read(0, &mut block);
            store.read(LOG_FIRST_BLOCK * BLOCK, &mut block);
            count += 1;
        }
    }
    count
}

/// The naive image: every written byte copied into a fresh store.
fn full_copy(image: &MemoryStore, ranges: &[(u64, u64)]) -> MemoryStore {
    let copy = MemoryStore::new();
    let mut buf = vec![0u8; 1 << 20];
    for &(start, len) in ranges {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            image.read(start + done, &mut buf[..n]);
            copy.write(start + done, &buf[..n]);
            done += n as u64;
        }
    }
    copy
}

fn main() {
    let args = parse_args();
    let started = Instant::now();
    let (log, ranges) = record(&args);
    let record_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let images = visit(&log, args.images, u64::MAX, None);
    let cow_s = started.elapsed().as_secs_f64();

    let fresh = log.clone();
    let started = Instant::now();
    let naive_images = visit(&fresh, args.images, args.naive_images, Some(&ranges));
    let naive_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let states = log.clone().states(log.every_point()).count();
    let analysis_s = started.elapsed().as_secs_f64();

    let cow_rate = images as f64 / cow_s;
    let naive_rate = naive_images as f64 / naive_s;
    println!(
        "events {} writes {} flush points {} base {} MiB: recorded in {:.2} s",
        log.events().len(),
        log.writes().len(),
        log.flush_points().len(),
        args.base_mib,
        record_s
    );
    println!("analysis alone: {states} crash points in {analysis_s:.2} s");
    println!("recorder images: {images} in {cow_s:.2} s = {cow_rate:.0} images/s");
    println!("naive full-copy images: {naive_images} in {naive_s:.2} s = {naive_rate:.0} images/s");
    println!("ratio recorder / naive: {:.1}x", cow_rate / naive_rate);
}
