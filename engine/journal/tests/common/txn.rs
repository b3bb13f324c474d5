//! A small transaction payload for atomicity checks: an id and a set of
//! (key, value) updates, framed so that any truncation or mix-up of two
//! transactions fails to decode.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub id: u64,
    pub updates: Vec<(u32, u64)>,
}

impl Txn {
    /// A transaction of 1..=8 updates drawn from `seed`.
    pub fn generate(id: u64, seed: u64) -> Txn {
        let mut x = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 17
        };
        let count = 1 + next() % 8;
        let updates = (0..count).map(|_| ((next() % 64) as u32, next())).collect();
        Txn { id, updates }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.updates.len() * 12);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&(self.updates.len() as u32).to_le_bytes());
        for (key, value) in &self.updates {
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        // The trailer repeats the id: a payload cut short or spliced from two
        // transactions does not decode.
        out.extend_from_slice(&self.id.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Txn> {
        let id = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
        let count = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
        if bytes.len() != 12 + count * 12 + 8 {
            return None;
        }
        let mut updates = Vec::with_capacity(count);
        for i in 0..count {
            let at = 12 + i * 12;
            let key = u32::from_le_bytes(bytes[at..at + 4].try_into().ok()?);
            let value = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().ok()?);
            updates.push((key, value));
        }
        let trailer = u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().ok()?);
        (trailer == id).then_some(Txn { id, updates })
    }
}
