//! A Keel volume on the nvme backend, across a process restart: one process
//! makes the volume through a reactor whose idle policy sleeps on the
//! controller's interrupts, a second process (a second run of this binary)
//! opens it again from the medium.
//!
//! Needs an NVMe controller on vfio-pci named by KEEL_NVME_PCI and a file
//! KEEL_NVME_STATE to carry the volume's UUID between the processes; run in
//! the QEMU guest by scripts/vm/nvme-tests.sh (phase 1, then phase 2).

use std::sync::Arc;

use keel_drivers::nvme::{NvmeConfig, NvmeDevice};
use keel_drivers::{BlockDevice, DmaPool, DmaPoolConfig, HugepagePolicy};
use keel_engine::layout::LayoutParams;
use keel_engine::superblock::FLAG_CLEAN;
use keel_engine::volume::{self, MkfsParams};
use keel_reactor::io::DeviceId;
use keel_reactor::{block_on_with, IdlePolicy, RuntimeConfig};

const DEV: DeviceId = DeviceId(0);

fn devices() -> Vec<Arc<dyn BlockDevice>> {
    let pci = std::env::var("KEEL_NVME_PCI").expect("KEEL_NVME_PCI names a controller on vfio-pci");
    let pool =
        Arc::new(DmaPool::new(&DmaPoolConfig { size_bytes: 16 << 20, hugepages: HugepagePolicy::Auto }).unwrap());
    let device = NvmeDevice::open(&NvmeConfig::new(&pci), pool).expect("open the NVMe controller");
    vec![Arc::new(device)]
}

fn state_file() -> String {
    std::env::var("KEEL_NVME_STATE").expect("KEEL_NVME_STATE names a file that carries the UUID between phases")
}

/// Reactors that sleep on the controller's interrupts when idle.
fn sleeping_reactor() -> RuntimeConfig {
    RuntimeConfig { idle: IdlePolicy::Adaptive { spin_us: 50 }, ..RuntimeConfig::default() }
}

#[test]
#[ignore = "phase 1 of a restart on NVMe: run in the VM by scripts/vm/nvme-tests.sh"]
fn nvme_restart_phase1_mkfs_and_close() {
    let params =
        MkfsParams { layout: LayoutParams { shard_count: 2, journal_bytes: None }, force: true, zero_journal: true };
    let (made, opened, closed) = block_on_with(&sleeping_reactor(), &devices(), async move {
        let made = volume::mkfs(DEV, &params, |_, _| {}).await.unwrap();
        let opened = volume::open(DEV).await.unwrap();
        let closed = volume::close(DEV, &opened).await.unwrap();
        (made, opened, closed)
    })
    .unwrap();
    assert_eq!((opened.boot_counter, closed.flags & FLAG_CLEAN), (1, FLAG_CLEAN));
    std::fs::write(state_file(), volume::format_uuid(&made.volume_uuid)).unwrap();
    println!("phase 1: made volume {} on {}", volume::format_uuid(&made.volume_uuid), devices_name());
}

#[test]
#[ignore = "phase 2 of a restart on NVMe: run in the VM by scripts/vm/nvme-tests.sh"]
fn nvme_restart_phase2_reopen_from_the_medium() {
    let uuid = std::fs::read_to_string(state_file()).expect("phase 1 ran first");
    let opened = block_on_with(&sleeping_reactor(), &devices(), async {
        let opened = volume::open(DEV).await.unwrap();
        volume::close(DEV, &opened).await.unwrap();
        opened
    })
    .unwrap();
    assert_eq!(volume::format_uuid(&opened.volume_uuid), uuid, "the same volume came back");
    assert_eq!(opened.boot_counter, 2, "the second open of the volume");
    println!("phase 2: reopened volume {uuid} (boot {}, generation {})", opened.boot_counter, opened.generation);
}

fn devices_name() -> String {
    std::env::var("KEEL_NVME_PCI").unwrap_or_default()
}
