//! The Redis keyspace on the engine: reading keys, and staging the writes of
//! one command as one engine transaction.
//!
//! Every write command locks the meta records of the keys it touches (in the
//! engine's global lock order), reads them, stages its changes, and commits
//! them as one journal record. [`KeyTx::commit`] adds the bookkeeping every
//! change needs — per-shard key counts, the expiry index, the removal of an
//! expired key's records — so commands cannot forget it.
//!
//! Reads take no locks: a read sees each record as its shard last applied it.

use std::ops::Bound;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use keel_engine::{Engine, EngineError, Lsn, MergeOp, Transaction};

use crate::keys::{self, Anchors};
use crate::meta::{Kind, Meta};
use crate::meta_cache::{Claim, Lookup, MetaCache};
use crate::resp::Reply;

/// Results of commands: an error is the reply to send.
pub type Res<T> = Result<T, Reply>;

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

pub fn wrongtype() -> Reply {
    Reply::error(WRONGTYPE)
}

impl From<EngineError> for Reply {
    fn from(e: EngineError) -> Reply {
        match e {
            EngineError::NoSpace { .. } => Reply::error(format!("OOM {e}")),
            _ => Reply::error(format!("ERR {e}")),
        }
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The gateway's view of one engine.
#[derive(Debug, Clone)]
pub struct Db {
    pub engine: Engine,
    pub anchors: Anchors,
    /// Longest Redis key, field or member: what still fits the engine's key
    /// limit with the layout's overhead around it.
    pub name_bytes_max: usize,
    /// Meta records as stored, so reads skip the tree (`meta_cache.rs`).
    pub cache: Arc<MetaCache>,
}

impl Db {
    /// The gateway's view of `engine`, with a meta cache of
    /// `meta_cache_bytes` (0: none).
    pub fn new(engine: Engine, meta_cache_bytes: usize) -> Db {
        let anchors = Anchors::new(engine.shard_count());
        let name_bytes_max = engine.limits().key_bytes_max.saturating_sub(keys::KEY_OVERHEAD_BYTES) / 2;
        let cache = Arc::new(MetaCache::new(engine.shard_count(), meta_cache_bytes));
        Db { engine, anchors, name_bytes_max, cache }
    }

    /// Refuses keys, fields and members the layout cannot hold. A key and a
    /// field together must fit one engine key, so each gets half.
    pub fn check_name(&self, name: &[u8]) -> Res<()> {
        if name.len() > self.name_bytes_max {
            return Err(Reply::error(format!(
                "ERR key, field or member of {} bytes exceeds the limit of {} bytes",
                name.len(),
                self.name_bytes_max
            )));
        }
        Ok(())
    }

    /// The shard of every record of `key`. Any length is fine: requests are
    /// routed before their command checks the key (a key too long for the
    /// layout is routed, then refused there with an error).
    pub fn shard_of_key(&self, key: &[u8]) -> u32 {
        self.engine.shard_of(&keys::route_prefix(key))
    }

    /// The live meta of `key`: `None` if absent or expired.
    pub async fn read_meta(&self, key: &[u8], now_ms: u64) -> Res<Option<Meta>> {
        self.check_name(key)?;
        let meta = self.stored_meta(key, self.shard_of_key(key), true).await?;
        Ok(meta.filter(|m| !m.is_expired(now_ms)))
    }

    /// The meta record of `key` as stored (expired or not): from the cache,
    /// else from the tree (and then cached). Without `with_value` a string
    /// found in the cache comes back with an empty value (for callers that
    /// replace it).
    async fn stored_meta(&self, key: &[u8], shard: u32, with_value: bool) -> Res<Option<Meta>> {
        let lookup = if with_value { self.cache.lookup(shard, key) } else { self.cache.lookup_head(shard, key) };
        let ticket = match lookup {
            Lookup::Hit(meta) => return Ok(meta),
            Lookup::Miss(ticket) => ticket,
        };
        let meta = decode_meta(key, self.engine.get(&keys::meta_key(key)).await?)?;
        self.cache.fill(shard, key, ticket, &meta);
        Ok(meta)
    }

    /// The live meta of `key` if it has kind `kind`; WRONGTYPE otherwise.
    pub async fn read_kind(&self, key: &[u8], kind: Kind, now_ms: u64) -> Res<Option<Meta>> {
        match self.read_meta(key, now_ms).await? {
            Some(m) if m.kind != kind => Err(wrongtype()),
            other => Ok(other),
        }
    }

    /// Records of `key` with sub-tag `sub` in `[from, to)` (suffix bounds),
    /// up to `limit`, paging through the engine's per-scan cap.
    pub async fn scan_sub(
        &self,
        key: &[u8],
        sub: u8,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
        limit: usize,
    ) -> Res<Vec<(Vec<u8>, Vec<u8>)>> {
        let (sub_start, sub_end) = keys::sub_range(key, sub);
        let full = |b: Bound<Vec<u8>>, default: Bound<Vec<u8>>| match b {
            Bound::Included(s) => Bound::Included(keys::record_key(key, sub, &s)),
            Bound::Excluded(s) => Bound::Excluded(keys::record_key(key, sub, &s)),
            Bound::Unbounded => default,
        };
        let mut start = full(from, Bound::Included(sub_start));
        let end = full(to, Bound::Excluded(sub_end));
        let mut out = Vec::new();
        let page_max = self.engine.limits().scan_entries_max.max(1);
        while out.len() < limit {
            let want = (limit - out.len()).min(page_max);
            let page = self.engine.scan(start.clone(), end.clone(), want).await?;
            let got = page.len();
            if let Some((last, _)) = page.last() {
                start = Bound::Excluded(last.clone());
            }
            out.extend(page.into_iter().map(|(k, v)| (keys::record_suffix(&k, key).to_vec(), v)));
            if got < want {
                break;
            }
        }
        Ok(out)
    }
}

pub fn decode_meta(key: &[u8], raw: Option<Vec<u8>>) -> Res<Option<Meta>> {
    match raw {
        None => Ok(None),
        Some(bytes) => match Meta::decode(&bytes) {
            Some(m) => Ok(Some(m)),
            None => {
                tracing::error!(key = %String::from_utf8_lossy(key), "undecodable meta record");
                Err(Reply::error("ERR corrupt record for this key; it is left untouched"))
            }
        },
    }
}

/// One staged key of a [`KeyTx`].
#[derive(Debug)]
struct Staged {
    /// The key's meta record key; the Redis key is inside it ([`Staged::key`]).
    meta_key: Vec<u8>,
    shard: u32,
    /// The meta as stored when the transaction began, expired or not.
    stored: Option<Meta>,
    /// The meta as the transaction leaves it.
    current: Option<Meta>,
    meta_changed: bool,
}

impl Staged {
    fn key(&self) -> &[u8] {
        // The meta key is `0x81 | id | len | K | 0x00` (keys.rs).
        &self.meta_key[11..self.meta_key.len() - 1]
    }
}

/// The staged writes of one command over one or more locked keys.
#[derive(Debug)]
pub struct KeyTx<'a> {
    db: &'a Db,
    /// Declared before `txn`, so the slots are given back before the locks.
    claims: CacheClaims<'a>,
    txn: Transaction,
    staged: Vec<Staged>,
    now_ms: u64,
}

impl<'a> KeyTx<'a> {
    /// Locks the meta records of `keys` and reads them. Duplicates are
    /// staged once. An expired key's records are staged for removal at once:
    /// to the command it is absent.
    pub async fn begin(db: &'a Db, keys_in: &[&[u8]], now_ms: u64) -> Res<KeyTx<'a>> {
        Self::begin_with(db, keys_in, now_ms, true).await
    }

    /// [`KeyTx::begin`] for a command that replaces the value of every key
    /// it stages (SET): [`KeyTx::meta`] gives each string's type and expiry
    /// but, when the meta cache answered, an empty value (no copy of it).
    pub async fn begin_for_overwrite(db: &'a Db, keys_in: &[&[u8]], now_ms: u64) -> Res<KeyTx<'a>> {
        Self::begin_with(db, keys_in, now_ms, false).await
    }

    async fn begin_with(db: &'a Db, keys_in: &[&[u8]], now_ms: u64, values: bool) -> Res<KeyTx<'a>> {
        for key in keys_in {
            db.check_name(key)?;
        }
        let mut unique: Vec<&[u8]> = keys_in.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let meta_keys: Vec<Vec<u8>> = unique.iter().map(|k| keys::meta_key(k)).collect();
        let refs: Vec<&[u8]> = meta_keys.iter().map(Vec::as_slice).collect();
        let mut txn = db.engine.transaction();
        txn.lock(&refs).await?;
        // Locked: no other writer of these keys can come in between the
        // read and the commit, so the read claims the cache slots with it.
        let shards: Vec<u32> = meta_keys.iter().map(|k| db.engine.shard_of(k)).collect();
        let shard_keys: Vec<(u32, &[u8])> = shards.iter().copied().zip(unique.iter().copied()).collect();
        let (claims, lookups): (Vec<Option<Claim>>, Vec<Lookup>) =
            db.cache.claim_all(&shard_keys, values).into_iter().unzip();
        let claims = CacheClaims { cache: &db.cache, claims, committing: false };
        let mut tx = KeyTx { db, claims, txn, staged: Vec::with_capacity(unique.len()), now_ms };
        for (i, ((key, meta_key), lookup)) in unique.iter().zip(meta_keys).zip(lookups).enumerate() {
            // The transaction has written nothing yet, and the range deletes
            // of expired keys staged so far cover only their own records: the
            // stored meta is what the transaction sees.
            let stored = match lookup {
                Lookup::Hit(meta) => meta,
                Lookup::Miss(_) => {
                    let meta = decode_meta(key, db.engine.get(&meta_key).await?)?;
                    tx.claims.note_read(i, &meta);
                    meta
                }
            };
            let expired = stored.as_ref().is_some_and(|m| m.is_expired(now_ms));
            let current = if expired { None } else { stored.clone() };
            tx.staged.push(Staged { meta_key, shard: shards[i], stored, current, meta_changed: false });
            if expired {
                let (start, end) = keys::all_records(key);
                tx.txn.delete_range(&start, Some(&end))?;
            }
        }
        Ok(tx)
    }

    fn index(&self, key: &[u8]) -> usize {
        self.staged.iter().position(|s| s.key() == key).expect("key staged in begin")
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The live meta of a staged key.
    pub fn meta(&self, key: &[u8]) -> Option<&Meta> {
        self.staged[self.index(key)].current.as_ref()
    }

    /// The live meta of `key` if it has kind `kind`; WRONGTYPE otherwise.
    pub fn meta_of_kind(&self, key: &[u8], kind: Kind) -> Res<Option<Meta>> {
        match self.meta(key) {
            Some(m) if m.kind != kind => Err(wrongtype()),
            other => Ok(other.cloned()),
        }
    }

    /// Replaces the meta of `key` (its records other than the meta stay).
    pub fn set_meta(&mut self, key: &[u8], meta: Meta) {
        let i = self.index(key);
        self.staged[i].current = Some(meta);
        self.staged[i].meta_changed = true;
    }

    /// Removes every record of `key`.
    pub fn remove(&mut self, key: &[u8]) -> Res<()> {
        let i = self.index(key);
        if self.staged[i].current.is_none() {
            return Ok(());
        }
        let (start, end) = keys::all_records(key);
        self.txn.delete_range(&start, Some(&end))?;
        self.staged[i].current = None;
        self.staged[i].meta_changed = false;
        Ok(())
    }

    /// Reads a record of a locked key as this transaction sees it.
    pub async fn get_record(&mut self, key: &[u8], sub: u8, rest: &[u8]) -> Res<Option<Vec<u8>>> {
        self.db.check_name(rest)?;
        Ok(self.txn.get(&keys::record_key(key, sub, rest)).await?)
    }

    pub fn put_record(&mut self, key: &[u8], sub: u8, rest: &[u8], value: Vec<u8>) -> Res<()> {
        self.db.check_name(rest)?;
        Ok(self.txn.put(&keys::record_key(key, sub, rest), value)?)
    }

    pub fn delete_record(&mut self, key: &[u8], sub: u8, rest: &[u8]) -> Res<()> {
        Ok(self.txn.delete(&keys::record_key(key, sub, rest))?)
    }

    /// Deletes an engine record that is not a record of a staged key (a
    /// stale index entry).
    pub fn delete_raw(&mut self, engine_key: &[u8]) -> Res<()> {
        Ok(self.txn.delete(engine_key)?)
    }

    /// The expiry stored for `key` when the transaction began (expired or not).
    pub fn stored_expire_at_ms(&self, key: &[u8]) -> Option<u64> {
        self.staged[self.index(key)].stored.as_ref().map(|m| m.expire_at_ms)
    }

    /// Commits the staged changes with their bookkeeping. `None` when there
    /// was nothing to write.
    pub async fn commit(mut self) -> Res<Option<Lsn>> {
        let mut count_deltas: Vec<(u32, i64)> = Vec::new();
        let staged = std::mem::take(&mut self.staged);
        for s in &staged {
            let alive = self.finish_key(s)?;
            let delta = i64::from(alive) - i64::from(s.stored.is_some());
            if delta != 0 {
                match count_deltas.iter_mut().find(|(shard, _)| *shard == s.shard) {
                    Some((_, d)) => *d += delta,
                    None => count_deltas.push((s.shard, delta)),
                }
            }
        }
        for (shard, delta) in count_deltas {
            if delta != 0 {
                self.txn.merge(&self.db.anchors.count_key(shard), MergeOp::AddI64(delta))?;
            }
        }
        if self.txn.is_empty() {
            // Dropping `self` releases the claims: nothing was written.
            return Ok(None);
        }
        self.claims.committing = true;
        let lsn = self.txn.commit().await?;
        self.claims.end(staged);
        Ok(Some(lsn))
    }

    /// Writes the final meta of one key and keeps its expiry index entry in
    /// step with it. Returns whether the key exists afterwards.
    fn finish_key(&mut self, s: &Staged) -> Res<bool> {
        if let (Some(meta), true) = (&s.current, s.meta_changed) {
            if meta.kind != Kind::String && meta.len == 0 {
                // An empty collection does not exist, as in Redis.
                let (start, end) = keys::all_records(s.key());
                self.txn.delete_range(&start, Some(&end))?;
            } else {
                self.txn.put(&s.meta_key, meta.encode())?;
            }
        }
        let alive = s.current.as_ref().filter(|m| m.kind == Kind::String || m.len > 0);
        let old_exp = s.stored.as_ref().map_or(0, |m| m.expire_at_ms);
        let new_exp = alive.map_or(0, |m| m.expire_at_ms);
        if old_exp != new_exp {
            if old_exp != 0 {
                self.txn.delete(&self.db.anchors.expiry_key(s.shard, old_exp, s.key()))?;
            }
            if new_exp != 0 {
                self.txn.put(&self.db.anchors.expiry_key(s.shard, new_exp, s.key()), Vec::new())?;
            }
        }
        Ok(alive.is_some())
    }
}

/// The meta cache slots a [`KeyTx`] claimed as it read its keys, one per
/// staged key (in the same order). Dropped before the commit, they are
/// released (nothing was written); dropped once the commit began (it
/// failed, or its future was dropped), they are abandoned as unknown.
#[derive(Debug)]
struct CacheClaims<'a> {
    cache: &'a MetaCache,
    claims: Vec<Option<Claim>>,
    committing: bool,
}

impl CacheClaims<'_> {
    fn note_read(&self, i: usize, meta: &Option<Meta>) {
        if let Some(claim) = &self.claims[i] {
            self.cache.note_read(claim, meta);
        }
    }

    /// The commit was applied: each key's meta is what the transaction
    /// left. A key whose meta record it left alone gets its record back as
    /// read (which, for [`KeyTx::begin_for_overwrite`], the staged meta may
    /// hold without its value).
    fn end(&mut self, staged: Vec<Staged>) {
        for (s, claim) in staged.into_iter().zip(self.claims.drain(..)) {
            let Some(claim) = claim else { continue };
            let untouched = !s.meta_changed && (s.current.is_some() || s.stored.is_none());
            if untouched {
                self.cache.release(claim);
            } else {
                let left = s.current.filter(|m| m.kind == Kind::String || m.len > 0);
                self.cache.end_claim(claim, left);
            }
        }
    }
}

impl Drop for CacheClaims<'_> {
    fn drop(&mut self) {
        for claim in self.claims.drain(..).flatten() {
            if self.committing {
                self.cache.abandon(claim);
            } else {
                self.cache.release(claim);
            }
        }
    }
}
