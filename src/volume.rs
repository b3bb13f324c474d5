//! The volume operations the commands need, run on a reactor: on one made on
//! the calling thread before the runtime starts (`block_on`), or on reactor 0
//! of the running runtime.

use keel_config::Config;
use keel_engine::layout::LayoutParams;
use keel_engine::superblock::Superblock;
use keel_engine::volume::{self, MkfsParams, SuperblockPair, VolumeError};
use keel_reactor::block_on;
use keel_reactor::io::DeviceId;

use crate::error::CliError;
use crate::progress;
use crate::storage::Storage;

/// The volume's device is the runtime's first (and only) device.
const VOLUME_DEVICE: DeviceId = DeviceId(0);

/// Reads both superblock copies; writes nothing.
pub fn read_superblocks(storage: &Storage) -> Result<SuperblockPair, CliError> {
    Ok(block_on(&storage.devices(), volume::read_superblocks(VOLUME_DEVICE))??)
}

/// The layout a new volume gets from the configuration and command line.
pub fn layout_params(config: &Config, shards: Option<u32>, journal_bytes: Option<u64>) -> LayoutParams {
    LayoutParams {
        shard_count: shards.unwrap_or_else(|| config.engine.effective_shards(config.reactors.effective_count())),
        journal_bytes: journal_bytes.or(config.engine.journal_size.map(|s| s.bytes())),
    }
}

/// Creates a volume, with a progress bar over the journal zeroing.
pub fn mkfs(storage: &Storage, layout: LayoutParams, force: bool) -> Result<Superblock, CliError> {
    let params = MkfsParams { layout, force, zero_journal: !storage.is_memory };
    let bar = progress::bytes(0, "zeroing the journal");
    let on_progress = {
        let bar = bar.clone();
        move |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let result = block_on(&storage.devices(), async move { volume::mkfs(VOLUME_DEVICE, &params, on_progress).await });
    bar.finish_and_clear();
    Ok(result??)
}

/// The volume `serve` runs on, and whether it was just created.
#[derive(Debug)]
pub struct Opened {
    pub superblock: Superblock,
    pub created: bool,
}

/// Opens the volume; a blank device gets one first (and the user is told).
/// A device holding something else is refused, never overwritten.
pub fn open_or_create(storage: &Storage, config: &Config) -> Result<Opened, CliError> {
    let pair = read_superblocks(storage)?;
    let created = pair.is_blank();
    if created {
        let layout = layout_params(config, None, None);
        println!(
            "The device is blank: creating a Keel volume ({} shard{}).",
            layout.shard_count,
            if layout.shard_count == 1 { "" } else { "s" }
        );
        mkfs(storage, layout, false)?;
    } else if !pair.has_keel_magic() {
        return Err(VolumeError::Foreign { device: storage.device.info().name.clone() }.into());
    }
    // Read only: the engine recovers from this superblock and its first
    // checkpoint writes the next generation.
    let superblock = block_on(&storage.devices(), volume::read_current(VOLUME_DEVICE))??;
    if let Some(shards) = config.engine.shards {
        if shards != superblock.layout.shard_count {
            tracing::warn!(
                configured = shards,
                volume = superblock.layout.shard_count,
                "engine.shards differs from the volume's shard count, which was fixed at mkfs; using the volume's"
            );
        }
    }
    Ok(Opened { superblock, created })
}
