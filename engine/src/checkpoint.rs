//! Checkpoints: make every shard's tree durable up to a known LSN, record it
//! in the superblock, and free the journal before it.
//!
//! Protocol (one checkpoint at a time, coordinated from reactor 0):
//!
//! 1. On each shard's reactor: wait until its apply gate is free, then — in one
//!    synchronous step — read the journal's last assigned LSN and freeze the
//!    tree at it. With the gate free, every LSN assigned so far that touches
//!    the shard has been applied (see `locks`), and none after it has, so the
//!    frozen image is exactly "all records up to that LSN". Then write the
//!    frozen image (new places for dirty nodes, the indirection table); the
//!    shard keeps serving meanwhile.
//! 2. Wait until the journal is durable up to the largest frozen LSN, then
//!    flush the device: every node and table page is durable, and so is
//!    every record any shard's image includes.
//! 3. Write the next superblock (the new shard states; the journal head at the
//!    smallest frozen LSN + 1) and flush it.
//! 4. Free the journal before the head and let every tree reuse the space its
//!    previous checkpoint held.
//!
//! A crash anywhere before step 3 completes leaves the previous superblock in
//! force, whose trees and journal head are untouched (copy-on-write never
//! overwrote them, and space is reused only after step 4).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use keel_reactor::io;

use crate::engine::{Engine, CHECKPOINT_LOCK};
use crate::error::EngineError;
use crate::superblock::{Superblock, FLAG_CLEAN, SHARD_STATE_BYTES};
use crate::volume;

/// Why a checkpoint is taken; decides what the new superblock says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckpointKind {
    /// Periodic or requested.
    Regular,
    /// Right after recovery, before any new record: the journal epoch and the
    /// boot counter move on, so records beyond the recovered end can never be
    /// taken for new ones.
    AfterOpen,
    /// At a clean shutdown: the volume is marked clean.
    Final,
}

/// How often the checkpointer looks at the journal's fill level.
const CHECKPOINTER_TICK: Duration = Duration::from_millis(100);

impl Engine {
    /// Takes a checkpoint now (waits for one in progress first).
    pub async fn checkpoint(&self) -> Result<(), EngineError> {
        let engine = self.clone();
        keel_reactor::call_on(0, move || async move { engine.checkpoint_here(CheckpointKind::Regular).await })
            .await??;
        Ok(())
    }

    /// How many checkpoints this engine has completed.
    pub fn checkpoints_completed(&self) -> u64 {
        self.shared.checkpoints.load(Ordering::Relaxed)
    }

    /// Runs a checkpoint; must be called on reactor 0.
    pub(crate) async fn checkpoint_here(&self, kind: CheckpointKind) -> Result<Superblock, EngineError> {
        let lock = CHECKPOINT_LOCK.with(Rc::clone);
        let _one_at_a_time = lock.lock().await;
        let frozen = self.freeze_and_write_all().await;
        let states = match frozen {
            Ok(states) => states,
            Err(e) => {
                self.abandon_all().await;
                return Err(e);
            }
        };
        match self.publish(kind, &states).await {
            Ok(sb) => {
                self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                Ok(sb)
            }
            Err(e) => {
                self.abandon_all().await;
                Err(e)
            }
        }
    }

    /// Step 1 on every shard at once; returns each shard's state and frozen LSN.
    async fn freeze_and_write_all(&self) -> Result<Vec<([u8; SHARD_STATE_BYTES], u64)>, EngineError> {
        let mut handles = Vec::new();
        for id in 0..self.shared.shard_count {
            let engine = self.clone();
            handles.push(keel_reactor::spawn(async move {
                let journal = engine.shared.journal.clone();
                engine
                    .on_shard(id, move |shard| async move {
                        shard.gate.wait_free().await;
                        // No await between reading the LSN and freezing.
                        let lsn = journal.position().next_lsn - 1;
                        let frozen = shard.tree.freeze(lsn);
                        let state = shard.tree.write_checkpoint(frozen).await;
                        state.map(|s| (s, lsn)).map_err(|e| EngineError::from_tree(shard.id, e))
                    })
                    .await
            }));
        }
        let mut states = Vec::with_capacity(handles.len());
        let mut first_error = None;
        for handle in handles {
            match handle.await {
                Ok(Ok(state)) => states.push(state),
                Ok(Err(e)) | Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(states),
        }
    }

    /// Steps 2-4.
    async fn publish(
        &self,
        kind: CheckpointKind,
        states: &[([u8; SHARD_STATE_BYTES], u64)],
    ) -> Result<Superblock, EngineError> {
        let device = self.shared.device;
        let journal = &self.shared.journal;
        // The trees now hold every record up to their frozen LSNs, some of
        // which may still sit in the journal's open batch. Those records
        // must be durable in the ring before the superblock names the trees:
        // recovery replays from the head to the journal's end, and a shard
        // frozen earlier than another needs the records in between, or a
        // transaction would survive on one shard and vanish from the other.
        let lsn_frozen_max = states.iter().map(|(_, lsn)| *lsn).max().unwrap_or(0);
        journal.wait_durable(lsn_frozen_max).await?;
        io::flush(device).await?;
        let lsn_frozen_min = states.iter().map(|(_, lsn)| *lsn).min().unwrap_or(0);
        let (head_lsn, head_offset) = journal.head_for(lsn_frozen_min + 1)?;
        let next = {
            let current = self.superblock_lock();
            let mut next = current.clone();
            next.generation = current.generation + 1;
            next.shard_states = states.iter().map(|(s, _)| *s).collect();
            next.journal_head_lsn = head_lsn;
            next.journal_head_offset = head_offset;
            next.checkpoint_unix_secs = volume::now_unix_secs();
            next.flags = match kind {
                CheckpointKind::Final => current.flags | FLAG_CLEAN,
                _ => current.flags & !FLAG_CLEAN,
            };
            if kind == CheckpointKind::AfterOpen {
                next.journal_epoch = current.journal_epoch + 1;
                next.boot_counter = current.boot_counter + 1;
            }
            next
        };
        volume::write_superblock(device, &next).await?;
        *self.superblock_lock() = next.clone();
        journal.advance_head(lsn_frozen_min + 1)?;
        for id in 0..self.shared.shard_count {
            self.on_shard(id, |shard| async move { shard.tree.checkpoint_durable() }).await?;
        }
        tracing::debug!(generation = next.generation, head_lsn, ?kind, "checkpoint durable");
        Ok(next)
    }

    /// Undoes step 1 after a failure: the previous checkpoint stays in force.
    async fn abandon_all(&self) {
        for id in 0..self.shared.shard_count {
            let _ = self.on_shard(id, |shard| async move { shard.tree.checkpoint_abandoned() }).await;
        }
    }

    /// Whether a regular checkpoint is due.
    fn checkpoint_due(&self, last: Instant) -> bool {
        let usage = self.shared.journal.usage();
        if usage.next_lsn == usage.head_lsn {
            return false;
        }
        let percent = usage.used_bytes.saturating_mul(100) / usage.ring_bytes.max(1);
        percent >= u64::from(self.shared.config.checkpoint_journal_percent)
            || last.elapsed() >= self.shared.config.checkpoint_interval
    }

    /// The background task on reactor 0 that takes checkpoints when due.
    pub(crate) async fn checkpointer(self) {
        let mut last = Instant::now();
        while !self.shared.stopping.load(Ordering::Acquire) {
            keel_reactor::time::sleep(CHECKPOINTER_TICK).await;
            if self.shared.stopping.load(Ordering::Acquire) || !self.checkpoint_due(last) {
                continue;
            }
            match self.checkpoint_here(CheckpointKind::Regular).await {
                Ok(_) => last = Instant::now(),
                Err(e) => {
                    tracing::error!(error = %e, "checkpoint failed; the previous one stays in force");
                    keel_reactor::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
