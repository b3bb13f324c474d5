//! ONC RPC version 2 (RFC 5531) over TCP: record marking, call and reply
//! headers, AUTH_SYS/AUTH_NONE credentials and the duplicate-request cache.
//! Nothing here knows MOUNT or NFS.

pub mod auth;
pub mod drc;
pub mod message;
pub mod record;

pub use auth::{AuthStat, AuthSys, Credential};
pub use drc::{Drc, DrcKey, DrcLookup};
pub use message::{AcceptStat, CallHeader, HeaderError, ReplyWriter};
pub use record::{Deframer, RecordError};
