//! Two small reactor-local primitives: a one-waiter notification with a
//! stored permit, and a stop signal any number of tasks can wait on.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::task::{Poll, Waker};

use slab::Slab;

/// Wakes one waiting task; a notification with no waiter is kept for the
/// next wait.
#[derive(Debug, Default)]
pub struct Notify {
    permit: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.permit.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    pub async fn notified(&self) {
        std::future::poll_fn(|cx| {
            if self.permit.replace(false) {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Set once; every task waiting on it wakes.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: Cell<bool>,
    wakers: RefCell<Slab<Waker>>,
}

impl StopSignal {
    pub fn stop(&self) {
        self.stopped.set(true);
        for w in self.wakers.borrow_mut().drain() {
            w.wake();
        }
    }

    /// Runs `f` until it finishes (`Some`) or the signal is set (`None`).
    pub async fn run_until_stopped<F: Future>(&self, f: F) -> Option<F::Output> {
        let mut f = pin!(f);
        let mut slot: Option<usize> = None;
        let out = std::future::poll_fn(|cx| {
            if self.stopped.get() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(v) = f.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            let mut wakers = self.wakers.borrow_mut();
            match slot {
                Some(k) if wakers.contains(k) => wakers[k] = cx.waker().clone(),
                _ => slot = Some(wakers.insert(cx.waker().clone())),
            }
            Poll::Pending
        })
        .await;
        if let Some(k) = slot {
            let mut wakers = self.wakers.borrow_mut();
            if wakers.contains(k) {
                wakers.remove(k);
            }
        }
        out
    }
}
