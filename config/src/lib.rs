//! Keel configuration (see the crate README).
#![forbid(unsafe_code)]
