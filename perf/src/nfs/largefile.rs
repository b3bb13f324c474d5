//! DaisyNFS's largefile: write one file of N MiB in small writes, then make
//! it durable; MB/s (10^6 bytes per second) including the final COMMIT.

use std::collections::VecDeque;
use std::time::Instant;

use clap::Args;
use keel_nfs::fs::{SetAttrs, StableHow};

use super::{secs, NfsArgs, NfsPerfError};

#[derive(Debug, Args)]
pub struct LargefileArgs {
    /// File size in MiB.
    #[arg(long, default_value_t = 100)]
    pub size_mib: u64,
    /// Size of each WRITE in KiB.
    #[arg(long, default_value_t = 64)]
    pub write_kib: u64,
    /// WRITEs in flight at once.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
}

pub fn run(args: &NfsArgs, l: &LargefileArgs, run: usize) -> Result<f64, NfsPerfError> {
    let (mut client, root) = args.connect()?;
    let name = format!("largefile-{}-{run}", std::process::id());
    let (fh, _, _) = client.create(&root, name.as_bytes(), &SetAttrs::default(), None, false)?;
    let write_bytes = (l.write_kib << 10) as usize;
    let total_bytes = l.size_mib << 20;
    let block: Vec<u8> = (0..write_bytes).map(|i| (i % 251) as u8).collect();
    let start = Instant::now();
    let mut in_flight = VecDeque::with_capacity(l.window);
    let mut offset = 0u64;
    while offset < total_bytes || !in_flight.is_empty() {
        if offset < total_bytes && in_flight.len() < l.window.max(1) {
            let n = (total_bytes - offset).min(write_bytes as u64) as usize;
            in_flight.push_back(client.start_write(&fh, offset, &block[..n], StableHow::Unstable)?);
            offset += n as u64;
            continue;
        }
        if let Some(xid) = in_flight.pop_front() {
            client.finish_write(xid)?;
        }
    }
    client.commit(&fh)?;
    let elapsed = start.elapsed();
    client.remove(&root, name.as_bytes())?;
    Ok(total_bytes as f64 / 1e6 / secs(elapsed))
}
