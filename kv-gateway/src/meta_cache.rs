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

use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashTable;

use crate::meta::{Kind, Meta};

/// Bytes an entry costs beyond its key and value (table slot, headers).
const ENTRY_OVERHEAD_BYTES: usize = 96;

/// A ticket naming one reader's or writer's claim on a slot.
pub type Ticket = u64;

/// A known meta record but its string value (which follows the key in the
/// entry's bytes).
#[derive(Debug, Clone, Copy)]
struct Head {
    kind: Kind,
    expire_at_ms: u64,
    len: u64,
}

impl Head {
    fn of(meta: &Meta) -> Head {
        Head { kind: meta.kind, expire_at_ms: meta.expire_at_ms, len: meta.len }
    }
}

#[derive(Debug)]
enum Slot {
    /// The meta record as stored (`None`: the key has none); `used` is set
    /// by a hit and cleared by each eviction pass (second chance).
    Known {
        head: Option<Head>,
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

/// One key's slot. The key and a known string's value share one heap block,
/// and the table compares the full hash before the key: a hit over many keys
/// (which miss the CPU cache) reads the table and that one block.
#[derive(Debug)]
struct Entry {
    hash: u64,
    key_len: usize,
    /// The key, then the value of a known string.
    bytes: Vec<u8>,
    slot: Slot,
}

impl Entry {
    fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }

    fn cost_bytes(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD_BYTES
    }

    /// The cached meta of a known slot; a string's value only if
    /// `with_value` (else empty).
    fn meta(&self, head: Option<Head>, with_value: bool) -> Option<Meta> {
        let h = head?;
        let value = if with_value && h.kind == Kind::String { self.bytes[self.key_len..].to_vec() } else { Vec::new() };
        Some(Meta { kind: h.kind, expire_at_ms: h.expire_at_ms, value, len: h.len })
    }

    /// Replaces the slot; `value` (a known string's) follows the key. The
    /// block is reused: a value of the old one's size costs no allocation.
    fn set(&mut self, slot: Slot, value: &[u8]) {
        self.bytes.truncate(self.key_len);
        self.bytes.extend_from_slice(value);
        self.slot = slot;
    }
}

#[derive(Debug, Default)]
struct ShardCache {
    table: HashTable<Entry>,
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
    /// Keyed per process, so clients cannot choose keys that collide.
    hasher: RandomState,
}

/// A known slot's value bytes: the value of a string, nothing otherwise.
fn value_of(meta: &Option<Meta>) -> &[u8] {
    match meta {
        Some(m) if m.kind == Kind::String => &m.value,
        _ => &[],
    }
}

impl MetaCache {
    /// A cache of `bytes_max` in all (0: disabled), split evenly over shards.
    pub fn new(shard_count: u32, bytes_max: usize) -> MetaCache {
        let shards = (0..shard_count.max(1)).map(|_| Mutex::new(ShardCache::default())).collect();
        MetaCache { shards, bytes_max_per_shard: bytes_max / shard_count.max(1) as usize, hasher: RandomState::new() }
    }

    fn enabled(&self) -> bool {
        self.bytes_max_per_shard > 0
    }

    fn shard(&self, shard: u32) -> MutexGuard<'_, ShardCache> {
        let cell = &self.shards[shard as usize % self.shards.len()];
        cell.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The cached meta of `key` on `shard`, or a ticket to fill it with.
    pub fn lookup(&self, shard: u32, key: &[u8]) -> Lookup {
        self.lookup_with(shard, key, true)
    }

    /// [`MetaCache::lookup`] for a caller that replaces the value: a hit on
    /// a string comes back with an empty value (no copy of it).
    pub fn lookup_head(&self, shard: u32, key: &[u8]) -> Lookup {
        self.lookup_with(shard, key, false)
    }

    fn lookup_with(&self, shard: u32, key: &[u8], with_value: bool) -> Lookup {
        if !self.enabled() {
            return Lookup::Miss(None);
        }
        let hash = self.hash(key);
        let mut c = self.shard(shard);
        if let Some(e) = c.find_mut(hash, key) {
            match &mut e.slot {
                Slot::Known { head, used } => {
                    *used = true;
                    let head = *head;
                    return Lookup::Hit(e.meta(head, with_value));
                }
                Slot::Writing { .. } => return Lookup::Miss(None),
                Slot::Filling(_) => {}
            }
        }
        let ticket = c.take_ticket();
        c.put(hash, key, Slot::Filling(ticket), &[], self.bytes_max_per_shard);
        Lookup::Miss(Some(ticket))
    }

    /// Stores what a reader read from the tree, if no write came in between.
    pub fn fill(&self, shard: u32, key: &[u8], ticket: Option<Ticket>, meta: &Option<Meta>) {
        let Some(ticket) = ticket else { return };
        let hash = self.hash(key);
        let mut c = self.shard(shard);
        if matches!(c.find_mut(hash, key), Some(Entry { slot: Slot::Filling(t), .. }) if *t == ticket) {
            let slot = Slot::Known { head: meta.as_ref().map(Head::of), used: false };
            c.put(hash, key, slot, value_of(meta), self.bytes_max_per_shard);
        }
    }

    /// Marks `key` as being written; readers bypass the cache until
    /// [`MetaCache::end_write`] or [`MetaCache::abandon_write`].
    pub fn begin_write(&self, shard: u32, key: &[u8]) -> Option<Ticket> {
        if !self.enabled() {
            return None;
        }
        let hash = self.hash(key);
        let mut c = self.shard(shard);
        let ticket = c.take_ticket();
        c.put(hash, key, Slot::Writing { ticket, flushed: false }, &[], self.bytes_max_per_shard);
        Some(ticket)
    }

    /// The write's commit was applied and left `meta` (`None`: no meta record).
    pub fn end_write(&self, shard: u32, key: &[u8], ticket: Option<Ticket>, meta: Option<Meta>) {
        let Some(ticket) = ticket else { return };
        let hash = self.hash(key);
        let mut c = self.shard(shard);
        let flushed = match c.find_mut(hash, key) {
            Some(Entry { slot: Slot::Writing { ticket: t, flushed }, .. }) if *t == ticket => *flushed,
            _ => return,
        };
        if flushed {
            c.remove(hash, key);
        } else {
            let slot = Slot::Known { head: meta.as_ref().map(Head::of), used: false };
            c.put(hash, key, slot, value_of(&meta), self.bytes_max_per_shard);
        }
    }

    /// The write failed or was abandoned: what the tree holds is not known
    /// here, so the slot is emptied (if the write still owns it).
    pub fn abandon_write(&self, shard: u32, key: &[u8], ticket: Option<Ticket>) {
        let Some(ticket) = ticket else { return };
        let hash = self.hash(key);
        let mut c = self.shard(shard);
        if matches!(c.find_mut(hash, key), Some(Entry { slot: Slot::Writing { ticket: t, .. }, .. }) if *t == ticket) {
            c.remove(hash, key);
        }
    }

    /// Empties every shard's cache. Writes under way keep their claims but
    /// will empty their slots when they end.
    pub fn clear(&self) {
        for cell in &self.shards {
            let mut c = cell.lock().unwrap_or_else(|p| p.into_inner());
            c.table.retain(|e| match &mut e.slot {
                Slot::Writing { flushed, .. } => {
                    *flushed = true;
                    true
                }
                _ => false,
            });
            c.bytes = c.table.iter().map(Entry::cost_bytes).sum();
        }
    }

    /// Entries and bytes held, over all shards (for INFO and tests).
    pub fn usage(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), cell| {
            let c = cell.lock().unwrap_or_else(|p| p.into_inner());
            (n + c.table.len(), b + c.bytes)
        })
    }
}

impl ShardCache {
    fn take_ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        self.next_ticket
    }

    fn find_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut Entry> {
        self.table.find_mut(hash, |e| e.hash == hash && e.key() == key)
    }

    fn remove(&mut self, hash: u64, key: &[u8]) {
        if let Ok(found) = self.table.find_entry(hash, |e| e.hash == hash && e.key() == key) {
            let (old, _) = found.remove();
            self.bytes -= old.cost_bytes();
        }
    }

    fn put(&mut self, hash: u64, key: &[u8], slot: Slot, value: &[u8], bytes_max: usize) {
        let added = match self.find_mut(hash, key) {
            Some(e) => {
                let old = e.cost_bytes();
                e.set(slot, value);
                let new = e.cost_bytes();
                self.bytes -= old;
                new
            }
            None => {
                let mut bytes = Vec::with_capacity(key.len() + value.len());
                bytes.extend_from_slice(key);
                bytes.extend_from_slice(value);
                let e = Entry { hash, key_len: key.len(), bytes, slot };
                let cost = e.cost_bytes();
                self.table.insert_unique(hash, e, |e| e.hash);
                cost
            }
        };
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
            self.table.retain(|e| {
                if bytes <= target {
                    return true;
                }
                match &mut e.slot {
                    Slot::Writing { .. } => true,
                    Slot::Known { used, .. } if *used => {
                        *used = false;
                        true
                    }
                    _ => {
                        bytes -= e.cost_bytes();
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
    fn a_head_lookup_gives_type_and_expiry_without_the_value() {
        let c = MetaCache::new(1, 1 << 20);
        let Lookup::Miss(t) = c.lookup(0, b"k") else { panic!("empty cache hit") };
        let mut m = Meta::string(b"value".to_vec());
        m.expire_at_ms = 9;
        c.fill(0, b"k", t, &Some(m.clone()));
        let Lookup::Hit(Some(head)) = c.lookup_head(0, b"k") else { panic!("miss") };
        assert_eq!((head.kind, head.expire_at_ms, head.value.len()), (Kind::String, 9, 0));
        assert_eq!(hit(&c, b"k"), Some(Some(m)), "the value is still there for a full lookup");
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
