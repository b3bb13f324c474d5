//! Keel's copy-on-write Bε-tree: one per shard, owned by one reactor.
//!
//! What it owns: the shard's data region (nodes, out-of-line values, the
//! indirection table, the space map, checkpoint directories), its node cache
//! and its allocator. What it must never do: assume writes are durable
//! before a flush the engine issues, reuse space a durable checkpoint may
//! still reference, return bytes that failed verification, or panic on
//! anything read from a device.
//!
//! The engine drives it:
//! - [`Tree::open`] at the checkpoint the superblock names;
//! - [`Tree::make_room`] before reserving a journal LSN, then
//!   [`Tree::apply`] / [`Tree::apply_delete_range`] in LSN order, in memory;
//! - [`Tree::write_extent`] for values above the inline limit (the returned
//!   [`ExtentRef`] travels through the journal in a put);
//! - [`Tree::get`], [`Tree::read_range`], [`Tree::scan`] for reads;
//! - [`Tree::freeze`], [`Tree::write_checkpoint`], then (after the
//!   superblock is durable) [`Tree::checkpoint_durable`];
//! - at recovery, [`Tree::adopt_extent`] for every extent the replayed
//!   records name, before replaying them.
//!
//! Inside: internal nodes hold pivots, child ids and one message buffer per
//! child (`internal.rs`, `buffer.rs`); leaves hold sorted entries in their
//! serialized form (`leaf.rs`); an indirection table maps ids to checked
//! locations (`table.rs`); flushes go to the child with the most buffered
//! bytes and splits and merges keep the shape (`shape.rs`); a cache with a
//! byte budget writes dirty nodes back to fresh places (`cache.rs`,
//! `maintenance.rs`), mostly from a background task (`background.rs`); checkpoints freeze and write the image while work
//! goes on (`checkpoint.rs`). The byte layout is in docs/FORMAT.md, "Tree".

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod background;
mod buffer;
mod cache;
mod checkpoint;
mod codec;
mod config;
mod error;
mod extent;
mod filter;
mod fsck;
mod heads;
mod internal;
mod leaf;
pub mod limits;
mod lookup;
mod maintenance;
pub mod merge;
mod message;
mod node;
mod pages;
mod pending;
mod read;
mod region;
mod shape;
mod space;
mod state;
mod stats;
mod sync;
mod table;
mod tree;
mod write_runs;

pub use checkpoint::Frozen;
pub use codec::Malformed;
pub use config::TreeConfig;
pub use error::{BlockKind, CorruptReason, Result, TreeError};
pub use fsck::{BlockInfo, FsckProgress, FsckReport, LevelShape};
pub use maintenance::Admission;
pub use message::{ExtentRef, MergeOp, Message, Value, EXTENT_REF_BYTES};
pub use stats::{Counters, TreeStats};
pub use tree::Tree;
