//! The fault injector device: a wrapper whose rules, changeable while the
//! device runs, decide which requests go wrong and how.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::fault_queue::FaultQueuePair;
use super::fault_rule::{Fault, FaultRule, FaultRuleError, Misdirect, RuleId, RuleStats, Trigger};
use crate::device::{BlockDevice, DeviceInfo, OpKind, QueuePair};
use crate::dma::DmaPool;
use crate::error::{DeviceError, IoErrorKind};

/// The most rules an injector holds at once.
pub const RULES_MAX: usize = 1024;

/// A block device that injects faults into the requests of the device it wraps.
///
/// Rules are checked in the order they were added. Every rule that matches a
/// request counts it; the first firing rule that is not a delay decides what
/// happens to it, and the longest firing delay holds its completion back.
#[derive(Debug)]
pub struct FaultInjector {
    inner: Arc<dyn BlockDevice>,
    rules: Arc<RuleTable>,
}

impl FaultInjector {
    pub fn new(inner: Arc<dyn BlockDevice>) -> Self {
        FaultInjector { inner, rules: Arc::new(RuleTable::default()) }
    }

    /// The device underneath.
    pub fn inner(&self) -> &Arc<dyn BlockDevice> {
        &self.inner
    }

    /// Adds a rule; it applies to requests submitted from now on.
    pub fn add(&self, rule: FaultRule) -> Result<RuleId, FaultRuleError> {
        rule.validate()?;
        let mut table = self.rules.lock();
        if table.rules.len() >= RULES_MAX {
            return Err(FaultRuleError::TooMany(RULES_MAX));
        }
        let id = RuleId(table.next_id);
        table.next_id += 1;
        let rng = ChaCha8Rng::seed_from_u64(rule.seed);
        table.rules.push(ActiveRule { id, rule, stats: RuleStats::default(), rng });
        Ok(id)
    }

    /// Removes a rule and returns its final counters.
    pub fn remove(&self, id: RuleId) -> Option<RuleStats> {
        let mut table = self.rules.lock();
        let position = table.rules.iter().position(|r| r.id == id)?;
        Some(table.rules.remove(position).stats)
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.lock().rules.clear();
    }

    /// The counters of a rule still installed.
    pub fn stats(&self, id: RuleId) -> Option<RuleStats> {
        self.rules.lock().rules.iter().find(|r| r.id == id).map(|r| r.stats)
    }

    /// How often a rule still installed has fired (0 for an unknown rule).
    pub fn fired(&self, id: RuleId) -> u64 {
        self.stats(id).map_or(0, |s| s.fired)
    }
}

impl BlockDevice for FaultInjector {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }

    fn dma_pool(&self) -> &Arc<DmaPool> {
        self.inner.dma_pool()
    }

    fn open_queue_pair(&self, queue_depth: u32) -> Result<Box<dyn QueuePair>, DeviceError> {
        let inner = self.inner.open_queue_pair(queue_depth)?;
        let pool = Arc::clone(self.inner.dma_pool());
        Ok(Box::new(FaultQueuePair::new(inner, pool, Arc::clone(&self.rules))))
    }
}

#[derive(Debug)]
struct ActiveRule {
    id: RuleId,
    rule: FaultRule,
    stats: RuleStats,
    rng: ChaCha8Rng,
}

#[derive(Debug, Default)]
struct Rules {
    rules: Vec<ActiveRule>,
    next_id: u64,
}

/// The rules, shared by the injector and its queue pairs.
#[derive(Debug, Default)]
pub(crate) struct RuleTable {
    table: Mutex<Rules>,
}

/// What to do with one request, resolved from the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Pass,
    /// Bit indices within the transfer.
    FlipBits(Vec<usize>),
    /// Byte range within the transfer.
    Zero(Range<usize>),
    Fail(IoErrorKind),
    Lose,
    /// Write to this block instead.
    Redirect(u64),
    /// Write only this many leading bytes (a whole number of sectors, less
    /// than the transfer).
    Tear(usize),
}

/// A request as the rules see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub op: OpKind,
    pub lba: u64,
    pub len_bytes: usize,
    /// A write's data, for rules with a write filter.
    pub data: Option<&'a [u8]>,
}

impl RuleTable {
    fn lock(&self) -> MutexGuard<'_, Rules> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the request against every matching rule and resolves the
    /// action and the delay.
    pub fn decide(&self, target: Target<'_>, info: &DeviceInfo) -> (Action, Option<Duration>) {
        let block_bytes = u64::from(info.block_size_bytes);
        let blocks = target.len_bytes as u64 / block_bytes;
        let mut table = self.lock();
        let mut action = None;
        let mut delay: Option<Duration> = None;
        for active in table.rules.iter_mut() {
            if !active.rule.matches(target.op, target.lba, blocks) || !active.rule.accepts_data(target.data) {
                continue;
            }
            active.stats.matched += 1;
            if let Fault::Delay(d) = active.rule.fault {
                if active.fires() {
                    active.stats.fired += 1;
                    delay = Some(delay.map_or(d, |current| current.max(d)));
                }
            } else if action.is_none() && active.fires() {
                active.stats.fired += 1;
                action = Some(active.resolve(target, info));
            }
        }
        (action.unwrap_or(Action::Pass), delay)
    }
}

impl ActiveRule {
    /// Whether the rule fires on the request just counted.
    fn fires(&mut self) -> bool {
        match self.rule.trigger {
            Trigger::Always => true,
            Trigger::Nth(n) => self.stats.matched == n,
            Trigger::FirstK(k) => self.stats.matched <= k,
            Trigger::Probability(p) => self.rng.gen_bool(p),
        }
    }

    fn resolve(&mut self, target: Target<'_>, info: &DeviceInfo) -> Action {
        match self.rule.fault {
            Fault::FlipBits { bits } => {
                let bytes = self.overlap_bytes(target, info);
                let total_bits = bytes.len() * 8;
                let count = (bits as usize).min(total_bits);
                let picked = index::sample(&mut self.rng, total_bits, count);
                Action::FlipBits(picked.into_iter().map(|bit| bytes.start * 8 + bit).collect())
            }
            Fault::Zero => Action::Zero(self.overlap_bytes(target, info)),
            Fault::Fail(kind) => Action::Fail(kind),
            Fault::Lose => Action::Lose,
            Fault::Misdirect(to) => Action::Redirect(misdirect_target(to, target, info)),
            Fault::Tear { sectors } => {
                let keep_bytes = sectors as usize * crate::device::SECTOR_BYTES;
                if keep_bytes >= target.len_bytes {
                    Action::Pass
                } else if keep_bytes == 0 {
                    Action::Lose
                } else {
                    Action::Tear(keep_bytes)
                }
            }
            Fault::Delay(_) => unreachable!("delays are resolved apart"),
        }
    }

    /// The bytes of the transfer that lie in the rule's block range.
    fn overlap_bytes(&self, target: Target<'_>, info: &DeviceInfo) -> Range<usize> {
        let block_bytes = u64::from(info.block_size_bytes);
        let end = target.lba + target.len_bytes as u64 / block_bytes;
        let first = target.lba.max(self.rule.lbas.start);
        let last = end.min(self.rule.lbas.end);
        debug_assert!(first < last, "a matching rule overlaps the request");
        ((first - target.lba) * block_bytes) as usize..((last - target.lba) * block_bytes) as usize
    }
}

/// The block a misdirected write lands on; wraps around the capacity so the
/// whole transfer stays on the device.
fn misdirect_target(to: Misdirect, target: Target<'_>, info: &DeviceInfo) -> u64 {
    let blocks = target.len_bytes as u64 / u64::from(info.block_size_bytes);
    let wanted = match to {
        Misdirect::ToLba(lba) => i128::from(lba),
        Misdirect::Offset(offset) => i128::from(target.lba) + i128::from(offset),
    };
    let starts = i128::from(info.capacity_blocks.saturating_sub(blocks)) + 1;
    wanted.rem_euclid(starts) as u64
}
