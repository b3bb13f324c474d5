//! Command-line overrides: `--set key=value` and the typed flags (`--data-dir`,
//! `--kv-listen`, ...). Each becomes a value placed into the file's table
//! before the table is checked, so a flag goes through exactly the checks a
//! line of the file does and wins over it.

use crate::error::ConfigError;
use crate::key_path::{KeyPath, Segment};

/// One value set on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub key: KeyPath,
    pub value: toml::Value,
    /// The flag as the user wrote it, for error messages.
    pub flag: String,
}

/// Longest `--set` argument: configuration values are short.
const SET_ARG_BYTES_MAX: usize = 4096;

impl Override {
    /// A typed flag's value for `key` (a constant of the caller).
    pub fn new(key: &str, value: impl Into<toml::Value>, flag: impl Into<String>) -> Result<Override, ConfigError> {
        let flag = flag.into();
        let key = KeyPath::parse(key).map_err(|reason| ConfigError::BadFlag { flag: flag.clone(), reason })?;
        Ok(Override { key, value: value.into(), flag })
    }

    /// Parses `--set key=value`. The value is read as TOML (`8`, `true`,
    /// `[0, 1]`, `"text"`); anything that is not TOML is taken as a string,
    /// so `--set kv.listen=0.0.0.0:6379` and `--set device.size=8GiB` need no
    /// quotes. Quote a value to force a string (`--set 'kv.requirepass="123"'`).
    pub fn parse_set(arg: &str) -> Result<Override, ConfigError> {
        let flag = format!("--set {arg}");
        let bad = |reason: String| ConfigError::BadFlag { flag: flag.clone(), reason };
        if arg.len() > SET_ARG_BYTES_MAX {
            return Err(bad(format!("longer than {SET_ARG_BYTES_MAX} bytes")));
        }
        let (key, raw) =
            arg.split_once('=').ok_or_else(|| bad("expected key=value, like kv.max_clients=100".into()))?;
        let key = KeyPath::parse(key.trim()).map_err(bad)?;
        let value = parse_value(raw.trim());
        Ok(Override { key, value, flag })
    }

    /// Places the value into `table`, creating the tables on the way.
    pub(crate) fn apply(&self, table: &mut toml::Table) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::BadFlag { flag: self.flag.clone(), reason };
        let segments = &self.key.0;
        let Some((Segment::Key(first), rest)) = segments.split_first() else {
            return Err(bad("a key path starts with a section name".into()));
        };
        if rest.is_empty() {
            table.insert(first.clone(), self.value.clone());
            return Ok(());
        }
        let mut slot = table.entry(first.clone()).or_insert_with(|| empty_for(rest.first()));
        for (i, segment) in rest.iter().enumerate() {
            slot = step(slot, segment, rest.get(i + 1)).map_err(|reason| bad(format!("{}: {reason}", self.key)))?;
        }
        *slot = self.value.clone();
        Ok(())
    }
}

/// Moves one segment down from `slot`, creating what the path needs next (a
/// table, an array, or, for an index one past the end, a new element).
fn step<'a>(
    slot: &'a mut toml::Value,
    segment: &Segment,
    next: Option<&Segment>,
) -> Result<&'a mut toml::Value, String> {
    match (slot, segment) {
        (toml::Value::Table(table), Segment::Key(key)) => {
            Ok(table.entry(key.clone()).or_insert_with(|| empty_for(next)))
        }
        (toml::Value::Array(array), Segment::Index(index)) => {
            if *index == array.len() {
                array.push(empty_for(next));
            }
            let len = array.len();
            array.get_mut(*index).ok_or_else(|| format!("index {index} is past the end (the array has {len} elements)"))
        }
        (_, Segment::Key(key)) => Err(format!("\"{key}\" is set inside a value that is not a table")),
        (_, Segment::Index(index)) => Err(format!("[{index}] indexes a value that is not an array")),
    }
}

/// An empty container for the segment that comes next; a placeholder (about
/// to be overwritten) at the end of the path.
fn empty_for(next: Option<&Segment>) -> toml::Value {
    match next {
        Some(Segment::Key(_)) => toml::Value::Table(toml::Table::new()),
        Some(Segment::Index(_)) => toml::Value::Array(Vec::new()),
        None => toml::Value::Boolean(false),
    }
}

fn parse_value(raw: &str) -> toml::Value {
    let document = format!("value = {raw}");
    match toml::from_str::<toml::Table>(&document) {
        Ok(mut table) if table.len() == 1 => {
            table.remove("value").unwrap_or_else(|| toml::Value::String(raw.to_owned()))
        }
        _ => toml::Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_toml_or_else_strings() {
        assert_eq!(Override::parse_set("reactors.count=2").unwrap().value, toml::Value::Integer(2));
        assert_eq!(Override::parse_set("kv.enabled=false").unwrap().value, toml::Value::Boolean(false));
        assert_eq!(
            Override::parse_set("kv.listen=0.0.0.0:7000").unwrap().value,
            toml::Value::String("0.0.0.0:7000".into())
        );
        assert_eq!(Override::parse_set("kv.requirepass=\"123\"").unwrap().value, toml::Value::String("123".into()));
        let cores = Override::parse_set("reactors.cores=[0, 1]").unwrap().value;
        assert_eq!(cores, toml::Value::Array(vec![toml::Value::Integer(0), toml::Value::Integer(1)]));
    }

    #[test]
    fn set_without_equals_or_with_a_bad_key_is_refused() {
        assert!(Override::parse_set("reactors.count").unwrap_err().to_string().contains("key=value"));
        assert!(Override::parse_set("reactors..count=1").is_err());
    }

    #[test]
    fn set_creates_tables_and_appends_array_elements() {
        let mut table = toml::Table::new();
        Override::parse_set("nfs.export[0].path=/").unwrap().apply(&mut table).unwrap();
        Override::parse_set("nfs.export[0].async=true").unwrap().apply(&mut table).unwrap();
        let export = &table["nfs"]["export"][0];
        assert_eq!(export["path"].as_str(), Some("/"));
        assert_eq!(export["async"].as_bool(), Some(true));
        Override::parse_set("nfs.export[1].path=/b").unwrap().apply(&mut table).unwrap();
        assert_eq!(table["nfs"]["export"][1]["path"].as_str(), Some("/b"));
        let err = Override::parse_set("nfs.export[5].path=/x").unwrap().apply(&mut table).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        let err = Override::parse_set("kv.listen.port=1").unwrap().apply(&mut table);
        assert!(err.is_ok(), "kv.listen is created as a table here; deserialization rejects it later");
    }
}
