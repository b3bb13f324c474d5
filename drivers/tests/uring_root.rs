//! io_uring backend behaviour that needs real file systems and block
//! devices: a file system that refuses O_DIRECT (ramfs), a full one (a
//! 1 MiB tmpfs), and a loop block device. These mount and attach as root;
//! run as another user they fail loudly rather than skip.

#![allow(clippy::unwrap_used)] // a test's unwrap is its assertion

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use keel_drivers::conformance::{self, ConformanceOptions};
use keel_drivers::uring::{UringConfig, UringDevice};
use keel_drivers::{BlockDevice, DeviceError, DmaPool, IoErrorKind, Op, Request};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test mounts file systems and attaches loop devices: run it as root (scripts/test-all does)"
    );
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A file system mounted on a temporary directory, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn new(fstype: &str, options: &str) -> Mount {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        run("mount", &["-t", fstype, "-o", options, "none", dir.path().to_str().unwrap()]);
        Mount { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Mount {
    /// A plain (not lazy) unmount: fails while any file on it is open.
    fn unmount_now(&self) -> bool {
        Command::new("umount").arg(self.dir.path()).status().is_ok_and(|s| s.success())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.unmount_now() {
            // Nothing may keep a test's mount alive after it ends.
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

/// A loop device over a temporary file, detached on drop.
struct LoopDevice {
    device: String,
    _dir: tempfile::TempDir,
}

impl LoopDevice {
    fn new(size_bytes: u64) -> LoopDevice {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("loop.img");
        std::fs::File::create(&backing).unwrap().set_len(size_bytes).unwrap();
        let device = run("losetup", &["--find", "--show", "--direct-io=on", backing.to_str().unwrap()]);
        LoopDevice { device, _dir: dir }
    }

    fn path(&self) -> &Path {
        Path::new(&self.device)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

fn pool() -> Arc<DmaPool> {
    Arc::new(DmaPool::for_tests(16 << 20))
}

#[test]
fn a_file_system_that_refuses_o_direct_is_a_typed_error() {
    let ramfs = Mount::new("ramfs", "mode=700");
    let mut config = UringConfig::new(ramfs.path("keel.img"));
    config.create_size_bytes = Some(8 << 20);
    let err = UringDevice::open(&config, pool()).unwrap_err();
    assert!(matches!(err, DeviceError::DirectIoRefused { .. }), "got {err}");
    assert!(err.to_string().contains("buffered_fallback"), "the message names the way out: {err}");
}

#[test]
fn buffered_fallback_opens_such_a_file_system_and_conforms() {
    let ramfs = Mount::new("ramfs", "mode=700");
    let mut config = UringConfig::new(ramfs.path("keel.img"));
    config.create_size_bytes = Some(8 << 20);
    config.buffered_fallback = true;
    let device = UringDevice::open(&config, pool()).expect("buffered fallback");
    assert!(!device.is_direct());
    assert_eq!(device.info().capacity_bytes(), 8 << 20);
    conformance::run(&device, &ConformanceOptions::default()).assert_passed();
    drop(device);
    assert!(ramfs.unmount_now(), "a dropped device still holds its file open");
}

#[test]
fn creating_a_file_larger_than_the_free_space_says_the_file_system_is_full() {
    let tmpfs = Mount::new("tmpfs", "size=1m");
    let mut config = UringConfig::new(tmpfs.path("keel.img"));
    config.create_size_bytes = Some(16 << 20);
    match UringDevice::open(&config, pool()).unwrap_err() {
        DeviceError::NoSpace { size_bytes, available_bytes, .. } => {
            assert_eq!(size_bytes, 16 << 20);
            assert!(available_bytes <= 1 << 20);
        }
        other => panic!("expected NoSpace, got {other}"),
    }
}

#[test]
fn a_write_into_a_full_file_system_fails_with_enospc() {
    let tmpfs = Mount::new("tmpfs", "size=1m");
    let path = tmpfs.path("sparse.img");
    // A sparse file larger than the file system: only writes find out.
    std::fs::File::create(&path).unwrap().set_len(16 << 20).unwrap();
    let device = UringDevice::open(&UringConfig::new(&path), pool()).unwrap();
    let mut qp = device.open_queue_pair(4).unwrap();
    let mut buf = device.dma_pool().try_alloc(2 << 20).unwrap();
    buf.fill(1);
    qp.submit(Request { tag: 1, op: Op::Write { lba: 0, buf, fua: false } }).unwrap();
    let mut out = Vec::new();
    while out.is_empty() {
        qp.poll(&mut out, 1);
    }
    let err = out.pop().unwrap().result.expect_err("a write beyond the free space must fail");
    assert_eq!(err.kind, IoErrorKind::Io { errno: libc::ENOSPC });
}

#[test]
fn a_loop_block_device_reports_its_geometry_and_conforms() {
    let lo = LoopDevice::new(64 << 20);
    let device = UringDevice::open(&UringConfig::new(lo.path()), pool()).unwrap();
    assert!(device.is_block_device());
    let info = device.info();
    assert_eq!(info.block_size_bytes, 512, "a loop device's default logical block");
    assert_eq!(info.capacity_bytes(), 64 << 20);
    let sysfs = format!("/sys/block/{}/queue/write_cache", lo.path().file_name().unwrap().to_str().unwrap());
    let expected_vwc = std::fs::read_to_string(sysfs).unwrap().trim() == "write back";
    assert_eq!(info.volatile_write_cache, expected_vwc);
    conformance::run(&device, &ConformanceOptions::default()).assert_passed();
}

#[test]
fn a_block_device_is_opened_exclusively() {
    let lo = LoopDevice::new(8 << 20);
    let first = UringDevice::open(&UringConfig::new(lo.path()), pool()).unwrap();
    let err = UringDevice::open(&UringConfig::new(lo.path()), pool()).unwrap_err();
    match err {
        DeviceError::Open { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::EBUSY)),
        other => panic!("expected EBUSY, got {other}"),
    }
    // Once closed, it can be opened again at once (no lingering reference).
    let mut qp = first.open_queue_pair(4).unwrap();
    let buf = first.dma_pool().try_alloc(4096).unwrap();
    qp.submit(Request { tag: 1, op: Op::Read { lba: 0, buf } }).unwrap();
    let mut out = Vec::new();
    while out.is_empty() {
        qp.poll(&mut out, 1);
    }
    drop((qp, first));
    UringDevice::open(&UringConfig::new(lo.path()), pool()).expect("reopening a closed block device");
}
