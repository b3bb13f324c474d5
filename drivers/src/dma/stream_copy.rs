//! Copying bytes into memory that a device will read, past the CPU's caches.
//!
//! A journal batch or a write buffer is filled once by the CPU and then read
//! by the device, never by the CPU again. An ordinary copy first reads every
//! destination cache line into the cache (a read for ownership) and leaves
//! the lines there, where they evict data the CPU does want; on the shared
//! development VM that made the copy of large journal records into batch
//! buffers the largest single cost of the journal (BENCHMARKS.md, "Journal").
//! Non-temporal stores write whole lines straight to memory: no read, no
//! cache pollution. They pay off only for whole lines, so short copies and
//! the unaligned ends of long ones use an ordinary copy.

/// Copies shorter than this use an ordinary copy: their lines are few, and
/// the record around them (headers, neighbours) is written with ordinary
/// stores anyway.
pub const STREAMING_MIN_BYTES: usize = 16 * 1024;

/// The unit of a non-temporal store run: one cache line.
const LINE_BYTES: usize = 64;

/// Copies `src` into `dst` (same length), with non-temporal stores for the
/// whole cache lines of long copies. When it returns, the bytes are visible
/// to the CPU as after an ordinary copy and ordered before any later store
/// (a store fence), so the buffer may be handed to a device at once.
///
/// # Panics
/// If the lengths differ (as `copy_from_slice`).
pub fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_streaming needs equal lengths");
    if src.len() < STREAMING_MIN_BYTES {
        dst.copy_from_slice(src);
        return;
    }
    // Up to the first line boundary of the destination, then whole lines,
    // then the tail.
    let head = dst.as_ptr().align_offset(LINE_BYTES).min(dst.len());
    let body = (dst.len() - head) / LINE_BYTES * LINE_BYTES;
    let (dst_head, rest) = dst.split_at_mut(head);
    let (dst_body, dst_tail) = rest.split_at_mut(body);
    let (src_head, rest) = src.split_at(head);
    let (src_body, src_tail) = rest.split_at(body);
    dst_head.copy_from_slice(src_head);
    copy_lines(dst_body, src_body);
    dst_tail.copy_from_slice(src_tail);
}

/// Copies whole lines with non-temporal stores; `dst` is line aligned and
/// both are a multiple of a line long.
#[cfg(target_arch = "x86_64")]
fn copy_lines(dst: &mut [u8], src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    debug_assert_eq!(dst.as_ptr() as usize % LINE_BYTES, 0);
    debug_assert_eq!(dst.len() % LINE_BYTES, 0);
    debug_assert_eq!(dst.len(), src.len());
    for (d, s) in dst.chunks_exact_mut(LINE_BYTES).zip(src.chunks_exact(LINE_BYTES)) {
        let (d, s) = (d.as_mut_ptr(), s.as_ptr());
        for lane in 0..LINE_BYTES / 16 {
            // SAFETY: SSE2 is part of x86_64's baseline. `s` and `d` point to
            // chunks of exactly LINE_BYTES bytes (`chunks_exact`), so lanes
            // 0..4 of 16 bytes stay inside them; the load is unaligned-safe;
            // `d` is 64-byte aligned (the caller starts at a line boundary
            // and steps by whole lines), so each 16-byte lane is 16-byte
            // aligned as `_mm_stream_si128` requires; `dst` is borrowed
            // mutably, so nothing else reads or writes these bytes meanwhile.
            unsafe {
                let value = _mm_loadu_si128(s.add(lane * 16).cast::<__m128i>());
                _mm_stream_si128(d.add(lane * 16).cast::<__m128i>(), value);
            }
        }
    }
    // SAFETY: SSE2 baseline; the fence orders the weakly ordered streaming
    // stores before every later store (such as the one that hands the buffer
    // to the device's queue), as ordinary stores would be.
    unsafe { _mm_sfence() };
}

#[cfg(not(target_arch = "x86_64"))]
fn copy_lines(dst: &mut [u8], src: &[u8]) {
    dst.copy_from_slice(src);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_and_alignment_exactly() {
        let src: Vec<u8> = (0..STREAMING_MIN_BYTES * 3).map(|i| (i.wrapping_mul(31) >> 3) as u8).collect();
        let mut dst = vec![0u8; src.len() + 128];
        for dst_at in [0usize, 1, 8, 40, 63, 64, 65] {
            for src_at in [0usize, 3, 64] {
                for len in [
                    0,
                    1,
                    100,
                    STREAMING_MIN_BYTES - 1,
                    STREAMING_MIN_BYTES,
                    STREAMING_MIN_BYTES + 77,
                    src.len() - src_at,
                ] {
                    dst.fill(0xEE);
                    copy_streaming(&mut dst[dst_at..dst_at + len], &src[src_at..src_at + len]);
                    assert_eq!(
                        &dst[dst_at..dst_at + len],
                        &src[src_at..src_at + len],
                        "dst {dst_at} src {src_at} len {len}"
                    );
                    assert!(dst[..dst_at].iter().all(|&b| b == 0xEE), "bytes before the copy changed");
                    assert!(dst[dst_at + len..].iter().all(|&b| b == 0xEE), "bytes after the copy changed");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "equal lengths")]
    fn unequal_lengths_panic_like_copy_from_slice() {
        copy_streaming(&mut [0u8; 4], &[0u8; 5]);
    }
}
