//! The memory store's clone shares chunks until one side writes, and is
//! nevertheless an independent copy.

use keel_drivers::memory::MemoryStore;

fn byte_at(store: &MemoryStore, offset: u64) -> u8 {
    let mut out = [0u8; 1];
    store.read(offset, &mut out);
    out[0]
}

#[test]
fn a_deep_clone_is_independent_in_both_directions() {
    let base = MemoryStore::new();
    base.write(0, &[1; 4096]);
    base.write(1 << 20, &[2; 4096]);
    let copy = base.deep_clone();
    assert_eq!((byte_at(&copy, 0), byte_at(&copy, 1 << 20)), (1, 2));

    copy.write(10, &[9]);
    base.write(20, &[8]);
    assert_eq!((byte_at(&base, 10), byte_at(&copy, 10)), (1, 9), "the copy's write stays in the copy");
    assert_eq!((byte_at(&base, 20), byte_at(&copy, 20)), (8, 1), "the base's write stays in the base");
    assert_eq!(byte_at(&copy, (1 << 20) + 5), 2, "untouched chunks still read through");
    assert_eq!(byte_at(&copy, 5 << 20), 0, "unwritten space reads as zeros");
}
