//! A leaf's on-disk payload (node format version 2; FORMAT.md "Leaf
//! payload"): the prefix every key of the leaf shares, once, then the
//! entries with only the rest of their key and varint lengths.
//!
//! Why: a point read that misses the cache costs a device read, so the
//! keys a 4 KiB page holds decide how many gets the cache answers. A
//! leaf's keys sit in a narrow range and share most of their bytes (13 of
//! the 16 digits of the benchmark's keys), and the in-memory form's fixed
//! lengths (u16 key, u32 value) are mostly zeros: written out whole, a
//! 16 B key and 100 B value took 123 B of leaf, ~106 B in this form.
//!
//! The in-memory form (`leaf.rs`) keeps whole keys and fixed lengths, so a
//! lookup reads any key at its offset; a leaf is converted when it is
//! written and when it is read whole. A get through a page map parses this
//! form straight from the page it read ([`find_in_run`]).

use super::{encode_entry, parse_value, InlineLength, Leaf, LeafBuilder, ValueRef, FLAG_EXTENT};
use crate::codec::{get_u32, put_bytes16, put_bytes_varint, put_u8, put_varint, varint_len, Malformed, Reader};
use crate::limits::KEY_BYTES_MAX;
use crate::message::MergeOp;

/// The prefix length field (u16) at the start of the payload.
pub(super) const PREFIX_LEN_BYTES: usize = 2;

/// One entry as the disk form holds it: its key without the leaf's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiskEntry<'a> {
    pub suffix: &'a [u8],
    pub value: ValueRef<'a>,
    pub merges: Vec<MergeOp>,
}

/// Parses the entry at `pos` of a payload; returns it and where it ends.
fn parse_disk_entry(data: &[u8], pos: usize) -> Result<(DiskEntry<'_>, usize), Malformed> {
    let mut r = Reader::new(data.get(pos..).ok_or(Malformed("leaf entry offset"))?);
    let suffix = r.bytes_varint(KEY_BYTES_MAX, "leaf key suffix")?;
    let (value, merges) = parse_value(&mut r, InlineLength::Varint)?;
    Ok((DiskEntry { suffix, value, merges }, pos + r.position()))
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Leaf {
    /// How many bytes every key of the leaf starts with: those of its
    /// first and last key (keys between two share what they share).
    pub(crate) fn shared_prefix_len(&self) -> usize {
        match self.len() {
            0 => 0,
            n => common_prefix_len(self.key(0), self.key(n - 1)),
        }
    }

    /// Bytes of entry `i` on disk when `prefix_bytes` of its key are the
    /// leaf's prefix: the in-memory entry less the prefix and the fixed
    /// lengths, plus their varints.
    pub(super) fn disk_entry_bytes(&self, i: usize, prefix_bytes: usize) -> usize {
        let (start, end) = self.span(i);
        let key_bytes = self.key(i).len();
        let flags_at = start + 2 + key_bytes;
        let value_saved =
            if self.data[flags_at] & FLAG_EXTENT == 0 { 4 - varint_len(get_u32(&self.data, flags_at + 1)) } else { 0 };
        let suffix_bytes = key_bytes - prefix_bytes;
        (end - start) - 2 - prefix_bytes + varint_len(suffix_bytes as u32) - value_saved
    }

    pub(super) fn compute_disk_bytes(&self) -> usize {
        let prefix_bytes = self.shared_prefix_len();
        let entries: usize = (0..self.len()).map(|i| self.disk_entry_bytes(i, prefix_bytes)).sum();
        PREFIX_LEN_BYTES + prefix_bytes + entries
    }

    /// Appends the disk payload ([`Leaf::encoded_bytes`] of them).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let before = out.len();
        let prefix_bytes = self.shared_prefix_len();
        put_bytes16(out, self.first_key().map_or(&[][..], |k| &k[..prefix_bytes]));
        for i in 0..self.len() {
            let (start, end) = self.span(i);
            let key = self.key(i);
            put_bytes_varint(out, &key[prefix_bytes..]);
            let flags_at = start + 2 + key.len();
            let flags = self.data[flags_at];
            put_u8(out, flags);
            if flags & FLAG_EXTENT == 0 {
                // Inline values carry no merges: the rest is the value.
                put_varint(out, get_u32(&self.data, flags_at + 1));
                out.extend_from_slice(&self.data[flags_at + 5..end]);
            } else {
                out.extend_from_slice(&self.data[flags_at + 1..end]);
            }
        }
        debug_assert_eq!(out.len() - before, self.disk_bytes);
    }

    /// Decodes and checks a disk payload of `count` entries (from a
    /// verified node), into the in-memory form.
    pub fn decode(payload: &[u8], count: usize) -> Result<Leaf, Malformed> {
        let mut r = Reader::new(payload);
        let prefix = r.bytes16(KEY_BYTES_MAX, "leaf key prefix")?;
        // Every entry takes at least 3 bytes: no allocation past the payload's worth.
        let count_bound = count.min(payload.len() / 3);
        let mut out = LeafBuilder::with_capacity(payload.len() + count_bound * (prefix.len() + 5));
        out.offsets.reserve(count_bound);
        let mut key = prefix.to_vec();
        let mut last: Option<&[u8]> = None;
        let mut pos = r.position();
        while pos < payload.len() {
            if out.offsets.len() == count {
                return Err(Malformed("leaf entry count"));
            }
            let (entry, next) = parse_disk_entry(payload, pos)?;
            if prefix.len() + entry.suffix.len() > KEY_BYTES_MAX {
                return Err(Malformed("leaf key length"));
            }
            // Every key has the same prefix: the suffixes sort as the keys.
            if last.is_some_and(|l| l >= entry.suffix) {
                return Err(Malformed("leaf key order"));
            }
            last = Some(entry.suffix);
            key.truncate(prefix.len());
            key.extend_from_slice(entry.suffix);
            out.offsets.push(out.data.len() as u32);
            encode_entry(&mut out.data, &key, entry.value, &entry.merges);
            pos = next;
        }
        if out.offsets.len() != count {
            return Err(Malformed("leaf entry count"));
        }
        Ok(out.finish())
    }
}

/// Where the entries of a disk payload are: the leaf's prefix, and each
/// entry's start and end offsets in the payload.
pub(crate) struct Layout<'a> {
    pub prefix: &'a [u8],
    pub spans: Vec<(usize, usize)>,
}

/// The [`Layout`] of a disk payload (already checked by [`Leaf::decode`],
/// but parsed as carefully).
pub(crate) fn layout(payload: &[u8]) -> Result<Layout<'_>, Malformed> {
    let mut r = Reader::new(payload);
    let prefix = r.bytes16(KEY_BYTES_MAX, "leaf key prefix")?;
    let mut spans = Vec::new();
    let mut pos = r.position();
    while pos < payload.len() {
        let (_, next) = parse_disk_entry(payload, pos)?;
        spans.push((pos, next));
        pos = next;
    }
    Ok(Layout { prefix, spans })
}

/// What a search of a run of entries (part of a leaf, read by pages) found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RunFind<'a> {
    Found(DiskEntry<'a>),
    Absent,
    /// The key may be the run's last entry, which goes on past the bytes
    /// read: read the rest.
    CutOff,
}

/// Looks up the key whose part after the leaf's prefix is `suffix` in
/// `run`: consecutive disk entries of one leaf of which the first
/// `whole_len` bytes are whole entries and the rest (if any) is the
/// beginning of one more. The run comes from a page checked against a
/// verified image, but is decoded as carefully as any device bytes.
pub(crate) fn find_in_run<'a>(run: &'a [u8], whole_len: usize, suffix: &[u8]) -> Result<RunFind<'a>, Malformed> {
    let whole = run.get(..whole_len).ok_or(Malformed("leaf page run length"))?;
    let mut pos = 0usize;
    let mut last: Option<&[u8]> = None;
    while pos < whole.len() {
        let (entry, next) = parse_disk_entry(whole, pos)?;
        if last.is_some_and(|l| l >= entry.suffix) {
            return Err(Malformed("leaf key order"));
        }
        match entry.suffix.cmp(suffix) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Ok(RunFind::Found(entry)),
            std::cmp::Ordering::Greater => return Ok(RunFind::Absent),
        }
        last = Some(entry.suffix);
        pos = next;
    }
    if run.len() == whole_len {
        return Ok(RunFind::Absent);
    }
    // The last entry continues in the next page: its key decides whether
    // that page is needed (when the key itself is cut, it is).
    match Reader::new(&run[whole_len..]).bytes_varint(KEY_BYTES_MAX, "leaf key suffix") {
        Ok(k) if k != suffix => Ok(RunFind::Absent),
        _ => Ok(RunFind::CutOff),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::leaf_from;
    use crate::message::{ExtentRef, Value};

    fn digits(n: u32) -> Vec<u8> {
        format!("{n:016}").into_bytes()
    }

    #[test]
    fn the_prefix_is_written_once_and_lengths_shrink() {
        let keys: Vec<Vec<u8>> = (0..100).map(|i| digits(5_000_000 + i * 3)).collect();
        let entries: Vec<(&[u8], Value)> = keys.iter().map(|k| (k.as_slice(), Value::Inline(vec![7u8; 100]))).collect();
        let leaf = leaf_from(&entries);
        assert_eq!(leaf.shared_prefix_len(), 13);
        let mut out = Vec::new();
        leaf.encode(&mut out);
        assert_eq!(out.len(), leaf.encoded_bytes());
        // 1 B suffix length, 3 B suffix, 1 B flags, 1 B value length, 100 B value.
        assert_eq!(out.len(), 2 + 13 + 100 * 106);
        assert_eq!(Leaf::decode(&out, 100).unwrap(), leaf);
    }

    #[test]
    fn extents_merges_and_empty_suffixes_round_trip() {
        let e = ExtentRef { address: 3, length: 9000, crc32c: 1, generation: 2 };
        let leaf = leaf_from(&[(b"ab", Value::Inline(vec![1u8; 300])), (b"abc", Value::Extent(e))]);
        assert_eq!(leaf.shared_prefix_len(), 2);
        let mut out = Vec::new();
        leaf.encode(&mut out);
        assert_eq!(Leaf::decode(&out, 2).unwrap(), leaf);
        let empty = leaf_from(&[]);
        let mut out = Vec::new();
        empty.encode(&mut out);
        assert_eq!(out, vec![0, 0]);
        assert_eq!(Leaf::decode(&out, 0).unwrap(), empty);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let leaf = leaf_from(&[(b"ka", Value::Inline(b"1".to_vec())), (b"kb", Value::Inline(b"2".to_vec()))]);
        let mut out = Vec::new();
        leaf.encode(&mut out);
        assert_eq!(out, b"\x01\x00k\x01a\x00\x011\x01b\x00\x012".to_vec());
        assert!(Leaf::decode(&out, 3).is_err(), "count");
        assert!(Leaf::decode(&out, 1).is_err(), "count");
        for cut in 0..out.len() {
            assert!(Leaf::decode(&out[..cut], 2).is_err(), "cut at {cut}");
        }
        let mut swapped = out.clone();
        swapped[4] = b'c';
        assert!(Leaf::decode(&swapped, 2).is_err(), "order");
        let mut long = out.clone();
        long[0] = 0xff;
        assert!(Leaf::decode(&long, 2).is_err(), "prefix length");
        let mut flags = out.clone();
        flags[5] = 2;
        assert!(Leaf::decode(&flags, 2).is_err(), "flags");
    }

    #[test]
    fn a_run_finds_keys_by_suffix_and_names_a_cut_off_entry() {
        let leaf = leaf_from(&[(b"ka", Value::Inline(b"1".to_vec())), (b"kb", Value::Inline(b"2".to_vec()))]);
        let mut out = Vec::new();
        leaf.encode(&mut out);
        let run = &out[3..];
        let found = find_in_run(run, run.len(), b"b").unwrap();
        assert!(matches!(found, RunFind::Found(DiskEntry { value: ValueRef::Inline(b"2"), .. })));
        assert_eq!(find_in_run(run, run.len(), b"c").unwrap(), RunFind::Absent);
        assert_eq!(find_in_run(run, run.len(), b"").unwrap(), RunFind::Absent);
        let cut = &run[..7];
        assert_eq!(find_in_run(cut, 5, b"b").unwrap(), RunFind::CutOff);
        assert_eq!(find_in_run(cut, 5, b"bb").unwrap(), RunFind::Absent);
        assert_eq!(find_in_run(&run[..6], 5, b"bb").unwrap(), RunFind::CutOff, "its key cut too");
        let layout = layout(&out).unwrap();
        assert_eq!((layout.prefix, layout.spans), (&b"k"[..], vec![(3, 8), (8, 13)]));
    }
}
