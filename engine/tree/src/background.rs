//! The background maintenance task of a tree: flushes over-full nodes and
//! writes dirty nodes back a little before the cache is full, so that
//! writers are admitted without waiting for the reads and writes that
//! maintenance needs. Without it, a writer that finds an over-full node
//! waits for the flush's leaf reads, and so, a write at a time, does every
//! client of the engine (each writes to every shard).
//!
//! `make_room` starts the task when work is due and none is running; it
//! takes the maintenance lock like a writer would, does what
//! [`Urgency::Background`] says is due, and ends when nothing is. A writer
//! that still finds no room waits for the lock and does the rest itself.

use crate::maintenance::{Action, Admission, Urgency};
use crate::tree::Tree;

impl Tree {
    /// Starts the background task if maintenance is due and nobody is at it.
    pub(crate) fn kick_background(&self) {
        if !self.sh.config.background_maintenance || self.sh.background.get() || self.sh.maintenance.is_locked() {
            return;
        }
        if !self.background_due() {
            return;
        }
        self.sh.background.set(true);
        let tree = self.clone();
        keel_reactor::spawn(async move {
            tree.background_pass().await;
            tree.sh.background.set(false);
        })
        .detach();
    }

    /// Waits until the background task is idle: for tests and tools that
    /// count or fault the device writes of one step and need no others.
    pub async fn maintenance_idle(&self) {
        while self.sh.background.get() {
            drop(self.sh.maintenance.lock().await);
            keel_reactor::yield_now().await;
        }
    }

    fn background_due(&self) -> bool {
        !matches!(self.decide(0, Admission::Reclaim, Urgency::Background), Action::Done | Action::NoSpace(_))
    }

    async fn background_pass(&self) {
        let _guard = self.sh.maintenance.lock().await;
        loop {
            let action = self.decide(0, Admission::Reclaim, Urgency::Background);
            if matches!(action, Action::Done | Action::NoSpace(_)) {
                return;
            }
            if let Err(e) = self.run_action(action).await {
                // A writer that needs this work meets the same error and
                // returns it; the background task only stops trying.
                tracing::debug!(error = %e, "background maintenance stopped");
                return;
            }
        }
    }
}
