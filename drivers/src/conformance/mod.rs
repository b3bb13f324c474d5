//! The device conformance suite: the contract of [`crate::device`], checked
//! against a live device. Every backend runs it — memory (in order and
//! reordered) and uring in `cargo test`, NVMe from a test binary inside a
//! QEMU guest — so it is a library function, not only `#[test]`s.
//!
//! ```no_run
//! # fn demo(device: &dyn keel_drivers::BlockDevice) {
//! use keel_drivers::conformance::{self, ConformanceOptions};
//! let report = conformance::run(device, &ConformanceOptions::default());
//! println!("{report}");
//! assert!(report.passed());
//! # }
//! ```
//!
//! The suite overwrites blocks at the start and the end of the device (see
//! [`checks`] for the layout) and exhausts the device's DMA pool for a moment:
//! run it on a device nothing else is using. Each check opens its own queue
//! pair and drops it at the end, so closing with requests in flight is
//! exercised too.

mod checks;
mod harness;

use std::fmt;
use std::time::Duration;

use crate::device::BlockDevice;

/// How the suite drives the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceOptions {
    /// The queue depth of the queue pairs the checks open (clamped by the
    /// device); the in-flight check keeps this many requests outstanding.
    pub queue_depth: u32,
    /// The longest any single wait for completions may take before the check
    /// fails as hung.
    pub wait_max: Duration,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        ConformanceOptions { queue_depth: 32, wait_max: Duration::from_secs(30) }
    }
}

/// One check of the suite.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub name: &'static str,
    /// The behaviour it proves, in a sentence.
    pub proves: &'static str,
    pub run: fn(&dyn BlockDevice, &ConformanceOptions) -> Verdict,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// The device lacks what the check needs (e.g. no completion descriptor);
    /// the reason says what.
    NotApplicable(String),
    Failed(String),
}

/// Every check's verdict, in order.
#[derive(Debug, Clone)]
pub struct Report {
    pub device: String,
    pub outcomes: Vec<(&'static str, Verdict)>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(|(_, v)| !matches!(v, Verdict::Failed(_)))
    }

    pub fn failures(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.outcomes.iter().filter_map(|(name, v)| match v {
            Verdict::Failed(why) => Some((*name, why.as_str())),
            _ => None,
        })
    }

    /// Panics with the whole report when a check failed (for tests).
    pub fn assert_passed(&self) {
        assert!(self.passed(), "device conformance failed:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance of {}:", self.device)?;
        for (name, verdict) in &self.outcomes {
            match verdict {
                Verdict::Passed => writeln!(f, "  pass  {name}")?,
                Verdict::NotApplicable(why) => writeln!(f, "  n/a   {name}: {why}")?,
                Verdict::Failed(why) => writeln!(f, "  FAIL  {name}: {why}")?,
            }
        }
        Ok(())
    }
}

/// The checks, in the order [`run`] runs them.
pub fn checks() -> &'static [Check] {
    checks::ALL
}

/// Runs every check against `device` and reports each verdict. A failing
/// check does not stop the others.
pub fn run(device: &dyn BlockDevice, options: &ConformanceOptions) -> Report {
    let outcomes = checks()
        .iter()
        .map(|check| {
            tracing::debug!(device = %device.info().name, check = check.name, "conformance check");
            (check.name, (check.run)(device, options))
        })
        .collect();
    Report { device: device.info().name.clone(), outcomes }
}
