//! Post-crash images: how they are named, enumerated, sampled and built.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::crash_analysis::{CrashState, SectorChoice};
use super::crash_log::CrashPoint;
use crate::device::SECTOR_BYTES;
use crate::dma::DmaPool;
use crate::memory::{MemoryDevice, MemoryDeviceConfig, MemoryStore};

/// Which image of a crash point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageChoice {
    /// A mixed-radix number over the choice sectors, in sector order: the
    /// first sector's candidate is `index % n0`, the next `(index / n0) % n1`,
    /// and so on. Index 0 is the durable-only image.
    Index(u64),
    /// Every sector holds its latest-submitted candidate: the image of a run
    /// that lost nothing.
    Newest,
    /// A sample drawn from a seeded generator: each pending write is present
    /// (3 in 8), absent (3 in 8) or torn at random sectors (2 in 8); a sector
    /// with several applied writes takes the latest submitted, or one at random
    /// (1 in 4) so that stale overlaps show up too.
    Seed(u64),
}

/// The name of one image: enough to rebuild it with `CrashLog::image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageId {
    pub point: CrashPoint,
    pub choice: ImageChoice,
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.choice {
            ImageChoice::Index(index) => write!(f, "{}, image index {index}", self.point),
            ImageChoice::Newest => write!(f, "{}, newest image", self.point),
            ImageChoice::Seed(seed) => write!(f, "{}, image seed {seed:#x}", self.point),
        }
    }
}

/// One post-crash image, not yet materialised.
#[derive(Debug, Clone)]
pub struct CrashImage {
    state: CrashState,
    choice: ImageChoice,
}

impl CrashImage {
    pub(crate) fn new(state: CrashState, choice: ImageChoice) -> Self {
        if let ImageChoice::Index(index) = choice {
            assert!(u128::from(index) < state.image_count(), "image index {index} out of range at {}", state.point());
        }
        CrashImage { state, choice }
    }

    pub fn id(&self) -> ImageId {
        ImageId { point: self.state.point(), choice: self.choice }
    }

    pub fn state(&self) -> &CrashState {
        &self.state
    }

    /// The candidate taken in each choice sector, in the order of
    /// [`CrashState::choices`].
    pub fn picks(&self) -> Vec<usize> {
        let choices = self.state.choices();
        match self.choice {
            ImageChoice::Index(index) => index_picks(choices, index),
            ImageChoice::Newest => choices.iter().map(|c| c.newest).collect(),
            ImageChoice::Seed(seed) => seeded_picks(&self.state, seed),
        }
    }

    /// The image's bytes: the state's base with the picked sectors written
    /// over it. Shares every chunk it does not change with the base.
    pub fn to_store(&self) -> MemoryStore {
        let inner = &self.state.inner;
        let store = inner.base.deep_clone();
        for (choice, pick) in inner.choices.iter().zip(self.picks()) {
            if pick == 0 {
                continue; // The base already holds the durable content.
            }
            let write = choice.candidates[pick].write.expect("only candidate 0 can be the initial content");
            let data = inner.log.writes[write].sector_data(choice.sector);
            store.write(choice.sector * SECTOR_BYTES as u64, data);
        }
        store
    }

    /// A memory device shaped like the recorded one (block size, capacity,
    /// volatile cache, limits) holding this image.
    pub fn to_device(&self, pool: Arc<DmaPool>) -> MemoryDevice {
        let info = &self.state.inner.log.info;
        let config = MemoryDeviceConfig {
            block_size_bytes: info.block_size_bytes,
            capacity_bytes: info.capacity_bytes(),
            volatile_write_cache: info.volatile_write_cache,
            queue_depth_max: info.queue_depth_max,
            max_transfer_bytes: info.max_transfer_bytes,
            reorder_seed: None,
        };
        self.to_device_with(&config, pool)
    }

    /// A memory device with `config` holding this image.
    pub fn to_device_with(&self, config: &MemoryDeviceConfig, pool: Arc<DmaPool>) -> MemoryDevice {
        MemoryDevice::with_store(config, pool, Arc::new(self.to_store()))
    }
}

fn index_picks(choices: &[SectorChoice], mut index: u64) -> Vec<usize> {
    let picks = choices
        .iter()
        .map(|c| {
            let radix = c.candidates.len() as u64;
            let pick = index % radix;
            index /= radix;
            pick as usize
        })
        .collect();
    debug_assert_eq!(index, 0, "index beyond the image count");
    picks
}

/// What a seeded sample does with one pending write.
#[derive(Debug, Clone, Copy)]
enum WriteFate {
    Present,
    Absent,
    /// Present in the sectors whose hash with this salt is odd.
    Torn(u64),
}

impl WriteFate {
    fn draw(rng: &mut ChaCha8Rng) -> Self {
        match rng.gen_range(0..8) {
            0..=2 => WriteFate::Present,
            3..=5 => WriteFate::Absent,
            _ => WriteFate::Torn(rng.gen()),
        }
    }

    fn covers(self, sector: u64) -> bool {
        match self {
            WriteFate::Present => true,
            WriteFate::Absent => false,
            WriteFate::Torn(salt) => splitmix64(salt ^ sector) & 1 == 1,
        }
    }
}

fn seeded_picks(state: &CrashState, seed: u64) -> Vec<usize> {
    let inner = &state.inner;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fates: HashMap<usize, WriteFate> =
        inner.pending_writes.iter().map(|&w| (w, WriteFate::draw(&mut rng))).collect();
    let submit_seq = |write: Option<usize>| write.map(|w| inner.log.writes[w].submit_seq);
    let mut applied = Vec::new();
    (inner.choices.iter())
        .map(|choice| {
            applied.clear();
            for (i, c) in choice.candidates.iter().enumerate() {
                let landed = match c.write {
                    None => false,
                    Some(_) if c.durable => true,
                    Some(w) => fates.get(&w).is_some_and(|fate| fate.covers(choice.sector)),
                };
                if landed {
                    applied.push(i);
                }
            }
            if applied.is_empty() {
                0
            } else if rng.gen_ratio(1, 4) {
                applied[rng.gen_range(0..applied.len())]
            } else {
                let newest = applied.iter().max_by_key(|&&i| submit_seq(choice.candidates[i].write));
                *newest.expect("applied is not empty")
            }
        })
        .collect()
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser).
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The images of one crash point, produced lazily.
#[derive(Debug, Clone)]
pub struct Images {
    state: CrashState,
    next: u64,
    end: u64,
    /// `None` for every image by index; `Some(salt)` for samples.
    salt: Option<u64>,
}

impl Images {
    pub(crate) fn all(state: CrashState, count: u64) -> Self {
        Images { state, next: 0, end: count, salt: None }
    }

    pub(crate) fn sampled(state: CrashState, n: u64, salt: u64) -> Self {
        Images { state, next: 0, end: n, salt: Some(salt) }
    }

    /// True when the images are every image of the point, not samples.
    pub fn is_exhaustive(&self) -> bool {
        self.salt.is_none()
    }

    fn choice(&self, position: u64) -> ImageChoice {
        match (self.salt, position) {
            (None, index) => ImageChoice::Index(index),
            (Some(_), 0) => ImageChoice::Index(0),
            (Some(_), 1) => ImageChoice::Newest,
            (Some(salt), i) => {
                let point = self.state.point().0;
                ImageChoice::Seed(splitmix64(salt ^ splitmix64(point.rotate_left(32) ^ i)))
            }
        }
    }
}

impl Iterator for Images {
    type Item = CrashImage;

    fn next(&mut self) -> Option<CrashImage> {
        if self.next >= self.end {
            return None;
        }
        let choice = self.choice(self.next);
        self.next += 1;
        Some(CrashImage::new(self.state.clone(), choice))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.end - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}
