//! Configuration errors. Every error about a value names its key by its full
//! dotted path, says why the value is refused, and says where the value came
//! from: a line of the file, a command-line flag, or the built-in default.

use std::fmt;
use std::path::PathBuf;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file, at `line` (1-based) when it could be found.
    File { path: String, line: Option<usize> },
    /// A command-line flag, as the user wrote it ("--kv-listen", "--set kv.listen=...").
    Flag(String),
    /// Nobody set it: the built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line: Some(line) } => write!(f, "{path}:{line}"),
            Origin::File { path, line: None } => write!(f, "{path}"),
            Origin::Flag(flag) => write!(f, "{flag}"),
            Origin::Default => write!(f, "built-in default"),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: not valid TOML: {message}")]
    Syntax { origin: Origin, message: String },
    #[error("{origin}: {key}: {reason}")]
    Invalid { key: String, reason: String, origin: Origin },
    #[error("{flag}: {reason}")]
    BadFlag { flag: String, reason: String },
}

impl ConfigError {
    /// The dotted key the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The line of the configuration file, when the error points into it.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { origin: Origin::File { line, .. }, .. }
            | ConfigError::Invalid { origin: Origin::File { line, .. }, .. } => *line,
            _ => None,
        }
    }
}

/// A refused value found by validation, before its origin is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Full dotted path ("kv.max_clients").
    pub key: String,
    pub reason: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem { key: key.into(), reason: reason.into() }
    }
}

/// Checks `min <= value <= max`.
pub fn check_range<T: PartialOrd + fmt::Display>(key: &str, value: T, min: T, max: T) -> Result<(), Problem> {
    if value < min || value > max {
        return Err(Problem::new(key, format!("{value} is out of range: must be between {min} and {max}")));
    }
    Ok(())
}
