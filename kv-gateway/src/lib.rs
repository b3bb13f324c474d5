//! Keel's Redis-protocol (RESP2/RESP3) key-value gateway
#![forbid(unsafe_code)]
