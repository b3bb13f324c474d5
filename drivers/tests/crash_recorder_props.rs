//! Properties of the crash recorder over random scripts on two queue pairs:
//! at every crash point, the images agree with a brute-force reading of the
//! model, are rebuilt identically from their ids, and keep durable writes.

// In a test, a failed unwrap is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use keel_drivers::test_devices::{CrashLog, CrashPoint, CrashRecorder};
use proptest::prelude::*;
use support::{filled, fills, memory, Driver};

const SECTORS: u64 = 8;

#[derive(Debug, Clone)]
enum Step {
    Write { queue: usize, sector: u64, sectors: usize, fua: bool },
    Flush { queue: usize },
    Poll { queue: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..2usize, 0..SECTORS - 1, 1..3usize, prop::bool::weighted(0.2))
            .prop_map(|(queue, sector, sectors, fua)| Step::Write { queue, sector, sectors, fua }),
        1 => (0..2usize).prop_map(|queue| Step::Flush { queue }),
        3 => (0..2usize).prop_map(|queue| Step::Poll { queue }),
    ]
}

/// Runs the script; write `i` fills its sectors with `i + 1`.
fn record(steps: &[Step], volatile_write_cache: bool) -> CrashLog {
    let rec = Arc::new(CrashRecorder::over_memory(memory(512, volatile_write_cache)));
    let mut queues = [Driver::new(&*rec), Driver::new(&*rec)];
    let mut writes = 0u8;
    for step in steps {
        match *step {
            Step::Write { queue, sector, sectors, fua } => {
                writes += 1;
                queues[queue].submit_write(sector, &filled(sectors, writes), fua);
            }
            Step::Flush { queue } => {
                queues[queue].submit_flush();
            }
            Step::Poll { queue } => {
                queues[queue].poll();
            }
        }
    }
    rec.log()
}

/// The model, read literally: the fill bytes each sector may hold at `point`.
fn oracle(log: &CrashLog, point: CrashPoint) -> Vec<BTreeSet<u8>> {
    let p = point.0;
    let writes = log.writes();
    let completed_before = |seq: Option<u64>| seq.filter(|&s| s < p);
    let durable = |w: usize| {
        let record = &writes[w];
        let Some(done) = completed_before(record.complete_seq) else { return false };
        let flushed =
            log.flushes().iter().any(|f| f.ok && completed_before(f.complete_seq).is_some() && done < f.submit_seq);
        record.ok && (!log.info().volatile_write_cache || record.fua || flushed)
    };
    (0..SECTORS)
        .map(|sector| {
            let covering: Vec<usize> = (0..writes.len())
                .filter(|&w| writes[w].submit_seq < p && writes[w].sectors().contains(&sector))
                .collect();
            let newest_durable_submit = covering.iter().filter(|&&w| durable(w)).map(|&w| writes[w].submit_seq).max();
            let mut candidates: BTreeSet<u8> = covering
                .iter()
                .filter(|&&w| {
                    let replaced = completed_before(writes[w].complete_seq)
                        .zip(newest_durable_submit)
                        .is_some_and(|(done, newest)| done < newest);
                    !replaced
                })
                .map(|&w| w as u8 + 1)
                .collect();
            if newest_durable_submit.is_none() {
                candidates.insert(0);
            }
            candidates
        })
        .collect()
}

fn cartesian(sets: &[BTreeSet<u8>]) -> BTreeSet<Vec<u8>> {
    sets.iter().fold(BTreeSet::from([Vec::new()]), |acc, set| {
        acc.iter().flat_map(|prefix| set.iter().map(move |&b| [prefix.clone(), vec![b]].concat())).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn images_follow_the_model_are_reproducible_and_keep_durable_writes(
        steps in prop::collection::vec(step(), 1..28),
        volatile_write_cache in prop::bool::weighted(0.8),
    ) {
        let log = record(&steps, volatile_write_cache);
        let rebuild = log.clone();
        for state in log.states(log.every_point()) {
            let point = state.point();
            let allowed = oracle(&log, point);
            let count: u128 = allowed.iter().map(|s| s.len() as u128).product();
            prop_assert_eq!(state.image_count(), count, "image count at {}", point);

            let images = state.images(32);
            let exhaustive = images.is_exhaustive();
            let mut seen = BTreeSet::new();
            for image in images {
                let got = fills(&image.to_store(), SECTORS);
                for (sector, fill) in got.iter().enumerate() {
                    prop_assert!(allowed[sector].contains(fill), "{}: sector {} holds {}", image.id(), sector, fill);
                }
                let again = fills(&rebuild.image(image.id()).to_store(), SECTORS);
                prop_assert_eq!(&again, &got, "{} rebuilt differently", image.id());
                for w in state.durable_writes() {
                    let record = &log.writes()[w];
                    for sector in record.sectors() {
                        // Durable and followed by every other write of the sector: it must be there.
                        let last = log.writes().iter().enumerate().all(|(v, other)| {
                            v == w || other.submit_seq >= point.0 || !other.sectors().contains(&sector)
                                || other.complete_seq.is_some_and(|c| c < record.submit_seq)
                        });
                        if last {
                            prop_assert_eq!(got[sector as usize], w as u8 + 1, "{}: durable write {} lost", image.id(), w);
                        }
                    }
                }
                seen.insert(got);
            }
            if exhaustive {
                prop_assert_eq!(seen, cartesian(&allowed), "images at {}", point);
            }
        }
    }
}
