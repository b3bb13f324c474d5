//! How Redis keys map onto engine keys (docs/FORMAT.md, "Key-value gateway
//! keys").
//!
//! Every record of one Redis key `K` starts with the same 9 bytes, tag 0x81
//! and the 64-bit identifier `id(K)`, so the engine routes them all to one
//! shard: a command on one key is a single-shard transaction, and HGETALL or
//! ZRANGEBYSCORE is a single-shard scan.
//!
//! ```text
//! 0x81 | id(K) u64 BE | len(K) u16 BE | K | 0x00                          meta
//! 0x81 | id(K) u64 BE | len(K) u16 BE | K | 0x01 | field                  hash field -> value
//! 0x81 | id(K) u64 BE | len(K) u16 BE | K | 0x02 | member                 zset member -> score
//! 0x81 | id(K) u64 BE | len(K) u16 BE | K | 0x03 | score u64 BE | member zset by score -> (empty)
//! 0x85 | anchor(s) u64 BE | expire_at_ms u64 BE | len(K) u16 BE | K      expiry index of shard s
//! 0x86 | anchor(s) u64 BE                                                key count of shard s (i64 LE)
//! ```
//!
//! `len(K)` keeps one key's records from mixing with another key's that
//! shares the identifier (a 64-bit hash collision). An anchor is the smallest
//! identifier that routes to shard `s`, which puts a shard's expiry index and
//! key count on that shard itself, next to the keys they describe.

use keel_engine::route;

/// Records of Redis keys.
pub const TAG_KEY: u8 = 0x81;
/// Per-shard expiry index.
pub const TAG_EXPIRY: u8 = 0x85;
/// Per-shard key count.
pub const TAG_COUNT: u8 = 0x86;
/// Start and end (exclusive) of every tag the gateway may write: FLUSHDB
/// deletes exactly this range. The NFS gateway's tags start at 0x90.
pub const TAG_RANGE_START: u8 = 0x81;
pub const TAG_RANGE_END: u8 = 0x90;

pub const SUB_META: u8 = 0x00;
pub const SUB_FIELD: u8 = 0x01;
pub const SUB_MEMBER: u8 = 0x02;
pub const SUB_SCORE: u8 = 0x03;

/// Bytes the layout adds around `K` in its longest record (a score entry):
/// tag, id, length, sub-tag, score.
pub const KEY_OVERHEAD_BYTES: usize = 1 + 8 + 2 + 1 + 8;

/// The 64-bit identifier of a Redis key: FNV-1a over its bytes, then the
/// splitmix64 finaliser so that similar keys spread over shards.
pub fn key_id(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `0x81 | id | len | K`: the prefix of every record of `key`. `key` must
/// have passed `Db::check_name` (far below `len`'s 65,535-byte range).
pub fn key_prefix(key: &[u8]) -> Vec<u8> {
    debug_assert!(key.len() <= usize::from(u16::MAX), "unchecked key of {} bytes", key.len());
    let mut out = Vec::with_capacity(11 + key.len() + 1);
    out.push(TAG_KEY);
    out.extend_from_slice(&key_id(key).to_be_bytes());
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// `0x81 | id`: the bytes of every record of `key` that decide its shard
/// (`route::route_bytes`), built without an allocation. Defined for keys of
/// any length, so a connection can route a request before the command checks
/// the key: the other record builders need a key that passed `Db::check_name`.
pub fn route_prefix(key: &[u8]) -> [u8; route::ROUTE_PREFIX_BYTES] {
    let mut out = [0; route::ROUTE_PREFIX_BYTES];
    out[0] = TAG_KEY;
    out[1..].copy_from_slice(&key_id(key).to_be_bytes());
    out
}

/// The engine key of one record of `key`: its prefix, a sub-tag, then `rest`.
pub fn record_key(key: &[u8], sub: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = key_prefix(key);
    out.push(sub);
    out.extend_from_slice(rest);
    out
}

pub fn meta_key(key: &[u8]) -> Vec<u8> {
    record_key(key, SUB_META, &[])
}

/// `[start, end)` covering every record of `key` whose sub-tag is `sub`.
pub fn sub_range(key: &[u8], sub: u8) -> (Vec<u8>, Vec<u8>) {
    let start = record_key(key, sub, &[]);
    let end = record_key(key, sub + 1, &[]);
    (start, end)
}

/// `[start, end)` covering every record of `key`.
pub fn all_records(key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let start = key_prefix(key);
    let end = route::prefix_successor(&start).expect("a key prefix starts with 0x81, so it has a successor");
    (start, end)
}

/// Splits a meta engine key back into the Redis key; `None` for any other
/// record.
pub fn parse_meta_key(engine_key: &[u8]) -> Option<(u64, &[u8])> {
    let (&tag, rest) = engine_key.split_first()?;
    if tag != TAG_KEY || rest.len() < 11 {
        return None;
    }
    let id = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let len = usize::from(u16::from_be_bytes(rest[8..10].try_into().ok()?));
    let key = rest.get(10..10 + len)?;
    (rest.len() == 10 + len + 1 && rest[10 + len] == SUB_META).then_some((id, key))
}

/// The part of a record key after `prefix ++ sub`.
pub fn record_suffix<'a>(engine_key: &'a [u8], key: &[u8]) -> &'a [u8] {
    engine_key.get(11 + key.len() + 1..).unwrap_or_default()
}

/// Sortable encoding of a score: big-endian bytes order like the doubles.
pub fn score_bytes(score: f64) -> [u8; 8] {
    let score = if score == 0.0 { 0.0 } else { score }; // -0.0 sorts as 0.0
    let bits = score.to_bits();
    let ordered = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    ordered.to_be_bytes()
}

pub fn score_from_bytes(bytes: [u8; 8]) -> f64 {
    let ordered = u64::from_be_bytes(bytes);
    let bits = if ordered >> 63 == 1 { ordered & !(1 << 63) } else { !ordered };
    f64::from_bits(bits)
}

/// The anchors of a shard set: for each shard, the smallest identifier that a
/// key `tag | id` routes to it.
#[derive(Debug, Clone)]
pub struct Anchors {
    pub expiry: Vec<u64>,
    pub count: Vec<u64>,
}

impl Anchors {
    pub fn new(shard_count: u32) -> Anchors {
        Anchors { expiry: anchors_for(TAG_EXPIRY, shard_count), count: anchors_for(TAG_COUNT, shard_count) }
    }

    pub fn count_key(&self, shard: u32) -> Vec<u8> {
        let mut out = vec![TAG_COUNT];
        out.extend_from_slice(&self.count[shard as usize].to_be_bytes());
        out
    }

    /// `0x85 | anchor | expire_at | len | K`.
    pub fn expiry_key(&self, shard: u32, expire_at_ms: u64, key: &[u8]) -> Vec<u8> {
        let mut out = self.expiry_prefix(shard);
        out.extend_from_slice(&expire_at_ms.to_be_bytes());
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key);
        out
    }

    pub fn expiry_prefix(&self, shard: u32) -> Vec<u8> {
        let mut out = vec![TAG_EXPIRY];
        out.extend_from_slice(&self.expiry[shard as usize].to_be_bytes());
        out
    }
}

/// Splits an expiry index key into (expire_at_ms, K).
pub fn parse_expiry_key(engine_key: &[u8]) -> Option<(u64, &[u8])> {
    let rest = engine_key.get(9..)?;
    let expire_at_ms = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let len = usize::from(u16::from_be_bytes(rest.get(8..10)?.try_into().ok()?));
    let key = rest.get(10..)?;
    (key.len() == len).then_some((expire_at_ms, key))
}

fn anchors_for(tag: u8, shard_count: u32) -> Vec<u64> {
    let mut anchors = vec![None; shard_count as usize];
    let mut missing = shard_count as usize;
    let mut id = 0u64;
    while missing > 0 {
        let mut probe = vec![tag];
        probe.extend_from_slice(&id.to_be_bytes());
        let shard = route::shard_of(&probe, shard_count) as usize;
        if anchors[shard].is_none() {
            anchors[shard] = Some(id);
            missing -= 1;
        }
        id += 1;
    }
    anchors.into_iter().map(|a| a.expect("every shard anchored")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_of_a_key_routes_to_one_shard() {
        for shards in [1, 2, 3, 8, 31] {
            for key in [&b"a"[..], b"user123", b""] {
                let s = route::shard_of(&meta_key(key), shards);
                assert_eq!(route::shard_of(&route_prefix(key), shards), s);
                assert_eq!(route::shard_of(&record_key(key, SUB_FIELD, b"f"), shards), s);
                assert_eq!(route::shard_of(&record_key(key, SUB_SCORE, &[9; 20]), shards), s);
            }
        }
    }

    #[test]
    fn keys_of_any_length_can_be_routed() {
        // A request is routed before its command refuses a key too long for
        // the layout; routing must not depend on the key fitting it.
        let huge = vec![b'k'; 200_000];
        assert_eq!(route_prefix(&huge)[..], route::route_bytes(&route_prefix(&huge))[..]);
        assert!(route::shard_of(&route_prefix(&huge), 8) < 8);
    }

    #[test]
    fn anchors_route_to_their_shard() {
        let a = Anchors::new(7);
        for s in 0..7 {
            assert_eq!(route::shard_of(&a.count_key(s), 7), s);
            assert_eq!(route::shard_of(&a.expiry_key(s, 123, b"k"), 7), s);
        }
    }

    #[test]
    fn score_encoding_preserves_order() {
        let scores = [f64::NEG_INFINITY, -1e300, -2.5, -0.0, 0.0, 1e-300, 3.0, 1e300, f64::INFINITY];
        for w in scores.windows(2) {
            assert!(score_bytes(w[0]) <= score_bytes(w[1]), "{} {}", w[0], w[1]);
            assert_eq!(score_from_bytes(score_bytes(w[1])), w[1]);
        }
    }

    #[test]
    fn meta_keys_parse_back_and_other_records_do_not() {
        let k = meta_key(b"hello");
        assert_eq!(parse_meta_key(&k), Some((key_id(b"hello"), &b"hello"[..])));
        assert_eq!(parse_meta_key(&record_key(b"hello", SUB_FIELD, b"")), None);
        let a = Anchors::new(3);
        let e = a.expiry_key(1, 77, b"k");
        assert_eq!(parse_expiry_key(&e), Some((77, &b"k"[..])));
    }
}
