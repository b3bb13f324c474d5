//! The VFIO ioctl ABI (linux/vfio.h), written out by hand: only the requests
//! and structures the NVMe driver uses. Every structure is `repr(C)` with the
//! kernel's layout; the sizes are asserted below so a typo cannot go unseen.

/// `_IO(';', 100 + n)`: VFIO's requests carry no size in their number.
const fn vfio_io(n: u64) -> u64 {
    ((b';' as u64) << 8) | (100 + n)
}

pub const VFIO_API_VERSION: i32 = 0;
pub const VFIO_TYPE1_IOMMU: u64 = 1;
pub const VFIO_TYPE1V2_IOMMU: u64 = 3;

pub const VFIO_GET_API_VERSION: u64 = vfio_io(0);
pub const VFIO_CHECK_EXTENSION: u64 = vfio_io(1);
pub const VFIO_SET_IOMMU: u64 = vfio_io(2);
pub const VFIO_GROUP_GET_STATUS: u64 = vfio_io(3);
pub const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(4);
pub const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(6);
pub const VFIO_DEVICE_GET_INFO: u64 = vfio_io(7);
pub const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_io(8);
pub const VFIO_DEVICE_GET_IRQ_INFO: u64 = vfio_io(9);
pub const VFIO_DEVICE_SET_IRQS: u64 = vfio_io(10);
pub const VFIO_IOMMU_GET_INFO: u64 = vfio_io(12);
pub const VFIO_IOMMU_MAP_DMA: u64 = vfio_io(13);
pub const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_io(14);

pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1;
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1;
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
pub const VFIO_IOMMU_INFO_CAPS: u32 = 1 << 1;
pub const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = 1;

pub const VFIO_IRQ_SET_DATA_NONE: u32 = 1;
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
pub const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;

pub const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
pub const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
pub const VFIO_PCI_REQ_IRQ_INDEX: u32 = 4;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupStatus {
    pub argsz: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceInfo {
    pub argsz: u32,
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
    pub cap_offset: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RegionInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    pub offset: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IrqInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub count: u32,
}

/// The fixed head of `struct vfio_irq_set`; `count` 32-bit eventfds follow it.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IrqSetHead {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaMap {
    pub argsz: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub iova: u64,
    pub size: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaUnmap {
    pub argsz: u32,
    pub flags: u32,
    pub iova: u64,
    pub size: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuType1Info {
    pub argsz: u32,
    pub flags: u32,
    pub iova_pgsizes: u64,
    pub cap_offset: u32,
    pub pad: u32,
}

/// `struct vfio_info_cap_header`: capabilities chain inside an info buffer.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct InfoCapHeader {
    pub id: u16,
    pub version: u16,
    pub next: u32,
}

const _: () = {
    assert!(std::mem::size_of::<GroupStatus>() == 8);
    assert!(std::mem::size_of::<DeviceInfo>() == 24);
    assert!(std::mem::size_of::<RegionInfo>() == 32);
    assert!(std::mem::size_of::<IrqInfo>() == 16);
    assert!(std::mem::size_of::<IrqSetHead>() == 20);
    assert!(std::mem::size_of::<DmaMap>() == 32);
    assert!(std::mem::size_of::<DmaUnmap>() == 24);
    assert!(std::mem::size_of::<IommuType1Info>() == 24);
    assert!(std::mem::size_of::<InfoCapHeader>() == 8);
    assert!(VFIO_GET_API_VERSION == 0x3b64);
    assert!(VFIO_IOMMU_UNMAP_DMA == 0x3b72);
};
