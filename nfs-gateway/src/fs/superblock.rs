//! The file system's superblock key: created at the first open (mkfs of
//! the file system, with its root directory), its boot counter bumped
//! durably at every open.

use keel_engine::{Engine, MergeOp};

use crate::fs::error::{FsError, FsResult};
use crate::fs::inode::{FileType, Inode, Time};
use crate::fs::{keys, ROOT_INO};

pub const FS_SUPER_VERSION: u32 = 1;
pub const ROOT_GENERATION: u32 = 1;
const FS_SUPER_BYTES: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSuper {
    pub root: u64,
    pub fsid: u64,
    pub boot_counter: u64,
    pub created_secs: u64,
}

impl FsSuper {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FS_SUPER_BYTES);
        b.extend_from_slice(&FS_SUPER_VERSION.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for v in [self.root, self.fsid, self.boot_counter, self.created_secs] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> FsResult<FsSuper> {
        let bad = || FsError::Io(format!("file system superblock of {} bytes does not decode", b.len()));
        if b.len() != FS_SUPER_BYTES {
            return Err(bad());
        }
        let u64_at = |o: usize| b[o..o + 8].try_into().map(u64::from_le_bytes).map_err(|_| bad());
        let version = u32::from_le_bytes(b[0..4].try_into().map_err(|_| bad())?);
        if version != FS_SUPER_VERSION {
            return Err(FsError::Io(format!("file system superblock version {version} is unknown")));
        }
        Ok(FsSuper { root: u64_at(8)?, fsid: u64_at(16)?, boot_counter: u64_at(24)?, created_secs: u64_at(32)? })
    }
}

/// A 64-bit id unlikely to repeat across file systems: time and process id
/// through a mixing function (no cryptographic need).
fn fresh_fsid() -> u64 {
    let t = Time::now();
    let mut x = t.secs.wrapping_mul(1_000_000_007) ^ u64::from(t.nsecs) ^ (u64::from(std::process::id()) << 40);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// Reads the superblock (creating the file system if absent), bumps the
/// boot counter and waits until that is durable.
pub async fn open(engine: &Engine, anchors: &[u64]) -> FsResult<FsSuper> {
    let anchor0 = anchors[0];
    let key = keys::fs_super(anchor0);
    let mut txn = engine.transaction();
    txn.lock(&[&key, &keys::attr(ROOT_INO)]).await?;
    let mut sb = match txn.get(&key).await? {
        Some(b) => FsSuper::decode(&b)?,
        None => {
            let now = Time::now();
            let mut root = Inode::new(ROOT_INO, FileType::Directory, 0o755, 0, 0, ROOT_GENERATION, now);
            root.parent = ROOT_INO;
            txn.put(&keys::attr(ROOT_INO), root.encode())?;
            let root_shard = keys::shard_of_ino(ROOT_INO, engine.shard_count()) as usize;
            txn.merge(&keys::shard_inodes(anchors[root_shard]), MergeOp::AddI64(1))?;
            tracing::info!("creating a new file system");
            FsSuper { root: ROOT_INO, fsid: fresh_fsid(), boot_counter: 0, created_secs: now.secs }
        }
    };
    if sb.root != ROOT_INO {
        return Err(FsError::Io(format!("file system root {:#x} is not the expected {ROOT_INO}", sb.root)));
    }
    sb.boot_counter += 1;
    txn.put(&key, sb.encode())?;
    let lsn = txn.commit().await?;
    engine.wait_durable(lsn).await?;
    Ok(sb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_superblock_round_trips() {
        let sb = FsSuper { root: 1, fsid: 0xDEAD, boot_counter: 7, created_secs: 99 };
        assert_eq!(FsSuper::decode(&sb.encode()).unwrap(), sb);
        assert!(FsSuper::decode(&sb.encode()[..39]).is_err());
    }
}
