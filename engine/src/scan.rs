//! Ordered range scans across shards.
//!
//! Keys are spread over the shards by hash, so the first `limit` keys of a
//! range come from every shard, each holding about `limit / shards` of them.
//! A scan keeps one cursor per shard and merges them: each cursor fetches a
//! batch sized for its expected share (with slack for the spread of the
//! hash), and only a cursor whose batch ran out while it may hold more is
//! asked again, starting after its last key. Asking every shard for the
//! whole `limit` instead reads `shards` times the leaves a scan needs (that
//! made YCSB-E scans cost ~80 point reads each).

use std::collections::VecDeque;
use std::ops::Bound;

use crate::engine::{as_ref_bound, Engine};
use crate::error::EngineError;

type Entry = (Vec<u8>, Vec<u8>);

/// One shard's position in a scan.
struct Cursor {
    shard: u32,
    /// Fetched and not yet merged, in key order.
    batch: VecDeque<Entry>,
    /// Where the next fetch starts.
    start: Bound<Vec<u8>>,
    /// The shard has nothing more in the range.
    done: bool,
}

/// How many entries to ask one of `shards` cursors for when `wanted` more
/// entries are needed overall: the cursor's expected share plus a quarter
/// and a few, so that a second round trip is rare.
pub(crate) fn batch_entries(wanted: usize, shards: usize) -> usize {
    if shards <= 1 {
        return wanted;
    }
    let share = wanted.div_ceil(shards);
    share.saturating_add(share / 4).saturating_add(4).min(wanted)
}

impl Engine {
    /// Up to `limit` entries with keys in `(start, end)`, in key order across
    /// all shards. Each shard is read at its own moment: a scan is not a
    /// snapshot across shards.
    pub async fn scan(
        &self,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<Entry>, EngineError> {
        let limit = limit.min(self.limits().scan_entries_max);
        let shards = self.shards_for_range(&start, &end);
        let mut cursors: Vec<Cursor> = shards
            .into_iter()
            .map(|shard| Cursor { shard, batch: VecDeque::new(), start: start.clone(), done: false })
            .collect();
        let mut out: Vec<Entry> = Vec::new();
        while out.len() < limit {
            self.refill(&mut cursors, &end, limit - out.len()).await?;
            // Every cursor that may hold more has a non-empty batch, so the
            // smallest head is the next key of the whole range.
            let next = cursors
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.batch.front().map(|(k, _)| (i, k)))
                .min_by(|a, b| a.1.cmp(b.1))
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            out.extend(cursors[i].batch.pop_front());
        }
        Ok(out)
    }

    /// Fetches the next batch of every cursor that ran out and may hold more,
    /// all shards at once.
    async fn refill(&self, cursors: &mut [Cursor], end: &Bound<Vec<u8>>, wanted: usize) -> Result<(), EngineError> {
        let active = cursors.iter().filter(|c| !c.done).count();
        let asked = batch_entries(wanted, active);
        let mut handles = Vec::new();
        for (i, c) in cursors.iter().enumerate() {
            if c.done || !c.batch.is_empty() {
                continue;
            }
            let engine = self.clone();
            let (shard, start, end) = (c.shard, c.start.clone(), end.clone());
            handles.push((
                i,
                keel_reactor::spawn(async move {
                    engine
                        .on_shard(shard, move |s| async move {
                            let scanned = s.tree.scan(as_ref_bound(&start), as_ref_bound(&end), asked).await;
                            scanned.map_err(|e| EngineError::from_tree(s.id, e))
                        })
                        .await
                }),
            ));
        }
        for (i, handle) in handles {
            let entries = handle.await??;
            let c = &mut cursors[i];
            c.done = entries.len() < asked;
            if let Some((last, _)) = entries.last() {
                c.start = Bound::Excluded(last.clone());
            }
            c.batch = entries.into();
        }
        Ok(())
    }

    /// The shards a range may touch: one when the range lies inside one
    /// prefix-routed identifier, else all.
    pub(crate) fn shards_for_range(&self, start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> Vec<u32> {
        let single = match start {
            Bound::Included(s) | Bound::Excluded(s) => {
                crate::route::single_shard_of_range(s, as_ref_bound(end), self.shared.shard_count)
            }
            Bound::Unbounded => None,
        };
        match single {
            Some(id) => vec![id],
            None => (0..self.shared.shard_count).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::batch_entries;

    #[test]
    fn batches_cover_a_share_with_slack_and_never_exceed_the_need() {
        assert_eq!(batch_entries(100, 1), 100);
        assert_eq!(batch_entries(100, 8), 13 + 3 + 4);
        assert_eq!(batch_entries(3, 8), 3);
        assert_eq!(batch_entries(1, 8), 1);
        assert!(batch_entries(usize::MAX, 2) < usize::MAX);
        assert!(batch_entries(100_000, 8) < 100_000 / 4);
    }
}
