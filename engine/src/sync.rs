//! A mutex for tasks of one reactor: `lock().await` waits without blocking
//! the thread. Used to run one checkpoint at a time.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub(crate) struct LocalMutex {
    locked: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

pub(crate) struct LocalGuard<'a> {
    mutex: &'a LocalMutex,
}

impl LocalMutex {
    pub async fn lock(&self) -> LocalGuard<'_> {
        poll_fn(|cx| {
            if self.locked.get() {
                self.waiters.borrow_mut().push(cx.waker().clone());
                return Poll::Pending;
            }
            self.locked.set(true);
            Poll::Ready(())
        })
        .await;
        LocalGuard { mutex: self }
    }
}

impl Drop for LocalGuard<'_> {
    fn drop(&mut self) {
        self.mutex.locked.set(false);
        let waiters = std::mem::take(&mut *self.mutex.waiters.borrow_mut());
        waiters.into_iter().for_each(Waker::wake);
    }
}
