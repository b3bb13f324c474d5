//! Admission and maintenance: making room before a write is admitted, so
//! that `apply` never has to wait. The engine awaits [`Tree::make_room`]
//! before it reserves a journal LSN; it flushes buffers down, splits and
//! merges nodes, resolves out-of-line merges, and writes dirty nodes back to
//! fresh places to keep the cache within its budget. One task at a time does
//! this work (the maintenance lock); reads go on meanwhile.

use keel_drivers::checksum;
use keel_drivers::DmaBuf;

use crate::config::TreeConfig;
use crate::error::{BlockKind, Result, TreeError};
use crate::internal::NodeId;
use crate::leaf::ValueRef;
use crate::limits::{pages_for, PAGE_BYTES};
use crate::lookup::Step;
use crate::merge::apply_all;
use crate::message::{ExtentRef, MergeOp, Value};
use crate::node::Node;
use crate::shape::{flush_step, underflow_step, Pick};
use crate::sync::join_all;
use crate::table::Location;
use crate::tree::{PinGuard, State, Tree};
use crate::write_runs::contiguous_runs;

/// The most buffers one flush of an over-full node empties (and children
/// it reads at once).
const FLUSH_BATCH_MAX: usize = 8;

/// Over-full nodes below the root that may wait for the background task
/// before writers flush them themselves (they only cost cache, which the
/// budget check bounds; this bounds how far the backlog runs ahead).
const OVERFULL_BACKLOG_MAX: usize = 8;

/// Who is asking what maintenance is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Urgency {
    /// A writer that cannot be admitted until this is done: only what the
    /// next write needs (cache room, a root with room, a bounded backlog).
    Writer,
    /// The background task (`background.rs`): everything due, and
    /// evictions a little before the cache is full, so writers seldom wait.
    Background,
}

/// Which writes may use the space reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Ordinary writes: refused with `NoSpace` before the reserve is touched.
    Write,
    /// Deletes and other writes that free space: may use most of the reserve,
    /// so a full shard can still be emptied.
    Reclaim,
}

/// The next thing maintenance must do before a write of some size fits.
#[derive(Debug)]
pub(crate) enum Action {
    Done,
    NoSpace(TreeError),
    Evict(usize),
    Flush(NodeId, Vec<u8>, bool),
    Underflow(NodeId, Vec<u8>),
    Materialize(NodeId),
}

impl Tree {
    /// True when a write of about `bytes` (key + message) can be applied now.
    pub fn has_room(&self, bytes: usize, admission: Admission) -> bool {
        matches!(self.decide(bytes, admission, Urgency::Writer), Action::Done)
    }

    /// Does whatever is needed so that a write of about `bytes` fits: on
    /// return `apply` of such a message needs no I/O. Fails with `NoSpace`
    /// when the region is full (for `Admission::Write`, before the reserve),
    /// or with the error of a node it could not read or write.
    pub async fn make_room(&self, bytes: usize, admission: Admission) -> Result<()> {
        if !self.room_now(bytes, admission) {
            self.make_room_locked(bytes, admission).await?;
            self.kick_background();
        }
        Ok(())
    }

    /// [`Tree::make_room`] without waiting: true when a write of about
    /// `bytes` can be applied now (and then the background task is started
    /// if its work is due, as `make_room` does); false when `make_room` has
    /// work to do first. A writer that gets true and applies before its
    /// next await needs no second [`Tree::has_room`]: nothing ran in
    /// between. That saves one of the three budget checks (`decide`) a
    /// buffered insert made (BENCHMARKS.md, "Fill CPU (session 16, helper
    /// tree16)").
    pub fn room_now(&self, bytes: usize, admission: Admission) -> bool {
        let room = self.has_room(bytes, admission);
        if room {
            self.kick_background();
        }
        room
    }

    async fn make_room_locked(&self, bytes: usize, admission: Admission) -> Result<()> {
        let _guard = self.sh.maintenance.lock().await;
        let mut reclaimed = false;
        loop {
            match self.decide(bytes, admission, Urgency::Writer) {
                Action::Done => return Ok(()),
                Action::NoSpace(e) => {
                    if reclaimed || !self.reclaim_locked().await? {
                        return Err(e);
                    }
                    reclaimed = true;
                }
                action => self.run_action(action).await?,
            }
        }
    }

    /// Does one step of maintenance (not `Done` or `NoSpace`).
    pub(crate) async fn run_action(&self, action: Action) -> Result<()> {
        match action {
            Action::Done | Action::NoSpace(_) => Ok(()),
            Action::Evict(need) => self.evict_or_wait(need).await,
            Action::Flush(id, key, force) => self.flush_node(id, &key, force).await,
            Action::Underflow(id, key) => self.fix_underflow(id, &key).await,
            Action::Materialize(id) => {
                self.materialize(id).await;
                Ok(())
            }
        }
    }

    pub(crate) fn decide(&self, bytes: usize, admission: Admission, urgency: Urgency) -> Action {
        let cfg = &self.sh.config;
        let st = self.sh.st.borrow();
        let root = st.root_internal();
        let early = match urgency {
            Urgency::Writer => 0,
            Urgency::Background => cfg.cache_bytes / 16,
        };
        let (root_mem, root_bytes) = root.mem_and_buffer_bytes();
        let headroom = root_mem + 2 * (cfg.internal_bytes + cfg.leaf_bytes) + early;
        let used = st.cache.used_bytes();
        if used + bytes + headroom > cfg.cache_bytes {
            return Action::Evict(used + bytes + headroom + cfg.cache_bytes / 16 - cfg.cache_bytes);
        }
        if let Some((id, key)) = due_overfull(&st, cfg, urgency) {
            return Action::Flush(id, key.clone(), false);
        }
        if root_bytes > 0 && root_bytes + bytes > cfg.internal_bytes {
            return Action::Flush(st.root, Vec::new(), true);
        }
        if let Some((id, key)) = st.work.underfull.last() {
            return Action::Underflow(*id, key.clone());
        }
        if let Some(id) = st.work.materialize.last() {
            return Action::Materialize(*id);
        }
        match self.space_check(&st, bytes, admission) {
            Ok(()) => Action::Done,
            Err(e) => Action::NoSpace(e),
        }
    }

    /// True when, after `bytes` more of dirty nodes, a checkpoint of
    /// everything dirty would still fit in the free space.
    fn has_checkpoint_room(&self, bytes: usize) -> bool {
        let st = self.sh.st.borrow();
        let needed = pages_for(st.cache.dirty_encoded_bytes() + st.cache.extra_bytes + 2 * bytes)
            + st.cache.dirty_count() as u64
            + 4
            + crate::checkpoint::metadata_pages_max(&st);
        st.space.map.free_pages() >= needed
    }

    /// Refuses a write when the region could not hold it and a checkpoint
    /// of everything dirty, with the reserve left over.
    pub(crate) fn space_check(&self, st: &State, bytes: usize, admission: Admission) -> Result<()> {
        let free = st.space.map.free_pages();
        let reserve = self.sh.config.reserve_pages_for(st.space.map.pages());
        let reserve = match admission {
            Admission::Write => reserve,
            Admission::Reclaim => reserve / 4,
        };
        let needed = pages_for(st.cache.dirty_encoded_bytes() + st.cache.extra_bytes)
            + st.cache.dirty_count() as u64
            + crate::checkpoint::metadata_pages_max(st)
            + pages_for(bytes)
            + reserve;
        if free < needed {
            return Err(TreeError::NoSpace { needed_pages: needed, free_pages: free });
        }
        Ok(())
    }

    /// Flushes `id`: once (its heaviest buffer) when `force`d, else, when it
    /// is over its size, its heaviest buffers until it is down to 7/8 of it
    /// (at most `FLUSH_BATCH_MAX`, each at least half the heaviest). The
    /// children those buffers go to are read from the device all at once
    /// first: one read's wait for the batch instead of one per flush, while
    /// the shard's writers wait for room.
    async fn flush_node(&self, id: NodeId, key: &[u8], force: bool) -> Result<()> {
        if force {
            return self.flush_pick(id, key, Pick::Heaviest { above_bytes: 0 }).await.map(|_| ());
        }
        let internal_bytes = self.sh.config.internal_bytes;
        let target_bytes = internal_bytes - internal_bytes / 8;
        let _pins = self.load_flush_targets(id, target_bytes).await?;
        let mut pick = Pick::Heaviest { above_bytes: internal_bytes };
        for _ in 0..FLUSH_BATCH_MAX {
            if !self.flush_pick(id, key, pick).await? {
                break;
            }
            pick = Pick::Heaviest { above_bytes: target_bytes };
        }
        Ok(())
    }

    /// Reads, concurrently, the uncached children of `id` that a batch of
    /// flushes down to `target_bytes` would go to; they stay pinned until
    /// the guards drop. A failed read fails here, before anything moved.
    async fn load_flush_targets(&self, id: NodeId, target_bytes: usize) -> Result<Vec<PinGuard>> {
        let (wanted, need_bytes) = {
            let st = self.sh.st.borrow();
            let Some(n) = st.cache.get(id).and_then(|s| s.node.as_internal()) else { return Ok(Vec::new()) };
            let mut by_bytes: Vec<(usize, usize)> =
                n.buffers.iter().map(|b| b.encoded_bytes()).enumerate().filter(|(_, b)| *b > 0).collect();
            by_bytes.sort_unstable_by_key(|c| std::cmp::Reverse(c.1));
            let heaviest = by_bytes.first().map_or(0, |c| c.1);
            let mut left = n.encoded_bytes();
            let mut wanted = Vec::new();
            let mut need_bytes = 0usize;
            for &(i, bytes) in by_bytes.iter().take(FLUSH_BATCH_MAX) {
                if left <= target_bytes || 2 * bytes < heaviest {
                    break;
                }
                left -= bytes;
                let child = n.children[i];
                if !st.cache.contains(child) {
                    need_bytes += 2 * st.table.get(child).length as usize;
                    wanted.push(child);
                }
            }
            (wanted, need_bytes)
        };
        if wanted.len() < 2 {
            return Ok(Vec::new());
        }
        self.ensure_cache_room_locked(need_bytes).await?;
        let loads = wanted.iter().map(|&child| self.load(child)).collect();
        join_all(loads).await.into_iter().collect()
    }

    async fn flush_pick(&self, id: NodeId, key: &[u8], pick: Pick) -> Result<bool> {
        let mut pins = Vec::new();
        loop {
            let step = flush_step(&mut self.sh.st.borrow_mut(), &self.sh.config, id, key, pick);
            match step {
                Step::Done(flushed) => return Ok(flushed),
                Step::Load(n) => pins.push(self.load_in_maintenance(n).await?),
            }
        }
    }

    /// Pushes every buffered delete down to the leaves, so the space the
    /// deleted values hold is freed (reusable once the next checkpoint is
    /// durable). `make_room` does this by itself before it answers
    /// `NoSpace`; an engine may also call it when space runs low. It reads
    /// and rewrites much of the tree: an emergency measure.
    pub async fn reclaim(&self) -> Result<()> {
        let _guard = self.sh.maintenance.lock().await;
        self.reclaim_locked().await.map(|_| ())
    }

    /// Walks the internal nodes from the root and flushes each buffer that
    /// holds deletes into its child, so they travel down level by level.
    /// True when anything moved.
    async fn reclaim_locked(&self) -> Result<bool> {
        let mut moved = false;
        let root = self.sh.st.borrow().root;
        let mut stack: Vec<(NodeId, Vec<u8>)> = vec![(root, Vec::new())];
        while let Some((id, key)) = stack.pop() {
            let _pin = self.load_in_maintenance(id).await?;
            loop {
                let slack = 2 * (self.sh.config.internal_bytes + self.sh.config.leaf_bytes);
                if !self.has_checkpoint_room(slack) {
                    // Rewriting more nodes could leave no room to checkpoint
                    // them: stop; the next checkpoint frees space to go on.
                    self.sh.st.borrow_mut().counters.reclaims += 1;
                    return Ok(moved);
                }
                self.ensure_cache_room_locked(slack).await?;
                if !self.flush_pick(id, &key, Pick::Deletes).await? {
                    break;
                }
                moved = true;
            }
            let st = self.sh.st.borrow();
            if let Some(n) = st.cache.get(id).and_then(|s| s.node.as_internal()).filter(|n| n.height >= 2) {
                for (i, child) in n.children.iter().enumerate() {
                    let low = n.child_low(i).map_or_else(|| key.clone(), <[u8]>::to_vec);
                    stack.push((*child, low));
                }
            }
        }
        self.sh.st.borrow_mut().counters.reclaims += 1;
        Ok(moved)
    }

    async fn fix_underflow(&self, id: NodeId, key: &[u8]) -> Result<()> {
        let mut pins = Vec::new();
        loop {
            let step = underflow_step(&mut self.sh.st.borrow_mut(), &self.sh.config, id, key);
            match step {
                Step::Done(()) => return Ok(()),
                Step::Load(n) => pins.push(self.load_in_maintenance(n).await?),
            }
        }
    }

    /// Loads a node while holding the maintenance lock: cache room is made
    /// here, by writing dirty nodes back if need be.
    async fn load_in_maintenance(&self, id: NodeId) -> Result<PinGuard> {
        let need = self.sh.config.internal_bytes.max(self.sh.config.leaf_bytes) * 2;
        self.ensure_cache_room_locked(need).await?;
        self.load(id).await
    }

    /// Makes room for `bytes` of cache without the maintenance lock: drops
    /// clean nodes, and takes the lock to write dirty ones back if needed.
    pub(crate) async fn ensure_cache_room(&self, bytes: usize) -> Result<()> {
        if self.evict_clean(bytes) {
            return Ok(());
        }
        if self.sh.maintenance.is_locked() {
            // The maintenance task is at work (perhaps this very load is
            // its own): it rechecks the budget before each step.
            return Ok(());
        }
        let _guard = self.sh.maintenance.lock().await;
        self.ensure_cache_room_locked(bytes).await
    }

    async fn ensure_cache_room_locked(&self, bytes: usize) -> Result<()> {
        loop {
            if self.evict_clean(bytes) {
                return Ok(());
            }
            let over = {
                let st = self.sh.st.borrow();
                (st.cache.used_bytes() + bytes).saturating_sub(self.sh.config.cache_bytes)
            };
            self.evict_or_wait(over + self.sh.config.cache_bytes / 16).await?;
        }
    }

    /// Drops clean unpinned nodes until `bytes` more fit; true when they do.
    fn evict_clean(&self, bytes: usize) -> bool {
        let budget = self.sh.config.cache_bytes;
        let mut st = self.sh.st.borrow_mut();
        if st.cache.used_bytes() + bytes <= budget {
            return true;
        }
        // Leaf pages kept for gets are the cheapest to give up: before any node.
        let over = st.cache.used_bytes() + bytes - budget;
        st.cache.drop_leaf_pages(over);
        if st.cache.used_bytes() + bytes <= budget {
            return true;
        }
        let need = st.cache.used_bytes() + bytes - budget;
        let root = st.root;
        let pins = self.sh.pins.borrow();
        let victims = st.cache.pick_victims(need, |id, s| {
            id == root || s.dirty || s.frozen || s.ckpt_writing || s.evicting || pins.contains_key(&id)
        });
        for id in victims {
            st.cache.remove(id);
            st.counters.evictions_clean += 1;
        }
        if st.cache.used_bytes() + bytes > budget {
            // Page maps only save device bytes: give them up before failing.
            let over = st.cache.used_bytes() + bytes - budget;
            st.cache.drop_read_aids(over);
        }
        st.cache.used_bytes() + bytes <= budget
    }

    /// Evicts about `need` bytes; when nothing can be evicted, waits for
    /// the checkpoint in progress to release nodes, or fails.
    async fn evict_or_wait(&self, need: usize) -> Result<()> {
        if self.evict(need).await? {
            return Ok(());
        }
        if self.sh.st.borrow().ckpt.in_progress.is_some() {
            self.sh.progress.wait().await;
            return Ok(());
        }
        Err(TreeError::CacheTooSmall { needed_bytes: need, budget_bytes: self.sh.config.cache_bytes })
    }

    /// Evicts nodes worth about `need` bytes: clean ones are dropped, dirty
    /// ones are written to fresh places first. False when nothing could go.
    async fn evict(&self, need: usize) -> Result<bool> {
        let (jobs, dropped) = self.pick_evictions(need)?;
        if jobs.is_empty() {
            return Ok(dropped);
        }
        let (written, first_err) = self.write_jobs(&jobs).await;
        let mut st = self.sh.st.borrow_mut();
        let pins = self.sh.pins.borrow();
        for (job, written) in jobs.iter().zip(written) {
            let flags = st.cache.slot_mut(job.id).map(|slot| {
                slot.evicting = false;
                (slot.version, slot.dirty, slot.frozen || slot.ckpt_writing)
            });
            let Some((version, dirty, held)) = flags else {
                st.space.abort(job.at.address);
                continue;
            };
            let stays = held || pins.contains_key(&job.id) || job.id == st.root;
            if version != job.version || !dirty || !written {
                st.space.abort(job.at.address);
                continue;
            }
            st.space.commit(job.at.address);
            st.table.set(job.id, job.at);
            st.cache.set_dirty(job.id, false);
            st.counters.node_writes += 1;
            st.counters.node_write_bytes += job.bytes.len() as u64;
            st.counters.count_node_write(job.kind == BlockKind::Leaf, false, job.bytes.len());
            if !stays {
                st.cache.remove(job.id);
                st.counters.evictions_dirty += 1;
            }
        }
        drop(pins);
        drop(st);
        self.sh.progress.notify();
        match first_err {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    /// Writes the jobs' nodes, each run of adjacent places as one write
    /// (`write_runs.rs`), `write_depth` writes at a time. Says which jobs
    /// were written, and the first error.
    async fn write_jobs(&self, jobs: &[WriteJob]) -> (Vec<bool>, Option<TreeError>) {
        let places: Vec<(u64, usize)> = jobs.iter().map(|j| (j.at.address, j.bytes.len())).collect();
        let runs = contiguous_runs(&places);
        let mut written = vec![false; jobs.len()];
        let mut first_err = None;
        for batch in runs.chunks(self.sh.config.write_depth) {
            let writes = batch.iter().map(|run| self.write_run(&jobs[run.clone()])).collect();
            for (run, result) in batch.iter().zip(join_all(writes).await) {
                match result {
                    Ok(()) => written[run.clone()].fill(true),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        (written, first_err)
    }

    async fn write_run(&self, run: &[WriteJob]) -> Result<()> {
        let first = &run[0];
        if run.len() == 1 {
            return self.sh.region.write(first.kind, first.at.address, &first.bytes).await;
        }
        let parts: Vec<&[u8]> = run.iter().map(|j| j.bytes.as_slice()).collect();
        self.sh.region.write_parts(first.kind, first.at.address, &parts).await
    }

    /// Chooses victims; drops the clean ones and serializes the dirty ones
    /// into write jobs with freshly allocated (in-flight) places.
    fn pick_evictions(&self, need: usize) -> Result<(Vec<WriteJob>, bool)> {
        let mut st = self.sh.st.borrow_mut();
        // Read aids (cached leaf pages, page maps) go before any node.
        let freed = st.cache.drop_read_aids(need);
        if freed >= need {
            return Ok((Vec::new(), true));
        }
        let need = need - freed;
        let root = st.root;
        let victims = {
            let pins = self.sh.pins.borrow();
            st.cache.pick_victims(need, |id, s| {
                id == root || s.frozen || s.ckpt_writing || s.evicting || pins.contains_key(&id)
            })
        };
        let mut jobs = Vec::new();
        let mut dropped = false;
        for id in victims {
            let slot = st.cache.get(id).expect("picked from the cache");
            if !slot.dirty {
                st.cache.remove(id);
                st.counters.evictions_clean += 1;
                dropped = true;
                continue;
            }
            let (kind, version) = (slot.node.kind(), slot.version);
            let generation = st.generation();
            let bytes = st.cache.get(id).expect("still cached").node.serialize(id, generation);
            let pages = pages_for(bytes.len());
            let Some(address) = st.space.alloc_in_flight(pages) else {
                if jobs.is_empty() && !dropped {
                    return Err(TreeError::NoSpace { needed_pages: pages, free_pages: st.space.map.free_pages() });
                }
                break;
            };
            let crc32c = checksum::crc32c(&bytes);
            let at = Location { address, length: bytes.len() as u32, crc32c, generation };
            st.cache.slot_mut(id).expect("still cached").evicting = true;
            jobs.push(WriteJob { id, kind, version, at, bytes });
        }
        Ok((jobs, dropped))
    }

    /// Moves large values of leaf `id` out of line and resolves merges that
    /// wait on out-of-line values, one entry at a time. Failures (a corrupt
    /// extent) leave the entry as it is, logged: reads of that key fail,
    /// nothing else does.
    async fn materialize(&self, id: NodeId) {
        loop {
            let job = {
                let mut st = self.sh.st.borrow_mut();
                let job = next_materialization(&st, id, self.sh.config.inline_value_max_bytes);
                if job.is_none() {
                    st.work.materialize.retain(|w| *w != id);
                }
                job
            };
            let Some(job) = job else { return };
            if let Err(e) = self.materialize_entry(id, job).await {
                tracing::warn!(node = id.0, error = %e, "could not materialize a leaf entry; left as it is");
                self.sh.st.borrow_mut().work.materialize.retain(|w| *w != id);
                return;
            }
        }
    }

    async fn materialize_entry(&self, id: NodeId, job: Materialization) -> Result<()> {
        let inline_max = self.sh.config.inline_value_max_bytes;
        let value = match &job.base {
            Value::Inline(v) => Some(v.clone()),
            Value::Extent(e) => {
                let data = self.read_extent(*e).await?;
                apply_all(Some(data), &job.merges)
            }
        };
        let new = match value {
            None => None,
            Some(v) if v.len() <= inline_max => Some(Value::Inline(v)),
            Some(v) => Some(Value::Extent(self.write_extent_in_flight(&v).await?)),
        };
        let mut st = self.sh.st.borrow_mut();
        let unchanged = next_materialization(&st, id, inline_max).is_some_and(|now| now == job);
        if !unchanged {
            if let Some(Value::Extent(e)) = new {
                st.space.abort(e.address);
            }
            return Ok(());
        }
        let vref = new.as_ref().map(|v| match v {
            Value::Inline(v) => ValueRef::Inline(v),
            Value::Extent(e) => ValueRef::Extent(*e),
        });
        let Node::Leaf(leaf) = st.node_mut(id) else { unreachable!("materialization jobs are on leaves") };
        *leaf = leaf.replace_value(&job.key, vref);
        let mut garbage = Vec::new();
        if let Some(Value::Extent(e)) = new {
            st.space.commit(e.address);
        }
        if let Value::Extent(old) = job.base {
            garbage.push(old);
        }
        st.changed(id, garbage);
        st.counters.materializations += 1;
        Ok(())
    }

    /// Writes a value to a fresh extent that stays in flight until the
    /// caller commits or aborts it.
    pub(crate) async fn write_extent_in_flight(&self, bytes: &[u8]) -> Result<ExtentRef> {
        let e = self.alloc_extent(bytes)?;
        let written = self.sh.region.write(BlockKind::Extent, e.address, bytes).await;
        self.extent_written(e, written)
    }

    /// [`Tree::write_extent_in_flight`] from a DMA buffer holding the value.
    pub(crate) async fn write_extent_buf_in_flight(&self, buf: DmaBuf) -> Result<ExtentRef> {
        let e = self.alloc_extent(&buf)?;
        let written = self.sh.region.write_buf(BlockKind::Extent, e.address, buf).await;
        self.extent_written(e, written)
    }

    /// Allocates the pages of an extent for `bytes` and names it.
    fn alloc_extent(&self, bytes: &[u8]) -> Result<ExtentRef> {
        let pages = pages_for(bytes.len()).max(1);
        let mut st = self.sh.st.borrow_mut();
        let Some(address) = st.space.alloc_in_flight(pages) else {
            return Err(TreeError::NoSpace { needed_pages: pages, free_pages: st.space.map.free_pages() });
        };
        let generation = st.generation();
        Ok(ExtentRef {
            address,
            length: bytes.len() as u32,
            crc32c: ExtentRef::checksum(generation, bytes),
            generation,
        })
    }

    /// Counts a written extent, or gives its pages back if the write failed.
    fn extent_written(&self, e: ExtentRef, written: Result<()>) -> Result<ExtentRef> {
        let mut st = self.sh.st.borrow_mut();
        if let Err(err) = written {
            st.space.abort(e.address);
            return Err(err);
        }
        st.counters.extent_writes += 1;
        st.counters.extent_write_bytes += (e.pages() as usize * PAGE_BYTES) as u64;
        Ok(e)
    }
}

/// The over-full node to flush next, if `urgency` says one is due: for the
/// background task any; for a writer only when the backlog is long or a
/// node is well past its size (a node that keeps growing would otherwise
/// be written back whole, over and over, or not fit the cache). Without the
/// background task a writer flushes any: nobody else would.
fn due_overfull<'a>(st: &'a State, cfg: &TreeConfig, urgency: Urgency) -> Option<(NodeId, &'a Vec<u8>)> {
    let overfull = &st.work.overfull;
    let (id, key) = overfull.last()?;
    let anyone = urgency == Urgency::Background || !cfg.background_maintenance;
    if anyone || overfull.len() > OVERFULL_BACKLOG_MAX {
        return Some((*id, key));
    }
    let limit_bytes = cfg.internal_bytes + cfg.internal_bytes / 4;
    overfull.iter().rev().find_map(|(id, key)| {
        let too_big =
            st.cache.get(*id).and_then(|s| s.node.as_internal()).is_none_or(|n| n.encoded_bytes() > limit_bytes);
        too_big.then_some((*id, key))
    })
}

/// A dirty node being written back.
#[derive(Debug)]
struct WriteJob {
    id: NodeId,
    kind: BlockKind,
    version: u64,
    at: Location,
    bytes: Vec<u8>,
}

/// One leaf entry to move out of line or to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Materialization {
    key: Vec<u8>,
    base: Value,
    merges: Vec<MergeOp>,
}

fn next_materialization(st: &State, id: NodeId, inline_max: usize) -> Option<Materialization> {
    let leaf = st.cache.get(id)?.node.as_leaf()?;
    (0..leaf.len()).find_map(|i| {
        let e = leaf.entry(i);
        let needs = !e.merges.is_empty() || matches!(e.value, ValueRef::Inline(v) if v.len() > inline_max);
        needs.then(|| Materialization { key: e.key.to_vec(), base: e.value.to_value(), merges: e.merges })
    })
}
