//! The crash recorder device: passes every request to the device it wraps and
//! logs writes (with a copy of their data) and flushes in one global sequence.

use std::collections::{HashMap, VecDeque};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use super::crash_log::{CrashLog, CrashPoint, Event, FlushRecord, LogData, WriteRecord};
use super::retag;
use crate::device::{BlockDevice, Completion, DeviceInfo, Op, QueuePair, Request, SubmitError, SECTOR_BYTES};
use crate::dma::DmaPool;
use crate::error::{DeviceError, IoError, IoErrorKind};
use crate::memory::{MemoryDevice, MemoryStore};

/// Limits of a recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderConfig {
    /// The most bytes of write data the log keeps. Writes past it fail with
    /// `IoErrorKind::Rejected` and the log is marked overflowed.
    pub log_bytes_max: u64,
    /// The most events the log keeps; past it, writes and flushes fail alike.
    pub events_max: u64,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self { log_bytes_max: 1 << 30, events_max: 1 << 24 }
    }
}

/// Status reported for requests refused because the log is full.
const STATUS_LOG_FULL: u32 = 0x4C4F_4746;

/// A block device that records what happens to the device it wraps.
#[derive(Debug)]
pub struct CrashRecorder {
    inner: Arc<dyn BlockDevice>,
    initial: Arc<MemoryStore>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: RecorderConfig,
    recording: Mutex<Recording>,
}

#[derive(Debug, Default)]
struct Recording {
    events: Vec<Event>,
    writes: Vec<WriteRecord>,
    flushes: Vec<FlushRecord>,
    data_bytes: u64,
    overflowed: bool,
    queues_opened: u32,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Recording> {
        self.recording.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Recording {
    fn next_seq(&self) -> u64 {
        self.events.len() as u64
    }

    /// Whether one more event, carrying `data_bytes` of write data, fits.
    fn has_room(&mut self, config: &RecorderConfig, data_bytes: u64) -> bool {
        let fits = self.events.len() as u64 + 2 <= config.events_max
            && self.data_bytes.saturating_add(data_bytes) <= config.log_bytes_max;
        if !fits && !self.overflowed {
            tracing::error!(
                log_bytes_max = config.log_bytes_max,
                events_max = config.events_max,
                "crash recorder log is full; refusing further writes and flushes"
            );
            self.overflowed = true;
        }
        fits
    }
}

impl CrashRecorder {
    /// Records `inner`, whose contents at this moment are `initial_image`
    /// (an empty store for a device that reads as zeros).
    pub fn new(inner: Arc<dyn BlockDevice>, initial_image: Arc<MemoryStore>) -> Self {
        Self::with_config(inner, initial_image, RecorderConfig::default())
    }

    pub fn with_config(inner: Arc<dyn BlockDevice>, initial_image: Arc<MemoryStore>, config: RecorderConfig) -> Self {
        let block_bytes = inner.info().block_size_bytes as usize;
        assert!(block_bytes.is_multiple_of(SECTOR_BYTES), "block size {block_bytes} is not a multiple of a sector");
        let shared = Arc::new(Shared { config, recording: Mutex::new(Recording::default()) });
        CrashRecorder { inner, initial: initial_image, shared }
    }

    /// Records a memory device; its current contents are the initial image.
    pub fn over_memory(inner: Arc<MemoryDevice>) -> Self {
        let initial = Arc::new(inner.store().deep_clone());
        Self::new(inner, initial)
    }

    /// The device underneath.
    pub fn inner(&self) -> &Arc<dyn BlockDevice> {
        &self.inner
    }

    /// A snapshot of the log so far (cheap: write data is shared).
    pub fn log(&self) -> CrashLog {
        let recording = self.shared.lock();
        let data = LogData {
            info: self.inner.info().clone(),
            initial: Arc::clone(&self.initial),
            events: recording.events.clone(),
            writes: recording.writes.clone(),
            flushes: recording.flushes.clone(),
            overflowed: recording.overflowed,
        };
        CrashLog::new(Arc::new(data))
    }

    /// Puts a labelled mark into the event sequence and returns the crash
    /// point just after it.
    pub fn mark(&self, label: &str) -> CrashPoint {
        self.marker().mark(label)
    }

    /// A handle that places marks, for tasks that do not hold the recorder.
    pub fn marker(&self) -> CrashMarker {
        CrashMarker { shared: Arc::clone(&self.shared) }
    }
}

/// Places marks into a recorder's event sequence; cheap to clone and send.
#[derive(Debug, Clone)]
pub struct CrashMarker {
    shared: Arc<Shared>,
}

impl CrashMarker {
    /// Puts a labelled mark into the event sequence and returns the crash
    /// point just after it. Marks are not limited by `events_max`: a test
    /// places few of them.
    pub fn mark(&self, label: &str) -> CrashPoint {
        let mut recording = self.shared.lock();
        recording.events.push(Event::Mark { label: Arc::from(label) });
        CrashPoint(recording.next_seq())
    }
}

impl BlockDevice for CrashRecorder {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }

    fn dma_pool(&self) -> &Arc<DmaPool> {
        self.inner.dma_pool()
    }

    fn open_queue_pair(&self, queue_depth: u32) -> Result<Box<dyn QueuePair>, DeviceError> {
        let inner = self.inner.open_queue_pair(queue_depth)?;
        let queue = {
            let mut recording = self.shared.lock();
            recording.queues_opened += 1;
            recording.queues_opened - 1
        };
        Ok(Box::new(RecorderQueuePair {
            inner,
            shared: Arc::clone(&self.shared),
            queue,
            next_tag: 0,
            in_flight: HashMap::new(),
            refused: VecDeque::new(),
            scratch: Vec::new(),
        }))
    }
}

/// What the recorder remembers about a request the inner device holds.
#[derive(Debug)]
struct InFlight {
    caller_tag: u64,
    logged: Logged,
}

#[derive(Debug, Clone, Copy)]
enum Logged {
    Write(usize),
    Flush(usize),
    /// Reads, and malformed requests the inner device will reject.
    Nothing,
}

#[derive(Debug)]
struct RecorderQueuePair {
    inner: Box<dyn QueuePair>,
    shared: Arc<Shared>,
    queue: u32,
    /// Tags for the inner device: the recorder's own, so callers' tags need
    /// not be unique.
    next_tag: u64,
    in_flight: HashMap<u64, InFlight>,
    /// Requests refused because the log is full, completed at the next poll.
    refused: VecDeque<Completion>,
    scratch: Vec<Completion>,
}

/// What a submission will add to the log, taken from the request before the
/// request moves to the inner device.
#[derive(Debug)]
enum ToLog {
    Write { lba: u64, fua: bool, data: Arc<[u8]> },
    Flush,
    Nothing,
}

impl ToLog {
    /// Writes carry a copy of their data; malformed writes are not logged (the
    /// inner device rejects them).
    fn of(op: &Op, info: &DeviceInfo) -> ToLog {
        match op {
            Op::Write { lba, buf, fua } if info.check_transfer(*lba, buf.len()).is_ok() => {
                ToLog::Write { lba: *lba, fua: *fua, data: Arc::from(&buf[..]) }
            }
            Op::Flush => ToLog::Flush,
            _ => ToLog::Nothing,
        }
    }

    fn data_bytes(&self) -> u64 {
        match self {
            ToLog::Write { data, .. } => data.len() as u64,
            _ => 0,
        }
    }
}

impl RecorderQueuePair {
    /// Logs a submission; called with the recording locked, after the inner
    /// device accepted the request.
    fn log_submit(&self, recording: &mut Recording, entry: ToLog) -> Logged {
        let seq = recording.next_seq();
        match entry {
            ToLog::Write { lba, fua, data } => {
                let block_bytes = u64::from(self.inner.info().block_size_bytes);
                let write = recording.writes.len();
                recording.data_bytes += data.len() as u64;
                recording.writes.push(WriteRecord {
                    lba,
                    sector_first: lba * block_bytes / SECTOR_BYTES as u64,
                    data,
                    fua,
                    queue: self.queue,
                    submit_seq: seq,
                    complete_seq: None,
                    ok: false,
                });
                recording.events.push(Event::WriteSubmitted { write });
                Logged::Write(write)
            }
            ToLog::Flush => {
                let flush = recording.flushes.len();
                recording.flushes.push(FlushRecord {
                    queue: self.queue,
                    submit_seq: seq,
                    complete_seq: None,
                    ok: false,
                });
                recording.events.push(Event::FlushSubmitted { flush });
                Logged::Flush(flush)
            }
            ToLog::Nothing => Logged::Nothing,
        }
    }

    fn log_completion(recording: &mut Recording, logged: Logged, ok: bool) {
        let seq = recording.next_seq();
        match logged {
            Logged::Write(write) => {
                let record = &mut recording.writes[write];
                record.complete_seq = Some(seq);
                record.ok = ok;
                recording.events.push(Event::WriteCompleted { write, ok });
            }
            Logged::Flush(flush) => {
                let record = &mut recording.flushes[flush];
                record.complete_seq = Some(seq);
                record.ok = ok;
                recording.events.push(Event::FlushCompleted { flush, ok });
            }
            Logged::Nothing => {}
        }
    }

    fn refuse(&mut self, request: Request) {
        let kind = request.op.kind();
        let lba = request.op.lba();
        let name = &self.inner.info().name;
        let error = IoError::new(IoErrorKind::Rejected { status: STATUS_LOG_FULL }, kind, lba, name);
        let completion = Completion { tag: request.tag, kind, buf: request.op.into_buf(), result: Err(error) };
        self.refused.push_back(completion);
    }
}

impl QueuePair for RecorderQueuePair {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }

    fn submit(&mut self, request: Request) -> Result<(), SubmitError> {
        if self.in_flight() >= self.queue_depth() {
            return Err(SubmitError::QueueFull(request));
        }
        let entry = ToLog::of(&request.op, self.inner.info());
        let shared = Arc::clone(&self.shared);
        // The lock is held across the inner submission so that the logged
        // order of submissions is the order the inner device saw them in.
        let mut recording = shared.lock();
        let logs = !matches!(entry, ToLog::Nothing);
        if logs && !recording.has_room(&shared.config, entry.data_bytes()) {
            drop(recording);
            self.refuse(request);
            return Ok(());
        }
        let caller_tag = request.tag;
        let inner_tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        if let Err(error) = self.inner.submit(Request { tag: inner_tag, op: request.op }) {
            return Err(retag(error, caller_tag));
        }
        let logged = self.log_submit(&mut recording, entry);
        self.in_flight.insert(inner_tag, InFlight { caller_tag, logged });
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, max: usize) -> usize {
        let mut delivered = 0;
        while delivered < max {
            let Some(completion) = self.refused.pop_front() else { break };
            out.push(completion);
            delivered += 1;
        }
        if delivered == max {
            return delivered;
        }
        let mut completions = std::mem::take(&mut self.scratch);
        self.inner.poll(&mut completions, max - delivered);
        if !completions.is_empty() {
            let mut recording = self.shared.lock();
            for mut completion in completions.drain(..) {
                let Some(in_flight) = self.in_flight.remove(&completion.tag) else {
                    tracing::error!(tag = completion.tag, "crash recorder: completion for an unknown tag; dropped");
                    continue;
                };
                Self::log_completion(&mut recording, in_flight.logged, completion.result.is_ok());
                completion.tag = in_flight.caller_tag;
                out.push(completion);
                delivered += 1;
            }
        }
        self.scratch = completions;
        delivered
    }

    fn in_flight(&self) -> u32 {
        self.inner.in_flight() + self.refused.len() as u32
    }

    fn queue_depth(&self) -> u32 {
        self.inner.queue_depth()
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.completion_fd()
    }

    fn prepare_to_sleep(&mut self) -> bool {
        self.refused.is_empty() && self.inner.prepare_to_sleep()
    }
}
