//! Directory entry values (docs/FORMAT.md, "Directory entries"). Each entry
//! is stored twice in its directory: by name (for LOOKUP) and by cookie (for
//! READDIR, so that a listing resumes exactly where it stopped however the
//! directory changed meanwhile).

use crate::fs::inode::FileType;

/// The value under an entry's by-name key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByName {
    pub cookie: u64,
    pub ino: u64,
    pub ftype: FileType,
}

impl ByName {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(17);
        b.extend_from_slice(&self.cookie.to_le_bytes());
        b.extend_from_slice(&self.ino.to_le_bytes());
        b.push(self.ftype as u8);
        b
    }

    pub fn decode(b: &[u8]) -> Option<ByName> {
        if b.len() != 17 {
            return None;
        }
        Some(ByName {
            cookie: u64::from_le_bytes(b[0..8].try_into().ok()?),
            ino: u64::from_le_bytes(b[8..16].try_into().ok()?),
            ftype: FileType::from_u32(u32::from(b[16]))?,
        })
    }
}

/// The value under an entry's by-cookie key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByCookie {
    pub ino: u64,
    pub ftype: FileType,
    pub name: Vec<u8>,
}

impl ByCookie {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(9 + self.name.len());
        b.extend_from_slice(&self.ino.to_le_bytes());
        b.push(self.ftype as u8);
        b.extend_from_slice(&self.name);
        b
    }

    pub fn decode(b: &[u8]) -> Option<ByCookie> {
        if b.len() < 10 {
            return None;
        }
        Some(ByCookie {
            ino: u64::from_le_bytes(b[0..8].try_into().ok()?),
            ftype: FileType::from_u32(u32::from(b[8]))?,
            name: b[9..].to_vec(),
        })
    }
}

/// Longest name in a directory (NAME_MAX).
pub const NAME_BYTES_MAX: usize = 255;

/// Why a name cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameCheck {
    Ok,
    /// "." or "..".
    Dot,
    TooLong,
    /// Empty, or holds '/' or NUL.
    Invalid,
}

pub fn check_name(name: &[u8]) -> NameCheck {
    if name.len() > NAME_BYTES_MAX {
        NameCheck::TooLong
    } else if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        NameCheck::Invalid
    } else if name == b"." || name == b".." {
        NameCheck::Dot
    } else {
        NameCheck::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_reject_damage() {
        let n = ByName { cookie: 9, ino: 1 << 48 | 3, ftype: FileType::Directory };
        assert_eq!(ByName::decode(&n.encode()), Some(n));
        assert_eq!(ByName::decode(&n.encode()[..16]), None);
        let c = ByCookie { ino: 5, ftype: FileType::Symlink, name: b"link".to_vec() };
        assert_eq!(ByCookie::decode(&c.encode()), Some(c));
        assert_eq!(ByCookie::decode(&[0; 9]), None);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name(b"ok"), NameCheck::Ok);
        assert_eq!(check_name(b".."), NameCheck::Dot);
        assert_eq!(check_name(b"a/b"), NameCheck::Invalid);
        assert_eq!(check_name(b""), NameCheck::Invalid);
        assert_eq!(check_name(&[b'x'; 256]), NameCheck::TooLong);
        assert_eq!(check_name(&[b'x'; 255]), NameCheck::Ok);
    }
}
