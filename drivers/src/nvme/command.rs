//! NVMe submission and completion queue entries, and the commands the
//! driver sends. Entries are written to and read from DMA memory as
//! little-endian 32-bit words (x86 and arm64 are little-endian; asserted).

/// Admin opcodes.
pub mod admin_op {
    pub const DELETE_IO_SQ: u8 = 0x00;
    pub const CREATE_IO_SQ: u8 = 0x01;
    pub const DELETE_IO_CQ: u8 = 0x04;
    pub const CREATE_IO_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const ABORT: u8 = 0x08;
    pub const SET_FEATURES: u8 = 0x09;
}

/// NVM command set opcodes.
pub mod io_op {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
}

/// Feature identifiers.
pub const FEATURE_NUMBER_OF_QUEUES: u32 = 0x07;
/// Identify CNS values.
pub const CNS_NAMESPACE: u32 = 0x00;
pub const CNS_CONTROLLER: u32 = 0x01;
/// Force Unit Access: bit 30 of CDW12 of a read or write.
pub const CDW12_FUA: u32 = 1 << 30;

const _: () = assert!(cfg!(target_endian = "little"), "queue entries are written in native (little) endianness");

/// A 64-byte submission queue entry.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sqe {
    /// Opcode (bits 0-7), fused/PSDT (8-15, zero: PRPs), command id (16-31).
    pub cdw0: u32,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub mptr: u64,
    pub prp1: u64,
    pub prp2: u64,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
}

/// A 16-byte completion queue entry.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cqe {
    pub dw0: u32,
    pub dw1: u32,
    pub sq_head: u16,
    pub sq_id: u16,
    pub cid: u16,
    /// Phase tag (bit 0) and status field (bits 1-15).
    pub status: u16,
}

const _: () = assert!(std::mem::size_of::<Sqe>() == 64 && std::mem::size_of::<Cqe>() == 16);

impl Sqe {
    pub fn new(opcode: u8) -> Sqe {
        Sqe { cdw0: u32::from(opcode), ..Sqe::default() }
    }

    pub fn opcode(&self) -> u8 {
        self.cdw0 as u8
    }

    pub fn with_cid(mut self, cid: u16) -> Sqe {
        self.cdw0 = (self.cdw0 & 0xffff) | (u32::from(cid) << 16);
        self
    }

    pub fn identify(cns: u32, nsid: u32, prp1: u64) -> Sqe {
        Sqe { nsid, prp1, cdw10: cns, ..Sqe::new(admin_op::IDENTIFY) }
    }

    /// Set Features, Number of Queues: asks for `count` submission and
    /// completion queues (the values are 0-based on the wire).
    pub fn set_queue_count(count: u16) -> Sqe {
        let n = u32::from(count.max(1) - 1);
        Sqe { cdw10: FEATURE_NUMBER_OF_QUEUES, cdw11: (n << 16) | n, ..Sqe::new(admin_op::SET_FEATURES) }
    }

    /// Create I/O Completion Queue `qid` of `entries`, physically contiguous,
    /// with interrupts to MSI-X `vector` when given.
    pub fn create_io_cq(qid: u16, entries: u32, prp1: u64, vector: Option<u16>) -> Sqe {
        let (ien, iv) = match vector {
            Some(v) => (1u32 << 1, u32::from(v) << 16),
            None => (0, 0),
        };
        Sqe {
            prp1,
            cdw10: ((entries - 1) << 16) | u32::from(qid),
            cdw11: iv | ien | 1,
            ..Sqe::new(admin_op::CREATE_IO_CQ)
        }
    }

    /// Create I/O Submission Queue `qid` of `entries` on completion queue `cqid`.
    pub fn create_io_sq(qid: u16, entries: u32, prp1: u64, cqid: u16) -> Sqe {
        Sqe {
            prp1,
            cdw10: ((entries - 1) << 16) | u32::from(qid),
            cdw11: (u32::from(cqid) << 16) | 1,
            ..Sqe::new(admin_op::CREATE_IO_SQ)
        }
    }

    pub fn delete_io_sq(qid: u16) -> Sqe {
        Sqe { cdw10: u32::from(qid), ..Sqe::new(admin_op::DELETE_IO_SQ) }
    }

    pub fn delete_io_cq(qid: u16) -> Sqe {
        Sqe { cdw10: u32::from(qid), ..Sqe::new(admin_op::DELETE_IO_CQ) }
    }

    /// Abort command `cid` on submission queue `sqid`.
    pub fn abort(sqid: u16, cid: u16) -> Sqe {
        Sqe { cdw10: (u32::from(cid) << 16) | u32::from(sqid), ..Sqe::new(admin_op::ABORT) }
    }

    /// Read or write of `blocks` logical blocks (1..=65536) at `lba`.
    pub fn read_write(opcode: u8, nsid: u32, lba: u64, blocks: u32, fua: bool) -> Sqe {
        debug_assert!((1..=65536).contains(&blocks));
        Sqe {
            nsid,
            cdw10: lba as u32,
            cdw11: (lba >> 32) as u32,
            cdw12: (blocks - 1) | if fua { CDW12_FUA } else { 0 },
            ..Sqe::new(opcode)
        }
    }

    pub fn flush(nsid: u32) -> Sqe {
        Sqe { nsid, ..Sqe::new(io_op::FLUSH) }
    }
}

impl Cqe {
    pub fn phase(&self) -> bool {
        self.status & 1 == 1
    }

    /// The 15-bit status field (0 = success).
    pub fn status_field(&self) -> u16 {
        self.status >> 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_encodes_lba_count_and_fua() {
        let sqe = Sqe::read_write(io_op::WRITE, 1, 0x1_2345_6789, 8, true).with_cid(0x42);
        assert_eq!(sqe.cdw0, 0x0042_0001);
        assert_eq!(sqe.cdw10, 0x2345_6789);
        assert_eq!(sqe.cdw11, 0x1);
        assert_eq!(sqe.cdw12, 7 | (1 << 30));
        assert_eq!(sqe.opcode(), io_op::WRITE);
        let read = Sqe::read_write(io_op::READ, 1, 0, 1, false);
        assert_eq!(read.cdw12, 0);
    }

    #[test]
    fn queue_creation_commands_are_zero_based() {
        let cq = Sqe::create_io_cq(3, 256, 0x1000, Some(3));
        assert_eq!(cq.cdw10, (255 << 16) | 3);
        assert_eq!(cq.cdw11, (3 << 16) | 0b11);
        let polled = Sqe::create_io_cq(3, 256, 0x1000, None);
        assert_eq!(polled.cdw11, 1);
        let sq = Sqe::create_io_sq(3, 256, 0x2000, 3);
        assert_eq!(sq.cdw11, (3 << 16) | 1);
        assert_eq!(Sqe::set_queue_count(4).cdw11, (3 << 16) | 3);
        assert_eq!(Sqe::abort(2, 9).cdw10, (9 << 16) | 2);
    }
}
