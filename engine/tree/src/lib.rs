//! Keel's copy-on-write B-epsilon tree: nodes, indirection table, cache, allocator, checkpoints
#![forbid(unsafe_code)]
