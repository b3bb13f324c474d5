//! READDIR and READDIRPLUS listings.
//!
//! Cookies: "." is 1, ".." is 2, and every entry gets its directory's next
//! cookie (3, 4, ...) when it is made; the cookie is stored with the entry
//! and never changes or comes back. A listing resumed from any cookie
//! therefore continues exactly after that entry, however the directory
//! changed meanwhile (entries made since appear at the end). Cookie 0 means
//! "from the start" and is never handed out.

use std::ops::Bound;

use crate::fs::dirent::ByCookie;
use crate::fs::error::{FsError, FsResult};
use crate::fs::inode::{FileType, Inode, FIRST_ENTRY_COOKIE};
use crate::fs::perm::{self, Cred};
use crate::fs::{keys, Fs, InodeRef};

/// Entries one call gathers at most, whatever the client's byte limits.
pub const ENTRIES_PER_CALL_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub cookie: u64,
    pub name: Vec<u8>,
    pub ino: u64,
    pub ftype: FileType,
    /// READDIRPLUS only: the entry's attributes (None if it vanished).
    pub attr: Option<Inode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirListing {
    pub dir: Inode,
    pub entries: Vec<DirEntry>,
    /// True when no entry follows the last one returned.
    pub eof: bool,
}

impl Fs {
    /// Up to `entries_max` entries of `dir` after `cookie` (0: from the
    /// start), with attributes when `plus`.
    pub async fn readdir(
        &self,
        cred: Cred,
        dir: InodeRef,
        cookie: u64,
        entries_max: usize,
        plus: bool,
    ) -> FsResult<DirListing> {
        let entries_max = entries_max.clamp(1, ENTRIES_PER_CALL_MAX);
        self.on_home(dir.ino, move |fs| async move {
            let d = fs.load_ref(dir).await?;
            if !d.is_dir() {
                return Err(FsError::NotDir);
            }
            if !perm::may(&cred, &d, perm::MAY_READ) {
                return Err(FsError::Access);
            }
            if cookie >= d.next_cookie {
                return Err(FsError::BadCookie);
            }
            let (entries, eof) = fs.list(&d, cookie, entries_max, plus).await?;
            Ok(DirListing { dir: d, entries, eof })
        })
        .await
    }

    async fn list(&self, d: &Inode, cookie: u64, entries_max: usize, plus: bool) -> FsResult<(Vec<DirEntry>, bool)> {
        let mut entries = Vec::new();
        for (c, name, ino) in [(1, &b"."[..], d.ino), (2, &b".."[..], d.parent)] {
            if cookie < c {
                entries.push(DirEntry { cookie: c, name: name.to_vec(), ino, ftype: FileType::Directory, attr: None });
            }
        }
        let start = Bound::Included(keys::entry_by_cookie(d.ino, (cookie + 1).max(FIRST_ENTRY_COOKIE)));
        let end = Bound::Excluded(keys::entry_by_cookie_end(d.ino));
        let want = entries_max.saturating_sub(entries.len()) + 1;
        let found = self.shared.engine.scan(start, end, want).await?;
        for (key, value) in found {
            let c = key.get(10..18).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
            let entry = ByCookie::decode(&value);
            let (Some(c), Some(entry)) = (c, entry) else {
                return Err(FsError::Io("bad directory entry".into()));
            };
            entries.push(DirEntry { cookie: c, name: entry.name, ino: entry.ino, ftype: entry.ftype, attr: None });
        }
        let eof = entries.len() <= entries_max;
        entries.truncate(entries_max);
        if plus {
            for e in &mut entries {
                e.attr = if e.ino == d.ino { Some(d.clone()) } else { self.load(e.ino).await? };
            }
        }
        Ok((entries, eof))
    }
}
