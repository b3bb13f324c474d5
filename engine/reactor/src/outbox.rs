//! A reactor's outbox: the messages its tasks sent other reactors during a
//! turn, one queue per destination, sent as one mailbox entry per queue.
//!
//! Why: a message pushed on its own costs a mailbox slot and a SeqCst fence
//! (to see whether the destination sleeps) per message, and a busy fill sends
//! one per put and one per reply. Gathered per turn, a destination gets the
//! turn's messages as one entry with one notify. Messages in one queue keep
//! the order they were sent in, and queues leave in that order too, so the
//! order from one reactor to another is the order of sending.
//!
//! A queue does not wait for the end of the turn once it holds
//! `OUTBOX_QUEUE_SEND_AT` messages: a turn may run hundreds of tasks (a fill
//! puts from every one), and a destination that saw nothing until the last
//! of them had run sat idle meanwhile, then got everything at once. Sending
//! every few messages keeps most of the saving (one entry and one fence per
//! eight messages rather than per message) and lets the destination work
//! while the sender is still running its tasks.
//!
//! Everything here runs on the reactor that owns the outbox.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::core::{Envelope, Message, Shared};

/// Messages one destination queue holds before senders wait for the
/// destination's mailbox to take the queue (back-pressure).
pub(crate) const OUTBOX_QUEUE_MESSAGES_MAX: usize = 256;

/// A queue is offered to its destination's mailbox each time it reaches a
/// multiple of this many messages, without waiting for the end of the turn.
/// Only at multiples: while the mailbox is full, senders would otherwise try
/// (and fail) to deliver on every message.
pub(crate) const OUTBOX_QUEUE_SEND_AT: usize = 8;

/// Empty batch vectors kept for reuse (from batches this reactor received),
/// so that a busy pair of reactors does not allocate a vector per batch.
const SPARE_BATCHES_MAX: usize = 8;

/// What became of a message handed to [`Outbox::send`].
pub(crate) enum Sent {
    /// Queued (or sent); it reaches the destination in order.
    Queued,
    /// The queue is full and the destination's mailbox cannot take it now:
    /// the message comes back, the sender waits and tries again.
    Full(Message),
    /// The destination has stopped; the message was dropped (which cancels
    /// a call that was in it).
    Stopped,
}

pub(crate) struct Outbox {
    /// `queues[d]`: messages for reactor `d`, oldest first.
    queues: Box<[RefCell<Vec<Message>>]>,
    /// How many messages wait in all queues together.
    waiting: Cell<usize>,
    spare: RefCell<Vec<Vec<Message>>>,
}

impl Outbox {
    pub fn new(reactors: usize) -> Outbox {
        Outbox {
            queues: (0..reactors).map(|_| RefCell::new(Vec::new())).collect(),
            waiting: Cell::new(0),
            spare: RefCell::new(Vec::new()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.get() == 0
    }

    /// Queues `message` for `peer`. A full queue is first offered to the
    /// peer's mailbox, so a sender only waits when the mailbox is full too.
    pub fn send(&self, peer: &Arc<Shared>, message: Message) -> Sent {
        if peer.has_exited() {
            return Sent::Stopped;
        }
        let full = self.queue(peer.id).borrow().len() >= OUTBOX_QUEUE_MESSAGES_MAX;
        if full && !self.flush_to(peer) {
            return Sent::Full(message);
        }
        let queued = {
            let mut queue = self.queue(peer.id).borrow_mut();
            assert!(queue.len() < OUTBOX_QUEUE_MESSAGES_MAX, "outbox queue over its bound");
            queue.push(message);
            queue.len()
        };
        self.waiting.set(self.waiting.get() + 1);
        if queued % OUTBOX_QUEUE_SEND_AT == 0 {
            // A full mailbox keeps the queue here for a later try (the next
            // multiple, the end of the turn, or the bound above).
            self.flush_to(peer);
        }
        Sent::Queued
    }

    /// Sends every non-empty queue to its destination's mailbox, one entry
    /// and one notify each. Returns how many messages left; a queue whose
    /// mailbox is full stays for the next try.
    pub fn flush(&self, peers: &[Arc<Shared>]) -> usize {
        if self.is_empty() {
            return 0;
        }
        let before = self.waiting.get();
        for peer in peers {
            self.flush_to(peer);
        }
        before - self.waiting.get()
    }

    /// Sends the queue for `peer` as one mailbox entry. False when the
    /// mailbox is full (the queue stays as it was). A stopped destination's
    /// queue is dropped: its calls are cancelled.
    fn flush_to(&self, peer: &Arc<Shared>) -> bool {
        let queue = self.queue(peer.id);
        let count = queue.borrow().len();
        if count == 0 {
            return true;
        }
        let replacement = self.spare.borrow_mut().pop().unwrap_or_default();
        let batch = std::mem::replace(&mut *queue.borrow_mut(), replacement);
        match peer.deliver(Envelope::Batch(batch)) {
            Ok(()) => {
                self.waiting.set(self.waiting.get() - count);
                true
            }
            Err(back) => {
                let spare = std::mem::replace(&mut *queue.borrow_mut(), back.into_batch());
                self.recycle(spare);
                false
            }
        }
    }

    /// Keeps an emptied batch vector for a later flush.
    pub fn recycle(&self, mut batch: Vec<Message>) {
        batch.clear();
        let mut spare = self.spare.borrow_mut();
        if spare.len() < SPARE_BATCHES_MAX && batch.capacity() > 0 {
            spare.push(batch);
        }
    }

    /// Drops every waiting message (at shutdown, after a last flush): a
    /// dropped call message cancels its caller's call, a dropped reply
    /// fails its caller's one-shot.
    pub fn drop_all(&self) {
        for queue in self.queues.iter() {
            let dropped = std::mem::take(&mut *queue.borrow_mut());
            self.waiting.set(self.waiting.get() - dropped.len());
            drop(dropped);
        }
        debug_assert_eq!(self.waiting.get(), 0);
    }

    fn queue(&self, reactor: usize) -> &RefCell<Vec<Message>> {
        &self.queues[reactor]
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.drop_all();
    }
}
