//! fio at its best on the peer's file: a small sweep of block sizes and
//! depths, run once, so that the journal is also read against the best
//! sequential write fio gets from this file system, not only against fio at
//! the journal's own write size and depth.

use super::peer::{Fio, Shape};
use super::report::median_and_spread;

const WRITE_MIB: [usize; 3] = [1, 2, 4];
const DEPTHS: [usize; 3] = [4, 8, 16];

/// The sweep's largest buffers (for the hugepage reservation).
pub fn largest() -> Shape {
    Shape { write_bytes: WRITE_MIB[WRITE_MIB.len() - 1] << 20, writes_in_flight: DEPTHS[DEPTHS.len() - 1] }
}

/// Runs every shape once (plain, then durable), prints each and the best of
/// each kind against the median of `journal_mb_per_sec`.
pub fn run(fio: &Fio, journal_mb_per_sec: &[f64]) {
    let (mut best_plain, mut best_durable) = ((0.0, "".to_owned()), (0.0, "".to_owned()));
    for mib in WRITE_MIB {
        for depth in DEPTHS {
            let shape = Shape { write_bytes: mib << 20, writes_in_flight: depth };
            let name = format!("--bs={mib}M --iodepth={depth}");
            // One shape failing (another process took the hugepages it
            // needed) is reported and the sweep goes on.
            let result = match fio.seq_write_at(shape) {
                Ok(result) => result,
                Err(e) => {
                    println!("  fio sweep {name}: not measured: {e}");
                    continue;
                }
            };
            let (plain, durable) = (result.plain_bytes_per_sec / 1e6, result.durable_bytes_per_sec / 1e6);
            println!("  fio sweep {name}: plain {plain:.1} MB/s, durability-matched {durable:.1} MB/s");
            if plain > best_plain.0 {
                best_plain = (plain, name.clone());
            }
            if durable > best_durable.0 {
                best_durable = (durable, name);
            }
        }
    }
    if journal_mb_per_sec.is_empty() || best_plain.0 == 0.0 {
        return;
    }
    let (journal, _, _) = median_and_spread(journal_mb_per_sec.to_vec());
    for (kind, (best, name)) in [("plain", best_plain), ("durability-matched", best_durable)] {
        println!(
            "  fio best {kind} sequential write ({name}, one run): {best:.1} MB/s; journal median / best: {:.2}x",
            journal / best
        );
    }
}
