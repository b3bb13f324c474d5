//! The active expiry sweep. Reads already treat expired keys as absent; the
//! sweep reclaims their records. Each reactor sweeps the shards it hosts,
//! through each shard's expiry index (ordered by expiry time), removing at
//! most `expiry_sweep_keys_max` keys per shard per tick so a burst of
//! expiries never stalls the reactor.

use std::ops::Bound;
use std::sync::Arc;

use keel_engine::route;
use keel_reactor::time;

use crate::db::{now_ms, Db, KeyTx, Res};
use crate::keys;
use crate::server::{Shared, TaskGuard};
use crate::stats::Stats;

pub(crate) async fn sweep_loop(shared: Arc<Shared>, _guard: TaskGuard) {
    let reactor = keel_reactor::reactor_id();
    let reactors = keel_reactor::reactor_count();
    let shards: Vec<u32> =
        (0..shared.db.engine.shard_count()).filter(|&s| route::reactor_of(s, reactors) == reactor).collect();
    while !shared.stopping() && !keel_reactor::stopping() {
        time::sleep(shared.config.expiry_sweep_interval).await;
        for &shard in &shards {
            match sweep_shard(&shared.db, shard, shared.config.expiry_sweep_keys_max, now_ms()).await {
                Ok(n) => Stats::add(&shared.stats.expired_keys, n),
                Err(e) => tracing::warn!(shard, error = ?e, "expiry sweep failed"),
            }
        }
    }
}

/// Removes up to `keys_max` keys of `shard` whose expiry is at or before
/// `now_ms`. Returns how many keys it removed.
pub async fn sweep_shard(db: &Db, shard: u32, keys_max: usize, now_ms: u64) -> Res<u64> {
    let prefix = db.anchors.expiry_prefix(shard);
    let mut end = prefix.clone();
    end.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
    let due = db.engine.scan(Bound::Included(prefix), Bound::Excluded(end), keys_max).await?;
    let mut removed = 0;
    for (index_key, _) in due {
        let Some((expire_at_ms, key)) = keys::parse_expiry_key(&index_key) else {
            tracing::error!(shard, "undecodable expiry index entry");
            continue;
        };
        let mut tx = KeyTx::begin(db, &[key], now_ms).await?;
        match tx.stored_expire_at_ms(key) {
            // `begin` staged the expired key's removal; commit does the rest.
            Some(at) if at == expire_at_ms => removed += 1,
            // The index entry outlived its key's expiry: drop it alone.
            _ => tx.delete_raw(&index_key)?,
        }
        tx.commit().await?;
    }
    Ok(removed)
}
