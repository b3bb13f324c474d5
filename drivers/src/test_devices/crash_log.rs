//! The crash recorder's log: what happened, in one global order, and the crash
//! points a test may pick from it.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::crash_analysis::{Analyzer, CrashState};
use super::crash_image::{CrashImage, ImageId};
use crate::device::{DeviceInfo, SECTOR_BYTES};
use crate::memory::MemoryStore;

/// A moment of the recorded run: after the first `n` events of the log, before
/// the others. `CrashPoint(0)` is before anything happened; [`CrashLog::end`]
/// after everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CrashPoint(pub u64);

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "crash point {}", self.0)
    }
}

/// One entry of the log. Its sequence number is its index in [`CrashLog::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A write was accepted by a queue pair; `write` indexes [`CrashLog::writes`].
    WriteSubmitted { write: usize },
    /// A write's completion was reaped.
    WriteCompleted { write: usize, ok: bool },
    /// A flush was accepted by a queue pair; `flush` indexes [`CrashLog::flushes`].
    FlushSubmitted { flush: usize },
    /// A flush's completion was reaped.
    FlushCompleted { flush: usize, ok: bool },
    /// A label the test harness put into the sequence (`CrashRecorder::mark`).
    Mark { label: Arc<str> },
}

/// One write, with the data it carried (copied at submission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    /// First logical block, in the device's block size.
    pub lba: u64,
    /// First 512-byte sector.
    pub sector_first: u64,
    pub data: Arc<[u8]>,
    pub fua: bool,
    /// Which queue pair of the recorder submitted it (in opening order).
    pub queue: u32,
    pub submit_seq: u64,
    /// Sequence number of the completion, when it was reaped.
    pub complete_seq: Option<u64>,
    /// Whether the completion reported success (false while not completed).
    pub ok: bool,
}

impl WriteRecord {
    pub fn sector_count(&self) -> u64 {
        (self.data.len() / SECTOR_BYTES) as u64
    }

    /// The sectors the write covers.
    pub fn sectors(&self) -> std::ops::Range<u64> {
        self.sector_first..self.sector_first + self.sector_count()
    }

    /// The write's data for sector `sector` (which it must cover).
    pub fn sector_data(&self, sector: u64) -> &[u8] {
        assert!(
            self.sectors().contains(&sector),
            "write at sector {} does not cover sector {sector}",
            self.sector_first
        );
        let offset = (sector - self.sector_first) as usize * SECTOR_BYTES;
        &self.data[offset..offset + SECTOR_BYTES]
    }

    /// True when the write completed (successfully or not) before `point`.
    pub fn completed_before(&self, point: CrashPoint) -> bool {
        self.complete_seq.is_some_and(|seq| seq < point.0)
    }
}

/// One flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushRecord {
    pub queue: u32,
    pub submit_seq: u64,
    pub complete_seq: Option<u64>,
    pub ok: bool,
}

/// The immutable contents of a log snapshot, shared by the states and images
/// built from it.
#[derive(Debug)]
pub(crate) struct LogData {
    pub info: DeviceInfo,
    pub initial: Arc<MemoryStore>,
    pub events: Vec<Event>,
    pub writes: Vec<WriteRecord>,
    pub flushes: Vec<FlushRecord>,
    pub overflowed: bool,
}

/// A snapshot of a crash recorder's log, taken by `CrashRecorder::log`.
///
/// Analysing a crash point replays the log up to it. The log keeps the
/// analysis of the last point asked for and continues from there, so visiting
/// points in increasing order (as [`CrashLog::states`] does) costs one pass
/// over the log in all; going back starts again from the beginning.
#[derive(Debug)]
pub struct CrashLog {
    data: Arc<LogData>,
    cursor: Mutex<Option<Analyzer>>,
}

impl Clone for CrashLog {
    /// A clone shares the log and starts with its own analysis cursor, so
    /// clones can be explored from different threads without interfering.
    fn clone(&self) -> Self {
        CrashLog::new(Arc::clone(&self.data))
    }
}

impl CrashLog {
    pub(crate) fn new(data: Arc<LogData>) -> Self {
        CrashLog { data, cursor: Mutex::new(None) }
    }

    /// The recorded device (block size, capacity, volatile cache, FUA).
    pub fn info(&self) -> &DeviceInfo {
        &self.data.info
    }

    /// The device's contents when recording started.
    pub fn initial_image(&self) -> &Arc<MemoryStore> {
        &self.data.initial
    }

    pub fn events(&self) -> &[Event] {
        &self.data.events
    }

    pub fn writes(&self) -> &[WriteRecord] {
        &self.data.writes
    }

    pub fn flushes(&self) -> &[FlushRecord] {
        &self.data.flushes
    }

    /// True when the recorder hit its size limit and refused writes; such a
    /// log cannot be analysed.
    pub fn overflowed(&self) -> bool {
        self.data.overflowed
    }

    /// After every event.
    pub fn end(&self) -> CrashPoint {
        CrashPoint(self.data.events.len() as u64)
    }

    /// Every crash point, from before the first event to after the last.
    pub fn every_point(&self) -> Vec<CrashPoint> {
        (0..=self.data.events.len() as u64).map(CrashPoint).collect()
    }

    /// The point just after each flush completion (failed flushes included),
    /// in order: the states in which the most has just become durable.
    pub fn flush_points(&self) -> Vec<CrashPoint> {
        self.points_after(|event| matches!(event, Event::FlushCompleted { .. }))
    }

    /// Every flush point, and the end.
    pub fn flush_points_and_end(&self) -> Vec<CrashPoint> {
        let mut points = self.flush_points();
        if points.last() != Some(&self.end()) {
            points.push(self.end());
        }
        points
    }

    /// The marks, each with the point just after it.
    pub fn marks(&self) -> Vec<(CrashPoint, &str)> {
        let events = self.data.events.iter().enumerate();
        events
            .filter_map(|(seq, event)| match event {
                Event::Mark { label } => Some((CrashPoint(seq as u64 + 1), &**label)),
                _ => None,
            })
            .collect()
    }

    /// The point just after the first mark labelled `label`.
    pub fn mark_point(&self, label: &str) -> Option<CrashPoint> {
        self.marks().into_iter().find(|(_, l)| *l == label).map(|(point, _)| point)
    }

    /// The labels of the marks placed before `point`: what the harness had
    /// seen acknowledged when the crash happened.
    pub fn marks_before(&self, point: CrashPoint) -> Vec<&str> {
        self.marks().into_iter().filter(|(p, _)| *p <= point).map(|(_, label)| label).collect()
    }

    fn points_after(&self, select: impl Fn(&Event) -> bool) -> Vec<CrashPoint> {
        let events = self.data.events.iter().enumerate();
        events.filter(|(_, event)| select(event)).map(|(seq, _)| CrashPoint(seq as u64 + 1)).collect()
    }

    /// The analysis of one crash point: its durable content and its choices.
    pub fn state_at(&self, point: CrashPoint) -> CrashState {
        assert!(!self.data.overflowed, "the crash recorder overflowed its limit; raise RecorderConfig::log_bytes_max");
        assert!(point <= self.end(), "{point} is past the end of the log ({})", self.end());
        let mut cursor = self.lock_cursor();
        let behind = cursor.as_ref().is_some_and(|analyzer| analyzer.point() > point);
        if cursor.is_none() || behind {
            *cursor = Some(Analyzer::new(Arc::clone(&self.data)));
        }
        let analyzer = cursor.as_mut().expect("cursor set just above");
        analyzer.advance_to(point);
        analyzer.state()
    }

    /// The states at `points`, analysed lazily; increasing points cost one
    /// pass over the log in all.
    pub fn states<'a>(
        &'a self,
        points: impl IntoIterator<Item = CrashPoint> + 'a,
    ) -> impl Iterator<Item = CrashState> + 'a {
        points.into_iter().map(move |point| self.state_at(point))
    }

    /// Rebuilds the image `id` names.
    pub fn image(&self, id: ImageId) -> CrashImage {
        self.state_at(id.point).image(id.choice)
    }

    fn lock_cursor(&self) -> MutexGuard<'_, Option<Analyzer>> {
        self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }
}
