//! Reactors over a real io_uring device: an adaptive reactor that sleeps with
//! requests in flight is woken by the ring's eventfd, in every ring setup.

#![allow(clippy::unwrap_used)] // a test's unwrap is its assertion

use std::sync::Arc;
use std::time::Duration;

use keel_drivers::uring::{UringConfig, UringDevice, UringSetup};
use keel_drivers::{BlockDevice, DmaPool};
use keel_reactor::io::{self, DeviceId};
use keel_reactor::{spawn, IdlePolicy, Runtime, RuntimeConfig};

const DEV: DeviceId = DeviceId(0);

fn uring_device(dir: &tempfile::TempDir, setup: UringSetup) -> Arc<dyn BlockDevice> {
    let mut config = UringConfig::new(dir.path().join("keel.img"));
    config.create_size_bytes = Some(128 << 20);
    config.setup = setup;
    Arc::new(UringDevice::open(&config, Arc::new(DmaPool::for_tests(32 << 20))).unwrap())
}

#[test]
fn an_adaptive_reactor_sleeps_during_uring_io_and_wakes_on_completions() {
    for setup in [UringSetup::DeferTaskrun, UringSetup::CoopTaskrun, UringSetup::Plain] {
        let dir = tempfile::tempdir().unwrap();
        let device = uring_device(&dir, setup);
        // spin_us 0: every idle turn sleeps, so each request in flight is
        // waited for in epoll_wait, not by spinning.
        let config = RuntimeConfig { idle: IdlePolicy::Adaptive { spin_us: 0 }, ..RuntimeConfig::default() };
        let runtime = Runtime::start(&config, &[device]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        runtime
            .spawn_on(0, move || async move {
                let mut tasks = Vec::new();
                for t in 0..4u64 {
                    tasks.push(spawn(async move {
                        for i in 0..16u64 {
                            let lba = (t * 16 + i) * 512;
                            let mut buf = io::alloc_buf(DEV, 2 << 20).await.unwrap();
                            buf.fill((t + i) as u8);
                            let (buf, r) = io::write(DEV, lba, buf, false).await;
                            r.unwrap();
                            let (buf, r) = io::read(DEV, lba, buf).await;
                            r.unwrap();
                            assert!(buf.iter().all(|&b| b == (t + i) as u8));
                        }
                    }));
                }
                for task in tasks {
                    task.await;
                }
                io::flush(DEV).await.unwrap();
                tx.send(keel_reactor::stats()).unwrap();
            })
            .unwrap();
        let stats = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("setup {setup}: the reactor slept through its completions"));
        assert!(stats.sleeps > 0, "setup {setup}: the reactor never slept ({stats:?})");
        assert_eq!(stats.io_completed, 129, "setup {setup}");
        runtime.stop();
    }
}
