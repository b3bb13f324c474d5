//! Checking every shard's durable checkpoint through the engine: the tree's
//! fsck (every checksum, key ranges, heights, page accounting) shard by shard,
//! and the block map of each shard for tools and fault tests.
//!
//! Both hold the checkpoint lock (on reactor 0) while they walk, because the
//! tree's walk reads the durable checkpoint and a checkpoint completing in
//! the middle would let its space be reused under the walk.

use std::rc::Rc;

use keel_tree::{BlockInfo, FsckReport};

use crate::engine::{Engine, CHECKPOINT_LOCK};
use crate::error::EngineError;

impl Engine {
    /// Runs fsck on every shard's durable checkpoint; one report per shard,
    /// by shard. Device errors and corruption are problems in the reports.
    pub async fn fsck(&self) -> Result<Vec<FsckReport>, EngineError> {
        let engine = self.clone();
        keel_reactor::call_on(0, move || async move {
            let lock = CHECKPOINT_LOCK.with(Rc::clone);
            let _no_checkpoint = lock.lock().await;
            let mut reports = Vec::with_capacity(engine.shared.shard_count as usize);
            for id in 0..engine.shared.shard_count {
                let report = engine
                    .on_shard(id, |shard| async move {
                        shard.tree.fsck(&mut |_| {}).await.map_err(|e| EngineError::from_tree(shard.id, e))
                    })
                    .await??;
                reports.push(report);
            }
            Ok(reports)
        })
        .await?
    }

    /// Every block of every shard's durable checkpoint, as `(shard, block)`;
    /// block addresses are relative to the shard's region
    /// (`Layout::shard_region`).
    pub async fn block_map(&self) -> Result<Vec<(u32, BlockInfo)>, EngineError> {
        let engine = self.clone();
        keel_reactor::call_on(0, move || async move {
            let lock = CHECKPOINT_LOCK.with(Rc::clone);
            let _no_checkpoint = lock.lock().await;
            let mut all = Vec::new();
            for id in 0..engine.shared.shard_count {
                let blocks = engine
                    .on_shard(id, |shard| async move {
                        shard.tree.block_map().await.map_err(|e| EngineError::from_tree(shard.id, e))
                    })
                    .await??;
                all.extend(blocks.into_iter().map(|b| (id, b)));
            }
            Ok(all)
        })
        .await?
    }
}
