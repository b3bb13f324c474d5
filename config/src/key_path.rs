//! Dotted key paths ("kv.max_clients", "nfs.export[0].path"): how errors name a
//! setting and how `--set` addresses one.

use std::fmt;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path from the top of the configuration to one value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPath(pub Vec<Segment>);

/// Longest key path `--set` accepts; configuration paths are a few levels deep.
const SEGMENTS_MAX: usize = 16;

impl KeyPath {
    /// Parses "a.b[2].c". Names are TOML bare keys: ASCII letters, digits, `_`, `-`.
    pub fn parse(text: &str) -> Result<KeyPath, String> {
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(format!("\"{text}\" is not a key path like \"kv.max_clients\" or \"nfs.export[0].path\""));
            }
            segments.push(Segment::Key(name.to_owned()));
            while !rest.is_empty() {
                let close = rest.find(']').ok_or_else(|| format!("\"{text}\": unclosed '['"))?;
                let index = rest[1..close].parse::<usize>().map_err(|_| format!("\"{text}\": bad index"))?;
                segments.push(Segment::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(format!("\"{text}\": unexpected text after ']'"));
                }
            }
        }
        if segments.len() > SEGMENTS_MAX {
            return Err(format!("\"{text}\" is deeper than any configuration key"));
        }
        Ok(KeyPath(segments))
    }

    /// Converts serde_path_to_error's path (which names the field that failed,
    /// including an unknown one).
    pub fn from_serde(path: &serde_path_to_error::Path) -> KeyPath {
        use serde_path_to_error::Segment as S;
        let segments = path
            .iter()
            .filter_map(|segment| match segment {
                S::Seq { index } => Some(Segment::Index(*index)),
                S::Map { key } => Some(Segment::Key(key.clone())),
                S::Enum { variant } => Some(Segment::Key(variant.clone())),
                S::Unknown => None,
            })
            .collect();
        KeyPath(segments)
    }

    /// True when `self` is `other` or lies inside it (or the reverse): a value
    /// set at one of them decides the other.
    pub fn overlaps(&self, other: &KeyPath) -> bool {
        let n = self.0.len().min(other.0.len());
        self.0[..n] == other.0[..n]
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_parse_and_print_back() {
        for text in ["kv", "kv.max_clients", "nfs.export[0].path", "a.b[1][2].c"] {
            assert_eq!(KeyPath::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn malformed_key_paths_are_refused() {
        for text in ["", "kv.", ".kv", "kv..x", "nfs.export[x]", "nfs.export[0", "nfs.export[0]x", "kv max"] {
            assert!(KeyPath::parse(text).is_err(), "{text:?} was accepted");
        }
    }
}
