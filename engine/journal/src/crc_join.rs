//! Joining CRC-32C values: the CRC of `A ++ B` from the CRC of `A`, the CRC
//! of `B` and `B`'s length.
//!
//! A record's CRC covers its header, then its payload, but the header's
//! durable-LSN hint is known only when the batch is sealed. Joining lets the
//! committer checksum its payload before it takes the journal's lock (while
//! the payload is still in its cache, and in parallel on every reactor), and
//! the batch writer then checksums only the 40-byte headers and joins: the
//! batch write no longer waits for a pass over every payload byte.
//!
//! The arithmetic: CRC-32C is a remainder of polynomials over GF(2), so
//! `crc(A ++ B) = crc(A) * x^(8 |B|) + crc(B)` modulo the CRC polynomial, in
//! the bit-reflected representation the CRC uses (bit 31 is the coefficient
//! of x^0). The pre- and post-inversion of the standard CRC cancel in the sum.

/// The CRC-32C polynomial, bit-reflected.
const POLY_REFLECTED: u32 = 0x82F6_3B78;
/// The polynomial 1 (x^0) in the reflected representation.
const ONE: u32 = 1 << 31;

/// `value * x mod P`.
const fn times_x(value: u32) -> u32 {
    if value & 1 == 1 {
        (value >> 1) ^ POLY_REFLECTED
    } else {
        value >> 1
    }
}

/// `a * b mod P`.
const fn multiply(a: u32, b: u32) -> u32 {
    let mut product = 0u32;
    let mut b_times_x_i = b;
    let mut i = 0;
    while i < 32 {
        if a & (ONE >> i) != 0 {
            product ^= b_times_x_i;
        }
        b_times_x_i = times_x(b_times_x_i);
        i += 1;
    }
    product
}

/// `X_POW_TWO_POW[k] = x^(2^k) mod P`: squaring the previous entry doubles the
/// exponent.
const X_POW_TWO_POW: [u32; 64] = {
    let mut table = [0u32; 64];
    table[0] = times_x(ONE);
    let mut k = 1;
    while k < 64 {
        table[k] = multiply(table[k - 1], table[k - 1]);
        k += 1;
    }
    table
};

/// `x^(8 * bytes) mod P`: the factor that moves a CRC past `bytes` bytes.
fn shift_for(bytes: usize) -> u32 {
    let mut exponent = (bytes as u64) * 8;
    let mut result = ONE;
    let mut k = 0;
    while exponent != 0 {
        if exponent & 1 == 1 {
            result = multiply(result, X_POW_TWO_POW[k]);
        }
        exponent >>= 1;
        k += 1;
    }
    result
}

/// The CRC-32C of `A ++ B`, given `crc_a = crc32c_append(s, A)` (for any
/// seed `s`), `crc_b = crc32c(B)` and `b_bytes = |B|`: equal to
/// `crc32c_append(crc_a, B)`.
pub(crate) fn join(crc_a: u32, crc_b: u32, b_bytes: usize) -> u32 {
    multiply(crc_a, shift_for(b_bytes)) ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_equals_checksumming_the_concatenation() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for seed in [0u32, 1, 0xDEAD_BEEF] {
            for (split, end) in [(0, 0), (0, 1), (36, 36), (36, 136), (40, 4136), (7, 70_000), (69_999, 70_000)] {
                let (a, b) = (&data[..split], &data[split..end]);
                let expected = crc32c::crc32c_append(seed, &data[..end]);
                let joined = join(crc32c::crc32c_append(seed, a), crc32c::crc32c(b), b.len());
                assert_eq!(joined, expected, "seed {seed:#x}, split {split}, end {end}");
            }
        }
    }

    #[test]
    fn shifting_by_nothing_is_the_identity() {
        assert_eq!(shift_for(0), ONE);
        assert_eq!(multiply(0x1234_5678, ONE), 0x1234_5678);
    }
}
