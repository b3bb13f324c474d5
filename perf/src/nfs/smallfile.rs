//! DaisyNFS's smallfile: create, write 100 bytes, fsync (COMMIT), close,
//! unlink, in a loop, per client, each client in its own directory.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Args;
use keel_nfs::fs::{SetAttrs, StableHow};

use super::{secs, NfsArgs, NfsPerfError};

#[derive(Debug, Args)]
pub struct SmallfileArgs {
    /// Concurrent clients (threads, each with its own connection).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

const PAYLOAD: [u8; 100] = [b'k'; 100];

/// One run: files per second over all clients.
pub fn run(args: &NfsArgs, s: &SmallfileArgs, run: usize) -> Result<f64, NfsPerfError> {
    let barrier = Arc::new(Barrier::new(s.clients));
    let duration = Duration::from_secs(s.duration);
    let threads: Vec<_> = (0..s.clients)
        .map(|c| {
            let (mut client, root) = args.connect()?;
            let barrier = Arc::clone(&barrier);
            Ok(std::thread::spawn(move || -> Result<(u64, Duration), NfsPerfError> {
                let dir_name = format!("smallfile-{}-{run}-{c}", std::process::id());
                let (dir, _, _) = client.mkdir(&root, dir_name.as_bytes(), &SetAttrs::default())?;
                barrier.wait();
                let start = Instant::now();
                let mut files = 0u64;
                while start.elapsed() < duration {
                    let name = format!("f{files}");
                    let (fh, _, _) = client.create(&dir, name.as_bytes(), &SetAttrs::default(), None, false)?;
                    client.write(&fh, 0, &PAYLOAD, StableHow::Unstable)?;
                    client.commit(&fh)?;
                    client.remove(&dir, name.as_bytes())?;
                    files += 1;
                }
                let elapsed = start.elapsed();
                client.rmdir(&root, dir_name.as_bytes())?;
                Ok((files, elapsed))
            }))
        })
        .collect::<Result<_, NfsPerfError>>()?;
    let mut rate = 0.0;
    for t in threads {
        let (files, elapsed) = t.join().map_err(|_| NfsPerfError::Panicked)??;
        rate += files as f64 / secs(elapsed);
    }
    Ok(rate)
}
