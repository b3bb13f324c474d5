//! The reactor itself: its shared face (what other threads may touch), its
//! local state, and the loop.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_task::Runnable;
use crossbeam_queue::{ArrayQueue, SegQueue};

use crate::io::Devices;
use crate::net::Net;
use crate::outbox::Outbox;
use crate::runtime::{IdlePolicy, ReactorStats};
use crate::time::Timers;

/// A closure run on the reactor that receives it.
pub(crate) type Message = Box<dyn FnOnce() + Send>;

/// One mailbox entry: a message pushed on its own (from a thread that is not
/// a reactor), or a reactor's outbox queue for this reactor, sent after a
/// turn (see `outbox.rs`). Messages of a batch run in order.
pub(crate) enum Envelope {
    One(Message),
    Batch(Vec<Message>),
}

impl Envelope {
    pub fn into_batch(self) -> Vec<Message> {
        match self {
            Envelope::One(message) => vec![message],
            Envelope::Batch(batch) => batch,
        }
    }
}

/// How many tasks one turn runs before it looks at devices and messages again,
/// so that a busy executor cannot starve I/O completions.
const TASKS_PER_TURN_MAX: usize = 256;
/// How many messages one turn drains (whole entries: a batch is run whole, so
/// a turn may run up to `MESSAGES_PER_TURN_MAX + OUTBOX_QUEUE_MESSAGES_MAX - 1`).
const MESSAGES_PER_TURN_MAX: usize = 256;

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// The part of a reactor that other threads reach: where they put woken tasks
/// and messages, and how they wake it from its idle sleep.
pub(crate) struct Shared {
    pub id: usize,
    /// Unique across every reactor ever created in this process, so that
    /// schedule functions can tell "my own thread" from "another reactor with the
    /// same index in another runtime" (tests run many runtimes at once).
    pub uid: u64,
    pub injector: SegQueue<Runnable>,
    pub mailbox: ArrayQueue<Envelope>,
    pub waker: mio::Waker,
    sleeping: AtomicBool,
    /// Set by the thread that writes the waker while the reactor sleeps and
    /// cleared by the reactor before each sleep: the senders of a burst (a
    /// turn's replies, a client's puts) then cost one eventfd write per sleep,
    /// not one each while the sleeper has not yet run.
    wake_sent: AtomicBool,
    /// Eventfd writes made to wake this reactor (any thread), for profiles.
    wakes_written: AtomicU64,
    stop: AtomicBool,
    exited: AtomicBool,
}

impl Shared {
    pub fn new(id: usize, mailbox_capacity: usize, waker: mio::Waker) -> Self {
        Shared {
            id,
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            injector: SegQueue::new(),
            mailbox: ArrayQueue::new(mailbox_capacity.max(1)),
            waker,
            sleeping: AtomicBool::new(false),
            wake_sent: AtomicBool::new(false),
            wakes_written: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            exited: AtomicBool::new(false),
        }
    }

    /// Wakes the reactor if it is (about to be) asleep. Pairs with the fence in
    /// `Core::sleep`: either the reactor sees our push when it re-checks its
    /// queues, or we see its `sleeping` flag and wake it. Only the first
    /// notifier of a sleep writes the waker: that write ends the sleep, and
    /// every later push of it is seen by the turn that follows.
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) && !self.wake_sent.swap(true, Ordering::SeqCst) {
            self.wakes_written.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.waker.wake() {
                tracing::error!(reactor = self.id, error = %e, "cannot wake reactor");
            }
        }
    }

    /// Pushes `envelope` into the mailbox and wakes the reactor if it sleeps;
    /// gives it back when the mailbox is full. An envelope that arrives after
    /// the reactor exited is dropped here, on the sender's thread, so that
    /// its calls are cancelled now rather than when the runtime is freed.
    pub fn deliver(&self, envelope: Envelope) -> Result<(), Envelope> {
        self.mailbox.push(envelope)?;
        // `notify` fences (SeqCst) between the push and the `exited` load;
        // `Core::mark_exited` fences between its store and its last drain:
        // either that drain sees this push or this load sees `exited`.
        self.notify();
        if self.has_exited() {
            self.drop_mailbox();
        }
        Ok(())
    }

    /// Drops every entry in the mailbox (on whichever thread calls it; the
    /// messages are `Send`).
    pub fn drop_mailbox(&self) {
        while let Some(envelope) = self.mailbox.pop() {
            drop(envelope);
        }
    }

    /// How many times another thread wrote the waker to end this reactor's sleep.
    pub fn wakes_written(&self) -> u64 {
        self.wakes_written.load(Ordering::Relaxed)
    }

    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::SeqCst)
    }

    fn mark_exited(&self) {
        self.exited.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Runnables of local tasks must be dropped by their own thread. Any that
        // arrive after the reactor exited (a waker fired at process exit) are
        // leaked on purpose rather than dropped here.
        while let Some(runnable) = self.injector.pop() {
            std::mem::forget(runnable);
        }
    }
}

/// Counters, updated by the reactor thread only.
#[derive(Default)]
pub(crate) struct Counters {
    pub turns: Cell<u64>,
    pub sleeps: Cell<u64>,
    pub tasks_run: Cell<u64>,
    pub messages: Cell<u64>,
    pub mailbox_entries: Cell<u64>,
    pub io_submitted: Cell<u64>,
    pub io_completed: Cell<u64>,
    pub busy_ns: Cell<u64>,
    pub idle_ns: Cell<u64>,
}

impl Counters {
    pub fn bump(cell: &Cell<u64>, by: u64) {
        cell.set(cell.get() + by);
    }

    pub fn snapshot(&self) -> ReactorStats {
        ReactorStats {
            turns: self.turns.get(),
            sleeps: self.sleeps.get(),
            tasks_run: self.tasks_run.get(),
            messages: self.messages.get(),
            mailbox_entries: self.mailbox_entries.get(),
            io_submitted: self.io_submitted.get(),
            io_completed: self.io_completed.get(),
            busy_ns: self.busy_ns.get(),
            idle_ns: self.idle_ns.get(),
            wakes_written: 0,
        }
    }
}

/// A reactor's local state. Lives on its thread only.
pub(crate) struct Core {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub peers: Arc<[Arc<Shared>]>,
    pub local: RefCell<VecDeque<Runnable>>,
    pub outbox: Outbox,
    pub devices: Devices,
    pub timers: RefCell<Timers>,
    pub net: Net,
    pub idle: IdlePolicy,
    pub stats: Counters,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
    static CURRENT_UID: Cell<u64> = const { Cell::new(0) };
}

/// Runs `f` with the calling thread's reactor. Panics off a reactor: that is a
/// programming error, not something input can cause.
pub(crate) fn with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> R {
    try_with_core(f).expect("this function must be called on a Keel reactor thread")
}

pub(crate) fn try_with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> Option<R> {
    let core = CURRENT.with(|c| c.borrow().clone())?;
    Some(f(&core))
}

/// The uid of the calling thread's reactor (0 off a reactor).
pub(crate) fn current_uid() -> u64 {
    CURRENT_UID.with(Cell::get)
}

/// Makes `core` the calling thread's reactor until the guard drops.
pub(crate) fn enter(core: Rc<Core>) -> EnterGuard {
    CURRENT_UID.with(|u| u.set(core.shared.uid));
    CURRENT.with(|c| *c.borrow_mut() = Some(core));
    EnterGuard
}

pub(crate) struct EnterGuard;

impl Drop for EnterGuard {
    fn drop(&mut self) {
        // Tear down while the core is still current: dropping tasks may wake
        // others, whose schedule functions look for this core.
        if let Some(core) = CURRENT.with(|c| c.borrow().clone()) {
            core.shutdown_drop();
        }
        CURRENT.with(|c| c.borrow_mut().take());
        CURRENT_UID.with(|u| u.set(0));
    }
}

impl Core {
    /// One pass over every source of work. Returns true when anything happened.
    pub fn turn(&self) -> bool {
        self.turn_at(Instant::now())
    }

    /// A turn with `now` as the time for the timers: a clock reading taken
    /// before the turn (at the end of the previous one), so no timer fires
    /// early, and the hot loop reads the clock once per turn, not twice.
    fn turn_at(&self, now: Instant) -> bool {
        Counters::bump(&self.stats.turns, 1);
        let mut worked = self.run_tasks();
        // The turn's messages leave before the device system calls, so their
        // destinations can start on them meanwhile.
        self.outbox.flush(&self.peers);
        worked |= self.devices.poll(&self.stats);
        worked |= self.drain_mailbox();
        worked |= self.timers.borrow_mut().fire(now);
        worked |= self.net.poll(Some(Duration::ZERO), &self.devices);
        // Whatever is left (a full mailbox at a destination) is retried here
        // and every turn after; a reactor with messages unsent never sleeps.
        worked |= self.outbox.flush(&self.peers) > 0;
        worked
    }

    fn run_tasks(&self) -> bool {
        let mut ran = 0usize;
        while ran < TASKS_PER_TURN_MAX {
            let next = self.local.borrow_mut().pop_front().or_else(|| self.shared.injector.pop());
            let Some(runnable) = next else { break };
            runnable.run();
            ran += 1;
        }
        Counters::bump(&self.stats.tasks_run, ran as u64);
        ran > 0
    }

    fn drain_mailbox(&self) -> bool {
        let mut messages = 0usize;
        let mut entries = 0u64;
        while messages < MESSAGES_PER_TURN_MAX {
            let Some(envelope) = self.shared.mailbox.pop() else {
                break;
            };
            entries += 1;
            match envelope {
                Envelope::One(message) => {
                    message();
                    messages += 1;
                }
                Envelope::Batch(mut batch) => {
                    messages += batch.len();
                    for message in batch.drain(..) {
                        message();
                    }
                    self.outbox.recycle(batch);
                }
            }
        }
        Counters::bump(&self.stats.messages, messages as u64);
        Counters::bump(&self.stats.mailbox_entries, entries);
        entries > 0
    }

    fn has_queued_work(&self) -> bool {
        !self.local.borrow().is_empty()
            || !self.shared.injector.is_empty()
            || !self.shared.mailbox.is_empty()
            || !self.outbox.is_empty()
    }

    /// Sleeps until a socket, the mailbox, a device or a timer needs us — if it
    /// is safe to: a device without a completion descriptor that has requests in
    /// flight must be polled, so then we do not sleep at all.
    fn sleep(&self) {
        if !self.devices.prepare_to_sleep() {
            return;
        }
        // Cleared before `sleeping` is raised, and nothing reaps the poller
        // between here and the sleep: a notifier that sets `wake_sent` from
        // now on writes the waker after this point, so that write ends this
        // sleep (or finds it already over). A stale `wake_sent` from a notifier
        // that saw an earlier sleep can never suppress a wake-up of this one.
        self.shared.wake_sent.store(false, Ordering::SeqCst);
        self.shared.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.has_queued_work() || self.shared.stop_requested() {
            self.shared.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        let timeout = self.timers.borrow().next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
        Counters::bump(&self.stats.sleeps, 1);
        self.net.poll(timeout, &self.devices);
        self.shared.sleeping.store(false, Ordering::SeqCst);
    }

    /// Runs turns until `done()` says so, applying the idle policy between
    /// turns that found nothing to do.
    pub fn run_until(&self, mut done: impl FnMut() -> bool) {
        let mut idle_since: Option<Instant> = None;
        let mut last = Instant::now();
        while !done() {
            let worked = self.turn_at(last);
            let now = Instant::now();
            let elapsed_ns = now.duration_since(last).as_nanos() as u64;
            last = now;
            if worked {
                Counters::bump(&self.stats.busy_ns, elapsed_ns);
                idle_since = None;
                continue;
            }
            Counters::bump(&self.stats.idle_ns, elapsed_ns);
            match self.idle {
                IdlePolicy::Poll => std::hint::spin_loop(),
                IdlePolicy::Adaptive { spin_us } => {
                    let since = *idle_since.get_or_insert(now);
                    if now.duration_since(since) >= Duration::from_micros(u64::from(spin_us)) {
                        self.sleep();
                        let after = Instant::now();
                        Counters::bump(&self.stats.idle_ns, after.duration_since(last).as_nanos() as u64);
                        last = after;
                        idle_since = None;
                    }
                }
            }
        }
    }

    /// Waits for every request in flight on every device to complete, so that
    /// no buffer is released while a device may still write into it.
    pub fn drain_io(&self) {
        while self.devices.in_flight() > 0 {
            self.turn();
        }
    }

    /// Tears the reactor down on its own thread: tasks first (their futures may
    /// hold I/O or sockets), then devices and sockets.
    fn shutdown_drop(&self) {
        self.drain_io();
        // Messages still waiting for room go out if their destinations are
        // alive; the rest are dropped with this reactor's tasks (cancelling
        // their calls).
        self.outbox.flush(&self.peers);
        self.shared.mark_exited();
        self.drop_queued();
        self.timers.borrow_mut().clear();
        self.net.clear_wakers();
        // Dropping wakers may have rescheduled detached tasks one last time so
        // that their futures are dropped here, on their own thread.
        self.drop_queued();
        self.devices.close();
    }

    /// Drops queued tasks and messages until none is left: dropping one may
    /// wake a task (a failed one-shot) and so queue another.
    fn drop_queued(&self) {
        loop {
            let next = self.local.borrow_mut().pop_front().or_else(|| self.shared.injector.pop());
            if let Some(runnable) = next {
                drop(runnable);
                continue;
            }
            if !self.shared.mailbox.is_empty() {
                self.shared.drop_mailbox();
                continue;
            }
            if !self.outbox.is_empty() {
                self.outbox.drop_all();
                continue;
            }
            break;
        }
    }
}
