//! The member label: the first 4 KiB of every member of a set, saying which
//! set it belongs to and where in it. Byte layout in docs/FORMAT.md
//! ("Member labels"); integers little-endian.

/// Bytes of a label (the checksum covers all bytes before its last four).
pub const LABEL_BYTES: usize = 4096;
/// "KEELSET" and a zero byte.
pub const MAGIC: [u8; 8] = *b"KEELSET\0";
pub const VERSION: u32 = 1;
const CRC_OFFSET: usize = LABEL_BYTES - 4;

/// What a label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    /// Random at creation; the same on every member of a set.
    pub set_id: [u8; 16],
    /// This member's position, 0-based.
    pub member_index: u32,
    pub member_count: u32,
    /// The set's logical block size.
    pub block_size_bytes: u32,
    /// Bytes of consecutive set addresses on one member before the next.
    pub stripe_bytes: u32,
    /// Where the member's data begins (the label region's size).
    pub data_offset_bytes: u64,
    /// Bytes of data on each member (a multiple of `stripe_bytes`).
    pub member_data_bytes: u64,
}

/// What the label area of a member holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelState {
    /// Only zeros: never labelled (a new or wiped device).
    Blank,
    /// Something else: not a Keel member (a volume of its own, another
    /// program's data).
    NotALabel,
    /// A Keel label that does not verify.
    Damaged(String),
    Labelled(Label),
}

impl Label {
    pub fn encode(&self) -> [u8; LABEL_BYTES] {
        let mut out = [0u8; LABEL_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(LABEL_BYTES as u32).to_le_bytes());
        out[16..32].copy_from_slice(&self.set_id);
        out[32..36].copy_from_slice(&self.member_index.to_le_bytes());
        out[36..40].copy_from_slice(&self.member_count.to_le_bytes());
        out[40..44].copy_from_slice(&self.block_size_bytes.to_le_bytes());
        out[44..48].copy_from_slice(&self.stripe_bytes.to_le_bytes());
        out[48..56].copy_from_slice(&self.data_offset_bytes.to_le_bytes());
        out[56..64].copy_from_slice(&self.member_data_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the label area of a member (at least [`LABEL_BYTES`]).
    pub fn decode(bytes: &[u8]) -> LabelState {
        let Some(bytes) = bytes.get(..LABEL_BYTES) else {
            return LabelState::Damaged(format!("label area shorter than {LABEL_BYTES} bytes"));
        };
        if bytes.iter().all(|&b| b == 0) {
            return LabelState::Blank;
        }
        if bytes[0..8] != MAGIC {
            return LabelState::NotALabel;
        }
        let crc = u32_at(bytes, CRC_OFFSET);
        if crc != crc32c::crc32c(&bytes[..CRC_OFFSET]) {
            return LabelState::Damaged("checksum mismatch".into());
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return LabelState::Damaged(format!("label version {version}, this build reads {VERSION}"));
        }
        let label = Label {
            set_id: bytes[16..32].try_into().unwrap_or([0; 16]),
            member_index: u32_at(bytes, 32),
            member_count: u32_at(bytes, 36),
            block_size_bytes: u32_at(bytes, 40),
            stripe_bytes: u32_at(bytes, 44),
            data_offset_bytes: u64_at(bytes, 48),
            member_data_bytes: u64_at(bytes, 56),
        };
        match label.shape_problem() {
            Some(problem) => LabelState::Damaged(problem),
            None => LabelState::Labelled(label),
        }
    }

    /// Fields no writer of this format produces, so that later arithmetic
    /// on a label that passed its checksum cannot overflow or divide by zero.
    fn shape_problem(&self) -> Option<String> {
        let block = u64::from(self.block_size_bytes);
        let stripe = u64::from(self.stripe_bytes);
        if !self.block_size_bytes.is_power_of_two() || block < LABEL_BYTES as u64 {
            return Some(format!("block size {} is not a power of two of at least 4 KiB", self.block_size_bytes));
        }
        if stripe == 0 || stripe % block != 0 {
            return Some(format!("stripe of {stripe} bytes is not a multiple of the block size"));
        }
        if self.member_count == 0 || self.member_index >= self.member_count {
            return Some(format!("member {} of {}", self.member_index, self.member_count));
        }
        if !self.data_offset_bytes.is_multiple_of(block) || self.data_offset_bytes < LABEL_BYTES as u64 {
            return Some(format!("data offset {} is not a whole number of blocks", self.data_offset_bytes));
        }
        if self.member_data_bytes == 0
            || !self.member_data_bytes.is_multiple_of(stripe)
            || self.member_data_bytes > 1 << 56
        {
            return Some(format!("{} data bytes per member is not a whole number of stripes", self.member_data_bytes));
        }
        None
    }
}

/// A set id as a UUID-style string, for messages.
pub fn format_set_id(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> Label {
        Label {
            set_id: [7; 16],
            member_index: 1,
            member_count: 2,
            block_size_bytes: 4096,
            stripe_bytes: 128 << 10,
            data_offset_bytes: 4096,
            member_data_bytes: 64 << 20,
        }
    }

    #[test]
    fn a_label_round_trips_and_its_bytes_are_pinned() {
        let bytes = label().encode();
        assert_eq!(Label::decode(&bytes), LabelState::Labelled(label()));
        assert_eq!(&bytes[0..8], b"KEELSET\0");
        assert_eq!(bytes[8..16], [1, 0, 0, 0, 0, 0x10, 0, 0]);
        assert_eq!(bytes[32..40], [1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(bytes[44..48], [0, 0, 2, 0]);
        assert!(bytes[64..4092].iter().all(|&b| b == 0));
    }

    #[test]
    fn zeros_other_data_and_damage_are_told_apart() {
        assert_eq!(Label::decode(&[0u8; 4096]), LabelState::Blank);
        let mut other = [0u8; 4096];
        other[0..8].copy_from_slice(b"KEELVOL1");
        assert_eq!(Label::decode(&other), LabelState::NotALabel);
        let mut flipped = label().encode();
        flipped[40] ^= 1;
        assert!(matches!(Label::decode(&flipped), LabelState::Damaged(m) if m.contains("checksum")));
        let mut odd = label();
        odd.member_index = 2;
        assert!(matches!(Label::decode(&odd.encode()), LabelState::Damaged(m) if m.contains("member 2 of 2")));
        odd = label();
        odd.stripe_bytes = 0;
        assert!(matches!(Label::decode(&odd.encode()), LabelState::Damaged(_)));
        assert!(matches!(Label::decode(&[1u8; 100]), LabelState::Damaged(_)));
    }
}
