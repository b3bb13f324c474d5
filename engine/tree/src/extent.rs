//! Out-of-line values: written once to fresh pages, checksummed, named by an
//! [`ExtentRef`] that travels through the journal into the tree.
//!
//! An extent is *unattached* from `write_extent` until the put that refers
//! to it is applied; a checkpoint never counts unattached space as in use,
//! so a transaction that never reached the journal leaks nothing across a
//! crash. Recovery adopts the extents of the records it replays.

use keel_drivers::DmaBuf;

use crate::error::{Result, TreeError};
use crate::limits::VALUE_BYTES_MAX;
use crate::maintenance::Admission;
use crate::message::ExtentRef;
use crate::tree::Tree;

impl Tree {
    /// Writes `bytes` to a fresh extent. Not durable until a later device
    /// flush (the journal's group commit, or a checkpoint); not referenced
    /// until the engine applies a put of it.
    pub async fn write_extent(&self, bytes: &[u8]) -> Result<ExtentRef> {
        self.admit_extent(bytes.len()).await?;
        let e = self.write_extent_in_flight(bytes).await?;
        self.sh.st.borrow_mut().unattached.insert(e);
        Ok(e)
    }

    /// Like [`Tree::write_extent`] with the value's bytes already in DMA
    /// memory (`buf`, its length the value's): a buffer of this tree's
    /// device pool with room for whole pages is written as it is, without
    /// copying the bytes once more; any other buffer is copied.
    pub async fn write_extent_buf(&self, buf: DmaBuf) -> Result<ExtentRef> {
        self.admit_extent(buf.len()).await?;
        let e = self.write_extent_buf_in_flight(buf).await?;
        self.sh.st.borrow_mut().unattached.insert(e);
        Ok(e)
    }

    /// Refuses a value over the size limit, and waits for reclaim when the
    /// region has no room for `len_bytes` more.
    async fn admit_extent(&self, len_bytes: usize) -> Result<()> {
        if len_bytes > VALUE_BYTES_MAX {
            return Err(TreeError::ValueTooLarge { len_bytes, max_bytes: VALUE_BYTES_MAX });
        }
        let fits = {
            let st = self.sh.st.borrow();
            self.space_check(&st, len_bytes, Admission::Write)
        };
        if fits.is_err() {
            self.reclaim().await?;
            let st = self.sh.st.borrow();
            self.space_check(&st, len_bytes, Admission::Write)?;
        }
        Ok(())
    }

    /// An extent from `write_extent` that no journal record will refer to
    /// (its transaction failed): its space is reclaimed.
    pub fn forget_extent(&self, e: ExtentRef) {
        let mut st = self.sh.st.borrow_mut();
        if st.unattached.remove(&e) {
            st.space.free_deferred(e.address, e.pages());
        }
    }

    /// Recovery: a replayed journal record refers to `e`, which the
    /// checkpoint does not count as in use. Call it for every such extent
    /// *before* replaying (applying) any record, so nothing is allocated over
    /// it. Idempotent.
    pub fn adopt_extent(&self, e: ExtentRef) -> Result<()> {
        let mut st = self.sh.st.borrow_mut();
        if st.adopted.contains(&e) {
            return Ok(());
        }
        if !st.space.map.is_free_range(e.address, e.pages()) {
            return Err(TreeError::ExtentConflict { address: e.address, pages: e.pages() });
        }
        st.space.map.mark_used(e.address, e.pages());
        st.adopted.insert(e);
        Ok(())
    }
}
