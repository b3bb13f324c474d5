//! Test devices: wrappers around any [`BlockDevice`](crate::BlockDevice) that
//! every engine crash and fault test runs through.
//!
//! - [`CrashRecorder`] logs every write and flush and, from the log, builds the
//!   images a device could hold after a power loss at any point of the run.
//! - [`FaultInjector`] makes chosen requests fail or return wrong data: bit
//!   flips, zeroed blocks, lost, misdirected and torn writes, EIO, latency.
//!
//! Both are ordinary block devices: the engine runs on them unchanged. They
//! compose; `FaultInjector` over `CrashRecorder` records what really reached
//! the device (a lost write is absent from every image), `CrashRecorder` over
//! `FaultInjector` records what the engine asked for.
//!
//! # The crash model
//!
//! The recorder numbers every event of the device — write submitted, write
//! completed, flush submitted, flush completed, test mark — in one sequence
//! shared by all queue pairs (a mutex orders them). A *crash point* `p` is the
//! moment after the first `p` events: events `0..p` happened, the rest did not.
//! Submissions are logged when the queue pair accepts them and completions when
//! the caller reaps them, so the log only ever places a submission early and a
//! completion late; every rule below is therefore conservative about
//! durability.
//!
//! At crash point `p`, with `W` ranging over writes submitted before `p`:
//!
//! - `W` is **durable** when it completed successfully before `p` and one of:
//!   the device reports no volatile write cache; `W` carried FUA and the device
//!   honours FUA; or some flush that completed successfully before `p` was
//!   *submitted* after `W` completed. A write that completed after a flush was
//!   submitted is not covered by that flush. A failed write is never durable.
//! - `W` **happens before** `V` when `W` completed before `V` was submitted.
//!   Two writes in flight together have no order (NVMe promises none).
//!
//! Images are built per 512-byte sector, independently. For a sector `s`, let
//! `m` be the submission of the latest-submitted durable write covering `s`.
//! The sector's **candidates** are:
//!
//! - the initial content, if no durable write covers `s`;
//! - every write covering `s` except those that completed before `m`, i.e.
//!   except writes that happen before some durable write covering `s` (a later
//!   durable write has replaced them for good). Durable and non-durable,
//!   completed or still in flight, all count.
//!
//! A post-crash image is one choice of candidate per sector. Choosing per
//! sector covers, in one rule, writes that are present, absent, or torn at any
//! sector boundary, and overlapping writes landing in any order. Where one
//! durable write is the latest for a sector and nothing else is pending there,
//! the sector has one candidate: the durable content. This is the model of the
//! device contract (`device.rs`), slightly sharpened: a stale write that a later
//! durable write overwrote cannot reappear.
//!
//! # Enumerating images
//!
//! A [`CrashState`] holds the analysis of one crash point: a *base* store with
//! the durable content and the list of sectors that have more than one
//! candidate. Images are identified by an [`ImageId`] — the crash point and an
//! [`ImageChoice`] — and [`CrashLog::image`] rebuilds the same image from the
//! same id. [`CrashState::images`] lists every image when there are at most
//! `budget` of them (mixed-radix indices over the choice sectors) and otherwise
//! `budget` sampled ones: the durable-only image, the newest image (every write
//! present), then seeded samples in which each pending write is present,
//! absent, or torn. A materialised image is a [`MemoryStore`](crate::memory::MemoryStore)
//! that shares the base's chunks and copies only the chunks it changes.
//!
//! ```text
//! let rec = Arc::new(CrashRecorder::new(inner, initial_image));
//! ... run a workload on rec (it is a BlockDevice), rec.mark("txn 17 durable") ...
//! let log = rec.log();
//! for state in log.states(log.flush_points()) {
//!     for image in state.images(64) {
//!         let dev = image.to_device(pool.clone());   // run recovery on it
//!     }
//! }
//! ```

mod crash_analysis;
mod crash_image;
mod crash_log;
mod crash_recorder;
mod fault_injector;
mod fault_queue;
mod fault_rule;

pub use crash_analysis::{Candidate, CrashState, SectorChoice};
pub use crash_image::{CrashImage, ImageChoice, ImageId, Images};
pub use crash_log::{CrashLog, CrashPoint, Event, FlushRecord, WriteRecord};
pub use crash_recorder::{CrashMarker, CrashRecorder, RecorderConfig};
pub use fault_injector::FaultInjector;
pub use fault_rule::{Fault, FaultRule, FaultRuleError, Misdirect, RuleId, RuleStats, Trigger, WriteFilter};

/// Gives a request refused by an inner device its caller's tag back: the
/// wrappers send requests under tags of their own.
pub(crate) fn retag(error: crate::SubmitError, tag: u64) -> crate::SubmitError {
    use crate::SubmitError;
    match error {
        SubmitError::QueueFull(mut r) => {
            r.tag = tag;
            SubmitError::QueueFull(r)
        }
        SubmitError::Invalid(mut r, e) => {
            r.tag = tag;
            SubmitError::Invalid(r, e)
        }
        SubmitError::Gone(mut r) => {
            r.tag = tag;
            SubmitError::Gone(r)
        }
    }
}
