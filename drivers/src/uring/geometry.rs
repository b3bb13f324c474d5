//! What the backing file or block device looks like: logical block size,
//! capacity and whether completed writes may sit in a volatile cache.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::dma::PAGE_BYTES;
use crate::error::DeviceError;

/// The block size a regular file is addressed in when the file system asks
/// for nothing larger: the page size, so direct I/O never needs the file
/// system to zero or lock partial blocks.
pub const FILE_BLOCK_BYTES: u32 = 4096;

// `_IO(0x12, 104)` and `_IOR(0x12, 114, u64)` from <linux/fs.h>.
const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// The shape of the backing store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub block_size_bytes: u32,
    pub capacity_bytes: u64,
    pub volatile_write_cache: bool,
}

/// A block device: sizes from the kernel's ioctls, the write cache mode
/// from sysfs.
pub fn of_block_device(file: &File, path: &Path) -> Result<Geometry, DeviceError> {
    let fd = file.as_raw_fd();
    let mut block_size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one `int` through the pointer, which points to
    // a live local of that type.
    let rc = unsafe { libc::ioctl(fd, BLKSSZGET as _, &mut block_size as *mut libc::c_int) };
    if rc != 0 {
        return Err(invalid(path, format!("BLKSSZGET failed: {}", std::io::Error::last_os_error())));
    }
    let mut capacity_bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one `u64` through the pointer, which points
    // to a live local of that type.
    let rc = unsafe { libc::ioctl(fd, BLKGETSIZE64 as _, &mut capacity_bytes as *mut u64) };
    if rc != 0 {
        return Err(invalid(path, format!("BLKGETSIZE64 failed: {}", std::io::Error::last_os_error())));
    }
    let block_size_bytes = u32::try_from(block_size).unwrap_or(0);
    if !block_size_bytes.is_power_of_two() || block_size_bytes < 512 || block_size_bytes as usize > PAGE_BYTES {
        return Err(invalid(path, format!("unsupported logical block size {block_size} (expected 512..=4096)")));
    }
    let rdev = file.metadata().map_err(|source| DeviceError::Open { path: path.to_owned(), source })?.rdev();
    let volatile_write_cache = write_cache_of(rdev, path);
    Ok(Geometry { block_size_bytes, capacity_bytes, volatile_write_cache })
}

/// Reads `queue/write_cache` of the disk behind `rdev` ("write back" means a
/// volatile cache). A partition has no queue of its own; its disk's is one
/// level up. When sysfs cannot say, assume a volatile cache: that only costs
/// flushes, never data.
fn write_cache_of(rdev: u64, path: &Path) -> bool {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let base = format!("/sys/dev/block/{major}:{minor}");
    for candidate in [format!("{base}/queue/write_cache"), format!("{base}/../queue/write_cache")] {
        if let Ok(text) = std::fs::read_to_string(&candidate) {
            return match text.trim() {
                "write through" => false,
                "write back" => true,
                other => {
                    tracing::warn!(path = %path.display(), mode = other, "unknown write cache mode; assuming volatile");
                    true
                }
            };
        }
    }
    tracing::warn!(path = %path.display(), "cannot read the write cache mode from sysfs; assuming volatile");
    true
}

/// A regular file: its size is the capacity and the block is the page size.
/// statx's direct I/O alignment (Linux 6.1+), when known, is checked to fit
/// in a page. Writes sit in the page cache or the disk's cache until
/// fdatasync, so the cache is always reported volatile.
pub fn of_file(file: &File, path: &Path, direct: bool) -> Result<Geometry, DeviceError> {
    let meta = file.metadata().map_err(|source| DeviceError::Open { path: path.to_owned(), source })?;
    if direct {
        if let Some(align) = dio_alignment(file) {
            if align.mem_bytes as usize > PAGE_BYTES || align.offset_bytes as usize > PAGE_BYTES {
                return Err(invalid(
                    path,
                    format!(
                        "the file system needs direct I/O aligned to {} bytes in memory and {} on disk; Keel supports up to {PAGE_BYTES}",
                        align.mem_bytes, align.offset_bytes
                    ),
                ));
            }
        }
    }
    Ok(Geometry { block_size_bytes: FILE_BLOCK_BYTES, capacity_bytes: meta.len(), volatile_write_cache: true })
}

struct DioAlignment {
    mem_bytes: u32,
    offset_bytes: u32,
}

/// The direct I/O alignment statx reports (Linux 6.1+), if it does.
fn dio_alignment(file: &File) -> Option<DioAlignment> {
    // SAFETY: `statx` is plain data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a NUL-terminated empty string and AT_EMPTY_PATH makes
    // statx describe `fd` itself; `stx` is a live, writable statx buffer.
    let rc =
        unsafe { libc::statx(file.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_DIOALIGN, &mut stx) };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_offset_align == 0 {
        return None;
    }
    Some(DioAlignment { mem_bytes: stx.stx_dio_mem_align, offset_bytes: stx.stx_dio_offset_align })
}

fn invalid(path: &Path, reason: String) -> DeviceError {
    DeviceError::Invalid { path: path.to_owned(), reason }
}
