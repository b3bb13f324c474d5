//! Keel's concurrent redo journal: group commit, transactional checksums, asynchronous durability
#![forbid(unsafe_code)]
