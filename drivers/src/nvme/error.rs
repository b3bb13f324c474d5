//! Why an NVMe controller could not be opened or configured.

use std::path::PathBuf;

/// A failure while opening, configuring or closing an NVMe controller. Each
/// message names the controller and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum NvmeError {
    #[error("{pci_address}: cannot read {path}: {source}; is it a PCI address of this machine (see `lspci -D`)?")]
    Sysfs { pci_address: String, path: PathBuf, source: std::io::Error },
    #[error("{pci_address} is bound to driver '{driver}', not vfio-pci; run `keel setup` to hand it to vfio-pci")]
    NotVfio { pci_address: String, driver: String },
    #[error("{pci_address}: {what} failed: {source}")]
    Vfio { pci_address: String, what: &'static str, source: std::io::Error },
    #[error("{pci_address}: IOMMU group {group} is not viable: every device in the group must be bound to vfio-pci (or to no driver); `keel setup` lists them")]
    GroupNotViable { pci_address: String, group: u32 },
    #[error("{pci_address}: the kernel's VFIO offers no type1 IOMMU (no IOMMU enabled? boot with intel_iommu=on or amd_iommu=on)")]
    NoType1Iommu { pci_address: String },
    #[error("{pci_address}: mapping {size_bytes} bytes of DMA memory failed: {source}; if not root, raise the memlock limit (ulimit -l, LimitMEMLOCK= in the unit)")]
    DmaMap { pci_address: String, size_bytes: usize, source: std::io::Error },
    #[error("{pci_address}: {reason}")]
    Controller { pci_address: String, reason: String },
    #[error("{pci_address}: admin command {command} failed: {reason}")]
    Admin { pci_address: String, command: &'static str, reason: String },
    #[error("{pci_address}: namespace {nsid}: {reason}")]
    Namespace { pci_address: String, nsid: u32, reason: String },
    #[error("{pci_address}: all {limit} I/O queue pairs the controller granted are in use")]
    QueuesExhausted { pci_address: String, limit: u16 },
    #[error("{pci_address}: the controller is gone ({reason})")]
    Gone { pci_address: String, reason: String },
}
