//! File-system errors. Each maps to exactly one NFSv3 status; the names
//! follow NFS's so that the mapping is obvious.

use keel_engine::EngineError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("not owner")]
    Perm,
    #[error("no such file or directory")]
    NoEnt,
    #[error("I/O error: {0}")]
    Io(String),
    #[error("permission denied")]
    Access,
    #[error("file exists")]
    Exist,
    #[error("cross-device link")]
    XDev,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("invalid argument")]
    Inval,
    #[error("file too large")]
    FBig,
    #[error("no space left")]
    NoSpace,
    #[error("read-only file system")]
    ReadOnly,
    #[error("too many links")]
    MLink,
    #[error("name too long")]
    NameTooLong,
    #[error("directory not empty")]
    NotEmpty,
    #[error("stale file handle")]
    Stale,
    #[error("bad cookie")]
    BadCookie,
    #[error("operation not supported")]
    NotSupp,
    #[error("buffer too small for one entry")]
    TooSmall,
    #[error("guard check failed (ctime differs)")]
    NotSync,
    #[error("type not valid here")]
    BadType,
    #[error("server fault: {0}")]
    ServerFault(String),
}

impl From<EngineError> for FsError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NoSpace { .. } => FsError::NoSpace,
            EngineError::Io(e) => FsError::Io(e.to_string()),
            EngineError::Corrupt { .. } => FsError::Io(e.to_string()),
            other => FsError::ServerFault(other.to_string()),
        }
    }
}

impl From<keel_reactor::CallError> for FsError {
    fn from(e: keel_reactor::CallError) -> Self {
        FsError::ServerFault(e.to_string())
    }
}

pub type FsResult<T> = Result<T, FsError>;
