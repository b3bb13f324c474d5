//! Turning a request (or the rest of a short one) into an SQE.

use io_uring::{opcode, squeue, types};

use super::slots::InFlight;
use crate::device::Op;

/// The registered file's index: each ring registers exactly one file.
const FILE: types::Fixed = types::Fixed(0);

/// The SQE for what remains of `inflight` (all of it unless an earlier
/// completion was short), tagged with its slot.
///
/// `fixed_buffers` says whether the pool's regions are registered with this
/// ring; `own_pool` whether this buffer comes from that pool. Only then can
/// its region index name a registered buffer.
pub fn entry_for(
    slot: u32,
    inflight: &mut InFlight,
    block_size_bytes: u64,
    fixed_buffers: bool,
    own_pool: bool,
) -> squeue::Entry {
    let done = inflight.done_bytes;
    let entry = match &mut inflight.op {
        Op::Read { lba, buf } => {
            debug_assert!(done < buf.len());
            let len = (buf.len() - done) as u32;
            let offset = *lba * block_size_bytes + done as u64;
            let index = buf.region_index();
            // The pointer stays inside the buffer: `done < buf.len()`.
            let ptr = buf[done..].as_mut_ptr();
            if fixed_buffers && own_pool {
                opcode::ReadFixed::new(FILE, ptr, len, index as u16).offset(offset).build()
            } else {
                opcode::Read::new(FILE, ptr, len).offset(offset).build()
            }
        }
        Op::Write { lba, buf, fua } => {
            debug_assert!(done < buf.len());
            let len = (buf.len() - done) as u32;
            let offset = *lba * block_size_bytes + done as u64;
            // FUA: the write is durable when it completes (RWF_DSYNC turns into
            // a FUA write on a block device, a data sync on a file system).
            let rw_flags = if *fua { libc::RWF_DSYNC } else { 0 };
            let ptr = buf[done..].as_ptr();
            if fixed_buffers && own_pool {
                let index = buf.region_index() as u16;
                opcode::WriteFixed::new(FILE, ptr, len, index).offset(offset).rw_flags(rw_flags).build()
            } else {
                opcode::Write::new(FILE, ptr, len).offset(offset).rw_flags(rw_flags).build()
            }
        }
        Op::Flush => opcode::Fsync::new(FILE).flags(types::FsyncFlags::DATASYNC).build(),
    };
    entry.user_data(u64::from(slot))
}
