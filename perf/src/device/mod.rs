//! `keel-perf device`: block I/O through Keel's reactors and a device
//! backend, like spdk_nvme_perf, with fio run on the same file with the same
//! settings in the same invocation as the peer.
//!
//! A run starts a runtime of `--reactors` reactors; each keeps `--qd`
//! requests in flight on its own queue pair (one task per request, each
//! reusing one DMA buffer) for `--ramp` seconds unmeasured and `--duration`
//! seconds measured. A file with unwritten space is filled first, whatever
//! the pattern (prefill.rs). With `--repeat N`, Keel and fio alternate which runs
//! first, and the summary gives median, min and max.

mod args;
pub(crate) mod cpu;
pub(crate) mod fio;
mod keel_run;
mod prefill;
mod report;
mod stats;
mod workload;

use std::sync::Arc;
use std::time::Duration;

use keel_drivers::aggregate::{SetConfig, SetDevice};
use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig};
use keel_drivers::nvme::{NvmeConfig, NvmeDevice};
use keel_drivers::uring::{UringConfig, UringDevice};
use keel_drivers::{BlockDevice, DeviceError, DmaPool, DmaPoolConfig, HugepagePolicy};

use self::args::{Backend, FioMode};
pub use self::args::{DeviceArgs, Idle};
use self::report::{DeviceFacts, Report, RunReport, Settings, Summary};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("cannot start the reactors: {0}")]
    Runtime(#[from] keel_reactor::RuntimeError),
    #[error("cannot reach a reactor: {0}")]
    Call(#[from] keel_reactor::CallError),
    #[error("an I/O failed during the run: {0}")]
    Io(String),
    #[error("the run did not finish within {0:?}")]
    Hung(Duration),
    #[error("fio: {0}")]
    Fio(String),
}

/// Extra DMA memory beyond the benchmark's buffers: the prefill's 16 MiB.
const POOL_SLACK_BYTES: u64 = 32 << 20;

pub fn main(args: &DeviceArgs) -> Result<(), PerfError> {
    validate(args)?;
    let device_is_new = args.backend == Backend::Uring && !args.path.exists();
    let (device, facts) = open(args)?;
    let settings = Settings::of(args);
    let machine = machine();
    if !args.json {
        println!("{}", report::header(&settings, &facts, &machine));
    }
    let prefill_s = match prefill::needed(args, device_is_new)? {
        Some(why) => {
            eprintln!("keel-perf: writing the whole device once before reading ({why})");
            let seconds = prefill::fill(&device)?;
            eprintln!("keel-perf: filled {} MiB in {seconds:.1} s", facts.capacity_bytes >> 20);
            Some(seconds)
        }
        None => None,
    };
    let fio_version = match (args.backend, args.fio) {
        (Backend::Uring, FioMode::Auto) => Some(fio::ensure_installed()?),
        _ => None,
    };
    let mut runs = Vec::new();
    for index in 0..args.repeat {
        let run = one_run(args, &device, fio_version.is_some(), index, facts.capacity_bytes)?;
        if !args.json {
            println!("{}", report::run_text(index as usize, args.repeat as usize, &run));
        }
        runs.push(run);
    }
    let summary = Summary::of(&runs);
    if args.json {
        let report = Report { settings, device: facts, machine, prefill_s, fio_version, runs, summary };
        let text = serde_json::to_string_pretty(&report).map_err(|e| PerfError::Config(e.to_string()))?;
        println!("{text}");
    } else if args.repeat > 1 {
        println!("{}", report::summary_text(&summary));
    }
    Ok(())
}

/// One Keel run and, when fio is on, one fio run; odd-numbered runs let fio
/// go first so neither side always meets the device warm.
fn one_run(
    args: &DeviceArgs,
    device: &Arc<dyn BlockDevice>,
    with_fio: bool,
    index: u32,
    size_bytes: u64,
) -> Result<RunReport, PerfError> {
    let fio_first = with_fio && index % 2 == 1;
    let mut fio_run = None;
    if fio_first {
        fio_run = Some(fio::run(args, &args.path, size_bytes)?);
    }
    let keel = keel_run::run(device, args, index)?;
    if with_fio && !fio_first {
        fio_run = Some(fio::run(args, &args.path, size_bytes)?);
    }
    let ratio_iops = fio_run.as_ref().filter(|f| f.total.iops > 0.0).map(|f| keel.total.iops / f.total.iops);
    Ok(RunReport { keel, fio: fio_run, fio_ran_first: fio_first, ratio_iops })
}

fn validate(args: &DeviceArgs) -> Result<(), PerfError> {
    let fail = |why: String| Err(PerfError::Config(why));
    if args.bs == 0 || !args.bs.is_multiple_of(512) || args.bs > keel_drivers::dma::REGION_BYTES as u64 {
        return fail(format!("--bs {} must be a non-zero multiple of 512 of at most 2 MiB", args.bs));
    }
    if args.set_members > 1 && args.backend != Backend::Memory {
        return fail(
            "--set-members is for --backend memory (keel serve stripes uring files and NVMe controllers)".into(),
        );
    }
    if args.duration == 0 {
        return fail("--duration must be at least 1 second".into());
    }
    Ok(())
}

fn open(args: &DeviceArgs) -> Result<(Arc<dyn BlockDevice>, DeviceFacts), PerfError> {
    let buffers_bytes = u64::from(args.reactors) * u64::from(args.qd) * args.bs.next_power_of_two().max(4096);
    let pool_bytes = usize::try_from(buffers_bytes + POOL_SLACK_BYTES)
        .map_err(|_| PerfError::Config("the DMA pool would not fit in memory".into()))?;
    let pool = Arc::new(DmaPool::new(&DmaPoolConfig { size_bytes: pool_bytes, hugepages: HugepagePolicy::Auto })?);
    let (device, facts): (Arc<dyn BlockDevice>, DeviceFacts) = match args.backend {
        Backend::Uring => {
            let mut config = UringConfig::new(&args.path);
            config.create_size_bytes = Some(args.size);
            config.setup = args.setup;
            config.fixed_buffers = !args.no_fixed_buffers;
            config.submit_batch_max = args.submit_batch;
            config.submit_write_batch_max = args.submit_write_batch;
            let device = UringDevice::open(&config, pool)?;
            let (setup, fixed) = device.open_uring_queue_pair(1)?.setup();
            let facts = facts_of(&device, Some(setup.to_string()), Some(fixed), Some(device.is_direct()));
            (Arc::new(device), facts)
        }
        Backend::Nvme => {
            let pci = args.pci.as_deref().ok_or_else(|| PerfError::Config("--backend nvme needs --pci".into()))?;
            let mut config = NvmeConfig::new(pci);
            config.interrupts = args.nvme_interrupts;
            config.io_queue_pairs_max = u16::try_from(args.reactors).unwrap_or(u16::MAX);
            let device = NvmeDevice::open(&config, pool).map_err(DeviceError::from)?;
            let facts = facts_of(&device, None, None, None);
            (Arc::new(device), facts)
        }
        Backend::Memory if args.set_members > 1 => {
            let capacity_bytes = args.size / u64::from(args.set_members);
            let config = MemoryDeviceConfig { capacity_bytes, queue_depth_max: 4096, ..Default::default() };
            let members = (0..args.set_members)
                .map(|_| Arc::new(MemoryDevice::new(&config, Arc::clone(&pool))) as Arc<dyn BlockDevice>)
                .collect();
            let device = SetDevice::open(members, &SetConfig::default())?;
            let facts = facts_of(&device, None, None, None);
            (Arc::new(device), facts)
        }
        Backend::Memory => {
            let config = MemoryDeviceConfig { capacity_bytes: args.size, queue_depth_max: 4096, ..Default::default() };
            let device = MemoryDevice::new(&config, pool);
            let facts = facts_of(&device, None, None, None);
            (Arc::new(device), facts)
        }
    };
    let block = u64::from(facts.block_size_bytes);
    if !args.bs.is_multiple_of(block) || args.bs > u64::from(device.info().max_transfer_bytes) {
        return Err(PerfError::Config(format!(
            "--bs {} must be a multiple of the device's {block}-byte block and at most its {}-byte maximum transfer",
            args.bs,
            device.info().max_transfer_bytes
        )));
    }
    Ok((device, facts))
}

fn facts_of(device: &dyn BlockDevice, setup: Option<String>, fixed: Option<bool>, direct: Option<bool>) -> DeviceFacts {
    let info = device.info();
    DeviceFacts {
        name: info.name.clone(),
        block_size_bytes: info.block_size_bytes,
        capacity_bytes: info.capacity_bytes(),
        volatile_write_cache: info.volatile_write_cache,
        uring_setup: setup,
        fixed_buffers: fixed,
        direct,
    }
}

/// Cores and kernel, so a figure carries the machine it was measured on.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, Linux {}", kernel.trim())
}
