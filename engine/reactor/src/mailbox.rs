//! Messages between reactors: a bounded mailbox per reactor, drained in
//! batches by its loop. A message is a closure that runs on the receiving
//! reactor; [`call_on`] builds request/reply on top of it.
//!
//! A reactor's messages for another reactor wait in its outbox until the
//! end of its tasks' part of the turn and travel as one mailbox entry per
//! destination (`outbox.rs`); a call's reply travels back the same way, so
//! the caller's one-shot is filled, and its task woken, on the caller's own
//! thread.

use std::future::Future;

use crate::core::{with_core, Message};
use crate::executor::{spawn, yield_now, CatchUnwind};
use crate::oneshot::{oneshot, OneshotSender};
use crate::outbox::Sent;

/// Why a message could not be delivered or answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("there is no reactor {0}")]
    NoSuchReactor(usize),
    #[error("reactor {0} has stopped")]
    Stopped(usize),
    #[error("the call was dropped before it replied: its reactor is stopping")]
    Cancelled,
    #[error("the call panicked on reactor {0} (a bug; the panic is logged)")]
    Panicked(usize),
}

/// Queues `message` for reactor `target` in the calling reactor's outbox,
/// waiting (yielding to other tasks) while the queue is at its bound and the
/// target's mailbox is full: back-pressure on the sender.
pub(crate) async fn push(target: usize, mut message: Message) -> Result<(), CallError> {
    loop {
        let sent = with_core(|core| {
            let peer = core.peers.get(target).ok_or(CallError::NoSuchReactor(target))?;
            Ok(core.outbox.send(peer, message))
        })?;
        match sent {
            Sent::Queued => return Ok(()),
            Sent::Stopped => return Err(CallError::Stopped(target)),
            Sent::Full(back) => {
                message = back;
                yield_now().await;
            }
        }
    }
}

/// Runs `f` on reactor `target` (right here, as a new task, when `target` is
/// the calling reactor).
pub async fn send_to<F>(target: usize, f: F) -> Result<(), CallError>
where
    F: FnOnce() + Send + 'static,
{
    let (me, reactors) = with_core(|core| (core.id, core.peers.len()));
    if target >= reactors {
        return Err(CallError::NoSuchReactor(target));
    }
    if me == target {
        spawn(async move { f() }).detach();
        return Ok(());
    }
    push(target, Box::new(f)).await
}

/// Runs the future made by `f` on reactor `target` and returns its output
/// here. The future itself need not be `Send`: it is built and polled on the
/// target.
pub async fn call_on<F, Fut, T>(target: usize, f: F) -> Result<T, CallError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let (me, reactors) = with_core(|core| (core.id, core.peers.len()));
    if target >= reactors {
        return Err(CallError::NoSuchReactor(target));
    }
    if me == target {
        return Ok(f().await);
    }
    let (tx, rx) = oneshot();
    push(target, answered_call(target, f, tx, Some(me))).await?;
    rx.await.map_err(|_| CallError::Cancelled)?
}

/// The message of a call to reactor `target`: it runs the future made by `f`
/// there and sends its output, or `Panicked` if it panicked, through `tx`:
/// as a message to reactor `caller` (through the target's outbox) when the
/// caller is a reactor of the same runtime, or directly (any thread) when it
/// is not. A reply that cannot be delivered is dropped, and so is `tx`: the
/// caller sees its call cancelled.
pub(crate) fn answered_call<F, Fut, T>(
    target: usize,
    f: F,
    tx: OneshotSender<Result<T, CallError>>,
    caller: Option<usize>,
) -> Message
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    Box::new(move || {
        spawn(async move {
            let outcome = CatchUnwind::new(async move { f().await }).await;
            let reply = outcome.map_err(|()| CallError::Panicked(target));
            match caller {
                None => tx.send(reply),
                Some(caller) => {
                    // An error here (the caller stopped) has dropped the
                    // reply: nobody is left to tell.
                    let _ = push(caller, Box::new(move || tx.send(reply))).await;
                }
            }
        })
        .detach();
    })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::{Runtime, RuntimeConfig};

    /// Calls to a reactor that stops, whether still in the caller's outbox,
    /// in the target's mailbox, running there or waiting for room, all end
    /// in `Cancelled` or `Stopped`; none hangs. The caller's reactor runs on
    /// to see them.
    #[test]
    fn calls_to_a_reactor_that_stops_are_cancelled() {
        let config = RuntimeConfig { reactors: 2, mailbox_capacity: 1, ..RuntimeConfig::default() };
        let runtime = Runtime::start(&config, &[]).unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (blocked_tx, blocked_rx) = mpsc::channel::<()>();
        runtime
            .spawn_on(1, move || async move {
                blocked_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
            .unwrap();
        blocked_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let calls = 700;
        let (result_tx, result_rx) = mpsc::channel();
        runtime
            .spawn_on(0, move || async move {
                for _ in 0..calls {
                    let result_tx = result_tx.clone();
                    spawn(async move {
                        let outcome = call_on(1, std::future::pending::<()>).await;
                        result_tx.send(outcome).unwrap();
                    })
                    .detach();
                }
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        runtime.handle().request_stop_of(1);
        drop(release_tx);
        for i in 0..calls {
            let outcome = result_rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("call {i} hangs"));
            assert!(matches!(outcome, Err(CallError::Cancelled | CallError::Stopped(1))), "{outcome:?}");
        }
        // Reactor 0 still serves, and a call to reactor 1 now fails at once.
        let after = runtime.call_blocking(0, || async { call_on(1, || async { 1 }).await }).unwrap();
        assert_eq!(after, Err(CallError::Stopped(1)));
    }
}
