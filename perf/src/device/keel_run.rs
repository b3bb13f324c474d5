//! One measured run of Keel: a runtime with `reactors` reactors, each keeping
//! `qd` requests in flight on its own queue pair until the window closes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use keel_drivers::BlockDevice;
use keel_reactor::io::{self, DeviceId};
use keel_reactor::{spawn, IdlePolicy, Runtime, RuntimeConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::args::{DeviceArgs, Idle};
use super::cpu::CpuClock;
use super::stats::{Measured, Recorder};
use super::workload::Workload;
use super::PerfError;

const DEV: DeviceId = DeviceId(0);

/// What one reactor must do; sent to it by value.
#[derive(Debug, Clone, Copy)]
struct Job {
    workload: Workload,
    io_bytes: u64,
    qd: u32,
    fua: bool,
    ramp: Duration,
    duration: Duration,
    seed: u64,
}

/// Keel's figures for one run.
#[derive(Debug, Clone, Serialize)]
pub struct KeelRun {
    pub reactors: Vec<Measured>,
    pub total: Measured,
    /// Average cores this process kept busy during the run.
    pub cpu_cores: f64,
}

pub fn run(device: &Arc<dyn BlockDevice>, args: &DeviceArgs, run_index: u32) -> Result<KeelRun, PerfError> {
    let info = device.info().clone();
    let idle = match args.idle {
        Idle::Poll => IdlePolicy::Poll,
        Idle::Adaptive => IdlePolicy::Adaptive { spin_us: args.spin_us },
    };
    let config = RuntimeConfig {
        reactors: args.reactors as usize,
        cores: args.pin.then(|| (0..args.reactors as usize).collect()),
        idle,
        queue_depth: args.qd,
        ..RuntimeConfig::default()
    };
    let cpu = CpuClock::start();
    let runtime = Runtime::start(&config, std::slice::from_ref(device))?;
    let (tx, rx) = mpsc::channel();
    for reactor in 0..args.reactors {
        let workload = Workload::new(
            args.pattern,
            args.rwmixread,
            args.bs,
            u64::from(info.block_size_bytes),
            info.capacity_blocks,
            reactor,
            args.reactors,
        )
        .map_err(PerfError::Config)?;
        let job = Job {
            workload,
            io_bytes: args.bs,
            qd: args.qd,
            fua: args.fua,
            ramp: Duration::from_secs(args.ramp),
            duration: Duration::from_secs(args.duration),
            seed: u64::from(run_index) << 32 | u64::from(reactor),
        };
        let tx = tx.clone();
        runtime.spawn_on(reactor as usize, move || async move {
            let _ = tx.send((reactor, reactor_load(job).await));
        })?;
    }
    drop(tx);
    let wait_max = Duration::from_secs(args.ramp + args.duration + 120);
    let mut recorders = vec![None; args.reactors as usize];
    for _ in 0..args.reactors {
        let (reactor, result) = rx.recv_timeout(wait_max).map_err(|_| PerfError::Hung(wait_max))?;
        recorders[reactor as usize] = Some(result.map_err(PerfError::Io)?);
    }
    runtime.stop();
    let cpu_cores = cpu.cores_since();
    let seconds = args.duration as f64;
    let mut all = Recorder::new();
    let mut reactors = Vec::new();
    for recorder in recorders.into_iter().flatten() {
        reactors.push(recorder.measured(seconds));
        all.merge(&recorder);
    }
    Ok(KeelRun { total: all.measured(seconds), reactors, cpu_cores })
}

/// Runs `qd` tasks on this reactor, each with one buffer it reuses, and
/// records every I/O that completes inside the measured window.
async fn reactor_load(job: Job) -> Result<Recorder, String> {
    let recorder = Rc::new(RefCell::new(Recorder::new()));
    let cursor = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let window = (start + job.ramp, start + job.ramp + job.duration);
    let mut tasks = Vec::new();
    for task in 0..job.qd {
        let (recorder, cursor) = (Rc::clone(&recorder), Rc::clone(&cursor));
        let seed = job.seed.wrapping_mul(0x9E37_79B9).wrapping_add(u64::from(task));
        tasks.push(spawn(io_loop(job, seed, window, recorder, cursor)));
    }
    for task in tasks {
        task.await?;
    }
    let recorded = recorder.borrow().clone();
    Ok(recorded)
}

async fn io_loop(
    job: Job,
    seed: u64,
    (measure_from, until): (Instant, Instant),
    recorder: Rc<RefCell<Recorder>>,
    cursor: Rc<Cell<u64>>,
) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let len = usize::try_from(job.io_bytes).map_err(|_| "I/O size does not fit in memory".to_owned())?;
    let mut buf = io::alloc_buf(DEV, len).await.map_err(|e| e.to_string())?;
    rand::RngCore::fill_bytes(&mut rng, &mut buf);
    loop {
        let (is_read, lba) = job.workload.next(&mut rng, &cursor);
        let started = Instant::now();
        if started >= until {
            return Ok(());
        }
        let (back, result) =
            if is_read { io::read(DEV, lba, buf).await } else { io::write(DEV, lba, buf, job.fua).await };
        buf = back;
        result.map_err(|e| e.to_string())?;
        let done = Instant::now();
        if done >= measure_from && done < until {
            recorder.borrow_mut().record(is_read, done - started, job.io_bytes);
        }
    }
}
