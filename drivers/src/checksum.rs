//! CRC-32C (Castagnoli) of long buffers by carry-less multiplication.
//!
//! Every journal record's payload is checksummed once by its committer; with
//! 256 KiB records the `crc32c` crate's loop (three interleaved streams of the
//! `crc32` instruction, about 8 bytes per cycle at best) was the largest single
//! cost of the journal's reactor (BENCHMARKS.md, "Journal"). Where the CPU has
//! AVX-512 and VPCLMULQDQ, long buffers are instead *folded*: sixteen 128-bit
//! lanes are each multiplied (carry-less) by x^2048 modulo the polynomial and
//! added to the lanes 256 bytes further on, so the whole buffer shrinks to 64
//! bytes that leave the same remainder; the `crc32` instruction finishes those
//! and the tail. The value is the same CRC-32C bit for bit (the on-disk format
//! does not change); other CPUs and short buffers use the `crc32c` crate.
//!
//! It lives in the drivers crate only because the intrinsics need `unsafe`.

/// Buffers shorter than this go to the `crc32c` crate: folding needs one
/// step of 256 bytes. (Measured on the development VM, cache-hot, s per GiB,
/// crate / folding: 256 B 0.099 / 0.079, 512 B 0.098 / 0.044, 4 KiB 0.043 /
/// 0.019, 256 KiB 0.033 / 0.016.)
pub const FOLD_MIN_BYTES: usize = 256;

/// The CRC-32C of `bytes`; equal to `crc32c::crc32c(bytes)`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_append(0, bytes)
}

/// The CRC-32C of the bytes that gave `crc` followed by `bytes`; equal to
/// `crc32c::crc32c_append(crc, bytes)`.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() >= FOLD_MIN_BYTES && fold::available() {
        return fold::crc32c_append_checked(crc, bytes);
    }
    crc32c::crc32c_append(crc, bytes)
}

/// Whether long buffers are folded on this CPU (for tests and benchmark logs).
pub fn folding_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        fold::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The CRC-32C polynomial with its x^32 term, most significant bit = x^32.
const POLY_WITH_X32: u64 = 0x1_1EDC_6F41;

/// x^n modulo the polynomial, as a plain polynomial (bit k = coefficient of
/// x^k), computed at compile time so no magic constants need trusting.
const fn x_pow_mod(n: u32) -> u64 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        r <<= 1;
        if r & (1 << 32) != 0 {
            r ^= POLY_WITH_X32;
        }
        i += 1;
    }
    r
}

/// The pair of multipliers that moves a 128-bit lane `distance_bits` later in
/// the message, in the bit-reflected layout the CRC uses (a register's bit j
/// is the message's bit j, the coefficient of x^(127-j); a 64-bit half's bit i
/// the coefficient of x^(63-i)). The lane's low half holds its high-degree
/// coefficients H and its high half the low ones L: the lane is H·x^64 + L,
/// and moving it means multiplying by x^distance. A carry-less product of two
/// reflected 64-bit values comes out as the product times x (one bit short of
/// 128), so the multipliers are x^(distance+63) for H and x^(distance-1) for
/// L: each result has degree below 96 and fits the lane.
const fn fold_multipliers(distance_bits: u32) -> (u64, u64) {
    (x_pow_mod(distance_bits + 63).reverse_bits(), x_pow_mod(distance_bits - 1).reverse_bits())
}

#[cfg(target_arch = "x86_64")]
mod fold {
    use std::arch::x86_64::{
        __m512i, _mm512_broadcast_i32x4, _mm512_clmulepi64_epi128, _mm512_loadu_si512, _mm512_storeu_si512,
        _mm512_ternarylogic_epi64, _mm512_xor_si512, _mm512_zextsi128_si512, _mm_cvtsi32_si128, _mm_set_epi64x,
    };

    use super::fold_multipliers;

    /// Bytes consumed per step: four 512-bit registers.
    const STEP_BYTES: usize = 256;
    const LANE_BYTES: usize = 64;
    /// Moves a register one step (2048 bits) on.
    const STEP_MULTIPLIERS: (u64, u64) = fold_multipliers(8 * STEP_BYTES as u32);
    /// Moves a register one register (512 bits) on: the final reduction.
    const LANE_MULTIPLIERS: (u64, u64) = fold_multipliers(8 * LANE_BYTES as u32);

    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("vpclmulqdq")
    }

    /// `crc32c_append` by folding; `bytes` at least one step long.
    pub(super) fn crc32c_append_checked(crc: u32, bytes: &[u8]) -> u32 {
        assert!(available() && bytes.len() >= STEP_BYTES, "folding needs AVX-512, VPCLMULQDQ and 256 bytes");
        // SAFETY: the CPU features the function is compiled for were just
        // detected at run time, and it reads only inside `bytes`.
        let (remainder, tail_at) = unsafe { fold_to_one_lane(!crc, bytes) };
        // The 64 bytes leave, from a zero state, the remainder the folded
        // prefix leaves from the caller's state (the state was added into its
        // first bytes): a zero state is the finished value !0.
        let crc = crc32c::crc32c_append(!0, &remainder);
        crc32c::crc32c_append(crc, &bytes[tail_at..])
    }

    /// Folds the longest prefix of whole steps into 64 bytes; returns them and
    /// where the unfolded tail starts. `state` is the CRC's running register
    /// (the finished value inverted), added into the first four bytes.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and VPCLMULQDQ; `bytes.len() >= 256`.
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    unsafe fn fold_to_one_lane(state: u32, bytes: &[u8]) -> ([u8; LANE_BYTES], usize) {
        let steps = bytes.len() / STEP_BYTES;
        debug_assert!(steps >= 1);
        let load = |at: usize| {
            debug_assert!(at + LANE_BYTES <= bytes.len());
            // SAFETY: every caller passes `at` with `at + 64 <= steps * 256
            // <= bytes.len()`, so the unaligned 64-byte load stays in bytes.
            unsafe { _mm512_loadu_si512(bytes.as_ptr().add(at).cast::<__m512i>()) }
        };
        let state_lane = _mm512_zextsi128_si512(_mm_cvtsi32_si128(state as i32));
        let mut lanes = [_mm512_xor_si512(load(0), state_lane), load(64), load(128), load(192)];
        let step = multipliers(STEP_MULTIPLIERS);
        for s in 1..steps {
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane = fold_into(*lane, step, load(s * STEP_BYTES + i * LANE_BYTES));
            }
        }
        let one = multipliers(LANE_MULTIPLIERS);
        let folded = fold_into(fold_into(fold_into(lanes[0], one, lanes[1]), one, lanes[2]), one, lanes[3]);
        let mut out = [0u8; LANE_BYTES];
        // SAFETY: `out` is 64 bytes; the store is unaligned-safe.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast::<__m512i>(), folded) };
        (out, steps * STEP_BYTES)
    }

    /// Every 128-bit lane gets (multiplier for its low half, for its high half).
    #[target_feature(enable = "avx512f")]
    fn multipliers((low_half, high_half): (u64, u64)) -> __m512i {
        _mm512_broadcast_i32x4(_mm_set_epi64x(high_half as i64, low_half as i64))
    }

    /// `lanes` moved on by the multipliers' distance, plus `next`.
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn fold_into(lanes: __m512i, multipliers: __m512i, next: __m512i) -> __m512i {
        let low = _mm512_clmulepi64_epi128::<0x00>(lanes, multipliers);
        let high = _mm512_clmulepi64_epi128::<0x11>(lanes, multipliers);
        // 0x96: the three-way exclusive or.
        _mm512_ternarylogic_epi64::<0x96>(low, high, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn assert_same(crc: u32, bytes: &[u8]) {
        assert_eq!(crc32c_append(crc, bytes), crc32c::crc32c_append(crc, bytes), "len {} seed {crc:#x}", bytes.len());
    }

    #[test]
    fn multipliers_are_reduced_powers_of_x() {
        assert_eq!(x_pow_mod(0), 1);
        assert_eq!(x_pow_mod(31), 1 << 31);
        assert_eq!(x_pow_mod(32), POLY_WITH_X32 ^ (1 << 32));
        assert!((0..3000).all(|n| x_pow_mod(n) < (1 << 32)));
    }

    #[test]
    fn equals_the_crc32c_crate_at_every_length_around_the_fold_sizes() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut data = vec![0u8; 8192 + 64];
        rng.fill_bytes(&mut data);
        for len in (0..1300).chain(1900..2200).chain(4090..4200).chain(8100..8192) {
            for offset in [0, 1, 7, 63] {
                assert_same(rng.gen(), &data[offset..offset + len]);
            }
        }
        assert_same(0, &data[..8192]);
        assert_same(u32::MAX, &data[..8192]);
    }

    #[test]
    fn equals_the_crc32c_crate_at_random_lengths_and_alignments() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut data = vec![0u8; (1 << 20) + 64];
        rng.fill_bytes(&mut data);
        for _ in 0..400 {
            let len = rng.gen_range(0..=1 << 20);
            let offset = rng.gen_range(0..64);
            assert_same(rng.gen(), &data[offset..offset + len]);
        }
    }

    #[test]
    fn equals_the_crc32c_crate_on_uniform_bytes() {
        // All-zero and all-ones inputs catch a state added in the wrong place.
        for byte in [0x00, 0xFF, 0xA5] {
            let data = vec![byte; 300_000];
            for len in [256, 1024, 4096, 262_144, 300_000] {
                assert_same(0, &data[..len]);
                assert_same(0xDEAD_BEEF, &data[..len]);
            }
        }
    }

    #[test]
    fn crc32c_is_append_from_zero() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        assert_eq!(crc32c(&data), crc32c::crc32c(&data));
        // Appending in two parts gives the whole buffer's CRC.
        assert_eq!(crc32c_append(crc32c(&data[..1500]), &data[1500..]), crc32c(&data));
    }

    #[test]
    fn reports_whether_this_cpu_folds() {
        // Not an assertion on the machine: a record of which path the
        // equality tests above exercised.
        eprintln!("checksum: folding available on this CPU: {}", folding_available());
    }
}
