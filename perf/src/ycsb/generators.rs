//! YCSB's number generators, as its core workload uses them: counters,
//! uniform, zipfian (Gray et al.'s method with incremental zeta), scrambled
//! zipfian, skewed-latest, and a discrete chooser. They follow YCSB's
//! definitions so that key popularity matches published YCSB runs.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use rand::Rng;

/// YCSB's 64-bit FNV hash of a long (its `Utils.fnvhash64`): FNV-1a over the
/// value's 8 bytes, lowest first, then the absolute value.
pub fn fnvhash64(mut val: i64) -> i64 {
    const OFFSET_BASIS: i64 = 0xCBF2_9CE4_8422_2325_u64 as i64;
    const PRIME: i64 = 1_099_511_628_211;
    let mut hash = OFFSET_BASIS;
    for _ in 0..8 {
        let octet = val & 0xff;
        val >>= 8;
        hash ^= octet;
        hash = hash.wrapping_mul(PRIME);
    }
    hash.wrapping_abs()
}

/// Java's `String.hashCode`, which YCSB's redis binding uses as the score of
/// a key in its `_indices` sorted set.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// A shared counter handing out consecutive numbers (YCSB's CounterGenerator).
#[derive(Debug)]
pub struct Counter {
    next: AtomicI64,
}

impl Counter {
    pub fn new(start: i64) -> Counter {
        Counter { next: AtomicI64::new(start) }
    }

    pub fn next_value(&self) -> i64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// A counter whose `last_value` only advances over values acknowledged as
/// inserted, so readers never pick a key whose insert has not finished
/// (YCSB's AcknowledgedCounterGenerator).
#[derive(Debug)]
pub struct AckCounter {
    next: AtomicI64,
    state: Mutex<AckState>,
}

#[derive(Debug)]
struct AckState {
    limit: i64,
    pending: BTreeSet<i64>,
}

impl AckCounter {
    pub fn new(start: i64) -> AckCounter {
        AckCounter {
            next: AtomicI64::new(start),
            state: Mutex::new(AckState { limit: start - 1, pending: BTreeSet::new() }),
        }
    }

    pub fn next_value(&self) -> i64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    pub fn last_value(&self) -> i64 {
        self.state.lock().map_or(0, |s| s.limit)
    }

    pub fn acknowledge(&self, value: i64) {
        if let Ok(mut s) = self.state.lock() {
            s.pending.insert(value);
            loop {
                let next = s.limit + 1;
                if !s.pending.remove(&next) {
                    break;
                }
                s.limit = next;
            }
        }
    }
}

/// Zipfian over `[base, base + items)`: item `base` is the most popular.
#[derive(Debug, Clone)]
pub struct Zipfian {
    base: i64,
    items: i64,
    theta: f64,
    alpha: f64,
    zeta2theta: f64,
    zetan: f64,
    eta: f64,
    count_for_zeta: i64,
}

/// YCSB's default zipfian constant.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

impl Zipfian {
    pub fn new(min: i64, max: i64, theta: f64) -> Zipfian {
        let items = max - min + 1;
        let zetan = zeta(0, items, theta, 0.0);
        Self::with_zetan(min, max, theta, zetan)
    }

    pub fn with_zetan(min: i64, max: i64, theta: f64, zetan: f64) -> Zipfian {
        let items = max - min + 1;
        let zeta2theta = zeta(0, 2, theta, 0.0);
        let mut z = Zipfian {
            base: min,
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta2theta,
            zetan,
            eta: 0.0,
            count_for_zeta: items,
        };
        z.eta = z.eta_for(items);
        z
    }

    fn eta_for(&self, items: i64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2theta / self.zetan)
    }

    /// A value among the first `items` items (YCSB's `nextLong(itemcount)`);
    /// a growing item count extends zeta incrementally.
    pub fn next_long(&mut self, rng: &mut impl Rng, items: i64) -> i64 {
        if items > self.count_for_zeta {
            self.zetan = zeta(self.count_for_zeta, items, self.theta, self.zetan);
            self.count_for_zeta = items;
            self.eta = self.eta_for(items);
        }
        let u: f64 = rng.gen();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return self.base;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return self.base + 1;
        }
        self.base + (items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as i64
    }

    pub fn next_value(&mut self, rng: &mut impl Rng) -> i64 {
        let items = self.items;
        self.next_long(rng, items)
    }
}

/// Σ_{i=from}^{to-1} 1/(i+1)^theta, added to `initial`.
fn zeta(from: i64, to: i64, theta: f64, initial: f64) -> f64 {
    let mut sum = initial;
    for i in from..to {
        sum += 1.0 / ((i + 1) as f64).powf(theta);
    }
    sum
}

/// Zipfian popularity spread over the key space by hashing (YCSB's
/// ScrambledZipfianGenerator): the popular items are not clustered.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    min: i64,
    items: i64,
    inner: Zipfian,
}

/// YCSB draws scrambled zipfian values from a fixed space of 10^10 items, with
/// zeta precomputed for it.
const SCRAMBLED_ITEM_COUNT: i64 = 10_000_000_000;
const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

impl ScrambledZipfian {
    pub fn new(min: i64, max: i64) -> ScrambledZipfian {
        let inner = Zipfian::with_zetan(0, SCRAMBLED_ITEM_COUNT, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN);
        ScrambledZipfian { min, items: max - min + 1, inner }
    }

    pub fn next_value(&mut self, rng: &mut impl Rng) -> i64 {
        let v = self.inner.next_value(rng);
        self.min + fnvhash64(v) % self.items
    }
}

/// Recently inserted items are the most popular (YCSB's SkewedLatestGenerator).
#[derive(Debug, Clone)]
pub struct SkewedLatest {
    zipfian: Zipfian,
}

impl SkewedLatest {
    pub fn new(last: i64) -> SkewedLatest {
        SkewedLatest { zipfian: Zipfian::new(0, last.max(1) - 1, ZIPFIAN_CONSTANT) }
    }

    pub fn next_value(&mut self, rng: &mut impl Rng, last: i64) -> i64 {
        last - self.zipfian.next_long(rng, last.max(1))
    }
}

/// Picks one of several outcomes with the given weights.
#[derive(Debug, Clone)]
pub struct Discrete<T: Copy> {
    choices: Vec<(f64, T)>,
    total: f64,
}

impl<T: Copy> Discrete<T> {
    pub fn new(choices: Vec<(f64, T)>) -> Discrete<T> {
        let choices: Vec<(f64, T)> = choices.into_iter().filter(|(w, _)| *w > 0.0).collect();
        let total = choices.iter().map(|(w, _)| w).sum();
        Discrete { choices, total }
    }

    pub fn is_empty(&self) -> bool {
        self.choices.is_empty()
    }

    pub fn next(&self, rng: &mut impl Rng) -> Option<T> {
        let mut x = rng.gen::<f64>() * self.total;
        for &(w, v) in &self.choices {
            if x < w {
                return Some(v);
            }
            x -= w;
        }
        self.choices.last().map(|&(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fnvhash64_matches_ycsb() {
        // YCSB's first hashed key for record 0 is "user6284781860667377211".
        assert_eq!(fnvhash64(0), 6_284_781_860_667_377_211);
    }

    #[test]
    fn java_string_hash_matches_java() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("user6284781860667377211"), java_string_hash("user6284781860667377211"));
    }

    #[test]
    fn zipfian_favours_the_first_items() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut z = Zipfian::new(0, 999, ZIPFIAN_CONSTANT);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            let v = z.next_value(&mut rng);
            assert!((0..1000).contains(&v));
            counts[v as usize] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[500]);
        assert!(counts[0] > 10_000, "{}", counts[0]);
    }

    #[test]
    fn scrambled_zipfian_stays_in_range_and_spreads_popularity() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut z = ScrambledZipfian::new(0, 9999);
        let mut counts = vec![0u32; 10_000];
        for _ in 0..100_000 {
            counts[z.next_value(&mut rng) as usize] += 1;
        }
        let hottest = counts.iter().enumerate().max_by_key(|(_, c)| **c).map(|(i, _)| i).unwrap();
        assert_ne!(hottest, 0, "scrambling moves the hottest item away from the start");
    }

    #[test]
    fn ack_counter_advances_over_a_contiguous_prefix() {
        let c = AckCounter::new(10);
        let (a, b, d) = (c.next_value(), c.next_value(), c.next_value());
        assert_eq!(c.last_value(), 9);
        c.acknowledge(b);
        assert_eq!(c.last_value(), 9);
        c.acknowledge(a);
        assert_eq!(c.last_value(), 11);
        c.acknowledge(d);
        assert_eq!(c.last_value(), 12);
    }
}
