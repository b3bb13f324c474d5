//! Key locks and the apply gate of one shard. Both live on the shard's reactor
//! and are only touched there.
//!
//! Key locks give transactions isolation: a transaction locks every key it
//! reads-to-write, in the global order (shard, key), so two transactions can
//! never wait for each other in a cycle. Single-key writes wait while their key
//! is locked by a transaction.
//!
//! The apply gate keeps a shard's application order equal to LSN order: a
//! transaction that touches other shards holds the gate of each of its shards
//! from before its LSN is assigned until it has been applied there, and local
//! writes wait while the gate is held. A checkpoint can then freeze a shard at
//! any moment the gate is free and know it holds exactly the records up to the
//! journal's last LSN.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Identifies a transaction across the process.
pub type TxnId = u64;

struct KeyLock {
    holder: TxnId,
    waiters: VecDeque<(TxnId, Waker)>,
}

/// Locks on the keys of one shard.
#[derive(Default)]
pub(crate) struct LockTable {
    held: RefCell<HashMap<Vec<u8>, KeyLock>>,
    /// Wakers of single-key writes waiting for a key to be unlocked.
    watchers: RefCell<HashMap<Vec<u8>, Vec<Waker>>>,
}

impl LockTable {
    /// Takes `key` for `txn`, waiting in FIFO order behind other holders.
    pub async fn lock(&self, key: &[u8], txn: TxnId) {
        poll_fn(|cx| {
            let mut held = self.held.borrow_mut();
            match held.get_mut(key) {
                None => {
                    held.insert(key.to_vec(), KeyLock { holder: txn, waiters: VecDeque::new() });
                    Poll::Ready(())
                }
                Some(lock) if lock.holder == txn => Poll::Ready(()),
                Some(lock) => {
                    match lock.waiters.iter_mut().find(|(t, _)| *t == txn) {
                        Some((_, w)) => w.clone_from(cx.waker()),
                        None => lock.waiters.push_back((txn, cx.waker().clone())),
                    }
                    Poll::Pending
                }
            }
        })
        .await;
    }

    /// Releases `key` if `txn` holds it, handing it to the next waiter.
    pub fn unlock(&self, key: &[u8], txn: TxnId) {
        let mut held = self.held.borrow_mut();
        let Some(lock) = held.get_mut(key) else { return };
        if lock.holder != txn {
            // Still waiting (a dropped transaction): leave the queue.
            lock.waiters.retain(|(t, _)| *t != txn);
            return;
        }
        match lock.waiters.pop_front() {
            Some((next, waker)) => {
                lock.holder = next;
                waker.wake();
            }
            None => {
                held.remove(key);
                drop(held);
                if let Some(watchers) = self.watchers.borrow_mut().remove(key) {
                    watchers.into_iter().for_each(Waker::wake);
                }
            }
        }
    }

    /// True when a transaction other than `txn` holds `key`.
    pub fn locked_by_other(&self, key: &[u8], txn: Option<TxnId>) -> bool {
        self.held.borrow().get(key).is_some_and(|l| Some(l.holder) != txn)
    }

    /// Waits until no transaction holds `key`.
    pub async fn wait_unlocked(&self, key: &[u8]) {
        poll_fn(|cx| {
            if !self.held.borrow().contains_key(key) {
                return Poll::Ready(());
            }
            self.watchers.borrow_mut().entry(key.to_vec()).or_default().push(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}

/// The apply gate of one shard (see the module docs).
#[derive(Default)]
pub(crate) struct Gate {
    holder: Cell<Option<TxnId>>,
    waiters: RefCell<VecDeque<Waker>>,
}

impl Gate {
    pub fn is_free(&self) -> bool {
        self.holder.get().is_none()
    }

    pub async fn acquire(&self, txn: TxnId) {
        poll_fn(|cx| match self.holder.get() {
            None => {
                self.holder.set(Some(txn));
                Poll::Ready(())
            }
            Some(t) if t == txn => Poll::Ready(()),
            Some(_) => {
                self.waiters.borrow_mut().push_back(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    pub async fn wait_free(&self) {
        poll_fn(|cx| {
            if self.is_free() {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push_back(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    pub fn release(&self, txn: TxnId) {
        if self.holder.get() != Some(txn) {
            return;
        }
        self.holder.set(None);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        waiters.into_iter().for_each(Waker::wake);
    }
}
