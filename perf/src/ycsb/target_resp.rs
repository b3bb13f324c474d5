//! The `resp` target: YCSB's redis binding's mapping onto any Redis-protocol
//! server.
//!
//! - insert: HMSET key field value... then ZADD _indices hash(key) key
//! - read: HGETALL key (or HMGET key fields when readallfields=false)
//! - update: HMSET key field value
//! - scan: ZRANGEBYSCORE _indices hash(start) +inf LIMIT 0 count, then a
//!   read of each key; or, with `--scan keel`, KEEL.SCANHASH (one round trip)
//!
//! `hash(key)` is Java's `String.hashCode`, as in the binding.

use super::action::{Action, Values};
use super::generators::java_string_hash;
use super::resp_client::{Client, Value};

/// The sorted set YCSB's redis binding keeps every key in.
pub const INDEX_KEY: &[u8] = b"_indices";

/// How scans are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScanMode {
    /// ZRANGEBYSCORE on the index, then one read per key (YCSB's binding).
    Binding,
    /// KEEL.SCANHASH: the index range and the records in one command.
    Keel,
}

#[derive(Debug)]
pub struct RespTarget {
    client: Client,
    scan_mode: ScanMode,
}

impl RespTarget {
    pub fn connect(addr: &str, password: Option<&str>, scan_mode: ScanMode) -> Result<RespTarget, String> {
        Ok(RespTarget { client: Client::connect(addr, password)?, scan_mode })
    }

    pub fn run(&mut self, action: &Action) -> Result<(), String> {
        match action {
            Action::Insert { key, values, .. } => self.insert(key, values),
            Action::Read { key, fields } => self.read(key, fields.as_deref()).map(drop),
            Action::Update { key, values } => self.hmset(key, values),
            Action::Scan { start, count, fields } => self.scan(start, *count, fields.as_deref()),
            Action::ReadModifyWrite { key, fields, values } => {
                self.read(key, fields.as_deref())?;
                self.hmset(key, values)
            }
        }
    }

    fn hmset(&mut self, key: &str, values: &Values) -> Result<(), String> {
        let mut args: Vec<&[u8]> = vec![b"HMSET", key.as_bytes()];
        for (f, v) in values {
            args.push(f.as_bytes());
            args.push(v);
        }
        self.client.call(&args).map(drop)
    }

    fn insert(&mut self, key: &str, values: &Values) -> Result<(), String> {
        self.hmset(key, values)?;
        let score = f64::from(java_string_hash(key)).to_string();
        self.client.call(&[b"ZADD", INDEX_KEY, score.as_bytes(), key.as_bytes()]).map(drop)
    }

    fn read(&mut self, key: &str, fields: Option<&[String]>) -> Result<usize, String> {
        let reply = match fields {
            None => self.client.call(&[b"HGETALL", key.as_bytes()])?,
            Some(fields) => {
                let mut args: Vec<&[u8]> = vec![b"HMGET", key.as_bytes()];
                args.extend(fields.iter().map(String::as_bytes));
                self.client.call(&args)?
            }
        };
        let n = reply.into_items().len();
        if n == 0 {
            return Err(format!("record {key} not found"));
        }
        Ok(n)
    }

    fn scan(&mut self, start: &str, count: usize, fields: Option<&[String]>) -> Result<(), String> {
        let score = f64::from(java_string_hash(start)).to_string();
        let count_text = count.to_string();
        if self.scan_mode == ScanMode::Keel {
            let reply = self.client.call(&[b"KEEL.SCANHASH", INDEX_KEY, score.as_bytes(), count_text.as_bytes()])?;
            let _records = reply.into_items();
            return Ok(());
        }
        let keys = self.client.call(&[
            b"ZRANGEBYSCORE",
            INDEX_KEY,
            score.as_bytes(),
            b"+inf",
            b"LIMIT",
            b"0",
            count_text.as_bytes(),
        ])?;
        for key in keys.into_items().into_iter().filter_map(Value::into_bytes) {
            let key = String::from_utf8_lossy(&key).into_owned();
            self.read(&key, fields)?;
        }
        Ok(())
    }
}
