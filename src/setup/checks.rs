//! The steps of `keel setup`, each returning a [`Step`] that says what
//! happened and, on failure, what to do.

use std::fmt;
use std::path::Path;

use keel_drivers::nvme::pci;

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub what: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    /// Works, but something deserves attention.
    Warn(String),
    Fail(String),
}

impl Step {
    pub fn ok(what: impl Into<String>, detail: impl Into<String>) -> Step {
        Step { what: what.into(), outcome: Outcome::Ok(detail.into()) }
    }

    pub fn warn(what: impl Into<String>, detail: impl Into<String>) -> Step {
        Step { what: what.into(), outcome: Outcome::Warn(detail.into()) }
    }

    pub fn fail(what: impl Into<String>, detail: impl Into<String>) -> Step {
        Step { what: what.into(), outcome: Outcome::Fail(detail.into()) }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Fail(_))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Ok(d) => write!(f, "ok    {}: {d}", self.what),
            Outcome::Warn(d) => write!(f, "warn  {}: {d}", self.what),
            Outcome::Fail(d) => write!(f, "FAIL  {}: {d}", self.what),
        }
    }
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";
const HUGEPAGE_BYTES: u64 = 2 << 20;

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Makes sure at least `mib` MiB of 2 MiB hugepages are reserved.
pub fn hugepages(mib: u64) -> Step {
    let what = "reserve hugepages";
    let wanted = (mib << 20).div_ceil(HUGEPAGE_BYTES);
    let Some(have) = read_u64(NR_HUGEPAGES) else {
        return Step::fail(what, format!("cannot read {NR_HUGEPAGES}: this kernel has no hugetlb support"));
    };
    if have >= wanted {
        return Step::ok(what, format!("{have} pages of 2 MiB reserved (wanted {wanted})"));
    }
    if let Err(e) = std::fs::write(NR_HUGEPAGES, wanted.to_string()) {
        return Step::fail(what, format!("cannot write {NR_HUGEPAGES} ({e}); run as root"));
    }
    let now = read_u64(NR_HUGEPAGES).unwrap_or(0);
    if now < wanted {
        return Step::fail(
            what,
            format!(
                "only {now} of {wanted} pages could be reserved: memory is too fragmented; reserve them at boot (kernel command line hugepages={wanted}) or free memory and retry"
            ),
        );
    }
    Step::ok(what, format!("{now} pages of 2 MiB reserved (was {have})"))
}

/// An IOMMU is on when the kernel has made IOMMU groups.
pub fn iommu_enabled() -> Step {
    let what = "IOMMU";
    let groups = std::fs::read_dir("/sys/kernel/iommu_groups").map(|d| d.count()).unwrap_or(0);
    if groups == 0 {
        return Step::fail(
            what,
            "no IOMMU groups: enable VT-d or AMD-Vi in the firmware and boot with intel_iommu=on (Intel) or amd_iommu=on (AMD)",
        );
    }
    Step::ok(what, format!("{groups} IOMMU groups"))
}

/// Loads vfio-pci when its driver directory is missing.
pub fn vfio_loaded() -> Step {
    let what = "vfio-pci driver";
    let dir = Path::new("/sys/bus/pci/drivers/vfio-pci");
    if dir.exists() {
        return Step::ok(what, "loaded");
    }
    let status = std::process::Command::new("modprobe").arg("vfio-pci").status();
    match status {
        Ok(s) if s.success() && dir.exists() => Step::ok(what, "loaded with modprobe vfio-pci"),
        Ok(s) => Step::fail(what, format!("modprobe vfio-pci failed ({s}): is the module installed for this kernel?")),
        Err(e) => Step::fail(what, format!("cannot run modprobe ({e}); load vfio-pci by hand")),
    }
}

/// The kernel's NVMe block devices under a controller and whether any of
/// them (or a partition) is mounted or held by another device (RAID, LVM).
pub fn in_use(pci_address: &str) -> bool {
    !users(pci_address).is_empty()
}

fn users(pci_address: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    for disk in block_devices(pci_address) {
        for line in mounts.lines() {
            let source = line.split_whitespace().next().unwrap_or_default();
            if source == format!("/dev/{disk}") || source.starts_with(&format!("/dev/{disk}p")) {
                found.push(format!("{source} is mounted"));
            }
        }
        let holders = Path::new("/sys/block").join(&disk).join("holders");
        if let Ok(entries) = std::fs::read_dir(holders) {
            for e in entries.flatten() {
                found.push(format!("/dev/{disk} is held by {}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Names like "nvme0n1" of the namespaces the kernel made for a controller.
fn block_devices(pci_address: &str) -> Vec<String> {
    let mut disks = Vec::new();
    let Ok(controllers) = std::fs::read_dir(pci::device_dir(pci_address).join("nvme")) else { return disks };
    for controller in controllers.flatten() {
        let Ok(entries) = std::fs::read_dir(controller.path()) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("nvme") && name.contains('n') && Path::new("/sys/block").join(&name).exists() {
                disks.push(name);
            }
        }
    }
    disks
}

/// Hands the controller to vfio-pci.
pub fn bind(pci_address: &str, force: bool) -> Step {
    let what = format!("bind {pci_address} to vfio-pci");
    match pci::class(pci_address) {
        Err(e) => return Step::fail(what, e.to_string()),
        Ok(class) if class != pci::CLASS_NVME => {
            return Step::fail(what, format!("class {class:#08x} is not an NVMe controller (0x010802)"))
        }
        Ok(_) => {}
    }
    let before = pci::driver(pci_address).ok().flatten();
    if before.as_deref() == Some("vfio-pci") {
        return Step::ok(what, "already bound");
    }
    let users = users(pci_address);
    if !users.is_empty() && !force {
        return Step::fail(
            what,
            format!("the kernel is using it ({}); unmount first, or pass --force", users.join(", ")),
        );
    }
    match pci::bind_vfio(pci_address) {
        Ok(()) => Step::ok(what, format!("was {}", before.unwrap_or_else(|| "unbound".into()))),
        Err(e) => Step::fail(what, e.to_string()),
    }
}

/// Drivers that may hold other devices of a group without making it
/// unusable for VFIO (bridges; stub drivers).
const VIABLE_DRIVERS: [&str; 3] = ["vfio-pci", "pcieport", "pci-stub"];

/// Every device in the controller's IOMMU group must be on vfio-pci (or a
/// bridge, or driverless), and the group's /dev/vfio node must exist.
pub fn group_viable(pci_address: &str) -> Step {
    let what = format!("IOMMU group of {pci_address}");
    let group = match pci::iommu_group(pci_address) {
        Ok(g) => g,
        Err(e) => return Step::fail(what, format!("{e}: the IOMMU may be off")),
    };
    let members = pci::group_members(pci_address).unwrap_or_default();
    let blockers: Vec<String> = members
        .iter()
        .filter_map(|m| match pci::driver(m).ok().flatten() {
            Some(d) if !VIABLE_DRIVERS.contains(&d.as_str()) => Some(format!("{m} (driver {d})")),
            _ => None,
        })
        .collect();
    if !blockers.is_empty() {
        return Step::fail(
            what,
            format!(
                "group {group} also holds {}: bind them to vfio-pci too (keel setup --pci ...) or move the controller to another slot",
                blockers.join(", ")
            ),
        );
    }
    let node = format!("/dev/vfio/{group}");
    if !Path::new(&node).exists() {
        return Step::fail(what, format!("{node} does not exist although the group is bound to vfio-pci"));
    }
    Step::ok(what, format!("group {group} ({} devices) is viable: {node}", members.len()))
}

/// Gives the controller back to the kernel.
pub fn give_back(pci_address: &str) -> Step {
    let what = format!("give {pci_address} back to the kernel");
    match pci::unbind_vfio(pci_address) {
        Ok(()) => {
            let now = pci::driver(pci_address).ok().flatten().unwrap_or_else(|| "no driver".into());
            Step::ok(what, format!("now on {now}"))
        }
        Err(e) => Step::fail(what, e.to_string()),
    }
}
