//! Keel's per-core reactors.
//!
//! A reactor is one thread, pinned to one core, that owns a queue pair on every
//! device and runs a single loop:
//!
//! 1. run the tasks that are ready (a local executor of futures, `async-task`);
//! 2. poll every device queue pair: submit what tasks queued (one batch per
//!    device), reap completions, wake the tasks that wait for them;
//! 3. drain its mailbox: messages (closures) other threads sent it, one by
//!    one from threads that are not reactors, in batches from reactors (a
//!    reactor's messages wait in its outbox until eight are queued for one
//!    destination or its tasks have run);
//! 4. fire due timers;
//! 5. poll network readiness (epoll through `mio`).
//!
//! When a turn finds nothing to do, the idle policy decides: `poll` spins (the
//! lowest latency, a whole core), `adaptive` spins for a while and then blocks in
//! `epoll_wait` on the network sockets, the mailbox's waker, the devices'
//! completion descriptors and the next timer, so an idle appliance costs nothing.
//!
//! Everything a task touches on its reactor is reactor-local (`Rc`, `RefCell`);
//! work for another reactor travels as a message ([`call_on`], [`send_to`]).
//! Nothing here blocks, except the idle sleep.
//!
//! Tasks, I/O and timers are reached through free functions ([`spawn`],
//! [`io::read`], [`time::sleep`], ...) that act on the reactor of the calling
//! thread; calling them from a thread that is not a reactor is a programming
//! error and panics.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod core;
mod executor;
pub mod io;
mod mailbox;
pub mod net;
mod oneshot;
mod outbox;
mod runtime;
pub mod time;

pub use crate::executor::{spawn, yield_now, JoinHandle};
pub use crate::mailbox::{call_on, send_to, CallError};
pub use crate::oneshot::{oneshot, OneshotReceiver, OneshotSender, RecvError};
pub use crate::runtime::{
    block_on, block_on_with, IdlePolicy, ReactorStats, Runtime, RuntimeConfig, RuntimeError, RuntimeHandle,
};

/// The index of the calling thread's reactor, from 0.
pub fn reactor_id() -> usize {
    core::with_core(|core| core.id)
}

/// How many reactors the runtime of the calling thread has.
pub fn reactor_count() -> usize {
    core::with_core(|core| core.peers.len())
}

/// True when the calling thread is a reactor.
pub fn on_reactor() -> bool {
    core::try_with_core(|_| ()).is_some()
}

/// True once the runtime has been asked to stop; long-running loops (listeners,
/// background workers) check it and wind down.
pub fn stopping() -> bool {
    core::with_core(|core| core.shared.stop_requested())
}

/// A snapshot of the calling reactor's counters.
pub fn stats() -> ReactorStats {
    core::with_core(|core| ReactorStats { wakes_written: core.shared.wakes_written(), ..core.stats.snapshot() })
}
