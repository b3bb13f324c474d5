//! Opening and closing an engine on a volume.
//!
//! Open: read the newest valid superblock (writing nothing), open every
//! shard's tree at its checkpoint on its reactor, recover and replay the
//! journal, open the journal for appending just after the recovered end with
//! the next epoch, and take a checkpoint that records that epoch and bumps the
//! boot counter. Only then is the engine handed out, so no new record can be
//! written under a superblock that does not know its epoch.
//!
//! Close: stop the checkpointer, take a final checkpoint (marking the volume
//! clean), close the journal and drop the shards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use keel_journal::{Journal, JournalIdentity, JournalPosition, JournalRegion};
use keel_reactor::io::{self, DeviceId};
use keel_reactor::Runtime;
use keel_tree::Tree;

use crate::checkpoint::CheckpointKind;
use crate::config::EngineConfig;
use crate::engine::{Engine, EngineShared, NEXT_ENGINE_UID};
use crate::error::EngineError;
use crate::recovery;
use crate::route;
use crate::shard::{self, Shard};
use crate::superblock::Superblock;
use crate::volume;

/// What opening found, for logs and `keel inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    pub records_replayed: u64,
    pub shard_ops_applied: u64,
    pub journal_end_reason: String,
    pub was_clean: bool,
    /// A superblock copy rejected (bad checksum or contents) while the other
    /// was opened: the damage was detected and survived, and is reported.
    pub superblock_rejected: Option<String>,
}

fn shards_of(reactor: usize, shard_count: u32, reactors: usize) -> Vec<u32> {
    (0..shard_count).filter(|&s| route::reactor_of(s, reactors) == reactor).collect()
}

impl Engine {
    /// Opens the volume on `device` with the reactors of `runtime`. Call from
    /// a thread that is not a reactor.
    pub fn open(
        runtime: &Runtime,
        device: DeviceId,
        config: EngineConfig,
    ) -> Result<(Engine, OpenReport), EngineError> {
        config.tree.validate().map_err(|e| EngineError::Invalid(e.to_string()))?;
        let mut config = config;
        let (sb, rejected, info) = runtime.call_blocking(0, move || async move {
            volume::read_current_reporting(device).await.map(|(sb, rejected)| (sb, rejected, io::device_info(device)))
        })??;
        if let Some(copy) = &rejected {
            tracing::warn!(rejected = %copy, generation = sb.generation, "a superblock copy is damaged; opening from the other");
        }
        // One transaction is one journal record, and a record must fit one
        // journal batch (written in pieces of at most one device transfer).
        config.journal = config.journal.fitted_to(&info);
        config.limits.txn_bytes_max = config.limits.txn_bytes_max.min(config.journal.record_payload_bytes_max);
        let uid = NEXT_ENGINE_UID.fetch_add(1, Ordering::Relaxed);
        match open_with(runtime, device, config, sb, uid) {
            Ok((engine, report)) => Ok((engine, OpenReport { superblock_rejected: rejected, ..report })),
            Err(e) => {
                unregister(runtime, uid);
                Err(e)
            }
        }
    }

    /// Closes the engine: a final checkpoint marks the volume clean. Call
    /// from a thread that is not a reactor, after the gateways stopped.
    pub fn close(self, runtime: &Runtime) -> Result<(), EngineError> {
        self.shared.stopping.store(true, Ordering::Release);
        let engine = self.clone();
        let result = runtime.call_blocking(0, move || async move {
            let sb = engine.checkpoint_here(CheckpointKind::Final).await;
            engine.shared.journal.close().await;
            sb
        });
        unregister(runtime, self.shared.uid);
        result??;
        Ok(())
    }
}

fn unregister(runtime: &Runtime, uid: u64) {
    for reactor in 0..runtime.reactor_count() {
        let _ = runtime.call_blocking(reactor, move || async move { shard::unregister_all(uid) });
    }
}

fn open_with(
    runtime: &Runtime,
    device: DeviceId,
    config: EngineConfig,
    sb: Superblock,
    uid: u64,
) -> Result<(Engine, OpenReport), EngineError> {
    let reactors = runtime.reactor_count();
    let layout = sb.layout;
    open_trees(runtime, device, &config, &sb, uid)?;
    let region = JournalRegion { device, first_page: layout.journal_start_page, page_count: layout.journal_pages };
    let identity = JournalIdentity { volume_uuid: sb.volume_uuid, epoch: sb.journal_epoch };
    let head = (sb.journal_head_lsn, sb.journal_head_offset);
    let journal_config = config.journal.clone();
    let shard_count = layout.shard_count;
    let replay = runtime.call_blocking(0, move || async move {
        recovery::read_journal(region, &journal_config, identity, head, shard_count).await
    })??;
    let outcome = replay.outcome;
    let lsn_applied = tree_lsns(runtime, uid, shard_count)?;
    let lsn_applied_max = lsn_applied.iter().copied().max().unwrap_or(0);
    if lsn_applied_max >= outcome.next_lsn {
        // A checkpoint is only published once the journal holds every record
        // its trees include, so the journal cannot end before them.
        return Err(EngineError::Recovery(format!(
            "a checkpointed tree includes LSN {lsn_applied_max} but the journal ends before LSN {}: \
             journal records the checkpoint relied on are missing",
            outcome.next_lsn
        )));
    }
    let (decoded, lsn_vouched) = (replay.records, outcome.lsn_vouched);
    let records = runtime.call_blocking(0, move || async move {
        recovery::cut_at_lost_data(device, &layout, decoded, lsn_vouched, &lsn_applied).await
    })??;
    let records = Arc::new(records);
    let mut shard_ops_applied = 0;
    for reactor in 0..reactors {
        let records = Arc::clone(&records);
        let mine = shards_of(reactor, shard_count, reactors);
        shard_ops_applied += runtime
            .call_blocking(reactor, move || async move { recovery::replay_local(uid, mine, records).await })??;
    }
    let position = JournalPosition::empty_at(outcome.next_lsn, outcome.next_offset);
    let next_identity = JournalIdentity { volume_uuid: sb.volume_uuid, epoch: sb.journal_epoch + 1 };
    let journal_config = config.journal.clone();
    let journal = runtime.call_blocking(0, move || async move {
        Journal::open(region, &journal_config, next_identity, position).await
    })??;
    let report = OpenReport {
        records_replayed: records.len() as u64,
        shard_ops_applied,
        journal_end_reason: outcome.end_reason.clone(),
        was_clean: sb.flags & crate::superblock::FLAG_CLEAN != 0,
        superblock_rejected: None,
    };
    let engine = Engine {
        shared: Arc::new(EngineShared {
            uid,
            device,
            shard_count,
            reactor_count: reactors,
            config,
            next_txn: AtomicU64::new(1),
            journal,
            superblock: Mutex::new(sb),
            stopping: AtomicBool::new(false),
            checkpoints: AtomicU64::new(0),
        }),
    };
    let first = engine.clone();
    runtime.call_blocking(0, move || async move { first.checkpoint_here(CheckpointKind::AfterOpen).await })??;
    let background = engine.clone();
    runtime.spawn_on(0, move || background.checkpointer())?;
    tracing::info!(
        records = report.records_replayed,
        clean = report.was_clean,
        boot = engine.boot_counter(),
        "engine open"
    );
    Ok((engine, report))
}

fn open_trees(
    runtime: &Runtime,
    device: DeviceId,
    config: &EngineConfig,
    sb: &Superblock,
    uid: u64,
) -> Result<(), EngineError> {
    let reactors = runtime.reactor_count();
    for reactor in 0..reactors {
        let mine = shards_of(reactor, sb.layout.shard_count, reactors);
        let regions: Vec<_> =
            mine.iter().map(|&s| (s, sb.layout.shard_region(s), sb.shard_states[s as usize])).collect();
        let tree_config = config.tree.clone();
        runtime.call_blocking(reactor, move || async move {
            for (id, (first_page, pages), state) in regions {
                let tree = Tree::open(device, first_page, pages, &state, tree_config.clone())
                    .await
                    .map_err(|e| EngineError::from_tree(id, e))?;
                shard::register(uid, Shard::new(id, tree));
            }
            Ok::<(), EngineError>(())
        })??;
    }
    Ok(())
}

/// Every shard's checkpointed LSN, by shard.
fn tree_lsns(runtime: &Runtime, uid: u64, shard_count: u32) -> Result<Vec<u64>, EngineError> {
    let reactors = runtime.reactor_count();
    let mut lsns = vec![0u64; shard_count as usize];
    for reactor in 0..reactors {
        let mine = shards_of(reactor, shard_count, reactors);
        let got = runtime.call_blocking(reactor, move || async move {
            mine.iter()
                .map(|&id| (id, shard::local(uid, id).expect("registered").tree.lsn_applied()))
                .collect::<Vec<_>>()
        })?;
        for (id, lsn) in got {
            lsns[id as usize] = lsn;
        }
    }
    Ok(lsns)
}
