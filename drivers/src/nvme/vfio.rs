//! A thin, safe layer over VFIO's container, group and device file
//! descriptors (type1 IOMMU): what the NVMe driver needs and nothing more.
//!
//! A [`Vfio`] owns one container with one group attached and one device
//! opened from it. DMA mappings live in the container and disappear with it.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::NvmeError;
use super::pci;
use super::vfio_sys as sys;

/// A valid IOVA range of the container, inclusive of `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IovaRange {
    pub start: u64,
    pub end: u64,
}

/// An open VFIO device with its group and container.
#[derive(Debug)]
pub struct Vfio {
    pci_address: String,
    // Field order is drop order: the device before the group before the
    // container, as VFIO expects them released.
    device: std::fs::File,
    _group: OwnedFd,
    container: OwnedFd,
    config_offset: u64,
}

/// One mmap-able region of the device (a BAR).
#[derive(Debug, Clone, Copy)]
pub struct RegionInfo {
    pub size_bytes: u64,
    pub offset: u64,
    pub mmap: bool,
}

impl Vfio {
    /// Opens `pci_address` (e.g. "0000:00:04.0"), which must be bound to
    /// vfio-pci, in a fresh type1 container.
    pub fn open(pci_address: &str) -> Result<Self, NvmeError> {
        let driver = pci::driver(pci_address)?;
        if driver.as_deref() != Some("vfio-pci") {
            return Err(NvmeError::NotVfio {
                pci_address: pci_address.to_owned(),
                driver: driver.unwrap_or_else(|| "(none)".to_owned()),
            });
        }
        let group = pci::iommu_group(pci_address)?;
        let err = |what: &'static str| {
            let pci_address = pci_address.to_owned();
            move |source| NvmeError::Vfio { pci_address, what, source }
        };
        let container = open_rw(Path::new("/dev/vfio/vfio")).map_err(err("open /dev/vfio/vfio"))?;
        // SAFETY: VFIO_GET_API_VERSION takes no argument and only returns a value.
        let api = unsafe { libc::ioctl(container.as_raw_fd(), sys::VFIO_GET_API_VERSION as _) };
        if api != sys::VFIO_API_VERSION {
            return Err(err("VFIO_GET_API_VERSION")(std::io::Error::other(format!("API version {api}, expected 0"))));
        }
        let iommu_type = pick_iommu_type(&container)
            .ok_or_else(|| NvmeError::NoType1Iommu { pci_address: pci_address.to_owned() })?;
        let group_path = format!("/dev/vfio/{group}");
        let group_fd = open_rw(Path::new(&group_path)).map_err(err("open the IOMMU group's /dev/vfio node"))?;
        let mut status = sys::GroupStatus { argsz: size_of_u32::<sys::GroupStatus>(), flags: 0 };
        // SAFETY: the argument points to a live, correctly sized vfio_group_status.
        ioctl_ptr(&group_fd, sys::VFIO_GROUP_GET_STATUS, &mut status).map_err(err("VFIO_GROUP_GET_STATUS"))?;
        if status.flags & sys::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(NvmeError::GroupNotViable { pci_address: pci_address.to_owned(), group });
        }
        let mut container_fd: i32 = container.as_raw_fd();
        ioctl_ptr(&group_fd, sys::VFIO_GROUP_SET_CONTAINER, &mut container_fd)
            .map_err(err("VFIO_GROUP_SET_CONTAINER"))?;
        // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value.
        let rc = unsafe { libc::ioctl(container.as_raw_fd(), sys::VFIO_SET_IOMMU as _, iommu_type) };
        if rc < 0 {
            return Err(err("VFIO_SET_IOMMU")(std::io::Error::last_os_error()));
        }
        let name =
            CString::new(pci_address).map_err(|_| err("device name")(std::io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: the argument is a NUL-terminated string that outlives the call.
        let fd = unsafe { libc::ioctl(group_fd.as_raw_fd(), sys::VFIO_GROUP_GET_DEVICE_FD as _, name.as_ptr()) };
        if fd < 0 {
            return Err(err("VFIO_GROUP_GET_DEVICE_FD")(std::io::Error::last_os_error()));
        }
        // SAFETY: the ioctl returned a new file descriptor that nothing else owns.
        let device = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut vfio =
            Vfio { pci_address: pci_address.to_owned(), device, _group: group_fd, container, config_offset: 0 };
        vfio.check_pci_device()?;
        vfio.config_offset = vfio.region_info(sys::VFIO_PCI_CONFIG_REGION_INDEX)?.offset;
        Ok(vfio)
    }

    pub fn pci_address(&self) -> &str {
        &self.pci_address
    }

    fn error(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> NvmeError + '_ {
        move |source| NvmeError::Vfio { pci_address: self.pci_address.clone(), what, source }
    }

    fn check_pci_device(&self) -> Result<(), NvmeError> {
        let mut info = sys::DeviceInfo { argsz: size_of_u32::<sys::DeviceInfo>(), ..Default::default() };
        ioctl_ptr(&self.device, sys::VFIO_DEVICE_GET_INFO, &mut info).map_err(self.error("VFIO_DEVICE_GET_INFO"))?;
        if info.flags & sys::VFIO_DEVICE_FLAGS_PCI == 0 || info.num_regions <= sys::VFIO_PCI_CONFIG_REGION_INDEX {
            return Err(NvmeError::Controller {
                pci_address: self.pci_address.clone(),
                reason: "VFIO does not present it as a PCI device".into(),
            });
        }
        Ok(())
    }

    pub fn region_info(&self, index: u32) -> Result<RegionInfo, NvmeError> {
        let mut info = sys::RegionInfo { argsz: size_of_u32::<sys::RegionInfo>(), index, ..Default::default() };
        ioctl_ptr(&self.device, sys::VFIO_DEVICE_GET_REGION_INFO, &mut info)
            .map_err(self.error("VFIO_DEVICE_GET_REGION_INFO"))?;
        Ok(RegionInfo {
            size_bytes: info.size,
            offset: info.offset,
            mmap: info.flags & sys::VFIO_REGION_INFO_FLAG_MMAP != 0,
        })
    }

    /// The device file, for mapping a region.
    pub fn device_fd(&self) -> RawFd {
        self.device.as_raw_fd()
    }

    pub fn config_read_u16(&self, offset: u64) -> Result<u16, NvmeError> {
        let mut bytes = [0u8; 2];
        self.device.read_exact_at(&mut bytes, self.config_offset + offset).map_err(self.error("PCI config read"))?;
        Ok(u16::from_le_bytes(bytes))
    }

    pub fn config_write_u16(&self, offset: u64, value: u16) -> Result<(), NvmeError> {
        self.device
            .write_all_at(&value.to_le_bytes(), self.config_offset + offset)
            .map_err(self.error("PCI config write"))
    }

    /// How many interrupts of kind `index` (MSI-X, request...) the device has.
    pub fn irq_count(&self, index: u32) -> Result<u32, NvmeError> {
        let mut info = sys::IrqInfo { argsz: size_of_u32::<sys::IrqInfo>(), index, ..Default::default() };
        ioctl_ptr(&self.device, sys::VFIO_DEVICE_GET_IRQ_INFO, &mut info)
            .map_err(self.error("VFIO_DEVICE_GET_IRQ_INFO"))?;
        Ok(info.count)
    }

    /// Routes interrupts `index`/`start..start+fds.len()` to the eventfds.
    pub fn set_irq_eventfds(&self, index: u32, start: u32, fds: &[RawFd]) -> Result<(), NvmeError> {
        let head_bytes = std::mem::size_of::<sys::IrqSetHead>();
        let total = head_bytes + 4 * fds.len();
        let head = sys::IrqSetHead {
            argsz: total as u32,
            flags: sys::VFIO_IRQ_SET_DATA_EVENTFD | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start,
            count: fds.len() as u32,
        };
        // Build the variable-length argument in a u32 buffer (4-byte aligned,
        // as the structure requires).
        let mut words = vec![0u32; total.div_ceil(4)];
        let head_words = [head.argsz, head.flags, head.index, head.start, head.count];
        words[..5].copy_from_slice(&head_words);
        for (i, fd) in fds.iter().enumerate() {
            words[5 + i] = *fd as u32;
        }
        // SAFETY: `words` holds a complete vfio_irq_set of `argsz` bytes and
        // outlives the call; the kernel only reads it.
        let rc = unsafe { libc::ioctl(self.device.as_raw_fd(), sys::VFIO_DEVICE_SET_IRQS as _, words.as_ptr()) };
        if rc < 0 {
            return Err(self.error("VFIO_DEVICE_SET_IRQS")(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Turns every interrupt of kind `index` off.
    pub fn disable_irqs(&self, index: u32) {
        let head = sys::IrqSetHead {
            argsz: size_of_u32::<sys::IrqSetHead>(),
            flags: sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start: 0,
            count: 0,
        };
        // SAFETY: a complete vfio_irq_set without data, alive during the call.
        let rc = unsafe { libc::ioctl(self.device.as_raw_fd(), sys::VFIO_DEVICE_SET_IRQS as _, &head) };
        if rc < 0 {
            tracing::debug!(pci = %self.pci_address, index, error = %std::io::Error::last_os_error(), "disabling interrupts failed");
        }
    }

    /// The IOVA ranges the container accepts (empty when the kernel does not
    /// say: then any address the IOMMU takes is assumed to work).
    pub fn iova_ranges(&self) -> Vec<IovaRange> {
        match self.query_iova_ranges() {
            Ok(ranges) => ranges,
            Err(e) => {
                tracing::debug!(pci = %self.pci_address, error = %e, "VFIO_IOMMU_GET_INFO gave no IOVA ranges");
                Vec::new()
            }
        }
    }

    fn query_iova_ranges(&self) -> std::io::Result<Vec<IovaRange>> {
        let mut head = sys::IommuType1Info { argsz: size_of_u32::<sys::IommuType1Info>(), ..Default::default() };
        ioctl_ptr(&self.container, sys::VFIO_IOMMU_GET_INFO, &mut head)?;
        let needed = head.argsz as usize;
        if head.flags & sys::VFIO_IOMMU_INFO_CAPS == 0 || needed <= std::mem::size_of::<sys::IommuType1Info>() {
            return Ok(Vec::new());
        }
        // A u64 buffer keeps every field of the capability chain aligned.
        let limit_bytes = 64 * 1024;
        if needed > limit_bytes {
            return Err(std::io::Error::other(format!("IOMMU info of {needed} bytes")));
        }
        let mut words = vec![0u64; needed.div_ceil(8)];
        words[0] = u64::from(needed as u32);
        // SAFETY: `words` is `needed` bytes long, aligned, and starts with argsz.
        let rc = unsafe { libc::ioctl(self.container.as_raw_fd(), sys::VFIO_IOMMU_GET_INFO as _, words.as_mut_ptr()) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        Ok(parse_iova_ranges(&bytes[..needed]))
    }

    /// Maps `size_bytes` at `vaddr` for device reads and writes at `iova`.
    pub fn map_dma(&self, vaddr: usize, iova: u64, size_bytes: usize) -> Result<(), NvmeError> {
        let mut map = sys::DmaMap {
            argsz: size_of_u32::<sys::DmaMap>(),
            flags: sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: vaddr as u64,
            iova,
            size: size_bytes as u64,
        };
        ioctl_ptr(&self.container, sys::VFIO_IOMMU_MAP_DMA, &mut map).map_err(|source| NvmeError::DmaMap {
            pci_address: self.pci_address.clone(),
            size_bytes,
            source,
        })
    }

    pub fn unmap_dma(&self, iova: u64, size_bytes: usize) {
        let mut unmap =
            sys::DmaUnmap { argsz: size_of_u32::<sys::DmaUnmap>(), flags: 0, iova, size: size_bytes as u64 };
        if let Err(e) = ioctl_ptr(&self.container, sys::VFIO_IOMMU_UNMAP_DMA, &mut unmap) {
            tracing::debug!(pci = %self.pci_address, error = %e, "VFIO_IOMMU_UNMAP_DMA failed");
        }
    }
}

/// Parses the capability chain of a `vfio_iommu_type1_info` for the IOVA
/// range capability. Bounds are checked: this is kernel data, but a wrong
/// offset must not become an out-of-bounds read.
pub fn parse_iova_ranges(info: &[u8]) -> Vec<IovaRange> {
    let u32_at = |off: usize| info.get(off..off + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])));
    let u64_at = |off: usize| info.get(off..off + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let mut ranges = Vec::new();
    let mut offset = u32_at(16).unwrap_or(0) as usize;
    let mut hops = 0;
    while offset != 0 && hops < 16 {
        hops += 1;
        let Some(header) = u32_at(offset) else { break };
        let id = (header & 0xffff) as u16;
        let next = u32_at(offset + 4).unwrap_or(0) as usize;
        if id == sys::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            let count = u32_at(offset + 8).unwrap_or(0) as usize;
            for i in 0..count.min(64) {
                let at = offset + 16 + 16 * i;
                match (u64_at(at), u64_at(at + 8)) {
                    (Some(start), Some(end)) if start <= end => ranges.push(IovaRange { start, end }),
                    _ => break,
                }
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    ranges
}

fn pick_iommu_type(container: &OwnedFd) -> Option<u64> {
    [sys::VFIO_TYPE1V2_IOMMU, sys::VFIO_TYPE1_IOMMU].into_iter().find(|&t| {
        // SAFETY: VFIO_CHECK_EXTENSION takes the extension number by value.
        unsafe { libc::ioctl(container.as_raw_fd(), sys::VFIO_CHECK_EXTENSION as _, t) > 0 }
    })
}

fn open_rw(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(OwnedFd::from(OpenOptions::new().read(true).write(true).open(path)?))
}

fn size_of_u32<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

/// An ioctl whose argument is a pointer to `T`.
fn ioctl_ptr<T>(fd: &impl AsRawFd, request: u64, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: `arg` is a live, exclusive reference to a `repr(C)` value of
    // the type `request` expects (each caller pairs them); the kernel reads
    // and writes within its size.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as *mut T) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iova_range_capability_is_parsed_and_bounded() {
        let mut info = vec![0u8; 24 + 16 + 32];
        let len = info.len() as u32;
        info[0..4].copy_from_slice(&len.to_le_bytes());
        info[16..20].copy_from_slice(&24u32.to_le_bytes());
        info[24..26].copy_from_slice(&1u16.to_le_bytes());
        info[32..36].copy_from_slice(&2u32.to_le_bytes());
        info[40..48].copy_from_slice(&0u64.to_le_bytes());
        info[48..56].copy_from_slice(&0xfedf_ffffu64.to_le_bytes());
        info[56..64].copy_from_slice(&0xfef0_0000u64.to_le_bytes());
        info[64..72].copy_from_slice(&0x7f_ffff_ffffu64.to_le_bytes());
        let ranges = parse_iova_ranges(&info);
        assert_eq!(
            ranges,
            vec![IovaRange { start: 0, end: 0xfedf_ffff }, IovaRange { start: 0xfef0_0000, end: 0x7f_ffff_ffff }]
        );
        // A count that runs past the buffer stops at the buffer's end.
        info[32..36].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(parse_iova_ranges(&info).len(), 2);
        // A chain that loops stops.
        info[28..32].copy_from_slice(&24u32.to_le_bytes());
        assert_eq!(parse_iova_ranges(&info).len(), 2);
    }
}
