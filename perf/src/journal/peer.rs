//! fio as the journal's peer, on the same file system, run between the
//! journal's own runs.
//!
//! Small records are compared with one durable 4 KiB write at a time (the
//! rate of a log without group commit). Large records are compared twice:
//! with fio's plain sequential O_DIRECT write bandwidth (not durable: what the
//! issue names), and with the same fio job made as durable as the journal's
//! batches, so that the cost of durability is not counted against the journal.

use std::path::{Path, PathBuf};
use std::process::Command;

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
}

/// The fio job shapes, fixed for a whole invocation.
#[derive(Debug, Clone)]
pub struct Fio {
    path: PathBuf,
    seconds: f64,
    /// The journal's device write size (one batch piece): fio's block size.
    write_bytes: usize,
    /// The journal's device writes in flight: fio's queue depth.
    writes_in_flight: usize,
    durable: DurablePeer,
}

impl Fio {
    pub fn new(
        journal_path: &Path,
        seconds: f64,
        write_bytes: usize,
        writes_in_flight: usize,
        durable: DurablePeer,
    ) -> Fio {
        Fio { path: journal_path.with_extension("fio"), seconds, write_bytes, writes_in_flight, durable }
    }

    /// Installs fio when it is missing (saying so).
    pub fn ensure_installed() -> Result<String, String> {
        crate::device::fio::ensure_installed().map_err(|e| e.to_string())
    }

    /// The command lines, for the report.
    pub fn describe(&self) -> [String; 3] {
        [
            format!("fio {}", self.common(&["--ioengine=sync", "--fdatasync=1", "--bs=4k"]).join(" ")),
            format!("fio {}", self.common(&self.seq_args(false)).join(" ")),
            format!("fio {}", self.common(&self.seq_args(true)).join(" ")),
        ]
    }

    /// `fio --ioengine=sync --fdatasync=1 --rw=write --bs=4k`: durable 4 KiB writes per second.
    pub fn fdatasync_iops(&self) -> Result<f64, String> {
        let value = self.run(&["--ioengine=sync".into(), "--fdatasync=1".into(), "--bs=4k".into()])?;
        write_field(&value, "iops")
    }

    /// Plain, then durability-matched sequential write bandwidth.
    pub fn seq_write(&self) -> Result<SeqWrite, String> {
        let plain = write_field(&self.run(&self.seq_args(false))?, "bw_bytes")?;
        let durable = write_field(&self.run(&self.seq_args(true))?, "bw_bytes")?;
        Ok(SeqWrite { plain_bytes_per_sec: plain, durable_bytes_per_sec: durable })
    }

    fn seq_args(&self, durable: bool) -> Vec<String> {
        let mut args = vec![
            "--ioengine=io_uring".into(),
            "--direct=1".into(),
            format!("--bs={}k", self.write_bytes >> 10),
            format!("--iodepth={}", self.writes_in_flight),
        ];
        if durable {
            args.extend(self.durable.fio_args());
        }
        args
    }

    fn common<S: AsRef<str>>(&self, extra: &[S]) -> Vec<String> {
        let mut args = vec![
            "--name=peer".to_owned(),
            format!("--filename={}", self.path.display()),
            "--size=256M".into(),
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
        let _ = std::fs::remove_file(&self.path);
        if !output.status.success() {
            return Err(format!("fio failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| format!("fio output: {e}"))
    }
}

fn write_field(value: &serde_json::Value, field: &str) -> Result<f64, String> {
    value["jobs"][0]["write"][field].as_f64().ok_or_else(|| format!("fio output lacks jobs[0].write.{field}"))
}
