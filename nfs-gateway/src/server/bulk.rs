//! WRITE data that goes to the device from where it is read: the
//! connection's deframer asks [`splitter`] about each large record, and for
//! a WRITE of whole, aligned chunks the data is read into a DMA buffer of
//! the engine's device, which becomes the chunks' out-of-line values as it
//! is (cut per chunk without a copy; no copy out of the record, none into
//! DMA memory).

use keel_engine::Engine;

use crate::fs::keys::CHUNK_BYTES;
use crate::handle::NFS3_FHSIZE;
use crate::nfs3::types::{NFS_PROGRAM, NFS_V3, PROC_WRITE};
use crate::rpc::record::Splitter;
use crate::rpc::CallHeader;

/// Where the data of the WRITE call whose body starts with `prefix` (and is
/// `body_len` bytes long) begins, if it is whole chunks from a chunk
/// boundary (64 KiB, or the Linux client's 1 MiB) and ends the record.
pub(crate) fn write_payload_start(prefix: &[u8], body_len: usize) -> Option<usize> {
    let (header, mut r) = CallHeader::decode(prefix).ok()?;
    if (header.prog, header.vers, header.proc_num) != (NFS_PROGRAM, NFS_V3, PROC_WRITE) {
        return None;
    }
    r.opaque(NFS3_FHSIZE).ok()?;
    let offset = r.u64().ok()?;
    let count = r.u32().ok()?;
    let _stable = r.u32().ok()?;
    let data_len = r.u32().ok()?;
    let from = r.position();
    let count_bytes = u64::from(count);
    let whole_chunk = offset % CHUNK_BYTES == 0 && count_bytes > 0 && count_bytes % CHUNK_BYTES == 0;
    (whole_chunk && data_len == count && from.checked_add(data_len as usize) == Some(body_len)).then_some(from)
}

/// The splitter of a connection served from `engine`: a WRITE's data goes
/// into a buffer from [`Engine::value_buf`] (none free: the record stays
/// whole).
pub(crate) fn splitter(engine: Engine) -> Splitter {
    Box::new(move |prefix, body_len| {
        let from = write_payload_start(prefix, body_len)?;
        Some((from, engine.value_buf(body_len - from)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::Writer;

    fn write_call(proc_num: u32, offset: u64, count: u32, data_len: u32) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(7).u32(0).u32(2).u32(NFS_PROGRAM).u32(NFS_V3).u32(proc_num);
        w.u32(1).opaque(&[0; 20]).u32(0).opaque(&[]);
        w.opaque(&[9; 40]).u64(offset).u32(count).u32(0).u32(data_len);
        w.into_vec()
    }

    #[test]
    fn only_a_write_of_aligned_whole_chunks_that_ends_the_record_is_split() {
        let c = CHUNK_BYTES as u32;
        let head = write_call(PROC_WRITE, 3 * CHUNK_BYTES, c, c);
        let body_len = head.len() + c as usize;
        assert_eq!(write_payload_start(&head, body_len), Some(head.len()));
        // With some of the data already there too.
        let mut more = head.clone();
        more.extend_from_slice(&[1; 100]);
        assert_eq!(write_payload_start(&more, body_len), Some(head.len()));
        assert_eq!(write_payload_start(&head, body_len + 4), None);
        assert_eq!(write_payload_start(&head[..head.len() - 1], body_len), None);
        let unaligned = write_call(PROC_WRITE, 5, c, c);
        assert_eq!(write_payload_start(&unaligned, unaligned.len() + c as usize), None);
        let short = write_call(PROC_WRITE, 0, c - 4, c - 4);
        assert_eq!(write_payload_start(&short, short.len() + c as usize - 4), None);
        let sixteen = write_call(PROC_WRITE, 2 * CHUNK_BYTES, 16 * c, 16 * c);
        assert_eq!(write_payload_start(&sixteen, sixteen.len() + 16 * c as usize), Some(sixteen.len()));
        let and_a_half = write_call(PROC_WRITE, 0, c + c / 2, c + c / 2);
        assert_eq!(write_payload_start(&and_a_half, and_a_half.len() + (c + c / 2) as usize), None);
        let other = write_call(PROC_WRITE + 1, 0, c, c);
        assert_eq!(write_payload_start(&other, other.len() + c as usize), None);
    }
}
