//! Nodes as a whole: the in-memory [`Node`], and its serialized form with the
//! header every node carries on disk.
//!
//! Header (32 bytes, little-endian): magic `KTND`, kind (1 leaf, 2 internal),
//! format version (2), height, reserved byte, node id (u64), generation
//! (u64), payload length (u32), item count (u32: entries of a leaf, children
//! of an internal node). The indirection-table entry that points to a node
//! carries the CRC-32C of header + payload, the length, and the generation;
//! a node is accepted only when all three and the id in the header match.

use crate::codec::{get_u32, get_u64, set_u32, set_u64};
use crate::error::{BlockKind, CorruptReason, TreeError};
use crate::internal::{Internal, NodeId};
use crate::leaf::Leaf;
use crate::table::Location;
use keel_drivers::checksum;

pub(crate) const NODE_MAGIC: [u8; 4] = *b"KTND";
/// 2: leaves written with their keys' shared prefix once and varint
/// lengths (`leaf/disk.rs`).
pub(crate) const NODE_VERSION: u8 = 2;
pub(crate) const NODE_HEADER_BYTES: usize = 32;
const KIND_LEAF: u8 = 1;
const KIND_INTERNAL: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Leaf(Leaf),
    Internal(Internal),
}

/// True when `bytes` (from [`Node::serialize`]) are a leaf's.
pub(crate) fn is_leaf_image(bytes: &[u8]) -> bool {
    bytes.get(4) == Some(&KIND_LEAF)
}

impl Node {
    pub fn height(&self) -> u8 {
        match self {
            Node::Leaf(_) => 0,
            Node::Internal(n) => n.height,
        }
    }

    pub fn is_leaf(&self) -> bool {
        matches!(self, Node::Leaf(_))
    }

    pub fn kind(&self) -> BlockKind {
        match self {
            Node::Leaf(_) => BlockKind::Leaf,
            Node::Internal(_) => BlockKind::Internal,
        }
    }

    /// Size of the serialized node (header + payload).
    pub fn encoded_bytes(&self) -> usize {
        NODE_HEADER_BYTES
            + match self {
                Node::Leaf(l) => l.encoded_bytes(),
                Node::Internal(n) => n.encoded_bytes(),
            }
    }

    pub fn mem_bytes(&self) -> usize {
        match self {
            Node::Leaf(l) => l.mem_bytes(),
            Node::Internal(n) => n.mem_bytes(),
        }
    }

    pub fn as_internal(&self) -> Option<&Internal> {
        match self {
            Node::Internal(n) => Some(n),
            Node::Leaf(_) => None,
        }
    }

    pub fn as_leaf(&self) -> Option<&Leaf> {
        match self {
            Node::Leaf(l) => Some(l),
            Node::Internal(_) => None,
        }
    }

    /// Serializes the node as written with `generation`: header + payload.
    pub fn serialize(&self, id: NodeId, generation: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_bytes());
        out.extend_from_slice(&[0u8; NODE_HEADER_BYTES]);
        let (kind, count) = match self {
            Node::Leaf(l) => {
                l.encode(&mut out);
                (KIND_LEAF, l.len())
            }
            Node::Internal(n) => {
                n.encode(&mut out);
                (KIND_INTERNAL, n.children.len())
            }
        };
        let payload_len = out.len() - NODE_HEADER_BYTES;
        out[0..4].copy_from_slice(&NODE_MAGIC);
        out[4] = kind;
        out[5] = NODE_VERSION;
        out[6] = self.height();
        set_u64(&mut out, 8, id.0);
        set_u64(&mut out, 16, generation);
        set_u32(&mut out, 24, payload_len as u32);
        set_u32(&mut out, 28, count as u32);
        debug_assert_eq!(out.len(), self.encoded_bytes());
        out
    }

    /// Checks `bytes` (read from `at.address`) against the table entry that
    /// points to it and decodes the node.
    pub fn verify_and_decode(bytes: &[u8], id: NodeId, at: &Location) -> Result<Node, TreeError> {
        let corrupt = |reason| TreeError::corrupt(BlockKind::Node, at.address, reason);
        let len = at.length as usize;
        if len < NODE_HEADER_BYTES || bytes.len() < len {
            return Err(corrupt(CorruptReason::Invariant("node length in its table entry")));
        }
        let bytes = &bytes[..len];
        let found = checksum::crc32c(bytes);
        if found != at.crc32c {
            return Err(corrupt(classify_mismatch(bytes, id, at, found)));
        }
        let kind_byte = bytes[4];
        let kind = if kind_byte == KIND_LEAF { BlockKind::Leaf } else { BlockKind::Internal };
        let corrupt = |reason| TreeError::corrupt(kind, at.address, reason);
        let malformed = |what| corrupt(CorruptReason::Malformed(crate::codec::Malformed(what)));
        if bytes[0..4] != NODE_MAGIC || bytes[5] != NODE_VERSION {
            return Err(malformed("node magic or version"));
        }
        let found_id = get_u64(bytes, 8);
        if found_id != id.0 {
            return Err(corrupt(CorruptReason::WrongIdentity { expected: id.0, found: found_id }));
        }
        let found_gen = get_u64(bytes, 16);
        if found_gen != at.generation {
            return Err(corrupt(CorruptReason::WrongGeneration { expected: at.generation, found: found_gen }));
        }
        let payload_len = get_u32(bytes, 24) as usize;
        if payload_len + NODE_HEADER_BYTES != len {
            return Err(malformed("node payload length"));
        }
        let count = get_u32(bytes, 28) as usize;
        let payload = &bytes[NODE_HEADER_BYTES..];
        let height = bytes[6];
        match kind_byte {
            KIND_LEAF if height == 0 => {
                Leaf::decode(payload, count).map(Node::Leaf).map_err(|m| corrupt(CorruptReason::Malformed(m)))
            }
            KIND_INTERNAL => Internal::decode(height, payload, count)
                .map(Node::Internal)
                .map_err(|m| corrupt(CorruptReason::Malformed(m))),
            _ => Err(malformed("node kind")),
        }
    }
}

/// Names the likely cause of a checksum mismatch from the header, when the
/// header itself looks intact: another node's bytes (misdirected) or an
/// older version of this one (lost write).
fn classify_mismatch(bytes: &[u8], id: NodeId, at: &Location, found: u32) -> CorruptReason {
    if bytes[0..4] == NODE_MAGIC {
        let found_id = get_u64(bytes, 8);
        let found_gen = get_u64(bytes, 16);
        if found_id != id.0 {
            return CorruptReason::WrongIdentity { expected: id.0, found: found_id };
        }
        if found_gen != at.generation {
            return CorruptReason::WrongGeneration { expected: at.generation, found: found_gen };
        }
    }
    CorruptReason::Checksum { expected: at.crc32c, found }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::leaf_from;
    use crate::message::Value;

    fn sample() -> (Node, Vec<u8>, Location) {
        let node = Node::Leaf(leaf_from(&[(b"k", Value::Inline(b"v".to_vec()))]));
        let bytes = node.serialize(NodeId(7), 42);
        let at = Location { address: 100, length: bytes.len() as u32, crc32c: crc32c::crc32c(&bytes), generation: 42 };
        (node, bytes, at)
    }

    #[test]
    fn a_node_reads_back_only_through_its_own_entry() {
        let (node, bytes, at) = sample();
        assert_eq!(Node::verify_and_decode(&bytes, NodeId(7), &at).unwrap(), node);
        let err = Node::verify_and_decode(&bytes, NodeId(8), &at).unwrap_err();
        assert!(matches!(err, TreeError::Corrupt { reason: CorruptReason::WrongIdentity { .. }, .. }), "{err}");
        let stale = Location { generation: 43, ..at };
        let err = Node::verify_and_decode(&bytes, NodeId(7), &stale).unwrap_err();
        assert!(matches!(err, TreeError::Corrupt { reason: CorruptReason::WrongGeneration { .. }, .. }), "{err}");
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let (_, bytes, at) = sample();
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Node::verify_and_decode(&b, NodeId(7), &at).is_err(), "bit {bit}");
        }
        assert!(Node::verify_and_decode(&vec![0u8; bytes.len()], NodeId(7), &at).is_err());
    }
}
