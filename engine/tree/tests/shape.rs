//! The tree keeps its shape: it grows in height as keys arrive, splits and
//! merges nodes, and shrinks back when keys are deleted.

#![allow(clippy::unwrap_used)]

mod common;

use std::ops::Bound;

use common::{as_dyn, memory_device, run, DEV, REGION_FIRST_PAGE};
use keel_tree::{Admission, Message, Tree, TreeConfig, Value};

async fn put(tree: &Tree, lsn: &mut u64, key: &str) {
    tree.make_room(64, Admission::Write).await.unwrap();
    *lsn += 1;
    tree.apply(*lsn, key.as_bytes(), Message::Put(Value::Inline(vec![b'v'; 20]))).unwrap();
}

async fn delete(tree: &Tree, lsn: &mut u64, key: &str) {
    tree.make_room(64, Admission::Reclaim).await.unwrap();
    *lsn += 1;
    tree.apply(*lsn, key.as_bytes(), Message::Delete).unwrap();
}

#[test]
fn deleting_every_key_merges_the_tree_back_down() {
    let device = memory_device(64 << 20, 1);
    run(&as_dyn(&device), async {
        let tree = Tree::open(DEV, REGION_FIRST_PAGE, 8192, &[0u8; 96], TreeConfig::tiny_for_tests()).await.unwrap();
        let n = 3000u32;
        let mut lsn = 0;
        for i in 0..n {
            put(&tree, &mut lsn, &format!("key{i:06}")).await;
        }
        let grown = tree.stats();
        assert!(grown.height >= 4, "{grown:?}");
        for i in 0..n {
            delete(&tree, &mut lsn, &format!("key{i:06}")).await;
        }
        // Churn in the same key range pushes the deletes down to the leaves.
        for round in 0..6 {
            for i in (0..n).step_by(3) {
                let filler = format!("key{i:06}-{round}");
                put(&tree, &mut lsn, &filler).await;
                delete(&tree, &mut lsn, &filler).await;
            }
        }
        let all = tree.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).await.unwrap();
        assert!(all.is_empty(), "{} keys left", all.len());
        let shrunk = tree.stats();
        println!("grown: {grown:?}\nshrunk: {shrunk:?}");
        assert!(shrunk.counters.merges > 0, "{shrunk:?}");
        assert!(shrunk.height < grown.height, "{shrunk:?}");
    });
}
