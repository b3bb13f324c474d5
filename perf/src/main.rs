//! keel-perf: Keel's benchmarks. `main` only parses the command line and
//! dispatches; each benchmark lives in its own module.
//!
//! - `device`: raw device I/O through Keel's reactors, like spdk_nvme_perf,
//!   with fio run on the same file in the same invocation as the peer.
//! - `journal`: durable commits per second and large-record bandwidth of the
//!   journal, against fio's fdatasync rate and sequential write bandwidth.
//! - `idle`: the CPU an idle `keel serve` uses, per idle policy, with an idle
//!   redis-server as the peer.
//! - `ycsb`: YCSB's core workloads A-F against the engine in process or any
//!   Redis-protocol server (Keel, redis-server).
//! - `nfs`: DaisyNFS's smallfile and largefile against any NFSv3 server.
//! - `tree`: the engine's Bε-tree on an io_uring file against RocksDB's
//!   db_bench (random inserts, point reads, write amplification).
#![forbid(unsafe_code)]

mod device;
mod idle;
mod journal;
mod nfs;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_perf::{tree, ycsb};

/// Keel's benchmarks. Every figure is reported next to a peer measured in the
/// same run.
#[derive(Debug, Parser)]
#[command(name = "keel-perf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Block I/O through Keel's reactors and device backends, against fio.
    Device(device::DeviceArgs),
    /// Journal: durable commits/s and large-record bandwidth, as ratios to fio.
    Journal(journal::JournalArgs),
    /// CPU used by an idle `keel serve`, per idle policy, against an idle redis-server.
    Idle(idle::IdleArgs),
    /// YCSB core workloads (A-F) against the engine or a Redis-protocol server.
    Ycsb(ycsb::YcsbArgs),
    /// NFSv3 loads (DaisyNFS's smallfile and largefile) against any server.
    Nfs(nfs::NfsArgs),
    /// The Bε-tree engine on an io_uring file against RocksDB's db_bench:
    /// random inserts, random point reads, write amplification.
    Tree(tree::TreeArgs),
}

/// The `keel` binary's allocator (see `src/main.rs`), so that the engine
/// measured in process here allocates as it does in `keel serve`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Device(args) => device::main(&args).map_err(|e| e.to_string()),
        Command::Journal(args) => journal::run(&args),
        Command::Idle(args) => idle::main(&args),
        Command::Ycsb(args) => ycsb::main(&args),
        Command::Nfs(args) => nfs::main(&args).map_err(|e| e.to_string()),
        Command::Tree(args) => tree::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-perf: {e}");
            ExitCode::FAILURE
        }
    }
}
