//! What `keel-perf device` prints: a line per side per run as runs finish,
//! a summary over runs, or one JSON document.

use serde::Serialize;

use super::args::DeviceArgs;
use super::fio::FioRun;
use super::keel_run::KeelRun;
use super::stats::{Measured, Spread};

/// The device as Keel opened it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceFacts {
    pub name: String,
    pub block_size_bytes: u32,
    pub capacity_bytes: u64,
    pub volatile_write_cache: bool,
    /// The io_uring setup the kernel accepted and whether buffers are fixed
    /// (uring only).
    pub uring_setup: Option<String>,
    pub fixed_buffers: Option<bool>,
    pub direct: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub backend: super::args::Backend,
    pub pattern: super::args::Pattern,
    pub rwmixread: u8,
    pub bs: u64,
    pub qd: u32,
    pub reactors: u32,
    pub duration_s: u64,
    pub ramp_s: u64,
    pub idle: super::args::Idle,
    pub spin_us: u32,
    pub pinned: bool,
    pub fua: bool,
    /// uring: requests queued before the reactor enters the kernel mid-turn
    /// (0: once per turn only).
    pub submit_batch: u32,
    /// uring: queued writes that make the reactor enter the kernel mid-turn
    /// (0: no separate limit).
    pub submit_write_batch: u32,
    /// What a completed write means for durability in this run.
    pub durability: &'static str,
}

impl Settings {
    pub fn of(args: &DeviceArgs) -> Settings {
        Settings {
            backend: args.backend,
            pattern: args.pattern,
            rwmixread: args.rwmixread,
            bs: args.bs,
            qd: args.qd,
            reactors: args.reactors,
            duration_s: args.duration,
            ramp_s: args.ramp,
            idle: args.idle,
            spin_us: args.spin_us,
            pinned: args.pin,
            fua: args.fua,
            submit_batch: args.submit_batch,
            submit_write_batch: args.submit_write_batch,
            durability: if args.fua {
                "every write FUA (RWF_DSYNC; fio: sync=dsync): durable on completion"
            } else {
                "O_DIRECT, no flush: completed writes may sit in the device's volatile cache"
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub keel: KeelRun,
    pub fio: Option<FioRun>,
    pub fio_ran_first: bool,
    /// Keel's IOPS over fio's.
    pub ratio_iops: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub keel_iops: Option<Spread>,
    pub fio_iops: Option<Spread>,
    pub ratio_iops: Option<Spread>,
    pub keel_cpu_cores: Option<Spread>,
    pub fio_cpu_cores: Option<Spread>,
    /// CPU time per I/O in microseconds: how much work each side does per
    /// request, less sensitive than IOPS to a shared machine's load.
    pub keel_cpu_us_per_io: Option<Spread>,
    pub fio_cpu_us_per_io: Option<Spread>,
}

impl Summary {
    pub fn of(runs: &[RunReport]) -> Summary {
        let series = |f: &dyn Fn(&RunReport) -> Option<f64>| Spread::of(&runs.iter().filter_map(f).collect::<Vec<_>>());
        Summary {
            runs: runs.len(),
            keel_iops: series(&|r| Some(r.keel.total.iops)),
            fio_iops: series(&|r| r.fio.as_ref().map(|f| f.total.iops)),
            ratio_iops: series(&|r| r.ratio_iops),
            keel_cpu_cores: series(&|r| Some(r.keel.cpu_cores)),
            fio_cpu_cores: series(&|r| r.fio.as_ref().map(|f| f.cpu_cores)),
            keel_cpu_us_per_io: series(&|r| cpu_us_per_io(r.keel.cpu_cores, &r.keel.total)),
            fio_cpu_us_per_io: series(&|r| r.fio.as_ref().and_then(|f| cpu_us_per_io(f.cpu_cores, &f.total))),
        }
    }
}

fn cpu_us_per_io(cores: f64, m: &Measured) -> Option<f64> {
    (m.iops > 0.0).then(|| cores * 1e6 / m.iops)
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub device: DeviceFacts,
    pub machine: String,
    pub prefill_s: Option<f64>,
    pub fio_version: Option<String>,
    pub runs: Vec<RunReport>,
    pub summary: Summary,
}

pub fn header(settings: &Settings, device: &DeviceFacts, machine: &str) -> String {
    let uring = match (&device.uring_setup, device.fixed_buffers) {
        (Some(setup), Some(fixed)) => {
            format!(", io_uring setup {setup}, fixed buffers {}", if fixed { "on" } else { "off" })
        }
        _ => String::new(),
    };
    format!(
        "keel-perf device: {} ({} B blocks, {} MiB){uring}\n  {:?} bs {} qd {} x {} reactor(s), {} s measured after {} s ramp, idle {:?}, submit batch {} (writes {})\n  durability: {}\n  machine: {machine}",
        device.name,
        device.block_size_bytes,
        device.capacity_bytes >> 20,
        settings.pattern,
        settings.bs,
        settings.qd,
        settings.reactors,
        settings.duration_s,
        settings.ramp_s,
        settings.idle,
        settings.submit_batch,
        settings.submit_write_batch,
        settings.durability,
    )
}

pub fn measured_line(label: &str, m: &Measured) -> String {
    let l = &m.latency_us;
    format!(
        "  {label:<16} {:>10.0} IOPS {:>9.1} MiB/s  lat us: avg {:>7.1} p50 {:>7.1} p99 {:>7.1} p99.9 {:>8.1} max {:>9.1}",
        m.iops, m.mib_per_s, l.avg, l.p50, l.p99, l.p99_9, l.max
    )
}

pub fn run_text(index: usize, total: usize, run: &RunReport) -> String {
    let mut lines = vec![format!("run {}/{total}{}", index + 1, if run.fio_ran_first { " (fio first)" } else { "" })];
    if run.keel.reactors.len() > 1 {
        for (i, m) in run.keel.reactors.iter().enumerate() {
            lines.push(measured_line(&format!("keel reactor {i}"), m));
        }
    }
    lines.push(measured_line("keel", &run.keel.total) + &format!("  cpu {:.2} cores", run.keel.cpu_cores));
    if let Some(fio) = &run.fio {
        lines.push(measured_line("fio", &fio.total) + &format!("  cpu {:.2} cores", fio.cpu_cores));
    }
    if let Some(ratio) = run.ratio_iops {
        lines.push(format!("  keel/fio IOPS     {ratio:.3}x"));
    }
    lines.join("\n")
}

pub fn summary_text(summary: &Summary) -> String {
    let show = |name: &str, s: &Option<Spread>, digits: usize| {
        s.map(|s| {
            format!("  {name:<16} median {:.*} (min {:.*}, max {:.*})", digits, s.median, digits, s.min, digits, s.max)
        })
    };
    let mut lines = vec![format!("summary over {} run(s):", summary.runs)];
    lines.extend(show("keel IOPS", &summary.keel_iops, 0));
    lines.extend(show("fio IOPS", &summary.fio_iops, 0));
    lines.extend(show("keel/fio IOPS", &summary.ratio_iops, 3));
    lines.extend(show("keel cpu cores", &summary.keel_cpu_cores, 2));
    lines.extend(show("fio cpu cores", &summary.fio_cpu_cores, 2));
    lines.extend(show("keel cpu us/io", &summary.keel_cpu_us_per_io, 2));
    lines.extend(show("fio cpu us/io", &summary.fio_cpu_us_per_io, 2));
    lines.join("\n")
}
