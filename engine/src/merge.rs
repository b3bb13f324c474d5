//! Merge operators: partial updates applied without reading the old value.
//!
//! TRANSITIONAL copy until `keel-tree` lands its own (which is the one the
//! format documents); the engine then re-exports the tree's.

/// A partial update of one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOp {
    /// Appends bytes (creating the value if absent).
    Append(Vec<u8>),
    /// Writes bytes at an offset, extending with zeros as needed.
    PatchAt { offset: u64, bytes: Vec<u8> },
    /// Adds to a value holding a little-endian i64 (absent = 0), wrapping.
    AddI64(i64),
    /// Sets one field of a field map.
    FieldSet { field: Vec<u8>, value: Vec<u8> },
    /// Removes one field of a field map; an empty map is deleted.
    FieldDelete { field: Vec<u8> },
}

/// The value after `op` is applied to `base`; `None` means "no value".
pub fn apply_merge(base: Option<&[u8]>, op: &MergeOp) -> Option<Vec<u8>> {
    match op {
        MergeOp::Append(bytes) => {
            let mut v = base.unwrap_or_default().to_vec();
            v.extend_from_slice(bytes);
            Some(v)
        }
        MergeOp::PatchAt { offset, bytes } => {
            let mut v = base.unwrap_or_default().to_vec();
            let start = usize::try_from(*offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(bytes.len());
            if v.len() < end {
                v.resize(end, 0);
            }
            v[start..end].copy_from_slice(bytes);
            Some(v)
        }
        MergeOp::AddI64(delta) => {
            let old = base.and_then(|b| b.try_into().ok()).map(i64::from_le_bytes).unwrap_or(0);
            Some(old.wrapping_add(*delta).to_le_bytes().to_vec())
        }
        MergeOp::FieldSet { field, value } => {
            let mut fields = decode_fields(base.unwrap_or_default());
            match fields.binary_search_by(|(f, _)| f.as_slice().cmp(field)) {
                Ok(i) => fields[i].1 = value.clone(),
                Err(i) => fields.insert(i, (field.clone(), value.clone())),
            }
            Some(encode_fields(&fields))
        }
        MergeOp::FieldDelete { field } => {
            let mut fields = decode_fields(base?);
            if let Ok(i) = fields.binary_search_by(|(f, _)| f.as_slice().cmp(field)) {
                fields.remove(i);
            }
            (!fields.is_empty()).then(|| encode_fields(&fields))
        }
    }
}

/// Field map: u32 count, then per field (sorted) u32 name length, name, u32
/// value length, value. Undecodable input decodes as empty.
pub fn decode_fields(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn take_u32(b: &mut &[u8]) -> Option<usize> {
        take(b, 4).map(|h| u32::from_le_bytes(h.try_into().expect("4 bytes")) as usize)
    }
    let mut b = bytes;
    let mut out = Vec::new();
    let Some(count) = take_u32(&mut b) else { return out };
    for _ in 0..count {
        let parsed = (|| {
            let n = take_u32(&mut b)?;
            let f = take(&mut b, n)?.to_vec();
            let n = take_u32(&mut b)?;
            let v = take(&mut b, n)?.to_vec();
            Some((f, v))
        })();
        match parsed {
            Some(fv) => out.push(fv),
            None => return Vec::new(),
        }
    }
    out
}

pub fn encode_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    for (f, v) in fields {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}
