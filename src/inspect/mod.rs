//! `keel inspect`: the device and the volume's format, read only.
//!
//! The output is a list of sections, each a table built from an
//! [`InspectContext`]. Later parts add theirs to [`SECTIONS`]: the tree its
//! shape, cache and space use; the journal its ring.

mod device;
mod superblocks;
mod table;

use keel_config::Config;
use keel_engine::volume::SuperblockPair;

use crate::cli::InspectArgs;
use crate::error::CliError;
use crate::storage::{self, Create, Storage};

pub use table::Table;

/// What every section may look at.
#[derive(Debug)]
pub struct InspectContext<'a> {
    #[allow(dead_code, reason = "for the sections to come (cache and node sizes)")]
    pub config: &'a Config,
    pub storage: &'a Storage,
    pub pair: SuperblockPair,
}

/// One section: `None` when it has nothing to show (no valid superblock).
pub type Section = fn(&InspectContext<'_>) -> Option<Table>;

/// The sections, in print order. Add new ones here (tree, journal, space).
pub const SECTIONS: &[Section] =
    &[|c| Some(device::section(c)), |c| Some(superblocks::section(c)), superblocks::shards];

pub fn run(args: &InspectArgs) -> Result<(), CliError> {
    let config = args.config.load()?;
    crate::logging::init(&config.log);
    let storage = storage::open(&config, Create::Never)?;
    let pair = crate::volume::read_superblocks(&storage)?;
    let context = InspectContext { config: &config, storage: &storage, pair };
    let tables: Vec<Table> = SECTIONS.iter().filter_map(|section| section(&context)).collect();
    let text: Vec<String> = tables.iter().map(Table::to_string).collect();
    print!("{}", text.join("\n"));
    if storage.is_memory {
        println!("\n(The memory backend starts empty every time: there is no volume to inspect.)");
    } else if context.pair.newest().is_none() {
        println!("\nNo valid superblock: this device holds no usable Keel volume.");
    }
    Ok(())
}
