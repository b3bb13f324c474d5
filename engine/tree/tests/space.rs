//! A full region is a clean `NoSpace`: nothing acknowledged is lost, nothing
//! is corrupted, checkpoints still complete, deletes still work, and the
//! space they free comes back once a checkpoint is durable.

#![allow(clippy::unwrap_used)]

mod common;

use std::ops::Bound;

use common::{as_dyn, memory_device, run, Oracle, DEV, REGION_FIRST_PAGE};
use keel_reactor::io;
use keel_tree::{Admission, Message, Tree, TreeConfig, TreeError, Value};

const REGION_PAGES: u64 = 700;

async fn checkpoint(tree: &Tree, lsn: u64) -> [u8; 96] {
    let state = tree.write_checkpoint(tree.freeze(lsn)).await.unwrap();
    io::flush(DEV).await.unwrap();
    tree.checkpoint_durable();
    state
}

/// Writes until the region refuses; returns how many writes were accepted.
async fn fill(tree: &Tree, oracle: &mut Oracle, lsn: &mut u64, prefix: &str) -> u32 {
    for i in 0..100_000u32 {
        let k = format!("{prefix}{i:06}").into_bytes();
        let (m, bytes) = if i % 4 == 0 {
            let v = vec![(i % 251) as u8; 3000];
            match tree.write_extent(&v).await {
                Ok(e) => (Message::Put(Value::Extent(e)), Some(v)),
                Err(TreeError::NoSpace { .. }) => return i,
                Err(e) => panic!("{e}"),
            }
        } else {
            (Message::Put(Value::Inline(vec![b'v'; 60])), None)
        };
        match tree.make_room(k.len() + 80, Admission::Write).await {
            Ok(()) => {}
            Err(TreeError::NoSpace { .. }) => {
                if let Message::Put(Value::Extent(e)) = m {
                    tree.forget_extent(e);
                }
                return i;
            }
            Err(e) => panic!("{e}"),
        }
        *lsn += 1;
        tree.apply(*lsn, &k, m.clone()).unwrap();
        oracle.apply(&k, &m, bytes.as_deref());
        if i % 200 == 199 {
            checkpoint(tree, *lsn).await;
        }
    }
    panic!("the region never filled");
}

async fn contents(tree: &Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    tree.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).await.unwrap()
}

#[test]
fn a_full_region_refuses_writes_cleanly_and_deletes_win_the_space_back() {
    let device = memory_device(64 << 20, 3);
    let devices = as_dyn(&device);
    let (state, oracle) = run(&devices, async {
        let tree =
            Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &[0u8; 96], TreeConfig::tiny_for_tests()).await.unwrap();
        let mut oracle = Oracle::default();
        let mut lsn = 0;
        let accepted = fill(&tree, &mut oracle, &mut lsn, "a").await;
        assert!(accepted > 100, "{accepted}");
        // Full: the acknowledged writes are all there, and a checkpoint fits.
        assert_eq!(contents(&tree).await, oracle.map.clone().into_iter().collect::<Vec<_>>());
        checkpoint(&tree, lsn).await;
        let full = tree.stats();
        // Deletes are still admitted.
        let keys: Vec<Vec<u8>> = oracle.map.keys().cloned().collect();
        for k in keys.iter().step_by(2) {
            tree.make_room(k.len() + 16, Admission::Reclaim).await.unwrap();
            lsn += 1;
            tree.apply(lsn, k, Message::Delete).unwrap();
            oracle.apply(k, &Message::Delete, None);
        }
        tree.make_room(8, Admission::Reclaim).await.unwrap();
        lsn += 1;
        tree.apply_delete_range(lsn, b"a", Some(b"a000400")).unwrap();
        oracle.delete_range(b"a", b"a000400");
        // Deletes free space once they reach the leaves; when space is short
        // the engine (or make_room itself, before NoSpace) pushes them down.
        for _ in 0..6 {
            tree.reclaim().await.unwrap();
            checkpoint(&tree, lsn).await;
            checkpoint(&tree, lsn).await;
        }
        let freed = tree.stats();
        assert!(freed.pages_free > full.pages_free, "deletes freed no space: {full:?} {freed:?}");
        // The space is usable again.
        let again = fill(&tree, &mut oracle, &mut lsn, "b").await;
        assert!(again > 20, "{again}");
        assert_eq!(contents(&tree).await, oracle.map.clone().into_iter().collect::<Vec<_>>());
        let state = checkpoint(&tree, lsn).await;
        (state, oracle)
    });
    run(&devices, async move {
        let tree =
            Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &state, TreeConfig::tiny_for_tests()).await.unwrap();
        assert_eq!(contents(&tree).await, oracle.map.into_iter().collect::<Vec<_>>());
        let report = tree.fsck(&mut |_| {}).await.unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
    });
}
