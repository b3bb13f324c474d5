//! A bounded in-memory cache of meta records (a key's type, expiry and, for
//! a string, its value), one per shard, so that GET and the read every write
//! command makes before it writes do not walk the Bε-tree each time.
//!
//! The cache only ever holds what the tree holds (the record as stored,
//! expired or not; `None` for a key without a meta record), or nothing:
//!
//! - A reader that misses puts a `Filling` ticket in the slot, reads the tree,
//!   and stores its result only if its ticket is still there. Any write of
//!   the key in between replaced the ticket, so a read that raced a write
//!   never caches what the write replaced.
//! - A write marks the slot `Writing` (its own ticket) before it commits and,
//!   once the commit has been applied, stores the meta it left — only if its
//!   ticket is still there (a later writer of the same key took over) — or
//!   empties the slot when the outcome is unknown (an error). While a slot is
//!   `Writing` readers go to the tree, which each shard updates in LSN order,
//!   so no reader sees the new value and then the old one.
//!
//! Writers of a key are serialized by the engine's key locks (every gateway
//! write goes through `KeyTx`); FLUSHDB, which deletes without key locks,
//! empties the whole cache before and after its delete.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::meta::Meta;

/// Bytes an entry costs beyond its key and value (map slot, headers).
const ENTRY_OVERHEAD_BYTES: usize = 96;

/// A ticket naming one reader's or writer's claim on a slot.
pub type Ticket = u64;

#[derive(Debug)]
enum Slot {
    /// The meta record as stored (`None`: the key has none); `used` is set
    /// by a hit and cleared by each eviction pass (second chance).
    Known {
        meta: Option<Meta>,
        used: bool,
    },
    Filling(Ticket),
    /// `flushed`: FLUSHDB ran while the write was under way, so what the
    /// write left may be gone already; its end empties the slot instead.
    Writing {
        ticket: Ticket,
        flushed: bool,
    },
}

#[derive(Debug, Default)]
struct ShardCache {
    slots: HashMap<Vec<u8>, Slot>,
    bytes: usize,
    next_ticket: Ticket,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Option<Meta>),
    /// Read the tree; give the result to [`MetaCache::fill`] with the ticket
    /// (none: a write is under way, do not cache).
    Miss(Option<Ticket>),
}

/// The meta caches of every shard.
#[derive(Debug)]
pub struct MetaCache {
    shards: Vec<Mutex<ShardCache>>,
    bytes_max_per_shard: usize,
}

fn entry_bytes(key: &[u8], slot: &Slot) -> usize {
    let value = match slot {
        Slot::Known { meta: Some(m), .. } => m.value.len(),
        _ => 0,
    };
    key.len() + value + ENTRY_OVERHEAD_BYTES
}

impl MetaCache {
    /// A cache of `bytes_max` in all (0: disabled), split evenly over shards.
    pub fn new(shard_count: u32, bytes_max: usize) -> MetaCache {
        let shards = (0..shard_count.max(1)).map(|_| Mutex::new(ShardCache::default())).collect();
        MetaCache { shards, bytes_max_per_shard: bytes_max / shard_count.max(1) as usize }
    }

    fn enabled(&self) -> bool {
        self.bytes_max_per_shard > 0
    }

    fn shard(&self, shard: u32) -> MutexGuard<'_, ShardCache> {
        let cell = &self.shards[shard as usize % self.shards.len()];
        cell.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached meta of `key` on `shard`, or a ticket to fill it with.
    pub fn lookup(&self, shard: u32, key: &[u8]) -> Lookup {
        if !self.enabled() {
            return Lookup::Miss(None);
        }
        let mut c = self.shard(shard);
        match c.slots.get_mut(key) {
            Some(Slot::Known { meta, used }) => {
                *used = true;
                return Lookup::Hit(meta.clone());
            }
            Some(Slot::Writing { .. }) => return Lookup::Miss(None),
            Some(Slot::Filling(_)) | None => {}
        }
        let ticket = c.take_ticket();
        c.put(key, Slot::Filling(ticket), self.bytes_max_per_shard);
        Lookup::Miss(Some(ticket))
    }

    /// Stores what a reader read from the tree, if no write came in between.
    pub fn fill(&self, shard: u32, key: &[u8], ticket: Option<Ticket>, meta: &Option<Meta>) {
        let Some(ticket) = ticket else { return };
        let mut c = self.shard(shard);
        if matches!(c.slots.get(key), Some(Slot::Filling(t)) if *t == ticket) {
            c.put(key, Slot::Known { meta: meta.clone(), used: false }, self.bytes_max_per_shard);
        }
    }

    /// Marks `key` as being written; readers bypass the cache until
    /// [`MetaCache::end_write`] or [`MetaCache::abandon_write`].
    pub fn begin_write(&self, shard: u32, key: &[u8]) -> Option<Ticket> {
        if !self.enabled() {
            return None;
        }
        let mut c = self.shard(shard);
        let ticket = c.take_ticket();
        c.put(key, Slot::Writing { ticket, flushed: false }, self.bytes_max_per_shard);
        Some(ticket)
    }

    /// The write's commit was applied and left `meta` (`None`: no meta record).
    pub fn end_write(&self, shard: u32, key: &[u8], ticket: Option<Ticket>, meta: Option<Meta>) {
        let Some(ticket) = ticket else { return };
        let mut c = self.shard(shard);
        match c.slots.get(key) {
            Some(Slot::Writing { ticket: t, flushed: false }) if *t == ticket => {
                c.put(key, Slot::Known { meta, used: false }, self.bytes_max_per_shard);
            }
            Some(Slot::Writing { ticket: t, flushed: true }) if *t == ticket => c.remove(key),
            _ => {}
        }
    }

    /// The write failed or was abandoned: what the tree holds is not known
    /// here, so the slot is emptied (if the write still owns it).
    pub fn abandon_write(&self, shard: u32, key: &[u8], ticket: Option<Ticket>) {
        let Some(ticket) = ticket else { return };
        let mut c = self.shard(shard);
        if matches!(c.slots.get(key), Some(Slot::Writing { ticket: t, .. }) if *t == ticket) {
            c.remove(key);
        }
    }

    /// Empties every shard's cache. Writes under way keep their claims but
    /// will empty their slots when they end.
    pub fn clear(&self) {
        for cell in &self.shards {
            let mut c = cell.lock().unwrap_or_else(|p| p.into_inner());
            c.slots.retain(|_, slot| match slot {
                Slot::Writing { flushed, .. } => {
                    *flushed = true;
                    true
                }
                _ => false,
            });
            c.bytes = c.slots.iter().map(|(k, s)| entry_bytes(k, s)).sum();
        }
    }

    /// Entries and bytes held, over all shards (for INFO and tests).
    pub fn usage(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), cell| {
            let c = cell.lock().unwrap_or_else(|p| p.into_inner());
            (n + c.slots.len(), b + c.bytes)
        })
    }
}

impl ShardCache {
    fn take_ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        self.next_ticket
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.slots.remove(key) {
            self.bytes -= entry_bytes(key, &old);
        }
    }

    fn put(&mut self, key: &[u8], slot: Slot, bytes_max: usize) {
        let added = entry_bytes(key, &slot);
        match self.slots.get_mut(key) {
            Some(existing) => {
                self.bytes -= entry_bytes(key, existing);
                *existing = slot;
            }
            None => {
                self.slots.insert(key.to_vec(), slot);
            }
        }
        self.bytes += added;
        if self.bytes > bytes_max {
            self.evict(bytes_max - bytes_max / 4);
        }
    }

    /// Drops entries until at most `target` bytes are held: tickets of
    /// readers and entries not hit since the last pass first; a pass that
    /// frees too little clears the hit marks, so the next one frees more.
    /// Writes' claims stay.
    fn evict(&mut self, target: usize) {
        for _ in 0..2 {
            let mut bytes = self.bytes;
            self.slots.retain(|key, slot| {
                if bytes <= target {
                    return true;
                }
                match slot {
                    Slot::Writing { .. } => true,
                    Slot::Known { used, .. } if *used => {
                        *used = false;
                        true
                    }
                    _ => {
                        bytes -= entry_bytes(key, slot);
                        false
                    }
                }
            });
            self.bytes = bytes;
            if self.bytes <= target {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(v: &[u8]) -> Option<Meta> {
        Some(Meta::string(v.to_vec()))
    }

    fn hit(c: &MetaCache, key: &[u8]) -> Option<Option<Meta>> {
        match c.lookup(0, key) {
            Lookup::Hit(m) => Some(m),
            Lookup::Miss(_) => None,
        }
    }

    #[test]
    fn a_fill_is_cached_and_hit() {
        let c = MetaCache::new(1, 1 << 20);
        let Lookup::Miss(t) = c.lookup(0, b"k") else { panic!("empty cache hit") };
        c.fill(0, b"k", t, &string(b"v"));
        assert_eq!(hit(&c, b"k"), Some(string(b"v")));
        let Lookup::Miss(t) = c.lookup(0, b"absent") else { panic!("hit") };
        c.fill(0, b"absent", t, &None);
        assert_eq!(hit(&c, b"absent"), Some(None));
    }

    #[test]
    fn a_fill_that_raced_a_write_is_dropped() {
        let c = MetaCache::new(1, 1 << 20);
        let Lookup::Miss(read) = c.lookup(0, b"k") else { panic!("hit") };
        let write = c.begin_write(0, b"k");
        assert!(matches!(c.lookup(0, b"k"), Lookup::Miss(None)), "readers bypass a slot being written");
        c.fill(0, b"k", read, &string(b"old"));
        c.end_write(0, b"k", write, string(b"new"));
        assert_eq!(hit(&c, b"k"), Some(string(b"new")));
    }

    #[test]
    fn a_late_writer_does_not_overwrite_a_later_one() {
        let c = MetaCache::new(1, 1 << 20);
        let first = c.begin_write(0, b"k");
        let second = c.begin_write(0, b"k");
        c.end_write(0, b"k", second, string(b"second"));
        c.end_write(0, b"k", first, string(b"first"));
        c.abandon_write(0, b"k", first);
        assert_eq!(hit(&c, b"k"), Some(string(b"second")));
    }

    #[test]
    fn a_write_under_way_during_a_flush_leaves_nothing_cached() {
        let c = MetaCache::new(1, 1 << 20);
        let w = c.begin_write(0, b"k");
        c.clear();
        c.end_write(0, b"k", w, string(b"maybe flushed"));
        assert!(matches!(c.lookup(0, b"k"), Lookup::Miss(Some(_))));
    }

    #[test]
    fn an_abandoned_write_empties_its_slot() {
        let c = MetaCache::new(1, 1 << 20);
        let w = c.begin_write(0, b"k");
        c.abandon_write(0, b"k", w);
        assert_eq!(c.usage().0, 0);
        assert!(matches!(c.lookup(0, b"k"), Lookup::Miss(Some(_))));
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_keeps_writes_claims() {
        let budget = 64 << 10;
        let c = MetaCache::new(1, budget);
        let w = c.begin_write(0, b"claimed");
        for i in 0..10_000u32 {
            let key = i.to_le_bytes();
            if let Lookup::Miss(t) = c.lookup(0, &key) {
                c.fill(0, &key, t, &string(&[7; 100]));
            }
            assert!(c.usage().1 <= budget, "{} bytes held", c.usage().1);
        }
        c.end_write(0, b"claimed", w, string(b"kept"));
        assert_eq!(hit(&c, b"claimed"), Some(string(b"kept")));
        c.clear();
        assert_eq!(c.usage(), (0, 0));
    }

    #[test]
    fn a_disabled_cache_holds_nothing() {
        let c = MetaCache::new(2, 0);
        assert!(matches!(c.lookup(1, b"k"), Lookup::Miss(None)));
        assert_eq!(c.begin_write(1, b"k"), None);
        assert_eq!(c.usage(), (0, 0));
    }
}
