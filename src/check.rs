//! Checking a volume, read only: both superblock copies, every shard's tree
//! at its durable checkpoint (indirection table and space map when the tree
//! opens, then every reachable node and out-of-line value, reachability and
//! allocation accounting), and the journal records past the checkpoint.
//! `keel fsck` prints all of it; `keel inspect` shows the tree shapes.
//!
//! Nothing here writes: trees are opened and walked, never checkpointed, and
//! the journal is scanned, never reopened for appending.

use indicatif::ProgressBar;
use keel_config::Config;
use keel_engine::record;
use keel_engine::superblock::Superblock;
use keel_engine::volume::{format_uuid, SlotContents, SuperblockPair};
use keel_journal::{recover, JournalConfig, JournalIdentity, JournalRegion};
use keel_reactor::block_on;
use keel_reactor::io::DeviceId;
use keel_tree::{FsckReport, Tree, TreeConfig};

use crate::error::CliError;
use crate::storage::Storage;

/// The volume's device is the runtime's first (and only) device.
const VOLUME_DEVICE: DeviceId = DeviceId(0);

/// One shard's tree: its region and what the walk found (or why the tree
/// could not be opened at its checkpoint).
#[derive(Debug)]
pub struct ShardCheck {
    pub shard: u32,
    pub first_page: u64,
    /// The checkpoint state is all zero: the shard was never checkpointed.
    pub never_checkpointed: bool,
    pub result: Result<FsckReport, String>,
}

/// The journal from the superblock's head to its end.
#[derive(Debug)]
pub struct JournalCheck {
    pub records: u64,
    pub next_lsn: u64,
    pub end_reason: String,
}

/// Everything a check found. `problems` holds the volume-level ones; each
/// shard's report holds its own.
#[derive(Debug)]
pub struct VolumeCheck {
    pub shards: Vec<ShardCheck>,
    pub journal: Option<Result<JournalCheck, String>>,
    pub problems: Vec<String>,
}

impl VolumeCheck {
    /// Every problem found, volume-level and per shard, counted once.
    pub fn problem_count(&self) -> u64 {
        let shards: u64 = self
            .shards
            .iter()
            .map(|s| match &s.result {
                Ok(r) => r.problems.len() as u64 + r.problems_unlisted,
                Err(_) => 1,
            })
            .sum();
        let journal = u64::from(matches!(self.journal, Some(Err(_))));
        self.problems.len() as u64 + shards + journal
    }
}

/// Checks the volume on `storage`. `bar` follows the nodes checked.
pub fn check_volume(
    storage: &Storage,
    config: &Config,
    pair: &SuperblockPair,
    bar: &ProgressBar,
) -> Result<VolumeCheck, CliError> {
    let mut problems = superblock_problems(pair);
    let Some((_, sb)) = pair.newest() else {
        problems.push("no valid superblock: nothing else can be checked".into());
        return Ok(VolumeCheck { shards: Vec::new(), journal: None, problems });
    };
    let sb = sb.clone();
    let engine = crate::commands::serve::engine_config(config, sb.layout.shard_count);
    let (tree_config, journal_config) = (engine.tree, engine.journal);
    let (walk_sb, walk_bar) = (sb.clone(), bar.clone());
    let shards = block_on(&storage.devices(), async move { check_shards(walk_sb, tree_config, walk_bar).await })?;
    // Scan with the limits Engine::open uses on this device.
    let journal_config = journal_config.fitted_to(storage.device.info());
    let scan_sb = sb;
    let journal = block_on(&storage.devices(), async move { scan_journal(&scan_sb, &journal_config).await })?;
    if let Ok(j) = &journal {
        for s in &shards {
            if let Ok(r) = &s.result {
                if r.lsn_applied >= j.next_lsn && r.lsn_applied > 0 {
                    problems.push(format!(
                        "shard {}: its checkpoint includes LSN {} but the journal ends before LSN {}",
                        s.shard, r.lsn_applied, j.next_lsn
                    ));
                }
            }
        }
    }
    Ok(VolumeCheck { shards, journal: Some(journal), problems })
}

/// A copy that fails its checksum or other checks is a problem; a blank copy
/// is not (a new volume has written only one).
fn superblock_problems(pair: &SuperblockPair) -> Vec<String> {
    let mut problems = Vec::new();
    for (page, slot) in pair.slots.iter().enumerate() {
        if let SlotContents::Invalid(e) = slot {
            problems.push(format!("superblock copy {page} (page {page}) is invalid: {e}"));
        }
    }
    if let [SlotContents::Valid(a), SlotContents::Valid(b)] = &pair.slots {
        if a.volume_uuid != b.volume_uuid {
            problems.push(format!(
                "the superblock copies name different volumes ({} and {})",
                format_uuid(&a.volume_uuid),
                format_uuid(&b.volume_uuid)
            ));
        }
        if a.layout != b.layout {
            problems.push("the superblock copies describe different layouts".into());
        }
    }
    problems
}

async fn check_shards(sb: Superblock, tree_config: TreeConfig, bar: ProgressBar) -> Vec<ShardCheck> {
    let mut checks = Vec::new();
    let mut nodes_done = 0u64;
    for shard in 0..sb.layout.shard_count {
        let (first_page, pages) = sb.layout.shard_region(shard);
        let state = sb.shard_states[shard as usize];
        bar.set_message(format!("shard {shard}/{}", sb.layout.shard_count));
        let result = match Tree::open(VOLUME_DEVICE, first_page, pages, &state, tree_config.clone()).await {
            Ok(tree) => {
                let mut on_progress = |p: keel_tree::FsckProgress| {
                    bar.set_length(nodes_done + p.nodes_total);
                    bar.set_position(nodes_done + p.nodes_checked);
                };
                tree.fsck(&mut on_progress).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("the tree does not open at its checkpoint: {e}")),
        };
        if let Ok(r) = &result {
            nodes_done += r.leaves + r.internal_nodes;
        }
        let never_checkpointed = state.iter().all(|&b| b == 0);
        checks.push(ShardCheck { shard, first_page, never_checkpointed, result });
    }
    checks
}

/// Scans the journal as recovery would, and decodes every record.
async fn scan_journal(sb: &Superblock, config: &JournalConfig) -> Result<JournalCheck, String> {
    let layout = sb.layout;
    let region = JournalRegion {
        device: VOLUME_DEVICE,
        first_page: layout.journal_start_page,
        page_count: layout.journal_pages,
    };
    let identity = JournalIdentity { volume_uuid: sb.volume_uuid, epoch: sb.journal_epoch };
    let mut undecodable: Option<String> = None;
    let outcome = recover(region, config, identity, sb.journal_head_lsn, sb.journal_head_offset, |lsn, payload| {
        if undecodable.is_none() {
            if let Err(e) = record::decode(payload, layout.shard_count) {
                undecodable = Some(format!("the record for LSN {lsn} passed its checksum but {e}"));
            }
        }
    })
    .await
    .map_err(|e| format!("journal: {e}"))?;
    if let Some(e) = undecodable {
        return Err(format!("journal: {e}"));
    }
    Ok(JournalCheck { records: outcome.records_replayed, next_lsn: outcome.next_lsn, end_reason: outcome.end_reason })
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
        let mut maps = Vec::new();
        for shard in 0..sb.layout.shard_count {
            let (first_page, pages) = sb.layout.shard_region(shard);
            let state = sb.shard_states[shard as usize];
            let blocks = match Tree::open(VOLUME_DEVICE, first_page, pages, &state, tree_config.clone()).await {
                Ok(tree) => tree.block_map().await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the tree does not open at its checkpoint: {e}")),
            };
            maps.push(ShardBlocks { shard, first_page, blocks });
        }
        maps
    })?;
    Ok(maps)
}
