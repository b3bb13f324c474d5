//! Checking every shard's durable checkpoint: each shard's tree opened read
//! only at the checkpoint the superblock names, then the tree's fsck (every
//! checksum, key ranges, heights, page accounting). One implementation for
//! the live engine ([`Engine::fsck`]) and for a volume that is not open
//! (`keel fsck`, through [`crate::check::check_volume`]); the block map of
//! each shard, for tools and fault tests, is read the same way.
//!
//! On a live engine both hold the checkpoint lock (on reactor 0) while they
//! walk: the superblock in force then names exactly the durable trees, and
//! no checkpoint can complete and let their space be reused under the walk.

use std::rc::Rc;

use keel_reactor::io::DeviceId;
use keel_tree::{BlockInfo, FsckProgress, FsckReport, Tree, TreeConfig};

use crate::engine::{Engine, CHECKPOINT_LOCK};
use crate::error::EngineError;
use crate::superblock::Superblock;

/// One shard's check: its region and what the walk found, or why its tree
/// does not open at the checkpoint.
#[derive(Debug, Clone)]
pub struct ShardCheck {
    pub shard: u32,
    pub first_page: u64,
    /// The checkpoint state is all zero: the shard was never checkpointed.
    pub never_checkpointed: bool,
    pub result: Result<FsckReport, String>,
}

impl ShardCheck {
    /// The report, with a tree that does not open counted as its one problem.
    pub fn into_report(self) -> FsckReport {
        match self.result {
            Ok(r) => r,
            Err(e) => FsckReport { problems: vec![e], ..FsckReport::default() },
        }
    }
}

/// Where a check of all shards is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckProgress {
    /// The shard being checked.
    pub shard: u32,
    pub shard_count: u32,
    /// Nodes checked in all shards so far, and the total known so far (the
    /// shards not reached yet count nothing).
    pub nodes_checked: u64,
    pub nodes_total: u64,
}

/// Opens `shard`'s tree read only at the checkpoint `sb` names.
async fn open_at_checkpoint(
    device: DeviceId,
    sb: &Superblock,
    shard: u32,
    config: &TreeConfig,
) -> keel_tree::Result<Tree> {
    let (first_page, pages) = sb.layout.shard_region(shard);
    let state = &sb.shard_states[shard as usize];
    Tree::open(device, first_page, pages, state, config.clone()).await
}

/// Checks every shard's tree at the checkpoint `sb` names, one after the
/// other, reporting progress over all of them. Reads only.
pub async fn check_shards(
    device: DeviceId,
    sb: &Superblock,
    config: &TreeConfig,
    progress: &mut dyn FnMut(CheckProgress),
) -> Vec<ShardCheck> {
    let shard_count = sb.layout.shard_count;
    let mut checks = Vec::with_capacity(shard_count as usize);
    let mut nodes_done = 0u64;
    for shard in 0..shard_count {
        progress(CheckProgress { shard, shard_count, nodes_checked: nodes_done, nodes_total: nodes_done });
        let result = match open_at_checkpoint(device, sb, shard, config).await {
            Ok(tree) => {
                let mut on_progress = |p: FsckProgress| {
                    progress(CheckProgress {
                        shard,
                        shard_count,
                        nodes_checked: nodes_done + p.nodes_checked,
                        nodes_total: nodes_done + p.nodes_total,
                    });
                };
                tree.fsck(&mut on_progress).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("the tree does not open at its checkpoint: {e}")),
        };
        if let Ok(r) = &result {
            nodes_done += r.leaves + r.internal_nodes;
        }
        let first_page = sb.layout.shard_region(shard).0;
        let never_checkpointed = sb.shard_states[shard as usize].iter().all(|&b| b == 0);
        checks.push(ShardCheck { shard, first_page, never_checkpointed, result });
    }
    checks
}

/// Every block of every shard's checkpoint named by `sb`, by shard; block
/// addresses are relative to the shard's region. Reads only.
pub async fn block_maps(
    device: DeviceId,
    sb: &Superblock,
    config: &TreeConfig,
) -> Vec<(u32, keel_tree::Result<Vec<BlockInfo>>)> {
    let mut maps = Vec::with_capacity(sb.layout.shard_count as usize);
    for shard in 0..sb.layout.shard_count {
        let blocks = match open_at_checkpoint(device, sb, shard, config).await {
            Ok(tree) => tree.block_map().await,
            Err(e) => Err(e),
        };
        maps.push((shard, blocks));
    }
    maps
}

impl Engine {
    /// Runs fsck on every shard's durable checkpoint; one report per shard,
    /// by shard. Device errors and corruption are problems in the reports.
    pub async fn fsck(&self) -> Result<Vec<FsckReport>, EngineError> {
        let engine = self.clone();
        keel_reactor::call_on(0, move || async move {
            let lock = CHECKPOINT_LOCK.with(Rc::clone);
            let _no_checkpoint = lock.lock().await;
            let sb = engine.superblock();
            let checks = check_shards(engine.shared.device, &sb, &engine.shared.config.tree, &mut |_| {}).await;
            checks.into_iter().map(ShardCheck::into_report).collect()
        })
        .await
        .map_err(EngineError::from)
    }

    /// Every block of every shard's durable checkpoint, as `(shard, block)`;
    /// block addresses are relative to the shard's region
    /// (`Layout::shard_region`).
    pub async fn block_map(&self) -> Result<Vec<(u32, BlockInfo)>, EngineError> {
        let engine = self.clone();
        keel_reactor::call_on(0, move || async move {
            let lock = CHECKPOINT_LOCK.with(Rc::clone);
            let _no_checkpoint = lock.lock().await;
            let sb = engine.superblock();
            let mut all = Vec::new();
            for (shard, blocks) in block_maps(engine.shared.device, &sb, &engine.shared.config.tree).await {
                let blocks = blocks.map_err(|e| EngineError::from_tree(shard, e))?;
                all.extend(blocks.into_iter().map(|b| (shard, b)));
            }
            Ok(all)
        })
        .await?
    }
}
