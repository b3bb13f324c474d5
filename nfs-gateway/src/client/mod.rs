//! A small blocking NFSv3 + MOUNT client. The tests use it to drive every
//! procedure, and `keel-perf nfs` uses it to load any NFSv3 server from
//! userspace. It is a client for testing, not for applications: no caching,
//! no retransmission.

mod nfs;
mod rpc;

pub use nfs::{DirEntryPlus, Entry, FsInfo, FsStat, Nfs3Client, PathConf, WccData, WriteReply};
pub use rpc::{Auth, ClientError, RpcClient};
