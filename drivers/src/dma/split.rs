//! Cutting a DMA buffer into pieces and joining them again, without copying.
//!
//! A device made of several members (`crate::aggregate`) sends one request's
//! bytes to several devices at once: each member gets the piece of the buffer
//! its blocks cover. Pieces are ordinary [`DmaBuf`]s (same pool, so an IOMMU
//! mapping or an io_uring fixed buffer covers them), cut at 4 KiB page
//! boundaries so they stay page aligned. The buddy block they came from is
//! shared by the pieces and freed when the last one is dropped; joining all
//! pieces back gives a buffer that owns the whole block again.

use std::ptr::NonNull;
use std::sync::Arc;

use super::{Backing, DmaBuf, PoolInner, PAGE_BYTES};

/// A buddy block that has been cut into pieces.
pub(super) struct SplitBlock {
    page: u32,
    order: u8,
    /// `None` once the block went back to being one whole buffer.
    pool: Option<Arc<PoolInner>>,
}

impl Drop for SplitBlock {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.free(self.page, self.order);
        }
    }
}

impl DmaBuf {
    /// Cuts the buffer at byte `at_bytes` into `[0, at)` and `[at, len)`.
    /// `at_bytes` must be a multiple of 4 KiB strictly inside the buffer;
    /// otherwise the buffer comes back unchanged as the error.
    pub fn split_at(self, at_bytes: usize) -> Result<(DmaBuf, DmaBuf), DmaBuf> {
        if at_bytes == 0 || at_bytes >= self.len_bytes || !at_bytes.is_multiple_of(PAGE_BYTES) {
            return Err(self);
        }
        let parts = self.take_parts();
        let head = DmaBuf {
            ptr: parts.ptr,
            len_bytes: at_bytes,
            page: parts.page,
            backing: Backing::Piece { block: Arc::clone(&parts.block), capacity_bytes: at_bytes },
            pool: Arc::clone(&parts.pool),
        };
        // SAFETY: `at_bytes < len_bytes <= capacity`, so the tail pointer lies
        // inside the same buffer of the live mapping, and the two pieces cover
        // disjoint byte ranges.
        let tail_ptr = unsafe { NonNull::new_unchecked(parts.ptr.as_ptr().add(at_bytes)) };
        let tail = DmaBuf {
            ptr: tail_ptr,
            len_bytes: parts.len_bytes - at_bytes,
            page: parts.page + (at_bytes / PAGE_BYTES) as u32,
            backing: Backing::Piece { block: parts.block, capacity_bytes: parts.capacity_bytes - at_bytes },
            pool: parts.pool,
        };
        Ok((head, tail))
    }

    /// Joins `next`, which must be the piece that directly follows this one
    /// in the same block, onto this buffer. When the result covers the whole
    /// block and no other piece is alive, it owns the block again (its
    /// capacity is the block's). Otherwise both come back unchanged.
    pub fn join(self, next: DmaBuf) -> Result<DmaBuf, (DmaBuf, DmaBuf)> {
        let adjacent = match (&self.backing, &next.backing) {
            (Backing::Piece { block: a, capacity_bytes }, Backing::Piece { block: b, .. }) => {
                Arc::ptr_eq(a, b) && self.len_bytes == *capacity_bytes && self.addr() + self.len_bytes == next.addr()
            }
            _ => false,
        };
        if !adjacent {
            return Err((self, next));
        }
        let mut joined = self.take_parts();
        let tail = next.take_parts();
        joined.len_bytes += tail.len_bytes;
        joined.capacity_bytes += tail.capacity_bytes;
        drop(tail.block);
        Ok(joined.into_buf())
    }

    /// Moves the fields out (a `Drop` type cannot be destructured).
    fn take_parts(self) -> Parts {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so each field is
        // read exactly once and ownership of it moves into `Parts`.
        let (backing, pool) = unsafe { (std::ptr::read(&this.backing), std::ptr::read(&this.pool)) };
        let (block, capacity_bytes) = match backing {
            Backing::Piece { block, capacity_bytes } => (block, capacity_bytes),
            Backing::Whole { order } => {
                let block = SplitBlock { page: this.page, order, pool: Some(Arc::clone(&pool)) };
                (Arc::new(block), PAGE_BYTES << order)
            }
        };
        Parts { ptr: this.ptr, len_bytes: this.len_bytes, page: this.page, block, capacity_bytes, pool }
    }
}

/// A buffer's fields, with its block in shared form.
struct Parts {
    ptr: NonNull<u8>,
    len_bytes: usize,
    page: u32,
    block: Arc<SplitBlock>,
    capacity_bytes: usize,
    pool: Arc<PoolInner>,
}

impl Parts {
    /// A buffer again: whole when this is the block's only live piece and
    /// covers it from its start, else a piece.
    fn into_buf(self) -> DmaBuf {
        let Parts { ptr, len_bytes, page, block, capacity_bytes, pool } = self;
        let block = if page == block.page { Arc::try_unwrap(block) } else { Err(block) };
        let backing = match block {
            Ok(mut whole) if capacity_bytes == PAGE_BYTES << whole.order => {
                // The block is ours alone again: it is freed by this buffer.
                whole.pool = None;
                Backing::Whole { order: whole.order }
            }
            Ok(whole) => Backing::Piece { block: Arc::new(whole), capacity_bytes },
            Err(block) => Backing::Piece { block, capacity_bytes },
        };
        DmaBuf { ptr, len_bytes, page, backing, pool }
    }
}

#[cfg(test)]
mod tests {
    use crate::dma::DmaPool;

    #[test]
    fn pieces_share_the_bytes_and_the_block_returns_with_the_last() {
        let pool = DmaPool::for_tests(4 << 20);
        let mut buf = pool.try_alloc(5 * 4096).unwrap();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i / 4096) as u8;
        }
        let base = buf.addr();
        let (head, tail) = buf.split_at(2 * 4096).unwrap();
        assert_eq!((head.len(), tail.len(), tail.addr()), (8192, 3 * 4096, base + 8192));
        assert_eq!((head[0], head[8191], tail[0], tail[3 * 4096 - 1]), (0, 1, 2, 4));
        let (mid, last) = tail.split_at(4096).unwrap();
        let held = pool.allocated_bytes();
        drop(head);
        assert_eq!(pool.allocated_bytes(), held, "a piece does not free its block");
        drop(mid);
        drop(last);
        assert_eq!(pool.allocated_bytes(), 0, "the last piece frees the block");
    }

    #[test]
    fn joined_pieces_own_the_whole_block_again() {
        let pool = DmaPool::for_tests(4 << 20);
        let buf = pool.try_alloc(6 * 4096).unwrap();
        let (base, capacity) = (buf.addr(), buf.capacity());
        let (a, rest) = buf.split_at(4096).unwrap();
        let (b, c) = rest.split_at(4096).unwrap();
        let ab = a.join(b).unwrap();
        assert_eq!(ab.capacity(), 8192, "still a piece while c is alive");
        let mut whole = ab.join(c).unwrap();
        assert_eq!((whole.addr(), whole.len(), whole.capacity()), (base, 6 * 4096, capacity));
        whole.set_len(capacity);
        drop(whole);
        assert_eq!(pool.allocated_bytes(), 0);
    }

    #[test]
    fn bad_cuts_and_joins_hand_the_buffers_back() {
        let pool = DmaPool::for_tests(4 << 20);
        let buf = pool.try_alloc(3 * 4096).unwrap();
        let buf = buf.split_at(100).unwrap_err();
        let buf = buf.split_at(0).unwrap_err();
        let buf = buf.split_at(3 * 4096).unwrap_err();
        let (a, rest) = buf.split_at(4096).unwrap();
        let (b, c) = rest.split_at(4096).unwrap();
        let (a, c) = a.join(c).unwrap_err();
        let other = pool.try_alloc(4096).unwrap();
        let (b, other) = b.join(other).unwrap_err();
        drop((a, b, c, other));
        assert_eq!(pool.allocated_bytes(), 0);
    }
}
