//! Where a set's blocks live: stripes of `stripe_bytes` dealt round-robin to
//! the members (stripe s on member s % n, as that member's stripe s / n),
//! each member's data starting after its label region.

use super::label::Label;

/// The set's geometry, from its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stripes {
    pub member_count: u32,
    pub block_bytes: u64,
    pub stripe_bytes: u64,
    pub data_offset_bytes: u64,
    pub member_data_bytes: u64,
}

/// One member's share of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub member: usize,
    /// Byte address on the member.
    pub member_offset_bytes: u64,
    /// Where the piece starts in the request's buffer.
    pub buf_offset_bytes: usize,
    pub len_bytes: usize,
}

impl Stripes {
    pub fn from_label(label: &Label) -> Self {
        Stripes {
            member_count: label.member_count,
            block_bytes: u64::from(label.block_size_bytes),
            stripe_bytes: u64::from(label.stripe_bytes),
            data_offset_bytes: label.data_offset_bytes,
            member_data_bytes: label.member_data_bytes,
        }
    }

    /// The set's size in its blocks.
    pub fn capacity_blocks(&self) -> u64 {
        u64::from(self.member_count) * self.member_data_bytes / self.block_bytes
    }

    /// The pieces of a transfer of `len_bytes` at set block `lba`, in buffer
    /// order. The caller has checked the transfer against the capacity.
    pub fn pieces(&self, lba: u64, len_bytes: usize) -> Pieces {
        Pieces { stripes: *self, offset_bytes: lba * self.block_bytes, done_bytes: 0, len_bytes }
    }
}

/// Iterator over the pieces of one transfer (no allocation).
#[derive(Debug)]
pub struct Pieces {
    stripes: Stripes,
    offset_bytes: u64,
    done_bytes: usize,
    len_bytes: usize,
}

impl Iterator for Pieces {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.done_bytes >= self.len_bytes {
            return None;
        }
        let s = &self.stripes;
        let at = self.offset_bytes + self.done_bytes as u64;
        let (stripe, within) = (at / s.stripe_bytes, at % s.stripe_bytes);
        let n = u64::from(s.member_count);
        let len_bytes = ((s.stripe_bytes - within) as usize).min(self.len_bytes - self.done_bytes);
        let piece = Piece {
            member: (stripe % n) as usize,
            member_offset_bytes: s.data_offset_bytes + (stripe / n) * s.stripe_bytes + within,
            buf_offset_bytes: self.done_bytes,
            len_bytes,
        };
        self.done_bytes += len_bytes;
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripes(n: u32) -> Stripes {
        Stripes {
            member_count: n,
            block_bytes: 4096,
            stripe_bytes: 16384,
            data_offset_bytes: 4096,
            member_data_bytes: 1 << 20,
        }
    }

    #[test]
    fn a_transfer_inside_one_stripe_is_one_piece() {
        let p: Vec<Piece> = stripes(2).pieces(5, 8192).collect();
        // Block 5 is byte 20480: stripe 1 (member 1, its stripe 0), 4096 in.
        assert_eq!(
            p,
            vec![Piece { member: 1, member_offset_bytes: 4096 + 4096, buf_offset_bytes: 0, len_bytes: 8192 }]
        );
    }

    #[test]
    fn a_transfer_is_cut_at_every_stripe_boundary_round_robin() {
        let p: Vec<Piece> = stripes(3).pieces(2, 40960).collect();
        let expect = [(0, 4096 + 8192, 0, 8192), (1, 4096, 8192, 16384), (2, 4096, 24576, 16384)];
        let got: Vec<_> =
            p.iter().map(|p| (p.member, p.member_offset_bytes, p.buf_offset_bytes, p.len_bytes)).collect();
        assert_eq!(got, expect);
        let p: Vec<Piece> = stripes(3).pieces(12, 4096).collect();
        assert_eq!((p[0].member, p[0].member_offset_bytes), (0, 4096 + 16384), "stripe 3 is member 0's stripe 1");
    }

    #[test]
    fn every_block_maps_to_exactly_one_member_address() {
        let s = stripes(3);
        let mut seen = std::collections::HashSet::new();
        for lba in 0..s.capacity_blocks() {
            let p: Vec<Piece> = s.pieces(lba, 4096).collect();
            assert_eq!(p.len(), 1);
            assert!(p[0].member_offset_bytes + 4096 <= s.data_offset_bytes + s.member_data_bytes);
            assert!(seen.insert((p[0].member, p[0].member_offset_bytes)), "block {lba} collides");
        }
    }
}
