//! The files the journal and its fio peer write: laid out the same way, once,
//! before anything is measured.

use std::io::Write as _;
use std::path::Path;

/// Writes the whole file once and syncs it. A file that was only allocated
/// (fallocate, which fio does for a write-only job on a file it creates) has
/// unwritten extents, and on ext4 the first write to each block then converts
/// the extent: a metadata change that every `fdatasync` or `O_DSYNC` write
/// must commit to the file system's own journal. Neither the journal nor its
/// peer is charged with that.
pub fn prewrite(path: &Path, size_bytes: u64) -> Result<(), String> {
    let mut file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..size_bytes.div_ceil(chunk.len() as u64) {
        file.write_all(&chunk).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    file.sync_all().map_err(|e| format!("{}: {e}", path.display()))
}
