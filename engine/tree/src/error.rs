//! Typed errors of the tree. Corruption and device failures carry what was
//! being read and where, so a failed operation says which block is bad; none
//! of them is ever turned into data.

use keel_drivers::dma::DmaError;
use keel_drivers::IoError;

use crate::codec::Malformed;

/// What kind of block an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    Leaf,
    Internal,
    /// A node whose kind was not yet known when it failed.
    Node,
    /// A page of the indirection table.
    Table,
    /// A page of the space map (allocation bitmap).
    SpaceMap,
    /// The checkpoint directory (roots of the table and the space map).
    Directory,
    /// An out-of-line value.
    Extent,
    /// The 96-byte shard state from the superblock.
    State,
}

impl std::fmt::Display for BlockKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlockKind::Leaf => "leaf",
            BlockKind::Internal => "internal node",
            BlockKind::Node => "node",
            BlockKind::Table => "indirection table page",
            BlockKind::SpaceMap => "space map page",
            BlockKind::Directory => "checkpoint directory",
            BlockKind::Extent => "value extent",
            BlockKind::State => "shard state",
        })
    }
}

/// Why a block read from the device was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptReason {
    /// The bytes do not match the checksum the reference carries (torn,
    /// corrupt, lost or misdirected write).
    Checksum { expected: u32, found: u32 },
    /// The block is intact but says it is another block (misdirected write).
    WrongIdentity { expected: u64, found: u64 },
    /// The block is intact but from another write (lost write: an older
    /// version is still in place).
    WrongGeneration { expected: u64, found: u64 },
    /// The checksum matched but the contents do not decode or break an
    /// invariant.
    Malformed(Malformed),
    /// A reference points outside the shard's region.
    OutOfRegion { pages: u64 },
    /// Some other invariant failed.
    Invariant(&'static str),
}

impl std::fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorruptReason::Checksum { expected, found } => {
                write!(f, "checksum mismatch (expected {expected:#010x}, found {found:#010x})")
            }
            CorruptReason::WrongIdentity { expected, found } => {
                write!(f, "block identifies as {found}, expected {expected} (misdirected write)")
            }
            CorruptReason::WrongGeneration { expected, found } => {
                write!(f, "block has generation {found}, expected {expected} (lost or stale write)")
            }
            CorruptReason::Malformed(m) => write!(f, "{m}"),
            CorruptReason::OutOfRegion { pages } => write!(f, "reference outside the region of {pages} pages"),
            CorruptReason::Invariant(what) => write!(f, "invariant broken: {what}"),
        }
    }
}

/// Everything a tree operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("key of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    KeyTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("value of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    ValueTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("inline value of {len_bytes} bytes exceeds the inline limit of {max_bytes} bytes; write it as an extent")]
    InlineTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("merge operand of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    MergeTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("field name of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    FieldTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("range delete end of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    RangeEndTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("no space left in the shard's region: {needed_pages} pages needed, {free_pages} usable")]
    NoSpace { needed_pages: u64, free_pages: u64 },
    #[error("{what} at page {address}: {source}")]
    Io { what: BlockKind, address: u64, source: IoError },
    #[error("corrupt {what} at page {address}: {reason}")]
    Corrupt { what: BlockKind, address: u64, reason: CorruptReason },
    #[error("DMA buffers: {0}")]
    Dma(#[from] DmaError),
    #[error("the node cache of {budget_bytes} bytes cannot make room for {needed_bytes} bytes (every node is pinned or being written)")]
    CacheTooSmall { needed_bytes: usize, budget_bytes: usize },
    #[error("extent at page {address} ({pages} pages) overlaps space already in use")]
    ExtentConflict { address: u64, pages: u64 },
    #[error("invalid tree configuration: {0}")]
    Config(String),
}

impl TreeError {
    pub(crate) fn corrupt(what: BlockKind, address: u64, reason: CorruptReason) -> TreeError {
        TreeError::Corrupt { what, address, reason }
    }

    /// True for errors that mean the device returned bad or no data, as
    /// opposed to a request the caller can fix.
    pub fn is_media_error(&self) -> bool {
        matches!(self, TreeError::Io { .. } | TreeError::Corrupt { .. })
    }
}

pub type Result<T, E = TreeError> = std::result::Result<T, E>;
