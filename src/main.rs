//! The `keel` command: `serve`, `mkfs`, `inspect`, `fsck`, `config`, `setup`.
//!
//! `main` only parses the command line, runs the subcommand and turns an
//! error into a message and an exit status; the work is in the modules.
#![forbid(unsafe_code)]

mod banner;
mod check;
mod cli;
mod commands;
mod error;
mod format;
mod inspect;
mod kv_service;
mod logging;
mod nfs_service;
mod progress;
mod services;
mod setup;
mod signals;
mod storage;
mod systemd;
mod volume;
mod watchdog;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc instead of glibc's malloc: the request paths allocate many small
/// short-lived blocks (decoded arguments, keys, values, journal and tree
/// messages), and glibc's slow paths (`_int_malloc`, `malloc_consolidate`)
/// were about a fifth of a pipelined SET's CPU (BENCHMARKS.md, issue 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Mkfs(args) => commands::mkfs::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Fsck(args) => commands::fsck::run(args),
        Command::Config(args) => commands::config::run(args),
        Command::Setup(args) => return setup::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_configuration_and_the_format_agree_on_the_shard_limit() {
        assert_eq!(keel_config::engine::SHARDS_MAX as usize, keel_engine::superblock::SHARDS_MAX);
        let journal_min_bytes = keel_engine::layout::JOURNAL_PAGES_MIN * keel_engine::layout::PAGE_BYTES as u64;
        assert_eq!(keel_config::engine::JOURNAL_SIZE_MIN.bytes(), journal_min_bytes);
    }
}
