//! Checking a volume that is not open, read only: both superblock copies,
//! every shard's tree at its durable checkpoint (the same check as
//! [`crate::Engine::fsck`], see `fsck.rs`), and the journal records past the
//! checkpoint. `keel fsck` adds a progress bar and prints the report;
//! `keel inspect` shows the tree shapes from it.
//!
//! Nothing here writes: trees are opened and walked, never checkpointed, and
//! the journal is scanned, never reopened for appending.

use keel_journal::{recover, JournalConfig, JournalIdentity, JournalRegion};
use keel_reactor::io::{self, DeviceId};

use crate::config::EngineConfig;
use crate::fsck::{check_shards, CheckProgress, ShardCheck};
use crate::record;
use crate::superblock::Superblock;
use crate::volume::{format_uuid, SlotContents, SuperblockPair};

/// The journal from the superblock's head to its end.
#[derive(Debug, Clone)]
pub struct JournalCheck {
    pub records: u64,
    pub next_lsn: u64,
    pub end_reason: String,
}

/// Everything a check found. `problems` holds the volume-level ones; each
/// shard's report holds its own.
#[derive(Debug, Clone)]
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

/// Checks the volume on `device` whose superblocks are `pair`, with the tree
/// and journal settings of `config` (the journal's fitted to the device as
/// `Engine::open` fits them). Runs on a reactor.
pub async fn check_volume(
    device: DeviceId,
    pair: &SuperblockPair,
    config: &EngineConfig,
    progress: &mut dyn FnMut(CheckProgress),
) -> VolumeCheck {
    let mut problems = superblock_problems(pair);
    let Some((_, sb)) = pair.newest() else {
        problems.push("no valid superblock: nothing else can be checked".into());
        return VolumeCheck { shards: Vec::new(), journal: None, problems };
    };
    let shards = check_shards(device, sb, &config.tree, progress).await;
    let journal_config = config.journal.fitted_to(&io::device_info(device));
    let journal = scan_journal(device, sb, &journal_config).await;
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
    VolumeCheck { shards, journal: Some(journal), problems }
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

/// Scans the journal as recovery would, and decodes every record.
async fn scan_journal(device: DeviceId, sb: &Superblock, config: &JournalConfig) -> Result<JournalCheck, String> {
    let layout = sb.layout;
    let region = JournalRegion { device, first_page: layout.journal_start_page, page_count: layout.journal_pages };
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
