//! The duplicate-request cache: a retransmitted non-idempotent call (a
//! CREATE or REMOVE whose reply was lost) must get the first execution's
//! reply, not a second execution ("EEXIST" for a file the client did create).
//!
//! Keyed by client address (without the port: clients reconnect from new
//! ports), xid, program, version, procedure and a checksum of the arguments
//! (xids wrap and differ between client processes on one host). Bounded:
//! the oldest entries are evicted first. Shared by all reactors behind one
//! mutex, since a client's retransmission may arrive on a new connection on
//! another reactor; held only to look up or insert, never across an await.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DrcKey {
    pub client: IpAddr,
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_num: u32,
    pub args_crc32c: u32,
}

#[derive(Debug, Clone)]
enum Slot {
    InProgress,
    Done(Arc<Vec<u8>>),
}

/// What to do with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrcLookup {
    /// First time: execute it, then `finish` (or `abandon`).
    New,
    /// The first copy is still executing: drop this one (the client will
    /// get the first copy's reply).
    InProgress,
    /// Executed before: send this reply again.
    Replay(Arc<Vec<u8>>),
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<DrcKey, Slot>,
    order: VecDeque<DrcKey>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Drc {
    inner: Mutex<Inner>,
    entries_max: usize,
}

impl Drc {
    pub fn new(entries_max: usize) -> Self {
        assert!(entries_max > 0);
        Drc { inner: Mutex::new(Inner { entries: HashMap::new(), order: VecDeque::new() }), entries_max }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // in a way that matters (worst case an entry is missing).
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks `key` up, marking it in progress when new.
    pub fn begin(&self, key: DrcKey) -> DrcLookup {
        let mut inner = self.lock();
        match inner.entries.get(&key) {
            Some(Slot::InProgress) => return DrcLookup::InProgress,
            Some(Slot::Done(reply)) => return DrcLookup::Replay(Arc::clone(reply)),
            None => {}
        }
        while inner.order.len() >= self.entries_max {
            if let Some(old) = inner.order.pop_front() {
                inner.entries.remove(&old);
            }
        }
        inner.entries.insert(key, Slot::InProgress);
        inner.order.push_back(key);
        debug_assert_eq!(inner.entries.len(), inner.order.len());
        DrcLookup::New
    }

    /// Stores the reply of a call `begin` reported as new.
    pub fn finish(&self, key: DrcKey, reply: Arc<Vec<u8>>) {
        let mut inner = self.lock();
        if let Some(slot) = inner.entries.get_mut(&key) {
            *slot = Slot::Done(reply);
        }
    }

    /// Forgets a call that produced no reply, so a retransmission runs it.
    pub fn abandon(&self, key: DrcKey) {
        let mut inner = self.lock();
        if inner.entries.remove(&key).is_some() {
            inner.order.retain(|k| *k != key);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(xid: u32) -> DrcKey {
        DrcKey { client: IpAddr::from([10, 0, 0, 1]), xid, prog: 100003, vers: 3, proc_num: 8, args_crc32c: 1 }
    }

    #[test]
    fn a_retransmission_gets_the_first_reply() {
        let drc = Drc::new(4);
        assert_eq!(drc.begin(key(1)), DrcLookup::New);
        assert_eq!(drc.begin(key(1)), DrcLookup::InProgress);
        drc.finish(key(1), Arc::new(vec![1, 2, 3]));
        assert_eq!(drc.begin(key(1)), DrcLookup::Replay(Arc::new(vec![1, 2, 3])));
        assert_eq!(drc.begin(DrcKey { args_crc32c: 2, ..key(1) }), DrcLookup::New);
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_oldest() {
        let drc = Drc::new(3);
        for xid in 0..10 {
            assert_eq!(drc.begin(key(xid)), DrcLookup::New);
            drc.finish(key(xid), Arc::new(vec![]));
        }
        assert_eq!(drc.len(), 3);
        assert_eq!(drc.begin(key(0)), DrcLookup::New);
        drc.abandon(key(0));
        assert!(matches!(drc.begin(key(9)), DrcLookup::Replay(_)));
    }
}
