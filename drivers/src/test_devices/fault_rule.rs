//! Fault rules: which requests a fault hits, when, and what it does.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use crate::device::OpKind;
use crate::error::IoErrorKind;

/// The most bits one rule flips in one request.
pub const FLIP_BITS_MAX: u32 = 1024;
/// The longest latency a rule adds: tests wait for it.
pub const DELAY_MAX: Duration = Duration::from_secs(60);

/// Names a rule of a `FaultInjector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u64);

/// When a rule fires, counted over the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// Every matching request.
    Always,
    /// Only the `n`th matching request (1-based).
    Nth(u64),
    /// The first `k` matching requests.
    FirstK(u64),
    /// Each matching request with this probability, drawn from a generator
    /// seeded with the rule's seed (deterministic for one thread's order).
    Probability(f64),
}

/// Where a misdirected write lands instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misdirect {
    /// At this block.
    ToLba(u64),
    /// This many blocks away from the intended block.
    Offset(i64),
}

/// What a rule does to a request it fires on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Reads: flips `bits` distinct bits of the returned data; writes: of the
    /// stored data (the caller's buffer comes back unchanged). Only bits of
    /// blocks inside the rule's range are flipped.
    FlipBits { bits: u32 },
    /// Reads return zeros, writes store zeros, in the blocks inside the rule's
    /// range.
    Zero,
    /// The request fails with this error and the device does nothing.
    Fail(IoErrorKind),
    /// Writes: reported successful, nothing written.
    Lose,
    /// Writes: the data goes elsewhere, reported successful. A target past
    /// the end of the device wraps around the capacity.
    Misdirect(Misdirect),
    /// Writes: only the first `sectors` 512-byte sectors are written, reported
    /// successful. When the tear falls inside a logical block, the block is
    /// read, patched and rewritten (not atomic against other queue pairs);
    /// the patch needs a DMA buffer, and with the pool exhausted the request
    /// is refused as `QueueFull` after the rule counted it (an `Nth` rule then
    /// does not fire on the retry).
    Tear { sectors: u32 },
    /// The completion is held back this long after the device completed the
    /// request, then delivered by a later poll. Delays combine with one other
    /// fault: a request takes the first firing non-delay rule and the longest
    /// firing delay.
    Delay(Duration),
}

impl Fault {
    /// An I/O error with `EIO`, as a failing disk reports it.
    pub fn eio() -> Fault {
        Fault::Fail(IoErrorKind::Io { errno: libc::EIO })
    }

    /// The operations this fault can apply to.
    fn applies_to(&self, op: OpKind) -> bool {
        match self {
            Fault::FlipBits { .. } | Fault::Zero => matches!(op, OpKind::Read | OpKind::Write),
            Fault::Lose | Fault::Misdirect(_) | Fault::Tear { .. } => op == OpKind::Write,
            Fault::Fail(_) | Fault::Delay(_) => true,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::FlipBits { bits } => write!(f, "flip {bits} bits"),
            Fault::Zero => write!(f, "zero"),
            Fault::Fail(kind) => write!(f, "fail with {kind:?}"),
            Fault::Lose => write!(f, "lose"),
            Fault::Misdirect(to) => write!(f, "misdirect ({to:?})"),
            Fault::Tear { sectors } => write!(f, "tear after {sectors} sectors"),
            Fault::Delay(d) => write!(f, "delay {d:?}"),
        }
    }
}

/// Chooses writes by their data: tests aim a fault at one kind of block
/// (a leaf, a table page) by its contents when its address is not known in
/// advance, as with copy-on-write.
pub type WriteFilter = fn(&[u8]) -> bool;

/// A fault, the requests it targets, and when it fires.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// The kind of request the rule matches.
    pub op: OpKind,
    /// Blocks: a read or write matches when it overlaps them. Ignored for flushes.
    pub lbas: Range<u64>,
    pub trigger: Trigger,
    pub fault: Fault,
    /// Seeds the rule's generator (probability draws, bit positions).
    pub seed: u64,
    /// Writes only: the rule matches a write only when this accepts its
    /// data. A write it rejects is not counted by the trigger.
    pub write_filter: Option<WriteFilter>,
}

impl PartialEq for FaultRule {
    fn eq(&self, other: &Self) -> bool {
        // Filters compare by address: the same function is the same filter.
        let filter = |r: &FaultRule| r.write_filter.map(|f| f as usize);
        self.op == other.op
            && self.lbas == other.lbas
            && self.trigger == other.trigger
            && self.fault == other.fault
            && self.seed == other.seed
            && filter(self) == filter(other)
    }
}

impl FaultRule {
    /// A rule on reads overlapping `lbas`, firing always until told otherwise.
    pub fn reads(lbas: Range<u64>, fault: Fault) -> Self {
        Self::new(OpKind::Read, lbas, fault)
    }

    /// A rule on writes overlapping `lbas`.
    pub fn writes(lbas: Range<u64>, fault: Fault) -> Self {
        Self::new(OpKind::Write, lbas, fault)
    }

    /// A rule on flushes.
    pub fn flushes(fault: Fault) -> Self {
        Self::new(OpKind::Flush, 0..u64::MAX, fault)
    }

    pub fn new(op: OpKind, lbas: Range<u64>, fault: Fault) -> Self {
        FaultRule { op, lbas, trigger: Trigger::Always, fault, seed: 0, write_filter: None }
    }

    /// Fires on the `n`th matching request only (1-based).
    pub fn nth(self, n: u64) -> Self {
        FaultRule { trigger: Trigger::Nth(n), ..self }
    }

    /// Fires on the first `k` matching requests.
    pub fn first(self, k: u64) -> Self {
        FaultRule { trigger: Trigger::FirstK(k), ..self }
    }

    /// Fires on each matching request with probability `p`.
    pub fn probability(self, p: f64) -> Self {
        FaultRule { trigger: Trigger::Probability(p), ..self }
    }

    pub fn seed(self, seed: u64) -> Self {
        FaultRule { seed, ..self }
    }

    /// Matches only writes whose data `filter` accepts.
    pub fn when_written(self, filter: WriteFilter) -> Self {
        FaultRule { write_filter: Some(filter), ..self }
    }

    /// True when a request of `op` on blocks `lba..lba + blocks` is one this
    /// rule targets (a write's data is checked apart, by `accepts_data`).
    pub fn matches(&self, op: OpKind, lba: u64, blocks: u64) -> bool {
        if op != self.op {
            return false;
        }
        op == OpKind::Flush || (lba < self.lbas.end && lba.saturating_add(blocks) > self.lbas.start)
    }

    /// True unless the rule has a write filter that rejects `data`.
    pub fn accepts_data(&self, data: Option<&[u8]>) -> bool {
        match (self.write_filter, data) {
            (Some(filter), Some(data)) => filter(data),
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), FaultRuleError> {
        if !self.fault.applies_to(self.op) {
            return Err(FaultRuleError::WrongOp { fault: self.fault.to_string(), op: self.op });
        }
        if self.write_filter.is_some() && self.op != OpKind::Write {
            return Err(FaultRuleError::Invalid("a write filter applies to write rules only".into()));
        }
        if self.op != OpKind::Flush && self.lbas.is_empty() {
            return Err(FaultRuleError::Invalid(format!("the block range {:?} is empty", self.lbas)));
        }
        match self.trigger {
            Trigger::Nth(0) => return Err(FaultRuleError::Invalid("Nth counts from 1".into())),
            Trigger::FirstK(0) => return Err(FaultRuleError::Invalid("FirstK(0) never fires".into())),
            Trigger::Probability(p) if !(0.0..=1.0).contains(&p) => {
                return Err(FaultRuleError::Invalid(format!("probability {p} is not within 0..=1")));
            }
            _ => {}
        }
        match self.fault {
            Fault::FlipBits { bits } if bits == 0 || bits > FLIP_BITS_MAX => {
                Err(FaultRuleError::Invalid(format!("flip of {bits} bits is not within 1..={FLIP_BITS_MAX}")))
            }
            Fault::Delay(d) if d > DELAY_MAX => {
                Err(FaultRuleError::Invalid(format!("delay {d:?} exceeds the limit of {DELAY_MAX:?}")))
            }
            _ => Ok(()),
        }
    }
}

/// How often a rule matched a request and how often it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleStats {
    pub matched: u64,
    pub fired: u64,
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultRuleError {
    #[error("fault \"{fault}\" cannot apply to a {op}")]
    WrongOp { fault: String, op: OpKind },
    #[error("invalid fault rule: {0}")]
    Invalid(String),
    #[error("the fault injector already holds its limit of {0} rules")]
    TooMany(usize),
}
