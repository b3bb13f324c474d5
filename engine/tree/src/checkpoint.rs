//! Checkpoints: freezing the tree, writing the frozen image to fresh places
//! while foreground work goes on, and opening a tree from a checkpoint.
//!
//! `freeze` (synchronous) marks every dirty node *frozen* and snapshots the
//! indirection table and the space map; a frozen node that is changed before
//! the writer got to it is copied first (write-back-before-edit), so the
//! writer always writes the node as it was at the freeze. `write_checkpoint`
//! then writes the frozen nodes, the table pages and space-map pages that
//! differ from the durable checkpoint's, and a directory naming them all,
//! and returns the 96-byte state for the superblock. Space the previous
//! checkpoint used and this one does not is reused only after
//! `checkpoint_durable`.
//!
//! Directory (see FORMAT.md, "Tree"): magic `KTDR`, version (u32),
//! generation (u64), lsn_applied, root id, next node id, next generation,
//! region pages (u64 each), height, table page count, space-map page count,
//! reserved (u32 each), then the locations (24 bytes each) of the table
//! pages and of the space-map pages.

use keel_drivers::checksum;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use crate::codec::{put_u32, put_u64, Malformed, Reader};
use crate::error::{BlockKind, CorruptReason, Result, TreeError};
use crate::internal::NodeId;
use crate::limits::{pages_for, PAGE_BYTES, STATE_BYTES};
use crate::node::Node;
use crate::region::Region;
use crate::space::{decode_chunk, encode_chunk, Space, SpaceMap};
use crate::state::ShardState;
use crate::sync::join_all;
use crate::table::{decode_page, encode_page, Location, Table};
use crate::tree::{Ids, Shared, State, Tree, Work};

const DIR_MAGIC: [u8; 4] = *b"KTDR";
const DIR_VERSION: u32 = 1;
const DIR_HEADER_BYTES: usize = 72;

/// What a checkpoint on the device consists of.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub lsn_applied: u64,
    pub root: NodeId,
    pub height: u8,
    pub table: Table,
    pub table_locs: Vec<Location>,
    pub map: SpaceMap,
    pub chunk_locs: Vec<Location>,
    pub directory: Location,
}

impl Image {
    /// Every page range the image's metadata occupies.
    pub fn metadata(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.table_locs
            .iter()
            .chain(&self.chunk_locs)
            .chain(std::iter::once(&self.directory))
            .map(|l| (l.address, l.pages()))
    }
}

/// The checkpoint being written.
#[derive(Debug)]
pub(crate) struct InProgress {
    seq: u64,
    lsn_applied: u64,
    root: NodeId,
    height: u8,
    next_node_id: u64,
    frozen: Vec<NodeId>,
    table: Table,
    map: SpaceMap,
    /// Metadata pages written for this image so far (freed if it fails).
    meta_new: Vec<(u64, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct CkptState {
    pub seq: u64,
    pub in_progress: Option<InProgress>,
    /// Copies of frozen nodes changed before the writer reached them.
    pub captures: HashMap<NodeId, Node>,
    /// The checkpoint the last durable superblock names (or the tree was
    /// opened from): what fsck checks and what unchanged pages are shared with.
    pub durable: Option<Image>,
    /// Written and returned to the engine; durable once it says so.
    pub written: Option<(Image, Vec<(u64, u64)>)>,
}

/// A checkpoint image captured by [`Tree::freeze`]; hand it to
/// [`Tree::write_checkpoint`]. Dropping it unwritten abandons the checkpoint.
#[derive(Debug)]
pub struct Frozen {
    sh: Weak<Shared>,
    seq: u64,
    lsn_applied: u64,
    consumed: bool,
}

impl Frozen {
    pub fn lsn_applied(&self) -> u64 {
        self.lsn_applied
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if self.consumed {
            return;
        }
        if let Some(sh) = self.sh.upgrade() {
            if let Ok(mut st) = sh.st.try_borrow_mut() {
                abort_in_progress(&mut st, self.seq);
            }
        }
    }
}

impl Tree {
    /// Captures the checkpoint image of everything applied so far, which the
    /// engine says is exactly the journal up to `lsn_applied`. Synchronous
    /// and cheap: nodes are marked, the table and space map shared.
    pub fn freeze(&self, lsn_applied: u64) -> Frozen {
        let mut st = self.sh.st.borrow_mut();
        assert!(st.ckpt.in_progress.is_none(), "freeze while another checkpoint is being written");
        if let Some((img, meta_freed)) = st.ckpt.written.take() {
            tracing::warn!("a written checkpoint was never made durable; abandoning it");
            abandon_written(&mut st, img, meta_freed);
        }
        debug_assert!(
            st.lsn_applied <= lsn_applied,
            "records past the checkpoint LSN were applied: {} > {}",
            st.lsn_applied,
            lsn_applied
        );
        st.lsn_applied = st.lsn_applied.max(lsn_applied);
        let mut dirty: Vec<NodeId> = st.cache.iter().filter(|(_, s)| s.dirty).map(|(id, _)| id).collect();
        // Sorted, so that a run's writes (and its addresses) repeat exactly.
        dirty.sort_unstable();
        for id in &dirty {
            st.cache.slot_mut(*id).expect("listed above").frozen = true;
        }
        st.ckpt.seq += 1;
        let seq = st.ckpt.seq;
        let map = st.space.freeze();
        let progress = InProgress {
            seq,
            lsn_applied,
            root: st.root,
            height: st.height,
            next_node_id: st.ids.next,
            frozen: dirty,
            table: st.table.clone(),
            map,
            meta_new: Vec::new(),
        };
        st.ckpt.in_progress = Some(progress);
        Frozen { sh: Rc::downgrade(&self.sh), seq, lsn_applied, consumed: false }
    }

    /// Writes the frozen image (nodes, then table and space-map pages, then
    /// the directory) and returns the shard state naming it. Every write has
    /// completed on return; the engine then flushes the device, writes the
    /// superblock, flushes again and calls [`Tree::checkpoint_durable`].
    pub async fn write_checkpoint(&self, mut frozen: Frozen) -> Result<[u8; STATE_BYTES]> {
        frozen.consumed = true;
        // Undoes the checkpoint if this future fails or is dropped midway.
        let mut guard =
            Frozen { sh: Rc::downgrade(&self.sh), seq: frozen.seq, lsn_applied: frozen.lsn_applied, consumed: false };
        let result = self.write_image().await;
        if result.is_ok() {
            guard.consumed = true;
        } else {
            drop(guard);
            self.sh.progress.notify();
        }
        result
    }

    /// The checkpoint last written is durable (its superblock is on stable
    /// media): space it no longer references may now be reused.
    pub fn checkpoint_durable(&self) {
        let mut st = self.sh.st.borrow_mut();
        let Some((img, _)) = st.ckpt.written.take() else {
            tracing::warn!("checkpoint_durable without a written checkpoint");
            return;
        };
        st.space.checkpoint_durable();
        st.adopted.clear();
        st.ckpt.durable = Some(img);
    }

    /// The checkpoint last written could not be made durable (its superblock
    /// write failed): its space is reclaimed once a later one is durable.
    pub fn checkpoint_abandoned(&self) {
        let mut st = self.sh.st.borrow_mut();
        if let Some((img, meta_freed)) = st.ckpt.written.take() {
            abandon_written(&mut st, img, meta_freed);
        }
    }

    async fn write_image(&self) -> Result<[u8; STATE_BYTES]> {
        let ids = {
            let st = self.sh.st.borrow();
            st.ckpt.in_progress.as_ref().map(|p| p.frozen.clone()).expect("a frozen checkpoint")
        };
        for batch in ids.chunks(self.sh.config.write_depth) {
            self.write_frozen_nodes(batch).await?;
        }
        let table_locs = self.write_table_pages().await?;
        let (dir_address, dir_pages) = self.alloc_directory(table_locs.len())?;
        let chunk_locs = self.write_space_map().await?;
        let directory = self.write_directory(dir_address, dir_pages, &table_locs, &chunk_locs).await?;
        Ok(self.finish_image(table_locs, chunk_locs, directory))
    }

    /// Writes a batch of frozen nodes (or their copies) to fresh places.
    async fn write_frozen_nodes(&self, batch: &[NodeId]) -> Result<()> {
        let mut jobs = Vec::with_capacity(batch.len());
        {
            let mut st = self.sh.st.borrow_mut();
            for &id in batch {
                let (bytes, version) = match st.ckpt.captures.remove(&id) {
                    Some(copy) => {
                        st.cache.extra_bytes -= copy.mem_bytes();
                        let generation = st.generation();
                        (copy.serialize(id, generation), None)
                    }
                    None => {
                        let generation = st.generation();
                        let slot = st.cache.slot_mut(id).filter(|s| s.frozen).ok_or_else(|| {
                            TreeError::corrupt(
                                BlockKind::Node,
                                0,
                                CorruptReason::Invariant("a frozen node left the cache"),
                            )
                        })?;
                        slot.frozen = false;
                        slot.ckpt_writing = true;
                        (slot.node.serialize(id, generation), Some(slot.version))
                    }
                };
                let generation = crate::codec::get_u64(&bytes, 16);
                let at = self.alloc_for_image(&mut st, bytes.len(), generation, checksum::crc32c(&bytes))?;
                jobs.push((id, version, at, bytes));
            }
        }
        let writes =
            jobs.iter().map(|(_, _, at, bytes)| self.sh.region.write(BlockKind::Node, at.address, bytes)).collect();
        let results = join_all(writes).await;
        let mut st = self.sh.st.borrow_mut();
        let mut first_err = None;
        for ((id, version, at, bytes), result) in jobs.into_iter().zip(results) {
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
            st.counters.node_writes += 1;
            st.counters.node_write_bytes += bytes.len() as u64;
            st.counters.count_node_write(crate::node::is_leaf_image(&bytes), true, bytes.len());
            if let Some(p) = st.ckpt.in_progress.as_mut() {
                p.table.set(id, at);
            }
            let live = version.and_then(|v| {
                let slot = st.cache.slot_mut(id)?;
                slot.ckpt_writing = false;
                Some(slot.version == v && slot.dirty)
            });
            if live == Some(true) && first_err.is_none() {
                st.table.set(id, at);
                st.cache.set_dirty(id, false);
            } else {
                // Only the image refers to this copy: free it once a later
                // checkpoint is durable.
                st.space.free_deferred(at.address, at.pages());
            }
        }
        drop(st);
        self.sh.progress.notify();
        first_err.map_or(Ok(()), Err)
    }

    /// Allocates pages that the image being written refers to.
    fn alloc_for_image(&self, st: &mut State, len: usize, generation: u64, crc32c: u32) -> Result<Location> {
        let pages = pages_for(len).max(1);
        let Some(address) = st.space.alloc(pages) else {
            return Err(TreeError::NoSpace { needed_pages: pages, free_pages: st.space.map.free_pages() });
        };
        let p = st.ckpt.in_progress.as_mut().expect("a checkpoint in progress");
        p.map.mark_used(address, pages);
        Ok(Location { address, length: len as u32, crc32c, generation })
    }

    /// Writes the table pages that differ from the durable checkpoint's.
    async fn write_table_pages(&self) -> Result<Vec<Location>> {
        let mut locs = Vec::new();
        let mut writes = Vec::new();
        {
            let mut st = self.sh.st.borrow_mut();
            let pages: Vec<_> = st.ckpt.in_progress.as_ref().expect("in progress").table.pages().to_vec();
            for (i, page) in pages.iter().enumerate() {
                let prev = st.ckpt.durable.as_ref().and_then(|d| {
                    let same = d.table.pages().get(i).is_some_and(|p| **p == **page);
                    Some((same, *d.table_locs.get(i)?))
                });
                if let Some((true, loc)) = prev {
                    locs.push(loc);
                    continue;
                }
                let generation = st.generation();
                let bytes = encode_page(page, i as u32, generation);
                let at = self.alloc_for_image(&mut st, bytes.len(), generation, checksum::crc32c(&bytes))?;
                self.replace_metadata(&mut st, prev.map(|(_, l)| l), at);
                locs.push(at);
                writes.push((at, bytes));
            }
        }
        self.write_all(BlockKind::Table, writes).await?;
        Ok(locs)
    }

    /// Records a new metadata page and, if it replaces one of the durable
    /// checkpoint's, drops the old one from the image.
    fn replace_metadata(&self, st: &mut State, old: Option<Location>, new: Location) {
        let p = st.ckpt.in_progress.as_mut().expect("in progress");
        p.meta_new.push((new.address, new.pages()));
        if let Some(old) = old {
            p.map.mark_free(old.address, old.pages());
        }
    }

    fn alloc_directory(&self, table_pages: usize) -> Result<(u64, u64)> {
        let mut st = self.sh.st.borrow_mut();
        let chunks = st.space.map.chunks().len();
        let len = DIR_HEADER_BYTES + (table_pages + chunks) * 24;
        let pages = pages_for(len);
        let Some(address) = st.space.alloc(pages) else {
            return Err(TreeError::NoSpace { needed_pages: pages, free_pages: st.space.map.free_pages() });
        };
        let old = st.ckpt.durable.as_ref().map(|d| d.directory);
        let p = st.ckpt.in_progress.as_mut().expect("in progress");
        p.map.mark_used(address, pages);
        p.meta_new.push((address, pages));
        if let Some(old) = old {
            p.map.mark_free(old.address, old.pages());
        }
        Ok((address, pages))
    }

    /// Writes the space-map pages that differ from the durable checkpoint's.
    /// Allocating pages for them changes the map, so this repeats until no
    /// further page changes.
    async fn write_space_map(&self) -> Result<Vec<Location>> {
        let (locs, writes) = {
            let mut st = self.sh.st.borrow_mut();
            let fresh = self.place_space_map(&mut st)?;
            self.space_map_writes(&mut st, fresh)
        };
        self.write_all(BlockKind::SpaceMap, writes).await?;
        Ok(locs)
    }

    /// Gives each space-map page that differs from the durable one a fresh
    /// page. Allocating changes the map, so this repeats until nothing more
    /// changes (each page moves at most once, so it ends).
    fn place_space_map(&self, st: &mut State) -> Result<Vec<Option<u64>>> {
        let n = st.ckpt.in_progress.as_ref().expect("in progress").map.chunks().len();
        let mut fresh: Vec<Option<u64>> = vec![None; n];
        loop {
            let mut changed = false;
            for (c, slot) in fresh.iter_mut().enumerate() {
                if slot.is_some() {
                    continue;
                }
                let prev = st
                    .ckpt
                    .durable
                    .as_ref()
                    .and_then(|d| Some((d.map.chunks().get(c)?.clone(), *d.chunk_locs.get(c)?)));
                let now = st.ckpt.in_progress.as_ref().expect("in progress").map.chunks()[c].clone();
                if prev.as_ref().is_some_and(|(chunk, _)| **chunk == *now) {
                    continue;
                }
                let Some(address) = st.space.alloc(1) else {
                    return Err(TreeError::NoSpace { needed_pages: 1, free_pages: st.space.map.free_pages() });
                };
                let p = st.ckpt.in_progress.as_mut().expect("in progress");
                p.map.mark_used(address, 1);
                p.meta_new.push((address, 1));
                if let Some((_, old)) = prev {
                    p.map.mark_free(old.address, old.pages());
                }
                *slot = Some(address);
                changed = true;
            }
            if !changed {
                return Ok(fresh);
            }
        }
    }

    /// The final locations of the space-map pages and the writes to make.
    fn space_map_writes(&self, st: &mut State, fresh: Vec<Option<u64>>) -> (Vec<Location>, Vec<(Location, Vec<u8>)>) {
        let mut locs = Vec::with_capacity(fresh.len());
        let mut writes = Vec::new();
        for (c, slot) in fresh.into_iter().enumerate() {
            let chunk = st.ckpt.in_progress.as_ref().expect("in progress").map.chunks()[c].clone();
            match slot {
                None => locs.push(st.ckpt.durable.as_ref().expect("unchanged implies a durable image").chunk_locs[c]),
                Some(address) => {
                    let generation = st.generation();
                    let bytes = encode_chunk(&chunk, c as u32, generation);
                    let at =
                        Location { address, length: PAGE_BYTES as u32, crc32c: crc32c::crc32c(&bytes), generation };
                    locs.push(at);
                    writes.push((at, bytes));
                }
            }
        }
        (locs, writes)
    }

    async fn write_directory(
        &self,
        address: u64,
        pages: u64,
        tables: &[Location],
        chunks: &[Location],
    ) -> Result<Location> {
        let (bytes, generation) = {
            let mut st = self.sh.st.borrow_mut();
            let generation = st.generation();
            let p = st.ckpt.in_progress.as_ref().expect("in progress");
            let header = DirHeader {
                generation,
                lsn_applied: p.lsn_applied,
                root: p.root,
                next_node_id: p.next_node_id,
                next_generation: st.next_generation + 1,
                region_pages: st.space.map.pages(),
                height: p.height,
            };
            (encode_directory(&header, tables, chunks), generation)
        };
        debug_assert!(pages_for(bytes.len()) <= pages);
        let at = Location { address, length: bytes.len() as u32, crc32c: crc32c::crc32c(&bytes), generation };
        self.write_all(BlockKind::Directory, vec![(at, bytes)]).await?;
        Ok(at)
    }

    async fn write_all(&self, kind: BlockKind, writes: Vec<(Location, Vec<u8>)>) -> Result<()> {
        for batch in writes.chunks(self.sh.config.write_depth) {
            let futures = batch.iter().map(|(at, bytes)| self.sh.region.write(kind, at.address, bytes)).collect();
            for r in join_all(futures).await {
                r?;
            }
            let mut st = self.sh.st.borrow_mut();
            st.counters.meta_writes += batch.len() as u64;
            st.counters.meta_write_bytes += batch.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        }
        Ok(())
    }

    /// The image is on the device: record it and build the shard state.
    fn finish_image(
        &self,
        table_locs: Vec<Location>,
        chunk_locs: Vec<Location>,
        directory: Location,
    ) -> [u8; STATE_BYTES] {
        let mut st = self.sh.st.borrow_mut();
        let p = st.ckpt.in_progress.take().expect("in progress");
        let next_generation = st.next_generation + 1;
        st.next_generation = next_generation;
        let mut meta_freed = Vec::new();
        if let Some(d) = &st.ckpt.durable {
            let kept: std::collections::HashSet<u64> =
                table_locs.iter().chain(&chunk_locs).map(|l| l.address).collect();
            meta_freed = d.metadata().filter(|(a, _)| !kept.contains(a)).collect();
        }
        for &(a, n) in &meta_freed {
            st.space.free_at_frozen(a, n);
        }
        let pages = st.space.map.pages();
        let state = ShardState {
            lsn_applied: p.lsn_applied,
            directory,
            root: p.root,
            next_node_id: p.next_node_id,
            next_generation,
            region_pages: pages,
            pages_in_use: pages - p.map.free_pages(),
            height: u32::from(p.height),
        };
        let img = Image {
            lsn_applied: p.lsn_applied,
            root: p.root,
            height: p.height,
            table: p.table,
            table_locs,
            map: p.map,
            chunk_locs,
            directory,
        };
        st.ckpt.written = Some((img, meta_freed));
        st.counters.checkpoints += 1;
        state.encode()
    }
}

/// Undoes a checkpoint that failed or was dropped before it was written:
/// frozen nodes stay dirty for the next one.
fn abort_in_progress(st: &mut State, seq: u64) {
    let Some(p) = st.ckpt.in_progress.take_if(|p| p.seq == seq) else { return };
    for id in &p.frozen {
        if let Some(slot) = st.cache.slot_mut(*id) {
            slot.frozen = false;
            slot.ckpt_writing = false;
        }
    }
    let captures = std::mem::take(&mut st.ckpt.captures);
    for node in captures.values() {
        st.cache.extra_bytes -= node.mem_bytes();
    }
    for (a, n) in p.meta_new {
        st.space.free_now(a, n);
    }
    st.space.checkpoint_failed();
}

/// A written checkpoint that will not become durable: neither it nor the
/// durable one may share metadata with the next checkpoint, so both are
/// released once that one is durable, and the next writes all its metadata.
fn abandon_written(st: &mut State, img: Image, meta_freed: Vec<(u64, u64)>) {
    st.space.cancel_at_frozen(&meta_freed);
    st.space.checkpoint_failed();
    let mut release: Vec<(u64, u64)> = img.metadata().collect();
    if let Some(d) = st.ckpt.durable.take() {
        release.extend(d.metadata());
    }
    release.sort_unstable();
    release.dedup();
    for (a, n) in release {
        st.space.free_deferred(a, n);
    }
}

/// Pages a checkpoint may need for metadata, at most.
pub(crate) fn metadata_pages_max(st: &State) -> u64 {
    let tables = st.table.pages().len() as u64;
    let chunks = st.space.map.chunks().len() as u64;
    tables + chunks + pages_for(DIR_HEADER_BYTES + (tables + chunks) as usize * 24)
}

struct DirHeader {
    generation: u64,
    lsn_applied: u64,
    root: NodeId,
    next_node_id: u64,
    next_generation: u64,
    region_pages: u64,
    height: u8,
}

fn encode_directory(h: &DirHeader, tables: &[Location], chunks: &[Location]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DIR_HEADER_BYTES + (tables.len() + chunks.len()) * 24);
    out.extend_from_slice(&DIR_MAGIC);
    put_u32(&mut out, DIR_VERSION);
    put_u64(&mut out, h.generation);
    put_u64(&mut out, h.lsn_applied);
    put_u64(&mut out, h.root.0);
    put_u64(&mut out, h.next_node_id);
    put_u64(&mut out, h.next_generation);
    put_u64(&mut out, h.region_pages);
    put_u32(&mut out, u32::from(h.height));
    put_u32(&mut out, tables.len() as u32);
    put_u32(&mut out, chunks.len() as u32);
    put_u32(&mut out, 0);
    debug_assert_eq!(out.len(), DIR_HEADER_BYTES);
    for l in tables.iter().chain(chunks) {
        l.encode(&mut out);
    }
    out
}

fn decode_directory(bytes: &[u8]) -> Result<(DirHeader, Vec<Location>, Vec<Location>), Malformed> {
    let mut r = Reader::new(bytes);
    if r.take(4, "directory magic")? != DIR_MAGIC || r.u32("directory version")? != DIR_VERSION {
        return Err(Malformed("directory magic or version"));
    }
    let generation = r.u64("directory generation")?;
    let lsn_applied = r.u64("lsn")?;
    let root = NodeId(r.u64("root")?);
    let next_node_id = r.u64("next node id")?;
    let next_generation = r.u64("next generation")?;
    let region_pages = r.u64("region pages")?;
    let height = u8::try_from(r.u32("height")?).map_err(|_| Malformed("height"))?;
    let tables = r.u32("table page count")? as usize;
    let chunks = r.u32("space page count")? as usize;
    r.u32("reserved")?;
    if (tables + chunks) * 24 != r.remaining() {
        return Err(Malformed("directory length"));
    }
    let mut locs = Vec::with_capacity(tables + chunks);
    for _ in 0..tables + chunks {
        locs.push(Location::decode(&mut r)?);
    }
    let chunk_locs = locs.split_off(tables);
    let h = DirHeader { generation, lsn_applied, root, next_node_id, next_generation, region_pages, height };
    Ok((h, locs, chunk_locs))
}

/// Reads a checkpoint (directory, table pages, space map) for `open`.
pub(crate) async fn load(region: &Region, s: &ShardState) -> Result<State> {
    let bad_state = |what| TreeError::corrupt(BlockKind::State, 0, CorruptReason::Invariant(what));
    if s.region_pages != region.pages {
        return Err(TreeError::Config(format!(
            "the checkpoint is for a region of {} pages, not {}",
            s.region_pages, region.pages
        )));
    }
    let dir = read_verified(region, BlockKind::Directory, &s.directory).await?;
    let malformed = |m| TreeError::corrupt(BlockKind::Directory, s.directory.address, CorruptReason::Malformed(m));
    let (h, table_locs, chunk_locs) = decode_directory(&dir).map_err(malformed)?;
    if h.generation != s.directory.generation {
        return Err(TreeError::corrupt(
            BlockKind::Directory,
            s.directory.address,
            CorruptReason::WrongGeneration { expected: s.directory.generation, found: h.generation },
        ));
    }
    if h.root != s.root
        || h.lsn_applied != s.lsn_applied
        || h.region_pages != region.pages
        || u32::from(h.height) != s.height
    {
        return Err(bad_state("the directory disagrees with the shard state"));
    }
    let table_pages = read_pages(region, BlockKind::Table, &table_locs).await?;
    let mut pages = Vec::with_capacity(table_pages.len());
    for (i, (bytes, at)) in table_pages.iter().zip(&table_locs).enumerate() {
        pages.push(Rc::new(decode_page(bytes, i as u32, at)?));
    }
    let chunk_pages = read_pages(region, BlockKind::SpaceMap, &chunk_locs).await?;
    let mut chunks = Vec::with_capacity(chunk_pages.len());
    for (i, (bytes, at)) in chunk_pages.iter().zip(&chunk_locs).enumerate() {
        chunks.push(Rc::new(decode_chunk(bytes, i as u32, at)?));
    }
    let map = SpaceMap::from_chunks(chunks, region.pages)
        .map_err(|what| TreeError::corrupt(BlockKind::SpaceMap, 0, CorruptReason::Invariant(what)))?;
    let table = Table::from_pages(pages);
    let free: Vec<u64> = (1..h.next_node_id).rev().filter(|&id| table.get(NodeId(id)).is_none()).collect();
    if table.get(h.root).is_none() {
        return Err(bad_state("the root has no location"));
    }
    let image = Image {
        lsn_applied: h.lsn_applied,
        root: h.root,
        height: h.height,
        table: table.clone(),
        table_locs,
        map: map.clone(),
        chunk_locs,
        directory: s.directory,
    };
    Ok(State {
        root: h.root,
        height: h.height,
        lsn_applied: h.lsn_applied,
        next_generation: h.next_generation.max(s.next_generation),
        ids: Ids { next: h.next_node_id, free },
        table,
        space: Space::new(map),
        cache: Default::default(),
        unattached: Default::default(),
        adopted: Default::default(),
        work: Work::default(),
        ckpt: CkptState { durable: Some(image), ..Default::default() },
        counters: Default::default(),
    })
}

/// Reads one block and checks it against its location's checksum.
pub(crate) async fn read_verified(region: &Region, kind: BlockKind, at: &Location) -> Result<Vec<u8>> {
    if at.is_none() {
        return Err(TreeError::corrupt(kind, at.address, CorruptReason::Invariant("empty location")));
    }
    let bytes = region.read(kind, at.address, at.length as usize).await?;
    let found = crc32c::crc32c(&bytes);
    if found != at.crc32c {
        return Err(TreeError::corrupt(kind, at.address, CorruptReason::Checksum { expected: at.crc32c, found }));
    }
    Ok(bytes)
}

async fn read_pages(region: &Region, kind: BlockKind, locs: &[Location]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(locs.len());
    for batch in locs.chunks(64) {
        let reads = batch.iter().map(|at| read_verified(region, kind, at)).collect();
        for r in join_all(reads).await {
            out.push(r?);
        }
    }
    Ok(out)
}
