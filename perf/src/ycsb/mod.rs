//! `keel-perf ycsb`: YCSB's core workloads A-F, read from YCSB workload
//! property files, run in a load and a transaction phase against the engine
//! in process (`--target engine`, on memory or with `--device` on an
//! io_uring data file) or any Redis-protocol server (`--target
//! resp`: Keel or redis-server, through YCSB's redis binding's mapping),
//! reported as YCSB reports (overall runtime and throughput; per operation
//! count, average, min, max, p50, p95, p99 latency).

mod action;
pub mod generators;
pub mod measure;
pub mod properties;
pub mod resp_client;
pub mod target_engine;
pub mod target_resp;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;

use action::Action;
use measure::Recorder;
pub use target_engine::EngineDurability;
use target_resp::{RespTarget, ScanMode};
use workload::{Chooser, Shared, Workload};

/// Which system the workload runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    Engine,
    Resp,
}

/// Which phases to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Load,
    Run,
    Both,
}

/// Arguments of `keel-perf ycsb`.
#[derive(Debug, Clone, clap::Args)]
pub struct YcsbArgs {
    /// YCSB workload file (perf/workloads/workloada ... workloadf).
    #[arg(short = 'P', long)]
    pub workload: PathBuf,
    /// Override a property, like YCSB's -p (repeatable): -p recordcount=100000.
    #[arg(short = 'p', long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    #[arg(long, value_enum, default_value = "resp")]
    pub target: TargetKind,
    #[arg(long, value_enum, default_value = "both")]
    pub phase: Phase,
    /// Client threads (resp) or concurrent client tasks (engine).
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
    /// Connections per resp client thread, used in turn.
    #[arg(long, default_value_t = 1)]
    pub connections_per_thread: usize,
    /// Total operations per second to aim at (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub target_ops: u64,
    /// resp: the server's address.
    #[arg(long, default_value = "127.0.0.1:6379")]
    pub addr: String,
    /// resp: the password (AUTH).
    #[arg(long)]
    pub password: Option<String>,
    /// resp: how scans are sent.
    #[arg(long, value_enum, default_value = "binding")]
    pub scan: ScanMode,
    /// engine: reactors to run.
    #[arg(long, default_value_t = 2)]
    pub reactors: usize,
    /// engine: shards.
    #[arg(long, default_value_t = 8)]
    pub shards: u32,
    /// engine: whether writes wait for durability.
    #[arg(long, value_enum, default_value = "always")]
    pub durability: EngineDurability,
    /// engine: run on this data file through io_uring (O_DIRECT; created,
    /// and formatted afresh) instead of a memory device.
    #[arg(long, value_name = "PATH")]
    pub device: Option<PathBuf>,
    /// engine: size of the --device file in GiB.
    #[arg(long, default_value_t = 4)]
    pub device_gib: u64,
    /// engine: node cache of all shards together, in MiB (default: the
    /// tree's default per shard).
    #[arg(long)]
    pub cache_mib: Option<u64>,
    /// Seed of the random choices (each thread adds its index).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// One phase's results.
#[derive(Debug)]
pub struct PhaseResult {
    pub load: bool,
    pub elapsed: Duration,
    pub recorder: Recorder,
}

/// Runs the phases and prints each one's YCSB report.
pub fn main(args: &YcsbArgs) -> Result<(), String> {
    println!(
        "# keel-perf ycsb: workload {} target {:?} threads {}",
        args.workload.display(),
        args.target,
        args.threads
    );
    for mut phase in run(args)? {
        println!("# phase: {}", if phase.load { "load" } else { "run" });
        let ops = phase.recorder.operations();
        print!("{}", phase.recorder.report(phase.elapsed, ops));
        if phase.recorder.error_count() > 0 {
            eprintln!("keel-perf ycsb: {} operations failed", phase.recorder.error_count());
        }
    }
    Ok(())
}

/// Runs the phases `args` asks for and returns their measurements.
pub fn run(args: &YcsbArgs) -> Result<Vec<PhaseResult>, String> {
    let text = std::fs::read_to_string(&args.workload).map_err(|e| format!("{}: {e}", args.workload.display()))?;
    let mut props = properties::parse(&text);
    for kv in &args.properties {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("-p {kv}: expected key=value"))?;
        props.insert(k.trim().to_string(), v.trim().to_string());
    }
    let workload = Workload::from_properties(&props)?;
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let shared = Shared::new(workload);
    let phases: &[bool] = match args.phase {
        Phase::Load => &[true],
        Phase::Run => &[false],
        Phase::Both => &[true, false],
    };
    let engine_env = match args.target {
        TargetKind::Engine => Some(engine_env::start(args)?),
        TargetKind::Resp => None,
    };
    let mut results = Vec::new();
    for &load in phases {
        let started = Instant::now();
        let recorder = match &engine_env {
            Some(env) => env.run_phase(args, &shared, load),
            None => run_resp_phase(args, &shared, load),
        };
        let recorder = match recorder {
            Ok(r) => r,
            Err(e) => {
                if let Some(env) = engine_env {
                    env.stop();
                }
                return Err(e);
            }
        };
        results.push(PhaseResult { load, elapsed: started.elapsed(), recorder });
    }
    if let Some(env) = engine_env {
        env.stop();
    }
    Ok(results)
}

/// Operations each client runs in the transaction phase.
fn share(total: i64, clients: usize, index: usize) -> i64 {
    let clients = clients as i64;
    let index = index as i64;
    total / clients + i64::from(index < total % clients)
}

/// Paces a client at `ops_per_sec` (0: no pacing), as YCSB's target does:
/// operation i starts no earlier than i / rate.
#[derive(Debug)]
struct Pacer {
    started: Instant,
    interval: Option<Duration>,
    done: u32,
}

impl Pacer {
    fn new(total_ops_per_sec: u64, clients: usize) -> Pacer {
        let per_client = total_ops_per_sec as f64 / clients as f64;
        let interval = (per_client > 0.0).then(|| Duration::from_secs_f64(1.0 / per_client));
        Pacer { started: Instant::now(), interval, done: 0 }
    }

    fn delay(&mut self) -> Option<Duration> {
        let interval = self.interval?;
        let due = self.started + interval * self.done;
        self.done += 1;
        due.checked_duration_since(Instant::now())
    }
}

fn run_resp_phase(args: &YcsbArgs, shared: &Arc<Shared>, load: bool) -> Result<Recorder, String> {
    let mut handles = Vec::new();
    for t in 0..args.threads {
        let mut targets = Vec::new();
        for _ in 0..args.connections_per_thread.max(1) {
            targets.push(RespTarget::connect(&args.addr, args.password.as_deref(), args.scan)?);
        }
        let shared = Arc::clone(shared);
        let (seed, threads, target_ops) = (args.seed + t as u64, args.threads, args.target_ops);
        handles.push(std::thread::spawn(move || {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut chooser = Chooser::new(&shared);
            let mut recorder = Recorder::default();
            let mut pacer = Pacer::new(target_ops, threads);
            let mut remaining = share(shared.workload.operation_count, threads, t);
            let mut turn = 0usize;
            loop {
                let action = if load {
                    match Action::next_load(&shared, &mut rng) {
                        Some(a) => a,
                        None => break,
                    }
                } else {
                    if remaining == 0 {
                        break;
                    }
                    remaining -= 1;
                    Action::next_run(&shared, &mut chooser, &mut rng)
                };
                if let Some(d) = pacer.delay() {
                    std::thread::sleep(d);
                }
                let count = targets.len();
                let target = &mut targets[turn % count];
                turn += 1;
                let began = Instant::now();
                let result = target.run(&action);
                recorder.record(action.label(), began.elapsed(), result.is_ok());
                if let Err(e) = result {
                    tracing::debug!(error = %e, "operation failed");
                }
                action.finish(&shared);
            }
            recorder
        }));
    }
    let mut total = Recorder::default();
    for h in handles {
        total.merge(h.join().map_err(|_| "a client thread panicked".to_string())?);
    }
    Ok(total)
}

/// The in-process engine and its reactors.
mod engine_env {
    use super::*;
    use crate::device_engine::{self, DeviceEngineSpec};
    use keel_engine::testing::{memory_engine, TestEngineSpec};
    use keel_engine::Engine;
    use keel_reactor::Runtime;

    pub struct EngineEnv {
        runtime: Runtime,
        engine: Engine,
    }

    pub fn start(args: &YcsbArgs) -> Result<EngineEnv, String> {
        let device_spec = DeviceEngineSpec {
            path: args.device.clone().unwrap_or_default(),
            size_bytes: args.device_gib << 30,
            reactors: args.reactors.max(1),
            shards: args.shards.max(1),
            cache_bytes_total: args.cache_mib.map(|m| m << 20),
            leaf_bytes: None,
            internal_bytes: None,
            background_maintenance: true,
        };
        if args.device.is_some() {
            let (runtime, engine) = device_engine::start(&device_spec, true)?;
            return Ok(EngineEnv { runtime, engine });
        }
        let spec = TestEngineSpec {
            reactors: args.reactors.max(1),
            shards: args.shards.max(1),
            capacity_bytes: 8 << 30,
            config: device_spec.engine_config(),
            ..TestEngineSpec::default()
        };
        let (runtime, engine, _device) = memory_engine(&spec);
        Ok(EngineEnv { runtime, engine })
    }

    impl EngineEnv {
        pub fn run_phase(&self, args: &YcsbArgs, shared: &Arc<Shared>, load: bool) -> Result<Recorder, String> {
            let mut results = Vec::new();
            for t in 0..args.threads {
                let (tx, rx) = std::sync::mpsc::channel();
                let shared = Arc::clone(shared);
                let engine = self.engine.clone();
                let (seed, threads, target_ops, durability) =
                    (args.seed + t as u64, args.threads, args.target_ops, args.durability);
                self.runtime
                    .spawn_on(t % self.runtime.reactor_count(), move || async move {
                        let recorder =
                            client_task(engine, shared, load, t, threads, seed, target_ops, durability).await;
                        let _ = tx.send(recorder);
                    })
                    .map_err(|e| e.to_string())?;
                results.push(rx);
            }
            let mut total = Recorder::default();
            for rx in results {
                total.merge(rx.recv().map_err(|_| "an engine client task died".to_string())?);
            }
            Ok(total)
        }

        pub fn stop(self) {
            let _ = self.engine.close(&self.runtime);
            self.runtime.stop();
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn client_task(
        engine: Engine,
        shared: Arc<Shared>,
        load: bool,
        index: usize,
        threads: usize,
        seed: u64,
        target_ops: u64,
        durability: EngineDurability,
    ) -> Recorder {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut chooser = Chooser::new(&shared);
        let mut recorder = Recorder::default();
        let mut pacer = Pacer::new(target_ops, threads);
        let mut remaining = share(shared.workload.operation_count, threads, index);
        loop {
            let action = if load {
                match Action::next_load(&shared, &mut rng) {
                    Some(a) => a,
                    None => break,
                }
            } else {
                if remaining == 0 {
                    break;
                }
                remaining -= 1;
                Action::next_run(&shared, &mut chooser, &mut rng)
            };
            if let Some(d) = pacer.delay() {
                keel_reactor::time::sleep(d).await;
            }
            let began = Instant::now();
            let result = target_engine::run(&engine, durability, &action).await;
            recorder.record(action.label(), began.elapsed(), result.is_ok());
            action.finish(&shared);
        }
        recorder
    }
}
