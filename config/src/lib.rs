//! Keel's configuration: one TOML file, every section optional.
//!
//! - Every table rejects unknown keys, so a typo is an error, not a silently
//!   ignored setting.
//! - Every error names the key by its full dotted path (`kv.max_clients`,
//!   `nfs.export[0].squash`), says why, and says where the value came from: the
//!   file and line, the command-line flag, or the built-in default.
//! - With no file at all, the defaults give a working appliance: a data file
//!   under `./keel-data`, one reactor on a small machine, the Redis-protocol
//!   gateway on 127.0.0.1:6379.
//! - Command-line flags become [`Override`]s, placed into the file's table
//!   before it is checked: they win over the file and pass the same checks.
//!
//! Loading is: parse the TOML; apply overrides; deserialize with
//! `serde_path_to_error` (types, unknown keys); then [`Config::validate`]
//! (ranges, cores, addresses, cross-field rules).
//!
//! Each section is a struct in its own file; later parts add their fields there.
//! `systemd/keel.toml` is the commented example of every key.
#![forbid(unsafe_code)]

pub mod device;
pub mod dma;
pub mod engine;
mod error;
mod key_path;
pub mod kv;
pub mod log;
pub mod nfs;
mod overrides;
pub mod reactors;
mod spans;
pub mod units;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::device::{Backend, DeviceConfig};
pub use crate::dma::{DmaConfig, Hugepages};
pub use crate::engine::EngineConfig;
pub use crate::error::{ConfigError, Origin, Problem};
pub use crate::key_path::KeyPath;
pub use crate::kv::{KvConfig, KvDurability};
pub use crate::log::{LogConfig, LogFormat};
pub use crate::nfs::{ExportConfig, NfsConfig, Squash};
pub use crate::overrides::Override;
pub use crate::reactors::{IdleMode, ReactorsConfig};
pub use crate::units::{ByteSize, HumanDuration};

/// Largest configuration file read: a real one is a few KiB.
const FILE_BYTES_MAX: u64 = 1 << 20;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub device: DeviceConfig,
    pub reactors: ReactorsConfig,
    pub dma: DmaConfig,
    pub engine: EngineConfig,
    pub kv: KvConfig,
    pub nfs: NfsConfig,
    pub log: LogConfig,
}

/// The text of a configuration file and its name for messages.
struct Source<'a> {
    name: String,
    text: &'a str,
}

impl Config {
    /// Reads `path` (none: defaults only) and applies `overrides` in order.
    pub fn load(path: Option<&Path>, overrides: &[Override]) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Config::build(None, overrides);
        };
        let text = read_file(path)?;
        Config::build(Some(Source { name: path.display().to_string(), text: &text }), overrides)
    }

    /// Parses `text` as if read from a file called `name`.
    pub fn from_toml(text: &str, name: &str, overrides: &[Override]) -> Result<Config, ConfigError> {
        Config::build(Some(Source { name: name.to_owned(), text }), overrides)
    }

    fn build(source: Option<Source<'_>>, overrides: &[Override]) -> Result<Config, ConfigError> {
        let mut table = match &source {
            Some(source) => toml::from_str::<toml::Table>(source.text).map_err(|e| syntax_error(source, &e))?,
            None => toml::Table::new(),
        };
        for o in overrides {
            o.apply(&mut table)?;
        }
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = KeyPath::from_serde(e.path());
            locate(&key, e.inner().message().to_owned(), source.as_ref(), overrides)
        })?;
        config.validate().map_err(|problem| {
            let key = KeyPath::parse(&problem.key).unwrap_or_default();
            locate(&key, problem.reason, source.as_ref(), overrides)
        })?;
        Ok(config)
    }

    /// Checks ranges and rules that span fields, section by section.
    pub fn validate(&self) -> Result<(), Problem> {
        self.device.validate()?;
        self.reactors.validate()?;
        self.dma.validate()?;
        self.engine.validate()?;
        self.kv.validate()?;
        self.nfs.validate()?;
        self.log.validate()?;
        if self.kv.enabled && self.nfs.enabled {
            let kv = self.kv.listen;
            let nfs_ports = [self.nfs.nfs_port, self.nfs.mount_port];
            if nfs_ports.contains(&kv.port()) && (kv.ip() == self.nfs.listen || kv.ip().is_unspecified()) {
                return Err(Problem::new("kv.listen", format!("port {} is also used by [nfs]", kv.port())));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML (what `keel config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read { path: PathBuf::from(path), source };
    let size_bytes = std::fs::metadata(path).map_err(read_error)?.len();
    if size_bytes > FILE_BYTES_MAX {
        let reason =
            format!("{size_bytes} bytes is larger than the {FILE_BYTES_MAX}-byte limit for a configuration file");
        return Err(read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, reason)));
    }
    std::fs::read_to_string(path).map_err(read_error)
}

fn syntax_error(source: &Source<'_>, error: &toml::de::Error) -> ConfigError {
    let line = error.span().map(|span| spans::line_at(source.text, span.start));
    ConfigError::Syntax {
        origin: Origin::File { path: source.name.clone(), line },
        message: error.message().trim().replace('\n', "; "),
    }
}

/// Builds the error for `key`, saying where its value came from: the last
/// override that touches it, else the file's line, else the default.
fn locate(key: &KeyPath, reason: String, source: Option<&Source<'_>>, overrides: &[Override]) -> ConfigError {
    let origin = if let Some(o) = overrides.iter().rev().find(|o| o.key.overlaps(key)) {
        Origin::Flag(o.flag.clone())
    } else {
        match source.map(|s| (s, spans::line_of(s.text, key))) {
            Some((s, Some(line))) => Origin::File { path: s.name.clone(), line: Some(line) },
            _ => Origin::Default,
        }
    };
    ConfigError::Invalid { key: key.to_string(), reason, origin }
}
