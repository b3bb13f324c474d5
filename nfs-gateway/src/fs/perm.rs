//! Permission checks from mode bits and the caller's (already squashed)
//! identity, as a local POSIX file system makes them, with one NFS rule:
//! the owner of a file may read and write it whatever its mode, because
//! the client checked permissions at open() and a file created read-only
//! (open(O_CREAT|O_WRONLY, 0444)) must still take the writes that follow
//! (knfsd's "owner override" does the same).

use crate::fs::inode::{FileType, Inode};

/// Who is asking, after export squashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (at most 16 with AUTH_SYS).
    pub gids: Vec<u32>,
}

impl Cred {
    pub fn root() -> Cred {
        Cred { uid: 0, gid: 0, gids: Vec::new() }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.gids.contains(&gid)
    }
}

pub const MAY_READ: u32 = 4;
pub const MAY_WRITE: u32 = 2;
pub const MAY_EXEC: u32 = 1;

/// The rwx bits (MAY_*) `cred` gets on `inode` by its mode.
pub fn mode_bits(cred: &Cred, inode: &Inode) -> u32 {
    if cred.is_root() {
        // Root may read and write anything; it may execute a file only if
        // someone may, and search any directory.
        let any_exec = inode.mode & 0o111 != 0 || inode.ftype == FileType::Directory;
        return MAY_READ | MAY_WRITE | if any_exec { MAY_EXEC } else { 0 };
    }
    let shift = if cred.uid == inode.uid {
        6
    } else if cred.in_group(inode.gid) {
        3
    } else {
        0
    };
    (inode.mode >> shift) & 7
}

/// True when `cred` may do everything in `want` (MAY_* bits).
pub fn may(cred: &Cred, inode: &Inode, want: u32) -> bool {
    mode_bits(cred, inode) & want == want
}

/// Reading or writing file data: mode bits, or the owner override.
pub fn may_io(cred: &Cred, inode: &Inode, want: u32) -> bool {
    may(cred, inode, want) || (inode.ftype == FileType::Regular && cred.uid == inode.uid)
}

/// Removing or renaming `victim` out of `dir`: write and search on the
/// directory, and with the sticky bit, owning the directory or the victim.
pub fn may_delete(cred: &Cred, dir: &Inode, victim: &Inode) -> bool {
    if !may(cred, dir, MAY_WRITE | MAY_EXEC) {
        return false;
    }
    let sticky = dir.mode & 0o1000 != 0;
    !sticky || cred.is_root() || cred.uid == dir.uid || cred.uid == victim.uid
}

/// True when `cred` owns `inode` or is root (chmod, utimes to a given time).
pub fn owns(cred: &Cred, inode: &Inode) -> bool {
    cred.is_root() || cred.uid == inode.uid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::inode::Time;

    fn file(mode: u32, uid: u32, gid: u32) -> Inode {
        Inode::new(5, FileType::Regular, mode, uid, gid, 1, Time::default())
    }

    #[test]
    fn owner_group_and_other_bits_apply_in_that_order() {
        let f = file(0o640, 10, 20);
        let owner = Cred { uid: 10, gid: 99, gids: vec![] };
        let member = Cred { uid: 11, gid: 99, gids: vec![20] };
        let other = Cred { uid: 12, gid: 99, gids: vec![] };
        assert!(may(&owner, &f, MAY_READ | MAY_WRITE));
        assert!(may(&member, &f, MAY_READ) && !may(&member, &f, MAY_WRITE));
        assert!(!may(&other, &f, MAY_READ));
        // An owner whose own bits deny still uses them (no fallback to group).
        let g = file(0o070, 10, 99);
        assert!(!may(&owner, &g, MAY_READ));
        assert!(may_io(&owner, &g, MAY_READ));
    }

    #[test]
    fn root_executes_only_what_someone_may() {
        assert!(!may(&Cred::root(), &file(0o644, 1, 1), MAY_EXEC));
        assert!(may(&Cred::root(), &file(0o744, 1, 1), MAY_EXEC | MAY_WRITE));
    }

    #[test]
    fn sticky_directories_protect_other_users_files() {
        let mut dir = Inode::new(2, FileType::Directory, 0o1777, 0, 0, 1, Time::default());
        dir.uid = 0;
        let victim = file(0o644, 10, 10);
        assert!(may_delete(&Cred { uid: 10, gid: 1, gids: vec![] }, &dir, &victim));
        assert!(!may_delete(&Cred { uid: 11, gid: 1, gids: vec![] }, &dir, &victim));
    }
}
