//! Replays a crash log up to a crash point and works out, per 512-byte sector,
//! which contents the device may hold after a crash there (the model is in the
//! module docs of `test_devices`).
//!
//! The replay is incremental: durability only grows as events accumulate, so
//! the analyzer keeps a store of the durable content and the per-sector
//! durable writers, and moves forward event by event. A state snapshot costs
//! one cheap store clone plus the sectors of the writes still pending.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::crash_image::{CrashImage, ImageChoice, Images};
use super::crash_log::{CrashPoint, Event, LogData, WriteRecord};
use crate::device::SECTOR_BYTES;
use crate::memory::MemoryStore;

/// The durable writers of one sector.
#[derive(Debug, Clone)]
struct SectorDurable {
    /// The durable write with the latest submission: its data is the sector's
    /// durable content.
    newest: usize,
    /// The durable writes that no durable write covering the sector follows
    /// (happens after). Always holds `newest`; more than one only when
    /// overlapping durable writes were in flight together.
    maximal: Vec<usize>,
}

/// The replay state at one crash point.
#[derive(Debug)]
pub(crate) struct Analyzer {
    log: Arc<LogData>,
    /// Events `0..point` have been applied.
    point: u64,
    /// Initial image plus, per sector, the data of its `newest` durable writer.
    durable_store: MemoryStore,
    durable_sectors: HashMap<u64, SectorDurable>,
    /// Sectors whose `maximal` set has more than one write.
    multi_sectors: BTreeSet<u64>,
    /// Writes submitted and not (yet) durable, in submission order. A write
    /// that can no longer appear in any sector is dropped from it.
    open: BTreeSet<usize>,
    durable: Vec<bool>,
}

impl Analyzer {
    pub fn new(log: Arc<LogData>) -> Self {
        let durable_store = log.initial.deep_clone();
        let durable = vec![false; log.writes.len()];
        Analyzer {
            log,
            point: 0,
            durable_store,
            durable_sectors: HashMap::new(),
            multi_sectors: BTreeSet::new(),
            open: BTreeSet::new(),
            durable,
        }
    }

    pub fn point(&self) -> CrashPoint {
        CrashPoint(self.point)
    }

    /// Applies events up to (not including) `point`.
    pub fn advance_to(&mut self, point: CrashPoint) {
        assert!(point.0 >= self.point && point.0 <= self.log.events.len() as u64);
        let log = Arc::clone(&self.log);
        while self.point < point.0 {
            let event = &log.events[self.point as usize];
            self.point += 1;
            self.apply(event);
        }
    }

    fn apply(&mut self, event: &Event) {
        match *event {
            Event::WriteSubmitted { write } => {
                self.open.insert(write);
            }
            Event::WriteCompleted { write, ok } => {
                let record = &self.log.writes[write];
                let fua_honoured = record.fua && self.log.info.fua;
                if ok && (fua_honoured || !self.log.info.volatile_write_cache) {
                    self.make_durable(write);
                }
            }
            Event::FlushCompleted { flush, ok: true } => {
                let flush_submit_seq = self.log.flushes[flush].submit_seq;
                let covered: Vec<usize> = (self.open.iter().copied())
                    .filter(|&w| {
                        let record = &self.log.writes[w];
                        record.ok && record.complete_seq.is_some_and(|seq| seq < flush_submit_seq)
                    })
                    .collect();
                for write in covered {
                    self.make_durable(write);
                }
            }
            Event::FlushCompleted { ok: false, .. } | Event::FlushSubmitted { .. } | Event::Mark { .. } => {}
        }
    }

    fn make_durable(&mut self, write: usize) {
        let log = Arc::clone(&self.log);
        let record = &log.writes[write];
        debug_assert!(record.completed_before(self.point()) && record.ok);
        self.open.remove(&write);
        self.durable[write] = true;
        for sector in record.sectors() {
            self.add_durable_writer(sector, write, record);
        }
    }

    fn add_durable_writer(&mut self, sector: u64, write: usize, record: &WriteRecord) {
        let writes = &self.log.writes;
        let entry = self.durable_sectors.entry(sector).or_insert(SectorDurable { newest: write, maximal: Vec::new() });
        if writes[entry.newest].submit_seq <= record.submit_seq {
            entry.newest = write;
            self.durable_store.write(sector * SECTOR_BYTES as u64, record.sector_data(sector));
        }
        entry.maximal.push(write);
        // A durable writer that completed before the newest one was submitted
        // has been overwritten for good.
        let newest_submit_seq = writes[entry.newest].submit_seq;
        entry.maximal.retain(|&w| writes[w].complete_seq.is_some_and(|seq| seq > newest_submit_seq));
        debug_assert!(entry.maximal.contains(&entry.newest));
        if entry.maximal.len() > 1 {
            self.multi_sectors.insert(sector);
        } else {
            self.multi_sectors.remove(&sector);
        }
    }

    /// True when `record` can no longer be the content of `sector`: it
    /// completed before the newest durable writer of the sector was submitted.
    fn is_replaced(&self, record: &WriteRecord, sector: u64) -> bool {
        let Some(complete_seq) = record.complete_seq.filter(|&seq| seq < self.point) else {
            return false;
        };
        let durable = self.durable_sectors.get(&sector);
        durable.is_some_and(|d| complete_seq < self.log.writes[d.newest].submit_seq)
    }

    /// Forgets open writes replaced in every sector they cover: they cannot
    /// come back at any later point either (durability only grows).
    fn prune_open(&mut self) {
        let log = Arc::clone(&self.log);
        let replaced: Vec<usize> = (self.open.iter().copied())
            .filter(|&w| log.writes[w].sectors().all(|sector| self.is_replaced(&log.writes[w], sector)))
            .collect();
        for write in replaced {
            self.open.remove(&write);
        }
    }

    /// A snapshot of the analysis at the current point.
    pub fn state(&mut self) -> CrashState {
        self.prune_open();
        let mut pending: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for &write in &self.open {
            let record = &self.log.writes[write];
            for sector in record.sectors().filter(|&s| !self.is_replaced(record, s)) {
                pending.entry(sector).or_default().push(write);
            }
        }
        for &sector in &self.multi_sectors {
            pending.entry(sector).or_default();
        }
        let choices: Vec<SectorChoice> =
            pending.into_iter().map(|(sector, writers)| self.sector_choice(sector, writers)).collect();
        let pending_writes: BTreeSet<usize> =
            choices.iter().flat_map(|c| c.candidates.iter()).filter(|c| !c.durable).filter_map(|c| c.write).collect();
        let image_count = choices.iter().fold(1u128, |n, c| n.saturating_mul(c.candidates.len() as u128));
        CrashState {
            inner: Arc::new(StateInner {
                log: Arc::clone(&self.log),
                point: self.point(),
                base: Arc::new(self.durable_store.deep_clone()),
                choices,
                pending_writes: pending_writes.into_iter().collect(),
                durable: self.durable.clone(),
                image_count,
            }),
        }
    }

    /// The candidates of one sector: the durable content first, then the
    /// other unreplaced durable writers and the pending writers, by submission.
    fn sector_choice(&self, sector: u64, pending_writers: Vec<usize>) -> SectorChoice {
        let writes = &self.log.writes;
        let durable = self.durable_sectors.get(&sector);
        let base = Candidate { write: durable.map(|d| d.newest), durable: durable.is_some() };
        let mut others: Vec<Candidate> =
            pending_writers.into_iter().map(|w| Candidate { write: Some(w), durable: false }).collect();
        if let Some(d) = durable {
            let concurrent = d.maximal.iter().filter(|&&w| w != d.newest);
            others.extend(concurrent.map(|&w| Candidate { write: Some(w), durable: true }));
        }
        others.sort_by_key(|c| c.write.map(|w| writes[w].submit_seq));
        let mut candidates = vec![base];
        candidates.extend(others);
        assert!(candidates.len() >= 2, "sector {sector} listed as a choice with a single candidate");
        let submit_seq = |c: &Candidate| c.write.map(|w| writes[w].submit_seq);
        let newest = (0..candidates.len()).max_by_key(|&i| submit_seq(&candidates[i])).unwrap_or(0);
        SectorChoice { sector, candidates, newest }
    }
}

/// One content a sector may hold after the crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The write whose data it is; `None` for the initial content.
    pub write: Option<usize>,
    /// True when that write is durable at the crash point.
    pub durable: bool,
}

/// A sector with more than one candidate. Candidate 0 is the durable content
/// (what the state's base holds); the others follow in submission order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectorChoice {
    pub sector: u64,
    pub candidates: Vec<Candidate>,
    /// Index of the latest-submitted candidate.
    pub newest: usize,
}

/// The analysis of one crash point; cheap to clone.
#[derive(Debug, Clone)]
pub struct CrashState {
    pub(crate) inner: Arc<StateInner>,
}

#[derive(Debug)]
pub(crate) struct StateInner {
    pub log: Arc<LogData>,
    pub point: CrashPoint,
    pub base: Arc<MemoryStore>,
    pub choices: Vec<SectorChoice>,
    pub pending_writes: Vec<usize>,
    pub durable: Vec<bool>,
    pub image_count: u128,
}

impl CrashState {
    pub fn point(&self) -> CrashPoint {
        self.inner.point
    }

    /// The durable content: the initial image with every durable write applied
    /// (the newest submitted one wins where durable writes overlap).
    pub fn base(&self) -> &Arc<MemoryStore> {
        &self.inner.base
    }

    /// The sectors with more than one candidate, by sector number.
    pub fn choices(&self) -> &[SectorChoice] {
        &self.inner.choices
    }

    /// How many distinct choices of candidates there are (saturating).
    pub fn image_count(&self) -> u128 {
        self.inner.image_count
    }

    /// True when write `write` (an index into `CrashLog::writes`) is durable here.
    pub fn is_durable(&self, write: usize) -> bool {
        self.inner.durable.get(write).copied().unwrap_or(false)
    }

    /// The writes durable at this point, by index.
    pub fn durable_writes(&self) -> Vec<usize> {
        (0..self.inner.durable.len()).filter(|&w| self.inner.durable[w]).collect()
    }

    /// The non-durable writes that are a candidate in at least one sector.
    pub fn pending_writes(&self) -> &[usize] {
        &self.inner.pending_writes
    }

    /// Every image when there are at most `budget`, else `budget` sampled
    /// images (see [`CrashState::sampled_images`] with salt 0).
    pub fn images(&self, budget: u64) -> Images {
        if self.inner.image_count <= u128::from(budget) {
            self.all_images()
        } else {
            self.sampled_images(budget, 0)
        }
    }

    /// Every image, by index. Panics when there are more than `u64::MAX`:
    /// use [`CrashState::images`] with a budget.
    pub fn all_images(&self) -> Images {
        let count = u64::try_from(self.inner.image_count).expect("more images than an index can name; use a budget");
        Images::all(self.clone(), count)
    }

    /// `n` images: the durable-only image (index 0), the newest image (every
    /// write present), then seeded samples whose seeds derive from the crash
    /// point, their position and `salt` (change it to explore other samples).
    pub fn sampled_images(&self, n: u64, salt: u64) -> Images {
        Images::sampled(self.clone(), n, salt)
    }

    /// The image `choice` names at this point.
    pub fn image(&self, choice: ImageChoice) -> CrashImage {
        CrashImage::new(self.clone(), choice)
    }
}
