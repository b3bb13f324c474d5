//! Which block each I/O addresses and whether it reads or writes.

use std::cell::Cell;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::args::Pattern;

/// The address plan of one reactor. Random patterns spread over the whole
/// device; sequential ones walk this reactor's own slice of it (as fio's jobs
/// do with offset_increment), wrapping at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    random: bool,
    read_percent: u8,
    /// Device blocks per I/O.
    blocks_per_io: u64,
    /// First I/O-sized unit of the range, and how many units it holds.
    first_unit: u64,
    units: u64,
}

impl Workload {
    /// Errors when the device is too small for one I/O per reactor.
    pub fn new(
        pattern: Pattern,
        rwmixread: u8,
        io_bytes: u64,
        block_bytes: u64,
        capacity_blocks: u64,
        reactor: u32,
        reactors: u32,
    ) -> Result<Self, String> {
        assert!(io_bytes.is_multiple_of(block_bytes) && io_bytes > 0);
        let blocks_per_io = io_bytes / block_bytes;
        let units_total = capacity_blocks / blocks_per_io;
        let (first_unit, units) = if pattern.is_random() {
            (0, units_total)
        } else {
            let per_reactor = units_total / u64::from(reactors);
            (per_reactor * u64::from(reactor), per_reactor)
        };
        if units == 0 {
            return Err(format!(
                "the device holds {units_total} I/Os of {io_bytes} bytes: too few for {reactors} reactors"
            ));
        }
        Ok(Workload {
            random: pattern.is_random(),
            read_percent: pattern.read_percent(rwmixread),
            blocks_per_io,
            first_unit,
            units,
        })
    }

    /// The next I/O: (is a read, first block). `cursor` is the reactor's
    /// sequential position, shared by its tasks.
    pub fn next(&self, rng: &mut ChaCha8Rng, cursor: &Cell<u64>) -> (bool, u64) {
        let is_read = match self.read_percent {
            100 => true,
            0 => false,
            percent => rng.gen_range(0..100u8) < percent,
        };
        let unit = if self.random {
            rng.gen_range(0..self.units)
        } else {
            let unit = cursor.get();
            cursor.set((unit + 1) % self.units);
            unit
        };
        (is_read, (self.first_unit + unit) * self.blocks_per_io)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test's unwrap is its assertion
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn sequential_reactors_walk_disjoint_slices_and_wrap() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let w = Workload::new(Pattern::Read, 50, 8192, 4096, 100, 1, 2).unwrap();
        let cursor = Cell::new(0);
        let lbas: Vec<u64> = (0..26).map(|_| w.next(&mut rng, &cursor).1).collect();
        // 50 units of 2 blocks, 25 per reactor; reactor 1 owns units 25..50.
        assert_eq!(lbas[0], 50);
        assert_eq!(lbas[24], 98);
        assert_eq!(lbas[25], 50, "wraps to the slice start");
    }

    #[test]
    fn random_io_stays_on_the_device_and_mixes_as_asked() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let w = Workload::new(Pattern::Randrw, 70, 4096, 512, 1000, 0, 1).unwrap();
        let cursor = Cell::new(0);
        let mut reads = 0;
        for _ in 0..10_000 {
            let (is_read, lba) = w.next(&mut rng, &cursor);
            assert!(lba % 8 == 0 && lba + 8 <= 1000);
            reads += u32::from(is_read);
        }
        assert!((6500..7500).contains(&reads), "{reads} reads of 10000");
    }

    #[test]
    fn a_device_smaller_than_one_io_per_reactor_is_an_error() {
        assert!(Workload::new(Pattern::Read, 50, 4096, 4096, 1, 0, 2).is_err());
    }
}
