//! Helpers shared by the test-device tests: a memory device of a chosen shape
//! and a synchronous driver for one queue pair, so tests can script the exact
//! order of submissions and completions.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};
use keel_drivers::{BlockDevice, Completion, DmaPool, IoError, Op, QueuePair, Request};

pub const SECTOR: usize = 512;

pub fn pool() -> Arc<DmaPool> {
    Arc::new(DmaPool::for_tests(8 << 20))
}

pub fn memory(block_size_bytes: u32, volatile_write_cache: bool) -> Arc<MemoryDevice> {
    let config = MemoryDeviceConfig {
        block_size_bytes,
        capacity_bytes: 1 << 20,
        volatile_write_cache,
        queue_depth_max: 64,
        ..Default::default()
    };
    Arc::new(MemoryDevice::new(&config, pool()))
}

/// Drives one queue pair by hand.
pub struct Driver {
    pub qp: Box<dyn QueuePair>,
    pool: Arc<DmaPool>,
    next_tag: u64,
    done: HashMap<u64, Completion>,
}

impl Driver {
    pub fn new(device: &dyn BlockDevice) -> Self {
        let qp = device.open_queue_pair(32).expect("open queue pair");
        Driver { qp, pool: Arc::clone(device.dma_pool()), next_tag: 1, done: HashMap::new() }
    }

    fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    pub fn submit_write(&mut self, lba: u64, data: &[u8], fua: bool) -> u64 {
        let mut buf = self.pool.try_alloc(data.len()).expect("buffer");
        buf.set_len(data.len());
        buf.copy_from_slice(data);
        let tag = self.tag();
        self.qp.submit(Request { tag, op: Op::Write { lba, buf, fua } }).expect("submit write");
        tag
    }

    pub fn submit_flush(&mut self) -> u64 {
        let tag = self.tag();
        self.qp.submit(Request { tag, op: Op::Flush }).expect("submit flush");
        tag
    }

    pub fn submit_read(&mut self, lba: u64, len_bytes: usize) -> u64 {
        let mut buf = self.pool.try_alloc(len_bytes).expect("buffer");
        buf.set_len(len_bytes);
        buf.fill(0xEE);
        let tag = self.tag();
        self.qp.submit(Request { tag, op: Op::Read { lba, buf } }).expect("submit read");
        tag
    }

    /// One poll; completions are kept for `wait`. Returns how many arrived.
    pub fn poll(&mut self) -> usize {
        let mut out = Vec::new();
        let n = self.qp.poll(&mut out, 256);
        assert_eq!(n, out.len());
        for completion in out {
            assert!(self.done.insert(completion.tag, completion).is_none(), "tag completed twice");
        }
        n
    }

    /// Polls until `tag` completes (at most 10 s).
    pub fn wait(&mut self, tag: u64) -> Completion {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(completion) = self.done.remove(&tag) {
                return completion;
            }
            assert!(Instant::now() < deadline, "request {tag} never completed");
            if self.poll() == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    pub fn write(&mut self, lba: u64, data: &[u8], fua: bool) -> Result<(), IoError> {
        let tag = self.submit_write(lba, data, fua);
        self.wait(tag).result
    }

    pub fn flush(&mut self) -> Result<(), IoError> {
        let tag = self.submit_flush();
        self.wait(tag).result
    }

    pub fn read(&mut self, lba: u64, len_bytes: usize) -> Result<Vec<u8>, IoError> {
        let tag = self.submit_read(lba, len_bytes);
        let completion = self.wait(tag);
        completion.result.map(|()| completion.buf.expect("read buffer").to_vec())
    }
}

/// `sectors` sectors each filled with `fill`.
pub fn filled(sectors: usize, fill: u8) -> Vec<u8> {
    vec![fill; sectors * SECTOR]
}

/// The byte a sector is filled with; panics when the sector is not uniform.
pub fn sector_fill(store: &MemoryStore, sector: u64) -> u8 {
    let mut bytes = [0u8; SECTOR];
    store.read(sector * SECTOR as u64, &mut bytes);
    assert!(bytes.iter().all(|&b| b == bytes[0]), "sector {sector} is not uniform");
    bytes[0]
}

/// The fill bytes of sectors `0..count`.
pub fn fills(store: &MemoryStore, count: u64) -> Vec<u8> {
    (0..count).map(|sector| sector_fill(store, sector)).collect()
}
