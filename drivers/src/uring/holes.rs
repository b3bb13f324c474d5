//! Finding where a data file has never been written, so a benchmark can fill
//! it before reading: on ext4 and xfs, reads of holes and of fallocated but
//! unwritten extents return zeros without touching the disk.

use std::fs::File;
use std::os::fd::AsRawFd;

/// The offset of the first byte of `file` that is a hole or an unwritten
/// extent (as SEEK_HOLE reports it), or `None` when every byte holds data.
pub fn first_unwritten_offset(file: &File) -> std::io::Result<Option<u64>> {
    let size_bytes = file.metadata()?.len();
    if size_bytes == 0 {
        return Ok(None);
    }
    // SAFETY: lseek on a descriptor we borrow; no memory is passed. It moves
    // the file offset, which nothing here uses (all I/O is positional).
    let hole = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
    if hole < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let hole = hole as u64;
    Ok((hole < size_bytes).then_some(hole))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test's unwrap is its assertion
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    #[test]
    fn a_sparse_file_has_a_hole_and_a_written_one_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let file =
            File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("f")).unwrap();
        file.set_len(1 << 20).unwrap();
        assert_eq!(first_unwritten_offset(&file).unwrap(), Some(0));
        file.write_all_at(&vec![1u8; 1 << 20], 0).unwrap();
        assert_eq!(first_unwritten_offset(&file).unwrap(), None);
    }
}
