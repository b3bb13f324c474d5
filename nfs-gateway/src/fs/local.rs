//! Per-reactor state of a file system: inode-number leases of the shards a
//! reactor hosts, and the unstable writes of the files whose home it is.
//! Thread-local because each piece is only ever touched on its reactor
//! (operations on an inode run on its home reactor).

use std::cell::RefCell;
use std::collections::HashMap;

use keel_engine::Lsn;

/// A shard's current block of inode-number candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub next_k: u64,
    pub end_k: u64,
    pub generation: u32,
}

/// Highest LSN of unstable writes per file, bounded.
#[derive(Debug, Default)]
pub struct Unstable {
    by_ino: HashMap<u64, Lsn>,
    /// The highest LSN of an entry dropped to stay within the bound: a
    /// COMMIT for a file no longer tracked waits for it.
    evicted_lsn_max: Lsn,
}

impl Unstable {
    pub fn note(&mut self, ino: u64, lsn: Lsn, files_max: usize) {
        if !self.by_ino.contains_key(&ino) && self.by_ino.len() >= files_max {
            if let Some((&victim, &victim_lsn)) = self.by_ino.iter().next() {
                self.by_ino.remove(&victim);
                self.evicted_lsn_max = self.evicted_lsn_max.max(victim_lsn);
            }
        }
        let e = self.by_ino.entry(ino).or_insert(0);
        *e = (*e).max(lsn);
    }

    /// The LSN a COMMIT of `ino` must wait for.
    pub fn commit_lsn(&self, ino: u64) -> Lsn {
        self.by_ino.get(&ino).copied().unwrap_or(0).max(self.evicted_lsn_max)
    }

    /// Forgets `ino`'s writes up to `lsn` once they are durable.
    pub fn durable(&mut self, ino: u64, lsn: Lsn) {
        if self.by_ino.get(&ino).is_some_and(|&l| l <= lsn) {
            self.by_ino.remove(&ino);
        }
    }
}

#[derive(Debug, Default)]
struct Local {
    leases: HashMap<(u64, u32), Lease>,
    unstable: HashMap<u64, Unstable>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

pub fn with_lease<T>(fs_uid: u64, shard: u32, f: impl FnOnce(&mut Option<Lease>) -> T) -> T {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let mut slot = l.leases.get(&(fs_uid, shard)).copied();
        let out = f(&mut slot);
        match slot {
            Some(lease) => l.leases.insert((fs_uid, shard), lease),
            None => l.leases.remove(&(fs_uid, shard)),
        };
        out
    })
}

pub fn with_unstable<T>(fs_uid: u64, f: impl FnOnce(&mut Unstable) -> T) -> T {
    LOCAL.with(|l| f(l.borrow_mut().unstable.entry(fs_uid).or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicted_files_make_commit_wait_for_their_writes() {
        let mut u = Unstable::default();
        u.note(1, 10, 2);
        u.note(2, 20, 2);
        u.note(1, 5, 2);
        assert_eq!(u.commit_lsn(1), 10);
        u.note(3, 30, 2);
        let tracked = [1, 2].iter().filter(|&&i| u.by_ino.contains_key(&i)).count();
        assert_eq!(tracked, 1);
        assert!(u.commit_lsn(99) >= 10);
        u.durable(3, 30);
        assert!(!u.by_ino.contains_key(&3));
    }
}
