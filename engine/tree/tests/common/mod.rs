//! Shared helpers for the tree's integration tests: memory devices, copies
//! of device images, and a BTreeMap oracle that applies messages the way the
//! tree must.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};
use keel_drivers::{BlockDevice, DmaPool};
use keel_reactor::io::DeviceId;
use keel_tree::merge::apply_merge;
use keel_tree::{Message, Value};

pub const DEV: DeviceId = DeviceId(0);
pub const REGION_FIRST_PAGE: u64 = 3;

/// A memory device of `capacity_bytes` whose completions come back in a
/// seeded random order.
pub fn memory_device(capacity_bytes: u64, reorder_seed: u64) -> Arc<MemoryDevice> {
    memory_device_over(capacity_bytes, reorder_seed, Arc::new(MemoryStore::new()))
}

/// A device over existing contents (a copy of another device's image).
pub fn memory_device_over(capacity_bytes: u64, reorder_seed: u64, store: Arc<MemoryStore>) -> Arc<MemoryDevice> {
    let pool = Arc::new(DmaPool::for_tests(32 << 20));
    let config = MemoryDeviceConfig { capacity_bytes, reorder_seed: Some(reorder_seed), ..Default::default() };
    Arc::new(MemoryDevice::with_store(&config, pool, store))
}

pub fn as_dyn(d: &Arc<MemoryDevice>) -> Vec<Arc<dyn BlockDevice>> {
    vec![Arc::clone(d) as Arc<dyn BlockDevice>]
}

/// What the tree must hold: applies messages with the same semantics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Oracle {
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Oracle {
    /// Applies a message whose out-of-line value (if any) is `bytes`.
    pub fn apply(&mut self, key: &[u8], message: &Message, extent_bytes: Option<&[u8]>) {
        match message {
            Message::Put(Value::Inline(v)) => {
                self.map.insert(key.to_vec(), v.clone());
            }
            Message::Put(Value::Extent(_)) => {
                self.map.insert(key.to_vec(), extent_bytes.expect("extent bytes").to_vec());
            }
            Message::Delete => {
                self.map.remove(key);
            }
            Message::Merge(op) => {
                let base = self.map.remove(key);
                if let Some(v) = apply_merge(base, op) {
                    self.map.insert(key.to_vec(), v);
                }
            }
        }
    }

    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        if start >= end {
            return;
        }
        let doomed: Vec<Vec<u8>> =
            self.map.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end))).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            self.map.remove(&k);
        }
    }

    pub fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map.range::<[u8], _>((start, end)).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Runs `future` on a reactor over `devices`; a panic inside it (a failed
/// assertion) fails the test instead of leaving the reactor waiting.
pub fn run<F: Future + 'static>(devices: &[Arc<dyn BlockDevice>], future: F) -> F::Output
where
    F::Output: 'static,
{
    let caught = keel_reactor::block_on(devices, CatchUnwind(Box::pin(future))).expect("runtime");
    match caught {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

struct CatchUnwind<F: Future>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
