//! Dirty nodes evicted together, written together: the nodes one eviction
//! writes get places from the same next-fit cursor, so they usually sit
//! side by side; each run of adjacent places goes to the device as one
//! write instead of one write per node.
//!
//! Why: a random fill evicts ~38,000 leaves per million inserts, and each
//! write was its own request through io_uring and the file system's direct
//! I/O path (BENCHMARKS.md, "Tree against RocksDB", 2026-12-04 evening).
//! The bytes on the device are the same either way: every node starts on
//! its own page and is padded with zeros to whole pages.

use std::ops::Range;

use crate::limits::{pages_for, PAGE_BYTES};

/// The most bytes one run carries: bounds the DMA memory and the copy one
/// write holds, while cutting the request count by an order of magnitude.
pub(crate) const RUN_BYTES_MAX: usize = 512 << 10;

/// Splits nodes (`(first page, length in bytes)`, in allocation order) into
/// runs whose pages follow each other on the device, each at most
/// [`RUN_BYTES_MAX`] long (a single larger node is a run of its own).
pub(crate) fn contiguous_runs(nodes: &[(u64, usize)]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=nodes.len() {
        let joins = i < nodes.len() && {
            let (prev_page, prev_len) = nodes[i - 1];
            // Adjacent first: then the run's pages only grow from its start.
            prev_page + pages_for(prev_len).max(1) == nodes[i].0
                && (nodes[i].0 - nodes[start].0) as usize * PAGE_BYTES + nodes[i].1 <= RUN_BYTES_MAX
        };
        if !joins {
            runs.push(start..i);
            start = i;
        }
    }
    runs
}

/// The bytes of a run: each node padded with zeros to whole pages (the last
/// one is padded by the write itself).
pub(crate) fn run_bytes<'a>(nodes: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let count = nodes.len();
    let mut out = Vec::new();
    for (i, bytes) in nodes.enumerate() {
        out.extend_from_slice(bytes);
        if i + 1 < count {
            out.resize(out.len().div_ceil(PAGE_BYTES) * PAGE_BYTES, 0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_places_make_one_run_and_gaps_or_size_cut_it() {
        let p = PAGE_BYTES;
        // 0..4, 4..8 adjacent; 9 leaves a gap; 10 follows 9.
        let nodes = [(0, 4 * p - 10), (4, 3 * p + 1), (9, p), (10, 1)];
        assert_eq!(contiguous_runs(&nodes), vec![0..2, 2..4]);
        assert_eq!(contiguous_runs(&[]), Vec::<Range<usize>>::new());
        let many: Vec<(u64, usize)> = (0..200).map(|i| (i * 4, 4 * p)).collect();
        let runs = contiguous_runs(&many);
        assert!(runs.iter().all(|r| r.len() * 4 * p <= RUN_BYTES_MAX));
        assert_eq!(runs.iter().map(Range::len).sum::<usize>(), 200);
        assert_eq!(runs.len(), 200usize.div_ceil(RUN_BYTES_MAX / (4 * p)));
    }

    #[test]
    fn each_node_of_a_run_starts_on_its_own_page() {
        let (a, b) = (vec![1u8; PAGE_BYTES + 5], vec![2u8; 7]);
        let out = run_bytes([a.as_slice(), b.as_slice()].into_iter());
        assert_eq!(out.len(), 2 * PAGE_BYTES + 7);
        assert_eq!(&out[..PAGE_BYTES + 5], a.as_slice());
        assert!(out[PAGE_BYTES + 5..2 * PAGE_BYTES].iter().all(|&x| x == 0));
        assert_eq!(&out[2 * PAGE_BYTES..], b.as_slice());
    }
}
