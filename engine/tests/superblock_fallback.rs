//! Opening from the older superblock copy when the newer one is damaged:
//! what the older copy cannot account for must be refused, never dropped.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use keel_drivers::BlockDevice;
use keel_engine::layout::PAGE_BYTES;
use keel_engine::superblock::Superblock;
use keel_engine::testing::{memory_device, start_on, TestEngineSpec};

fn spec() -> TestEngineSpec {
    TestEngineSpec { reactors: 1, shards: 2, capacity_bytes: 64 << 20, ..TestEngineSpec::default() }
}

fn put_all(runtime: &keel_reactor::Runtime, engine: &keel_engine::Engine, prefix: &'static str) {
    let writer = engine.clone();
    runtime
        .call_blocking(0, move || async move {
            let mut last = 0;
            for i in 0..50u32 {
                last = writer.put(format!("{prefix}{i:03}").as_bytes(), vec![b'v'; 40]).await.unwrap();
            }
            writer.wait_durable(last).await.unwrap();
            // Long enough for the journal's idle pad batch.
            keel_reactor::time::sleep(Duration::from_millis(20)).await;
        })
        .unwrap();
}

/// The newest valid copy's page.
fn newest_page(store: &keel_drivers::memory::MemoryStore) -> u64 {
    let mut best = (0u64, 0u64);
    for page in 0..2u64 {
        let mut buf = vec![0u8; PAGE_BYTES];
        store.read(page * PAGE_BYTES as u64, &mut buf);
        if let Ok(sb) = Superblock::decode(&buf) {
            if sb.generation >= best.1 {
                best = (page, sb.generation);
            }
        }
    }
    best.0
}

/// Boot 1 writes A and crashes; boot 2 recovers (its checkpoint after open
/// is the newest superblock), writes B durably and crashes. If that newest
/// copy is then damaged, the older one (boot 1's) knows nothing of B, whose
/// records carry boot 2's journal epoch. Opening from it must not return a
/// volume without B as if nothing happened.
#[test]
fn a_damaged_newest_copy_never_silently_drops_what_the_older_copy_cannot_see() {
    let spec = spec();
    let device = memory_device(&spec);
    let (runtime, engine) = start_on(Arc::clone(&device) as Arc<dyn BlockDevice>, &spec, true).unwrap();
    put_all(&runtime, &engine, "a");
    drop(engine);
    runtime.stop();

    let (runtime, engine) = start_on(Arc::clone(&device) as Arc<dyn BlockDevice>, &spec, false).unwrap();
    put_all(&runtime, &engine, "b");
    drop(engine);
    runtime.stop();

    let page = newest_page(device.store());
    let mut byte = [0u8];
    device.store().read(page * PAGE_BYTES as u64 + 100, &mut byte);
    device.store().write(page * PAGE_BYTES as u64 + 100, &[byte[0] ^ 0x10]);

    // Boot 1's copy ends the log where boot 1 crashed; B's records, of boot
    // 2's epoch, prove a newer superblock existed. Regression: the volume
    // used to open without B.
    let err = match start_on(Arc::clone(&device) as Arc<dyn BlockDevice>, &spec, false) {
        Err(e) => e,
        Ok((runtime, engine)) => {
            let reader = engine.clone();
            let missing = runtime
                .call_blocking(0, move || async move {
                    let mut missing = 0;
                    for i in 0..50u32 {
                        if reader.get(format!("b{i:03}").as_bytes()).await.unwrap().is_none() {
                            missing += 1;
                        }
                    }
                    missing
                })
                .unwrap();
            panic!("opened from the older superblock copy with {missing} of 50 acknowledged keys missing");
        }
    };
    let message = err.to_string();
    assert!(message.contains("later than the epoch") && message.contains("newer superblock"), "{message}");
}
