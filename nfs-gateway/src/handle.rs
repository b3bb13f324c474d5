//! File handles: what a client holds to name a file, valid across restarts.
//!
//! 32 bytes, little-endian (docs/FORMAT.md, "NFS file handles"):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | handle version (1) |
//! | 1 | 3 | reserved, 0 |
//! | 4 | 8 | file system id (random at the file system's creation) |
//! | 12 | 8 | inode number of the export's root |
//! | 20 | 8 | inode number |
//! | 28 | 4 | inode generation |
//!
//! Nothing in it depends on the server's run: a handle keeps working after a
//! restart, and goes STALE when its inode is removed (or the number were ever
//! given to another inode: the generation would differ).

use crate::fs::InodeRef;

pub const HANDLE_VERSION: u8 = 1;
pub const HANDLE_BYTES: usize = 32;
/// NFSv3 handles are at most 64 bytes.
pub const NFS3_FHSIZE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHandle {
    pub fsid: u64,
    pub export_root: u64,
    pub inode: InodeRef,
}

/// Why a handle cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleError {
    /// Not one of ours at all (NFS3ERR_BADHANDLE).
    Bad,
    /// Ours, but from another file system (NFS3ERR_STALE).
    OtherFs,
}

impl FileHandle {
    pub fn encode(&self) -> [u8; HANDLE_BYTES] {
        let mut b = [0u8; HANDLE_BYTES];
        b[0] = HANDLE_VERSION;
        b[4..12].copy_from_slice(&self.fsid.to_le_bytes());
        b[12..20].copy_from_slice(&self.export_root.to_le_bytes());
        b[20..28].copy_from_slice(&self.inode.ino.to_le_bytes());
        b[28..32].copy_from_slice(&self.inode.generation.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8], fsid: u64) -> Result<FileHandle, HandleError> {
        let b: &[u8; HANDLE_BYTES] = b.try_into().map_err(|_| HandleError::Bad)?;
        if b[0] != HANDLE_VERSION || b[1..4] != [0, 0, 0] {
            return Err(HandleError::Bad);
        }
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let handle = FileHandle {
            fsid: u64_at(4),
            export_root: u64_at(12),
            inode: InodeRef { ino: u64_at(20), generation: u32::from_le_bytes([b[28], b[29], b[30], b[31]]) },
        };
        if handle.fsid != fsid {
            return Err(HandleError::OtherFs);
        }
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_reject_strangers() {
        let h = FileHandle { fsid: 0xABCD, export_root: 1, inode: InodeRef { ino: 1 << 48 | 9, generation: 4 } };
        let b = h.encode();
        assert_eq!(FileHandle::decode(&b, 0xABCD), Ok(h));
        assert_eq!(FileHandle::decode(&b, 0xABCE), Err(HandleError::OtherFs));
        assert_eq!(FileHandle::decode(&b[..31], 0xABCD), Err(HandleError::Bad));
        let mut v2 = b;
        v2[0] = 2;
        assert_eq!(FileHandle::decode(&v2, 0xABCD), Err(HandleError::Bad));
    }
}
