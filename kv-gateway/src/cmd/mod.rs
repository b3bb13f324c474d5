//! The command table and the execution of data commands.
//!
//! Commands that act on the connection (AUTH, HELLO, CLIENT, ...) are run by
//! the session (`session.rs`); every other command is run here, on the
//! reactor the session chose: the owner of the key's shard for single-key
//! commands (so the engine calls inside are local), the connection's own
//! reactor for multi-key and whole-database commands.

pub mod args;
pub mod hashes;
pub mod keyspace;
pub mod strings;
pub mod zsets;

use keel_engine::Lsn;

use crate::db::{now_ms, Db, Res};
use crate::resp::Reply;

/// What running a command produced: its reply and, for a write, the LSN the
/// reply must wait for in `always` durability.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub reply: Reply,
    pub lsn: Option<Lsn>,
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Outcome {
        Outcome { reply, lsn: None }
    }
}

/// Where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On the connection: it reads or changes the session.
    Session,
    /// On the reactor that owns the shard of `args[1]`.
    Key,
    /// Several keys: on the owner of the only key, else on the connection's reactor.
    Keys,
    /// The whole database: on the connection's reactor.
    Global,
}

/// One row of the command table (also what COMMAND reports).
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    /// Redis's convention: `n` exactly n arguments (name included), `-n` at least n.
    pub arity: i32,
    pub write: bool,
    pub route: Route,
    pub first_key: i32,
    pub last_key: i32,
    pub key_step: i32,
}

const fn spec(name: &'static str, arity: i32, write: bool, route: Route, keys: (i32, i32, i32)) -> Spec {
    Spec { name, arity, write, route, first_key: keys.0, last_key: keys.1, key_step: keys.2 }
}

use Route::{Global, Key, Keys, Session};
const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);
const ALL_KEYS: (i32, i32, i32) = (1, -1, 1);

/// Every command the gateway answers.
pub static COMMANDS: &[Spec] = &[
    spec("ping", -1, false, Session, NO_KEYS),
    spec("echo", 2, false, Session, NO_KEYS),
    spec("auth", -2, false, Session, NO_KEYS),
    spec("hello", -1, false, Session, NO_KEYS),
    spec("select", 2, false, Session, NO_KEYS),
    spec("quit", -1, false, Session, NO_KEYS),
    spec("reset", 1, false, Session, NO_KEYS),
    spec("client", -2, false, Session, NO_KEYS),
    spec("command", -1, false, Session, NO_KEYS),
    spec("info", -1, false, Session, NO_KEYS),
    spec("config", -2, false, Session, NO_KEYS),
    spec("waitaof", 4, false, Session, NO_KEYS),
    spec("dbsize", 1, false, Global, NO_KEYS),
    spec("flushdb", -1, true, Global, NO_KEYS),
    spec("flushall", -1, true, Global, NO_KEYS),
    spec("scan", -2, false, Global, NO_KEYS),
    spec("get", 2, false, Key, ONE_KEY),
    spec("set", -3, true, Key, ONE_KEY),
    spec("getdel", 2, true, Key, ONE_KEY),
    spec("mget", -2, false, Keys, ALL_KEYS),
    spec("mset", -3, true, Keys, (1, -1, 2)),
    spec("del", -2, true, Keys, ALL_KEYS),
    spec("unlink", -2, true, Keys, ALL_KEYS),
    spec("exists", -2, false, Keys, ALL_KEYS),
    spec("incr", 2, true, Key, ONE_KEY),
    spec("decr", 2, true, Key, ONE_KEY),
    spec("incrby", 3, true, Key, ONE_KEY),
    spec("decrby", 3, true, Key, ONE_KEY),
    spec("append", 3, true, Key, ONE_KEY),
    spec("strlen", 2, false, Key, ONE_KEY),
    spec("expire", -3, true, Key, ONE_KEY),
    spec("pexpire", -3, true, Key, ONE_KEY),
    spec("expireat", -3, true, Key, ONE_KEY),
    spec("pexpireat", -3, true, Key, ONE_KEY),
    spec("ttl", 2, false, Key, ONE_KEY),
    spec("pttl", 2, false, Key, ONE_KEY),
    spec("persist", 2, true, Key, ONE_KEY),
    spec("type", 2, false, Key, ONE_KEY),
    spec("hset", -4, true, Key, ONE_KEY),
    spec("hmset", -4, true, Key, ONE_KEY),
    spec("hget", 3, false, Key, ONE_KEY),
    spec("hmget", -3, false, Key, ONE_KEY),
    spec("hgetall", 2, false, Key, ONE_KEY),
    spec("hdel", -3, true, Key, ONE_KEY),
    spec("hlen", 2, false, Key, ONE_KEY),
    spec("hexists", 3, false, Key, ONE_KEY),
    spec("zadd", -4, true, Key, ONE_KEY),
    spec("zrem", -3, true, Key, ONE_KEY),
    spec("zcard", 2, false, Key, ONE_KEY),
    spec("zscore", 3, false, Key, ONE_KEY),
    spec("zrangebyscore", -4, false, Key, ONE_KEY),
    spec("keel.scanhash", 4, false, Key, ONE_KEY),
];

/// Longest command name in the table, with room to spare.
const NAME_BYTES_MAX: usize = 32;

/// The table row of a command name (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    if name.len() > NAME_BYTES_MAX {
        return None;
    }
    COMMANDS.iter().find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// `name` in lower case, in `buf` (no allocation per request); a name too
/// long for any command comes back empty, which matches none.
fn lower<'b>(name: &[u8], buf: &'b mut [u8; NAME_BYTES_MAX]) -> &'b [u8] {
    let Some(out) = buf.get_mut(..name.len()) else { return &[] };
    out.copy_from_slice(name);
    out.make_ascii_lowercase();
    out
}

/// Whether `args` has the number of arguments `spec` allows.
pub fn arity_ok(spec: &Spec, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(spec.arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Limits the data commands need.
#[derive(Debug, Clone, Copy)]
pub struct ExecLimits {
    pub value_bytes_max: usize,
}

/// Runs a data command (any route but `Session`) on the calling reactor.
pub async fn execute(db: &Db, args: &[Vec<u8>], resp3: bool, limits: ExecLimits) -> Outcome {
    match run(db, args, resp3, limits).await {
        Ok(outcome) => outcome,
        Err(reply) => reply.into(),
    }
}

/// Most plain SETs committed as one transaction, and most value bytes in
/// it: well inside the engine's lock and record limits, and short enough
/// that one record does not hold a shard's writers for long.
const SET_RUN_MAX: usize = 64;
const SET_RUN_BYTES_MAX: usize = 256 << 10;

/// Runs a connection's consecutive data commands (all routed to the calling
/// reactor) in order, one outcome each. Runs of plain SETs (no options) are
/// committed as one transaction each, with one reply per SET; what they
/// change and reply is what running them one by one would.
pub async fn execute_group(db: &Db, group: &[Vec<Vec<u8>>], resp3: bool, limits: ExecLimits) -> Vec<Outcome> {
    if group.len() > 1 {
        // The first argument of a grouped command is its (first) key, or for
        // a few (SCAN) not a key, which only costs a lookup that misses.
        let keys: Vec<(u32, &[u8])> =
            group.iter().filter_map(|a| a.get(1)).map(|k| (db.shard_of_key(k), k.as_slice())).collect();
        db.cache.warm(&keys);
    }
    let mut outcomes = Vec::with_capacity(group.len());
    let mut i = 0;
    while i < group.len() {
        let run = plain_set_run(&group[i..]);
        if run < 2 {
            outcomes.push(execute(db, &group[i], resp3, limits).await);
            i += 1;
            continue;
        }
        let sets: Vec<&[Vec<u8>]> = group[i..i + run].iter().map(Vec::as_slice).collect();
        match strings::set_plain_many(db, &sets, now_ms()).await {
            Ok(lsn) => outcomes.extend((0..run).map(|_| Outcome { reply: Reply::Ok, lsn })),
            // Nothing was written: one by one, each SET gets its own reply.
            Err(_) => {
                for args in &group[i..i + run] {
                    outcomes.push(execute(db, args, resp3, limits).await);
                }
            }
        }
        i += run;
    }
    outcomes
}

/// How many plain SETs `group` starts with, within the run limits.
fn plain_set_run(group: &[Vec<Vec<u8>>]) -> usize {
    let mut bytes = 0;
    group
        .iter()
        .take(SET_RUN_MAX)
        .take_while(|a| {
            bytes += a.get(1).map_or(0, Vec::len) + a.get(2).map_or(0, Vec::len);
            strings::is_plain_set(a) && bytes <= SET_RUN_BYTES_MAX
        })
        .count()
}

async fn run(db: &Db, a: &[Vec<u8>], resp3: bool, limits: ExecLimits) -> Res<Outcome> {
    let now = now_ms();
    let mut buf = [0; NAME_BYTES_MAX];
    let key = a.get(1).map_or(&[][..], Vec::as_slice);
    match lower(&a[0], &mut buf) {
        b"get" => strings::get(db, key, now).await,
        b"set" => strings::set(db, a, now).await,
        b"getdel" => strings::getdel(db, key, now).await,
        b"mget" => strings::mget(db, &a[1..], now).await,
        b"mset" => strings::mset(db, &a[1..], now).await,
        b"incr" => strings::incr_by(db, key, 1, now).await,
        b"decr" => strings::incr_by(db, key, -1, now).await,
        b"incrby" => strings::incr_by(db, key, args::int(&a[2])?, now).await,
        b"decrby" => {
            let by = args::int(&a[2])?.checked_neg().ok_or_else(|| Reply::error("ERR decrement would overflow"))?;
            strings::incr_by(db, key, by, now).await
        }
        b"append" => strings::append(db, key, &a[2], limits.value_bytes_max, now).await,
        b"strlen" => strings::strlen(db, key, now).await,
        b"del" | b"unlink" => keyspace::del(db, &a[1..], now).await,
        b"exists" => keyspace::exists(db, &a[1..], now).await,
        b"expire" => keyspace::expire(db, a, 1000, false, now).await,
        b"pexpire" => keyspace::expire(db, a, 1, false, now).await,
        b"expireat" => keyspace::expire(db, a, 1000, true, now).await,
        b"pexpireat" => keyspace::expire(db, a, 1, true, now).await,
        b"ttl" => keyspace::ttl(db, key, 1000, now).await,
        b"pttl" => keyspace::ttl(db, key, 1, now).await,
        b"persist" => keyspace::persist(db, key, now).await,
        b"type" => keyspace::type_of(db, key, now).await,
        b"scan" => keyspace::scan(db, a, now).await,
        b"dbsize" => keyspace::dbsize(db).await,
        b"flushdb" | b"flushall" => keyspace::flushdb(db, a).await,
        b"hset" => hashes::hset(db, a, now, false).await,
        b"hmset" => hashes::hset(db, a, now, true).await,
        b"hget" => hashes::hget(db, key, &a[2], now).await,
        b"hmget" => hashes::hmget(db, key, &a[2..], now).await,
        b"hgetall" => hashes::hgetall(db, key, now).await,
        b"hdel" => hashes::hdel(db, key, &a[2..], now).await,
        b"hlen" => hashes::hlen(db, key, now).await,
        b"hexists" => hashes::hexists(db, key, &a[2], now).await,
        b"zadd" => zsets::zadd(db, a, now).await,
        b"zrem" => zsets::zrem(db, key, &a[2..], now).await,
        b"zcard" => zsets::zcard(db, key, now).await,
        b"zscore" => zsets::zscore(db, key, &a[2], now).await,
        b"zrangebyscore" => zsets::zrangebyscore(db, a, resp3, now).await,
        b"keel.scanhash" => zsets::scanhash(db, a, now).await,
        _ => Err(Reply::error(format!("ERR unknown command '{}'", String::from_utf8_lossy(&a[0])))),
    }
}
