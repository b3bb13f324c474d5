//! `keel inspect`: the device, the volume's format and its trees, read only.
//!
//! The output is a list of sections, each a table built from an
//! [`InspectContext`]. The tree sections walk every shard's durable
//! checkpoint (as `keel fsck` does) for its shape, space and cache use.

mod device;
mod superblocks;
mod table;
mod trees;

use keel_config::Config;
use keel_engine::volume::SuperblockPair;

use keel_engine::check::VolumeCheck;

use crate::check::{self, ShardBlocks};
use crate::cli::InspectArgs;
use crate::error::CliError;
use crate::progress;
use crate::storage::{self, Create, Storage};

pub use table::Table;

/// What every section may look at.
#[derive(Debug)]
pub struct InspectContext<'a> {
    pub config: &'a Config,
    pub storage: &'a Storage,
    pub pair: SuperblockPair,
    /// The walk of every shard's tree (`None` without a valid superblock).
    pub check: Option<VolumeCheck>,
    /// Every block, with `--blocks`.
    pub blocks: Option<Vec<ShardBlocks>>,
}

impl InspectContext<'_> {
    pub fn shard_count(&self) -> u32 {
        self.pair.newest().map_or(1, |(_, sb)| sb.layout.shard_count)
    }
}

/// One section: `None` when it has nothing to show (no valid superblock).
pub type Section = fn(&InspectContext<'_>) -> Option<Table>;

/// The sections, in print order. Add new ones here (journal).
pub const SECTIONS: &[Section] = &[
    |c| Some(device::section(c)),
    |c| Some(superblocks::section(c)),
    superblocks::shards,
    trees::shape,
    trees::space,
    trees::blocks,
];

pub fn run(args: &InspectArgs) -> Result<(), CliError> {
    let config = args.config.load()?;
    crate::logging::init(&config.log);
    let storage = storage::open(&config, Create::Never)?;
    let pair = crate::volume::read_superblocks(&storage)?;
    let (check, blocks) = match pair.newest() {
        Some((_, sb)) if !storage.is_memory => {
            let bar = progress::count(0, "reading the trees");
            let check = check::check_volume(&storage, &config, &pair, &bar);
            bar.finish_and_clear();
            let blocks = if args.blocks { Some(check::block_maps(&storage, &config, sb)?) } else { None };
            (Some(check?), blocks)
        }
        _ => (None, None),
    };
    let context = InspectContext { config: &config, storage: &storage, pair, check, blocks };
    let tables: Vec<Table> = SECTIONS.iter().filter_map(|section| section(&context)).collect();
    let text: Vec<String> = tables.iter().map(Table::to_string).collect();
    print!("{}", text.join("\n"));
    if storage.is_memory {
        println!("\n(The memory backend starts empty every time: there is no volume to inspect.)");
    } else if context.pair.newest().is_none() {
        println!("\nNo valid superblock: this device holds no usable Keel volume.");
    } else if let Some(problems) = context.check.as_ref().map(VolumeCheck::problem_count).filter(|&n| n > 0) {
        println!("\nThe walk met {problems} problem(s): run `keel fsck` for the list.");
    }
    Ok(())
}
