//! fio as the peer: the same file, block size, depth, pattern and duration,
//! through fio's io_uring engine with O_DIRECT, in the same invocation.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Serialize;
use serde_json::Value;

use super::args::{DeviceArgs, Pattern};
use super::stats::{Latency, Measured};
use super::PerfError;

/// fio's figures for one run, and the command that produced them.
#[derive(Debug, Clone, Serialize)]
pub struct FioRun {
    pub command: String,
    pub total: Measured,
    /// fio's own usr+sys CPU, in cores.
    pub cpu_cores: f64,
}

/// True when fio can be run; installs it with apt-get when missing, saying so.
pub fn ensure_installed() -> Result<String, PerfError> {
    if let Some(version) = version() {
        return Ok(version);
    }
    eprintln!("keel-perf: fio is not installed; installing it with `apt-get install -y fio`");
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "fio"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        // apt-get talks on stdout; keep ours for the report (`--json` is read
        // by programs, and a fresh machine's first run used to corrupt it).
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| PerfError::Fio(format!("cannot run apt-get to install fio: {e}")))?;
    if !status.success() {
        return Err(PerfError::Fio(format!("apt-get install fio failed ({status}); install fio or pass --fio never")));
    }
    version().ok_or_else(|| PerfError::Fio("fio still missing after apt-get".into()))
}

fn version() -> Option<String> {
    let out = Command::new("fio").arg("--version").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The fio command line for `args` on `path` (of `size_bytes`).
pub fn command_line(args: &DeviceArgs, path: &Path, size_bytes: u64) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "fio".into(),
        "--name=keel-peer".into(),
        format!("--filename={}", path.display()),
        "--ioengine=io_uring".into(),
        "--direct=1".into(),
        // Keel registers its buffers and file; so does the peer.
        "--fixedbufs=1".into(),
        "--registerfiles=1".into(),
        format!("--rw={}", args.pattern.fio_name()),
        format!("--bs={}", args.bs),
        format!("--iodepth={}", args.qd),
        format!("--numjobs={}", args.reactors),
        "--group_reporting=1".into(),
        "--time_based=1".into(),
        format!("--runtime={}", args.duration),
        format!("--ramp_time={}", args.ramp),
        "--lat_percentiles=1".into(),
        "--percentile_list=50:99:99.9".into(),
        "--output-format=json".into(),
    ];
    if args.pattern.is_random() {
        // Keel draws offsets uniformly at random, without fio's coverage map.
        argv.extend(["--norandommap=1".into(), "--randrepeat=0".into(), format!("--size={size_bytes}")]);
    } else {
        // Each job walks its own slice, as each Keel reactor does.
        let slice = size_bytes / u64::from(args.reactors) / args.bs * args.bs;
        argv.extend([format!("--size={slice}"), format!("--offset_increment={slice}")]);
    }
    if matches!(args.pattern, Pattern::Rw | Pattern::Randrw) {
        argv.push(format!("--rwmixread={}", args.rwmixread));
    }
    if args.fua {
        argv.push("--sync=dsync".into());
    }
    argv.extend(args.fio_args.iter().cloned());
    argv
}

/// Runs fio and reads its JSON report.
pub fn run(args: &DeviceArgs, path: &Path, size_bytes: u64) -> Result<FioRun, PerfError> {
    let argv = command_line(args, path, size_bytes);
    let out =
        Command::new(&argv[0]).args(&argv[1..]).output().map_err(|e| PerfError::Fio(format!("cannot run fio: {e}")))?;
    if !out.status.success() {
        return Err(PerfError::Fio(format!("fio failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr))));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // fio may print notes before the JSON document.
    let json_start = stdout.find('{').ok_or_else(|| PerfError::Fio("fio printed no JSON".into()))?;
    let report: Value = serde_json::from_str(&stdout[json_start..])
        .map_err(|e| PerfError::Fio(format!("cannot parse fio's JSON: {e}")))?;
    let job =
        report.get("jobs").and_then(|j| j.get(0)).ok_or_else(|| PerfError::Fio("no job in fio's report".into()))?;
    let (total, cpu_cores) = parse_job(job)?;
    Ok(FioRun { command: argv.join(" "), total, cpu_cores })
}

fn parse_job(job: &Value) -> Result<(Measured, f64), PerfError> {
    let side = |name: &str| job.get(name).filter(|s| num(s, &["total_ios"]) > 0.0);
    let read = side("read");
    let write = side("write");
    let iops = read.map_or(0.0, |s| num(s, &["iops"])) + write.map_or(0.0, |s| num(s, &["iops"]));
    let bytes_per_s = read.map_or(0.0, |s| num(s, &["bw_bytes"])) + write.map_or(0.0, |s| num(s, &["bw_bytes"]));
    let ios = read.map_or(0.0, |s| num(s, &["total_ios"])) + write.map_or(0.0, |s| num(s, &["total_ios"]));
    if ios == 0.0 {
        return Err(PerfError::Fio("fio completed no I/O".into()));
    }
    let read_latency_us = read.map(latency);
    let write_latency_us = write.map(latency);
    // Mixed runs: fio reports each direction; the total is the busier one's.
    let busier = match (read, write) {
        (Some(r), Some(w)) if num(w, &["total_ios"]) > num(r, &["total_ios"]) => write_latency_us,
        _ => read_latency_us.or(write_latency_us),
    };
    let measured = Measured {
        ios: ios as u64,
        iops,
        mib_per_s: bytes_per_s / f64::from(1u32 << 20),
        latency_us: busier.unwrap_or_default(),
        read_latency_us,
        write_latency_us,
    };
    let cpu_cores = (num(job, &["usr_cpu"]) + num(job, &["sys_cpu"])) / 100.0;
    Ok((measured, cpu_cores))
}

fn latency(side: &Value) -> Latency {
    let lat = &side["lat_ns"];
    let pct = |key: &str| num(lat, &["percentile", key]) / 1000.0;
    Latency {
        avg: num(lat, &["mean"]) / 1000.0,
        p50: pct("50.000000"),
        p99: pct("99.000000"),
        p99_9: pct("99.900000"),
        max: num(lat, &["max"]) / 1000.0,
    }
}

fn num(value: &Value, path: &[&str]) -> f64 {
    path.iter().try_fold(value, |v, key| v.get(key)).and_then(Value::as_f64).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mixed_fio_report_sums_both_directions() {
        let job: Value = serde_json::from_str(
            r#"{"usr_cpu": 10.0, "sys_cpu": 40.0,
                "read": {"iops": 3000.0, "bw_bytes": 12288000, "total_ios": 6000,
                         "lat_ns": {"mean": 80000.0, "max": 900000,
                                    "percentile": {"50.000000": 70000, "99.000000": 300000, "99.900000": 800000}}},
                "write": {"iops": 1000.0, "bw_bytes": 4096000, "total_ios": 2000,
                          "lat_ns": {"mean": 90000.0, "max": 950000,
                                     "percentile": {"50.000000": 85000, "99.000000": 400000, "99.900000": 900000}}}}"#,
        )
        .expect("valid JSON");
        let (m, cpu) = parse_job(&job).expect("a complete report");
        assert_eq!(m.iops, 4000.0);
        assert_eq!(m.ios, 8000);
        assert!((m.mib_per_s - 15.625).abs() < 1e-9);
        assert_eq!(m.latency_us.p50, 70.0, "the busier direction's latency");
        assert_eq!(m.write_latency_us.map(|l| l.p99), Some(400.0));
        assert!((cpu - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_report_without_io_is_an_error() {
        let job: Value =
            serde_json::from_str(r#"{"read": {"total_ios": 0}, "write": {"total_ios": 0}}"#).expect("JSON");
        assert!(parse_job(&job).is_err());
    }
}
