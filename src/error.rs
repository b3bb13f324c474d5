//! Errors of the `keel` command and the exit codes they map to.

use std::path::PathBuf;

use keel_config::ConfigError;
use keel_drivers::DeviceError;
use keel_engine::volume::VolumeError;
use keel_engine::EngineError;
use keel_reactor::{CallError, RuntimeError};

/// Exit status for a configuration error (sysexits' EX_CONFIG). The systemd
/// unit does not restart on it: a restart cannot fix a bad file.
pub const EXIT_CONFIG: u8 = 78;
/// Exit status for any other failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of `keel fsck` when it found problems (fsck(8)'s "errors left
/// uncorrected"): the check ran, the volume is not consistent.
pub const EXIT_INCONSISTENT: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("device: {0}")]
    Device(#[from] DeviceError),
    #[error("device: {0}")]
    Nvme(String),
    #[error("{0}")]
    Volume(#[from] VolumeError),
    #[error("reactors: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("reactors: {0}")]
    Call(#[from] CallError),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error("{service}: {reason}")]
    Service { service: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("the volume has {problems} problem(s)")]
    Inconsistent { problems: u64 },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => EXIT_CONFIG,
            CliError::Inconsistent { .. } => EXIT_INCONSISTENT,
            _ => EXIT_FAILURE,
        }
    }
}
