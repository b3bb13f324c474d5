//! BAR0 of an NVMe controller: its registers, mapped from the VFIO device
//! and accessed with volatile 32-bit loads and stores.
//!
//! When the device goes away the mapping is replaced by anonymous memory
//! filled with all-ones ([`Bar::detach`]): a thread that still touches a
//! register then reads what a removed PCIe device answers (0xffff_ffff) and
//! its writes land nowhere, instead of faulting.

use std::sync::atomic::{fence, Ordering};

use super::error::NvmeError;

/// Register offsets (NVMe base specification, "Controller Registers").
pub mod reg {
    pub const CAP: usize = 0x00;
    pub const VS: usize = 0x08;
    pub const CC: usize = 0x14;
    pub const CSTS: usize = 0x1c;
    pub const AQA: usize = 0x24;
    pub const ASQ: usize = 0x28;
    pub const ACQ: usize = 0x30;
    pub const DOORBELL_BASE: usize = 0x1000;
}

/// CC fields.
pub mod cc {
    pub const EN: u32 = 1;
    /// I/O submission queue entry size 2^6 = 64 bytes.
    pub const IOSQES_64: u32 = 6 << 16;
    /// I/O completion queue entry size 2^4 = 16 bytes.
    pub const IOCQES_16: u32 = 4 << 20;
    pub const SHN_MASK: u32 = 3 << 14;
    pub const SHN_NORMAL: u32 = 1 << 14;
}

/// CSTS fields.
pub mod csts {
    pub const RDY: u32 = 1;
    pub const CFS: u32 = 1 << 1;
    pub const SHST_MASK: u32 = 3 << 2;
    pub const SHST_COMPLETE: u32 = 2 << 2;
    /// What a register reads once the device has left the bus.
    pub const GONE: u32 = u32::MAX;
}

/// The controller capabilities the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Largest queue the controller supports, in entries.
    pub queue_entries_max: u32,
    /// Doorbell stride in bytes.
    pub doorbell_stride_bytes: usize,
    /// Worst-case time to become ready or not ready, in milliseconds.
    pub ready_timeout_ms: u64,
    /// The NVM command set is supported.
    pub nvm_command_set: bool,
    /// Smallest and largest memory page size, in bytes.
    pub page_bytes_min: u64,
    pub page_bytes_max: u64,
}

impl Cap {
    pub fn decode(cap: u64) -> Cap {
        Cap {
            queue_entries_max: (cap & 0xffff) as u32 + 1,
            doorbell_stride_bytes: 4 << ((cap >> 32) & 0xf),
            // CAP.TO is in 500 ms units; 0 would mean "no wait", so give at least one unit.
            ready_timeout_ms: ((cap >> 24) & 0xff).max(1) * 500,
            nvm_command_set: (cap >> 37) & 1 == 1,
            page_bytes_min: 4096 << ((cap >> 48) & 0xf),
            page_bytes_max: 4096 << ((cap >> 52) & 0xf),
        }
    }

    /// Byte offset of the submission (`completion` false) or completion
    /// queue doorbell of queue `qid`.
    pub fn doorbell_offset(&self, qid: u16, completion: bool) -> usize {
        reg::DOORBELL_BASE + (2 * usize::from(qid) + usize::from(completion)) * self.doorbell_stride_bytes
    }
}

/// A mapped BAR0.
#[derive(Debug)]
pub struct Bar {
    base: *mut u8,
    len_bytes: usize,
}

// SAFETY: the mapping is device memory owned by this value; registers are
// accessed only with volatile loads and stores of whole 32-bit words, which
// the device serializes. Different threads write different doorbells.
unsafe impl Send for Bar {}
// SAFETY: as above: `&Bar` only allows volatile register access.
unsafe impl Sync for Bar {}

impl Bar {
    /// Maps `len_bytes` of the VFIO device file at `offset` (BAR0's region).
    pub fn map(device_fd: i32, offset: u64, len_bytes: usize, pci_address: &str) -> Result<Bar, NvmeError> {
        if len_bytes < reg::DOORBELL_BASE + 8 {
            return Err(NvmeError::Controller {
                pci_address: pci_address.to_owned(),
                reason: format!("BAR0 of {len_bytes} bytes is too small for an NVMe controller"),
            });
        }
        // SAFETY: a shared mapping of the device file at the region's offset;
        // the kernel checks the range, and the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                device_fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(NvmeError::Vfio {
                pci_address: pci_address.to_owned(),
                what: "mmap of BAR0",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Bar { base: ptr.cast(), len_bytes })
    }

    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    fn check(&self, offset: usize) {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.len_bytes, "register {offset:#x} outside BAR0");
    }

    pub fn read32(&self, offset: usize) -> u32 {
        self.check(offset);
        // SAFETY: `offset` is 4-aligned and inside the mapping (checked), which
        // lives as long as `self`.
        unsafe { self.base.add(offset).cast::<u32>().read_volatile() }
    }

    /// Writes a register. A full fence first, so that everything written to
    /// DMA memory before (queue entries, PRP lists) is visible to the device
    /// before the doorbell or control write that tells it to look.
    pub fn write32(&self, offset: usize, value: u32) {
        self.check(offset);
        fence(Ordering::SeqCst);
        // SAFETY: as in `read32`.
        unsafe { self.base.add(offset).cast::<u32>().write_volatile(value) }
    }

    /// 64-bit registers as two 32-bit halves, low first (allowed by the spec).
    pub fn read64(&self, offset: usize) -> u64 {
        u64::from(self.read32(offset)) | (u64::from(self.read32(offset + 4)) << 32)
    }

    pub fn write64(&self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }

    /// Replaces the device mapping with anonymous all-ones memory, so that the
    /// device file can be released while other threads may still touch
    /// registers. Idempotent.
    pub fn detach(&self) {
        // SAFETY: MAP_FIXED over our own mapping of exactly this range: the
        // address range stays valid for other threads (no window in which it
        // is unmapped), only its backing changes.
        let ptr = unsafe {
            libc::mmap(
                self.base.cast(),
                self.len_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            tracing::error!(error = %std::io::Error::last_os_error(), "cannot detach BAR0 mapping");
            return;
        }
        // SAFETY: the range is now private anonymous memory of `len_bytes`.
        unsafe { std::ptr::write_bytes(self.base, 0xff, self.len_bytes) };
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: `base`/`len_bytes` describe the mapping made in `map` (or
        // its anonymous replacement); nothing refers to it after `self`.
        unsafe { libc::munmap(self.base.cast(), self.len_bytes) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_decode_like_the_emulated_controller() {
        // QEMU's controller: MQES 2047, CQR, TO 15 (7.5 s), DSTRD 0, NVM set, MPSMAX 64 KiB.
        let cap = 0x0040_0020_0f01_07ffu64;
        let c = Cap::decode(cap);
        assert_eq!(c.queue_entries_max, 2048);
        assert_eq!(c.doorbell_stride_bytes, 4);
        assert_eq!(c.ready_timeout_ms, 7500);
        assert!(c.nvm_command_set);
        assert_eq!(c.page_bytes_min, 4096);
        assert_eq!(c.page_bytes_max, 64 * 1024);
        assert_eq!(c.doorbell_offset(0, false), 0x1000);
        assert_eq!(c.doorbell_offset(0, true), 0x1004);
        assert_eq!(c.doorbell_offset(3, true), 0x101c);
    }
}
