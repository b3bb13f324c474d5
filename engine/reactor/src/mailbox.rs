//! Messages between reactors: a bounded mailbox per reactor, drained in
//! batches by its loop. A message is a closure that runs on the receiving
//! reactor; [`call_on`] builds request/reply on top of it.

use std::future::Future;
use std::sync::Arc;

use crate::core::{with_core, Message, Shared};
use crate::executor::{spawn, yield_now, CatchUnwind};
use crate::oneshot::{oneshot, OneshotSender};

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

/// Pushes `message` into `target`'s mailbox, waiting (yielding to other tasks)
/// while the mailbox is full: a full mailbox is back-pressure on the sender.
pub(crate) async fn push(target: &Arc<Shared>, mut message: Message) -> Result<(), CallError> {
    loop {
        if target.has_exited() {
            return Err(CallError::Stopped(target.id));
        }
        match target.mailbox.push(message) {
            Ok(()) => {
                target.notify();
                return Ok(());
            }
            Err(back) => {
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
    let (me, peer) = with_core(|core| (core.id, core.peers.get(target).cloned()));
    let peer = peer.ok_or(CallError::NoSuchReactor(target))?;
    if me == target {
        spawn(async move { f() }).detach();
        return Ok(());
    }
    push(&peer, Box::new(f)).await
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
    let (me, peer) = with_core(|core| (core.id, core.peers.get(target).cloned()));
    let peer = peer.ok_or(CallError::NoSuchReactor(target))?;
    if me == target {
        return Ok(f().await);
    }
    let (tx, rx) = oneshot();
    push(&peer, answered_call(target, f, tx)).await?;
    rx.await.map_err(|_| CallError::Cancelled)?
}

/// The message of a call to reactor `target`: it runs the future made by `f`
/// there and sends its output, or `Panicked` if it panicked, through `tx`.
pub(crate) fn answered_call<F, Fut, T>(target: usize, f: F, tx: OneshotSender<Result<T, CallError>>) -> Message
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    Box::new(move || {
        spawn(async move {
            let outcome = CatchUnwind::new(async move { f().await }).await;
            tx.send(outcome.map_err(|()| CallError::Panicked(target)));
        })
        .detach();
    })
}
