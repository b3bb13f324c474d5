//! `keel-perf idle`: the CPU an idle `keel serve` uses.
//!
//! Starts the real `keel serve` binary on a scratch data directory with each
//! idle policy asked for, waits for its ready line and a settling period
//! (start-up work such as creating the volume is not idle time), then reads
//! the process's utime + stime from /proc/<pid>/stat before and after the
//! measured interval. The result is CPU time over wall time, in percent of one
//! core. When `redis-server` is installed, an idle Redis (no persistence) is
//! measured the same way in the same run, as the peer.
//!
//! Each run is a fresh process; the report gives the median and the spread.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    /// The keel binary (default: `keel` next to this program, i.e. the same target directory).
    #[arg(long, value_name = "PATH")]
    pub keel: Option<PathBuf>,
    /// Idle policies to measure, in order.
    #[arg(long, value_name = "POLICY", value_delimiter = ',', default_value = "adaptive,poll")]
    pub policies: Vec<String>,
    /// Measured interval per run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub duration_secs: u64,
    /// Wait after the ready line before measuring, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    pub settle_secs: u64,
    /// Runs per policy (fresh process each).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Scratch directory for the data file (default: a new directory under the system temp dir, removed at the end).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Extra arguments for `keel serve`, e.g. --serve-arg=--backend --serve-arg=memory.
    #[arg(long = "serve-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
    /// Skip the idle redis-server peer.
    #[arg(long)]
    pub no_peer: bool,
}

/// How long a process may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const RUNS_MAX: usize = 100;

pub fn main(args: &IdleArgs) -> Result<(), String> {
    if args.runs == 0 || args.runs > RUNS_MAX || args.duration_secs == 0 {
        return Err(format!("--runs must be 1..={RUNS_MAX} and --duration-secs at least 1"));
    }
    let keel = match &args.keel {
        Some(path) => path.clone(),
        None => sibling_binary("keel")?,
    };
    let (data_dir, remove_after) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (std::env::temp_dir().join(format!("keel-perf-idle-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let ticks_per_sec = clock_ticks_per_sec();
    println!(
        "idle CPU of `{} serve` over {} s per run, {} run(s) per policy (shared machine: {} cores, load average {})",
        keel.display(),
        args.duration_secs,
        args.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let rows = measure_all(args, &keel, &data_dir, ticks_per_sec);
    if remove_after {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let rows = rows?;
    print_report(&rows);
    Ok(())
}

/// Every policy, then the peer; each row is one process kind's samples.
fn measure_all(
    args: &IdleArgs,
    keel: &Path,
    data_dir: &Path,
    ticks_per_sec: f64,
) -> Result<Vec<(String, Vec<Sample>)>, String> {
    let mut rows = Vec::new();
    for policy in &args.policies {
        let mut samples = Vec::new();
        for _ in 0..args.runs {
            let mut command = Command::new(keel);
            command.args(["serve", "--idle", policy, "--data-dir"]).arg(data_dir);
            // A free port, so a Redis or another Keel on 6379 does not stop the run.
            command.arg("--kv-listen").arg(format!("127.0.0.1:{}", free_port()?)).args(&args.serve_args);
            command.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC");
            samples.push(measure(command, "Ready", args, ticks_per_sec)?);
        }
        rows.push((format!("keel serve, idle = {policy}"), samples));
    }
    if !args.no_peer {
        match which("redis-server") {
            Some(redis) => {
                let mut samples = Vec::new();
                for _ in 0..args.runs {
                    let mut command = Command::new(&redis);
                    // No TCP port, so nothing clashes with a Redis already running here.
                    command.args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"]);
                    command.arg(data_dir.join("redis-peer.sock"));
                    samples.push(measure(command, "ready to accept connections", args, ticks_per_sec)?);
                }
                rows.push(("redis-server (idle, no persistence; peer)".to_owned(), samples));
            }
            None => println!("(redis-server is not installed: no peer measured)"),
        }
    }
    Ok(rows)
}

/// One run: start, wait for a stdout line containing `ready_prefix` (any
/// line when empty), settle, measure, stop with SIGINT. Returns % of a core.
fn measure(mut command: Command, ready_prefix: &str, args: &IdleArgs, ticks_per_sec: f64) -> Result<Sample, String> {
    let log_path = std::env::temp_dir().join(format!("keel-perf-idle-{}.stderr", std::process::id()));
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut child =
        command.stdout(Stdio::piped()).stderr(log).spawn().map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let result =
        measure_child(&mut child, ready_prefix, args, ticks_per_sec).and_then(|cpu| stop(&mut child).map(|()| cpu));
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
        let _ = std::fs::remove_file(&log_path);
        return result.map_err(|e| format!("{e}\n{command:?} said:\n{}", tail.join("\n")));
    }
    let _ = std::fs::remove_file(&log_path);
    result
}

/// CPU used over one measured interval, in percent of one core.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// From utime + stime (10 ms ticks): the reported figure.
    cpu_pct: f64,
    /// From schedstat (nanoseconds): the same, finer.
    cpu_pct_fine: f64,
}

fn measure_child(child: &mut Child, ready_prefix: &str, args: &IdleArgs, ticks_per_sec: f64) -> Result<Sample, String> {
    wait_ready(child, ready_prefix)?;
    std::thread::sleep(Duration::from_secs(args.settle_secs));
    let pid = child.id();
    let (ticks_before, ns_before, started) = (cpu_ticks(pid)?, cpu_ns(pid)?, Instant::now());
    std::thread::sleep(Duration::from_secs(args.duration_secs));
    let (ticks_after, ns_after, wall_secs) = (cpu_ticks(pid)?, cpu_ns(pid)?, started.elapsed().as_secs_f64());
    let cpu_secs = (ticks_after - ticks_before) as f64 / ticks_per_sec;
    let cpu_secs_fine = ns_after.saturating_sub(ns_before) as f64 / 1e9;
    Ok(Sample { cpu_pct: 100.0 * cpu_secs / wall_secs, cpu_pct_fine: 100.0 * cpu_secs_fine / wall_secs })
}

/// CPU time on every thread of `pid` in nanoseconds, from the scheduler's
/// own accounting (/proc/<pid>/task/*/schedstat, first field): finer than
/// the 10 ms ticks of utime + stime, so near-zero figures are resolved.
fn cpu_ns(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/task");
    let mut total_ns = 0u64;
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else { continue };
        total_ns += text.split_whitespace().next().and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(total_ns)
}

fn wait_ready(child: &mut Child, ready_prefix: &str) -> Result<(), String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let prefix = ready_prefix.to_owned();
    let (tx, rx) = mpsc::channel();
    // Keeps draining stdout after the ready line so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut announced = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !announced && line.contains(&prefix) {
                announced = true;
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(READY_TIMEOUT).map_err(|_| format!("no ready line within {} s", READY_TIMEOUT.as_secs()))
}

/// SIGINT, then wait (SIGKILL after 60 s). A non-zero exit is an error: a
/// benchmark must not hide a broken shutdown.
fn stop(child: &mut Child) -> Result<(), String> {
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the process exited with {status} after SIGINT")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                return Err("the process did not stop within 60 s of SIGINT".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// utime + stime of process `pid`, all threads, in clock ticks
/// (fields 14 and 15 of /proc/<pid>/stat, counted after the command name,
/// which may itself contain spaces and parentheses).
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let after_name = stat.rfind(')').map(|i| &stat[i + 1..]).ok_or("malformed /proc/pid/stat")?;
    // after_name starts at field 3 (state); utime is field 14, stime 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).ok_or("malformed /proc/pid/stat");
    Ok(field(14)? + field(15)?)
}

/// USER_HZ, the unit of /proc's CPU times (100 on Linux unless told otherwise).
fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.parent().map(|dir| dir.join(name)).ok_or("no directory for the current executable")?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} not found: build it first (cargo build --release -p keel) or pass --keel", path.display()))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| Path::new(p).is_file())
}

/// Median, min and max of each row.
fn print_report(rows: &[(String, Vec<Sample>)]) {
    println!();
    println!("CPU in % of one core: utime+stime (schedstat, ns-precise, in brackets)");
    println!("{:<44} {:>16} {:>16} {:>16}   runs", "process", "median", "min", "max");
    for (name, samples) in rows {
        let coarse = sorted(samples.iter().map(|s| s.cpu_pct));
        let fine = sorted(samples.iter().map(|s| s.cpu_pct_fine));
        let cell = |a: f64, b: f64| format!("{a:.3} [{b:.3}]");
        let runs: Vec<String> = samples.iter().map(|s| format!("{:.3}", s.cpu_pct)).collect();
        println!(
            "{name:<44} {:>16} {:>16} {:>16}   {}",
            cell(median(&coarse), median(&fine)),
            cell(coarse[0], fine[0]),
            cell(coarse[coarse.len() - 1], fine[fine.len() - 1]),
            runs.join(" ")
        );
    }
    println!("load average at the end: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_reads_this_process() {
        let ticks = cpu_ticks(std::process::id()).unwrap();
        let busy_until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < busy_until {
            std::hint::black_box(0u64);
        }
        assert!(cpu_ticks(std::process::id()).unwrap() > ticks, "300 ms of spinning shows up in utime");
    }

    #[test]
    fn the_median_of_an_even_count_is_the_middle_mean() {
        assert_eq!(median(&[1.0, 2.0, 3.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
    }
}
