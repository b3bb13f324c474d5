//! `keel fsck` and `keel inspect` check a volume that is not open through
//! the engine's one check (`keel_engine::check`, the same per-shard walk as
//! `Engine::fsck`), on a reactor over the volume's device, with a progress
//! bar. Nothing here writes.

use indicatif::ProgressBar;
use keel_config::Config;
use keel_engine::check::{self, VolumeCheck};
use keel_engine::fsck::{self, CheckProgress};
use keel_engine::superblock::Superblock;
use keel_engine::volume::SuperblockPair;
use keel_reactor::block_on;
use keel_reactor::io::DeviceId;

use crate::error::CliError;
use crate::storage::Storage;

/// The volume's device is the runtime's first (and only) device.
const VOLUME_DEVICE: DeviceId = DeviceId(0);

/// Checks the volume on `storage`. `bar` follows the nodes checked.
pub fn check_volume(
    storage: &Storage,
    config: &Config,
    pair: &SuperblockPair,
    bar: &ProgressBar,
) -> Result<VolumeCheck, CliError> {
    let shard_count = pair.newest().map_or(1, |(_, sb)| sb.layout.shard_count);
    let engine = crate::commands::serve::engine_config(config, shard_count);
    let (pair, bar) = (pair.clone(), bar.clone());
    let found = block_on(&storage.devices(), async move {
        let mut on_progress = |p: CheckProgress| {
            bar.set_message(format!("shard {}/{}", p.shard, p.shard_count));
            bar.set_length(p.nodes_total);
            bar.set_position(p.nodes_checked);
        };
        check::check_volume(VOLUME_DEVICE, &pair, &engine, &mut on_progress).await
    })?;
    Ok(found)
}

/// Every block of every shard's durable checkpoint, with absolute pages.
#[derive(Debug)]
pub struct ShardBlocks {
    pub shard: u32,
    pub first_page: u64,
    pub blocks: Result<Vec<keel_tree::BlockInfo>, String>,
}

/// Lists the blocks of every shard's durable checkpoint (for `keel inspect --blocks`).
pub fn block_maps(storage: &Storage, config: &Config, sb: &Superblock) -> Result<Vec<ShardBlocks>, CliError> {
    let tree_config = crate::commands::serve::engine_config(config, sb.layout.shard_count).tree;
    let sb = sb.clone();
    let maps = block_on(&storage.devices(), async move {
        let maps = fsck::block_maps(VOLUME_DEVICE, &sb, &tree_config).await;
        maps.into_iter()
            .map(|(shard, blocks)| ShardBlocks {
                shard,
                first_page: sb.layout.shard_region(shard).0,
                blocks: blocks.map_err(|e| format!("the tree does not open at its checkpoint or a block fails: {e}")),
            })
            .collect()
    })?;
    Ok(maps)
}
