//! The `keel` command.
#![forbid(unsafe_code)]

mod setup;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keel: a userspace storage appliance.
#[derive(Debug, Parser)]
#[command(name = "keel", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prepare this machine for the nvme backend: hugepages, vfio-pci, IOMMU groups, memlock.
    Setup(setup::SetupArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup(args) => setup::main(&args),
    }
}
