//! Making names: LOOKUP, CREATE, MKDIR, SYMLINK, MKNOD and LINK.
//!
//! A new inode goes on its parent's shard (files, symlinks, devices: the
//! create is then a one-shard transaction) or, for directories, on the next
//! shard in turn, so that different subtrees spread over the shards.

use crate::fs::attrs::{apply_setattr, SetAttrs};
use crate::fs::dirent::{check_name, ByCookie, ByName, NameCheck};
use crate::fs::error::{FsError, FsResult};
use crate::fs::inode::{FileType, Inode, Time, FLAG_HAS_CREATE_VERF, FLAG_SPARSE, SYMLINK_TARGET_BYTES_MAX};
use crate::fs::perm::{self, Cred};
use crate::fs::space::{SpaceDelta, INODE_BYTES_ESTIMATE};
use crate::fs::{keys, txn_load, txn_load_ref, txn_store, Done, Fs, InodeRef, Wcc, FILE_BYTES_MAX, LINKS_MAX};

/// How CREATE treats an existing name (NFS `createmode3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// An existing regular file is opened (and truncated if the attributes
    /// say size 0).
    Unchecked,
    /// An existing name is EXIST.
    Guarded,
    /// An existing name is EXIST unless it is the file this verifier made
    /// (a retransmission): then it is returned as if just created.
    Exclusive([u8; 8]),
}

/// What to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub ftype: FileType,
    pub attrs: SetAttrs,
    pub rdev: (u32, u32),
    pub target: Vec<u8>,
}

impl NodeSpec {
    pub fn of(ftype: FileType, attrs: SetAttrs) -> NodeSpec {
        NodeSpec { ftype, attrs, rdev: (0, 0), target: Vec::new() }
    }
}

/// The result of making or finding a name.
pub type Made = (Inode, Wcc);

/// Checks a name for a new entry.
pub(crate) fn check_new_name(name: &[u8]) -> FsResult<()> {
    match check_name(name) {
        NameCheck::Ok => Ok(()),
        NameCheck::Dot => Err(FsError::Exist),
        NameCheck::TooLong => Err(FsError::NameTooLong),
        NameCheck::Invalid => Err(FsError::Access),
    }
}

fn check_dir(dir: &Inode) -> FsResult<()> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(FsError::NotDir)
    }
}

impl Fs {
    /// LOOKUP `name` in `dir`: the child and the directory's attributes.
    /// ".." of the root is the root.
    pub async fn lookup(&self, cred: Cred, dir: InodeRef, name: Vec<u8>) -> FsResult<(Inode, Inode)> {
        self.on_home(dir.ino, move |fs| async move {
            let d = fs.load_ref(dir).await?;
            check_dir(&d)?;
            if !perm::may(&cred, &d, perm::MAY_EXEC) {
                return Err(FsError::Access);
            }
            let child_ino = match check_name(&name) {
                NameCheck::TooLong => return Err(FsError::NameTooLong),
                NameCheck::Invalid => return Err(FsError::NoEnt),
                NameCheck::Dot if name == b"." => d.ino,
                NameCheck::Dot => d.parent,
                NameCheck::Ok => match fs.shared.engine.get(&keys::entry_by_name(d.ino, &name)).await? {
                    Some(v) => ByName::decode(&v).ok_or_else(|| FsError::Io("bad directory entry".into()))?.ino,
                    None => return Err(FsError::NoEnt),
                },
            };
            let child = if child_ino == d.ino { d.clone() } else { fs.load(child_ino).await?.ok_or(FsError::NoEnt)? };
            Ok((child, d))
        })
        .await
    }

    /// CREATE, MKDIR, SYMLINK and MKNOD.
    pub async fn make(
        &self,
        cred: Cred,
        dir: InodeRef,
        name: Vec<u8>,
        spec: NodeSpec,
        mode: CreateMode,
    ) -> FsResult<Done<Made>> {
        check_new_name(&name)?;
        if spec.target.len() > SYMLINK_TARGET_BYTES_MAX {
            return Err(FsError::NameTooLong);
        }
        if spec.attrs.size.is_some_and(|s| s > FILE_BYTES_MAX) {
            return Err(FsError::FBig);
        }
        let shard = if spec.ftype == FileType::Directory {
            let n = self.shared.next_dir_shard.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            n % self.shared.shard_count
        } else {
            self.shard_of(dir.ino)
        };
        let caller = cred.clone();
        let truncate_existing = mode == CreateMode::Unchecked && spec.attrs.size == Some(0);
        let made = self
            .on_home(dir.ino, move |fs| async move {
                let (ino, generation) = fs.alloc_ino(shard).await?;
                fs.make_here(&cred, dir, &name, &spec, mode, ino, generation).await
            })
            .await?;
        match made {
            MakeOutcome::Made(done) => Ok(done),
            MakeOutcome::Existing(child, wcc) if truncate_existing => {
                let r = InodeRef { ino: child.ino, generation: child.generation };
                let set = SetAttrs { size: Some(0), ..SetAttrs::default() };
                let done = self.setattr(caller, r, set, None).await?;
                let child = done.value.after.clone().unwrap_or(child);
                Ok(Done { value: (child, wcc), lsn: done.lsn })
            }
            MakeOutcome::Existing(child, wcc) => {
                Ok(Done { value: (child, wcc), lsn: self.shared.engine.lsn_durable() })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn make_here(
        &self,
        cred: &Cred,
        dir: InodeRef,
        name: &[u8],
        spec: &NodeSpec,
        mode: CreateMode,
        ino: u64,
        generation: u32,
    ) -> FsResult<MakeOutcome> {
        let mut txn = self.shared.engine.transaction();
        txn.lock(&[&keys::attr(dir.ino)]).await?;
        let before = txn_load_ref(&mut txn, dir).await?;
        check_dir(&before)?;
        if !perm::may(cred, &before, perm::MAY_WRITE | perm::MAY_EXEC) {
            return Err(FsError::Access);
        }
        if let Some(existing) = txn.get(&keys::entry_by_name(dir.ino, name)).await? {
            let entry = ByName::decode(&existing).ok_or_else(|| FsError::Io("bad directory entry".into()))?;
            // Answered with the file's attributes: they count the writes
            // answered (its writes behind lock only its own key).
            self.settle_anywhere(entry.ino).await?;
            let child = txn_load(&mut txn, entry.ino).await?.ok_or(FsError::Exist)?;
            let same_exclusive = matches!(mode, CreateMode::Exclusive(v)
                if child.flags & FLAG_HAS_CREATE_VERF != 0 && child.create_verf == v);
            let reopen = mode == CreateMode::Unchecked && child.ftype == FileType::Regular;
            if spec.ftype == FileType::Regular && (same_exclusive || reopen) {
                return Ok(MakeOutcome::Existing(child, Wcc::unchanged(&before)));
            }
            return Err(FsError::Exist);
        }
        self.shared.check_space(INODE_BYTES_ESTIMATE)?;
        let now = Time::now();
        let child = new_inode(cred, &before, spec, mode, ino, generation, now);
        let mut after = before.clone();
        link_entry(&mut txn, &mut after, name, &child, now)?;
        if child.is_dir() {
            after.nlink += 1;
        }
        txn_store(&mut txn, &child)?;
        txn_store(&mut txn, &after)?;
        let delta = SpaceDelta { used_bytes: 0, inodes: 1 };
        self.record_space(&mut txn, self.shard_of(ino), delta)?;
        let lsn = txn.commit().await?;
        self.applied_space(delta);
        Ok(MakeOutcome::Made(Done { value: (child, Wcc::around(&before, &after)), lsn }))
    }

    /// LINK: a new name `name` in `dir` for `file`.
    pub async fn link(&self, cred: Cred, file: InodeRef, dir: InodeRef, name: Vec<u8>) -> FsResult<Done<(Inode, Wcc)>> {
        check_new_name(&name)?;
        self.on_home(dir.ino, move |fs| async move {
            // The file's attributes in the reply count the writes answered.
            fs.settle_anywhere(file.ino).await?;
            let mut txn = fs.shared.engine.transaction();
            txn.lock(&[&keys::attr(dir.ino), &keys::attr(file.ino)]).await?;
            let before = txn_load_ref(&mut txn, dir).await?;
            let mut target = txn_load_ref(&mut txn, file).await?;
            check_dir(&before)?;
            if target.is_dir() {
                return Err(FsError::IsDir);
            }
            if !perm::may(&cred, &before, perm::MAY_WRITE | perm::MAY_EXEC) {
                return Err(FsError::Access);
            }
            if target.nlink >= LINKS_MAX {
                return Err(FsError::MLink);
            }
            if txn.get(&keys::entry_by_name(dir.ino, &name)).await?.is_some() {
                return Err(FsError::Exist);
            }
            let now = Time::now();
            let mut after = before.clone();
            link_entry(&mut txn, &mut after, &name, &target, now)?;
            target.nlink += 1;
            target.ctime = now;
            txn_store(&mut txn, &target)?;
            txn_store(&mut txn, &after)?;
            let lsn = txn.commit().await?;
            Ok(Done { value: (target, Wcc::around(&before, &after)), lsn })
        })
        .await
    }
}

pub(crate) enum MakeOutcome {
    Made(Done<Made>),
    /// The name exists and CREATE's mode says to answer with it.
    Existing(Inode, Wcc),
}

fn new_inode(
    cred: &Cred,
    parent: &Inode,
    spec: &NodeSpec,
    mode: CreateMode,
    ino: u64,
    generation: u32,
    now: Time,
) -> Inode {
    let default_mode = match (spec.ftype, mode) {
        (FileType::Symlink, _) => 0o777,
        (_, CreateMode::Exclusive(_)) => 0o600,
        (FileType::Directory, _) => 0o755,
        _ => 0o644,
    };
    // BSD group semantics under a setgid directory, as Linux does.
    let setgid_parent = parent.mode & 0o2000 != 0;
    let gid = if setgid_parent { parent.gid } else { cred.gid };
    let mut child = Inode::new(ino, spec.ftype, default_mode, cred.uid, gid, generation, now);
    let mut attrs = spec.attrs;
    attrs.size = None;
    // The creator may set the initial mode and times; ownership only if root
    // (the requested uid/gid are otherwise ignored, as knfsd does).
    if !cred.is_root() {
        attrs.uid = None;
        attrs.gid = attrs.gid.filter(|&g| cred.in_group(g));
    }
    apply_setattr(&Cred::root(), &mut child, &attrs, now);
    if spec.ftype == FileType::Directory {
        child.parent = parent.ino;
        if setgid_parent {
            child.mode |= 0o2000;
        }
    }
    if let Some(size) = spec.attrs.size.filter(|&s| s > 0 && spec.ftype == FileType::Regular) {
        child.size = size;
        child.flags |= FLAG_SPARSE;
    }
    if let CreateMode::Exclusive(v) = mode {
        child.create_verf = v;
        child.flags |= FLAG_HAS_CREATE_VERF;
    }
    if spec.ftype == FileType::Symlink {
        child.target = spec.target.clone();
        child.size = spec.target.len() as u64;
    }
    if matches!(spec.ftype, FileType::Block | FileType::Character) {
        child.rdev = spec.rdev;
    }
    child
}

/// Adds the entry `name` -> `child` to `dir` (in memory and in `txn`),
/// giving it the directory's next cookie.
pub(crate) fn link_entry(
    txn: &mut keel_engine::Transaction,
    dir: &mut Inode,
    name: &[u8],
    child: &Inode,
    now: Time,
) -> FsResult<()> {
    let cookie = dir.next_cookie;
    dir.next_cookie += 1;
    dir.entries += 1;
    dir.mtime = now;
    dir.ctime = now;
    let by_name = ByName { cookie, ino: child.ino, ftype: child.ftype };
    let by_cookie = ByCookie { ino: child.ino, ftype: child.ftype, name: name.to_vec() };
    txn.put(&keys::entry_by_name(dir.ino, name), by_name.encode())?;
    txn.put(&keys::entry_by_cookie(dir.ino, cookie), by_cookie.encode())?;
    Ok(())
}

/// Removes the entry `name` (whose by-name value is `entry`) from `dir`.
pub(crate) fn unlink_entry(
    txn: &mut keel_engine::Transaction,
    dir: &mut Inode,
    name: &[u8],
    entry: &ByName,
    now: Time,
) -> FsResult<()> {
    debug_assert!(dir.entries > 0);
    dir.entries = dir.entries.saturating_sub(1);
    dir.mtime = now;
    dir.ctime = now;
    txn.delete(&keys::entry_by_name(dir.ino, name))?;
    txn.delete(&keys::entry_by_cookie(dir.ino, entry.cookie))?;
    Ok(())
}
