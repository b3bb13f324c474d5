//! A device in RAM, for tests and for benchmarks of the CPU path.
//!
//! Storage is sparse (64 KiB chunks allocated on first write; unwritten blocks
//! read as zeros), so a test can format a large device cheaply. Requests execute
//! at the next poll; with a reorder seed, the requests of each poll complete in a
//! seeded random order, which exercises callers that must not assume in-order
//! completion. The device itself loses nothing on a "crash"; crash images are
//! the crash recorder's business (see `test_devices`).
//!
//! Chunks are reference-counted and copied on write, so [`MemoryStore::deep_clone`]
//! costs one pointer per allocated chunk, not a copy of the bytes: the crash
//! recorder materialises thousands of post-crash images over one shared base.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::device::{BlockDevice, Completion, DeviceInfo, Op, QueuePair, Request, SubmitError};
use crate::dma::DmaPool;
use crate::error::{DeviceError, IoError};

const CHUNK_BYTES: u64 = 64 * 1024;

/// Shape of a memory device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryDeviceConfig {
    pub block_size_bytes: u32,
    pub capacity_bytes: u64,
    /// Reported to the engine; true makes the engine issue flushes as it would
    /// on a real SSD.
    pub volatile_write_cache: bool,
    pub queue_depth_max: u32,
    pub max_transfer_bytes: u32,
    /// When set, completions within one poll come back in a seeded random order.
    pub reorder_seed: Option<u64>,
}

impl Default for MemoryDeviceConfig {
    fn default() -> Self {
        Self {
            block_size_bytes: 4096,
            capacity_bytes: 1 << 30,
            volatile_write_cache: true,
            queue_depth_max: 256,
            max_transfer_bytes: 1 << 20,
            reorder_seed: None,
        }
    }
}

/// One chunk of a store. Shared between stores after a [`MemoryStore::deep_clone`]
/// and copied by the first store that writes to it.
#[derive(Debug, Clone)]
struct Chunk(Box<[u8]>);

type ChunkMap = HashMap<u64, Arc<Chunk>>;

/// The bytes of a memory device. Shared by its queue pairs, and by tests that
/// build crash images or inspect what reached the "medium".
#[derive(Debug, Default)]
pub struct MemoryStore {
    chunks: Mutex<ChunkMap>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, ChunkMap> {
        self.chunks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies `out.len()` bytes at byte `offset` into `out`.
    pub fn read(&self, offset: u64, out: &mut [u8]) {
        let chunks = self.lock();
        let mut done = 0usize;
        while done < out.len() {
            let pos = offset + done as u64;
            let (index, within) = (pos / CHUNK_BYTES, (pos % CHUNK_BYTES) as usize);
            let n = (CHUNK_BYTES as usize - within).min(out.len() - done);
            match chunks.get(&index) {
                Some(chunk) => out[done..done + n].copy_from_slice(&chunk.0[within..within + n]),
                None => out[done..done + n].fill(0),
            }
            done += n;
        }
    }

    /// Stores `data` at byte `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) {
        let mut chunks = self.lock();
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let (index, within) = (pos / CHUNK_BYTES, (pos % CHUNK_BYTES) as usize);
            let n = (CHUNK_BYTES as usize - within).min(data.len() - done);
            let shared = chunks.entry(index).or_insert_with(|| Arc::new(Chunk(vec![0u8; CHUNK_BYTES as usize].into())));
            // Copies the chunk first when another store still shares it.
            let chunk = Arc::make_mut(shared);
            chunk.0[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// An independent copy of the contents: later writes to either store are
    /// not seen by the other. Cheap (chunks are shared until one side writes
    /// to them), so tests may clone a large base per crash image.
    pub fn deep_clone(&self) -> MemoryStore {
        MemoryStore { chunks: Mutex::new(self.lock().clone()) }
    }

    /// Bytes of chunks actually allocated.
    pub fn resident_bytes(&self) -> u64 {
        self.lock().len() as u64 * CHUNK_BYTES
    }
}

/// A RAM-backed block device.
#[derive(Debug)]
pub struct MemoryDevice {
    info: DeviceInfo,
    pool: Arc<DmaPool>,
    store: Arc<MemoryStore>,
    reorder_seed: Option<u64>,
}

impl MemoryDevice {
    pub fn new(config: &MemoryDeviceConfig, pool: Arc<DmaPool>) -> Self {
        Self::with_store(config, pool, Arc::new(MemoryStore::new()))
    }

    /// A device over existing contents (a crash image, a copy of another device).
    pub fn with_store(config: &MemoryDeviceConfig, pool: Arc<DmaPool>, store: Arc<MemoryStore>) -> Self {
        assert!(config.block_size_bytes.is_power_of_two() && config.block_size_bytes >= 512);
        let info = DeviceInfo {
            name: "memory".to_owned(),
            block_size_bytes: config.block_size_bytes,
            capacity_blocks: config.capacity_bytes / u64::from(config.block_size_bytes),
            volatile_write_cache: config.volatile_write_cache,
            fua: true,
            max_transfer_bytes: config.max_transfer_bytes,
            queue_depth_max: config.queue_depth_max,
            atomic_write_blocks: 1,
        };
        Self { info, pool, store, reorder_seed: config.reorder_seed }
    }

    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }
}

impl BlockDevice for MemoryDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn dma_pool(&self) -> &Arc<DmaPool> {
        &self.pool
    }

    fn open_queue_pair(&self, queue_depth: u32) -> Result<Box<dyn QueuePair>, DeviceError> {
        if queue_depth == 0 {
            return Err(DeviceError::Queue("queue depth must be at least 1".into()));
        }
        let seed = self.reorder_seed.unwrap_or(0);
        Ok(Box::new(MemoryQueuePair {
            info: self.info.clone(),
            store: Arc::clone(&self.store),
            queue_depth: queue_depth.min(self.info.queue_depth_max),
            pending: Vec::new(),
            rng: self.reorder_seed.map(|_| ChaCha8Rng::seed_from_u64(seed)),
        }))
    }
}

#[derive(Debug)]
struct MemoryQueuePair {
    info: DeviceInfo,
    store: Arc<MemoryStore>,
    queue_depth: u32,
    pending: Vec<Request>,
    rng: Option<ChaCha8Rng>,
}

impl MemoryQueuePair {
    fn execute(&self, request: Request) -> Completion {
        let kind = request.op.kind();
        let lba = request.op.lba();
        let block = u64::from(self.info.block_size_bytes);
        let fail = |kind_err| Err(IoError::new(kind_err, kind, lba, &self.info.name));
        let (buf, result) = match request.op {
            Op::Read { lba, mut buf } => {
                let result = self.info.check_transfer(lba, buf.len()).or_else(fail);
                if result.is_ok() {
                    self.store.read(lba * block, &mut buf);
                }
                (Some(buf), result)
            }
            Op::Write { lba, buf, .. } => {
                let result = self.info.check_transfer(lba, buf.len()).or_else(fail);
                if result.is_ok() {
                    self.store.write(lba * block, &buf);
                }
                (Some(buf), result)
            }
            Op::Flush => (None, Ok(())),
        };
        Completion { tag: request.tag, kind, buf, result }
    }
}

impl QueuePair for MemoryQueuePair {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&mut self, request: Request) -> Result<(), SubmitError> {
        if self.pending.len() as u32 >= self.queue_depth {
            return Err(SubmitError::QueueFull(request));
        }
        self.pending.push(request);
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        let n = self.pending.len().min(max);
        if n == 0 {
            return 0;
        }
        let mut batch: Vec<Request> = self.pending.drain(..n).collect();
        if let Some(rng) = self.rng.as_mut() {
            batch.shuffle(rng);
        }
        for request in batch {
            let completion = self.execute(request);
            out.push(completion);
        }
        n
    }

    fn in_flight(&self) -> u32 {
        self.pending.len() as u32
    }

    fn queue_depth(&self) -> u32 {
        self.queue_depth
    }
}
