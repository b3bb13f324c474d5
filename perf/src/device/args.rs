//! The command line of `keel-perf device`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use keel_drivers::uring::UringSetup;

/// Which device backend Keel drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// io_uring on a file or block device (O_DIRECT).
    Uring,
    /// RAM: measures the CPU path only; no peer.
    Memory,
    /// An NVMe controller on vfio-pci (--pci), driven from user space. fio
    /// cannot reach it; its peer is the uring backend on the kernel's nvme
    /// driver, run on the same controller (scripts/vm/nvme-bench.sh).
    Nvme,
}

/// The access pattern, named as fio names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    Read,
    Write,
    Randread,
    Randwrite,
    /// Sequential, reads and writes mixed by --rwmixread.
    Rw,
    /// Random, reads and writes mixed by --rwmixread.
    Randrw,
}

impl Pattern {
    pub fn is_random(self) -> bool {
        matches!(self, Pattern::Randread | Pattern::Randwrite | Pattern::Randrw)
    }

    /// Percentage of I/Os that are reads.
    pub fn read_percent(self, rwmixread: u8) -> u8 {
        match self {
            Pattern::Read | Pattern::Randread => 100,
            Pattern::Write | Pattern::Randwrite => 0,
            Pattern::Rw | Pattern::Randrw => rwmixread,
        }
    }

    pub fn fio_name(self) -> &'static str {
        match self {
            Pattern::Read => "read",
            Pattern::Write => "write",
            Pattern::Randread => "randread",
            Pattern::Randwrite => "randwrite",
            Pattern::Rw => "rw",
            Pattern::Randrw => "randrw",
        }
    }
}

/// When to run fio as the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FioMode {
    /// Run fio; install it with apt-get first when it is missing.
    Auto,
    /// Do not run fio.
    Never,
}

/// When to write the whole device before measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Prefill {
    /// When the file has holes or unwritten extents, whatever the pattern:
    /// they read as zeros without touching the disk, and their first write
    /// also converts the extent, so Keel and fio would not meet the same file.
    Auto,
    Always,
    Never,
}

/// How an idle reactor waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Idle {
    /// Busy-poll (production, spdk_nvme_perf).
    Poll,
    /// Spin briefly, then sleep on the ring's eventfd.
    Adaptive,
}

/// Measures block I/O through Keel's reactors, like spdk_nvme_perf, and runs
/// fio with the same settings on the same file in the same invocation.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    #[arg(long, value_enum, default_value_t = Backend::Uring)]
    pub backend: Backend,
    /// The file or block device (uring). A missing file is created with --size.
    #[arg(long, default_value = "keel-perf.img")]
    pub path: PathBuf,
    /// Device size: the file is created or grown to it; the memory device has
    /// it. Accepts suffixes k, m, g (powers of 1024). Ignored for block devices.
    #[arg(long, default_value = "2g", value_parser = parse_size)]
    pub size: u64,
    /// PCI address of the controller (nvme), bound to vfio-pci (`keel setup`).
    #[arg(long)]
    pub pci: Option<String>,
    /// nvme: MSI-X interrupts on, so an adaptive reactor can sleep (default:
    /// completion queues without interrupts, polled only).
    #[arg(long)]
    pub nvme_interrupts: bool,
    #[arg(long, value_enum, default_value_t = Pattern::Randread)]
    pub pattern: Pattern,
    /// Percentage of reads for rw and randrw.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub rwmixread: u8,
    /// I/O size in bytes (suffixes k, m accepted).
    #[arg(long, default_value = "4k", value_parser = parse_size)]
    pub bs: u64,
    /// Requests kept in flight per reactor.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub qd: u32,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2)]
    pub ramp: u64,
    /// Reactors (threads), each with its own queue pair and --qd requests.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub reactors: u32,
    /// Pin reactor i to core i.
    #[arg(long)]
    pub pin: bool,
    #[arg(long, value_enum, default_value_t = Idle::Poll)]
    pub idle: Idle,
    /// With --idle adaptive: microseconds an idle reactor spins before it
    /// sleeps.
    #[arg(long, default_value_t = 20)]
    pub spin_us: u32,
    /// io_uring setup flags: auto, defer, coop or plain.
    #[arg(long, default_value = "auto")]
    pub setup: UringSetup,
    /// Use plain READ/WRITE instead of registered (fixed) buffers.
    #[arg(long)]
    pub no_fixed_buffers: bool,
    /// uring: enter the kernel as soon as this many requests are queued, as
    /// well as once per reactor turn (0: once per turn only). The default is
    /// `keel serve`'s (`device.submit_batch_max`).
    #[arg(long, default_value_t = keel_drivers::uring::SUBMIT_BATCH_MAX_DEFAULT)]
    pub submit_batch: u32,
    /// uring: enter the kernel as soon as this many writes are queued,
    /// whatever --submit-batch says (0: no separate limit). The default is
    /// `keel serve`'s (`device.submit_write_batch_max`).
    #[arg(long, default_value_t = keel_drivers::uring::SUBMIT_WRITE_BATCH_MAX_DEFAULT)]
    pub submit_write_batch: u32,
    /// Every write is FUA (RWF_DSYNC); fio gets --sync=dsync.
    #[arg(long)]
    pub fua: bool,
    #[arg(long, value_enum, default_value_t = FioMode::Auto)]
    pub fio: FioMode,
    /// An extra argument for fio (repeatable), e.g. --fio-arg=--iodepth_batch_submit=8.
    #[arg(long = "fio-arg", allow_hyphen_values = true)]
    pub fio_args: Vec<String>,
    #[arg(long, value_enum, default_value_t = Prefill::Auto)]
    pub prefill: Prefill,
    /// Run Keel and fio this many times, alternating, and summarise
    /// median, min and max.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// memory: stripe this many memory devices (each --size / N) into one
    /// striped set (`keel_drivers::aggregate`), to measure the set's CPU
    /// cost against one device of the same total size. 1: no set.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub set_members: u32,
}

/// Parses "4096", "4k", "2g", "2GiB" into bytes (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches("ib").trim_end_matches('b');
    let (digits, shift) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 10),
        Some('m') => (&lower[..lower.len() - 1], 20),
        Some('g') => (&lower[..lower.len() - 1], 30),
        Some('t') => (&lower[..lower.len() - 1], 40),
        _ => (lower, 0),
    };
    let value: u64 = digits.trim().parse().map_err(|_| format!("{text:?} is not a size (e.g. 4096, 4k, 2g)"))?;
    value.checked_shl(shift).filter(|v| v >> shift == value).ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999t").is_err());
    }
}
