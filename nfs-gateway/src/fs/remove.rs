//! REMOVE and RMDIR, and what happens to an inode whose last name goes.
//!
//! The last unlink deletes the inode's attribute record and, if it has data,
//! records an orphan on the inode's shard in the same transaction; the
//! chunks are freed later by the background freer (`freer.rs`), so removing
//! a large file costs the client one small transaction.

use keel_engine::Transaction;

use crate::fs::dirent::{check_name, ByName, NameCheck};
use crate::fs::error::{FsError, FsResult};
use crate::fs::freer::Orphan;
use crate::fs::inode::{Inode, Time};
use crate::fs::perm::{self, Cred};
use crate::fs::space::SpaceDelta;
use crate::fs::{keys, txn_load, txn_load_ref, txn_store, Done, Fs, InodeRef, Wcc};

impl Fs {
    /// REMOVE (`want_dir` false) or RMDIR (true) of `name` in `dir`.
    pub async fn remove(&self, cred: Cred, dir: InodeRef, name: Vec<u8>, want_dir: bool) -> FsResult<Done<Wcc>> {
        match check_name(&name) {
            NameCheck::Ok => {}
            NameCheck::TooLong => return Err(FsError::NameTooLong),
            NameCheck::Invalid => return Err(FsError::NoEnt),
            NameCheck::Dot if name == b"." => return Err(FsError::Inval),
            NameCheck::Dot => return Err(if want_dir { FsError::NotEmpty } else { FsError::Inval }),
        }
        self.on_home(dir.ino, move |fs| async move {
            loop {
                if let Some(done) = fs.remove_once(&cred, dir, &name, want_dir).await? {
                    return Ok(done);
                }
            }
        })
        .await
    }

    /// One attempt; `None` when the entry changed between looking it up and
    /// locking its inode (then the caller tries again).
    async fn remove_once(
        &self,
        cred: &Cred,
        dir: InodeRef,
        name: &[u8],
        want_dir: bool,
    ) -> FsResult<Option<Done<Wcc>>> {
        let entry_key = keys::entry_by_name(dir.ino, name);
        let seen = self.shared.engine.get(&entry_key).await?;
        let Some(seen) = seen.as_deref().and_then(ByName::decode) else {
            // Check the directory first so a stale handle says STALE.
            let d = self.load_ref(dir).await?;
            return Err(if d.is_dir() { FsError::NoEnt } else { FsError::NotDir });
        };
        let mut txn = self.shared.engine.transaction();
        txn.lock(&[&keys::attr(dir.ino), &keys::attr(seen.ino)]).await?;
        let before = txn_load_ref(&mut txn, dir).await?;
        if !before.is_dir() {
            return Err(FsError::NotDir);
        }
        let now_entry = txn.get(&entry_key).await?.as_deref().and_then(ByName::decode);
        if now_entry != Some(seen) {
            return Ok(None);
        }
        let victim = txn_load(&mut txn, seen.ino).await?.ok_or_else(|| FsError::Io("entry without inode".into()))?;
        match (want_dir, victim.is_dir()) {
            (false, true) => return Err(FsError::IsDir),
            (true, false) => return Err(FsError::NotDir),
            (true, true) if victim.entries > 0 => return Err(FsError::NotEmpty),
            _ => {}
        }
        if !perm::may_delete(cred, &before, &victim) {
            return Err(FsError::Access);
        }
        let now = Time::now();
        let mut after = before.clone();
        crate::fs::names::unlink_entry(&mut txn, &mut after, name, &seen, now)?;
        if victim.is_dir() {
            after.nlink = after.nlink.saturating_sub(1);
        }
        let delta = self.drop_link(&mut txn, victim, now)?;
        txn_store(&mut txn, &after)?;
        let lsn = txn.commit().await?;
        self.applied_space(delta);
        Ok(Some(Done { value: Wcc::around(&before, &after), lsn }))
    }

    /// Takes one link away from `victim` (whose entry is being removed or
    /// replaced in `txn`): stores it with one link fewer, or, for its last
    /// link, deletes it and leaves its data to the freer. Returns the space
    /// change applied once `txn` commits.
    pub(crate) fn drop_link(&self, txn: &mut Transaction, mut victim: Inode, now: Time) -> FsResult<SpaceDelta> {
        let last = victim.is_dir() || victim.nlink <= 1;
        if !last {
            victim.nlink -= 1;
            victim.ctime = now;
            txn_store(txn, &victim)?;
            return Ok(SpaceDelta::default());
        }
        let shard = self.shard_of(victim.ino);
        txn.delete(&keys::attr(victim.ino))?;
        if victim.is_dir() {
            // An empty directory's by-cookie and by-name entries are gone;
            // nothing else is stored under it.
            debug_assert_eq!(victim.entries, 0);
        } else if victim.size > 0 || victim.used_bytes > 0 {
            let orphan = Orphan {
                next_chunk: 0,
                end_chunk: victim.size.div_ceil(keys::CHUNK_BYTES),
                used_bytes: victim.used_bytes,
            };
            txn.put(&keys::orphan(self.anchor(shard), victim.ino), orphan.encode())?;
        }
        // The data's space is given back by the freer when it is really free.
        let delta = SpaceDelta { used_bytes: 0, inodes: -1 };
        self.record_space(txn, shard, delta)?;
        Ok(delta)
    }
}
