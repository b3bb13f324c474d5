//! Opening the backing store: a block device or a regular file, with O_DIRECT
//! (or, when configured, a logged buffered fallback), created and sized when
//! asked.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::config::UringConfig;
use super::geometry::{self, Geometry};
use crate::error::DeviceError;

/// The opened backing store.
#[derive(Debug)]
pub struct Backing {
    pub file: File,
    pub geometry: Geometry,
    pub is_block_device: bool,
    /// False only after a buffered fallback.
    pub direct: bool,
}

/// Opens (and, for a file, creates or grows) the store `config` names.
pub fn open_backing(config: &UringConfig) -> Result<Backing, DeviceError> {
    let path = config.path.as_path();
    let is_block_device = match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_block_device() => true,
        Ok(meta) if meta.file_type().is_file() => false,
        Ok(_) => return Err(invalid(path, "not a regular file or a block device".into())),
        Err(e) if e.kind() == ErrorKind::NotFound && config.create_size_bytes.is_some() => false,
        Err(source) => return Err(DeviceError::Open { path: path.to_owned(), source }),
    };
    let (mut file, mut direct) = open_direct_or_fallback(config, is_block_device)?;
    if !is_block_device {
        if let Some(size_bytes) = config.create_size_bytes {
            reserve(&file, path, size_bytes)?;
        }
    }
    if direct {
        if let Err(source) = probe_direct_read(&file) {
            // Closed first: a block device is opened exclusively.
            drop(file);
            file = fall_back_or_fail(config, is_block_device, source)?;
            direct = false;
        }
    }
    let geometry =
        if is_block_device { geometry::of_block_device(&file, path)? } else { geometry::of_file(&file, path, direct)? };
    if geometry.capacity_bytes < u64::from(geometry.block_size_bytes) {
        return Err(invalid(
            path,
            format!(
                "holds {} bytes, less than one {}-byte block; give a size to create it",
                geometry.capacity_bytes, geometry.block_size_bytes
            ),
        ));
    }
    Ok(Backing { file, geometry, is_block_device, direct })
}

fn open_direct_or_fallback(config: &UringConfig, is_block_device: bool) -> Result<(File, bool), DeviceError> {
    let path = config.path.as_path();
    match open_with(path, is_block_device, config.create_size_bytes.is_some(), libc::O_DIRECT) {
        Ok(file) => Ok((file, true)),
        Err(source) if source.raw_os_error() == Some(libc::EINVAL) => {
            Ok((fall_back_or_fail(config, is_block_device, source)?, false))
        }
        Err(source) => Err(DeviceError::Open { path: path.to_owned(), source }),
    }
}

/// O_DIRECT was refused (`source`): a typed error, or with
/// `buffered_fallback` one warning and a buffered open.
fn fall_back_or_fail(config: &UringConfig, is_block_device: bool, source: std::io::Error) -> Result<File, DeviceError> {
    let path = config.path.as_path();
    if !config.buffered_fallback {
        return Err(DeviceError::DirectIoRefused { path: path.to_owned(), source });
    }
    tracing::warn!(
        path = %path.display(),
        reason = %source,
        "the file system refuses O_DIRECT; buffered_fallback is set, so I/O goes through the page cache (flush is still fdatasync)"
    );
    open_with(path, is_block_device, false, 0).map_err(|source| DeviceError::Open { path: path.to_owned(), source })
}

fn open_with(path: &Path, is_block_device: bool, create: bool, flags: libc::c_int) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    // O_EXCL on a block device is an exclusive open: it fails while the
    // device is mounted or held by another exclusive opener.
    let exclusive = if is_block_device { libc::O_EXCL } else { 0 };
    if create && !is_block_device {
        options.create(true).mode(0o600);
    }
    options.custom_flags(flags | exclusive).open(path)
}

/// Grows a regular file to `size_bytes` with fallocate, so the space is
/// really reserved and a full file system is an error now, not a failed
/// write later. A file already as large is left alone.
fn reserve(file: &File, path: &Path, size_bytes: u64) -> Result<(), DeviceError> {
    let current = file.metadata().map_err(|source| DeviceError::Open { path: path.to_owned(), source })?.len();
    if current >= size_bytes {
        return Ok(());
    }
    let len = libc::off_t::try_from(size_bytes)
        .map_err(|_| invalid(path, format!("size {size_bytes} does not fit in off_t")))?;
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        tracing::info!(path = %path.display(), size_bytes, "reserved the data file's space");
        return Ok(());
    }
    let source = std::io::Error::last_os_error();
    match source.raw_os_error() {
        Some(libc::ENOSPC) => {
            Err(DeviceError::NoSpace { path: path.to_owned(), size_bytes, available_bytes: available_bytes(file) })
        }
        Some(libc::EOPNOTSUPP) => {
            tracing::warn!(
                path = %path.display(),
                size_bytes,
                "the file system cannot fallocate; the file is extended without reserving space, so a full file system will show as write errors"
            );
            file.set_len(size_bytes).map_err(|source| DeviceError::Resize { path: path.to_owned(), size_bytes, source })
        }
        _ => Err(DeviceError::Resize { path: path.to_owned(), size_bytes, source }),
    }
}

fn available_bytes(file: &File) -> u64 {
    // SAFETY: `statvfs` is plain data; all-zero is a valid value.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatvfs fills the live, writable struct for a descriptor we own.
    let rc = unsafe { libc::fstatvfs(file.as_raw_fd(), &mut stats) };
    if rc != 0 {
        return 0;
    }
    stats.f_bavail.saturating_mul(stats.f_frsize)
}

/// Some file systems accept an O_DIRECT open and refuse the I/O itself; one
/// page-aligned read of the first page finds out before any request does.
/// A page is a multiple of every supported block size, and a store shorter
/// than a page just reads short.
fn probe_direct_read(file: &File) -> Result<(), std::io::Error> {
    let page = crate::dma::PAGE_BYTES;
    let mut scratch = vec![0u8; 2 * page];
    let start = scratch.as_ptr().align_offset(page);
    match file.read_at(&mut scratch[start..start + page], 0) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(e),
        // Any other error is the device's, and the first request will report
        // it with its context.
        _ => Ok(()),
    }
}

fn invalid(path: &Path, reason: String) -> DeviceError {
    DeviceError::Invalid { path: path.to_owned(), reason }
}
