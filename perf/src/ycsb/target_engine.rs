//! The `engine` target: YCSB records straight on the engine API, in
//! process, on Keel's reactors. A record is one engine value (the engine's
//! field-map encoding); an update of one field is a blind merge (FieldSet),
//! the write the Bε-tree makes cheap; a scan is the engine's ordered scan.

use std::ops::Bound;

use keel_engine::merge::field_map;
use keel_engine::{Engine, MergeOp};

use super::action::{Action, Values};

/// Whether each write waits until it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineDurability {
    /// Every write waits for `wait_durable` of its LSN (Redis appendfsync always).
    Always,
    /// Writes return when applied.
    None,
}

pub async fn run(engine: &Engine, durability: EngineDurability, action: &Action) -> Result<(), String> {
    let lsn = match action {
        Action::Insert { key, values, .. } => Some(insert(engine, key, values).await?),
        Action::Read { key, .. } => {
            read(engine, key).await?;
            None
        }
        Action::Update { key, values } => Some(update(engine, key, values).await?),
        Action::Scan { start, count, .. } => {
            let rows = engine.scan(Bound::Included(start.as_bytes().to_vec()), Bound::Unbounded, *count).await;
            for (_, v) in rows.map_err(|e| e.to_string())? {
                std::hint::black_box(field_map::decode(&v));
            }
            None
        }
        Action::ReadModifyWrite { key, values, .. } => {
            read(engine, key).await?;
            Some(update(engine, key, values).await?)
        }
    };
    if let (Some(lsn), EngineDurability::Always) = (lsn, durability) {
        engine.wait_durable(lsn).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn insert(engine: &Engine, key: &str, values: &Values) -> Result<u64, String> {
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = values.iter().map(|(f, v)| (f.clone().into_bytes(), v.clone())).collect();
    fields.sort();
    engine.put(key.as_bytes(), field_map::encode(&fields)).await.map_err(|e| e.to_string())
}

async fn read(engine: &Engine, key: &str) -> Result<usize, String> {
    match engine.get(key.as_bytes()).await.map_err(|e| e.to_string())? {
        Some(v) => Ok(field_map::decode(&v).map_or(0, |f| f.len())),
        None => Err(format!("record {key} not found")),
    }
}

async fn update(engine: &Engine, key: &str, values: &Values) -> Result<u64, String> {
    let mut lsn = 0;
    for (f, v) in values {
        let op = MergeOp::FieldSet { field: f.clone().into_bytes(), value: v.clone() };
        lsn = engine.merge(key.as_bytes(), op).await.map_err(|e| e.to_string())?;
    }
    Ok(lsn)
}
