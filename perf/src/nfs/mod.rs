//! `keel-perf nfs`: NFSv3 loads from userspace against any server (Keel,
//! nfs-ganesha, knfsd), with DaisyNFS's two benchmarks:
//!
//! - `smallfile`: each client, in its own directory, repeatedly creates a
//!   file, writes 100 bytes, makes them durable (COMMIT, what fsync sends),
//!   and removes the file; files per second over all clients;
//! - `largefile`: one client writes a file of `--size-mib` MiB in
//!   `--write-kib` KiB UNSTABLE writes, `--window` of them in flight (as a
//!   kernel client pipelines), then COMMITs; MB/s including the COMMIT.
//!
//! Each client is a thread with its own TCP connection (the client in
//! `keel_nfs::client`). Ports are given explicitly, so no portmapper is
//! needed. `--repeat N` runs N times and reports the median, min and max.

mod largefile;
mod smallfile;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Args, Subcommand};
use keel_nfs::client::{Auth, ClientError, Nfs3Client};

/// `keel-perf nfs`.
#[derive(Debug, Args)]
pub struct NfsArgs {
    #[command(subcommand)]
    pub load: Load,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1", global = true)]
    pub server: IpAddr,
    #[arg(long, default_value_t = 2049, global = true)]
    pub nfs_port: u16,
    #[arg(long, default_value_t = 20048, global = true)]
    pub mount_port: u16,
    /// The export to mount.
    #[arg(long, default_value = "/export", global = true)]
    pub export: String,
    /// AUTH_SYS uid and gid of the clients.
    #[arg(long, default_value_t = 0, global = true)]
    pub uid: u32,
    #[arg(long, default_value_t = 0, global = true)]
    pub gid: u32,
    /// Runs; the summary gives median, min and max.
    #[arg(long, default_value_t = 1, global = true)]
    pub repeat: usize,
}

#[derive(Debug, Subcommand)]
pub enum Load {
    /// Create, write 100 bytes, commit, remove: files per second.
    Smallfile(smallfile::SmallfileArgs),
    /// One large file in small unstable writes, then COMMIT: MB/s.
    Largefile(largefile::LargefileArgs),
}

#[derive(Debug, thiserror::Error)]
pub enum NfsPerfError {
    #[error("NFS: {0}")]
    Client(#[from] ClientError),
    #[error("a client thread panicked")]
    Panicked,
}

impl NfsArgs {
    fn nfs_addr(&self) -> SocketAddr {
        SocketAddr::new(self.server, self.nfs_port)
    }

    fn auth(&self) -> Auth {
        Auth::Sys { uid: self.uid, gid: self.gid, gids: Vec::new() }
    }

    /// A connected client and the export's root handle.
    fn connect(&self) -> Result<(Nfs3Client, Vec<u8>), ClientError> {
        let root = Nfs3Client::mount(SocketAddr::new(self.server, self.mount_port), self.auth(), &self.export)?;
        Ok((Nfs3Client::connect(self.nfs_addr(), self.auth())?, root))
    }
}

pub fn main(args: &NfsArgs) -> Result<(), NfsPerfError> {
    let mut figures = Vec::with_capacity(args.repeat);
    for run in 0..args.repeat.max(1) {
        let (figure, unit) = match &args.load {
            Load::Smallfile(s) => (smallfile::run(args, s, run)?, "files/s"),
            Load::Largefile(l) => (largefile::run(args, l, run)?, "MB/s"),
        };
        println!("run {}: {figure:.1} {unit}", run + 1);
        figures.push(figure);
    }
    figures.sort_by(f64::total_cmp);
    let median = figures[figures.len() / 2];
    let unit = if matches!(args.load, Load::Smallfile(_)) { "files/s" } else { "MB/s" };
    println!(
        "summary: median {median:.1} {unit}, min {:.1}, max {:.1}, runs {}",
        figures[0],
        figures[figures.len() - 1],
        figures.len()
    );
    Ok(())
}

/// Seconds as a float, for rates.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}
