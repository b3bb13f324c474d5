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
//! - A write claims the slot (`Writing`, its own ticket) as it reads the key,
//!   once it holds the key's lock: [`MetaCache::claim_all`] reads and claims
//!   every key of a `KeyTx` in one pass, one mutex acquisition per shard and
//!   one hash per key (kept in the [`Claim`] for the end). Once the commit
//!   has been applied the write stores the meta it left — only if its ticket
//!   is still there (a later writer of the same key took over) — or empties
//!   the slot when the outcome is unknown (an error). While a slot is
//!   `Writing` readers go to the tree, which each shard updates in LSN order,
//!   so no reader sees the new value and then the old one.
//! - A claim whose holder writes nothing to the key (SET NX of an existing
//!   key, MGET, an error before the commit) is released: the slot gets back
//!   the record as stored when it was claimed (the hit's entry, kept in the
//!   slot, or what the holder read from the tree), which no one else can
//!   have changed while the key was locked — unless FLUSHDB ran, and then
//!   the slot is emptied.
//!
//! Writers of a key are serialized by the engine's key locks (every gateway
//! write goes through `KeyTx`); FLUSHDB, which deletes without key locks,
//! empties the whole cache before and after its delete.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashTable;

use crate::meta::{Kind, Meta};

/// Most key and value bytes an entry holds inside itself: an entry whose
/// key and string value fit is read from the table's bucket alone (no heap
/// block, so a hit costs one dependent cache miss less); a longer one keeps
/// them in one heap block. Sized so that an entry is 192 bytes, three cache
/// lines (checked by a test).
const INLINE_BYTES: usize = 134;

/// Bytes an entry costs beyond its heap block, if any: its bucket (the
/// table keeps at most 7 entries in 8 buckets) and control byte.
const ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<Entry>() * 8 / 7 + 1;

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
    /// `before`: the record as stored when the write claimed the slot, if
    /// known (a string's value stays in the entry's bytes), for a release.
    Writing {
        ticket: Ticket,
        flushed: bool,
        before: Option<Option<Head>>,
    },
}

/// A key, then a known string's value: inside the entry when both fit
/// [`INLINE_BYTES`], else in one heap block.
#[derive(Debug)]
enum Bytes {
    Inline { len: u8, buf: [u8; INLINE_BYTES] },
    Heap(Vec<u8>),
}

impl Bytes {
    fn new(key: &[u8], value: &[u8]) -> Bytes {
        let len = key.len() + value.len();
        match u8::try_from(len) {
            Ok(short) if len <= INLINE_BYTES => {
                let mut buf = [0; INLINE_BYTES];
                buf[..key.len()].copy_from_slice(key);
                buf[key.len()..len].copy_from_slice(value);
                Bytes::Inline { len: short, buf }
            }
            _ => {
                let mut block = Vec::with_capacity(len);
                block.extend_from_slice(key);
                block.extend_from_slice(value);
                Bytes::Heap(block)
            }
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, buf } => &buf[..usize::from(*len)],
            Bytes::Heap(block) => block,
        }
    }

    /// Bytes held on the heap.
    fn heap_bytes(&self) -> usize {
        match self {
            Bytes::Inline { .. } => 0,
            Bytes::Heap(block) => block.len(),
        }
    }

    /// Keeps the first `key_len` bytes (the key) and puts `value` after
    /// them. A heap block is reused for a value that still needs one (one of
    /// the old one's size costs no allocation).
    fn set_value(&mut self, key_len: usize, value: &[u8]) {
        let len = key_len + value.len();
        match self {
            Bytes::Inline { len: held, buf } if len <= INLINE_BYTES => {
                buf[key_len..len].copy_from_slice(value);
                *held = u8::try_from(len).expect("inline bytes fit a u8");
            }
            Bytes::Heap(block) if len > INLINE_BYTES => {
                block.truncate(key_len);
                block.extend_from_slice(value);
            }
            _ => *self = Bytes::new(&self.as_slice()[..key_len], value),
        }
    }
}

/// One key's slot. Short keys and values live in the entry itself (a hit
/// reads the table alone), longer ones in one heap block; the table compares
/// the full hash before the key.
#[derive(Debug)]
struct Entry {
    hash: u64,
    key_len: usize,
    /// The key, then the value of a known string.
    bytes: Bytes,
    slot: Slot,
}

impl Entry {
    fn key(&self) -> &[u8] {
        &self.bytes.as_slice()[..self.key_len]
    }

    fn cost_bytes(&self) -> usize {
        self.bytes.heap_bytes() + ENTRY_OVERHEAD_BYTES
    }

    /// The cached meta of a known slot; a string's value only if
    /// `with_value` (else empty).
    fn meta(&self, head: Option<Head>, with_value: bool) -> Option<Meta> {
        let h = head?;
        let value = if with_value && h.kind == Kind::String {
            self.bytes.as_slice()[self.key_len..].to_vec()
        } else {
            Vec::new()
        };
        Some(Meta { kind: h.kind, expire_at_ms: h.expire_at_ms, value, len: h.len })
    }

    /// Replaces the slot; `value` (a known string's) follows the key.
    fn set(&mut self, slot: Slot, value: &[u8]) {
        self.bytes.set_value(self.key_len, value);
        self.slot = slot;
    }
}

#[derive(Debug, Default)]
struct ShardCache {
    table: HashTable<Entry>,
    bytes: usize,
    next_ticket: Ticket,
}

/// A write's claim on one key's slot, from its read to its end. The slot is
/// found again by hash and ticket (tickets are unique per shard), so the
/// key is neither hashed nor compared again.
#[derive(Debug)]
pub struct Claim {
    shard: u32,
    hash: u64,
    ticket: Ticket,
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

fn is_claimed_by(slot: &Slot, claim: &Claim) -> bool {
    matches!(slot, Slot::Writing { ticket, .. } if *ticket == claim.ticket)
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

    /// Brings the entries of `keys` (`(shard, key)`) into the CPU cache ahead
    /// of their lookups, changing nothing: a pipeline's lookups, each inside
    /// its own command's work, wait for their cache misses one after another,
    /// while in this short loop the misses of consecutive keys overlap. One
    /// mutex acquisition per run of keys on the same shard.
    pub fn warm(&self, keys: &[(u32, &[u8])]) {
        if !self.enabled() {
            return;
        }
        let mut touched = 0_u8;
        for run in keys.chunk_by(|a, b| a.0 == b.0) {
            let c = self.shard(run[0].0);
            for &(_, key) in run {
                let hash = self.hash(key);
                if let Some(e) = c.table.find(hash, |e| e.hash == hash) {
                    // The first, middle and last bytes: every cache line a
                    // copy of the key and value reads.
                    let b = e.bytes.as_slice();
                    touched ^= b.first().copied().unwrap_or(0) ^ b[b.len() / 2..].first().copied().unwrap_or(0);
                    touched ^= b.last().copied().unwrap_or(0);
                }
            }
        }
        std::hint::black_box(touched);
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

    /// Reads and claims the slots of `keys` (`(shard, key)`, no duplicates)
    /// for a write that holds their key locks: each key's cached meta
    /// (`Hit`; a string's value only if `with_value`) or `Miss(None)` (read
    /// the tree and give the result to [`MetaCache::note_read`]), and its
    /// claim (none: the cache is disabled). One mutex acquisition per shard.
    pub fn claim_all(&self, keys: &[(u32, &[u8])], with_value: bool) -> Vec<(Option<Claim>, Lookup)> {
        let mut out: Vec<(Option<Claim>, Lookup)> = keys.iter().map(|_| (None, Lookup::Miss(None))).collect();
        if !self.enabled() {
            return out;
        }
        let mut by_shard: Vec<usize> = (0..keys.len()).collect();
        by_shard.sort_by_key(|&i| keys[i].0);
        for run in by_shard.chunk_by(|&a, &b| keys[a].0 == keys[b].0) {
            let shard = keys[run[0]].0;
            let mut c = self.shard(shard);
            for &i in run {
                let key = keys[i].1;
                let hash = self.hash(key);
                let (ticket, lookup) = c.claim(hash, key, with_value, self.bytes_max_per_shard);
                out[i] = (Some(Claim { shard, hash, ticket }), lookup);
            }
        }
        out
    }

    /// Notes what the holder of `claim` read from the tree after a miss, so
    /// that a release can cache it.
    pub fn note_read(&self, claim: &Claim, meta: &Option<Meta>) {
        let mut c = self.shard(claim.shard);
        let slot = |flushed| Slot::Writing { ticket: claim.ticket, flushed, before: Some(meta.as_ref().map(Head::of)) };
        c.set_claimed(claim, slot, value_of(meta), self.bytes_max_per_shard);
    }

    /// The claim holder's commit was applied and left `meta` (`None`: no
    /// meta record).
    pub fn end_claim(&self, claim: Claim, meta: Option<Meta>) {
        let mut c = self.shard(claim.shard);
        let slot = |_| Slot::Known { head: meta.as_ref().map(Head::of), used: false };
        c.set_claimed(&claim, slot, value_of(&meta), self.bytes_max_per_shard);
    }

    /// The claim holder wrote nothing to the key: the slot gets back the
    /// record as stored when it was claimed, if known.
    pub fn release(&self, claim: Claim) {
        let mut c = self.shard(claim.shard);
        let Some(e) = c.find_claimed(&claim) else { return };
        if let Slot::Writing { flushed: false, before: Some(head), .. } = e.slot {
            e.slot = Slot::Known { head, used: true };
            return;
        }
        c.remove_claimed(&claim);
    }

    /// The claim holder's commit failed or was abandoned: what the tree
    /// holds is not known here, so the slot is emptied.
    pub fn abandon(&self, claim: Claim) {
        self.shard(claim.shard).remove_claimed(&claim);
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

    /// The slot `claim` still holds (a later writer of the key may have
    /// taken it over).
    fn find_claimed(&mut self, claim: &Claim) -> Option<&mut Entry> {
        self.table.find_mut(claim.hash, |e| e.hash == claim.hash && is_claimed_by(&e.slot, claim))
    }

    fn remove_claimed(&mut self, claim: &Claim) {
        if let Ok(found) = self.table.find_entry(claim.hash, |e| e.hash == claim.hash && is_claimed_by(&e.slot, claim))
        {
            let (old, _) = found.remove();
            self.bytes -= old.cost_bytes();
        }
    }

    /// Replaces the slot `claim` still holds with `slot(flushed)` and
    /// `value`, or empties it if FLUSHDB ran since the claim.
    fn set_claimed(&mut self, claim: &Claim, slot: impl FnOnce(bool) -> Slot, value: &[u8], bytes_max: usize) {
        let Some(e) = self.find_claimed(claim) else { return };
        let flushed = matches!(e.slot, Slot::Writing { flushed: true, .. });
        let new = slot(flushed);
        if flushed && !matches!(new, Slot::Writing { .. }) {
            self.remove_claimed(claim);
            return;
        }
        let old_bytes = e.cost_bytes();
        e.set(new, value);
        let new_bytes = e.cost_bytes();
        self.bytes = self.bytes - old_bytes + new_bytes;
        if self.bytes > bytes_max {
            self.evict(bytes_max - bytes_max / 4);
        }
    }

    /// Claims `key`'s slot with a new ticket; a known entry's record (and
    /// value bytes) stay in the slot for a release.
    fn claim(&mut self, hash: u64, key: &[u8], with_value: bool, bytes_max: usize) -> (Ticket, Lookup) {
        let ticket = self.take_ticket();
        if let Some(e) = self.find_mut(hash, key) {
            if let Slot::Known { head, .. } = e.slot {
                let meta = e.meta(head, with_value);
                e.slot = Slot::Writing { ticket, flushed: false, before: Some(head) };
                return (ticket, Lookup::Hit(meta));
            }
        }
        self.put(hash, key, Slot::Writing { ticket, flushed: false, before: None }, &[], bytes_max);
        (ticket, Lookup::Miss(None))
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
                let e = Entry { hash, key_len: key.len(), bytes: Bytes::new(key, value), slot };
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

    /// Claims one key of shard 0, with its value.
    fn claim(c: &MetaCache, key: &[u8]) -> (Claim, Lookup) {
        let (claim, lookup) = c.claim_all(&[(0, key)], true).pop().expect("one key claimed");
        (claim.expect("cache enabled"), lookup)
    }

    fn fill(c: &MetaCache, shard: u32, key: &[u8], meta: &Option<Meta>) {
        let Lookup::Miss(t) = c.lookup(shard, key) else { panic!("hit") };
        c.fill(shard, key, t, meta);
    }

    #[test]
    fn claim_all_reads_and_claims_every_key() {
        let c = MetaCache::new(2, 1 << 20);
        fill(&c, 0, b"a", &string(b"va"));
        fill(&c, 1, b"b", &None);
        let keys: [(u32, &[u8]); 3] = [(1, b"b"), (0, b"a"), (0, b"c")];
        let claimed = c.claim_all(&keys, true);
        assert!(matches!(&claimed[0].1, Lookup::Hit(None)));
        assert!(matches!(&claimed[1].1, Lookup::Hit(m) if *m == string(b"va")));
        assert!(matches!(&claimed[2].1, Lookup::Miss(None)), "a miss gets no fill ticket");
        for (shard, key) in keys {
            assert!(matches!(c.lookup(shard, key), Lookup::Miss(None)), "readers bypass claimed slots");
        }
        let mut claims = claimed.into_iter().map(|(claim, _)| claim.expect("cache enabled"));
        c.end_claim(claims.next().expect("b"), string(b"vb"));
        c.abandon(claims.next().expect("a"));
        c.end_claim(claims.next().expect("c"), None);
        assert!(matches!(c.lookup(1, b"b"), Lookup::Hit(m) if m == string(b"vb")));
        assert!(matches!(c.lookup(0, b"a"), Lookup::Miss(Some(_))), "abandoned: emptied");
        assert!(matches!(c.lookup(0, b"c"), Lookup::Hit(None)));
    }

    #[test]
    fn a_fill_that_raced_a_write_is_dropped() {
        let c = MetaCache::new(1, 1 << 20);
        let Lookup::Miss(read) = c.lookup(0, b"k") else { panic!("hit") };
        let (write, _) = claim(&c, b"k");
        assert!(matches!(c.lookup(0, b"k"), Lookup::Miss(None)), "readers bypass a slot being written");
        c.fill(0, b"k", read, &string(b"old"));
        c.end_claim(write, string(b"new"));
        assert_eq!(hit(&c, b"k"), Some(string(b"new")));
    }

    #[test]
    fn a_late_writer_does_not_overwrite_a_later_one() {
        let c = MetaCache::new(1, 1 << 20);
        let first = c.claim_all(&[(0, b"k")], true);
        let (second, _) = claim(&c, b"k");
        c.end_claim(second, string(b"second"));
        for (claim, _) in first {
            c.release(claim.expect("cache enabled"));
        }
        let (stale, _) = claim(&c, b"k");
        let (latest, _) = claim(&c, b"k");
        c.abandon(stale);
        c.end_claim(latest, string(b"latest"));
        assert_eq!(hit(&c, b"k"), Some(string(b"latest")));
    }

    #[test]
    fn a_write_under_way_during_a_flush_leaves_nothing_cached() {
        let c = MetaCache::new(1, 1 << 20);
        fill(&c, 0, b"hit", &string(b"v"));
        let (ended, _) = claim(&c, b"k");
        let (released, _) = claim(&c, b"hit");
        let (read, _) = claim(&c, b"read");
        c.clear();
        c.note_read(&read, &string(b"maybe flushed"));
        c.end_claim(ended, string(b"maybe flushed"));
        c.release(released);
        c.release(read);
        assert_eq!(c.usage(), (0, 0));
        assert!(matches!(c.lookup(0, b"k"), Lookup::Miss(Some(_))));
    }

    #[test]
    fn an_abandoned_write_empties_its_slot() {
        let c = MetaCache::new(1, 1 << 20);
        fill(&c, 0, b"k", &string(b"v"));
        let (w, _) = claim(&c, b"k");
        c.abandon(w);
        assert_eq!(c.usage().0, 0);
        assert!(matches!(c.lookup(0, b"k"), Lookup::Miss(Some(_))));
    }

    #[test]
    fn a_release_gives_back_the_record_as_read() {
        let c = MetaCache::new(1, 1 << 20);
        fill(&c, 0, b"hit", &string(b"value"));
        // Claimed without the value (an overwrite): the entry keeps it.
        let (w, lookup) = c.claim_all(&[(0, b"hit")], false).pop().expect("one key");
        assert!(matches!(lookup, Lookup::Hit(Some(m)) if m.value.is_empty()));
        c.release(w.expect("cache enabled"));
        assert_eq!(hit(&c, b"hit"), Some(string(b"value")));
        let (w, lookup) = claim(&c, b"read");
        assert!(matches!(lookup, Lookup::Miss(None)));
        c.note_read(&w, &string(b"from the tree"));
        c.release(w);
        assert_eq!(hit(&c, b"read"), Some(string(b"from the tree")));
        let (w, _) = claim(&c, b"unread");
        c.release(w);
        assert!(matches!(c.lookup(0, b"unread"), Lookup::Miss(Some(_))), "nothing known: emptied");
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_keeps_writes_claims() {
        let budget = 64 << 10;
        let c = MetaCache::new(1, budget);
        let (w, _) = claim(&c, b"claimed");
        let (r, _) = claim(&c, b"read");
        c.note_read(&r, &string(&[1; 1000]));
        for i in 0..10_000u32 {
            let key = i.to_le_bytes();
            if let Lookup::Miss(t) = c.lookup(0, &key) {
                c.fill(0, &key, t, &string(&[7; 100]));
            }
            assert!(c.usage().1 <= budget, "{} bytes held", c.usage().1);
        }
        c.end_claim(w, string(b"kept"));
        c.release(r);
        assert_eq!(hit(&c, b"claimed"), Some(string(b"kept")));
        assert_eq!(hit(&c, b"read"), Some(string(&[1; 1000])));
        c.clear();
        assert_eq!(c.usage(), (0, 0));
    }

    #[test]
    fn an_entry_is_three_cache_lines() {
        assert_eq!(std::mem::size_of::<Entry>(), 192);
    }

    #[test]
    fn short_entries_are_inline_and_long_ones_on_the_heap() {
        let c = MetaCache::new(1, 1 << 20);
        let short = vec![b's'; INLINE_BYTES - 1];
        let long = vec![b'l'; INLINE_BYTES];
        fill(&c, 0, b"a", &string(&short));
        assert_eq!(c.usage(), (1, ENTRY_OVERHEAD_BYTES), "key and value inside the entry");
        fill(&c, 0, b"b", &string(&long));
        assert_eq!(c.usage(), (2, 2 * ENTRY_OVERHEAD_BYTES + 1 + INLINE_BYTES), "one heap block");
        assert_eq!(hit(&c, b"a"), Some(string(&short)));
        assert_eq!(hit(&c, b"b"), Some(string(&long)));
        // Writes move a value between the entry and a heap block, keeping the key.
        let (wa, _) = claim(&c, b"a");
        let (wb, _) = claim(&c, b"b");
        c.end_claim(wa, string(&long));
        c.end_claim(wb, string(b"short again"));
        assert_eq!(hit(&c, b"a"), Some(string(&long)));
        assert_eq!(hit(&c, b"b"), Some(string(b"short again")));
        assert_eq!(c.usage(), (2, 2 * ENTRY_OVERHEAD_BYTES + 1 + INLINE_BYTES));
        // A long key: on the heap even without a value.
        let long_key = vec![b'k'; 300];
        fill(&c, 0, &long_key, &None);
        assert_eq!(hit(&c, &long_key), Some(None));
        assert_eq!(hit(&c, &long_key[..299]), None, "a prefix of a key is another key");
    }

    #[test]
    fn entries_whose_hashes_collide_are_told_apart_by_key() {
        let mut c = ShardCache::default();
        let hash = 0x5eed;
        let known = |v: &[u8]| Slot::Known { head: Some(Head::of(&Meta::string(v.to_vec()))), used: false };
        c.put(hash, b"one", known(b"1"), b"1", 1 << 20);
        c.put(hash, b"two", known(b"22"), b"22", 1 << 20);
        c.put(hash, &[b'x'; 200], known(b"3"), b"3", 1 << 20);
        assert_eq!(c.table.len(), 3);
        let value = |c: &mut ShardCache, key: &[u8]| {
            let e = c.find_mut(hash, key)?;
            let Slot::Known { head, .. } = e.slot else { return None };
            e.meta(head, true).map(|m| m.value)
        };
        assert_eq!(value(&mut c, b"one"), Some(b"1".to_vec()));
        assert_eq!(value(&mut c, b"two"), Some(b"22".to_vec()));
        assert_eq!(value(&mut c, &[b'x'; 200]), Some(b"3".to_vec()));
        assert_eq!(value(&mut c, b"three"), None, "same hash, no such key");
    }

    #[test]
    fn warming_changes_nothing() {
        let c = MetaCache::new(2, 1 << 20);
        fill(&c, 0, b"a", &string(b"va"));
        let (w, _) = claim(&c, b"claimed");
        let before = c.usage();
        c.warm(&[(0, b"a"), (0, b"absent"), (1, b"a"), (0, b"claimed"), (0, b"")]);
        assert_eq!(c.usage(), before);
        assert_eq!(hit(&c, b"a"), Some(string(b"va")));
        assert!(matches!(c.lookup(0, b"claimed"), Lookup::Miss(None)), "still claimed");
        c.end_claim(w, None);
        assert!(matches!(c.lookup(1, b"a"), Lookup::Miss(Some(_))));
        MetaCache::new(1, 0).warm(&[(0, b"a")]);
    }

    #[test]
    fn a_disabled_cache_holds_nothing() {
        let c = MetaCache::new(2, 0);
        assert!(matches!(c.lookup(1, b"k"), Lookup::Miss(None)));
        let claimed = c.claim_all(&[(1, b"k")], true);
        assert!(matches!(claimed.as_slice(), [(None, Lookup::Miss(None))]));
        assert_eq!(c.usage(), (0, 0));
    }
}
