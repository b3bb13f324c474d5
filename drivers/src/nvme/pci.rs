//! PCI devices through sysfs: which driver holds a device, its IOMMU group,
//! and handing it to or taking it from vfio-pci. Used by the driver to find
//! a device's group and by `keel setup` to prepare devices.

use std::path::{Path, PathBuf};

use super::error::NvmeError;

const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";
/// PCI class code of an NVMe controller (mass storage, NVM, NVMe interface).
pub const CLASS_NVME: u32 = 0x01_08_02;

/// The sysfs directory of a PCI device.
pub fn device_dir(pci_address: &str) -> PathBuf {
    Path::new(SYSFS_PCI_DEVICES).join(pci_address)
}

/// Checks the shape "dddd:bb:dd.f" (domain, bus, device, function in hex),
/// so that a configuration value never becomes a strange sysfs path.
pub fn is_valid_address(pci_address: &str) -> bool {
    let bytes = pci_address.as_bytes();
    let hex = |r: std::ops::Range<usize>| bytes[r].iter().all(u8::is_ascii_hexdigit);
    bytes.len() == 12
        && bytes[4] == b':'
        && bytes[7] == b':'
        && bytes[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && hex(11..12)
}

fn sysfs_error(pci_address: &str, path: PathBuf, source: std::io::Error) -> NvmeError {
    NvmeError::Sysfs { pci_address: pci_address.to_owned(), path, source }
}

fn check_address(pci_address: &str) -> Result<(), NvmeError> {
    if is_valid_address(pci_address) {
        return Ok(());
    }
    Err(NvmeError::Controller {
        pci_address: pci_address.to_owned(),
        reason: "not a PCI address of the form 0000:00:04.0".into(),
    })
}

/// The name of the driver bound to the device, or `None`.
pub fn driver(pci_address: &str) -> Result<Option<String>, NvmeError> {
    check_address(pci_address)?;
    let dir = device_dir(pci_address);
    if !dir.exists() {
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        return Err(sysfs_error(pci_address, dir, e));
    }
    Ok(link_name(&dir.join("driver")))
}

/// The device's IOMMU group number.
pub fn iommu_group(pci_address: &str) -> Result<u32, NvmeError> {
    check_address(pci_address)?;
    let path = device_dir(pci_address).join("iommu_group");
    let target = std::fs::read_link(&path).map_err(|e| sysfs_error(pci_address, path.clone(), e))?;
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.parse().map_err(|_| {
        let e = std::io::Error::other(format!("unexpected group link {}", target.display()));
        sysfs_error(pci_address, path, e)
    })
}

/// The PCI addresses of every device in the same IOMMU group.
pub fn group_members(pci_address: &str) -> Result<Vec<String>, NvmeError> {
    check_address(pci_address)?;
    let path = device_dir(pci_address).join("iommu_group/devices");
    let entries = std::fs::read_dir(&path).map_err(|e| sysfs_error(pci_address, path.clone(), e))?;
    let mut members: Vec<String> =
        entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().map(str::to_owned)).collect();
    members.sort();
    Ok(members)
}

/// The device's PCI class code (24 bits).
pub fn class(pci_address: &str) -> Result<u32, NvmeError> {
    check_address(pci_address)?;
    let path = device_dir(pci_address).join("class");
    let text = std::fs::read_to_string(&path).map_err(|e| sysfs_error(pci_address, path.clone(), e))?;
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .map_err(|_| sysfs_error(pci_address, path, std::io::Error::other(format!("bad class {text:?}"))))
}

/// Every PCI device whose class is an NVMe controller, sorted.
pub fn nvme_controllers() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(SYSFS_PCI_DEVICES) else { return Vec::new() };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|a| is_valid_address(a) && class(a).ok() == Some(CLASS_NVME))
        .collect();
    found.sort();
    found
}

/// Unbinds the device from its driver (if any) and binds it to vfio-pci.
pub fn bind_vfio(pci_address: &str) -> Result<(), NvmeError> {
    bind_driver(pci_address, "vfio-pci")
}

/// Unbinds the device from vfio-pci and lets the kernel choose its driver.
pub fn unbind_vfio(pci_address: &str) -> Result<(), NvmeError> {
    bind_driver(pci_address, "")
}

/// Binds to `driver`, or to the kernel's choice when `driver` is empty, by
/// writing `driver_override` and asking the PCI core to probe again.
fn bind_driver(pci_address: &str, driver_name: &str) -> Result<(), NvmeError> {
    let dir = device_dir(pci_address);
    let current = driver(pci_address)?;
    if current.as_deref() == Some(driver_name) {
        return Ok(());
    }
    let write =
        |path: PathBuf, value: &str| std::fs::write(&path, value).map_err(|e| sysfs_error(pci_address, path, e));
    if current.is_some() {
        write(dir.join("driver/unbind"), pci_address)?;
    }
    write(dir.join("driver_override"), if driver_name.is_empty() { "\n" } else { driver_name })?;
    write(PathBuf::from("/sys/bus/pci/drivers_probe"), pci_address)?;
    let now = driver(pci_address)?;
    if !driver_name.is_empty() && now.as_deref() != Some(driver_name) {
        return Err(NvmeError::NotVfio { pci_address: pci_address.to_owned(), driver: now.unwrap_or_default() });
    }
    Ok(())
}

fn link_name(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    target.file_name().and_then(|n| n.to_str()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_are_validated_before_touching_sysfs() {
        assert!(is_valid_address("0000:00:04.0"));
        assert!(is_valid_address("0000:3b:00.1"));
        assert!(!is_valid_address("00:04.0"));
        assert!(!is_valid_address("0000:00:04.0/../../x"));
        assert!(!is_valid_address("0000:0g:04.0"));
        assert!(matches!(driver("../../etc"), Err(NvmeError::Controller { .. })));
    }
}
