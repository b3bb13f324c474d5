//! `keel mkfs`: a fresh volume on the configured device.

use keel_engine::volume::format_uuid;

use crate::cli::MkfsArgs;
use crate::error::CliError;
use crate::format::human_bytes;
use crate::storage::{self, Create};
use crate::volume;

pub fn run(args: &MkfsArgs) -> Result<(), CliError> {
    let config = args.config.load()?;
    crate::logging::init(&config.log);
    if config.device.backend == keel_config::Backend::Memory {
        return Err(CliError::Usage(
            "the memory backend keeps nothing between runs, so there is nothing to format; \
             `keel serve` creates a volume in memory at every start"
                .into(),
        ));
    }
    let storage = storage::open(&config, if args.force { Create::Anew } else { Create::IfMissing })?;
    let layout = volume::layout_params(&config, args.shards, args.journal_size.map(|s| s.bytes()));
    let sb = volume::mkfs(&storage, layout, args.force)?;
    let page_bytes = keel_engine::layout::PAGE_BYTES as u64;
    println!("Created a Keel volume on {}", storage.location);
    println!("  uuid      {}", format_uuid(&sb.volume_uuid));
    println!("  capacity  {}", human_bytes(sb.layout.capacity_pages * page_bytes));
    println!("  journal   {}", human_bytes(sb.layout.journal_pages * page_bytes));
    println!("  shards    {} of {} each", sb.layout.shard_count, human_bytes(sb.layout.pages_per_shard * page_bytes));
    Ok(())
}
