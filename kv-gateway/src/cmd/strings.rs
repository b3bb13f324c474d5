//! String commands: GET, SET, GETDEL, MGET, MSET, INCR family, APPEND, STRLEN.

use crate::cmd::args::{self, is, syntax};
use crate::cmd::Outcome;
use crate::db::{wrongtype, Db, KeyTx, Res};
use crate::meta::{Kind, Meta};
use crate::resp::Reply;

pub async fn get(db: &Db, key: &[u8], now_ms: u64) -> Res<Outcome> {
    match db.read_kind(key, Kind::String, now_ms).await? {
        Some(m) => Ok(Reply::Bulk(m.value).into()),
        None => Ok(Reply::Nil.into()),
    }
}

pub async fn strlen(db: &Db, key: &[u8], now_ms: u64) -> Res<Outcome> {
    let len = db.read_kind(key, Kind::String, now_ms).await?.map_or(0, |m| m.value.len());
    Ok(Reply::Integer(len as i64).into())
}

/// Options of SET.
#[derive(Debug, Default)]
struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    /// Absolute expiry in Unix milliseconds.
    expire_at_ms: Option<u64>,
}

fn parse_set_options(opts: &[Vec<u8>], now_ms: u64) -> Res<SetOptions> {
    let mut o = SetOptions::default();
    let mut i = 0;
    while i < opts.len() {
        let a = &opts[i];
        let unit_ms = if is(a, "EX") || is(a, "EXAT") {
            Some(1000)
        } else if is(a, "PX") || is(a, "PXAT") {
            Some(1)
        } else {
            None
        };
        if let Some(unit_ms) = unit_ms {
            if o.expire_at_ms.is_some() || o.keep_ttl {
                return Err(syntax());
            }
            let value = opts.get(i + 1).ok_or_else(syntax)?;
            let n = args::int(value)?;
            let absolute = a.len() == 4;
            o.expire_at_ms = Some(expiry_from(n, unit_ms, absolute, now_ms, "set")?);
            i += 2;
            continue;
        }
        match () {
            _ if is(a, "NX") && !o.xx => o.nx = true,
            _ if is(a, "XX") && !o.nx => o.xx = true,
            _ if is(a, "GET") => o.get = true,
            _ if is(a, "KEEPTTL") && o.expire_at_ms.is_none() => o.keep_ttl = true,
            _ => return Err(syntax()),
        }
        i += 1;
    }
    Ok(o)
}

/// An absolute expiry from a relative or absolute time in `unit_ms` units;
/// non-positive times are refused as Redis refuses them.
pub fn expiry_from(n: i64, unit_ms: u64, absolute: bool, now_ms: u64, command: &str) -> Res<u64> {
    let invalid = || Reply::error(format!("ERR invalid expire time in '{command}' command"));
    if n <= 0 {
        return Err(invalid());
    }
    let ms = u64::try_from(n).map_err(|_| invalid())?.checked_mul(unit_ms).ok_or_else(invalid)?;
    if absolute {
        return Ok(ms);
    }
    now_ms.checked_add(ms).ok_or_else(invalid)
}

pub async fn set(db: &Db, args: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    let (key, value) = (&args[1], &args[2]);
    let o = parse_set_options(&args[3..], now_ms)?;
    // Only SET ... GET replies with the old value; otherwise its type and
    // expiry are all SET needs of it.
    let mut tx = if o.get {
        KeyTx::begin(db, &[key], now_ms).await?
    } else {
        KeyTx::begin_for_overwrite(db, &[key], now_ms).await?
    };
    let old = tx.meta(key).cloned();
    if o.get && old.as_ref().is_some_and(|m| m.kind != Kind::String) {
        return Err(wrongtype());
    }
    let old_reply = || old.as_ref().map_or(Reply::Nil, |m| Reply::Bulk(m.value.clone()));
    if (o.nx && old.is_some()) || (o.xx && old.is_none()) {
        return Ok(if o.get { old_reply() } else { Reply::Nil }.into());
    }
    let mut meta = Meta::string(value.clone());
    meta.expire_at_ms = match (o.expire_at_ms, o.keep_ttl, &old) {
        (Some(at), _, _) => at,
        (None, true, Some(m)) => m.expire_at_ms,
        _ => 0,
    };
    if old.as_ref().is_some_and(|m| m.kind != Kind::String) {
        tx.remove(key)?;
    }
    let reply = if o.get { old_reply() } else { Reply::Ok };
    if meta.expire_at_ms != 0 && meta.expire_at_ms <= now_ms {
        // An absolute time in the past: the key is written and gone at once.
        tx.remove(key)?;
    } else {
        tx.set_meta(key, meta);
    }
    let lsn = tx.commit().await?;
    Ok(Outcome { reply, lsn })
}

/// Whether `args` is a SET without options: the kind a pipeline's run of
/// SETs commits together ([`set_plain_many`]).
pub fn is_plain_set(args: &[Vec<u8>]) -> bool {
    args.len() == 3 && args[0].eq_ignore_ascii_case(b"set")
}

/// Plain SETs (`[key, value]` each, in request order) as one engine
/// transaction: one lock call, one journal record and one durability wait
/// for them all, where each SET alone would cost its own. A later SET of a
/// key replaces an earlier one's value, as running them in order would. An
/// error changes nothing (the caller then runs them one by one, so each gets
/// its own reply).
pub async fn set_plain_many(db: &Db, sets: &[&[Vec<u8>]], now_ms: u64) -> Res<Option<keel_engine::Lsn>> {
    let keys: Vec<&[u8]> = sets.iter().map(|a| a[1].as_slice()).collect();
    let mut tx = KeyTx::begin_for_overwrite(db, &keys, now_ms).await?;
    for a in sets {
        let key = &a[1];
        if tx.meta(key).is_some_and(|m| m.kind != Kind::String) {
            tx.remove(key)?;
        }
        tx.set_meta(key, Meta::string(a[2].clone()));
    }
    tx.commit().await
}

pub async fn getdel(db: &Db, key: &[u8], now_ms: u64) -> Res<Outcome> {
    let mut tx = KeyTx::begin(db, &[key], now_ms).await?;
    let Some(old) = tx.meta_of_kind(key, Kind::String)? else {
        let lsn = tx.commit().await?;
        return Ok(Outcome { reply: Reply::Nil, lsn });
    };
    tx.remove(key)?;
    let lsn = tx.commit().await?;
    Ok(Outcome { reply: Reply::Bulk(old.value), lsn })
}

pub async fn incr_by(db: &Db, key: &[u8], delta: i64, now_ms: u64) -> Res<Outcome> {
    let mut tx = KeyTx::begin(db, &[key], now_ms).await?;
    let old = tx.meta_of_kind(key, Kind::String)?;
    let current = match &old {
        None => 0,
        Some(m) => parse_counter(&m.value)?,
    };
    let next = current.checked_add(delta).ok_or_else(|| Reply::error("ERR increment or decrement would overflow"))?;
    let mut meta = Meta::string(next.to_string().into_bytes());
    meta.expire_at_ms = old.map_or(0, |m| m.expire_at_ms);
    tx.set_meta(key, meta);
    let lsn = tx.commit().await?;
    Ok(Outcome { reply: Reply::Integer(next), lsn })
}

/// A string value as a counter: a canonical decimal i64, as Redis requires.
fn parse_counter(value: &[u8]) -> Res<i64> {
    let n = args::int(value)?;
    if n.to_string().as_bytes() != value {
        return Err(args::not_integer());
    }
    Ok(n)
}

pub async fn append(db: &Db, key: &[u8], suffix: &[u8], value_bytes_max: usize, now_ms: u64) -> Res<Outcome> {
    let mut tx = KeyTx::begin(db, &[key], now_ms).await?;
    let mut meta = tx.meta_of_kind(key, Kind::String)?.unwrap_or_else(|| Meta::string(Vec::new()));
    if meta.value.len() + suffix.len() > value_bytes_max {
        return Err(Reply::error("ERR string exceeds maximum allowed size"));
    }
    meta.value.extend_from_slice(suffix);
    let len = meta.value.len();
    tx.set_meta(key, meta);
    let lsn = tx.commit().await?;
    Ok(Outcome { reply: Reply::Integer(len as i64), lsn })
}

/// MGET: all keys locked together, so the values are one consistent
/// snapshot even against concurrent multi-key writes.
pub async fn mget(db: &Db, keys: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let tx = KeyTx::begin(db, &refs, now_ms).await?;
    let values = refs
        .iter()
        .map(|k| match tx.meta(k) {
            Some(m) if m.kind == Kind::String => Reply::Bulk(m.value.clone()),
            _ => Reply::Nil,
        })
        .collect();
    // Reading is all MGET does; expired keys it found stay for the sweeper.
    drop(tx);
    Ok(Reply::Array(values).into())
}

pub async fn mset(db: &Db, args: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    args::pairs(args, "mset")?;
    let keys: Vec<&[u8]> = args.chunks(2).map(|p| p[0].as_slice()).collect();
    let mut tx = KeyTx::begin_for_overwrite(db, &keys, now_ms).await?;
    for pair in args.chunks(2) {
        let key = &pair[0];
        if tx.meta(key).is_some_and(|m| m.kind != Kind::String) {
            tx.remove(key)?;
        }
        tx.set_meta(key, Meta::string(pair[1].clone()));
    }
    let lsn = tx.commit().await?;
    Ok(Outcome { reply: Reply::Ok, lsn })
}
