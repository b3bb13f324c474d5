//! The record format: a 40-byte header and an opaque payload, 8-byte aligned.
//! `docs/FORMAT.md` ("Journal") describes it byte by byte; the constants here
//! are its source of truth.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `KJR1` (0x3152_4A4B as a little-endian u32) |
//! | 4 | 4 | CRC-32C, seeded with the volume, over bytes 0..4 and 8..40 and, for data records, the payload |
//! | 8 | 8 | LSN (for a pad: the LSN of the next data record) |
//! | 16 | 8 | epoch |
//! | 24 | 8 | durable-LSN hint: every LSN up to it was durable when the batch was sealed |
//! | 32 | 4 | payload length in bytes |
//! | 36 | 1 | kind: 1 = pad, 2 = data |
//! | 37 | 1 | flags (0) |
//! | 38 | 2 | reserved (0) |

use keel_drivers::checksum;

use crate::Lsn;

/// The unit of the on-disk format and of every journal write.
pub const PAGE_BYTES: usize = 4096;
/// Bytes of a record header.
pub const HEADER_BYTES: usize = 40;
/// Records start at multiples of this.
pub const RECORD_ALIGN_BYTES: usize = 8;
/// "KJR1" read as a little-endian u32.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"KJR1");

const AT_MAGIC: usize = 0;
const AT_CRC: usize = 4;
const AT_LSN: usize = 8;
const AT_EPOCH: usize = 16;
const AT_HINT: usize = 24;
const AT_LEN: usize = 32;
const AT_KIND: usize = 36;
const AT_FLAGS: usize = 37;
const AT_RESERVED: usize = 38;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Filler: to the end of a page, or to the end of the ring. Its payload is
    /// neither checksummed nor necessarily written.
    Pad,
    /// A payload of the engine's (a whole transaction).
    Data,
}

impl RecordKind {
    pub fn to_byte(self) -> u8 {
        match self {
            RecordKind::Pad => 1,
            RecordKind::Data => 2,
        }
    }

    pub fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::Pad),
            2 => Some(RecordKind::Data),
            _ => None,
        }
    }
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub crc: u32,
    pub lsn: Lsn,
    pub epoch: u64,
    pub lsn_durable_hint: Lsn,
    pub payload_bytes: u32,
    pub kind: RecordKind,
}

/// Bytes a record with `payload_bytes` of payload occupies in the ring.
pub fn record_bytes(payload_bytes: usize) -> usize {
    (HEADER_BYTES + payload_bytes).next_multiple_of(RECORD_ALIGN_BYTES)
}

/// The CRC seed of a volume and epoch: records of another volume (an earlier
/// mkfs) or another epoch never validate.
pub fn crc_seed(volume_uuid: &[u8; 16], epoch: u64) -> u32 {
    let seed = crc32c::crc32c(volume_uuid);
    crc32c::crc32c_append(seed, &epoch.to_le_bytes())
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Writes a header with a zero hint. Until [`seal_record`] replaces it, the
/// CRC field holds `payload_crc`: `crc32c(payload)` for a data record (taken
/// by the committer, outside the journal's lock), 0 for a pad.
pub fn put_header(out: &mut [u8], kind: RecordKind, lsn: Lsn, epoch: u64, payload_bytes: u32, payload_crc: u32) {
    assert!(out.len() >= HEADER_BYTES);
    put_u32(out, AT_MAGIC, RECORD_MAGIC);
    put_u32(out, AT_CRC, payload_crc);
    put_u64(out, AT_LSN, lsn);
    put_u64(out, AT_EPOCH, epoch);
    put_u64(out, AT_HINT, 0);
    put_u32(out, AT_LEN, payload_bytes);
    out[AT_KIND] = kind.to_byte();
    out[AT_FLAGS] = 0;
    out[AT_RESERVED..AT_RESERVED + 2].fill(0);
}

/// The CRC of a record's header alone (minus its CRC field).
fn header_crc(seed: u32, record: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(seed, &record[AT_MAGIC..AT_CRC]);
    crc32c::crc32c_append(crc, &record[AT_LSN..HEADER_BYTES])
}

/// The CRC of a record: header minus its CRC field, then the payload of a
/// data record. `record` starts at the header and holds at least the
/// checksummed bytes.
pub fn record_crc(seed: u32, record: &[u8], kind: RecordKind, payload_bytes: usize) -> u32 {
    let crc = header_crc(seed, record);
    match kind {
        RecordKind::Data => checksum::crc32c_append(crc, &record[HEADER_BYTES..HEADER_BYTES + payload_bytes]),
        RecordKind::Pad => crc,
    }
}

/// Stamps the durable-LSN hint into a record written by [`put_header`] and
/// seals it with its CRC, joining the header's CRC with the payload's CRC
/// that the CRC field held (the payload is not read again). Returns the
/// record's length in the ring.
pub fn seal_record(seed: u32, record: &mut [u8], lsn_durable_hint: Lsn) -> usize {
    put_u64(record, AT_HINT, lsn_durable_hint);
    let kind = RecordKind::from_byte(record[AT_KIND]).expect("the journal wrote this header itself");
    let payload_bytes = get_u32(record, AT_LEN) as usize;
    let header = header_crc(seed, record);
    let crc = match kind {
        RecordKind::Data => crate::crc_join::join(header, get_u32(record, AT_CRC), payload_bytes),
        RecordKind::Pad => header,
    };
    put_u32(record, AT_CRC, crc);
    match kind {
        RecordKind::Data => record_bytes(payload_bytes),
        RecordKind::Pad => HEADER_BYTES + payload_bytes,
    }
}

/// Why bytes are not a valid header (before the CRC is checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFault {
    Magic,
    Kind,
    Reserved,
}

/// Decodes the fixed fields of a header. The caller checks epoch, LSN, length
/// bounds and then the CRC with [`record_crc`].
pub fn decode_header(bytes: &[u8]) -> Result<RecordHeader, HeaderFault> {
    assert!(bytes.len() >= HEADER_BYTES);
    if get_u32(bytes, AT_MAGIC) != RECORD_MAGIC {
        return Err(HeaderFault::Magic);
    }
    let kind = RecordKind::from_byte(bytes[AT_KIND]).ok_or(HeaderFault::Kind)?;
    if bytes[AT_FLAGS] != 0 || bytes[AT_RESERVED] != 0 || bytes[AT_RESERVED + 1] != 0 {
        return Err(HeaderFault::Reserved);
    }
    Ok(RecordHeader {
        crc: get_u32(bytes, AT_CRC),
        lsn: get_u64(bytes, AT_LSN),
        epoch: get_u64(bytes, AT_EPOCH),
        lsn_durable_hint: get_u64(bytes, AT_HINT),
        payload_bytes: get_u32(bytes, AT_LEN),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_decodes_and_its_crc_verifies() {
        let seed = crc_seed(&[7u8; 16], 3);
        let mut buf = vec![0u8; 128];
        put_header(&mut buf, RecordKind::Data, 42, 3, 5, crc32c::crc32c(b"hello"));
        buf[HEADER_BYTES..HEADER_BYTES + 5].copy_from_slice(b"hello");
        assert_eq!(seal_record(seed, &mut buf, 41), record_bytes(5));
        let header = decode_header(&buf).unwrap();
        assert_eq!((header.lsn, header.epoch, header.lsn_durable_hint, header.payload_bytes), (42, 3, 41, 5));
        assert_eq!(record_crc(seed, &buf, header.kind, 5), header.crc);
    }

    #[test]
    fn another_volume_or_epoch_does_not_validate() {
        let seed = crc_seed(&[7u8; 16], 3);
        let mut buf = vec![0u8; 64];
        put_header(&mut buf, RecordKind::Data, 1, 3, 0, crc32c::crc32c(b""));
        seal_record(seed, &mut buf, 0);
        let crc = decode_header(&buf).unwrap().crc;
        assert_ne!(record_crc(crc_seed(&[8u8; 16], 3), &buf, RecordKind::Data, 0), crc);
        assert_ne!(record_crc(crc_seed(&[7u8; 16], 4), &buf, RecordKind::Data, 0), crc);
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let seed = crc_seed(&[1u8; 16], 1);
        let mut buf = vec![0u8; record_bytes(20)];
        put_header(&mut buf, RecordKind::Data, 9, 1, 20, crc32c::crc32c(&[0x5A; 20]));
        buf[HEADER_BYTES..HEADER_BYTES + 20].fill(0x5A);
        seal_record(seed, &mut buf, 8);
        for bit in 0..(HEADER_BYTES + 20) * 8 {
            let mut copy = buf.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            let ok = match decode_header(&copy) {
                Ok(h) => h.payload_bytes == 20 && record_crc(seed, &copy, h.kind, 20) == h.crc,
                Err(_) => false,
            };
            assert!(!ok, "flip of bit {bit} went unnoticed");
        }
    }
}
