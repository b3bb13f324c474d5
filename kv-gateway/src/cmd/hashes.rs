//! Hash commands: HSET, HMSET, HGET, HMGET, HGETALL, HDEL, HLEN, HEXISTS.
//! Each field is its own record, next to its key's meta record.

use std::ops::Bound;

use crate::cmd::args;
use crate::cmd::Outcome;
use crate::db::{Db, KeyTx, Res};
use crate::keys::SUB_FIELD;
use crate::meta::{Kind, Meta};
use crate::resp::Reply;

/// HSET (reply: fields added) and HMSET (reply: OK).
pub async fn hset(db: &Db, args: &[Vec<u8>], now_ms: u64, hmset: bool) -> Res<Outcome> {
    let key = &args[1];
    args::pairs(&args[2..], if hmset { "hmset" } else { "hset" })?;
    let mut tx = KeyTx::begin(db, &[key], now_ms).await?;
    let mut meta = tx.meta_of_kind(key, Kind::Hash)?.unwrap_or_else(|| Meta::collection(Kind::Hash));
    let mut added = 0i64;
    for pair in args[2..].chunks(2) {
        if meta.len == 0 || tx.get_record(key, SUB_FIELD, &pair[0]).await?.is_none() {
            added += 1;
            meta.len += 1;
        }
        tx.put_record(key, SUB_FIELD, &pair[0], pair[1].clone())?;
    }
    tx.set_meta(key, meta);
    let lsn = tx.commit().await?;
    Ok(Outcome { reply: if hmset { Reply::Ok } else { Reply::Integer(added) }, lsn })
}

async fn field(db: &Db, key: &[u8], field: &[u8]) -> Res<Option<Vec<u8>>> {
    db.check_name(field)?;
    Ok(db.engine.get(&crate::keys::record_key(key, SUB_FIELD, field)).await?)
}

pub async fn hget(db: &Db, key: &[u8], name: &[u8], now_ms: u64) -> Res<Outcome> {
    if db.read_kind(key, Kind::Hash, now_ms).await?.is_none() {
        return Ok(Reply::Nil.into());
    }
    Ok(field(db, key, name).await?.map_or(Reply::Nil, Reply::Bulk).into())
}

pub async fn hexists(db: &Db, key: &[u8], name: &[u8], now_ms: u64) -> Res<Outcome> {
    if db.read_kind(key, Kind::Hash, now_ms).await?.is_none() {
        return Ok(Reply::Integer(0).into());
    }
    Ok(Reply::Integer(i64::from(field(db, key, name).await?.is_some())).into())
}

pub async fn hmget(db: &Db, key: &[u8], names: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    let present = db.read_kind(key, Kind::Hash, now_ms).await?.is_some();
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let v = if present { field(db, key, name).await? } else { None };
        values.push(v.map_or(Reply::Nil, Reply::Bulk));
    }
    Ok(Reply::Array(values).into())
}

/// Fields and values of `key` in field order (one single-shard scan).
pub async fn all_fields(db: &Db, key: &[u8], now_ms: u64) -> Res<Vec<(Vec<u8>, Vec<u8>)>> {
    let Some(meta) = db.read_kind(key, Kind::Hash, now_ms).await? else { return Ok(Vec::new()) };
    let limit = usize::try_from(meta.len).unwrap_or(usize::MAX).saturating_add(1);
    db.scan_sub(key, SUB_FIELD, Bound::Unbounded, Bound::Unbounded, limit).await
}

pub async fn hgetall(db: &Db, key: &[u8], now_ms: u64) -> Res<Outcome> {
    let pairs = all_fields(db, key, now_ms).await?;
    Ok(Reply::Map(pairs.into_iter().map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v))).collect()).into())
}

pub async fn hlen(db: &Db, key: &[u8], now_ms: u64) -> Res<Outcome> {
    let len = db.read_kind(key, Kind::Hash, now_ms).await?.map_or(0, |m| m.len);
    Ok(Reply::Integer(i64::try_from(len).unwrap_or(i64::MAX)).into())
}

pub async fn hdel(db: &Db, key: &[u8], names: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    let mut tx = KeyTx::begin(db, &[key], now_ms).await?;
    let Some(mut meta) = tx.meta_of_kind(key, Kind::Hash)? else {
        return Ok(Reply::Integer(0).into());
    };
    let mut removed = 0i64;
    for name in names {
        if tx.get_record(key, SUB_FIELD, name).await?.is_some() {
            tx.delete_record(key, SUB_FIELD, name)?;
            removed += 1;
            meta.len = meta.len.saturating_sub(1);
        }
    }
    if removed == 0 {
        return Ok(Reply::Integer(0).into());
    }
    tx.set_meta(key, meta);
    let lsn = tx.commit().await?;
    Ok(Outcome { reply: Reply::Integer(removed), lsn })
}
