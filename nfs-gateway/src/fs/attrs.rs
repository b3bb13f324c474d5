//! GETATTR's companions: SETATTR (including truncation), ACCESS and
//! READLINK.

use crate::fs::data::truncate_ops;
use crate::fs::error::{FsError, FsResult};
use crate::fs::inode::{FileType, Inode, Time};
use crate::fs::perm::{self, Cred};
use crate::fs::space::SpaceDelta;
use crate::fs::{keys, txn_load_ref, txn_store, Done, Fs, InodeRef, Wcc, FILE_BYTES_MAX};

/// How to set a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetTime {
    #[default]
    Keep,
    ServerNow,
    Client(Time),
}

/// Attributes to change (NFS `sattr3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetAttrs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: SetTime,
    pub mtime: SetTime,
}

impl SetAttrs {
    pub fn is_empty(&self) -> bool {
        *self == SetAttrs::default()
    }
}

/// Checks `cred` may make the changes in `set` to `inode`.
pub(crate) fn check_setattr(cred: &Cred, inode: &Inode, set: &SetAttrs) -> FsResult<()> {
    let owner = perm::owns(cred, inode);
    if set.mode.is_some() && !owner {
        return Err(FsError::Perm);
    }
    if set.uid.is_some_and(|u| u != inode.uid) && !cred.is_root() {
        return Err(FsError::Perm);
    }
    if let Some(g) = set.gid.filter(|&g| g != inode.gid) {
        if !(cred.is_root() || owner && cred.in_group(g)) {
            return Err(FsError::Perm);
        }
    }
    if let Some(size) = set.size {
        match inode.ftype {
            FileType::Regular => {}
            FileType::Directory => return Err(FsError::IsDir),
            _ => return Err(FsError::Inval),
        }
        if size > FILE_BYTES_MAX {
            return Err(FsError::FBig);
        }
        if !perm::may_io(cred, inode, perm::MAY_WRITE) {
            return Err(FsError::Access);
        }
    }
    for t in [set.atime, set.mtime] {
        match t {
            SetTime::Keep => {}
            SetTime::ServerNow if owner || perm::may(cred, inode, perm::MAY_WRITE) => {}
            SetTime::ServerNow => return Err(FsError::Access),
            SetTime::Client(_) if owner => {}
            SetTime::Client(_) => return Err(FsError::Perm),
        }
    }
    Ok(())
}

/// Applies `set` to `inode` in memory (sizes are handled by the caller).
pub(crate) fn apply_setattr(cred: &Cred, inode: &mut Inode, set: &SetAttrs, now: Time) {
    if let Some(mode) = set.mode {
        inode.mode = mode & 0o7777;
        // Like Linux: a non-member may not leave setgid on a file.
        if !cred.is_root() && inode.ftype != FileType::Directory && !cred.in_group(inode.gid) {
            inode.mode &= !0o2000;
        }
    }
    let owner_changed = set.uid.is_some_and(|u| u != inode.uid) || set.gid.is_some_and(|g| g != inode.gid);
    if let Some(uid) = set.uid {
        inode.uid = uid;
    }
    if let Some(gid) = set.gid {
        inode.gid = gid;
    }
    if owner_changed && inode.ftype != FileType::Directory {
        inode.mode &= !0o6000;
    }
    match set.atime {
        SetTime::Keep => {}
        SetTime::ServerNow => inode.atime = now,
        SetTime::Client(t) => inode.atime = t,
    }
    match set.mtime {
        SetTime::Keep => {}
        SetTime::ServerNow => inode.mtime = now,
        SetTime::Client(t) => inode.mtime = t,
    }
    inode.ctime = now;
}

impl Fs {
    /// SETATTR: checks `guard` (the client's idea of ctime) and changes the
    /// attributes, truncating or extending the file for a size.
    pub async fn setattr(&self, cred: Cred, r: InodeRef, set: SetAttrs, guard: Option<Time>) -> FsResult<Done<Wcc>> {
        self.on_home(r.ino, move |fs| async move { fs.setattr_here(&cred, r, &set, guard).await }).await
    }

    pub(crate) async fn setattr_here(
        &self,
        cred: &Cred,
        r: InodeRef,
        set: &SetAttrs,
        guard: Option<Time>,
    ) -> FsResult<Done<Wcc>> {
        // A truncation must come after the writes the client was answered,
        // and no write is answered before it until it committed.
        let _changing = super::behind::changing(self.shared.uid, r.ino);
        super::behind::settle(self.shared.uid, r.ino).await;
        let mut txn = self.shared.engine.transaction();
        txn.lock(&[&keys::attr(r.ino)]).await?;
        let before = txn_load_ref(&mut txn, r).await?;
        if guard.is_some_and(|g| g != before.ctime) {
            return Err(FsError::NotSync);
        }
        check_setattr(cred, &before, set)?;
        let mut after = before.clone();
        let now = Time::now();
        apply_setattr(cred, &mut after, set, now);
        let mut delta = SpaceDelta::default();
        if let Some(size) = set.size.filter(|&s| s != before.size) {
            delta = truncate_ops(&mut txn, &mut after, size).await?;
            if set.mtime == SetTime::Keep {
                after.mtime = now;
            }
        }
        txn_store(&mut txn, &after)?;
        self.record_space(&mut txn, self.shard_of(r.ino), delta)?;
        let lsn = txn.commit().await?;
        self.applied_space(delta);
        Ok(Done { value: Wcc::around(&before, &after), lsn })
    }

    /// The rwx bits (perm::MAY_*) `cred` has on `r`, and its attributes.
    pub async fn access(&self, cred: Cred, r: InodeRef) -> FsResult<(u32, Inode)> {
        self.on_home(r.ino, move |fs| async move {
            let inode = fs.load_ref(r).await?;
            let mut bits = perm::mode_bits(&cred, &inode);
            if perm::may_io(&cred, &inode, perm::MAY_READ) {
                bits |= perm::MAY_READ;
            }
            if perm::may_io(&cred, &inode, perm::MAY_WRITE) {
                bits |= perm::MAY_WRITE;
            }
            Ok((bits, inode))
        })
        .await
    }

    /// READLINK: a symlink's target.
    pub async fn readlink(&self, r: InodeRef) -> FsResult<(Vec<u8>, Inode)> {
        self.on_home(r.ino, move |fs| async move {
            let inode = fs.load_ref(r).await?;
            if inode.ftype != FileType::Symlink {
                return Err(FsError::Inval);
            }
            Ok((inode.target.clone(), inode))
        })
        .await
    }
}
