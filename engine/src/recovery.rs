//! Recovery: replay the journal into the trees the superblock names.
//!
//! 1. The journal is scanned from the superblock's head; every valid record
//!    is decoded (records are held in memory: the checkpointer keeps the live
//!    journal to a fraction of the ring, see `checkpoint_journal_percent`).
//! 2. Out-of-line values named by records that will be replayed are checked
//!    against their checksums. Such a record was acknowledged only after a
//!    flush that followed its value's write; so a value that did not survive
//!    means the record was never acknowledged, and the log ends before it —
//!    unless a later record vouches that it was durable, which is corruption.
//! 3. Every shard adopts the extents its records name, then applies, in LSN
//!    order, the ops of every record above its tree's checkpointed LSN.

use std::collections::BTreeMap;

use keel_journal::{recover, JournalConfig, JournalIdentity, JournalRegion, RecoveryOutcome};
use keel_reactor::io::{self, DeviceId};
use keel_tree::ExtentRef;

use crate::engine::Lsn;
use crate::error::EngineError;
use crate::layout::{Layout, PAGE_BYTES};
use crate::record::{self, Op};
use crate::shard;

/// The decoded records to replay, and where the journal goes on.
pub(crate) struct Replay {
    pub records: Vec<(Lsn, Vec<Op>)>,
    pub outcome: RecoveryOutcome,
}

/// Scans and decodes the journal (step 1). Runs on a reactor.
pub(crate) async fn read_journal(
    region: JournalRegion,
    config: &JournalConfig,
    identity: JournalIdentity,
    head: (Lsn, u64),
    shard_count: u32,
) -> Result<Replay, EngineError> {
    let mut raw: Vec<(Lsn, Vec<u8>)> = Vec::new();
    let outcome =
        recover(region, config, identity, head.0, head.1, |lsn, payload| raw.push((lsn, payload.to_vec()))).await?;
    let mut records = Vec::with_capacity(raw.len());
    for (lsn, payload) in raw {
        let ops = record::decode(&payload, shard_count)
            .map_err(|e| EngineError::Recovery(format!("the record for LSN {lsn} passed its checksum but {e}")))?;
        records.push((lsn, ops));
    }
    Ok(Replay { records, outcome })
}

/// Reads an extent and checks its checksum (step 2).
async fn extent_intact(device: DeviceId, layout: &Layout, shard: u32, e: ExtentRef) -> Result<bool, EngineError> {
    let (first_page, pages) = layout.shard_region(shard);
    if e.address.checked_add(e.pages()).is_none_or(|end| end > pages) {
        return Ok(false);
    }
    let len_bytes = e.pages() as usize * PAGE_BYTES;
    let mut data = Vec::with_capacity(len_bytes);
    let block_bytes = u64::from(io::device_info(device).block_size_bytes);
    let chunk_bytes_max = keel_drivers::dma::REGION_BYTES.min(io::device_info(device).max_transfer_bytes as usize);
    let mut done = 0usize;
    while done < len_bytes {
        let n = (len_bytes - done).min(chunk_bytes_max / PAGE_BYTES * PAGE_BYTES);
        let buf = io::alloc_buf(device, n).await.map_err(|err| EngineError::Recovery(err.to_string()))?;
        let byte = (first_page + e.address) * PAGE_BYTES as u64 + done as u64;
        let (buf, result) = io::read(device, byte / block_bytes, buf).await;
        result?;
        data.extend_from_slice(&buf);
        done += n;
    }
    Ok(ExtentRef::checksum(e.generation, &data[..e.length as usize]) == e.crc32c)
}

/// Step 2: drops the records from the first one whose out-of-line value did
/// not survive, after checking no later record vouches for it.
pub(crate) async fn cut_at_lost_data(
    device: DeviceId,
    layout: &Layout,
    mut records: Vec<(Lsn, Vec<Op>)>,
    lsn_vouched: Lsn,
    lsn_applied: &[u64],
) -> Result<Vec<(Lsn, Vec<Op>)>, EngineError> {
    let mut cut = None;
    'records: for (index, (lsn, ops)) in records.iter().enumerate() {
        for op in ops {
            let Some(e) = op.extent() else { continue };
            if *lsn <= lsn_applied[op.shard() as usize] {
                continue;
            }
            if !extent_intact(device, layout, op.shard(), e).await? {
                cut = Some((index, *lsn));
                break 'records;
            }
        }
    }
    let Some((index, lsn)) = cut else { return Ok(records) };
    if lsn <= lsn_vouched {
        return Err(EngineError::Recovery(format!(
            "the out-of-line value named by the record for LSN {lsn} is damaged, yet a record vouches that every LSN up to {lsn_vouched} was acknowledged durable"
        )));
    }
    tracing::warn!(
        lsn,
        dropped = records.len() - index,
        "the log ends before a record whose out-of-line value was never made durable"
    );
    records.truncate(index);
    Ok(records)
}

/// Step 3 for the shards of the calling reactor.
pub(crate) async fn replay_local(
    engine_uid: u64,
    shards: Vec<u32>,
    records: std::sync::Arc<Vec<(Lsn, Vec<Op>)>>,
) -> Result<u64, EngineError> {
    let mut applied = 0u64;
    for id in shards {
        let shard = shard::local(engine_uid, id).expect("shard registered before replay");
        let from = shard.tree.lsn_applied();
        let mine: BTreeMap<Lsn, Vec<Op>> = records
            .iter()
            .filter(|(lsn, _)| *lsn > from)
            .map(|(lsn, ops)| (*lsn, ops.iter().filter(|op| op.shard() == id).cloned().collect::<Vec<_>>()))
            .filter(|(_, ops)| !ops.is_empty())
            .collect();
        for op in mine.values().flatten() {
            if let Some(e) = op.extent() {
                shard.tree.adopt_extent(e).map_err(|err| EngineError::from_tree(id, err))?;
            }
        }
        for (lsn, ops) in &mine {
            shard.make_room(ops).await?;
            shard.apply_ops(*lsn, ops);
            applied += 1;
        }
    }
    Ok(applied)
}
