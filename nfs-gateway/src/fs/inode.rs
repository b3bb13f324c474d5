//! The inode record: an inode's attributes as stored under its attribute
//! key (docs/FORMAT.md, "Inode record"). Little-endian, fixed 128-byte
//! header, then a symlink's target. Decoding never panics: a record that does
//! not decode is reported as corruption.

use std::time::{SystemTime, UNIX_EPOCH};

pub const INODE_RECORD_VERSION: u8 = 1;
const HEADER_BYTES: usize = 128;
/// Longest symlink target (PATH_MAX).
pub const SYMLINK_TARGET_BYTES_MAX: usize = 4096;

pub const FLAG_SPARSE: u16 = 1 << 0;
pub const FLAG_HAS_CREATE_VERF: u16 = 1 << 1;

/// NFS `ftype3` values, which are also the stored values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular = 1,
    Directory = 2,
    Block = 3,
    Character = 4,
    Symlink = 5,
    Socket = 6,
    Fifo = 7,
}

impl FileType {
    pub fn from_u32(v: u32) -> Option<FileType> {
        Some(match v {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::Block,
            4 => FileType::Character,
            5 => FileType::Symlink,
            6 => FileType::Socket,
            7 => FileType::Fifo,
            _ => return None,
        })
    }
}

/// A point in time: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time {
    pub secs: u64,
    pub nsecs: u32,
}

impl Time {
    pub fn now() -> Time {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Time { secs: d.as_secs(), nsecs: d.subsec_nanos() }
    }
}

/// Everything stored about an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub ino: u64,
    pub ftype: FileType,
    pub flags: u16,
    /// Permission bits including setuid, setgid and sticky (0o7777).
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Changes when an inode number could be reused; part of file handles.
    pub generation: u32,
    pub size: u64,
    /// Bytes of storage the data takes (chunk lengths rounded up to 4 KiB).
    pub used_bytes: u64,
    pub rdev: (u32, u32),
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    /// Directories: the parent directory (the root is its own parent).
    pub parent: u64,
    /// Directories: the cookie the next new entry gets (3 and up; 1 and 2
    /// are "." and "..").
    pub next_cookie: u64,
    /// Directories: entries other than "." and "..".
    pub entries: u64,
    /// Regular files made by an exclusive CREATE: the client's verifier.
    pub create_verf: [u8; 8],
    /// Symlinks: the target.
    pub target: Vec<u8>,
}

/// The first cookie a directory hands to a real entry.
pub const FIRST_ENTRY_COOKIE: u64 = 3;

impl Inode {
    /// A fresh inode with every time set to `now`.
    pub fn new(ino: u64, ftype: FileType, mode: u32, uid: u32, gid: u32, generation: u32, now: Time) -> Inode {
        Inode {
            ino,
            ftype,
            flags: 0,
            mode: mode & 0o7777,
            nlink: if ftype == FileType::Directory { 2 } else { 1 },
            uid,
            gid,
            generation,
            size: 0,
            used_bytes: 0,
            rdev: (0, 0),
            atime: now,
            mtime: now,
            ctime: now,
            parent: 0,
            next_cookie: FIRST_ENTRY_COOKIE,
            entries: 0,
            create_verf: [0; 8],
            target: Vec::new(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.ftype == FileType::Directory
    }

    /// The size reported to clients: a directory's grows with its entries.
    pub fn reported_size(&self) -> u64 {
        match self.ftype {
            FileType::Directory => 4096 + self.entries.saturating_mul(32),
            _ => self.size,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        assert!(self.target.len() <= SYMLINK_TARGET_BYTES_MAX);
        let mut b = Vec::with_capacity(HEADER_BYTES + self.target.len());
        b.push(INODE_RECORD_VERSION);
        b.push(self.ftype as u8);
        b.extend_from_slice(&self.flags.to_le_bytes());
        for v in [self.mode, self.nlink, self.uid, self.gid, self.generation] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[0; 4]);
        for v in [self.size, self.used_bytes] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.rdev.0.to_le_bytes());
        b.extend_from_slice(&self.rdev.1.to_le_bytes());
        for t in [self.atime, self.mtime, self.ctime] {
            b.extend_from_slice(&t.secs.to_le_bytes());
            b.extend_from_slice(&t.nsecs.to_le_bytes());
        }
        b.extend_from_slice(&[0; 4]);
        for v in [self.parent, self.next_cookie, self.entries] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.create_verf);
        b.extend_from_slice(&(self.target.len() as u32).to_le_bytes());
        b.resize(HEADER_BYTES, 0);
        b.extend_from_slice(&self.target);
        debug_assert_eq!(b.len(), HEADER_BYTES + self.target.len());
        b
    }

    pub fn decode(ino: u64, b: &[u8]) -> Result<Inode, String> {
        let u32_at = |o: usize| b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
        let u64_at = |o: usize| b.get(o..o + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
        let time_at = |o: usize| Some(Time { secs: u64_at(o)?, nsecs: u32_at(o + 8)? });
        if b.len() < HEADER_BYTES {
            return Err(format!("inode {ino:#x}: record of {} bytes is shorter than its header", b.len()));
        }
        if b[0] != INODE_RECORD_VERSION {
            return Err(format!("inode {ino:#x}: record version {} is unknown", b[0]));
        }
        let ftype = FileType::from_u32(u32::from(b[1])).ok_or_else(|| format!("inode {ino:#x}: bad type {}", b[1]))?;
        let target_len = u32_at(124).unwrap_or(0) as usize;
        if target_len > SYMLINK_TARGET_BYTES_MAX || b.len() != HEADER_BYTES + target_len {
            return Err(format!("inode {ino:#x}: symlink target length {target_len} does not fit the record"));
        }
        let bad = || format!("inode {ino:#x}: truncated record");
        let mut create_verf = [0u8; 8];
        create_verf.copy_from_slice(&b[116..124]);
        Ok(Inode {
            ino,
            ftype,
            flags: u16::from_le_bytes([b[2], b[3]]),
            mode: u32_at(4).ok_or_else(bad)? & 0o7777,
            nlink: u32_at(8).ok_or_else(bad)?,
            uid: u32_at(12).ok_or_else(bad)?,
            gid: u32_at(16).ok_or_else(bad)?,
            generation: u32_at(20).ok_or_else(bad)?,
            size: u64_at(28).ok_or_else(bad)?,
            used_bytes: u64_at(36).ok_or_else(bad)?,
            rdev: (u32_at(44).ok_or_else(bad)?, u32_at(48).ok_or_else(bad)?),
            atime: time_at(52).ok_or_else(bad)?,
            mtime: time_at(64).ok_or_else(bad)?,
            ctime: time_at(76).ok_or_else(bad)?,
            parent: u64_at(92).ok_or_else(bad)?,
            next_cookie: u64_at(100).ok_or_else(bad)?,
            entries: u64_at(108).ok_or_else(bad)?,
            create_verf,
            target: b[HEADER_BYTES..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inode_record_round_trips() {
        let mut i = Inode::new(0x1_0000_0000_0005, FileType::Symlink, 0o777, 1000, 100, 3, Time { secs: 5, nsecs: 6 });
        i.target = b"../somewhere".to_vec();
        i.size = 12;
        i.create_verf = [1, 2, 3, 4, 5, 6, 7, 8];
        i.flags = FLAG_HAS_CREATE_VERF;
        i.mtime = Time { secs: u64::MAX, nsecs: 999_999_999 };
        let b = i.encode();
        assert_eq!(b.len(), 128 + 12);
        assert_eq!(Inode::decode(i.ino, &b).unwrap(), i);
    }

    #[test]
    fn damaged_records_are_errors() {
        let i = Inode::new(7, FileType::Regular, 0o644, 0, 0, 1, Time::default());
        let b = i.encode();
        assert!(Inode::decode(7, &b[..100]).is_err());
        let mut bad = b.clone();
        bad[1] = 9;
        assert!(Inode::decode(7, &bad).is_err());
        let mut bad = b;
        bad[124] = 5;
        assert!(Inode::decode(7, &bad).is_err());
    }
}
