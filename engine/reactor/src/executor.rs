//! The local executor: tasks are futures that live on one reactor and are
//! polled only there.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_task::{Builder, Runnable};

use crate::core::{current_uid, try_with_core, with_core, Shared};

/// A handle to a spawned task. Awaiting it yields the task's output; dropping it
/// cancels the task unless it was detached.
pub type JoinHandle<T> = async_task::Task<T>;

/// Spawns a future on the calling reactor.
///
/// A panic inside the task is caught: awaiting the handle re-raises it, and a
/// detached task that panics is logged, so a bug in one connection's handler
/// does not take the reactor down with it.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let shared = with_core(|core| Arc::clone(&core.shared));
    spawn_on_shared(shared, future)
}

pub(crate) fn spawn_on_shared<F>(shared: Arc<Shared>, future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let schedule = move |runnable: Runnable| schedule(&shared, runnable);
    let (runnable, task) = Builder::new().propagate_panic(true).spawn_local(move |()| future, schedule);
    runnable.schedule();
    task
}

/// Spawns a future whose panic, if any, is logged rather than re-raised; for
/// tasks nobody awaits.
pub(crate) fn spawn_detached_logged<F>(future: F)
where
    F: Future<Output = ()> + 'static,
{
    spawn(CatchPanic { inner: Box::pin(future) }).detach();
}

fn schedule(shared: &Arc<Shared>, runnable: Runnable) {
    if current_uid() == shared.uid {
        let mut slot = Some(runnable);
        try_with_core(|core| {
            if let Some(runnable) = slot.take() {
                core.local.borrow_mut().push_back(runnable);
            }
        });
        match slot {
            None => return,
            Some(runnable) => shared.injector.push(runnable),
        }
    } else {
        shared.injector.push(runnable);
    }
    shared.notify();
}

/// Gives other tasks on this reactor a turn.
pub async fn yield_now() {
    YieldNow { yielded: false }.await
}

struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

struct CatchPanic {
    inner: Pin<Box<dyn Future<Output = ()>>>,
}

impl Future for CatchPanic {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let what = panic_message(payload.as_ref());
                tracing::error!(panic = %what, "a task panicked; it was dropped and the reactor goes on");
                Poll::Ready(())
            }
        }
    }
}

/// A future whose panic is caught, logged and turned into `Err`, so that
/// whoever waits for its output learns that it panicked (a caller across
/// reactors would otherwise see only a dropped reply).
pub(crate) struct CatchUnwind<T> {
    inner: Pin<Box<dyn Future<Output = T>>>,
}

impl<T> CatchUnwind<T> {
    pub(crate) fn new(future: impl Future<Output = T> + 'static) -> CatchUnwind<T> {
        CatchUnwind { inner: Box::pin(future) }
    }
}

impl<T> Future for CatchUnwind<T> {
    type Output = Result<T, ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, ()>> {
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(payload) => {
                let what = panic_message(payload.as_ref());
                tracing::error!(panic = %what, "a call from another reactor panicked; its caller gets an error");
                Poll::Ready(Err(()))
            }
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
