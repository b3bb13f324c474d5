//! `[device]`: which storage Keel owns and through which backend.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{check_range, Problem};
use crate::units::{ByteSize, HumanDuration};

/// The driver behind the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A file or block device through io_uring with O_DIRECT.
    #[default]
    Uring,
    /// RAM only: for tests and CPU-path benchmarks. Nothing survives exit.
    Memory,
    /// NVMe controllers driven from userspace through VFIO.
    Nvme,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Memory => "memory",
            Backend::Nvme => "nvme",
        }
    }
}

/// The smallest volume: a minimal journal (8 MiB) and one minimal shard (4 MiB) fit with room.
pub const DEVICE_SIZE_MIN: ByteSize = ByteSize::mib(16);
/// The largest volume this build lays out (page numbers stay far inside u64).
pub const DEVICE_SIZE_MAX: ByteSize = ByteSize(1 << 50);
/// `device.submit_batch_max`'s default, measured on the uring backend
/// (BENCHMARKS.md, "Device"); the drivers' own default is the same.
pub const SUBMIT_BATCH_MAX_DEFAULT: u32 = 4;
/// `device.submit_write_batch_max`'s default, as `SUBMIT_BATCH_MAX_DEFAULT`.
pub const SUBMIT_WRITE_BATCH_MAX_DEFAULT: u32 = 2;
/// A burst larger than any queue pair's depth would never be reached.
const SUBMIT_BATCH_MAX_MAX: u32 = 4096;
/// Most NVMe controllers one process drives.
const PCI_ADDRESSES_MAX: usize = 64;
/// Most files or block devices one striped volume takes.
const MEMBERS_MAX: usize = 64;

/// `[device]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table of [device] settings")]
pub struct DeviceConfig {
    pub backend: Backend,
    /// Directory for Keel's files (the data file by default). Created if missing.
    pub data_dir: PathBuf,
    /// The file or block device (uring backend). Default: `<data_dir>/keel.img`.
    /// A relative path is relative to the working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Several files or block devices (uring backend) striped into one
    /// volume, in this order (each member is labelled with its position; see
    /// docs/FORMAT.md). Each file is created or grown to `size`. Instead of
    /// `path`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathBuf>,
    /// Size of the data file, created or grown to this size if needed; the
    /// memory backend's capacity. Ignored for block devices and NVMe, whose
    /// size is their own.
    pub size: ByteSize,
    /// When the file system refuses O_DIRECT, fall back to buffered I/O (with
    /// fdatasync for flushes) instead of failing. Logged when it happens.
    pub buffered_fallback: bool,
    /// NVMe controllers, by PCI address ("0000:01:00.0"), for backend = "nvme".
    /// Several are striped into one volume, in this order.
    pub pci_addresses: Vec<String>,
    /// NVMe: a command outstanding this long is aborted; one still
    /// outstanding a timeout later resets the controller.
    pub nvme_command_timeout: HumanDuration,
    /// NVMe: controller resets allowed within `nvme_reset_window`; one more
    /// fails the controller for good (its I/O fails, the process goes on)
    /// rather than resetting a device that keeps hanging forever.
    pub nvme_resets_max: u32,
    pub nvme_reset_window: HumanDuration,
    /// uring: a reactor hands its queued requests to the kernel as soon as
    /// this many are waiting, not only once per reactor turn. Smaller bursts
    /// keep a device that works through requests in turn busier, at one
    /// system call per burst. 0: once per turn only.
    pub submit_batch_max: u32,
    /// uring: the same as soon as this many of the waiting requests are
    /// writes. The kernel holds a burst of three or more back until it has
    /// prepared all of it, and writes take longest to prepare. 0: no
    /// separate limit.
    pub submit_write_batch_max: u32,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            backend: Backend::default(),
            data_dir: PathBuf::from("./keel-data"),
            path: None,
            paths: Vec::new(),
            size: ByteSize::gib(4),
            buffered_fallback: false,
            pci_addresses: Vec::new(),
            nvme_command_timeout: HumanDuration::from_secs(30),
            nvme_resets_max: 3,
            nvme_reset_window: HumanDuration::from_secs(600),
            submit_batch_max: SUBMIT_BATCH_MAX_DEFAULT,
            submit_write_batch_max: SUBMIT_WRITE_BATCH_MAX_DEFAULT,
        }
    }
}

impl DeviceConfig {
    /// The file or block device the uring backend opens.
    pub fn image_path(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| self.data_dir.join("keel.img"))
    }

    /// Every file or block device the uring backend opens, in set order: the
    /// `paths`, or else the one image path.
    pub fn image_paths(&self) -> Vec<PathBuf> {
        if self.paths.is_empty() {
            vec![self.image_path()]
        } else {
            self.paths.clone()
        }
    }

    pub fn validate(&self) -> Result<(), Problem> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(Problem::new("device.data_dir", "must not be empty"));
        }
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(Problem::new("device.path", "must not be empty (leave it out for <data_dir>/keel.img)"));
        }
        if self.path.is_some() && !self.paths.is_empty() {
            return Err(Problem::new(
                "device.paths",
                "give either device.path (one device) or device.paths (several), not both",
            ));
        }
        if self.paths.len() > MEMBERS_MAX {
            return Err(Problem::new("device.paths", format!("at most {MEMBERS_MAX} devices")));
        }
        for (i, path) in self.paths.iter().enumerate() {
            if path.as_os_str().is_empty() {
                return Err(Problem::new(format!("device.paths[{i}]"), "must not be empty"));
            }
            if self.paths[..i].contains(path) {
                return Err(Problem::new(format!("device.paths[{i}]"), format!("{} is listed twice", path.display())));
            }
        }
        check_range("device.size", self.size, DEVICE_SIZE_MIN, DEVICE_SIZE_MAX)?;
        if !self.size.bytes().is_multiple_of(4096) {
            return Err(Problem::new("device.size", format!("{} is not a multiple of 4KiB", self.size)));
        }
        if self.pci_addresses.len() > PCI_ADDRESSES_MAX {
            return Err(Problem::new("device.pci_addresses", format!("at most {PCI_ADDRESSES_MAX} controllers")));
        }
        for (i, address) in self.pci_addresses.iter().enumerate() {
            if !is_pci_address(address) {
                return Err(Problem::new(
                    format!("device.pci_addresses[{i}]"),
                    format!("\"{address}\" is not a PCI address like \"0000:01:00.0\""),
                ));
            }
            if self.pci_addresses[..i].contains(address) {
                return Err(Problem::new(format!("device.pci_addresses[{i}]"), format!("{address} is listed twice")));
            }
        }
        if self.backend == Backend::Nvme && self.pci_addresses.is_empty() {
            return Err(Problem::new("device.pci_addresses", "backend = \"nvme\" needs at least one PCI address"));
        }
        check_range("device.submit_batch_max", self.submit_batch_max, 0, SUBMIT_BATCH_MAX_MAX)?;
        check_range("device.submit_write_batch_max", self.submit_write_batch_max, 0, SUBMIT_BATCH_MAX_MAX)?;
        if self.nvme_resets_max > 1000 {
            return Err(Problem::new("device.nvme_resets_max", "at most 1000"));
        }
        check_range(
            "device.nvme_reset_window",
            self.nvme_reset_window,
            HumanDuration::from_secs(1),
            HumanDuration::from_secs(7 * 24 * 3600),
        )?;
        check_range(
            "device.nvme_command_timeout",
            self.nvme_command_timeout,
            HumanDuration::from_millis(100),
            HumanDuration::from_secs(600),
        )
    }
}

/// "DDDD:BB:DD.F" in hex: domain, bus, device (< 0x20), function (< 8).
fn is_pci_address(text: &str) -> bool {
    let hex = |s: &str, len: usize| s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = text.split([':', '.']).collect();
    match parts.as_slice() {
        [domain, bus, device, function] => {
            hex(domain, 4)
                && hex(bus, 2)
                && hex(device, 2)
                && u8::from_str_radix(device, 16).is_ok_and(|d| d < 0x20)
                && function.len() == 1
                && function.chars().all(|c| ('0'..='7').contains(&c))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_are_checked_field_by_field() {
        assert!(is_pci_address("0000:01:00.0"));
        assert!(is_pci_address("0000:af:1f.7"));
        for bad in ["01:00.0", "0000:01:00.8", "0000:01:20.0", "0000:01:00", "zzzz:01:00.0", "0000:01:00.0.1"] {
            assert!(!is_pci_address(bad), "{bad}");
        }
    }

    #[test]
    fn several_paths_exclude_path_and_duplicates() {
        let mut device = DeviceConfig { paths: vec!["/a".into(), "/b".into()], ..DeviceConfig::default() };
        assert!(device.validate().is_ok());
        assert_eq!(device.image_paths(), vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        device.paths.push("/a".into());
        assert!(format!("{:?}", device.validate().unwrap_err()).contains("device.paths[2]"));
        device.paths.pop();
        device.path = Some("/c".into());
        assert!(format!("{:?}", device.validate().unwrap_err()).contains("not both"));
        device.paths.clear();
        assert_eq!(device.image_paths(), vec![PathBuf::from("/c")]);
        let nvme = DeviceConfig {
            backend: Backend::Nvme,
            pci_addresses: vec!["0000:00:04.0".into(), "0000:00:04.0".into()],
            ..DeviceConfig::default()
        };
        assert!(format!("{:?}", nvme.validate().unwrap_err()).contains("listed twice"));
    }

    #[test]
    fn the_nvme_command_timeout_is_bounded() {
        let mut device = DeviceConfig::default();
        assert_eq!(device.nvme_command_timeout.get(), std::time::Duration::from_secs(30));
        assert!(device.validate().is_ok());
        device.nvme_command_timeout = HumanDuration::from_millis(50);
        let problem = device.validate().unwrap_err();
        assert!(format!("{problem:?}").contains("device.nvme_command_timeout"), "{problem:?}");
        device.nvme_command_timeout = HumanDuration::from_secs(601);
        assert!(device.validate().is_err());
    }
}
