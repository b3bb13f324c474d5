//! Timers: `sleep`, `sleep_until` and `timeout`, fired by the reactor loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::core::{try_with_core, with_core};

/// Pending timers of one reactor, ordered by deadline.
#[derive(Default)]
pub(crate) struct Timers {
    entries: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
}

impl Timers {
    fn insert(&mut self, deadline: Instant, waker: Waker) -> (Instant, u64) {
        let key = (deadline, self.next_id);
        self.next_id += 1;
        self.entries.insert(key, waker);
        key
    }

    /// Wakes every timer due at `now`. Returns true if any fired.
    pub fn fire(&mut self, now: Instant) -> bool {
        let mut fired = false;
        while let Some(entry) = self.entries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            entry.remove().wake();
            fired = true;
        }
        fired
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.keys().next().map(|(deadline, _)| *deadline)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Completes at `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, key: None }
}

/// The future returned by [`sleep`].
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    key: Option<(Instant, u64)>,
}

impl Sleep {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn unregister(&mut self) {
        if let Some(key) = self.key.take() {
            try_with_core(|core| core.timers.borrow_mut().entries.remove(&key));
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.unregister();
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let key = self.key;
        let new_key = with_core(|core| {
            let mut timers = core.timers.borrow_mut();
            if let Some(key) = key {
                // Fired timers are removed from the map; re-arm if ours was.
                if let Some(waker) = timers.entries.get_mut(&key) {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                    return key;
                }
            }
            timers.insert(deadline, cx.waker().clone())
        });
        self.key = Some(new_key);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The error of a [`timeout`] that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {after:?}")]
pub struct Elapsed {
    pub after: Duration,
}

/// Runs `future` for at most `duration`.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    let mut sleep = std::pin::pin!(sleep(duration));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed { after: duration })),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
