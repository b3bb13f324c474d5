//! fio as the journal's peer, on the same file system, run between the
//! journal's own runs, on a file in the same state as the journal's.
//!
//! Small records are compared with one durable 4 KiB write at a time (the
//! rate of a log without group commit). Large records are compared twice:
//! with fio's plain sequential O_DIRECT write bandwidth (not durable: what the
//! issue names), and with the same fio job made as durable as the journal's
//! batches, so that the cost of durability is not counted against the journal.
//!
//! Matched in everything the journal's writes have (BENCHMARKS.md, "Journal",
//! "What the journal's 2x over fio compared"): the file is written once before
//! measuring and kept (as the journal's), the buffers are of the same pages
//! as the journal's DMA pool (`--mem=shmhuge` when that is hugepage-backed),
//! registered (`--fixedbufs --registerfiles`, as the journal's ring has them),
//! and hold the journal's payload byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::file::prewrite;
use super::{Pages, PAYLOAD_BYTE};

/// How the journal makes a batch durable, and so which fio job matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurablePeer {
    /// FUA batch writes (`RWF_DSYNC`): fio opens its file `O_DSYNC`
    /// (`--sync=dsync`), so every write is durable when it completes.
    Dsync,
    /// Batch writes, then one `fdatasync` covering what completed: fio
    /// issues an `fdatasync` after every `n` writes (`--fdatasync=n`).
    Fdatasync { every_writes: u32 },
}

impl DurablePeer {
    fn fio_args(self) -> Vec<String> {
        match self {
            DurablePeer::Dsync => vec!["--sync=dsync".into()],
            DurablePeer::Fdatasync { every_writes } => vec![format!("--fdatasync={every_writes}")],
        }
    }
}

/// The fio side of one large-record comparison: bandwidth in bytes/s.
#[derive(Debug, Clone, Copy)]
pub struct SeqWrite {
    pub plain_bytes_per_sec: f64,
    pub durable_bytes_per_sec: f64,
    /// fio's own usr+sys CPU, in cores, of each job.
    pub plain_cpu_cores: f64,
    pub durable_cpu_cores: f64,
}

/// One sequential write shape: fio's block size and queue depth.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub write_bytes: usize,
    pub writes_in_flight: usize,
}

/// The fio job shapes, fixed for a whole invocation, and fio's file (written
/// once when made, removed when dropped).
#[derive(Debug)]
pub struct Fio {
    path: PathBuf,
    seconds: f64,
    /// Bytes of the file fio walks (the journal's ring).
    walk_bytes: u64,
    /// The journal's device write size and writes in flight.
    matched: Shape,
    durable: DurablePeer,
    pages: Pages,
}

impl Fio {
    /// Lays out fio's file next to the journal's, the same way and size.
    pub fn new(
        journal_path: &Path,
        (file_bytes, walk_bytes): (u64, u64),
        seconds: f64,
        matched: Shape,
        durable: DurablePeer,
        pages: Pages,
    ) -> Result<Fio, String> {
        let path = journal_path.with_extension("fio");
        prewrite(&path, file_bytes)?;
        Ok(Fio { path, seconds, walk_bytes, matched, durable, pages })
    }

    /// Installs fio when it is missing (saying so).
    pub fn ensure_installed() -> Result<String, String> {
        crate::device::fio::ensure_installed().map_err(|e| e.to_string())
    }

    /// Hugepage bytes fio's buffers take at `shape`: one block per queue
    /// slot plus alignment, rounded up to whole hugepages (one spare page).
    pub fn buffer_bytes(shape: Shape) -> u64 {
        (shape.write_bytes * shape.writes_in_flight) as u64 + (4 << 20)
    }

    /// The command lines, for the report.
    pub fn describe(&self) -> [String; 3] {
        [
            format!("fio {}", self.common(&small_args()).join(" ")),
            format!("fio {}", self.common(&self.seq_args(self.matched, false)).join(" ")),
            format!("fio {}", self.common(&self.seq_args(self.matched, true)).join(" ")),
        ]
    }

    /// `fio --ioengine=sync --fdatasync=1 --rw=write --bs=4k`: durable 4 KiB writes per second.
    pub fn fdatasync_iops(&self) -> Result<f64, String> {
        write_field(&self.run(&small_args())?, "iops")
    }

    /// Plain, then durability-matched sequential write bandwidth at the
    /// journal's write size and depth.
    pub fn seq_write(&self) -> Result<SeqWrite, String> {
        self.seq_write_at(self.matched)
    }

    /// Plain, then durability-matched sequential write bandwidth at `shape`.
    pub fn seq_write_at(&self, shape: Shape) -> Result<SeqWrite, String> {
        let plain = self.run(&self.seq_args(shape, false))?;
        let durable = self.run(&self.seq_args(shape, true))?;
        Ok(SeqWrite {
            plain_bytes_per_sec: write_field(&plain, "bw_bytes")?,
            durable_bytes_per_sec: write_field(&durable, "bw_bytes")?,
            plain_cpu_cores: cpu_cores(&plain),
            durable_cpu_cores: cpu_cores(&durable),
        })
    }

    fn seq_args(&self, shape: Shape, durable: bool) -> Vec<String> {
        let mut args = vec![
            "--ioengine=io_uring".into(),
            "--direct=1".into(),
            format!("--bs={}k", shape.write_bytes >> 10),
            format!("--iodepth={}", shape.writes_in_flight),
            "--fixedbufs".into(),
            "--registerfiles".into(),
            format!("--buffer_pattern={PAYLOAD_BYTE:#04x}"),
        ];
        if self.pages == Pages::Huge {
            args.extend(["--mem=shmhuge".into(), "--hugepage-size=2m".into()]);
        }
        if durable {
            args.extend(self.durable.fio_args());
        }
        args
    }

    fn common<S: AsRef<str>>(&self, extra: &[S]) -> Vec<String> {
        let mut args = vec![
            "--name=peer".to_owned(),
            format!("--filename={}", self.path.display()),
            format!("--size={}M", self.walk_bytes >> 20),
            "--rw=write".into(),
            "--time_based".into(),
            format!("--runtime={}", self.seconds),
        ];
        args.extend(extra.iter().map(|s| s.as_ref().to_owned()));
        args
    }

    fn run(&self, extra: &[String]) -> Result<serde_json::Value, String> {
        let output = Command::new("fio")
            .args(self.common(extra))
            .arg("--output-format=json")
            .output()
            .map_err(|e| format!("cannot run fio: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("fio {} failed: {}", extra.join(" "), stderr.trim()));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| format!("fio output: {e}"))
    }
}

impl Drop for Fio {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One durable 4 KiB write at a time (buffers of one page: the same on
/// either kind of page).
fn small_args() -> Vec<String> {
    vec!["--ioengine=sync".into(), "--fdatasync=1".into(), "--bs=4k".into()]
}

/// fio's usr+sys CPU (percent of its run time) in cores.
fn cpu_cores(value: &serde_json::Value) -> f64 {
    let job = &value["jobs"][0];
    (job["usr_cpu"].as_f64().unwrap_or(0.0) + job["sys_cpu"].as_f64().unwrap_or(0.0)) / 100.0
}

fn write_field(value: &serde_json::Value, field: &str) -> Result<f64, String> {
    value["jobs"][0]["write"][field].as_f64().ok_or_else(|| format!("fio output lacks jobs[0].write.{field}"))
}
