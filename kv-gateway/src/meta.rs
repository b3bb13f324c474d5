//! The meta record of a Redis key: its type, its expiry, and either the
//! string value or the collection's element count (docs/FORMAT.md).
//!
//! ```text
//! kind u8 (1 string, 2 hash, 3 zset) | expire_at_ms u64 LE (0: none) | body
//! body: string -> the value bytes; hash, zset -> element count u64 LE
//! ```

/// The type of a Redis key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Hash,
    Zset,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::Zset => "zset",
        }
    }

    fn code(self) -> u8 {
        match self {
            Kind::String => 1,
            Kind::Hash => 2,
            Kind::Zset => 3,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::String),
            2 => Some(Kind::Hash),
            3 => Some(Kind::Zset),
            _ => None,
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Kind> {
        match name.to_ascii_lowercase().as_slice() {
            b"string" => Some(Kind::String),
            b"hash" => Some(Kind::Hash),
            b"zset" => Some(Kind::Zset),
            _ => None,
        }
    }
}

const HEADER_BYTES: usize = 9;

/// A decoded meta record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Unix time in milliseconds after which the key is gone; 0 for never.
    pub expire_at_ms: u64,
    /// The value of a string.
    pub value: Vec<u8>,
    /// The element count of a hash or zset.
    pub len: u64,
}

impl Meta {
    pub fn string(value: Vec<u8>) -> Meta {
        Meta { kind: Kind::String, expire_at_ms: 0, value, len: 0 }
    }

    pub fn collection(kind: Kind) -> Meta {
        debug_assert!(kind != Kind::String);
        Meta { kind, expire_at_ms: 0, value: Vec::new(), len: 0 }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at_ms != 0 && self.expire_at_ms <= now_ms
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.value.len().max(8));
        out.push(self.kind.code());
        out.extend_from_slice(&self.expire_at_ms.to_le_bytes());
        match self.kind {
            Kind::String => out.extend_from_slice(&self.value),
            Kind::Hash | Kind::Zset => out.extend_from_slice(&self.len.to_le_bytes()),
        }
        out
    }

    /// `None` for bytes that are not a meta record: the caller reports
    /// corruption instead of guessing.
    pub fn decode(bytes: &[u8]) -> Option<Meta> {
        let kind = Kind::from_code(*bytes.first()?)?;
        let expire_at_ms = u64::from_le_bytes(bytes.get(1..HEADER_BYTES)?.try_into().ok()?);
        let body = &bytes[HEADER_BYTES..];
        match kind {
            Kind::String => Some(Meta { kind, expire_at_ms, value: body.to_vec(), len: 0 }),
            Kind::Hash | Kind::Zset => {
                let len = u64::from_le_bytes(body.try_into().ok()?);
                Some(Meta { kind, expire_at_ms, value: Vec::new(), len })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_records_round_trip() {
        let mut s = Meta::string(b"v".to_vec());
        s.expire_at_ms = 42;
        assert_eq!(Meta::decode(&s.encode()), Some(s));
        let mut h = Meta::collection(Kind::Hash);
        h.len = 3;
        assert_eq!(Meta::decode(&h.encode()), Some(h));
    }

    #[test]
    fn garbage_does_not_decode() {
        assert_eq!(Meta::decode(b""), None);
        assert_eq!(Meta::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Meta::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 1]), None);
    }
}
