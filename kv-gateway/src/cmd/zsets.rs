//! Sorted-set commands: ZADD, ZREM, ZCARD, ZSCORE, ZRANGEBYSCORE, and
//! KEEL.SCANHASH (the ordered range scan for YCSB-E).
//!
//! A member has two records next to its key's meta: member -> score, and
//! (score, member) -> nothing, so ZSCORE is one lookup and ZRANGEBYSCORE is
//! one ordered single-shard scan.

use std::ops::Bound;

use crate::cmd::args::{self, is, syntax};
use crate::cmd::hashes;
use crate::cmd::Outcome;
use crate::db::{Db, KeyTx, Res};
use crate::keys::{score_bytes, score_from_bytes, SUB_MEMBER, SUB_SCORE};
use crate::meta::{Kind, Meta};
use crate::resp::reply::format_double;
use crate::resp::Reply;

fn score_record(score: f64, member: &[u8]) -> Vec<u8> {
    let mut rest = score_bytes(score).to_vec();
    rest.extend_from_slice(member);
    rest
}

fn decode_score(bytes: &[u8]) -> Res<f64> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| Reply::error("ERR corrupt score record"))?;
    Ok(f64::from_le_bytes(raw))
}

#[derive(Debug, Default)]
struct ZaddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

fn parse_zadd_flags(args: &[Vec<u8>]) -> Res<(ZaddFlags, usize)> {
    let mut f = ZaddFlags::default();
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        match () {
            _ if is(a, "NX") => f.nx = true,
            _ if is(a, "XX") => f.xx = true,
            _ if is(a, "GT") => f.gt = true,
            _ if is(a, "LT") => f.lt = true,
            _ if is(a, "CH") => f.ch = true,
            _ if is(a, "INCR") => f.incr = true,
            _ => break,
        }
        i += 1;
    }
    if f.nx && f.xx {
        return Err(Reply::error("ERR XX and NX options at the same time are not compatible"));
    }
    if (f.gt && f.lt) || (f.nx && (f.gt || f.lt)) {
        return Err(Reply::error("ERR GT, LT, and/or NX options at the same time are not compatible"));
    }
    let rest = args.len() - i;
    if rest == 0 || !rest.is_multiple_of(2) {
        return Err(syntax());
    }
    if f.incr && rest != 2 {
        return Err(Reply::error("ERR INCR option supports a single increment-element pair"));
    }
    Ok((f, i))
}

pub async fn zadd(db: &Db, args: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    let key = &args[1];
    let (f, first) = parse_zadd_flags(args)?;
    let mut pairs = Vec::new();
    for pair in args[first..].chunks(2) {
        pairs.push((args::float(&pair[0])?, &pair[1]));
    }
    let mut tx = KeyTx::begin(db, &[key], now_ms).await?;
    let mut meta = tx.meta_of_kind(key, Kind::Zset)?.unwrap_or_else(|| Meta::collection(Kind::Zset));
    let (mut added, mut changed) = (0i64, 0i64);
    let mut incr_result = None;
    for (score, member) in pairs {
        let old = match meta.len {
            0 => None,
            _ => tx.get_record(key, SUB_MEMBER, member).await?.map(|b| decode_score(&b)).transpose()?,
        };
        let mut score = if f.incr { old.unwrap_or(0.0) + score } else { score };
        if score.is_nan() {
            return Err(Reply::error("ERR resulting score is not a number (NaN)"));
        }
        if score == 0.0 {
            score = 0.0;
        }
        let skip = (f.nx && old.is_some())
            || (f.xx && old.is_none())
            || old.is_some_and(|o| (f.gt && score <= o) || (f.lt && score >= o));
        if skip {
            continue;
        }
        incr_result = Some(score);
        match old {
            Some(o) if o == score => continue,
            Some(o) => {
                tx.delete_record(key, SUB_SCORE, &score_record(o, member))?;
                changed += 1;
            }
            None => {
                added += 1;
                meta.len += 1;
            }
        }
        tx.put_record(key, SUB_MEMBER, member, score.to_le_bytes().to_vec())?;
        tx.put_record(key, SUB_SCORE, &score_record(score, member), Vec::new())?;
    }
    if added + changed > 0 {
        tx.set_meta(key, meta);
    }
    let lsn = tx.commit().await?;
    let reply = match (f.incr, incr_result) {
        (true, Some(s)) => Reply::Double(s),
        (true, None) => Reply::Nil,
        (false, _) => Reply::Integer(if f.ch { added + changed } else { added }),
    };
    Ok(Outcome { reply, lsn })
}

pub async fn zrem(db: &Db, key: &[u8], members: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    let mut tx = KeyTx::begin(db, &[key], now_ms).await?;
    let Some(mut meta) = tx.meta_of_kind(key, Kind::Zset)? else {
        return Ok(Reply::Integer(0).into());
    };
    let mut removed = 0i64;
    for member in members {
        if let Some(bytes) = tx.get_record(key, SUB_MEMBER, member).await? {
            let score = decode_score(&bytes)?;
            tx.delete_record(key, SUB_MEMBER, member)?;
            tx.delete_record(key, SUB_SCORE, &score_record(score, member))?;
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

pub async fn zcard(db: &Db, key: &[u8], now_ms: u64) -> Res<Outcome> {
    let len = db.read_kind(key, Kind::Zset, now_ms).await?.map_or(0, |m| m.len);
    Ok(Reply::Integer(i64::try_from(len).unwrap_or(i64::MAX)).into())
}

pub async fn zscore(db: &Db, key: &[u8], member: &[u8], now_ms: u64) -> Res<Outcome> {
    if db.read_kind(key, Kind::Zset, now_ms).await?.is_none() {
        return Ok(Reply::Nil.into());
    }
    db.check_name(member)?;
    let raw = db.engine.get(&crate::keys::record_key(key, SUB_MEMBER, member)).await?;
    Ok(match raw {
        Some(bytes) => Reply::Double(decode_score(&bytes)?),
        None => Reply::Nil,
    }
    .into())
}

/// A score bound: `(x` exclusive, `x` inclusive, `-inf`, `+inf`.
fn score_bound(arg: &[u8], is_min: bool) -> Res<Bound<Vec<u8>>> {
    let bad = || Reply::error("ERR min or max is not a float");
    let (exclusive, number) = match arg.split_first() {
        Some((b'(', rest)) => (true, rest),
        _ => (false, arg),
    };
    let score = args::float(number).map_err(|_| bad())?;
    let at = score_bytes(score).to_vec();
    // Score records are `score | member`: bounds on the score alone. Every
    // non-NaN score has a successor (the all-ones encoding is NaN's).
    let after = keel_engine::route::prefix_successor(&at).unwrap_or_else(|| vec![0xFF; 9]);
    Ok(match (is_min, exclusive) {
        (true, false) => Bound::Included(at),
        (true, true) => Bound::Included(after),
        (false, false) => Bound::Excluded(after),
        (false, true) => Bound::Excluded(at),
    })
}

/// Longest ZRANGEBYSCORE reply without LIMIT: bounds one reply's memory.
const RANGE_ENTRIES_MAX: usize = 1_000_000;

/// Members (and scores) of `key` with scores in `[min, max]`, after skipping
/// `offset`, at most `count`.
async fn range_by_score(
    db: &Db,
    key: &[u8],
    min: Bound<Vec<u8>>,
    max: Bound<Vec<u8>>,
    offset: usize,
    count: usize,
    now_ms: u64,
) -> Res<Vec<(Vec<u8>, f64)>> {
    if db.read_kind(key, Kind::Zset, now_ms).await?.is_none() {
        return Ok(Vec::new());
    }
    let want = offset.saturating_add(count).min(RANGE_ENTRIES_MAX.saturating_add(offset));
    let records = db.scan_sub(key, SUB_SCORE, min, max, want).await?;
    let mut out = Vec::with_capacity(records.len().saturating_sub(offset));
    for (suffix, _) in records.into_iter().skip(offset) {
        if suffix.len() < 8 {
            return Err(Reply::error("ERR corrupt score index record"));
        }
        let (score, member) = suffix.split_at(8);
        let score = score_from_bytes(score.try_into().map_err(|_| Reply::error("ERR corrupt score index"))?);
        out.push((member.to_vec(), score));
    }
    if out.len() > RANGE_ENTRIES_MAX {
        return Err(Reply::error("ERR result too large; use LIMIT"));
    }
    Ok(out)
}

/// ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count].
pub async fn zrangebyscore(db: &Db, args: &[Vec<u8>], protocol_resp3: bool, now_ms: u64) -> Res<Outcome> {
    let key = &args[1];
    let min = score_bound(&args[2], true)?;
    let max = score_bound(&args[3], false)?;
    let (mut with_scores, mut offset, mut count) = (false, 0usize, usize::MAX);
    let mut i = 4;
    while i < args.len() {
        if is(&args[i], "WITHSCORES") {
            with_scores = true;
            i += 1;
        } else if is(&args[i], "LIMIT") && i + 2 < args.len() {
            let o = args::int(&args[i + 1])?;
            let c = args::int(&args[i + 2])?;
            if o < 0 {
                return Ok(Reply::Array(Vec::new()).into());
            }
            offset = usize::try_from(o).unwrap_or(usize::MAX);
            count = usize::try_from(c).unwrap_or(usize::MAX); // negative: all
            i += 3;
        } else {
            return Err(syntax());
        }
    }
    let found = range_by_score(db, key, min, max, offset, count, now_ms).await?;
    let mut items = Vec::with_capacity(found.len() * if with_scores { 2 } else { 1 });
    for (member, score) in found {
        if with_scores && protocol_resp3 {
            items.push(Reply::Array(vec![Reply::Bulk(member), Reply::Double(score)]));
        } else if with_scores {
            items.push(Reply::Bulk(member));
            items.push(Reply::Bulk(format_double(score).into_bytes()));
        } else {
            items.push(Reply::Bulk(member));
        }
    }
    Ok(Reply::Array(items).into())
}

/// Most members one KEEL.SCANHASH returns.
const SCANHASH_COUNT_MAX: usize = 10_000;

/// KEEL.SCANHASH index min count: the ordered range scan for YCSB-E. Takes
/// up to `count` members of zset `index` with score at least `min`, in score
/// order, and returns for each `[member, {field: value...}]` — the hash
/// stored under the member's name — in one round trip instead of YCSB's
/// ZRANGEBYSCORE followed by one HGETALL per member.
pub async fn scanhash(db: &Db, args: &[Vec<u8>], now_ms: u64) -> Res<Outcome> {
    let index = &args[1];
    let min = score_bound(&args[2], true)?;
    let count = usize::try_from(args::int(&args[3])?).map_err(|_| syntax())?.min(SCANHASH_COUNT_MAX);
    let members = range_by_score(db, index, min, Bound::Unbounded, 0, count, now_ms).await?;
    let mut items = Vec::with_capacity(members.len());
    for (member, _) in members {
        let fields = match hashes::all_fields(db, &member, now_ms).await {
            Ok(f) => f,
            Err(e) if e == crate::db::wrongtype() => Vec::new(),
            Err(e) => return Err(e),
        };
        let map = fields.into_iter().map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v))).collect();
        items.push(Reply::Array(vec![Reply::Bulk(member), Reply::Map(map)]));
    }
    Ok(Reply::Array(items).into())
}
