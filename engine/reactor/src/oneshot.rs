//! A one-shot channel whose receiver is a future; the sender may be on any
//! thread. Used for replies to cross-reactor calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending half; dropping it without sending makes the receiver fail.
pub struct OneshotSender<T> {
    shared: Option<Arc<Shared<T>>>,
}

/// The receiving half: a future of the value.
pub struct OneshotReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// The sender was dropped without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sender was dropped without a reply")]
pub struct RecvError;

/// A new channel.
pub fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let shared = Arc::new(Shared { state: Mutex::new(State { value: None, waker: None, sender_gone: false }) });
    (OneshotSender { shared: Some(Arc::clone(&shared)) }, OneshotReceiver { shared })
}

impl<T> OneshotSender<T> {
    /// Delivers `value` and wakes the receiver.
    pub fn send(mut self, value: T) {
        if let Some(shared) = self.shared.take() {
            let waker = {
                let mut state = shared.lock();
                state.value = Some(value);
                state.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            let waker = {
                let mut state = shared.lock();
                state.sender_gone = true;
                state.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl<T> OneshotReceiver<T> {
    /// The value if it has arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<T, RecvError>> {
        let mut state = self.shared.lock();
        match state.value.take() {
            Some(v) => Some(Ok(v)),
            None if state.sender_gone => Some(Err(RecvError)),
            None => None,
        }
    }

    /// Blocks the calling thread until the value arrives. For threads that are
    /// not reactors (the main thread, signal handling).
    pub fn recv_blocking(self) -> Result<T, RecvError> {
        let thread = std::thread::current();
        let waker = Waker::from(Arc::new(ThreadWaker(thread)));
        loop {
            {
                let mut state = self.shared.lock();
                if let Some(v) = state.value.take() {
                    return Ok(v);
                }
                if state.sender_gone {
                    return Err(RecvError);
                }
                state.waker = Some(waker.clone());
            }
            std::thread::park();
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

impl<T> Future for OneshotReceiver<T> {
    type Output = Result<T, RecvError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        if let Some(v) = state.value.take() {
            return Poll::Ready(Ok(v));
        }
        if state.sender_gone {
            return Poll::Ready(Err(RecvError));
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneshotSender")
    }
}

impl<T> std::fmt::Debug for OneshotReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneshotReceiver")
    }
}
