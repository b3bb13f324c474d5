//! What every connection shares: the file system, the resolved exports, the
//! duplicate-request cache, the mount table and the ports in use.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::export::Export;
use crate::fs::{Cred, Fs, Inode, InodeRef};
use crate::handle::{FileHandle, HandleError};
use crate::nfs3::types::Status;
use crate::rpc::{AuthStat, Credential, Drc};

/// Entries the mount table (MOUNT DUMP) keeps at most.
pub const MOUNT_TABLE_MAX: usize = 4096;

/// Ports the gateway serves on, as bound (0 in a configuration means "any
/// free port"; these are the real ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub nfs: u16,
    pub mount: u16,
    pub portmap: Option<u16>,
}

#[derive(Debug)]
pub struct Service {
    pub fs: Fs,
    pub exports: Vec<Export>,
    pub drc: Drc,
    /// (client address, export path) pairs MOUNT has seen, for DUMP.
    pub mounts: Mutex<BTreeSet<(IpAddr, String)>>,
    pub ports: Ports,
    /// Connections open now, on all reactors.
    pub connections: std::sync::atomic::AtomicUsize,
}

/// Why a request cannot act on a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answer with this NFS status.
    Status(Status),
    /// Answer with an RPC AUTH_ERROR.
    Auth(AuthStat),
}

/// A handle resolved for one request.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub export: &'a Export,
    pub inode: InodeRef,
    pub cred: Cred,
}

impl Service {
    pub fn fsid(&self) -> u64 {
        self.fs.fsid()
    }

    /// The export `root` names, if it is (still) exported.
    pub fn export_by_root(&self, root: u64) -> Option<&Export> {
        self.exports.iter().find(|e| e.root.ino == root)
    }

    /// Resolves a handle: it must be ours, of a current export this client
    /// may use, with a credential the export accepts.
    pub fn resolve(&self, fh: &[u8], peer: IpAddr, credential: &Credential) -> Result<Target<'_>, Refusal> {
        let handle = FileHandle::decode(fh, self.fsid()).map_err(|e| match e {
            HandleError::Bad => Refusal::Status(Status::BadHandle),
            HandleError::OtherFs => Refusal::Status(Status::Stale),
        })?;
        let export = self.export_by_root(handle.export_root).ok_or(Refusal::Status(Status::Stale))?;
        if !export.allows(peer) {
            return Err(Refusal::Status(Status::Access));
        }
        let cred = export.cred(credential).ok_or(Refusal::Auth(AuthStat::TooWeak))?;
        Ok(Target { export, inode: handle.inode, cred })
    }

    /// The handle of `inode` within `export`.
    pub fn handle_of(&self, export: &Export, inode: &Inode) -> [u8; crate::handle::HANDLE_BYTES] {
        FileHandle {
            fsid: self.fsid(),
            export_root: export.root.ino,
            inode: InodeRef { ino: inode.ino, generation: inode.generation },
        }
        .encode()
    }

    /// Waits for a metadata change's durability unless the export is async.
    pub async fn settle(&self, export: &Export, lsn: keel_engine::Lsn) -> Result<(), crate::fs::FsError> {
        if export.config.async_metadata {
            return Ok(());
        }
        self.fs.wait_durable(lsn).await
    }
}
