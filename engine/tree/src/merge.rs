//! The semantics of merges: one pure function, [`apply_merge`], decides what a
//! partial update does to a value. The tree calls it wherever a merge meets
//! its base (in a buffer above a put, at a flush into a leaf, at a read), and
//! always applies merges one at a time in LSN order, so the result never
//! depends on where the merge happened to meet its base.
//!
//! A merge whose result would be longer than [`VALUE_BYTES_MAX`] leaves the
//! value as it was (the engine checks sizes it can know; this rule only keeps
//! the tree bounded when it cannot).

use crate::limits::VALUE_BYTES_MAX;
use crate::message::MergeOp;

/// Applies `op` to `base` (`None`: the key has no value) and returns the new
/// value, `None` for "no value" (a field delete that empties a map, or a
/// merge on an absent value dropped for exceeding the value limit).
pub fn apply_merge(base: Option<Vec<u8>>, op: &MergeOp) -> Option<Vec<u8>> {
    let base_len = base.as_ref().map_or(0, Vec::len);
    match op {
        MergeOp::Append(bytes) => {
            if base_len + bytes.len() > VALUE_BYTES_MAX {
                return base;
            }
            let mut v = base.unwrap_or_default();
            v.extend_from_slice(bytes);
            Some(v)
        }
        MergeOp::PatchAt { offset, bytes } => {
            let end = offset.checked_add(bytes.len() as u64);
            match end {
                Some(end) if end <= VALUE_BYTES_MAX as u64 => {
                    let (start, end) = (*offset as usize, end as usize);
                    let mut v = base.unwrap_or_default();
                    if v.len() < end {
                        v.resize(end, 0);
                    }
                    v[start..end].copy_from_slice(bytes);
                    Some(v)
                }
                _ => base,
            }
        }
        MergeOp::AddI64(delta) => {
            let old = base.as_deref().and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, i64::from_le_bytes);
            Some(old.wrapping_add(*delta).to_le_bytes().to_vec())
        }
        MergeOp::FieldSet { field, value } => {
            let mut map = field_map::decode(base.as_deref().unwrap_or_default()).unwrap_or_default();
            match map.binary_search_by(|(f, _)| f.as_slice().cmp(field)) {
                Ok(i) => map[i].1.clone_from(value),
                Err(i) => map.insert(i, (field.clone(), value.clone())),
            }
            let encoded = field_map::encode(&map);
            if encoded.len() > VALUE_BYTES_MAX {
                return base;
            }
            Some(encoded)
        }
        MergeOp::FieldDelete { field } => {
            let mut map = field_map::decode(base.as_deref()?).unwrap_or_default();
            if let Ok(i) = map.binary_search_by(|(f, _)| f.as_slice().cmp(field)) {
                map.remove(i);
            }
            (!map.is_empty()).then(|| field_map::encode(&map))
        }
    }
}

/// Applies `ops` in order (oldest first) to `base`.
pub fn apply_all<'a>(mut base: Option<Vec<u8>>, ops: impl IntoIterator<Item = &'a MergeOp>) -> Option<Vec<u8>> {
    for op in ops {
        base = apply_merge(base, op);
    }
    base
}

/// Combines two consecutive merges into one when that is exact for every
/// base. Only counter additions combine: every other pair can cross the value
/// limit differently when applied together than one after the other.
pub fn compose(older: &MergeOp, newer: &MergeOp) -> Option<MergeOp> {
    match (older, newer) {
        (MergeOp::AddI64(a), MergeOp::AddI64(b)) => Some(MergeOp::AddI64(a.wrapping_add(*b))),
        _ => None,
    }
}

/// The field-map value encoding used by [`MergeOp::FieldSet`] and
/// [`MergeOp::FieldDelete`]: a field count (u32), then the fields in strictly
/// increasing byte order of their names, each
/// `[name length: u32][name][value length: u32][value]`, little-endian. A
/// value that is not a valid field map (the empty value included) counts as
/// the empty map when a field merge meets it; a field delete that empties
/// the map deletes the key.
pub mod field_map {
    use crate::codec::{put_bytes32, put_u32, Reader};
    use crate::limits::VALUE_BYTES_MAX;

    /// Decodes a field map; `None` when `bytes` is not a valid one.
    pub fn decode(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut r = Reader::new(bytes);
        let count = r.u32("field count").ok()? as usize;
        if count > r.remaining() / 8 {
            return None;
        }
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(count);
        for _ in 0..count {
            let name = r.bytes32(VALUE_BYTES_MAX, "field name").ok()?;
            let value = r.bytes32(VALUE_BYTES_MAX, "field value").ok()?;
            if fields.last().is_some_and(|(last, _)| last.as_slice() >= name) {
                return None;
            }
            fields.push((name.to_vec(), value.to_vec()));
        }
        r.is_empty().then_some(fields)
    }

    /// Encodes fields that are sorted by name without duplicates.
    pub fn encode(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        debug_assert!(fields.windows(2).all(|w| w[0].0 < w[1].0));
        let mut out = Vec::with_capacity(4 + fields.iter().map(|(f, v)| 8 + f.len() + v.len()).sum::<usize>());
        put_u32(&mut out, fields.len() as u32);
        for (name, value) in fields {
            put_bytes32(&mut out, name);
            put_bytes32(&mut out, value);
        }
        out
    }

    /// The value of one field, if the map is valid and has it.
    pub fn get<'a>(map: &'a [u8], field: &[u8]) -> Option<&'a [u8]> {
        let mut r = Reader::new(map);
        let count = r.u32("field count").ok()?;
        for _ in 0..count {
            let name = r.bytes32(VALUE_BYTES_MAX, "field name").ok()?;
            let value = r.bytes32(VALUE_BYTES_MAX, "field value").ok()?;
            if name == field {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn append_and_patch_build_values() {
        let v = apply_merge(None, &MergeOp::Append(b"ab".to_vec()));
        let v = apply_merge(v, &MergeOp::Append(b"cd".to_vec()));
        assert_eq!(v.as_deref(), Some(&b"abcd"[..]));
        let v = apply_merge(v, &MergeOp::PatchAt { offset: 6, bytes: b"xy".to_vec() });
        assert_eq!(v.as_deref(), Some(&b"abcd\0\0xy"[..]));
        let v = apply_merge(v, &MergeOp::PatchAt { offset: 1, bytes: b"Z".to_vec() });
        assert_eq!(v.as_deref(), Some(&b"aZcd\0\0xy"[..]));
    }

    #[test]
    fn counters_wrap_and_treat_foreign_values_as_zero() {
        let v = apply_merge(Some(b"not a counter".to_vec()), &MergeOp::AddI64(5));
        assert_eq!(v, Some(5i64.to_le_bytes().to_vec()));
        let v = apply_merge(Some(i64::MAX.to_le_bytes().to_vec()), &MergeOp::AddI64(1));
        assert_eq!(v, Some(i64::MIN.to_le_bytes().to_vec()));
    }

    #[test]
    fn field_merges_keep_the_map_sorted() {
        let set = |f: &str, v: &str| MergeOp::FieldSet { field: f.into(), value: v.into() };
        let v = apply_all(None, &[set("b", "2"), set("a", "1"), set("c", "3"), set("b", "two")]);
        let map = field_map::decode(v.as_deref().unwrap()).unwrap();
        let names: Vec<_> = map.iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(names, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(field_map::get(v.as_deref().unwrap(), b"b"), Some(&b"two"[..]));
        let v = apply_merge(v, &MergeOp::FieldDelete { field: b"b".to_vec() });
        assert_eq!(field_map::get(v.as_deref().unwrap(), b"b"), None);
        assert_eq!(field_map::decode(v.as_deref().unwrap()).unwrap().len(), 2);
        let v = apply_all(
            v,
            &[MergeOp::FieldDelete { field: b"a".to_vec() }, MergeOp::FieldDelete { field: b"c".to_vec() }],
        );
        assert_eq!(v, None, "deleting the last field deletes the key");
        assert_eq!(apply_merge(None, &MergeOp::FieldDelete { field: b"a".to_vec() }), None);
    }

    #[test]
    fn a_merge_past_the_value_limit_leaves_the_value_alone() {
        let base = Some(vec![1u8; 10]);
        let op = MergeOp::PatchAt { offset: VALUE_BYTES_MAX as u64, bytes: vec![1] };
        assert_eq!(apply_merge(base.clone(), &op), base);
        assert_eq!(apply_merge(None, &op), None);
        let op = MergeOp::PatchAt { offset: u64::MAX, bytes: vec![1] };
        assert_eq!(apply_merge(base.clone(), &op), base);
    }

    fn op_strategy() -> impl Strategy<Value = MergeOp> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..8);
        let field = proptest::collection::vec(0u8..3, 1..3);
        prop_oneof![
            bytes.clone().prop_map(MergeOp::Append),
            (0u64..24, bytes.clone()).prop_map(|(offset, bytes)| MergeOp::PatchAt { offset, bytes }),
            any::<i64>().prop_map(MergeOp::AddI64),
            (field.clone(), bytes).prop_map(|(field, value)| MergeOp::FieldSet { field, value }),
            field.prop_map(|field| MergeOp::FieldDelete { field }),
        ]
    }

    proptest! {
        #[test]
        fn composed_merges_equal_sequential_ones(
            base in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            a in op_strategy(),
            b in op_strategy(),
        ) {
            if let Some(c) = compose(&a, &b) {
                let sequential = apply_merge(apply_merge(base.clone(), &a), &b);
                prop_assert_eq!(apply_merge(base, &c), sequential);
            }
        }

        #[test]
        fn field_maps_round_trip(fields in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..4), proptest::collection::vec(any::<u8>(), 0..4), 0..6)) {
            let fields: Vec<_> = fields.into_iter().collect();
            prop_assert_eq!(field_map::decode(&field_map::encode(&fields)), Some(fields));
        }
    }
}
