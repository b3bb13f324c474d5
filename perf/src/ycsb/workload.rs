//! YCSB's core workload: its properties, its keys and records, and the
//! choice of the next operation, as `site.ycsb.workloads.CoreWorkload`
//! defines them.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;

use super::generators::{AckCounter, Counter, Discrete, ScrambledZipfian, SkewedLatest, Zipfian, ZIPFIAN_CONSTANT};

/// An operation of the transaction phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
}

impl OpKind {
    pub fn label(self) -> &'static str {
        match self {
            OpKind::Read => "READ",
            OpKind::Update => "UPDATE",
            OpKind::Insert => "INSERT",
            OpKind::Scan => "SCAN",
            OpKind::ReadModifyWrite => "READ-MODIFY-WRITE",
        }
    }
}

/// How keys of the transaction phase are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    Uniform,
    Zipfian,
    Latest,
}

/// The workload's settings (YCSB property names in the comments).
#[derive(Debug, Clone)]
pub struct Workload {
    pub record_count: i64,    // recordcount
    pub operation_count: i64, // operationcount
    pub insert_start: i64,    // insertstart
    pub insert_count: i64,    // insertcount (default: recordcount - insertstart)
    pub field_count: usize,   // fieldcount
    pub field_length: usize,  // fieldlength
    pub field_prefix: String, // fieldnameprefix
    pub read_all_fields: bool,
    pub write_all_fields: bool,
    pub proportions: Vec<(f64, OpKind)>,
    pub request_distribution: Distribution,
    pub scan_length_min: i64,
    pub scan_length_max: i64,
    pub scan_length_zipfian: bool,
    pub ordered_inserts: bool, // insertorder=ordered
    pub zero_padding: usize,
    pub table: String,
}

fn get<T: std::str::FromStr>(p: &BTreeMap<String, String>, key: &str, default: T) -> Result<T, String> {
    match p.get(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| format!("property {key}={v} is not valid")),
    }
}

impl Workload {
    /// Builds the workload from properties (a workload file plus overrides).
    pub fn from_properties(p: &BTreeMap<String, String>) -> Result<Workload, String> {
        let record_count: i64 = get(p, "recordcount", 1000)?;
        let insert_start: i64 = get(p, "insertstart", 0)?;
        let distribution = match p.get("requestdistribution").map_or("uniform", String::as_str) {
            "uniform" => Distribution::Uniform,
            "zipfian" => Distribution::Zipfian,
            "latest" => Distribution::Latest,
            other => return Err(format!("requestdistribution={other} is not supported (uniform, zipfian, latest)")),
        };
        let scan_length_zipfian = match p.get("scanlengthdistribution").map_or("uniform", String::as_str) {
            "uniform" => false,
            "zipfian" => true,
            other => return Err(format!("scanlengthdistribution={other} is not supported (uniform, zipfian)")),
        };
        let proportions = vec![
            (get(p, "readproportion", 0.95)?, OpKind::Read),
            (get(p, "updateproportion", 0.05)?, OpKind::Update),
            (get(p, "insertproportion", 0.0)?, OpKind::Insert),
            (get(p, "scanproportion", 0.0)?, OpKind::Scan),
            (get(p, "readmodifywriteproportion", 0.0)?, OpKind::ReadModifyWrite),
        ];
        let w = Workload {
            record_count,
            operation_count: get(p, "operationcount", 1000)?,
            insert_start,
            insert_count: get(p, "insertcount", record_count - insert_start)?,
            field_count: get(p, "fieldcount", 10)?,
            field_length: get(p, "fieldlength", 100)?,
            field_prefix: p.get("fieldnameprefix").cloned().unwrap_or_else(|| "field".into()),
            read_all_fields: get(p, "readallfields", true)?,
            write_all_fields: get(p, "writeallfields", false)?,
            proportions,
            request_distribution: distribution,
            scan_length_min: get(p, "minscanlength", 1)?,
            scan_length_max: get(p, "maxscanlength", 1000)?,
            scan_length_zipfian,
            ordered_inserts: p.get("insertorder").is_some_and(|v| v == "ordered"),
            zero_padding: get(p, "zeropadding", 1)?,
            table: p.get("table").cloned().unwrap_or_else(|| "usertable".into()),
        };
        if w.field_count == 0 || w.record_count < 0 || w.scan_length_min < 1 || w.scan_length_max < w.scan_length_min {
            return Err("fieldcount must be > 0, recordcount >= 0, 1 <= minscanlength <= maxscanlength".into());
        }
        Ok(w)
    }

    /// The key of record `keynum`: "user" + its hash (or the number itself
    /// with insertorder=ordered), zero-padded to `zeropadding` digits.
    pub fn key_name(&self, keynum: i64) -> String {
        let n = if self.ordered_inserts { keynum } else { super::generators::fnvhash64(keynum) };
        let digits = n.to_string();
        let fill = self.zero_padding.saturating_sub(digits.len());
        format!("user{}{digits}", "0".repeat(fill))
    }

    pub fn field_name(&self, i: usize) -> String {
        format!("{}{i}", self.field_prefix)
    }

    /// A value of `fieldlength` printable bytes.
    pub fn field_value(&self, rng: &mut impl Rng) -> Vec<u8> {
        (0..self.field_length).map(|_| rng.gen_range(b' '..=b'~')).collect()
    }

    /// Every field of a fresh record.
    pub fn record(&self, rng: &mut impl Rng) -> Vec<(String, Vec<u8>)> {
        (0..self.field_count).map(|i| (self.field_name(i), self.field_value(rng))).collect()
    }

    /// The fields an update writes: one random field unless writeallfields.
    pub fn update_values(&self, rng: &mut impl Rng) -> Vec<(String, Vec<u8>)> {
        if self.write_all_fields {
            return self.record(rng);
        }
        let i = rng.gen_range(0..self.field_count);
        vec![(self.field_name(i), self.field_value(rng))]
    }

    /// The fields a read asks for: all (`None`) unless readallfields=false.
    pub fn read_fields(&self, rng: &mut impl Rng) -> Option<Vec<String>> {
        (!self.read_all_fields).then(|| vec![self.field_name(rng.gen_range(0..self.field_count))])
    }
}

/// State shared by every client thread of a run.
#[derive(Debug)]
pub struct Shared {
    pub workload: Workload,
    /// Load phase: the next record to insert.
    pub load_sequence: Counter,
    /// Transaction phase: inserts take new numbers here.
    pub insert_sequence: AckCounter,
}

impl Shared {
    pub fn new(workload: Workload) -> Arc<Shared> {
        let load_sequence = Counter::new(workload.insert_start);
        let insert_sequence = AckCounter::new(workload.record_count);
        Arc::new(Shared { workload, load_sequence, insert_sequence })
    }
}

/// One client thread's generators (each thread draws independently, as in
/// YCSB where generators are shared but random).
#[derive(Debug)]
pub struct Chooser {
    ops: Discrete<OpKind>,
    keys: KeyChooser,
    scan_uniform: (i64, i64),
    scan_zipfian: Option<Zipfian>,
}

#[derive(Debug)]
enum KeyChooser {
    Uniform(i64, i64),
    Zipfian(ScrambledZipfian),
    Latest(SkewedLatest),
}

impl Chooser {
    pub fn new(shared: &Shared) -> Chooser {
        let w = &shared.workload;
        let insert_proportion = w.proportions.iter().find(|(_, k)| *k == OpKind::Insert).map_or(0.0, |(p, _)| *p);
        let keys = match w.request_distribution {
            Distribution::Uniform => KeyChooser::Uniform(w.insert_start, w.insert_start + w.insert_count - 1),
            Distribution::Zipfian => {
                let expected_new_keys = (w.operation_count as f64 * insert_proportion * 2.0) as i64;
                KeyChooser::Zipfian(ScrambledZipfian::new(
                    w.insert_start,
                    w.insert_start + w.insert_count + expected_new_keys,
                ))
            }
            Distribution::Latest => KeyChooser::Latest(SkewedLatest::new(shared.insert_sequence.last_value())),
        };
        let scan_zipfian =
            w.scan_length_zipfian.then(|| Zipfian::new(w.scan_length_min, w.scan_length_max, ZIPFIAN_CONSTANT));
        Chooser {
            ops: Discrete::new(w.proportions.clone()),
            keys,
            scan_uniform: (w.scan_length_min, w.scan_length_max),
            scan_zipfian,
        }
    }

    pub fn next_op(&self, rng: &mut impl Rng) -> OpKind {
        self.ops.next(rng).unwrap_or(OpKind::Read)
    }

    /// A record number that exists: never above the last acknowledged insert.
    pub fn next_keynum(&mut self, rng: &mut impl Rng, shared: &Shared) -> i64 {
        let last = shared.insert_sequence.last_value();
        for _ in 0..1000 {
            let k = match &mut self.keys {
                KeyChooser::Uniform(lo, hi) => rng.gen_range(*lo..=*hi),
                KeyChooser::Zipfian(z) => z.next_value(rng),
                KeyChooser::Latest(l) => l.next_value(rng, last),
            };
            if k <= last {
                return k;
            }
        }
        last
    }

    pub fn scan_length(&mut self, rng: &mut impl Rng) -> usize {
        let n = match &mut self.scan_zipfian {
            Some(z) => z.next_value(rng),
            None => rng.gen_range(self.scan_uniform.0..=self.scan_uniform.1),
        };
        usize::try_from(n).unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hashed_like_ycsb() {
        let w = Workload::from_properties(&BTreeMap::new()).unwrap();
        assert_eq!(w.key_name(0), "user6284781860667377211");
        let mut p = BTreeMap::new();
        p.insert("insertorder".to_string(), "ordered".to_string());
        p.insert("zeropadding".to_string(), "5".to_string());
        assert_eq!(Workload::from_properties(&p).unwrap().key_name(42), "user00042");
    }

    #[test]
    fn unsupported_distributions_are_refused() {
        let mut p = BTreeMap::new();
        p.insert("requestdistribution".to_string(), "hotspot".to_string());
        assert!(Workload::from_properties(&p).is_err());
    }
}
