//! Small single-threaded synchronization for the tree's tasks on one reactor:
//! an async mutex (one maintenance task at a time), an event (wake waiters
//! when a checkpoint makes progress), and joining a batch of futures.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A mutex for tasks of one reactor; waiters are served in order.
#[derive(Debug, Default)]
pub(crate) struct AsyncMutex {
    locked: Cell<bool>,
    waiters: RefCell<VecDeque<Waker>>,
}

/// Holding it means holding the lock.
#[derive(Debug)]
pub(crate) struct MutexGuard<'a> {
    mutex: &'a AsyncMutex,
}

impl AsyncMutex {
    pub async fn lock(&self) -> MutexGuard<'_> {
        std::future::poll_fn(|cx| {
            if !self.locked.get() {
                self.locked.set(true);
                return Poll::Ready(MutexGuard { mutex: self });
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push_back(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    pub fn is_locked(&self) -> bool {
        self.locked.get()
    }
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        self.mutex.locked.set(false);
        let next = self.mutex.waiters.borrow_mut().pop_front();
        if let Some(w) = next {
            w.wake();
        }
    }
}

/// Wakes every task waiting at the time of a notification.
#[derive(Debug, Default)]
pub(crate) struct Event {
    epoch: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Event {
    pub fn notify(&self) {
        self.epoch.set(self.epoch.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits for the next notification.
    pub async fn wait(&self) {
        let start = self.epoch.get();
        std::future::poll_fn(|cx| {
            if self.epoch.get() != start {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Runs futures concurrently and returns their outputs in order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let remaining = Rc::new(Cell::new(futures.len()));
    std::future::poll_fn(|cx: &mut Context<'_>| {
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                if let Poll::Ready(v) = f.as_mut().poll(cx) {
                    *out = Some(v);
                    remaining.set(remaining.get() - 1);
                }
            }
        }
        if remaining.get() == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every joined future finished")).collect()
}
