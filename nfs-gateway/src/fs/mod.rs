//! The file system Keel serves over NFS, built on the engine's keys and
//! transactions. It knows nothing of RPC or XDR: the NFS layer translates
//! requests into these calls and the results back.
//!
//! Shape (see ARCHITECTURE.md, "NFS gateway"):
//! - an inode is a record under its attribute key; directory entries and
//!   file data chunks sit under the same inode prefix, so they share its
//!   shard (`keys.rs`);
//! - every operation on an inode runs on the reactor of that inode's shard
//!   ([`Fs::on_home`]), so that the engine's calls and most transactions are
//!   local there and per-inode memory (unstable writes) needs no sharing;
//! - every change is one engine transaction that locks the attribute keys
//!   of every inode it changes, so attributes taken before and after (WCC)
//!   are exact and a crash leaves either all of an operation or none;
//! - inode numbers are never reused (each shard hands out numbers from its
//!   own 2^48 range, leased in blocks), and a removed file's data is freed
//!   in the background from an orphan list.

mod alloc;
mod attrs;
mod behind;
mod data;
pub mod dirent;
mod error;
mod freer;
mod fsck;
pub mod inode;
pub mod keys;
mod local;
mod names;
pub mod perm;
mod readdir;
mod remove;
mod rename;
mod space;
mod superblock;
mod write_behind;

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use keel_engine::{route, Engine, Lsn, Transaction};

pub use attrs::{SetAttrs, SetTime};
pub use data::{ReadResult, StableHow, WriteData, WriteResult};
pub use error::{FsError, FsResult};
pub use fsck::FsckReport;
pub use inode::{FileType, Inode, Time};
pub use names::{CreateMode, NodeSpec};
pub use perm::Cred;
pub use readdir::{DirEntry, DirListing};
pub use space::SpaceReport;

/// The root directory's inode number (allocated at mkfs, outside every
/// shard's range).
pub const ROOT_INO: u64 = 1;
/// Largest file size (offsets past it get FBIG): 2^48 bytes keeps chunk
/// indices well inside u32 and every size computation far from overflow.
pub const FILE_BYTES_MAX: u64 = 1 << 48;
/// Most hard links one inode may have.
pub const LINKS_MAX: u32 = 65_000;

/// An inode as a file handle names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InodeRef {
    pub ino: u64,
    pub generation: u32,
}

/// Attributes taken before an operation (NFS `wcc_attr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WccAttr {
    pub size: u64,
    pub mtime: Time,
    pub ctime: Time,
}

impl WccAttr {
    pub fn of(inode: &Inode) -> WccAttr {
        WccAttr { size: inode.reported_size(), mtime: inode.mtime, ctime: inode.ctime }
    }
}

/// Weak cache consistency data: attributes before and after, taken
/// atomically with the operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wcc {
    pub before: Option<WccAttr>,
    pub after: Option<Inode>,
}

impl Wcc {
    pub fn around(before: &Inode, after: &Inode) -> Wcc {
        Wcc { before: Some(WccAttr::of(before)), after: Some(after.clone()) }
    }

    pub fn unchanged(inode: &Inode) -> Wcc {
        Wcc::around(inode, inode)
    }
}

/// A change's result and the LSN to wait on for its durability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done<T> {
    pub value: T,
    pub lsn: Lsn,
}

/// Settings of one file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsOptions {
    /// Space the file system may use, reported by FSSTAT and enforced
    /// (NOSPC). `keel serve` sets it to the bytes of the shards' data
    /// regions; tree overhead is not counted here, so the engine's own
    /// NoSpace (also NOSPC) can come first.
    pub capacity_bytes: u64,
    /// Files whose unstable writes are tracked per reactor for COMMIT;
    /// beyond it COMMIT waits for everything written so far.
    pub unstable_files_max: usize,
    /// UNSTABLE whole-chunk WRITEs answered before their data is written
    /// (`behind.rs`), at most this many per reactor, and at most a quarter
    /// of the DMA pool's bytes over all reactors (`write_behind::limits`);
    /// 0 answers every WRITE after its commit.
    pub writes_behind_max: usize,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions { capacity_bytes: 1 << 40, unstable_files_max: 65_536, writes_behind_max: 32 }
    }
}

static NEXT_FS_UID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct FsShared {
    /// Distinguishes file systems in per-reactor state (tests run several).
    pub uid: u64,
    pub engine: Engine,
    pub shard_count: u32,
    pub anchors: Vec<u64>,
    pub fsid: u64,
    pub boot_counter: u64,
    pub options: FsOptions,
    pub space: space::Space,
    /// Round-robin choice of the shard for new directories.
    pub next_dir_shard: AtomicU32,
    /// Writes behind that failed after their reply in this boot (fewer
    /// than 2^16, see `write_behind.rs`); part of the write verifier.
    pub write_failures: AtomicU64,
    /// Bounds on each reactor's writes behind (from `options`, the DMA
    /// pool's size and the reactor count).
    pub behind_limits: behind::Limits,
}

/// A handle to a mounted file system; cheap to clone, usable on any reactor.
#[derive(Clone)]
pub struct Fs {
    pub(crate) shared: Arc<FsShared>,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs").field("fsid", &self.shared.fsid).field("boot", &self.shared.boot_counter).finish()
    }
}

impl Fs {
    /// Opens the file system on `engine`, creating it if the engine holds
    /// none, and counts this opening in its boot counter (durably, before
    /// returning). Runs on a reactor.
    pub async fn open(engine: Engine, options: FsOptions) -> FsResult<Fs> {
        let shard_count = engine.shard_count();
        let anchors = keys::anchors(shard_count);
        let sb = superblock::open(&engine, &anchors).await?;
        let space = space::Space::load(&engine, &anchors).await?;
        let reactors = keel_reactor::reactor_count();
        let behind_limits = write_behind::limits(options.writes_behind_max, engine.dma_pool_bytes(), reactors);
        let shared = Arc::new(FsShared {
            uid: NEXT_FS_UID.fetch_add(1, Ordering::Relaxed),
            engine,
            shard_count,
            anchors,
            fsid: sb.fsid,
            boot_counter: sb.boot_counter,
            options,
            space,
            next_dir_shard: AtomicU32::new(0),
            write_failures: AtomicU64::new(0),
            behind_limits,
        });
        let fs = Fs { shared };
        freer::start(&fs).await?;
        tracing::info!(fsid = format_args!("{:#x}", fs.shared.fsid), boot = fs.shared.boot_counter, "file system open");
        Ok(fs)
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    pub fn fsid(&self) -> u64 {
        self.shared.fsid
    }

    pub fn root(&self) -> InodeRef {
        InodeRef { ino: ROOT_INO, generation: superblock::ROOT_GENERATION }
    }

    /// Times this file system was opened. Unstable writes can only be lost
    /// across a reopen, so the NFS write verifier is derived from it.
    pub fn boot_counter(&self) -> u64 {
        self.shared.boot_counter
    }

    pub fn shard_of(&self, ino: u64) -> u32 {
        keys::shard_of_ino(ino, self.shared.shard_count)
    }

    pub(crate) fn anchor(&self, shard: u32) -> u64 {
        self.shared.anchors[shard as usize]
    }

    fn reactor_of(&self, shard: u32) -> usize {
        route::reactor_of(shard, keel_reactor::reactor_count())
    }

    /// Runs `f` on the reactor of `ino`'s shard.
    pub(crate) async fn on_home<F, Fut, T>(&self, ino: u64, f: F) -> FsResult<T>
    where
        F: FnOnce(Fs) -> Fut + Send + 'static,
        Fut: Future<Output = FsResult<T>> + 'static,
        T: Send + 'static,
    {
        self.on_shard(self.shard_of(ino), f).await
    }

    pub(crate) async fn on_shard<F, Fut, T>(&self, shard: u32, f: F) -> FsResult<T>
    where
        F: FnOnce(Fs) -> Fut + Send + 'static,
        Fut: Future<Output = FsResult<T>> + 'static,
        T: Send + 'static,
    {
        let fs = self.clone();
        keel_reactor::call_on(self.reactor_of(shard), move || f(fs)).await?
    }

    /// Waits until the change with `lsn` is durable.
    pub async fn wait_durable(&self, lsn: Lsn) -> FsResult<()> {
        Ok(self.shared.engine.wait_durable(lsn).await?)
    }

    /// The inode `ino`, if it exists, once the writes behind of it that
    /// were answered before this call have committed (see `behind.rs`). On
    /// any reactor: those writes are known on the inode's home reactor only
    /// (a hard link or a renamed file can be named from a directory homed
    /// elsewhere), so the whole load runs there, in place of the call to
    /// that reactor the read of its attributes would make anyway.
    pub(crate) async fn load(&self, ino: u64) -> FsResult<Option<Inode>> {
        if self.is_home_here(ino) {
            return self.load_here(ino).await;
        }
        self.on_home(ino, move |fs| async move { fs.load_here(ino).await }).await
    }

    /// Waits, on any reactor, for the writes behind of `ino` answered
    /// before this call to commit: for an operation that returns `ino`'s
    /// attributes from a transaction on another inode's reactor (LINK).
    pub(crate) async fn settle_anywhere(&self, ino: u64) -> FsResult<()> {
        if self.is_home_here(ino) {
            behind::settle(self.shared.uid, ino).await;
            return Ok(());
        }
        self.on_home(ino, move |fs| async move {
            behind::settle(fs.shared.uid, ino).await;
            Ok(())
        })
        .await
    }

    fn is_home_here(&self, ino: u64) -> bool {
        self.reactor_of(self.shard_of(ino)) == keel_reactor::reactor_id()
    }

    /// [`Fs::load`] on `ino`'s home reactor.
    async fn load_here(&self, ino: u64) -> FsResult<Option<Inode>> {
        behind::settle(self.shared.uid, ino).await;
        self.load_unsettled(ino).await
    }

    /// [`Fs::load`] without waiting for writes behind: for a WRITE's access
    /// check, which must not wait for the writes before it.
    pub(crate) async fn load_unsettled(&self, ino: u64) -> FsResult<Option<Inode>> {
        let bytes = self.shared.engine.get(&keys::attr(ino)).await?;
        bytes.map(|b| Inode::decode(ino, &b).map_err(FsError::Io)).transpose()
    }

    /// The inode a handle names; STALE when it is gone or was replaced.
    pub(crate) async fn load_ref(&self, r: InodeRef) -> FsResult<Inode> {
        match self.load(r.ino).await? {
            Some(inode) if inode.generation == r.generation => Ok(inode),
            _ => Err(FsError::Stale),
        }
    }

    /// Current attributes of the inode a handle names.
    pub async fn getattr(&self, r: InodeRef) -> FsResult<Inode> {
        self.on_home(r.ino, move |fs| async move { fs.load_ref(r).await }).await
    }
}

/// Reads an inode inside a transaction (after locking its attribute key).
pub(crate) async fn txn_load(txn: &mut Transaction, ino: u64) -> FsResult<Option<Inode>> {
    let bytes = txn.get(&keys::attr(ino)).await?;
    bytes.map(|b| Inode::decode(ino, &b).map_err(FsError::Io)).transpose()
}

/// [`txn_load`] for a handle: STALE when gone or replaced.
pub(crate) async fn txn_load_ref(txn: &mut Transaction, r: InodeRef) -> FsResult<Inode> {
    match txn_load(txn, r.ino).await? {
        Some(inode) if inode.generation == r.generation => Ok(inode),
        _ => Err(FsError::Stale),
    }
}

pub(crate) fn txn_store(txn: &mut Transaction, inode: &Inode) -> FsResult<()> {
    txn.put(&keys::attr(inode.ino), inode.encode())?;
    Ok(())
}
