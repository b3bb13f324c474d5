//! Commands on keys of any type: DEL, UNLINK, EXISTS, EXPIRE family, TTL,
//! PERSIST, TYPE, SCAN, DBSIZE, FLUSHDB.

use std::ops::Bound;

use keel_engine::route;

use crate::cmd::args::{self, is, syntax};
use crate::cmd::strings::expiry_from;
use crate::cmd::Outcome;
use crate::db::{decode_meta, Db, KeyTx, Res};
use crate::glob;
use crate::keys;
use crate::meta::Kind;
use crate::resp::Reply;

pub async fn del(db: &Db, keys_in: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    let refs: Vec<&[u8]> = keys_in.iter().map(Vec::as_slice).collect();
    let mut tx = KeyTx::begin(db, &refs, now_ms).await?;
    let mut removed = 0i64;
    let mut unique = refs.clone();
    unique.sort_unstable();
    unique.dedup();
    for key in unique {
        if tx.meta(key).is_some() {
            tx.remove(key)?;
            removed += 1;
        }
    }
    let lsn = tx.commit().await?;
    Ok(Outcome { reply: Reply::Integer(removed), lsn })
}

pub async fn exists(db: &Db, keys_in: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    let mut count = 0i64;
    for key in keys_in {
        count += i64::from(db.read_meta(key, now_ms).await?.is_some());
    }
    Ok(Reply::Integer(count).into())
}

pub async fn type_of(db: &Db, key: &[u8], now_ms: u64) -> Res<Outcome> {
    let name = db.read_meta(key, now_ms).await?.map_or("none", |m| m.kind.name());
    Ok(Reply::Simple(name.into()).into())
}

/// EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT with NX, XX, GT, LT.
pub async fn expire(db: &Db, args: &[Vec<u8>], unit_ms: u64, absolute: bool, now_ms: u64) -> Res<Outcome> {
    let key = &args[1];
    let n = args::int(&args[2])?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[3..] {
        match () {
            _ if is(opt, "NX") => nx = true,
            _ if is(opt, "XX") => xx = true,
            _ if is(opt, "GT") => gt = true,
            _ if is(opt, "LT") => lt = true,
            _ => return Err(Reply::error(format!("ERR Unsupported option {}", String::from_utf8_lossy(opt)))),
        }
    }
    if (nx && (xx || gt || lt)) || (gt && lt) {
        return Err(Reply::error("ERR NX and XX, GT or LT options at the same time are not compatible"));
    }
    let command = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    // A time at or before now deletes the key, as in Redis.
    let at_ms = match expiry_from(n, unit_ms, absolute, now_ms, &command) {
        Ok(at) => at,
        Err(_) if n <= 0 || absolute => 1,
        Err(e) => return Err(e),
    };
    let mut tx = KeyTx::begin(db, &[key], now_ms).await?;
    let Some(mut meta) = tx.meta(key).cloned() else {
        return Ok(Reply::Integer(0).into());
    };
    let current = meta.expire_at_ms;
    let refused = (nx && current != 0)
        || (xx && current == 0)
        || (gt && (current == 0 || at_ms <= current))
        || (lt && current != 0 && at_ms >= current);
    if refused {
        return Ok(Reply::Integer(0).into());
    }
    if at_ms <= now_ms {
        tx.remove(key)?;
    } else {
        meta.expire_at_ms = at_ms;
        tx.set_meta(key, meta);
    }
    let lsn = tx.commit().await?;
    Ok(Outcome { reply: Reply::Integer(1), lsn })
}

/// TTL (`unit_ms` 1000) and PTTL (1): -2 absent, -1 no expiry.
pub async fn ttl(db: &Db, key: &[u8], unit_ms: u64, now_ms: u64) -> Res<Outcome> {
    let reply = match db.read_meta(key, now_ms).await? {
        None => -2,
        Some(m) if m.expire_at_ms == 0 => -1,
        Some(m) => {
            let left_ms = m.expire_at_ms.saturating_sub(now_ms);
            // Redis rounds seconds to the nearest.
            i64::try_from((left_ms + unit_ms / 2) / unit_ms).unwrap_or(i64::MAX)
        }
    };
    Ok(Reply::Integer(reply).into())
}

pub async fn persist(db: &Db, key: &[u8], now_ms: u64) -> Res<Outcome> {
    let mut tx = KeyTx::begin(db, &[key], now_ms).await?;
    match tx.meta(key).cloned() {
        Some(mut meta) if meta.expire_at_ms != 0 => {
            meta.expire_at_ms = 0;
            tx.set_meta(key, meta);
            let lsn = tx.commit().await?;
            Ok(Outcome { reply: Reply::Integer(1), lsn })
        }
        _ => Ok(Reply::Integer(0).into()),
    }
}

/// Keys per SCAN call when COUNT is not given (Redis's default).
const SCAN_COUNT_DEFAULT: usize = 10;
/// Largest COUNT honoured: bounds the work and the reply of one call.
const SCAN_COUNT_MAX: usize = 10_000;

/// SCAN cursor [MATCH pattern] [COUNT n] [TYPE t].
///
/// Keys are visited in the order of their identifier (the engine's key order
/// for meta records), and the cursor is the identifier to resume at: keys
/// present for the whole scan are returned at least once, as Redis promises.
/// Cursor 0 starts and ends a scan.
pub async fn scan(db: &Db, args: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    let cursor: u64 = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Reply::error("ERR invalid cursor"))?;
    let (mut pattern, mut count, mut kind) = (None, SCAN_COUNT_DEFAULT, None);
    let mut i = 2;
    while i < args.len() {
        let value = args.get(i + 1).ok_or_else(syntax)?;
        match () {
            _ if is(&args[i], "MATCH") => pattern = Some(value.clone()),
            _ if is(&args[i], "COUNT") => {
                count = usize::try_from(args::int(value)?).ok().filter(|&c| c > 0).ok_or_else(syntax)?;
            }
            _ if is(&args[i], "TYPE") => kind = Some(Kind::from_name(value)),
            _ => return Err(syntax()),
        }
        i += 2;
    }
    let count = count.min(SCAN_COUNT_MAX);
    let mut start = vec![keys::TAG_KEY];
    start.extend_from_slice(&cursor.to_be_bytes());
    let end = vec![keys::TAG_KEY + 1];
    let page = db.engine.scan(Bound::Included(start), Bound::Excluded(end), count).await?;
    let full = page.len() == count;
    let mut next_cursor = 0u64;
    let mut found = Vec::new();
    for (engine_key, value) in &page {
        let Some((id, key)) = keys::parse_meta_key(engine_key) else { continue };
        next_cursor = id.wrapping_add(1);
        let Some(meta) = decode_meta(key, Some(value.clone()))? else { continue };
        let wanted = !meta.is_expired(now_ms)
            && pattern.as_deref().is_none_or(|p| glob::matches(p, key))
            && kind.is_none_or(|k| k == Some(meta.kind));
        if wanted {
            found.push((id, key.to_vec()));
        }
    }
    if let Some((engine_key, _)) = page.last() {
        // Resume after the identifier of the last record seen, meta or not.
        next_cursor = id_of(engine_key).wrapping_add(1);
    }
    if full {
        found.extend(same_id_rest(db, &page, now_ms).await?);
    } else {
        next_cursor = 0;
    }
    found.dedup();
    let keys_reply = found.into_iter().map(|(_, k)| Reply::Bulk(k)).collect();
    Ok(Reply::Array(vec![Reply::Bulk(next_cursor.to_string().into_bytes()), Reply::Array(keys_reply)]).into())
}

fn id_of(engine_key: &[u8]) -> u64 {
    engine_key.get(1..9).and_then(|b| b.try_into().ok()).map_or(u64::MAX, u64::from_be_bytes)
}

/// When a page ends inside one identifier's records, the keys of that
/// identifier the page did not reach (a 64-bit hash collision): the cursor
/// moves past the identifier, so they must be returned now.
async fn same_id_rest(db: &Db, page: &[(Vec<u8>, Vec<u8>)], now_ms: u64) -> Res<Vec<(u64, Vec<u8>)>> {
    let Some((last, _)) = page.last() else { return Ok(Vec::new()) };
    let id = id_of(last);
    let prefix: Vec<u8> = last[..9.min(last.len())].to_vec();
    let Some(end) = route::prefix_successor(&prefix) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let mut start = Bound::Excluded(last.clone());
    loop {
        let rest = db.engine.scan(start.clone(), Bound::Excluded(end.clone()), 1024).await?;
        for (k, v) in &rest {
            if let Some((_, key)) = keys::parse_meta_key(k) {
                if decode_meta(key, Some(v.clone()))?.is_some_and(|m| !m.is_expired(now_ms)) {
                    out.push((id, key.to_vec()));
                }
            }
        }
        match rest.last() {
            Some((k, _)) if rest.len() == 1024 => start = Bound::Excluded(k.clone()),
            _ => return Ok(out),
        }
    }
}

/// DBSIZE: the sum of the per-shard key counts (keys that expired but were
/// not swept yet are counted, as in Redis).
pub async fn dbsize(db: &Db) -> Res<Outcome> {
    let mut total = 0i64;
    for shard in 0..db.engine.shard_count() {
        if let Some(v) = db.engine.get(&db.anchors.count_key(shard)).await? {
            total += v.as_slice().try_into().map(i64::from_le_bytes).unwrap_or(0);
        }
    }
    Ok(Reply::Integer(total.max(0)).into())
}

/// FLUSHDB [ASYNC|SYNC]: one atomic range delete over every gateway tag.
pub async fn flushdb(db: &Db, args: &[Vec<u8>]) -> Res<Outcome> {
    if args.len() > 2 || args.get(1).is_some_and(|a| !is(a, "ASYNC") && !is(a, "SYNC")) {
        return Err(syntax());
    }
    // The delete takes no key locks: empty the meta cache before it (so
    // writes under way do not cache what it removes) and after it (so
    // nothing read before it is still cached).
    db.cache.clear();
    let deleted = db.engine.delete_range(&[keys::TAG_RANGE_START], Some(&[keys::TAG_RANGE_END])).await;
    db.cache.clear();
    let lsn = deleted?;
    Ok(Outcome { reply: Reply::Ok, lsn: Some(lsn) })
}
