//! RENAME: one transaction over both directories, the moved inode and the
//! replaced one, if any.
//!
//! The entries are read first to learn which inodes to lock, then read
//! again under the locks; if they changed meanwhile the attempt starts over.
//! Moving a directory to another parent must not make it its own ancestor;
//! like Linux (s_vfs_rename_mutex), such moves are serialized by one lock so
//! that the ancestor walk cannot race with another such move.

use crate::fs::dirent::{check_name, ByName, NameCheck};
use crate::fs::error::{FsError, FsResult};
use crate::fs::inode::{Inode, Time};
use crate::fs::names::{link_entry, unlink_entry};
use crate::fs::perm::{self, Cred};
use crate::fs::space::SpaceDelta;
use crate::fs::{keys, txn_load, txn_load_ref, txn_store, Done, Fs, InodeRef, Wcc, ROOT_INO};

/// Deepest directory tree the loop check walks.
const DEPTH_MAX: usize = 4096;

fn check_rename_name(name: &[u8], is_source: bool) -> FsResult<()> {
    match check_name(name) {
        NameCheck::Ok => Ok(()),
        NameCheck::Dot => Err(FsError::Inval),
        NameCheck::TooLong => Err(FsError::NameTooLong),
        NameCheck::Invalid if is_source => Err(FsError::NoEnt),
        NameCheck::Invalid => Err(FsError::Access),
    }
}

fn read_entry(v: Option<Vec<u8>>) -> FsResult<Option<ByName>> {
    v.map(|v| ByName::decode(&v).ok_or_else(|| FsError::Io("bad directory entry".into()))).transpose()
}

struct Plan {
    from: InodeRef,
    from_name: Vec<u8>,
    to: InodeRef,
    to_name: Vec<u8>,
}

impl Fs {
    /// RENAME `from_name` in `from` to `to_name` in `to`: WCC of both
    /// directories.
    pub async fn rename(
        &self,
        cred: Cred,
        from: InodeRef,
        from_name: Vec<u8>,
        to: InodeRef,
        to_name: Vec<u8>,
    ) -> FsResult<Done<(Wcc, Wcc)>> {
        check_rename_name(&from_name, true)?;
        check_rename_name(&to_name, false)?;
        let plan = Plan { from, from_name, to, to_name };
        self.on_home(from.ino, move |fs| async move {
            loop {
                if let Some(done) = fs.rename_once(&cred, &plan).await? {
                    return Ok(done);
                }
            }
        })
        .await
    }

    async fn rename_once(&self, cred: &Cred, p: &Plan) -> FsResult<Option<Done<(Wcc, Wcc)>>> {
        let engine = &self.shared.engine;
        let src_key = keys::entry_by_name(p.from.ino, &p.from_name);
        let dst_key = keys::entry_by_name(p.to.ino, &p.to_name);
        let Some(src) = read_entry(engine.get(&src_key).await?)? else {
            let d = self.load_ref(p.from).await?;
            return Err(if d.is_dir() { FsError::NoEnt } else { FsError::NotDir });
        };
        let dst = read_entry(engine.get(&dst_key).await?)?;
        let moves_dir = src.ftype == crate::fs::FileType::Directory && p.from.ino != p.to.ino;
        let mut lock_keys = vec![keys::attr(p.from.ino), keys::attr(p.to.ino), keys::attr(src.ino)];
        lock_keys.extend(dst.map(|d| keys::attr(d.ino)));
        if moves_dir {
            lock_keys.push(keys::rename_lock(self.anchor(0)));
        }
        let mut txn = engine.transaction();
        txn.lock(&lock_keys.iter().map(Vec::as_slice).collect::<Vec<_>>()).await?;
        let from_before = txn_load_ref(&mut txn, p.from).await?;
        let to_before = if p.to.ino == p.from.ino { from_before.clone() } else { txn_load_ref(&mut txn, p.to).await? };
        if !from_before.is_dir() || !to_before.is_dir() {
            return Err(FsError::NotDir);
        }
        if read_entry(txn.get(&src_key).await?)? != Some(src) || read_entry(txn.get(&dst_key).await?)? != dst {
            return Ok(None);
        }
        let unchanged = || Wcc::unchanged(&from_before);
        if (p.from.ino == p.to.ino && p.from_name == p.to_name) || dst.is_some_and(|d| d.ino == src.ino) {
            // Renaming a name onto itself or onto another link of the same
            // inode does nothing (POSIX).
            let lsn = engine.lsn_durable();
            return Ok(Some(Done { value: (unchanged(), Wcc::unchanged(&to_before)), lsn }));
        }
        let moved = txn_load(&mut txn, src.ino).await?.ok_or_else(|| FsError::Io("entry without inode".into()))?;
        let replaced = match dst {
            Some(d) => Some(txn_load(&mut txn, d.ino).await?.ok_or_else(|| FsError::Io("entry without inode".into()))?),
            None => None,
        };
        self.check_rename(cred, &from_before, &to_before, &moved, replaced.as_ref()).await?;
        let now = Time::now();
        let mut from_after = from_before.clone();
        let mut to_after = (p.to.ino != p.from.ino).then(|| to_before.clone());
        unlink_entry(&mut txn, &mut from_after, &p.from_name, &src, now)?;
        let mut delta = SpaceDelta::default();
        if let (Some(d), Some(victim)) = (dst, replaced) {
            let target = to_after.as_mut().unwrap_or(&mut from_after);
            unlink_entry(&mut txn, target, &p.to_name, &d, now)?;
            if victim.is_dir() {
                target.nlink = target.nlink.saturating_sub(1);
            }
            delta = self.drop_link(&mut txn, victim, now)?;
        }
        let mut moved = moved;
        moved.ctime = now;
        {
            let target = to_after.as_mut().unwrap_or(&mut from_after);
            link_entry(&mut txn, target, &p.to_name, &moved, now)?;
            if moves_dir {
                target.nlink += 1;
            }
        }
        if moves_dir {
            moved.parent = p.to.ino;
            from_after.nlink = from_after.nlink.saturating_sub(1);
        }
        txn_store(&mut txn, &moved)?;
        txn_store(&mut txn, &from_after)?;
        if let Some(t) = &to_after {
            txn_store(&mut txn, t)?;
        }
        let lsn = txn.commit().await?;
        self.applied_space(delta);
        let from_wcc = Wcc::around(&from_before, &from_after);
        let to_wcc = match &to_after {
            Some(t) => Wcc::around(&to_before, t),
            None => Wcc::around(&to_before, &from_after),
        };
        Ok(Some(Done { value: (from_wcc, to_wcc), lsn }))
    }

    async fn check_rename(
        &self,
        cred: &Cred,
        from: &Inode,
        to: &Inode,
        moved: &Inode,
        replaced: Option<&Inode>,
    ) -> FsResult<()> {
        if !perm::may_delete(cred, from, moved) || !perm::may(cred, to, perm::MAY_WRITE | perm::MAY_EXEC) {
            return Err(FsError::Access);
        }
        if let Some(victim) = replaced {
            if !perm::may_delete(cred, to, victim) {
                return Err(FsError::Access);
            }
            match (moved.is_dir(), victim.is_dir()) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if victim.entries > 0 => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        if moved.is_dir() && from.ino != to.ino {
            // Its ".." changes: that is a write to the moved directory.
            if !perm::may(cred, moved, perm::MAY_WRITE) {
                return Err(FsError::Access);
            }
            self.check_not_ancestor(moved.ino, to.ino).await?;
        }
        Ok(())
    }

    /// INVAL if `dir` is `ancestor` or lies below it.
    async fn check_not_ancestor(&self, ancestor: u64, dir: u64) -> FsResult<()> {
        let mut cur = dir;
        for _ in 0..DEPTH_MAX {
            if cur == ancestor {
                return Err(FsError::Inval);
            }
            if cur == ROOT_INO {
                return Ok(());
            }
            cur = self.load(cur).await?.ok_or(FsError::Stale)?.parent;
        }
        Err(FsError::Io(format!("directory tree deeper than {DEPTH_MAX} levels")))
    }
}
