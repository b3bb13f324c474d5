//! The DMA buffer pool: bounded, block-aligned memory that devices may read and
//! write directly.
//!
//! The pool is one anonymous mapping decided at start-up, made of 2 MiB regions.
//! It is backed by 2 MiB hugepages (MAP_HUGETLB) when the system has them
//! reserved, otherwise by ordinary pages, and says so once in the log. Backends
//! register the regions once: io_uring as fixed buffers (a buffer's region is its
//! fixed-buffer index), VFIO as IOMMU mappings with IOVA = VA.
//!
//! Buffers are carved out of the regions by a buddy allocator in 4 KiB pages, so
//! every buffer is 4 KiB-aligned (enough for any logical block size up to 4 KiB)
//! and at most one region long. The pool never grows: when it is exhausted an
//! allocation fails with [`DmaError::Exhausted`] or, through
//! [`DmaPool::poll_alloc`], waits for a buffer to come back. Exhaustion is
//! back-pressure, never a panic.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

mod split;
mod stream_copy;

pub use stream_copy::{copy_streaming, STREAMING_MIN_BYTES};

/// Size of one region: one hugepage, and the largest buffer.
pub const REGION_BYTES: usize = 2 << 20;
/// Granule of the buddy allocator and alignment of every buffer.
pub const PAGE_BYTES: usize = 4096;
const PAGES_PER_REGION: usize = REGION_BYTES / PAGE_BYTES;
const ORDER_MAX: usize = PAGES_PER_REGION.trailing_zeros() as usize;
const NIL: u32 = u32::MAX;
const NOT_FREE: u8 = u8::MAX;
/// Upper bound on the pool: 64 GiB keeps page indices far inside `u32`.
pub const POOL_BYTES_MAX: usize = 64 << 30;

/// Whether the pool must, may or must not use hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugepagePolicy {
    /// Use hugepages when enough are reserved, else ordinary pages (logged).
    #[default]
    Auto,
    /// Fail when hugepages cannot back the whole pool.
    Require,
    /// Use ordinary pages.
    Never,
}

/// How big the pool is and what backs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmaPoolConfig {
    /// Total size; rounded up to a whole number of 2 MiB regions.
    pub size_bytes: usize,
    pub hugepages: HugepagePolicy,
}

impl Default for DmaPoolConfig {
    fn default() -> Self {
        Self { size_bytes: 64 << 20, hugepages: HugepagePolicy::Auto }
    }
}

/// Why a buffer could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    #[error("a DMA buffer of {len_bytes} bytes is larger than a pool region ({REGION_BYTES} bytes)")]
    TooLarge { len_bytes: usize },
    #[error("the DMA buffer pool is exhausted")]
    Exhausted,
}

/// One region of the pool, as backends register it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub addr: usize,
    pub len_bytes: usize,
}

/// A handle to the pool; clones share it.
#[derive(Clone)]
pub struct DmaPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    base: NonNull<u8>,
    size_bytes: usize,
    hugepages: bool,
    state: Mutex<PoolState>,
}

// SAFETY: `base` points to a private anonymous mapping owned by this value for
// its whole life; all access to the bytes goes through `DmaBuf`s, each of which
// owns a disjoint range handed out under the `state` mutex.
unsafe impl Send for PoolInner {}
// SAFETY: as above; shared access to `PoolInner` only touches `state` (a mutex)
// and immutable fields.
unsafe impl Sync for PoolInner {}

struct PoolState {
    buddy: Buddy,
    waiters: Vec<Waker>,
    allocated_bytes_high: usize,
}

impl DmaPool {
    /// Maps the pool. With [`HugepagePolicy::Auto`], a system without enough
    /// reserved hugepages gets ordinary pages and one log line saying so.
    pub fn new(config: &DmaPoolConfig) -> Result<Self, crate::DeviceError> {
        let regions = config.size_bytes.div_ceil(REGION_BYTES).max(1);
        let size_bytes = regions * REGION_BYTES;
        if size_bytes > POOL_BYTES_MAX {
            return Err(crate::DeviceError::Dma(format!(
                "pool of {size_bytes} bytes exceeds the limit of {POOL_BYTES_MAX} bytes"
            )));
        }
        let (base, hugepages) = map_pool(size_bytes, config.hugepages)?;
        let inner = PoolInner {
            base,
            size_bytes,
            hugepages,
            state: Mutex::new(PoolState { buddy: Buddy::new(regions), waiters: Vec::new(), allocated_bytes_high: 0 }),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// A small pool of ordinary pages, for tests.
    pub fn for_tests(size_bytes: usize) -> Self {
        let config = DmaPoolConfig { size_bytes, hugepages: HugepagePolicy::Never };
        Self::new(&config).expect("mapping a small anonymous test pool")
    }

    pub fn size_bytes(&self) -> usize {
        self.inner.size_bytes
    }

    /// True when both handles share one pool (one mapping, one allocator).
    pub fn same_pool(&self, other: &DmaPool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn is_hugepage_backed(&self) -> bool {
        self.inner.hugepages
    }

    /// The regions, in order; a buffer's [`DmaBuf::region_index`] indexes them.
    pub fn regions(&self) -> Vec<Region> {
        let base = self.inner.base.as_ptr() as usize;
        (0..self.inner.size_bytes / REGION_BYTES)
            .map(|i| Region { addr: base + i * REGION_BYTES, len_bytes: REGION_BYTES })
            .collect()
    }

    /// Bytes currently handed out.
    pub fn allocated_bytes(&self) -> usize {
        let state = self.inner.lock();
        self.inner.size_bytes - state.buddy.free_pages * PAGE_BYTES
    }

    /// The most bytes ever handed out at once.
    pub fn allocated_bytes_high(&self) -> usize {
        self.inner.lock().allocated_bytes_high
    }

    /// A buffer of `len_bytes` (contents unspecified), or an error at once.
    pub fn try_alloc(&self, len_bytes: usize) -> Result<DmaBuf, DmaError> {
        let order = order_for(len_bytes)?;
        let mut state = self.inner.lock();
        self.alloc_locked(&mut state, order, len_bytes).ok_or(DmaError::Exhausted)
    }

    /// Like [`DmaPool::try_alloc`], but when the pool is exhausted registers
    /// the task to be woken when a buffer is freed.
    pub fn poll_alloc(&self, len_bytes: usize, cx: &Context<'_>) -> Poll<Result<DmaBuf, DmaError>> {
        let order = match order_for(len_bytes) {
            Ok(order) => order,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let mut state = self.inner.lock();
        match self.alloc_locked(&mut state, order, len_bytes) {
            Some(buf) => Poll::Ready(Ok(buf)),
            None => {
                if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    state.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// A zero-filled buffer of `len_bytes`.
    pub fn try_alloc_zeroed(&self, len_bytes: usize) -> Result<DmaBuf, DmaError> {
        let mut buf = self.try_alloc(len_bytes)?;
        buf.fill(0);
        Ok(buf)
    }

    fn alloc_locked(&self, state: &mut PoolState, order: usize, len_bytes: usize) -> Option<DmaBuf> {
        let page = state.buddy.alloc(order)?;
        let allocated = self.inner.size_bytes - state.buddy.free_pages * PAGE_BYTES;
        state.allocated_bytes_high = state.allocated_bytes_high.max(allocated);
        let offset = page as usize * PAGE_BYTES;
        debug_assert!(offset + (PAGE_BYTES << order) <= self.inner.size_bytes);
        // SAFETY: `offset` lies inside the mapping (the buddy allocator only
        // hands out pages below `size_bytes`), so the result is non-null and in
        // bounds of the same allocation.
        let ptr = unsafe { NonNull::new_unchecked(self.inner.base.as_ptr().add(offset)) };
        Some(DmaBuf {
            ptr,
            len_bytes,
            page,
            backing: Backing::Whole { order: order as u8 },
            pool: Arc::clone(&self.inner),
        })
    }
}

impl fmt::Debug for DmaPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaPool")
            .field("size_bytes", &self.inner.size_bytes)
            .field("hugepages", &self.inner.hugepages)
            .field("allocated_bytes", &self.allocated_bytes())
            .finish()
    }
}

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the buddy lists half
        // edited in a way that matters more than the panic itself; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn free(&self, page: u32, order: u8) {
        let waiters = {
            let mut state = self.lock();
            state.buddy.free(page, usize::from(order));
            std::mem::take(&mut state.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: `base` and `size_bytes` describe the mapping made in
        // `map_pool`; every `DmaBuf` holds an `Arc` to this value, so none is
        // alive any more.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.size_bytes);
        }
    }
}

fn order_for(len_bytes: usize) -> Result<usize, DmaError> {
    if len_bytes > REGION_BYTES {
        return Err(DmaError::TooLarge { len_bytes });
    }
    let pages = len_bytes.div_ceil(PAGE_BYTES).max(1);
    Ok(pages.next_power_of_two().trailing_zeros() as usize)
}

fn map_pool(size_bytes: usize, policy: HugepagePolicy) -> Result<(NonNull<u8>, bool), crate::DeviceError> {
    if policy != HugepagePolicy::Never {
        match mmap_anonymous(size_bytes, libc::MAP_HUGETLB) {
            Ok(base) => {
                tracing::info!(size_bytes, "DMA pool backed by 2 MiB hugepages");
                return Ok((base, true));
            }
            Err(e) if policy == HugepagePolicy::Require => {
                return Err(crate::DeviceError::Dma(format!(
                    "{size_bytes} bytes of 2 MiB hugepages are required but could not be mapped ({e}); reserve them with `keel setup` or /proc/sys/vm/nr_hugepages"
                )));
            }
            Err(e) => {
                tracing::info!(size_bytes, reason = %e, "no hugepages reserved: DMA pool uses ordinary pages");
            }
        }
    }
    let base = mmap_anonymous(size_bytes, 0)
        .map_err(|e| crate::DeviceError::Dma(format!("cannot map {size_bytes} bytes: {e}")))?;
    Ok((base, false))
}

fn mmap_anonymous(size_bytes: usize, extra_flags: libc::c_int) -> std::io::Result<NonNull<u8>> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | extra_flags;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing aliases no existing memory; the result is checked below.
    let ptr = unsafe { libc::mmap(std::ptr::null_mut(), size_bytes, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| std::io::Error::other("mmap returned null"))
}

/// A buffer from the pool. Dropping it returns it to the pool.
pub struct DmaBuf {
    ptr: NonNull<u8>,
    len_bytes: usize,
    /// The pool page this buffer starts at.
    page: u32,
    backing: Backing,
    pool: Arc<PoolInner>,
}

/// What a buffer owns of the pool.
enum Backing {
    /// A whole buddy block of this order, freed when the buffer is dropped.
    Whole { order: u8 },
    /// A piece of a block cut by [`DmaBuf::split_at`]: `capacity_bytes` from
    /// `ptr`; the block is freed when its last piece is dropped.
    Piece { block: Arc<split::SplitBlock>, capacity_bytes: usize },
}

// SAFETY: a `DmaBuf` owns its byte range exclusively (the buddy allocator never
// hands out overlapping ranges) and keeps the mapping alive through its `Arc`;
// moving it to another thread moves that exclusive ownership.
unsafe impl Send for DmaBuf {}
// SAFETY: shared references only allow reading the bytes.
unsafe impl Sync for DmaBuf {}

impl DmaBuf {
    /// The number of bytes this buffer can hold.
    pub fn capacity(&self) -> usize {
        match &self.backing {
            Backing::Whole { order } => PAGE_BYTES << order,
            Backing::Piece { capacity_bytes, .. } => *capacity_bytes,
        }
    }

    /// Changes the length (the transfer size) within the capacity.
    pub fn set_len(&mut self, len_bytes: usize) {
        assert!(len_bytes <= self.capacity(), "DmaBuf::set_len {len_bytes} beyond capacity {}", self.capacity());
        self.len_bytes = len_bytes;
    }

    /// Index of the pool region holding this buffer (io_uring fixed-buffer index).
    pub fn region_index(&self) -> usize {
        self.page as usize / PAGES_PER_REGION
    }

    /// The address a device uses for this buffer (with VFIO, IOVA = VA).
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// True when both buffers come from the same pool.
    pub fn is_from(&self, pool: &DmaPool) -> bool {
        Arc::ptr_eq(&self.pool, &pool.inner)
    }
}

impl Deref for DmaBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len_bytes` lies inside this buffer's exclusive
        // range of the live mapping (`len_bytes <= capacity()`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len_bytes) }
    }
}

impl DerefMut for DmaBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len_bytes) }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // A piece frees nothing itself: its block goes back with the last piece.
        if let Backing::Whole { order } = self.backing {
            self.pool.free(self.page, order);
        }
    }
}

impl fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuf")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len_bytes", &self.len_bytes)
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// A binary buddy allocator over 4 KiB pages, with free lists threaded through
/// per-page arrays so that nothing is allocated after start-up.
struct Buddy {
    heads: [u32; ORDER_MAX + 1],
    next: Vec<u32>,
    prev: Vec<u32>,
    /// For the first page of a free block: its order; else `NOT_FREE`.
    free_order: Vec<u8>,
    free_pages: usize,
}

impl Buddy {
    fn new(regions: usize) -> Self {
        let pages = regions * PAGES_PER_REGION;
        let mut buddy = Buddy {
            heads: [NIL; ORDER_MAX + 1],
            next: vec![NIL; pages],
            prev: vec![NIL; pages],
            free_order: vec![NOT_FREE; pages],
            free_pages: 0,
        };
        for region in (0..regions).rev() {
            buddy.push((region * PAGES_PER_REGION) as u32, ORDER_MAX);
        }
        buddy
    }

    fn alloc(&mut self, order: usize) -> Option<u32> {
        let found = (order..=ORDER_MAX).find(|&k| self.heads[k] != NIL)?;
        let page = self.heads[found];
        self.unlink(page, found);
        let mut k = found;
        while k > order {
            k -= 1;
            self.push(page + (1u32 << k), k);
        }
        Some(page)
    }

    fn free(&mut self, mut page: u32, mut order: usize) {
        assert_eq!(self.free_order[page as usize], NOT_FREE, "double free of DMA page {page}");
        while order < ORDER_MAX {
            let buddy = page ^ (1u32 << order);
            if self.free_order[buddy as usize] != order as u8 {
                break;
            }
            self.unlink(buddy, order);
            page = page.min(buddy);
            order += 1;
        }
        self.push(page, order);
    }

    fn push(&mut self, page: u32, order: usize) {
        let head = self.heads[order];
        self.next[page as usize] = head;
        self.prev[page as usize] = NIL;
        if head != NIL {
            self.prev[head as usize] = page;
        }
        self.heads[order] = page;
        self.free_order[page as usize] = order as u8;
        self.free_pages += 1 << order;
    }

    fn unlink(&mut self, page: u32, order: usize) {
        let (next, prev) = (self.next[page as usize], self.prev[page as usize]);
        if prev == NIL {
            self.heads[order] = next;
        } else {
            self.next[prev as usize] = next;
        }
        if next != NIL {
            self.prev[next as usize] = prev;
        }
        self.free_order[page as usize] = NOT_FREE;
        self.free_pages -= 1 << order;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_page_aligned_and_disjoint() {
        let pool = DmaPool::for_tests(4 << 20);
        let a = pool.try_alloc(4096).unwrap();
        let b = pool.try_alloc(8192).unwrap();
        let c = pool.try_alloc(512).unwrap();
        for buf in [&a, &b, &c] {
            assert_eq!(buf.addr() % PAGE_BYTES, 0);
        }
        let ranges = [(a.addr(), a.capacity()), (b.addr(), b.capacity()), (c.addr(), c.capacity())];
        for (i, x) in ranges.iter().enumerate() {
            for y in &ranges[i + 1..] {
                assert!(x.0 + x.1 <= y.0 || y.0 + y.1 <= x.0, "{x:?} overlaps {y:?}");
            }
        }
        assert_eq!(c.len(), 512);
        assert_eq!(c.capacity(), 4096);
    }

    #[test]
    fn exhaustion_is_an_error_and_freeing_restores_the_pool() {
        let pool = DmaPool::for_tests(REGION_BYTES);
        let whole = pool.try_alloc(REGION_BYTES).unwrap();
        assert_eq!(pool.try_alloc(4096).unwrap_err(), DmaError::Exhausted);
        drop(whole);
        let pieces: Vec<_> = (0..PAGES_PER_REGION).map(|_| pool.try_alloc(4096).unwrap()).collect();
        assert_eq!(pool.allocated_bytes(), REGION_BYTES);
        drop(pieces);
        assert_eq!(pool.allocated_bytes(), 0);
        // Coalescing worked if the whole region can be had again.
        assert!(pool.try_alloc(REGION_BYTES).is_ok());
    }

    #[test]
    fn oversized_requests_are_refused() {
        let pool = DmaPool::for_tests(REGION_BYTES);
        assert_eq!(pool.try_alloc(REGION_BYTES + 1).unwrap_err(), DmaError::TooLarge { len_bytes: REGION_BYTES + 1 });
    }

    #[test]
    fn waiters_are_woken_when_a_buffer_returns() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let cx = Context::from_waker(&waker);
        let pool = DmaPool::for_tests(REGION_BYTES);
        let whole = pool.try_alloc(REGION_BYTES).unwrap();
        assert!(pool.poll_alloc(4096, &cx).is_pending());
        drop(whole);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(pool.poll_alloc(4096, &cx), Poll::Ready(Ok(_))));
    }

    #[test]
    fn random_alloc_free_keeps_accounting_exact() {
        use rand::{Rng, SeedableRng};
        let pool = DmaPool::for_tests(3 * REGION_BYTES);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut live: Vec<DmaBuf> = Vec::new();
        for _ in 0..20_000 {
            if rng.gen_bool(0.55) {
                let len = rng.gen_range(1..=256 * 1024);
                if let Ok(buf) = pool.try_alloc(len) {
                    live.push(buf);
                }
            } else if !live.is_empty() {
                let i = rng.gen_range(0..live.len());
                live.swap_remove(i);
            }
            let expect: usize = live.iter().map(|b| b.capacity()).sum();
            assert_eq!(pool.allocated_bytes(), expect);
        }
        live.clear();
        assert_eq!(pool.try_alloc(REGION_BYTES).map(|_| ()), Ok(()));
    }
}
