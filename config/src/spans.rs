//! Finding the line of a key in the configuration file, so that an error about
//! a value can point at it. Values are checked on a plain table (after the
//! command-line overrides are applied), which keeps no positions; the
//! positions come from parsing the file a second time with `toml_edit`.

use toml_edit::{ImDocument, Item, Table, Value};

use crate::key_path::{KeyPath, Segment};

/// Byte range of something in the text.
type Span = std::ops::Range<usize>;

/// The 1-based line of `key` in `text`, when the file sets it.
pub fn line_of(text: &str, key: &KeyPath) -> Option<usize> {
    let document = ImDocument::parse(text).ok()?;
    let span = span_of(document.as_item(), &key.0)?;
    Some(line_at(text, span.start))
}

/// The 1-based line of byte `offset`.
pub fn line_at(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

fn span_of(item: &Item, path: &[Segment]) -> Option<Span> {
    let Some((segment, rest)) = path.split_first() else {
        return item.span();
    };
    match (item, segment) {
        (Item::Table(table), Segment::Key(_)) => span_in_table(table, path),
        (Item::ArrayOfTables(array), Segment::Index(index)) => {
            let table = array.get(*index)?;
            if rest.is_empty() {
                return table.span();
            }
            span_in_table(table, rest)
        }
        (Item::Value(value), _) => span_in_value(value, path),
        _ => None,
    }
}

fn span_in_table(table: &Table, path: &[Segment]) -> Option<Span> {
    let (Segment::Key(key), rest) = path.split_first()? else {
        return None;
    };
    let (found_key, child) = table.get_key_value(key)?;
    // A key's own position is the best line for an error about it, and
    // tables ([kv]) have no value span of their own.
    if rest.is_empty() {
        return found_key.span().or_else(|| child.span());
    }
    span_of(child, rest)
}

fn span_in_value(value: &Value, path: &[Segment]) -> Option<Span> {
    let Some((segment, rest)) = path.split_first() else {
        return value.span();
    };
    match (value, segment) {
        (Value::InlineTable(table), Segment::Key(key)) => {
            let (found_key, child) = table.get_key_value(key)?;
            if rest.is_empty() {
                return found_key.span().or_else(|| child.span());
            }
            span_of(child, rest)
        }
        (Value::Array(array), Segment::Index(index)) => span_in_value(array.get(*index)?, rest),
        _ => None,
    }
}
