//! The indirection table: node id -> where the node's current version lives.
//!
//! Parents name children by id, so writing a node to a new place changes one
//! table entry and nothing above it. The table is kept in pages of
//! [`ENTRIES_PER_PAGE`] entries shared by reference counting: a checkpoint
//! snapshots it by cloning the page list, and the live table copies a page
//! only when it changes one of its entries afterwards.
//!
//! Table page on disk (4096 bytes): magic `KTTB`, page index (u32),
//! generation (u64), then 170 entries of 24 bytes (see [`Location`]).

use std::rc::Rc;

use crate::codec::{get_u32, get_u64, put_u32, put_u64, Reader};
use crate::error::{BlockKind, CorruptReason, TreeError};
use crate::internal::NodeId;
use crate::limits::PAGE_BYTES;

/// Where a block lives and how to check it: first page (relative to the
/// region), length in bytes, CRC-32C of those bytes, and the generation it
/// was written with. Length 0 means "nowhere" (a free id, or a node that
/// exists only in memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Location {
    pub address: u64,
    pub length: u32,
    pub crc32c: u32,
    pub generation: u64,
}

pub(crate) const LOCATION_BYTES: usize = 24;
pub(crate) const ENTRIES_PER_PAGE: usize = 170;
const TABLE_MAGIC: [u8; 4] = *b"KTTB";
const TABLE_HEADER_BYTES: usize = 16;
const _: () = assert!(TABLE_HEADER_BYTES + ENTRIES_PER_PAGE * LOCATION_BYTES == PAGE_BYTES);

impl Location {
    pub const NONE: Location = Location { address: 0, length: 0, crc32c: 0, generation: 0 };

    pub fn is_none(&self) -> bool {
        self.length == 0
    }

    pub fn pages(&self) -> u64 {
        crate::limits::pages_for(self.length as usize)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.address);
        put_u32(out, self.length);
        put_u32(out, self.crc32c);
        put_u64(out, self.generation);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Location, crate::codec::Malformed> {
        Ok(Location {
            address: r.u64("location address")?,
            length: r.u32("location length")?,
            crc32c: r.u32("location crc")?,
            generation: r.u64("location generation")?,
        })
    }
}

pub(crate) type TablePage = [Location; ENTRIES_PER_PAGE];

/// The id -> location map, paged and shared copy-on-write.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pages: Vec<Rc<TablePage>>,
}

impl Table {
    pub fn from_pages(pages: Vec<Rc<TablePage>>) -> Table {
        Table { pages }
    }

    pub fn pages(&self) -> &[Rc<TablePage>] {
        &self.pages
    }

    pub fn get(&self, id: NodeId) -> Location {
        let (p, i) = split(id);
        self.pages.get(p).map_or(Location::NONE, |page| page[i])
    }

    pub fn set(&mut self, id: NodeId, at: Location) {
        let (p, i) = split(id);
        while self.pages.len() <= p {
            self.pages.push(Rc::new([Location::NONE; ENTRIES_PER_PAGE]));
        }
        Rc::make_mut(&mut self.pages[p])[i] = at;
    }

    /// Every id with a location, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, Location)> + '_ {
        self.pages.iter().enumerate().flat_map(|(p, page)| {
            page.iter()
                .enumerate()
                .filter(|(_, l)| !l.is_none())
                .map(move |(i, l)| (NodeId((p * ENTRIES_PER_PAGE + i) as u64), *l))
        })
    }
}

fn split(id: NodeId) -> (usize, usize) {
    let n = id.0 as usize;
    (n / ENTRIES_PER_PAGE, n % ENTRIES_PER_PAGE)
}

pub(crate) fn encode_page(page: &TablePage, index: u32, generation: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAGE_BYTES);
    out.extend_from_slice(&TABLE_MAGIC);
    put_u32(&mut out, index);
    put_u64(&mut out, generation);
    for l in page {
        l.encode(&mut out);
    }
    debug_assert_eq!(out.len(), PAGE_BYTES);
    out
}

/// Decodes a table page whose checksum the caller verified.
pub(crate) fn decode_page(bytes: &[u8], index: u32, at: &Location) -> Result<TablePage, TreeError> {
    let corrupt = |reason| TreeError::corrupt(BlockKind::Table, at.address, reason);
    if bytes.len() < PAGE_BYTES || bytes[0..4] != TABLE_MAGIC {
        return Err(corrupt(CorruptReason::Malformed(crate::codec::Malformed("table page magic"))));
    }
    let found_index = get_u32(bytes, 4);
    if found_index != index {
        return Err(corrupt(CorruptReason::WrongIdentity { expected: index.into(), found: found_index.into() }));
    }
    let found_gen = get_u64(bytes, 8);
    if found_gen != at.generation {
        return Err(corrupt(CorruptReason::WrongGeneration { expected: at.generation, found: found_gen }));
    }
    let mut r = Reader::new(&bytes[TABLE_HEADER_BYTES..PAGE_BYTES]);
    let mut page = [Location::NONE; ENTRIES_PER_PAGE];
    for slot in &mut page {
        *slot = Location::decode(&mut r).map_err(|m| corrupt(CorruptReason::Malformed(m)))?;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_do_not_see_later_changes() {
        let mut t = Table::default();
        let a = Location { address: 5, length: 100, crc32c: 1, generation: 1 };
        t.set(NodeId(3), a);
        let snap = t.clone();
        t.set(NodeId(3), Location { address: 9, ..a });
        t.set(NodeId(500), a);
        assert_eq!(snap.get(NodeId(3)), a);
        assert!(snap.get(NodeId(500)).is_none());
        assert_eq!(t.get(NodeId(3)).address, 9);
        assert_eq!(t.iter().count(), 2);
    }

    #[test]
    fn pages_round_trip_and_check_their_identity() {
        let mut t = Table::default();
        t.set(NodeId(171), Location { address: 5, length: 100, crc32c: 1, generation: 1 });
        let bytes = encode_page(&t.pages()[1], 1, 9);
        let at = Location { address: 3, length: PAGE_BYTES as u32, crc32c: 0, generation: 9 };
        assert_eq!(&decode_page(&bytes, 1, &at).unwrap(), &*t.pages()[1]);
        assert!(decode_page(&bytes, 2, &at).is_err());
        assert!(decode_page(&bytes, 1, &Location { generation: 8, ..at }).is_err());
    }
}
